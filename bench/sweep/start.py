"""How a sweep starts its workers (a light module: the sweep starts its fork server before it
imports anything heavy itself).

On Linux workers are forked from a fork server that imported torch, Lightning and bench once
(bench.sweep.forkserver), instead of each importing them again (seconds a worker); the server
is a fresh interpreter that never touches CUDA or starts a thread, so what a worker inherits
is clean. Elsewhere "spawn": a fresh interpreter per worker.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext

START_METHOD = "forkserver" if sys.platform.startswith("linux") else "spawn"
PRELOAD = ["bench.sweep.forkserver"]


def worker_context() -> BaseContext:
    """The workers' start context; with a fork server, the server is started now (nothing
    happens when it is already running). `bench sweep` calls it first thing: the server's
    imports (torch, Lightning, bench: seconds) then run beside the sweep's own (its file's
    checks, its study, its progress lines) on another core, instead of after them."""
    ctx = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        from multiprocessing import forkserver

        ctx.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
    return ctx
