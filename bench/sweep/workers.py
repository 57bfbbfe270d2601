"""The processes of a sweep: the parent supervising K workers, and what stops them.

Stopping never loses a grid point:
- SIGINT (Ctrl-C) or SIGTERM (a scheduler's time limit) to the parent: it sends SIGTERM to its
  workers, waits up to STOP_WAIT_S for them (a second signal: SIGKILL at once), re-queues their
  trials and exits 130. A worker's SIGTERM handler only sets a flag; the trial ends at its next
  batch (a Lightning callback here, and Lightning's own SIGTERMException), its record says
  "interrupted" and it is re-queued: WAITING again, same params, same run folder.
- kill -9 of the parent: workers die with it (Linux PR_SET_PDEATHSIG, else a watcher thread);
  the next `bench sweep` re-queues their trials from their owner records.
- a worker that dies on its own (kill -9, the OOM killer): its trial is re-queued, at most
  storage.MAX_RETRY times (it may be the trial that kills its worker).
- a full disk (ENOSPC) in a worker: it exits with DISK_FULL; the parent stops the others,
  re-queues their trials and ends with one line (exit 2); the same command resumes later.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
import warnings
from multiprocessing.connection import wait as wait_any
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.storages import BaseStorage, RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from bench.errors import BenchError
from bench.stopping import disk_full, stop_requested
from bench.sweep.attrs import superseded
from bench.sweep.queue import (WorkerJob, make_pruner, pop_waiting, recover, run_trial, study_id,
                               target_reached)
from bench.sweep.stopping import setup_worker
from bench.sweep.spec import SweepSpec
from bench.sweep.start import worker_context
from bench.sweep.storage import OWNER, open_storage, quiet_optuna

STOP_WAIT_S = 30.0  # how long stopped workers get to re-queue their trials before SIGKILL
POLL_S = 1.0
DISK_FULL = 75  # a worker's exit code when a trial stopped on a full disk (EX_TEMPFAIL)


class Interrupted(KeyboardInterrupt):
    """The sweep was stopped by a signal; `requeued` trial numbers run again next time."""

    def __init__(self, signame: str, requeued: list[int] | None = None) -> None:
        super().__init__(signame)
        self.signame, self.requeued = signame, requeued or []


def worker_main(job: WorkerJob) -> None:
    """Pop and run WAITING trials until none are left or we are told to stop."""
    setup_worker(_started_by(job.parent))
    os.environ.update(job.env)  # CUDA_VISIBLE_DEVICES before CUDA is initialised
    try:
        _work(job)
    except OSError as exc:
        if disk_full(exc):  # the study's storage itself could not be written
            sys.exit(DISK_FULL)
        raise


def _started_by(sweep: int) -> int:
    """The process whose death must end this worker: the sweep itself (spawn) or the fork
    server it started (which dies with the sweep); exits at once if the sweep is gone."""
    parent = os.getppid()
    if parent != sweep:
        try:
            os.kill(sweep, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
    return parent


def _work(job: WorkerJob) -> None:
    _quiet_trials()
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    if job.plugins:
        from bench.plugins import load_worker_plugins

        load_worker_plugins(job.plugins)  # a spawned interpreter: the registries start empty
    spec = job.spec
    storage = open_storage(job.storage, Path(job.results) / spec.name)
    study = optuna.load_study(study_name=spec.name, storage=storage, pruner=make_pruner(spec))
    sid = study_id(storage, spec.name)
    while not stop_requested() and not target_reached(
            spec, storage.get_all_trials(sid, deepcopy=False)):
        if isinstance(storage, RDBStorage):
            fail_stale_trials(study)
        tid = pop_waiting(storage, sid)
        if tid is None:
            return
        if run_trial(study, storage, tid, job) == "disk full":
            sys.exit(DISK_FULL)


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


# ---- the parent -----------------------------------------------------------------------------

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


def raise_interrupted(signum: int, frame: Any) -> None:
    """Before and after the workers run, SIGINT and SIGTERM end the parent as Ctrl-C does."""
    raise Interrupted(signal.Signals(signum).name)


class _Signals:
    """While workers run, the parent's SIGINT/SIGTERM handler only records the signal (the
    supervising loop acts on it): never an exception in the middle of a storage write."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.old = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}

    def _note(self, signum: int, frame: Any) -> None:
        self.names.append(signal.Signals(signum).name)

    def restore(self) -> None:
        for s, handler in self.old.items():
            signal.signal(s, handler)


