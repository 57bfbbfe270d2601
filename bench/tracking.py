"""Weights & Biases through Lightning's WandbLogger: offline unless the user configured online.

A run never needs a server: offline mode writes a local `.wandb` log under the run record
(`wandb sync DIR` uploads it later). Online only when asked for (`--set wandb=online`,
WANDB_MODE=online, or an API key in WANDB_API_KEY).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.config import RunConfig

WANDB_INIT_TIMEOUT_S = 30  # an online run that cannot reach its server falls back to offline


def wandb_mode(cfg: RunConfig) -> str:
    if cfg.wandb == "disabled" or os.environ.get("WANDB_MODE") == "disabled":
        return "disabled"
    if cfg.wandb == "online" or os.environ.get("WANDB_MODE") == "online" \
            or os.environ.get("WANDB_API_KEY"):
        return "online"
    return "offline"


def make_logger(cfg: RunConfig, save_dir: Path):
    """A WandbLogger for this run (project = cfg.project, group = the study), or None."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False,
                              init_timeout=WANDB_INIT_TIMEOUT_S)

    def logger(mode: str) -> WandbLogger:
        return WandbLogger(
            project=cfg.project, group=cfg.study, name=cfg.run_id, save_dir=str(save_dir),
            offline=mode == "offline", mode=mode, config=cfg.to_dict(), settings=settings,
            job_type="sweep-trial" if cfg.study != "default" else "run", log_model=False,
        )

    if mode == "offline":
        return logger(mode)
    online = logger(mode)
    try:
        online.experiment  # noqa: B018 - start the run now: an unreachable server shows here
        return online
    except Exception as exc:  # noqa: BLE001 - wandb raises CommError, UsageError, ... alike
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        print(f"wandb: online run could not start within {WANDB_INIT_TIMEOUT_S} s ({reason}); "
              "logging offline instead (`wandb sync` uploads it later)", flush=True)
        return logger("offline")


def log_layers(logger, split: str, table: dict[str, dict[str, Any]]) -> None:
    """Per-probe spike counts as a W&B table and bar chart (the avalanche plot in the dashboard)."""
    import wandb

    columns = ["probe", "kind", "index", "spikes_per_image", "nonzero_per_image", "max_spike"]
    rows = [[probe, s["kind"], s["index"], s["spikes_per_image"], s["nonzero_per_image"],
             s["max_spike"]] for probe, s in table.items()]
    wb_table = wandb.Table(columns=columns, data=rows)
    logger.experiment.log({
        f"{split}/layers": wb_table,
        f"{split}/spikes_per_image_bar": wandb.plot.bar(
            wb_table, "probe", "spikes_per_image", title=f"{split}: spikes per image at each probe"),
        **{f"{split}/spikes/{probe}_per_image": s["spikes_per_image"] for probe, s in table.items()},
    })


def finish(logger, summary: dict[str, Any]) -> str | None:
    """Write the summary scalars into the W&B run, close it, and return its local folder."""
    if logger is None:
        return None
    run = logger.experiment
    flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and k != "config"}
    flat.update({f"grad_norm/{k}": v for k, v in (summary.get("grad_norm_per_block") or {}).items()})
    energy = summary.get("energy") or {}
    flat.update({f"energy/{k}": v for k, v in energy.items() if isinstance(v, (int, float))})
    run.summary.update(flat)
    folder = str(Path(run.dir).parent)  # .../wandb/offline-run-<time>-<id>
    run.finish(exit_code=0 if summary.get("status") == "completed" else 1)
    return folder
