"""How a run is told to stop, and how it tells a stop from a failure: signals only set a flag
(the run ends at its next batch, its record says "interrupted"), a full disk is recognised
wherever bench writes (checkpoints included) and is a stop, not a failure.

Shared by `bench run`, `bench eval` and a sweep's workers (bench.sweep.stopping adds what only
a worker needs).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import signal
from pathlib import Path
from typing import Any, Iterator

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a failed write as a RuntimeError from its zip writer (the OSError, when
# the file is a Python object, is only its __context__; a C++ fwrite keeps no errno at all)
TORCH_WRITE_ERRORS = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")
LOW_DISK_BYTES = 64 * 2**20  # a folder with less free space than this counts as full
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class RunInterrupted(Exception):
    """Raised in a run that was told to stop (an Exception, not a KeyboardInterrupt: Lightning
    turns a KeyboardInterrupt into sys.exit(1))."""

    def __init__(self, signame: str) -> None:
        super().__init__(f"interrupted ({signame})")
        self.signame = signame


_stop: dict[str, Any] = {"signal": None, "escalate": False}


def stop_requested() -> str | None:
    """The name of the signal that asked this process to stop, if any."""
    return _stop["signal"]


def note_signal(signum: int, frame: Any) -> None:
    """The handler: note the first signal; with `escalate` (a terminal user, not a sweep's
    parent, which kills its workers itself) a second one stops at once."""
    name = signal.Signals(signum).name
    if _stop["signal"] is not None and _stop["escalate"]:
        raise RunInterrupted(_stop["signal"])
    _stop["signal"] = _stop["signal"] or name


def install(escalate: bool = False) -> None:
    """SIGINT and SIGTERM set the stop flag from now on (main thread only)."""
    _stop["escalate"] = escalate
    signal.signal(signal.SIGINT, note_signal)
    signal.signal(signal.SIGTERM, note_signal)


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """`bench run` / `bench eval`: a signal ends the run at its next batch (a second one at
    once); the handlers before are put back after. No-op off the main thread (a notebook)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        install(escalate=True)
    except ValueError:  # not the main thread
        old = {}
    quiet_logging_errors()
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _stop.update(signal=None, escalate=False)


def quiet_logging_errors() -> None:
    """A log handler that can't write (a full disk under W&B's debug.log) must not print the
    logging module's own "--- Logging error ---" traceback: the run's own writes fail with one
    line instead."""
    logging.raiseExceptions = False


def interrupted(exc: BaseException) -> str | None:
    """The signal name if `exc` is how a stopped run ends, else None: ours, Lightning's
    SIGTERMException (a SystemExit of code 0 that would look like success) or Ctrl-C."""
    if isinstance(exc, RunInterrupted):
        return exc.signame
    if type(exc).__name__ == "SIGTERMException":
        return "SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return stop_requested() or "SIGINT"
    return stop_requested() if isinstance(exc, SystemExit) else None


def disk_full(exc: BaseException, folder: str | Path | None = None) -> bool:
    """A write that failed because the disk is full: an OSError ENOSPC/EDQUOT in the exception
    or its cause/context chain, or torch.save's RuntimeError while `folder` has less than
    LOW_DISK_BYTES free."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return True
        e = e.__cause__ or e.__context__
    if folder is not None and isinstance(exc, RuntimeError) and any(
            s in str(exc) for s in TORCH_WRITE_ERRORS):
        return low_disk(folder)
    return False


def low_disk(folder: str | Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < LOW_DISK_BYTES
    except OSError:
        return False


def as_disk_full(exc: BaseException, path: str | Path) -> OSError:
    """The OSError(ENOSPC) naming `path` that a disk-full `exc` stands for."""
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def stop_callback() -> Any:
    """A Lightning callback ending the run at the next batch once a stop was asked for
    (Lightning's own SIGTERM handling sees no SIGTERM sent before trainer.fit started, and
    none of SIGINT)."""
    import lightning as L

    class StopOnSignal(L.Callback):
        def _check(self) -> None:
            if stop_requested():
                raise RunInterrupted(stop_requested())

        def on_train_batch_start(self, *args: Any) -> None:
            self._check()

        def on_validation_batch_start(self, *args: Any) -> None:
            self._check()

        def on_test_batch_start(self, *args: Any) -> None:
            self._check()

    return StopOnSignal()