def supervise(spec: SweepSpec, storage: BaseStorage, study: optuna.Study, *, workers: int,
              storage_url: str | None, results: str, on_poll: Callable[[], None]) -> None:
    """Run `workers` worker processes to the end of the queue, calling on_poll() each second.

    A worker that dies mid-trial has its trial re-queued and is replaced while trials are
    left. A signal stops the workers and raises Interrupted; a full disk raises BenchError."""
    ctx = worker_context()  # bench.sweep.start: fork server or spawn
    envs = gpu_env(workers)
    threads = cpu_threads(workers, envs)
    procs: dict[int, multiprocessing.process.BaseProcess] = {}
    started: set[int] = set()
    from bench.plugins import worker_plugins

    plugins = worker_plugins()

    def start(i: int) -> None:
        job = WorkerJob(spec, storage_url, results, index=i, env=envs[i], threads=threads,
                        parent=os.getpid(), plugins=plugins)
        procs[i] = ctx.Process(target=worker_main, args=(job,), name=f"bench-sweep-{i}")
        procs[i].start()
        started.add(procs[i].pid)

    sid = study_id(storage, spec.name)
    signals = _Signals()
    full = False
    try:
        waiting = storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,))
        for i in range(min(workers, len(waiting))):  # a finished sweep starts no worker
            start(i)
        while procs and not signals.names and not full:
            # back when a worker ends (the sweep's last one: its end at once), else after
            # POLL_S for the progress lines and a signal
            wait_any([p.sentinel for p in procs.values()], timeout=POLL_S)
            for i, p in list(procs.items()):
                if p.is_alive():
                    continue
                p.join()
                del procs[i]
                if p.exitcode == DISK_FULL:
                    full = True
                elif p.exitcode != 0:
                    recover(study, storage, spec, pids={p.pid},
                            reason=f"worker process died ({_exit_text(p.exitcode)})")
                    # a trial killed its worker: replace it; one that died before any trial
                    # would die again (a broken storage or install): let the sweep end
                    if _ran_trials(storage, sid, p.pid) and storage.get_all_trials(
                            sid, deepcopy=False, states=(TrialState.WAITING,)):
                        start(i)
            on_poll()
        if not (signals.names or full):
            return
        _stop_workers(procs, signals)
        why = signals.names[0] if signals.names else "disk full"
        recover(study, storage, spec, pids=started, max_retry=None, reason=f"interrupted ({why})")
        requeued = _requeued_from(storage, sid, started)
        on_poll()
        if full:
            raise BenchError("disk full (No space left on device) while a trial wrote its "
                             "record: the sweep stopped; completed trials are kept; free "
                             "space and run the same command to continue")
        raise Interrupted(why, requeued)
    finally:
        signals.restore()
        for p in procs.values():  # an unexpected error: no worker outlives its parent
            if p.is_alive():
                p.kill()
                p.join()


def _requeued_from(storage: BaseStorage, sid: int, pids: set[int]) -> list[int]:
    """Trials of these workers that were stopped and wait to run again."""
    trials = storage.get_all_trials(sid, deepcopy=False)
    again = superseded([t for t in trials if t.state == TrialState.WAITING])
    host = socket.gethostname()
    return sorted(t.number for t in trials if t.number in again
                  and t.system_attrs.get(OWNER, {}).get("pid") in pids
                  and t.system_attrs[OWNER].get("host") == host)


def _stop_workers(procs: dict[int, multiprocessing.process.BaseProcess],
                  signals: _Signals) -> None:
    """SIGTERM every worker and wait for it; SIGKILL after STOP_WAIT_S or a second signal."""
    for p in procs.values():
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    first = len(signals.names)
    while any(p.is_alive() for p in procs.values()):
        if time.monotonic() > deadline or len(signals.names) > first:
            for p in procs.values():
                if p.is_alive():
                    p.kill()
        time.sleep(0.1)
    for p in procs.values():
        p.join()


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
