"""The run record under results/<study>/runs/<run_id>/: the source of truth for reports.

config.json at the start; metrics.csv, layers.csv and grads.csv as training goes; summary.json
with status "running" at the start and its final form at the end, each write atomic (a temp file
renamed over the old one) so a killed run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from bench.config import RunConfig

METRIC_COLUMNS = ["epoch", "step", "train/loss", "train/acc", "val/loss", "val/acc",
                  "val/spikes_total_per_image", "val/energy_uj_per_image", "time_s"]
LAYER_COLUMNS = ["split", "epoch", "probe", "kind", "index", "levels", "neurons",
                 "spikes_per_image", "nonzero_per_image", "max_spike", "rate"]
GRAD_COLUMNS = ["step", "group", "grad_norm"]


def run_dir(cfg: RunConfig) -> Path:
    return Path(cfg.results) / cfg.study / "runs" / cfg.run_id


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("bench", "torch", "lightning", "spikingjelly", "wandb", "optuna"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


CSV_FILES = {"metrics.csv": METRIC_COLUMNS, "layers.csv": LAYER_COLUMNS, "grads.csv": GRAD_COLUMNS}


class RunRecord:
    """A run's folder (`run_dir(cfg)` unless `directory` is given, as for an eval record).

    `resume=True` keeps config.json and the CSV rows already written (a resumed run then cuts
    each CSV back to its checkpoint with `truncate`); `rows` counts the data rows of each CSV.
    """

    def __init__(self, cfg: RunConfig, trial: int | None = None, *, directory: Path | None = None,
                 resume: bool = False) -> None:
        self.cfg, self.trial = cfg, trial
        self.dir = Path(directory) if directory is not None else run_dir(cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows = {name: 0 for name in CSV_FILES}
        if not resume:
            config = {**cfg.to_dict(), "versions": _versions(), "git_commit": _git_commit(),
                      "host": socket.gethostname(), "argv": sys.argv, "trial": trial}
            write_json_atomic(self.dir / "config.json", config)
            for name, columns in CSV_FILES.items():
                with open(self.dir / name, "w", newline="") as f:
                    csv.writer(f).writerow(columns)
        self.write_summary({"status": "running"})

    def truncate(self, rows: dict[str, int]) -> None:
        """Keep the header and the first rows[name] data rows of each CSV (atomically): rows
        written after a checkpoint are written again when the run resumes from it."""
        for name in CSV_FILES:
            path, keep = self.dir / name, int(rows.get(name, 0))
            with open(path, "rb") as f:
                lines = f.readlines()[:keep + 1]
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self.rows[name] = len(lines) - 1

    def _append(self, name: str, columns: list[str], rows: Iterable[dict]) -> None:
        rows = list(rows)
        with open(self.dir / name, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writerows(rows)
        self.rows[name] += len(rows)

    def add_metrics(self, row: dict) -> None:
        self._append("metrics.csv", METRIC_COLUMNS, [row])

    def add_layers(self, split: str, epoch: int, table: dict[str, dict]) -> None:
        self._append("layers.csv", LAYER_COLUMNS,
                     ({"split": split, "epoch": epoch, "probe": probe, **stats}
                      for probe, stats in table.items()))

    def add_grads(self, rows: list[dict]) -> None:
        self._append("grads.csv", GRAD_COLUMNS, rows)

    def write_summary(self, fields: dict) -> dict:
        summary = {"config": self.cfg.to_dict(), "run_id": self.cfg.run_id,
                   "study": self.cfg.study, "trial": self.trial, **fields}
        write_json_atomic(self.dir / "summary.json", summary)
        return summary
