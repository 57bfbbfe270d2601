"""The study's queue: its slots enqueued once, WAITING trials claimed and run, dead ones recovered.

The study is a fixed list of *slots*, enqueued once by the process that creates the study:
every grid point, or `run_cap` empty trials that the sampler fills in (RandomSampler / TPE)
when a worker pops them. Workers only ever pop WAITING trials (never `study.ask()`, which
would invent a trial when the queue is empty), so K workers on M machines run each slot once.

Resume: a trial left RUNNING by a process that died, or stopped by a signal, is marked FAIL
(error "interrupted ...") and re-enqueued with the same params by optuna's
RetryHeartbeatStaleTrialCallback, the same callback RDBStorage's heartbeat uses across machines;
the retry keeps the run folder of the first attempt (trial-NNNN of the original number) and
continues from its checkpoint where bench.run.execute can resume. Completed trials are never
re-run. What one trial does: bench.sweep.objective; the processes: bench.sweep.workers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from bench.errors import BenchError, one_line
from bench.record import mark_summary, read_summary
from bench import schema
from bench.schema import (COMPLETED, DIVERGED, ERROR, FAILED, INTERRUPTED, PRUNED, RUNS_DIR,
                          STATUS)
from bench.sweep.attrs import enqueue_args, name_metric, record_best
from bench.sweep.objective import (MetricMissing, Outcome, evaluate, interrupted_error,
                                   make_sampler, metric_value)
from bench.sweep.spec import SweepSpec, upgrade_fingerprint
from bench.sweep.storage import MAX_RETRY, OWNER, owner_alive, owner_info


SPEC_ATTR = schema.SPEC_ATTR  # study user attr: the resolved sweep (a dict), set by the creator
ENQUEUED_ATTR = schema.ENQUEUED_ATTR  # study user attr: number of slots, after enqueueing them
CREATOR_ATTR = schema.CREATOR_ATTR  # study system attr: owner_info of the creating process
ENQUEUE_WAIT_S = 60.0  # how long a loader waits for another machine's creator to enqueue
UNOWNED_GRACE_S = 60.0  # a RUNNING trial with no owner after this long lost its worker


# ---- the study and its slots ----------------------------------------------------------------


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process is given: the sweep, where its study and records live, its place."""

    spec: SweepSpec
    storage: str | None  # URL or journal path; None: results/<name>/optuna.journal
    results: str
    index: int = 0
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None  # torch intra-op threads when workers share the CPU
    parent: int = 0  # the supervising process's pid
    # plugin files and modules the parent's registries came from (bench.plugins.worker_plugins)
    plugins: dict[str, list[str]] = field(default_factory=dict)


def study_id(storage: BaseStorage, name: str) -> int:
    return storage.get_study_id_from_name(name)


def open_study(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    """Create the study and enqueue its slots, or load it and check it is the same sweep."""
    pruner = make_pruner(spec)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, pruner=pruner,
                                    directions=spec.directions, load_if_exists=False)
    except DuplicatedStudyError:  # atomic in both storages: exactly one process creates
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=pruner)
        _wait_until_enqueued(study, spec, storage)
        _check_same_sweep(study, spec)
        return study
    sid = study_id(storage, spec.name)
    storage.set_study_system_attr(sid, CREATOR_ATTR, owner_info(-1))
    name_metric(study, spec)
    storage.set_study_user_attr(sid, SPEC_ATTR, json.loads(spec.fingerprint()))
    _enqueue_missing(study, spec)
    storage.set_study_user_attr(sid, ENQUEUED_ATTR, len(spec.slots()))
    return study


def _enqueue_missing(study: optuna.Study, spec: SweepSpec) -> None:
    """Enqueue every slot that has no trial yet (dedupe by slot index, kept in user attrs)."""
    have = {t.user_attrs.get(schema.SLOT) for t in study.get_trials(deepcopy=False)}
    for slot, point in enumerate(spec.slots()):
        if slot not in have:
            params, attrs = enqueue_args(spec, slot, point)  # replicate keys: user attrs
            study.enqueue_trial(params, user_attrs=attrs)


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
    stored = upgrade_fingerprint(stored)
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


# ---- interrupted trials ---------------------------------------------------------------------

