"""`bench sweep` and `bench status`: W&B-schema sweep files run on Optuna.

    bench sweep sweeps/avalanche.yaml --set dataset=digits --workers 2
    bench status results/avalanche

A sweep is one Optuna study named after the file's `name`, stored in
results/<name>/optuna.journal (or `--storage postgresql://...` to share it between machines);
each trial is one `bench.run.execute` writing results/<name>/runs/trial-NNNN/. The resolved
sweep is saved as results/<name>/sweep.yaml for reports (baseline row, swept parameters).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.sweep.spec import SweepSpec

__all__ = ["main_sweep", "main_status"]

MAX_EXIT = 100


def main_sweep(file: str, sets: list[str] | None = None, workers: int = 1,
               storage: str | None = None, results: str | None = None) -> int:
    """Run (or continue) a sweep; returns the number of failed trials (0 when all completed)."""
    from bench.sweep.spec import load_spec
    from bench.sweep.progress import LiveProgress
    from bench.sweep.status import count_text, counts, table
    from bench.sweep.storage import open_storage, quiet_optuna
    from bench.sweep.study import open_study, recover, study_id, supervise, target_reached

    if workers is None or workers < 1:
        raise BenchError(f"--workers must be >= 1, got {workers}")
    quiet_optuna()
    spec = load_spec(file, sets)
    study_dir = Path(results or "results") / spec.name
    study_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(storage, study_dir, workers=workers)
    study = open_study(spec, store)
    resolved = spec.to_dict()
    _save_yaml(study_dir / "sweep.yaml", resolved)
    sid = study_id(store, spec.name)
    requeued = recover(study, store, spec, retry=True)
    _header(spec, workers, storage, study_dir, store.get_all_trials(sid, deepcopy=False), requeued)
    progress = LiveProgress(store, sid, resolved, workers=workers)
    try:
        supervise(spec, store, study, workers=workers, storage_url=storage,
                  results=str(results or "results"), on_poll=progress.poll)
    except KeyboardInterrupt:
        # Ctrl-C may have hit optuna mid-read: settle the stopped workers' trials (re-queued
        # for the next run) through a fresh storage
        store = open_storage(storage, study_dir, workers=workers)
        recover(open_study(spec, store), store, spec, reason="interrupted (Ctrl-C)")
        raise
    finally:  # also after Ctrl-C: what was done so far
        trials = store.get_all_trials(sid, deepcopy=False)
        c = counts(trials)
        print(f"\n{table(trials, resolved)}\n\n{count_text(c)}\n"
              f"results: {study_dir} (records in {study_dir / 'runs'})", flush=True)
    unrun = 0 if target_reached(spec, trials) else c["left"]
    return min(MAX_EXIT, c["failed"] + unrun)


def _header(spec: "SweepSpec", workers: int, storage: str | None, study_dir: Path, trials: list,
            requeued: list[int]) -> None:
    from bench.sweep.status import count_text, counts
    from bench.sweep.storage import mask

    where = mask(storage) if storage and "://" in storage else storage or str(
        study_dir / "optuna.journal")
    print(f"sweep {spec.name}: {spec.method}, {len(spec.slots())} trials, metric "
          f"{spec.metric} ({spec.goal}), {workers} worker(s), storage {where}", flush=True)
    if any(t.state.is_finished() for t in trials) or requeued:
        print(f"resuming: {count_text(counts(trials))}"
              + (f"; re-queued interrupted trials {requeued}" if requeued else ""), flush=True)


def main_status(results_dir: str, storage: str | None = None) -> int:
    """Print the trial table of the sweep in results_dir (its journal, or --storage)."""
    from bench.sweep.replicates import replicate_keys, replicate_table
    from bench.sweep.status import count_text, counts, table
    from bench.sweep.storage import open_storage, quiet_optuna
    from bench.sweep.study import SPEC_ATTR, study_id

    quiet_optuna()
    path = Path(results_dir)
    if not path.is_dir():
        raise BenchError(f"no sweep folder {path}")
    saved = path / "sweep.yaml"
    name = path.name
    if saved.is_file():
        name = (yaml.safe_load(saved.read_text()) or {}).get("name", name)
    store = open_storage(storage, path, create=False)
    try:
        sid = study_id(store, name)
    except KeyError:
        raise BenchError(f"no sweep named '{name}' in the storage of {path}") from None
    spec = store.get_study_user_attrs(sid).get(SPEC_ATTR) or {}
    trials = store.get_all_trials(sid, deepcopy=False)
    print(table(trials, spec))
    if replicate_keys(spec):
        print(f"\nper configuration, over replicates ({', '.join(replicate_keys(spec))}):\n"
              f"{replicate_table(trials, spec)}")
    print(f"\n{count_text(counts(trials))}\nresults: {path}")
    return 0


def _save_yaml(path: Path, data: dict) -> None:
    """Atomic (temp file + rename): several processes may save the same sweep at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
