"""What a sweep's fork server does before it forks workers (bench.sweep.start.PRELOAD names
this module; only that process imports it).

- It dies with the sweep process that started it (Linux PR_SET_PDEATHSIG), and so do the workers
  it forked (each worker's own PR_SET_PDEATHSIG fires when the server dies). Without it the
  server would outlive a kill -9 of the sweep by its interpreter's teardown, and its workers
  with it. A SIGTERM to the whole process group (a scheduler's time limit) is for the sweep and
  its workers, which stop cleanly: the server ignores it and ends with the sweep.
- It imports torch, Lightning and what a trial runs, once: each worker starts with them loaded.
  No CUDA call and no thread happens here, so a forked worker inherits nothing it cannot use.
- It freezes what it imported out of the garbage collector: a worker's collections then never
  walk (and copy, page by page) the hundreds of thousands of objects it shares with the server.
"""

from __future__ import annotations

import gc
import os
import signal

from bench.sweep.stopping import _pdeathsig

_STARTED_BY = os.getppid()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
_pdeathsig()
if os.getppid() != _STARTED_BY:  # the sweep died before we could ask
    os._exit(1)

import torch  # noqa: E402,F401  (the imports are this module's purpose)
import lightning  # noqa: E402,F401
import bench.checkpoint  # noqa: E402,F401
import bench.data  # noqa: E402,F401
import bench.energy.probe  # noqa: E402,F401
import bench.module  # noqa: E402,F401
import bench.probes.gradients  # noqa: E402,F401
import bench.probes.spikes  # noqa: E402,F401
import bench.run  # noqa: E402,F401
import bench.sweep.workers  # noqa: E402,F401
import bench.tracking  # noqa: E402,F401

gc.collect()
gc.freeze()
