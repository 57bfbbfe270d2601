"""Running a sweep on Optuna: one study, its trials enqueued once, K worker processes.

The study is a fixed list of *slots*, enqueued once by the process that creates the study:
every grid point, or `run_cap` empty trials that the sampler fills in (RandomSampler / TPE)
when a worker pops them. Workers only ever pop WAITING trials (never `study.ask()`, which
would invent a trial when the queue is empty), so K workers on M machines run each slot once.

Resume: a trial left RUNNING by a process that died is marked FAIL (error "interrupted") and
re-enqueued with the same params by optuna's RetryHeartbeatStaleTrialCallback, the same
callback RDBStorage's heartbeat uses across machines. Completed trials are never re-run.
"""

from __future__ import annotations

import csv
import gc
import json
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from bench.errors import BenchError
from bench.sweep.spec import SUMMARY_METRICS, SweepSpec
from bench.sweep.storage import (OWNER, open_storage, owner_alive, owner_info, quiet_optuna,
                                 retry_callback)

SPEC_ATTR = "bench:spec"  # study user attr: the resolved sweep (a dict), set by the creator
ENQUEUED_ATTR = "bench:enqueued"  # study user attr: number of slots, set after enqueueing them
CREATOR_ATTR = "bench:creator"  # study system attr: owner_info of the creating process
ENQUEUE_WAIT_S = 60.0  # how long a loader waits for another machine's creator to enqueue
UNOWNED_GRACE_S = 60.0  # a RUNNING trial with no owner after this long lost its worker
POLL_S = 1.0
# trial errors that are results, not bugs: printed as one line, without a traceback
EXPECTED = (BenchError, FloatingPointError, MemoryError, ValueError)


# ---- the study and its slots ----------------------------------------------------------------

def study_id(storage: BaseStorage, name: str) -> int:
    return storage.get_study_id_from_name(name)


def open_study(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    """Create the study and enqueue its slots, or load it and check it is the same sweep."""
    pruner = make_pruner(spec)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, pruner=pruner,
                                    direction=spec.direction, load_if_exists=False)
    except DuplicatedStudyError:  # atomic in both storages: exactly one process creates
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=pruner)
        _wait_until_enqueued(study, spec, storage)
        _check_same_sweep(study, spec)
        return study
    sid = study_id(storage, spec.name)
    storage.set_study_system_attr(sid, CREATOR_ATTR, owner_info(-1))
    storage.set_study_user_attr(sid, SPEC_ATTR, json.loads(spec.fingerprint()))
    _enqueue_missing(study, spec)
    storage.set_study_user_attr(sid, ENQUEUED_ATTR, len(spec.slots()))
    return study


def _enqueue_missing(study: optuna.Study, spec: SweepSpec) -> None:
    """Enqueue every slot that has no trial yet (dedupe by slot index, kept in user attrs)."""
    have = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
    for slot, params in enumerate(spec.slots()):
        if slot not in have:
            study.enqueue_trial(params, user_attrs={"slot": slot})


def _wait_until_enqueued(study: optuna.Study, spec: SweepSpec, storage: BaseStorage) -> None:
    """A loader waits for the creator to finish enqueueing; if the creator died half-way (or
    never shows up), it enqueues the missing slots itself."""
    sid = study_id(storage, spec.name)
    deadline = time.monotonic() + ENQUEUE_WAIT_S
    while ENQUEUED_ATTR not in storage.get_study_user_attrs(sid):
        creator = storage.get_study_system_attrs(sid).get(CREATOR_ATTR)
        if (creator and owner_alive(creator) is False) or time.monotonic() > deadline:
            if SPEC_ATTR not in storage.get_study_user_attrs(sid):
                storage.set_study_user_attr(sid, SPEC_ATTR, json.loads(spec.fingerprint()))
            _check_same_sweep(study, spec)
            _enqueue_missing(study, spec)
            storage.set_study_user_attr(sid, ENQUEUED_ATTR, len(spec.slots()))
            return
        time.sleep(0.2)


def _check_same_sweep(study: optuna.Study, spec: SweepSpec) -> None:
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return
    mine = json.loads(spec.fingerprint())
    if json.dumps(stored, sort_keys=True) == json.dumps(mine, sort_keys=True):
        return
    diff = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
    if "parameters" in diff:
        a, b = stored.get("parameters", {}), mine.get("parameters", {})
        diff.remove("parameters")
        diff += [f"parameters.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    raise BenchError(f"sweep '{spec.name}' already exists in this storage with other settings "
                     f"(differs in: {', '.join(diff)}); re-run it with the same file and --set, "
                     "or use another name or --results")


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    args = spec.hyperband()
    return optuna.pruners.HyperbandPruner(**args) if args else optuna.pruners.NopPruner()