def recover(study: optuna.Study, storage: BaseStorage, spec: SweepSpec, *, retry: bool = True,
            pids: set[int] | None = None, reason: str = "interrupted",
            max_retry: int | None = MAX_RETRY) -> list[int]:
    """Settle RUNNING trials whose process is dead; returns the numbers re-enqueued.

    Owners on this machine are checked by pid; owners elsewhere by RDB heartbeat (optuna's
    fail_stale_trials). `pids`: only trials owned by these (dead) worker pids. A dead trial's
    run record decides: a finished record (the worker died before telling the study) is told
    as it is; a running or missing one is FAIL, and re-enqueued with the same params if `retry`
    (at most `max_retry` times: a trial may be what kills its worker; None: a stop we asked for).
    """
    if isinstance(storage, RDBStorage) and pids is None:
        fail_stale_trials(study)  # heartbeat-stale trials: FAIL + retry_callback
    sid = study_id(storage, study.study_name)
    requeued = []
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
        why = _dead(t, pids, reason)
        if why is None:
            continue
        if not _settle(storage, sid, t, spec, why):
            continue
        again = retry and requeue(study, storage.get_trial(_tid(storage, sid, t.number)),
                                  max_retry)
        if again:
            requeued.append(t.number)
        # its summary.json would say "running" forever
        mark_summary(t.user_attrs.get(schema.RUN_DIR), INTERRUPTED if again else FAILED, why)
    return requeued


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Enqueue a stopped trial again (same params, user attrs, and a retry_history naming it);
    False when it already ran max_retry times."""
    before = len(trial.system_attrs.get("retry_history", []))
    if max_retry is not None and before >= max_retry:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
    return True


def first_number(trial: FrozenTrial) -> int:
    """The number of a trial's first attempt (a retry carries the history of its attempts)."""
    history = trial.system_attrs.get("retry_history") or [trial.number]
    return int(history[0])


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
    run_dir = t.user_attrs.get(schema.RUN_DIR)
    summary = read_summary(run_dir)
    status = summary.get(STATUS)
    if status == COMPLETED:  # the worker died between its record and telling the study
        try:
            values = [metric_value(m, summary, Path(run_dir)) for m in spec.metric_names]
        except (OSError, MetricMissing) as exc:
            _finish(storage, tid, TrialState.FAIL, error=one_line(exc))
            return False
        _finish(storage, tid, TrialState.COMPLETE, values=values)
        return False
    if status in (FAILED, DIVERGED, PRUNED) and not interrupted_error(summary.get(ERROR)):
        state = TrialState.PRUNED if status == PRUNED else TrialState.FAIL
        _finish(storage, tid, state, error=summary.get(ERROR))
        return False
    return _finish(storage, tid, TrialState.FAIL, error=why)


def _finish(storage: BaseStorage, tid: int, state: TrialState, *, error: str | None = None,
            values: list[float] | None = None) -> bool:
    """Set a RUNNING trial's final state; False if it was already finished by someone else."""
    try:
        if error is not None:
            storage.set_trial_user_attr(tid, ERROR, error)
        storage.set_trial_state_values(tid, state, values=values)
    except UpdateFinishedTrialError:
        return False
    return True


# ---- claiming and running a trial -------------------------------------------------------------------------

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
    if spec.target is None or spec.objectives:  # a target is one metric's
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


def run_trial(study: optuna.Study, storage: BaseStorage, tid: int, job: WorkerJob) -> str:
    """A claimed trial, isolated: what it raises is its outcome (bench.sweep.objective); a stop
    (a signal to its worker, a full disk) re-queues it. Returns "done", "interrupted" or
    "disk full"."""
    spec = job.spec
    frozen = storage.get_trial(tid)
    storage.set_trial_system_attr(tid, OWNER, owner_info(frozen.number))
    run_id = f"trial-{first_number(frozen):04d}"  # a retry continues its first attempt's folder
    run_dir = (Path(job.results) / spec.name / RUNS_DIR / run_id).absolute()  # for any cwd
    for key, value in ((schema.RUN_DIR, str(run_dir)), (ERROR, None), (schema.RUN_ID, run_id)):
        storage.set_trial_user_attr(tid, key, value)
    study.sampler = make_sampler(spec, frozen.number)
    # the study reads an RDB through optuna's trial cache, which must see the trial we popped
    study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trial = optuna.Trial(study, tid)
    beat = _Heartbeat(storage, tid)
    try:
        end = evaluate(trial, spec, job.results, run_dir)
    finally:
        beat.close()
    if end.stopped is not None:
        _requeue_stopped(study, storage, tid, run_dir, end.stopped)
        return "disk full" if end.stopped == "disk full" else "interrupted"
    _tell(study, storage, tid, trial, end, spec)
    return "done"


def _tell(study: optuna.Study, storage: BaseStorage, tid: int, trial: optuna.Trial,
          end: Outcome, spec: SweepSpec) -> None:
    """The trial's state, value, one-line error and a bug's traceback into the study."""
    try:
        for key, value in ((ERROR, end.error), (schema.TRACEBACK, end.traceback)):
            if value is not None:
                storage.set_trial_user_attr(tid, key, value)
        study.tell(trial, end.value if end.state == TrialState.COMPLETE else None,
                   state=end.state)
        if end.state == TrialState.COMPLETE:
            record_best(study, json.loads(spec.fingerprint()))
    except UpdateFinishedTrialError:  # another machine judged us dead (missed heartbeats)
        print(f"trial {trial.number}: finished after it was given up and re-queued",
              file=sys.stderr, flush=True)


def _requeue_stopped(study: optuna.Study, storage: BaseStorage, tid: int, run_dir: Path,
                     why: str) -> None:
    """A trial we stopped is not a failed one: its record says "interrupted" and it runs again
    (with a full disk these writes may fail: the parent or the next sweep settles it)."""
    mark_summary(run_dir, INTERRUPTED, why)
    if _finish(storage, tid, TrialState.FAIL, error=why):
        requeue(study, storage.get_trial(tid), max_retry=None)
