"""How a sweep's worker process is told to stop, and how a trial inside it notices: signals
only set a flag (a trial ends at its next batch, its record says "interrupted"); the parent's death
kills the worker; a full disk is told apart from other errors."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import threading
import time
from typing import Any

POLL_S = 1.0  # how often a worker without PR_SET_PDEATHSIG checks that its parent lives
PR_SET_PDEATHSIG = 1
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class TrialInterrupted(Exception):
    """Raised in a trial whose worker was told to stop (an Exception, not a KeyboardInterrupt:
    Lightning turns a KeyboardInterrupt into sys.exit(1))."""


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


_stop: dict[str, str | None] = {"signal": None}


def stop_requested() -> str | None:
    """The name of the signal that asked this worker to stop, if any."""
    return _stop["signal"]


def _note_signal(signum: int, frame: Any) -> None:
    _stop["signal"] = _stop["signal"] or signal.Signals(signum).name


def setup_worker(parent_pid: int) -> None:
    """Signals of a worker: SIGTERM (from the parent) or Ctrl-C (it reaches the whole terminal
    group, DataLoader workers included) asks for a clean stop: noted, never a KeyboardInterrupt
    that would end the trial as a failure; the parent's death kills us."""
    signal.signal(signal.SIGINT, _note_signal)
    signal.signal(signal.SIGTERM, _note_signal)
    if not _pdeathsig():
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before we could ask
        os._exit(1)


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def stop_callback() -> Any:
    """A Lightning callback ending the trial at the next batch once a stop was asked for
    (SIGTERM before trainer.fit started is not seen by Lightning's own handler)."""
    import lightning as L

    class StopOnSignal(L.Callback):
        def _check(self) -> None:
            if stop_requested():
                raise TrialInterrupted(f"interrupted ({stop_requested()})")

        def on_train_batch_start(self, *args: Any) -> None:
            self._check()

        def on_validation_batch_start(self, *args: Any) -> None:
            self._check()

        def on_test_batch_start(self, *args: Any) -> None:
            self._check()

    return StopOnSignal()
