"""How a sweep's worker process is told to stop, and how a trial inside it notices: signals
only set a flag (a trial ends at its next batch, its record says "interrupted"); the parent's death
kills the worker; a full disk is told apart from other errors. The flag, the callback and the
disk-full test are bench.stopping's, shared with `bench run`."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from bench.stopping import install, quiet_logging_errors

POLL_S = 1.0  # how often a worker without PR_SET_PDEATHSIG checks that its parent lives
PR_SET_PDEATHSIG = 1


def setup_worker(parent_pid: int) -> None:
    """Signals of a worker: SIGTERM (from the parent) or Ctrl-C (it reaches the whole terminal
    group, DataLoader workers included) asks for a clean stop: noted, never a KeyboardInterrupt
    that would end the trial as a failure (a second one too: the parent kills us if need be);
    the parent's death kills us."""
    install(escalate=False)
    quiet_logging_errors()
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