def make_sampler(spec: SweepSpec, trial_number: int) -> optuna.samplers.BaseSampler:
    """Seeded by trial number, so K processes never draw the same points (grid trials are
    all enqueued with fixed params: the sampler is unused; a re-run keeps its params)."""
    if spec.method == "bayes":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out
        return optuna.samplers.TPESampler(seed=trial_number, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=trial_number)


# ---- interrupted trials ---------------------------------------------------------------------

def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of interrupted trials that were re-enqueued (their retry carries the history)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", []))
    return out


def recover(study: optuna.Study, storage: BaseStorage, spec: SweepSpec, *, retry: bool = True,
            pids: set[int] | None = None, reason: str = "interrupted") -> list[int]:
    """Settle RUNNING trials whose process is dead; returns the numbers re-enqueued.

    Owners on this machine are checked by pid; owners elsewhere by RDB heartbeat (optuna's
    fail_stale_trials). `pids`: only trials owned by these (dead) worker pids. A dead trial's
    run record decides: a finished record (the worker died before telling the study) is told
    as it is; a running or missing one is FAIL, and re-enqueued with the same params if `retry`.
    """
    if isinstance(storage, RDBStorage) and pids is None:
        fail_stale_trials(study)  # heartbeat-stale trials: FAIL + retry_callback
    sid = study_id(storage, study.study_name)
    requeued = []
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
        why = _dead(t, pids, reason)
        if why is None:
            continue
        if _settle(storage, sid, t, spec, why) and retry:
            requeued.append(t.number)
            retry_callback()(study, storage.get_trial(_tid(storage, sid, t.number)))
    return requeued


def _dead(t: FrozenTrial, pids: set[int] | None, reason: str) -> str | None:
    """Why trial t is dead, or None if it may still be running."""
    owner = t.system_attrs.get(OWNER)
    mine = owner is not None and owner.get("trial") == t.number  # not copied from a retry
    if pids is not None:
        return reason if mine and owner_alive(owner) is False and int(owner["pid"]) in pids \
            else None
    if mine:
        if owner_alive(owner) is not False:
            return None  # alive, or on another machine (the heartbeat decides there)
        return f"{reason}: worker {owner['host']}:{owner['pid']} died"
    started = t.datetime_start or datetime.now()
    if (datetime.now() - started).total_seconds() < UNOWNED_GRACE_S:
        return None  # just popped: its worker is writing its owner now
    return f"{reason}: the trial never reached its worker"


def _tid(storage: BaseStorage, sid: int, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(sid, number)


def _settle(storage: BaseStorage, sid: int, t: FrozenTrial, spec: SweepSpec, why: str) -> bool:
    """Finish a dead trial from its record; True if it was interrupted (worth a re-run) and
    this process settled it (another process settling the same trial first wins)."""
    tid = _tid(storage, sid, t.number)
    run_dir = t.user_attrs.get("run_dir")
    summary = _read_summary(run_dir)
    status = summary.get("status")
    if status == "completed":  # the worker died between its record and telling the study
        try:
            value = metric_value(spec.metric, summary, Path(run_dir))
        except (OSError, ValueError) as exc:
            _finish(storage, tid, TrialState.FAIL, error=one_line(exc))
            return False
        _finish(storage, tid, TrialState.COMPLETE, values=[value])
        return False
    if status in ("failed", "pruned"):
        state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
        _finish(storage, tid, state, error=summary.get("error"))
        return False
    if not _finish(storage, tid, TrialState.FAIL, error=why):
        return False
    if status == "running":  # its summary.json would say "running" forever
        from bench.record import write_json_atomic

        write_json_atomic(Path(run_dir) / "summary.json",
                          {**summary, "status": "failed", "error": why})
    return True


def _finish(storage: BaseStorage, tid: int, state: TrialState, *, error: str | None = None,
            values: list[float] | None = None) -> bool:
    """Set a RUNNING trial's final state; False if it was already finished by someone else."""
    try:
        if error is not None:
            storage.set_trial_user_attr(tid, "error", error)
        storage.set_trial_state_values(tid, state, values=values)
    except UpdateFinishedTrialError:
        return False
    return True


def _read_summary(run_dir: str | None) -> dict[str, Any]:
    if not run_dir:
        return {}
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


# ---- one worker process ---------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerJob:
    spec: SweepSpec
    storage: str | None  # URL or journal path; None: results/<name>/optuna.journal
    results: str
    index: int = 0
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None  # torch intra-op threads when workers share the CPU


def worker_main(job: WorkerJob) -> None:
    """Pop and run WAITING trials until none are left (a process of its own)."""
    os.environ.update(job.env)  # CUDA_VISIBLE_DEVICES before torch is imported
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us and re-queues
    _quiet_trials()
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    spec = job.spec
    storage = open_storage(job.storage, Path(job.results) / spec.name)
    study = optuna.load_study(study_name=spec.name, storage=storage, pruner=make_pruner(spec))
    sid = study_id(storage, spec.name)
    while not target_reached(spec, storage.get_all_trials(sid, deepcopy=False)):
        if isinstance(storage, RDBStorage):
            fail_stale_trials(study)
        tid = pop_waiting(storage, sid)
        if tid is None:
            return
        run_trial(study, storage, tid, job)


def _quiet_trials() -> None:
    """One progress line per trial: silence Lightning's per-run banners and deprecations."""
    import logging

    import lightning  # noqa: F401  (its import resets its loggers to INFO)

    quiet_optuna()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")


def pop_waiting(storage: BaseStorage, sid: int) -> int | None:
    """Claim the lowest WAITING trial (WAITING -> RUNNING is atomic in journal and RDB)."""
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)):
        tid = _tid(storage, sid, t.number)
        try:
            if storage.set_trial_state_values(tid, TrialState.RUNNING):
                return tid
        except UpdateFinishedTrialError:
            continue
    return None


