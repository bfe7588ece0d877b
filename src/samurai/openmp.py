"""OpenMP spin setting for CPU inference on shared machines: wait briefly, then sleep.

PyTorch's CPU wheels run their parallel regions on GNU OpenMP (libgomp). Between regions its
idle threads spin for ``GOMP_SPINCOUNT`` iterations (300,000 unless ``OMP_WAIT_POLICY`` is
set, milliseconds on current CPUs) before they sleep. SAM 2 runs thousands of short parallel
regions per frame; on a machine whose cores are also busy with another process, the spinning
threads burn the time slices the working ones need. Measured on 2 cores beside one other 2-thread
model process (SAMURAI-T at 1024, docs/benchmarks.md): 1.72 -> 4.98 s per frame with the default,
1.76 -> 3.65 s with ``GOMP_SPINCOUNT=10000``, 1.83 -> 3.49 s with ``OMP_WAIT_POLICY=PASSIVE``
(never spin), which costs 10 % on an idle machine.

libgomp reads the variable once, when PyTorch loads it, so :func:`limit_spinning` sets it in
``os.environ`` at ``import samurai`` (before ``import torch`` where the caller imports samurai
first) and child processes inherit it. A value the user set, or any ``OMP_WAIT_POLICY``, is
left alone; ``GOMP_SPINCOUNT=300000`` restores libgomp's default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPIN_COUNT = "10000"
"""Spin iterations before an idle OpenMP thread sleeps (a fraction of a millisecond)."""


def limit_spinning(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` unless the user chose a wait setting.

    Returns True when this process's libgomp will use it: set here (or earlier, to the same
    value) and PyTorch not yet imported. Child processes inherit the variable either way.
    """
    env = os.environ if environ is None else environ
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return env.get("GOMP_SPINCOUNT") == SPIN_COUNT and "torch" not in sys.modules
