"""`bench sweep` and `bench status`: W&B-schema sweep files run on Optuna.

    bench sweep sweeps/avalanche.yaml --set dataset=digits --workers 2
    bench status results/avalanche

A sweep is one Optuna study named after the file's `name`, stored in
results/<name>/optuna.journal (or `--storage postgresql://...` to share it between machines);
each trial is one `bench.run.execute` writing results/<name>/runs/trial-NNNN/. The resolved
sweep is saved as results/<name>/sweep.yaml for reports (baseline row, swept parameters).

Exit code of `bench sweep`: 0 every trial done, 1 some trials failed (the table says which) or
were left unrun, 2 a command mistake (one line), 130 interrupted (the same command continues).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bench import schema
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.sweep.spec import SweepSpec

__all__ = ["main_sweep", "main_status"]

MAX_WORKERS = 64  # worker processes on one machine


def main_sweep(file: str, sets: list[str] | None = None, workers: int = 1,
               storage: str | None = None, results: str | None = None,
               plugins: list[str] | None = None) -> int:
    """Run (or continue) a sweep; returns 0 when every trial is done, 1 when some failed or
    were left unrun; raises Interrupted (a KeyboardInterrupt: exit 130) when stopped.
    `plugins` (--plugin) join the file's `plugins` key, as a --set of it would."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _sweep(file, sets, workers, storage, results, plugins)
    finally:
        for s, handler in old.items():
            _on_signals(handler, (s,))


def _sweep(file: str, sets: list[str] | None, workers: int, storage: str | None,
           results: str | None, plugins: list[str] | None = None) -> int:
    from bench.sweep.start import worker_context

    worker_context()  # the fork server's imports run beside ours (a refused sweep: it ends too)

    from bench.plugins import load_plugins
    from bench.sweep.spec import load_spec
    from bench.sweep.progress import LiveProgress
    from bench.sweep.status import count_text, counts, table
    from bench.sweep.storage import open_storage, quiet_optuna
    from bench.sweep.queue import open_study, recover, study_id, target_reached
    from bench.sweep.workers import Interrupted, raise_interrupted, supervise

    if workers is None or not 1 <= workers <= MAX_WORKERS:
        raise BenchError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    quiet_optuna()
    load_plugins(plugins or ())  # before the file's names are checked
    spec = load_spec(file, sets)
    if plugins:  # recorded in every trial's config like any fixed key
        listed = list(dict.fromkeys([*spec.fixed.get("plugins", ()), *plugins]))
        spec = load_spec(file, [*(sets or []), f"plugins={json.dumps(listed)}"])
    root = Path(results or "results")
    for folder in (root, root / spec.name):
        if folder.exists() and not folder.is_dir():
            raise BenchError(f"{'--results ' if folder == root else ''}{folder} is a file, "
                             "not a folder")
    study_dir = root / spec.name
    _on_signals(raise_interrupted)  # SIGTERM ends the sweep as Ctrl-C does, never silently
    created = [f for f in (root, study_dir) if not f.exists()]
    study_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_storage(storage, study_dir, workers=workers)
        study = open_study(spec, store)
    except BaseException:  # a refused storage or study leaves no empty results/<name>/
        _remove_empty(created)
        raise
    resolved = spec.to_dict()
    if sets and resolved.get("description"):  # the file's words may name what --set changed
        resolved["description"] = (f"{resolved['description']} [the sweep file's description; "
                                   f"run with --set {' '.join(sets)}: the parameters below are "
                                   f"the values used]")
    study.set_user_attr(schema.DESCRIPTION_ATTR, resolved.get("description"))
    _save_yaml(study_dir / "sweep.yaml", resolved)
    sid = study_id(store, spec.name)
    requeued = recover(study, store, spec, retry=True)
    _header(spec, workers, storage, study_dir, store.get_all_trials(sid, deepcopy=False), requeued)
    progress = LiveProgress(store, sid, resolved, workers=workers)
    try:
        supervise(spec, store, study, workers=workers, storage_url=storage,
                  results=str(results or "results"), on_poll=progress.poll)
    except Interrupted as exc:
        trials = store.get_all_trials(sid, deepcopy=False)
        print(f"\n{table(trials, resolved)}\n\n{count_text(counts(trials))}\n"
              f"stopped by {exc.signame}: running trials {exc.requeued} re-queued; "
              "the same command continues the sweep", flush=True)
        raise
    trials = store.get_all_trials(sid, deepcopy=False)
    c = counts(trials)
    print(f"\n{table(trials, resolved)}\n\n{count_text(c)}\n"
          f"results: {study_dir} (records in {study_dir / 'runs'})", flush=True)
    unrun = 0 if target_reached(spec, trials) else c["left"]
    return 1 if c["failed"] or unrun else 0


def _remove_empty(folders: list[Path]) -> None:
    """The folders this command created, deepest first, where they are still empty."""
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty (a journal was started): keep it
            pass


def _on_signals(handler: object, which: tuple = (signal.SIGINT, signal.SIGTERM)) -> None:
    try:
        for s in which:
            signal.signal(s, handler)  # type: ignore[arg-type]
    except ValueError:  # not the main thread (a notebook's worker thread): leave them be
        pass


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
    import optuna

    from bench.sweep.replicates import replicate_keys, replicate_table
    from bench.sweep.status import best_text, count_text, counts, front_text, objectives, table
    from bench.sweep.storage import open_storage, quiet_optuna
    from bench.sweep.queue import SPEC_ATTR, study_id

    quiet_optuna()
    path = Path(results_dir)
    if not path.is_dir():
        raise BenchError(f"no sweep folder {path}")
    name = _saved_name(path / "sweep.yaml", path.name)
    store = open_storage(storage, path, create=False)
    try:
        sid = study_id(store, name)
    except KeyError:
        raise BenchError(f"no sweep named '{name}' in the storage of {path}") from None
    spec = store.get_study_user_attrs(sid).get(SPEC_ATTR)
    spec = spec if isinstance(spec, dict) else {}
    trials = store.get_all_trials(sid, deepcopy=False)
    print(table(trials, spec))
    front = (optuna.load_study(study_name=name, storage=store).best_trials
             if len(objectives(spec)) > 1 else [])
    for line in (best_text(trials, spec), front_text(front, spec)):
        if line:  # the best by its mean, not the one lucky seed atop the table
            print(f"\n{line}")
    if replicate_keys(spec):
        print(f"\nper configuration, over replicates ({', '.join(replicate_keys(spec))}):\n"
              f"{replicate_table(trials, spec)}")
    print(f"\n{count_text(counts(trials))}\nresults: {path}")
    return 0


def _saved_name(saved: Path, default: str) -> str:
    """The sweep name in a study folder's sweep.yaml (written by bench sweep)."""
    if not saved.is_file():
        return default
    try:
        data = yaml.safe_load(saved.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise BenchError(f"{saved}: not a sweep file bench wrote (unreadable YAML); "
                         "delete it and re-run `bench sweep` of that study") from None
    name = data.get("name", default) if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise BenchError(f"{saved}: no sweep name in it; delete it and re-run `bench sweep` "
                         "of that study")
    return name


def _save_yaml(path: Path, data: dict) -> None:
    """Atomic (temp file + rename): several processes may save the same sweep at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
