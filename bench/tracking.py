"""Weights & Biases through Lightning's WandbLogger: offline unless the user configured online.

A run never needs a server: offline mode writes a local `.wandb` log under the run record
(`wandb sync DIR` uploads it later). Online only when asked for (`--set wandb=online`,
WANDB_MODE=online, or an API key in WANDB_API_KEY).

What a run shows in W&B (README, "Weights & Biases"): a descriptive name and tags, the resolved
config once, per-epoch metrics, the learning rate, system metrics, the layer statistics of every
validation epoch and the test as one table, the avalanche as a line plot in depth order, and
the run record (and checkpoints, when there are any) as artifacts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import lightning as L

from bench import schema
from bench.config import RunConfig

RECORD_FILES = schema.RECORD_FILES
CHECKPOINTS = (schema.BEST_CKPT, schema.LAST_CKPT)
# layers.csv as a W&B table, without the per-probe constants levels and neurons
LAYER_TABLE_COLUMNS = [c for c in schema.LAYER_COLUMNS if c not in (schema.LEVELS, schema.NEURONS)]
WANDB_INIT_TIMEOUT_S = 30  # an online run that cannot reach its server falls back to offline


def wandb_mode(cfg: RunConfig) -> str:
    if cfg.wandb == "disabled" or os.environ.get("WANDB_MODE") == "disabled":
        return "disabled"
    if cfg.wandb == "online" or os.environ.get("WANDB_MODE") == "online" \
            or os.environ.get("WANDB_API_KEY"):
        return "online"
    return "offline"


def run_name(cfg: RunConfig, trial: int | None = None) -> str:
    """'avalanche/sew_resnet18-T1N4-seed0' (a sweep trial ends in '-t0003': unique in its study)."""
    name = f"{cfg.study}/{cfg.arch}-{cfg.tag()}-seed{cfg.seed}"
    return name if trial is None else f"{name}-t{trial:04d}"


def run_tags(cfg: RunConfig) -> list[str]:
    return [f"study:{cfg.study}", f"dataset:{cfg.dataset}", f"arch:{cfg.arch}",
            f"estimator:{cfg.estimator}"]


def run_notes(cfg: RunConfig, trial: int | None = None) -> str:
    neurons = (f"T={cfg.T}, N={cfg.N}, estimator {cfg.estimator} (barrier "
               f"{cfg.barrier_estimator})" if cfg.spiking else "ANN")
    notes = (f"{cfg.arch} on {cfg.dataset}, {neurons}, {cfg.optimizer} lr {cfg.resolved_lr():g}, "
             f"{cfg.epochs} epochs, seed {cfg.seed}; run record "
             f"{Path(cfg.results) / cfg.study / schema.RUNS_DIR / cfg.run_id}")
    described = sweep_description(cfg) if trial is not None else None
    return f"Sweep {cfg.study}: {described}\n{notes}" if described else notes


def sweep_description(cfg: RunConfig) -> str | None:
    """The description in the study's sweep.yaml (as `bench sweep` saved it, --set noted)."""
    import yaml

    try:
        data = yaml.safe_load((Path(cfg.results) / cfg.study / "sweep.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    text = data.get("description") if isinstance(data, dict) else None
    return str(text) if text else None


def stage_in_record(save_dir: Path) -> None:
    """W&B's artifact staging, cache and data folders inside the run record (absolute paths),
    not ~/.local/share/wandb or ~/.cache/wandb: a copy of results/ carries every file its
    .wandb log names. Process-wide variables, set again for each run."""
    base = Path(save_dir).resolve() / schema.WANDB_FOLDER
    for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts"),
                     ("WANDB_CACHE_DIR", "cache")):
        os.environ[var] = str(base / sub)


def run_config(cfg: RunConfig) -> dict[str, Any]:
    """The run config as W&B shows it: every key once, defaults resolved (lr)."""
    return {**cfg.to_dict(), "lr": cfg.resolved_lr()}


def make_logger(cfg: RunConfig, save_dir: Path, trial: int | None = None, *,
                resume_id: str | None = None, job_type: str | None = None,
                name: str | None = None, config: dict | None = None):
    """A WandbLogger for this run (project = cfg.project, group = the study), or None.

    resume_id: continue that W&B run (a resumed run); job_type/name/config: an eval's own.
    """
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    stage_in_record(save_dir)
    _launch_inputs_only_if_staged()
    # console "wrap": the run's printed lines in the Logs tab (offline too: output.log)
    settings = wandb.Settings(console="wrap", silent=True, save_code=False,
                              x_disable_stats=not cfg.wandb_system_metrics,
                              init_timeout=WANDB_INIT_TIMEOUT_S)
    resume = {"id": resume_id, "resume": "allow"} if resume_id else {}

    def logger(mode: str) -> WandbLogger:
        # group = study and job_type: the W&B workspace groups a sweep's trials in one view
        return BenchWandbLogger(
            project=cfg.project, group=cfg.study, name=name or run_name(cfg, trial),
            tags=run_tags(cfg), notes=run_notes(cfg, trial), save_dir=str(save_dir),
            offline=mode == "offline", mode=mode, config=config or run_config(cfg),
            settings=settings, log_model=False,
            job_type=job_type or ("sweep-trial" if trial is not None else "run"), **resume,
        )

    if mode == "offline":
        return define_metrics(logger(mode))
    online = logger(mode)
    try:
        online.experiment  # noqa: B018 - start the run now: an unreachable server shows here
        return define_metrics(online)
    except Exception as exc:  # noqa: BLE001 - wandb raises CommError, UsageError, ... alike
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        print(f"wandb: online run could not start within {WANDB_INIT_TIMEOUT_S} s ({reason}); "
              "logging offline instead (`wandb sync` uploads it later)", flush=True)
        return define_metrics(logger("offline"))


# summaries W&B's runs table shows: the epoch best.ckpt is chosen on, not the last epoch
METRIC_SUMMARIES = {"val/acc": "max", "val/loss": "min", "train/acc": "max", "train/loss": "min"}


def define_metrics(logger):
    """val/acc's summary is its max and val/loss's its min (best.ckpt's choice); the best
    epoch's energy and spikes are added as best/* at the end (`finish`)."""
    run = logger.experiment
    for key, summary in METRIC_SUMMARIES.items():
        run.define_metric(key, summary=summary)
    return logger


def _bench_logger_class():
    from lightning.pytorch.loggers import WandbLogger

    class _Logger(WandbLogger):
        """Test-split numbers (one value per run) go to the run summary, not one-point charts."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            # Lightning always passes wandb.init `anonymous` (None when unset), which W&B now
            # answers with a deprecation WARNING on every run's console: never pass it
            self._wandb_init.pop("anonymous", None)

        def log_metrics(self, metrics, step=None):
            test = {k: v for k, v in metrics.items() if str(k).startswith("test/")}
            if test:
                self.experiment.summary.update(test)
            rest = {k: v for k, v in metrics.items() if k not in test}
            if rest or not test:
                super().log_metrics(rest, step)

    return _Logger


def BenchWandbLogger(**kw):  # noqa: N802 - builds the class late: wandb/lightning import lazily
    return _bench_logger_class()(**kw)


def _launch_inputs_only_if_staged() -> None:
    """wandb.init applies staged W&B Launch inputs by importing wandb.sdk.launch, whose pydantic
    models read their field docstrings by scanning sys.modules once per stack frame: with torch
    and Lightning loaded (4,000 modules) that import alone costs seconds per run. Inputs can only
    have been staged through that module, so while it is not loaded there is nothing to apply."""
    from wandb.sdk import wandb_run

    detect = getattr(wandb_run.Run, "_detect_and_apply_job_inputs", None)
    if detect is None or getattr(detect, "bench_skips_unstaged", False):
        return

    def detect_if_staged(self) -> None:
        if "wandb.sdk.launch.inputs.internal" in sys.modules:
            detect(self)

    detect_if_staged.bench_skips_unstaged = True  # type: ignore[attr-defined]
    wandb_run.Run._detect_and_apply_job_inputs = detect_if_staged


def wandb_run_id(save_dir: Path) -> str | None:
    """The id of the latest W&B run under save_dir (folders wandb/<offline-run|run>-<time>-<id>)."""
    runs = sorted(p.name for p in (Path(save_dir) / schema.WANDB_FOLDER).glob("*run-*-*")
                  if p.is_dir())
    return runs[-1].rsplit("-", 1)[-1] if runs else None


def callbacks(logger, spikes: L.Callback | None = None) -> list[L.Callback]:
    """Lightning callbacks that only make sense with a logger: the learning-rate curve, and the
    validation spikes of `spikes` (the run's SpikeProbe, when probes are on)."""
    if logger is None:
        return []
    from lightning.pytorch.callbacks import LearningRateMonitor

    # the scheduler steps every batch: lr-<Optimizer> per step (the trainer logs every step)
    return [LearningRateMonitor(logging_interval="step"),
            *([ValSpikes(spikes)] if spikes is not None else [])]


class ValSpikes(L.Callback):
    """Each validation epoch's spikes per image of every probe (and residual sum, a block's
    output) as curves `val_spikes/<probe>`: the spike probe's table of that epoch, the rows
    layers.csv receives (listed after the probe, so its epoch end has filled the table)."""

    def __init__(self, spikes: L.Callback) -> None:
        self.spikes = spikes
        self.logged: object = None  # the table logged last: an epoch the probe skipped logs none

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        table = self.spikes.last.get("val")
        if trainer.sanity_checking or not table or table is self.logged:
            return
        trainer.logger.log_metrics({f"val_spikes/{p}": row[schema.SPIKES_PER_IMAGE]
                                    for p, row in table.items()} | {"epoch": trainer.current_epoch},
                                   step=trainer.global_step)
        self.logged = table


def run_path(logger) -> str | None:
    """'entity/project/id' (online) or 'project/id' (offline): the run's W&B path."""
    if logger is None:
        return None
    run = logger.experiment
    return "/".join(p for p in (run.entity, run.project, run.id) if p)


def run_folder(logger) -> str | None:
    """The local W&B run folder (.../wandb/offline-run-<time>-<id>), for `wandb sync`."""
    if logger is None:
        return None
    return str(Path(logger.experiment.dir).parent)


def run_fields(logger) -> dict[str, str | None]:
    """summary.json's W&B fields: the local run folder and the run path."""
    return {schema.WANDB_DIR: run_folder(logger), schema.WANDB_RUN: run_path(logger)}


def _is_sum(layers):
    return layers[schema.PROBE].astype(str).str.fullmatch(r"sum\d+")


def _depth_order(layers):
    """Residual sums sum0..sumK (the avalanche; SEW's adds, Sparse's barriers) if the model has
    any, else every probe; by depth."""
    sums = layers[_is_sum(layers)]
    return (sums if not sums.empty else layers).sort_values(schema.INDEX)


def log_layers(logger, record_dir: Path) -> None:
    """layers.csv as one W&B table (every validation epoch and the test) and the avalanche:
    spikes per image at each residual sum in depth order, one line per split (validation:
    its last epoch)."""
    import pandas as pd
    import wandb

    layers = pd.read_csv(Path(record_dir) / schema.LAYERS_FILE)
    if layers.empty:
        return
    rows = layers[LAYER_TABLE_COLUMNS].astype(object).where(layers[LAYER_TABLE_COLUMNS].notna())
    xs, ys, keys = [], [], []
    for split in ("val", "test"):
        part = layers[layers[schema.SPLIT] == split]
        if part.empty:
            continue
        last = _depth_order(part[part[schema.EPOCH] == part[schema.EPOCH].max()])
        xs.append(list(range(len(last))))
        ys.append([float(v) for v in last[schema.SPIKES_PER_IMAGE]])
        keys.append(f"val (epoch {int(last[schema.EPOCH].iloc[0])})" if split == "val" else split)
    what = "residual sum" if _is_sum(layers).any() else "probe"
    logger.experiment.log({
        "layers": wandb.Table(columns=LAYER_TABLE_COLUMNS, data=rows.values.tolist()),
        "avalanche": wandb.plot.line_series(
            xs=xs, ys=ys, keys=keys, xname=f"{what} index (depth order)",
            title=f"spikes per image at each {what}"),
    })


def log_test_spikes(logger, table: dict[str, dict[str, Any]]) -> None:
    """Per-probe test spike counts in the run summary (test/spikes/<probe>_per_image): one
    number per run, not a one-point chart."""
    logger.experiment.summary.update(
        {f"test/spikes/{probe}_per_image": s[schema.SPIKES_PER_IMAGE]
         for probe, s in table.items()})


def summary_values(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json's scalars for the W&B summary. Names that W&B also logs as a curve keep its
    last point; the gradient norms' epoch mean gets its own name."""
    flat = {k: v for k, v in summary.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k != schema.CONFIG}
    flat.update({f"grad_norm_epoch_mean/{k}": v
                 for k, v in (summary.get(schema.GRAD_NORM_PER_BLOCK) or {}).items()})
    energy = summary.get(schema.ENERGY) or {}
    # the settings (model, counting, sram, ...) and totals, then the eight terms in uJ per image
    flat.update({f"energy/{k}": v for k, v in energy.items()
                 if isinstance(v, (int, float, str, bool))})
    flat.update({f"energy/{k}_uj_per_image": v
                 for k, v in (energy.get(schema.ENERGY_BREAKDOWN_UJ) or {}).items()})
    return flat


def log_artifacts(run, record_dir: Path, models: bool = True) -> None:
    """The run record (type run-record) and, when `models`, any checkpoints (type model) as
    artifacts, every entry by its absolute path; offline they are kept with the run (staged
    inside the record) and uploaded by `wandb sync`."""
    import wandb

    record_dir = Path(record_dir).resolve()
    # artifact names are per project: results/<study>/runs/<run_id> -> <study>-<run_id>
    base = f"{record_dir.parent.parent.name}-{record_dir.name}"
    record = wandb.Artifact(f"record-{base}", type="run-record",
                            description=f"bench run record {record_dir}")
    for name in RECORD_FILES:
        if (record_dir / name).is_file():
            record.add_file(str(record_dir / name))
    run.log_artifact(record)
    found = [record_dir / n for n in CHECKPOINTS if (record_dir / n).is_file()] if models else []
    if found:
        model = wandb.Artifact(f"model-{base}", type="model",
                               description=f"checkpoints of bench run {record_dir}")
        for path in found:  # immutable: no staging copy of ~100 MB per run; uploaded at sync
            model.add_file(str(path), policy="immutable")
        run.log_artifact(model)


def best_epoch(record_dir: Path) -> dict[str, Any]:
    """best/*: the epoch of the highest val/acc (best.ckpt's) with its spikes and energy."""
    import pandas as pd

    path = record_dir / schema.METRICS_FILE
    try:
        metrics = pd.read_csv(path)
    except (OSError, ValueError):
        return {}
    if "val/acc" not in metrics or metrics["val/acc"].dropna().empty:
        return {}
    row = metrics.loc[metrics["val/acc"].idxmax()]
    out = {"best/epoch": int(row["epoch"]), "best/val_acc": float(row["val/acc"])}
    for col, name in (("val/spikes_total_per_image", "best/spikes_total_per_image"),
                      ("val/energy_uj_per_image", "best/energy_uj_per_image"),
                      ("val/loss", "best/val_loss")):
        if col in metrics and pd.notna(row[col]):
            out[name] = float(row[col])
    return out


def finish(logger, summary: dict[str, Any], record_dir: Path | None = None) -> str | None:
    """Write the summary scalars and the record's artifacts into the W&B run, close it, and
    return its local folder."""
    if logger is None:
        return None
    run = logger.experiment
    run.summary.update(summary_values(summary))
    folder = run_folder(logger)
    if record_dir is not None:
        run.summary.update(best_epoch(Path(record_dir)))
        wanted = (summary.get(schema.CONFIG) or {}).get("wandb_model_artifacts")
        trial = summary.get("trial")
        log_artifacts(run, record_dir, models=wanted if wanted is not None else trial is None)
    run.finish(exit_code=0 if summary.get(schema.STATUS) == schema.COMPLETED else 1)
    return folder
