"""Process-level tuning that the heavy commands (sample, evaluate, train, ...) apply once.

glibc's malloc hands every tensor above its mmap threshold (128 KiB at first) fresh pages from
the kernel and returns them on free, so a network whose activations are a few MB each takes
thousands of page faults per forward pass (measured: ~5,200 per UNet step of the bundled DDPM
at batch 16, ~17 ms of system time). Raising the mmap threshold to its maximum (32 MiB) and the
trim threshold keeps those blocks in the heap for reuse: 0 faults per step afterwards. This is
what jemalloc/tcmalloc are usually preloaded for; mallopt gets the same effect in-process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 1 << 30    # keep up to 1 GiB of freed heap instead of returning it at once

_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the malloc settings above once per process; True when they are in effect.

    Skipped (False) off Linux, without glibc, when ``GENCLI_NO_MALLOPT=1``, or when the user
    already tunes malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``).
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("GENCLI_NO_MALLOPT", "") not in ("", "0"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a no-op stub
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _done
