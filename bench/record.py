"""The run record under results/<study>/runs/<run_id>/: the source of truth for reports.

config.json at the start; metrics.csv, layers.csv and grads.csv as training goes; summary.json
with status "running" at the start and its final form at the end, each write atomic (a temp file
renamed over the old one) so a killed run never leaves a half-written file. This module is the
only writer of summary.json (a sweep marks or fills in a trial's through the functions at the
end); the names of files, fields and columns are bench.schema's.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from bench import schema
from bench.config import RunConfig
from bench.errors import BenchError

try:
    import fcntl
except ImportError:  # not POSIX: run folders are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"  # in a run folder: "pid P on HOST" of the process running it (flock)
# files written through a temp file ".<name>.<random>" renamed over them
ATOMIC_FILES = (schema.SUMMARY_FILE, schema.CONFIG_FILE, *schema.CSV_COLUMNS,
                *schema.CHECKPOINT_FILES.values())


def run_dir(cfg: RunConfig) -> Path:
    return Path(cfg.results) / cfg.study / schema.RUNS_DIR / cfg.run_id


def check_writable(folder: Path) -> None:
    """Create `folder` and a file in it, or BenchError "<reason> <folder>" (a read-only file
    system, no permission, a full disk) before anything of the run is written."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise BenchError(f"{exc.strerror or exc} {exc.filename or folder}") from None


class RunLock:
    """The run folder held by one process (fcntl.flock on `.lock`, which records the holder):
    a second process running or resuming the same folder is refused in one line. The kernel
    drops the lock when its holder dies, so a stale lock (kill -9, a dead node) is taken
    over by the next start. Also a context manager."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.fd = Path(folder), None

    def acquire(self) -> None:
        if fcntl is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):  # a file system without locks
                os.close(fd)
                return
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise BenchError(f"run folder {self.folder} is in use by {holder}; wait for it to "
                             "end, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:  # the file stays: unlinking it would let two holders in
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temp files of atomic writes that a kill -9 cut short (`.last.ckpt.x1y2`, ...): only
    call it while holding the folder's RunLock (a live run's temp file is not stale)."""
    stale = [p for name in ATOMIC_FILES for p in Path(folder).glob(f".{name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: no temp file left behind
        Path(tmp).unlink(missing_ok=True)
        raise


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
        self.rows = {name: 0 for name in schema.CSV_COLUMNS}
        if not resume:
            config = {**cfg.to_dict(), schema.VERSIONS: _versions(),
                      schema.GIT_COMMIT: _git_commit(), schema.HOST: socket.gethostname(),
                      schema.ARGV: sys.argv, schema.TRIAL: trial}
            write_json_atomic(self.dir / schema.CONFIG_FILE, config)
            for name, columns in schema.CSV_COLUMNS.items():
                with open(self.dir / name, "w", newline="") as f:
                    csv.writer(f).writerow(columns)
        self.write_summary({schema.STATUS: schema.RUNNING})

    def truncate(self, rows: dict[str, int]) -> None:
        """Keep the header and the first rows[name] data rows of each CSV (atomically): rows
        written after a checkpoint are written again when the run resumes from it."""
        for name in schema.CSV_COLUMNS:
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
        self._append(schema.METRICS_FILE, schema.METRIC_COLUMNS, [row])

    def add_layers(self, split: str, epoch: int, table: dict[str, dict]) -> None:
        self._append(schema.LAYERS_FILE, schema.LAYER_COLUMNS,
                     ({schema.SPLIT: split, schema.EPOCH: epoch, schema.PROBE: probe, **stats}
                      for probe, stats in table.items()))

    def add_grads(self, rows: list[dict]) -> None:
        self._append(schema.GRADS_FILE, schema.GRAD_COLUMNS, rows)

    def write_summary(self, fields: dict) -> dict:
        summary = {schema.CONFIG: self.cfg.to_dict(), schema.RUN_ID: self.cfg.run_id,
                   schema.STUDY: self.cfg.study, schema.TRIAL: self.trial, **fields}
        write_json_atomic(self.dir / schema.SUMMARY_FILE, summary)
        return summary


def read_summary(folder: str | Path | None) -> dict[str, Any]:
    """A record folder's summary.json; {} when there is none or it is not a JSON object."""
    if not folder:
        return {}
    try:
        data = json.loads((Path(folder) / schema.SUMMARY_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def mark_summary(folder: str | Path | None, status: str, error: str) -> None:
    """Set a stopped run's status and error (it keeps what it measured so far); nothing when it
    has no summary yet, or when the write fails (e.g. the disk is still full: whoever settles
    the run next marks it again)."""
    summary = read_summary(folder)
    if not summary:
        return
    try:
        write_json_atomic(Path(folder) / schema.SUMMARY_FILE,
                          {**summary, schema.STATUS: status, schema.ERROR: error})
    except OSError:
        pass


def write_failure_summary(folder: Path, *, study: str, trial: int | None, config: dict[str, Any],
                          error: str, traceback: str | None = None) -> None:
    """A run that failed before its record started (e.g. a bad value in a sweep trial's grid
    point) still leaves summary.json, so reports see it; `config` holds the requested keys only.
    A run that recorded its own failure keeps its summary; a bug's `traceback` is added to it."""
    folder = Path(folder)
    summary = read_summary(folder)
    if summary.get(schema.STATUS) in (None, schema.RUNNING):
        base = {schema.RUN_ID: folder.name, schema.STUDY: study, schema.TRIAL: trial,
                schema.CONFIG: config}
        summary = {**base, **summary, schema.STATUS: schema.FAILED, schema.ERROR: error}
    elif traceback is None:
        return  # the run recorded its failure itself
    if traceback is not None:
        summary[schema.TRACEBACK] = traceback
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / schema.SUMMARY_FILE, summary)