def target_reached(spec: SweepSpec, trials: list[FrozenTrial]) -> bool:
    if spec.target is None:
        return False
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if spec.goal == "maximize":
        return any(v >= spec.target for v in values)
    return any(v <= spec.target for v in values)


class _Heartbeat:
    """RDB heartbeat while a trial runs (what study.optimize does), so other machines can
    tell a dead worker's trial from a slow one."""

    def __init__(self, storage: BaseStorage, tid: int) -> None:
        self.storage, self.tid = storage, tid
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval():
            self.thread = threading.Thread(target=self._beat, daemon=True)
            self.thread.start()

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            try:
                self.storage.record_heartbeat(self.tid)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the trial goes on
                pass
            if self.stop.wait(interval):
                return

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def run_trial(study: optuna.Study, storage: BaseStorage, tid: int, job: WorkerJob) -> None:
    """One trial, isolated: any exception marks it FAIL with its one-line error."""
    spec = job.spec
    number = storage.get_trial(tid).number
    storage.set_trial_system_attr(tid, OWNER, owner_info(number))
    run_id = f"trial-{number:04d}"
    run_dir = (Path(job.results) / spec.name / "runs" / run_id).absolute()  # for any cwd
    for key, value in (("run_dir", str(run_dir)), ("error", None), ("run_id", run_id)):
        storage.set_trial_user_attr(tid, key, value)
    study.sampler = make_sampler(spec, number)
    # the study reads an RDB through optuna's trial cache, which must see the trial we popped
    study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trial = optuna.Trial(study, tid)
    beat = _Heartbeat(storage, tid)
    state, value, error, params = TrialState.FAIL, None, None, {}
    try:
        params = suggest(trial, spec)
        value = objective(trial, spec, params, job.results, run_id)
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except Exception as exc:  # noqa: BLE001 - the trial fails, the sweep goes on
        error = one_line(exc)
        if not _expected(exc):  # a bug, not a bad setting: show where
            print(f"trial {number}: {traceback.format_exc()}", file=sys.stderr, flush=True)
        if _read_summary(str(run_dir)).get("status") in (None, "running"):
            _failure_record(run_dir, spec, number, params, error)
    finally:
        beat.close()
        _free_memory()
    try:
        if error is not None:
            storage.set_trial_user_attr(tid, "error", error)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except UpdateFinishedTrialError:  # another machine judged us dead (missed heartbeats)
        print(f"trial {number}: finished after it was given up and re-queued",
              file=sys.stderr, flush=True)


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """The trial's swept values: enqueued grid points come back as given, others are sampled."""
    out = {}
    for name, dist in spec.distributions().items():
        if isinstance(dist, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            out[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            assert isinstance(dist, FloatDistribution)
            out[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step,
                                            log=dist.log)
    return out


def trial_layers(spec: SweepSpec, params: dict[str, Any], results: str,
                 run_id: str) -> list[dict[str, Any]]:
    """Config layers of a trial: fixed values < sampled params < the sweep's own keys."""
    own: dict[str, Any] = {"study": spec.name, "results": str(results), "run_id": run_id}
    if spec.project and "project" not in spec.fixed and "project" not in params:
        own["project"] = spec.project
    defaults = {"progress_bar": False}  # K workers' progress bars would interleave
    return [defaults, spec.fixed, params, own]


def objective(trial: optuna.Trial, spec: SweepSpec, params: dict[str, Any], results: str,
              run_id: str) -> float:
    from bench.config import build_config
    from bench.record import run_dir
    from bench.run import execute

    cfg = build_config(*trial_layers(spec, params, results, run_id))
    callbacks = []
    if spec.early_terminate:
        from optuna_integration import PyTorchLightningPruningCallback

        # optuna_integration imports `lightning.pytorch` (checked with lightning 2.6): it reports
        # the monitored metric after every validation epoch and raises TrialPruned
        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=spec.monitor()))
    summary = execute(cfg, trial=trial.number, callbacks=callbacks)
    return metric_value(spec.metric, summary, run_dir(cfg))


