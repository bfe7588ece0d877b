"""Process allocator setting for CPU inference: reuse freed memory instead of page-faulting it.

glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap``
and unmaps it on free. At 1024 px many of SAM 2's activations were larger than that (Hiera's
first stage run whole: 65536 tokens x 384 channels = 96 MiB per tensor), so every frame mapped,
zero-filled and unmapped gigabytes: measured 0.5-1.3 s of kernel time per SAM 2.1-T frame on a
2-core CPU. With ``mmap`` disabled for the heap and trimming deferred, freed blocks are reused by
the next frame's tensors: 4-11 % less time per frame in float32, 20-30 % in split bfloat16. The
heap keeps its high-water mark instead of returning memory between frames: 100-225 MiB more peak
RSS for SAM 2.1-T since the image encoder runs its high-resolution stages in strips (200-300 MiB
before), less for B+. Apply it before the model's weights are allocated
(`samurai.build.build_model` does): applied after them, the peak was up to 500 MiB higher and
varied from run to run.

The setting is process-wide and only ever applied once; ``SAMURAI_MALLOC_TUNING=0`` turns it
off. Other C libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_VAR = "SAMURAI_MALLOC_TUNING"

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap kept before it is returned to the system (1 GiB)."""

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse; True when the setting is in effect.

    Safe to call many times; a no-op (False) off glibc or when ``SAMURAI_MALLOC_TUNING=0``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_VAR, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; apply the trim threshold first so that memory freed after
    # the switch is never handed back between frames
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) and mallopt(_M_MMAP_MAX, 0))
    return _applied