def metric_value(name: str, summary: dict[str, Any], run_dir: Path) -> float:
    """A summary.json scalar, or the last value of a metrics.csv column (e.g. val/acc)."""
    if name in SUMMARY_METRICS:
        value = summary.get(name)
    else:
        value = None
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row.get(name) not in (None, ""):
                    value = float(row[name])
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"metric '{name}' is {value} in the run record")
    return float(value)


def _expected(exc: BaseException) -> bool:
    return isinstance(exc, EXPECTED) or type(exc).__name__ == "OutOfMemoryError"  # CUDA OOM


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure_record(run_dir: Path, spec: SweepSpec, number: int, params: dict[str, Any],
                    error: str) -> None:
    """A trial that failed before its run started (e.g. a bad value in its grid point) still
    leaves summary.json, so reports see it; `config` holds the requested keys only."""
    from bench.record import write_json_atomic

    run_dir.mkdir(parents=True, exist_ok=True)
    base = {"run_id": run_dir.name, "study": spec.name, "trial": number,
            "config": {**spec.fixed, **params}}
    write_json_atomic(run_dir / "summary.json", {**base, **_read_summary(str(run_dir)),
                                                 "status": "failed", "error": error})


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()  # after a CUDA OOM the next trial starts clean


# ---- the parent process ---------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """This process's GPUs as CUDA_VISIBLE_DEVICES names them (ids or UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    torch = sys.modules.get("torch")
    count = torch.cuda.device_count() if torch is not None else 0
    return [str(i) for i in range(count)]


def gpu_env(workers: int, gpus: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Worker i sees GPU i (mod count) when several GPUs are present; else nothing changes.
    `gpus`: the devices to share out (default: visible_gpus())."""
    gpus = visible_gpus() if gpus is None else list(gpus)
    if len(gpus) < 2:
        return [{} for _ in range(workers)]
    return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(workers)]


def cpu_threads(workers: int, env: list[dict[str, str]]) -> int | None:
    """Split the cores between CPU workers (torch would give each one all of them)."""
    if workers < 2 or any(env):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def supervise(spec: SweepSpec, storage: BaseStorage, study: optuna.Study, *, workers: int,
              storage_url: str | None, results: str, on_poll: Callable[[], None]) -> None:
    """Run `workers` worker processes to the end of the queue, calling on_poll() each second.

    A worker that dies mid-trial (e.g. killed for memory) fails that trial, which is not
    retried, and a new worker takes its place while trials are left. On Ctrl-C the workers
    are stopped and KeyboardInterrupt goes on to the caller."""
    ctx = multiprocessing.get_context("spawn")
    envs = gpu_env(workers)
    threads = cpu_threads(workers, envs)
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def start(i: int) -> None:
        job = WorkerJob(spec, storage_url, results, index=i, env=envs[i], threads=threads)
        procs[i] = ctx.Process(target=worker_main, args=(job,), name=f"bench-sweep-{i}")
        procs[i].start()

    sid = study_id(storage, spec.name)
    waiting = storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,))
    for i in range(min(workers, len(waiting))):  # a finished sweep starts no worker
        start(i)
    try:
        while procs:
            time.sleep(POLL_S)
            for i, p in list(procs.items()):
                if p.is_alive():
                    continue
                p.join()
                del procs[i]
                if p.exitcode != 0:
                    recover(study, storage, spec, retry=False, pids={p.pid},
                            reason=f"worker process died ({_exit_text(p.exitcode)})")
                    # a trial killed its worker: replace it; one that died before any trial
                    # would die again (a broken storage or install): let the sweep end
                    if _ran_trials(storage, sid, p.pid) and storage.get_all_trials(
                            sid, deepcopy=False, states=(TrialState.WAITING,)):
                        start(i)
            on_poll()
    except KeyboardInterrupt:  # the caller re-queues their trials (workers ignore SIGINT)
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.join()
        raise
    on_poll()


def _ran_trials(storage: BaseStorage, sid: int, pid: int) -> bool:
    host = socket.gethostname()
    return any(t.system_attrs.get(OWNER, {}).get("pid") == pid
               and t.system_attrs[OWNER].get("host") == host
               for t in storage.get_all_trials(sid, deepcopy=False))


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}" + (
                ", out of memory?" if -code == signal.SIGKILL else "")
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
