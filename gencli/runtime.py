"""Process-level tuning that the heavy commands (sample, evaluate, train, ...) apply once.

glibc's malloc hands every tensor above its mmap threshold (128 KiB at first) fresh pages from
the kernel and returns them on free, so a network whose activations are a few MB each takes
thousands of page faults per forward pass (measured: ~5,200 per UNet step of the bundled DDPM
at batch 16, ~17 ms of system time). Raising the mmap threshold to its maximum (32 MiB) and the
trim threshold keeps those blocks in the heap for reuse: 0 faults per step afterwards. Blocks
above 32 MiB would still be mmapped, so mmap is switched off altogether (M_MMAP_MAX = 0: every
block comes from the heap): the FID Inception's largest activation at batch 8 is 42 MiB, 10,805
faults per forward pass with the threshold alone, 0 without mmap, 24.4-24.7 -> 23.5-23.75
ms/image (2-core Xeon AMX, 2026-12-03). This is what jemalloc/tcmalloc are usually preloaded
for; mallopt gets the same effect in-process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 << 20   # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 1 << 30    # keep up to 1 GiB of freed heap instead of returning it at once
MMAP_MAX = 0                # no mmapped blocks at all (those above the threshold included)
#: the same settings as glibc environment variables (for child processes, e.g. a benchmark's anchors)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
              "MALLOC_MMAP_MAX_": str(MMAP_MAX)}

_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the malloc settings above once per process; True when they are in effect.

    Skipped (False) off Linux, without glibc, when ``GENCLI_NO_MALLOPT=1``, or when the user
    already tunes malloc (any of :data:`MALLOC_ENV`'s variables, ``MALLOC_TOP_PAD_``, ``GLIBC_TUNABLES``).
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("GENCLI_NO_MALLOPT", "") not in ("", "0"):
        return False
    if any(k in os.environ for k in (*MALLOC_ENV, "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a no-op stub
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = (bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
             and bool(mallopt(_M_MMAP_MAX, MMAP_MAX)))
    return _done


# --- precision ---------------------------------------------------------------------------------
PRECISIONS = ("fp32", "fp16", "bf16")


def autocast(device, precision: str):  # noqa: ANN001, ANN201
    """torch.autocast for fp16/bf16 around model calls (CPU and CUDA); a no-op for fp32."""
    import contextlib

    if precision not in PRECISIONS:
        from gencli.errors import UsageError

        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    warn_if_emulated(device, precision)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def warn_if_emulated(device, precision: str) -> None:  # noqa: ANN001
    """Warn (once per process) when fp16/bf16 on this CPU would be emulated, hence slow."""
    import torch

    if precision != "fp32" and torch.device(device).type == "cpu" and not cpu_has_native_half(precision):
        _warn_emulated(precision)


@functools.lru_cache(maxsize=None)
def _warn_emulated(precision: str) -> None:
    import warnings

    warnings.warn(f"this CPU has no native {precision} matrix units (AVX512-{precision.upper()}/AMX); "
                  f"--precision {precision} will likely be slower than fp32 here", stacklevel=3)


@functools.lru_cache(maxsize=None)
def cpu_info() -> tuple[str, frozenset[str] | None]:
    """(model name, feature flags) from /proc/cpuinfo; flags None where it cannot be read."""
    name, flags = "", None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and flags is None:
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    if not name:
        import platform

        name = platform.processor() or "unknown CPU"
    return name, flags


@functools.lru_cache(maxsize=None)
def cpu_features() -> str:
    """The CPU's name and its low-precision matmul features, for benchmark headers
    ("AMD EPYC; avx512_bf16" / "...; no AVX512-BF16/FP16 or AMX")."""
    name, flags = cpu_info()
    found = sorted(f for f in (flags or ()) if f in ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16",
                                                     "amx_tile", "amx_int8"))
    if flags is None:
        return f"{name or 'unknown CPU'}; features unknown"
    return f"{name or 'unknown CPU'}; {', '.join(found) if found else 'no AVX512-BF16/FP16 or AMX'}"


def cpu_has_native_half(precision: str) -> bool:
    """Whether the CPU advertises native bf16/fp16 matmul (AVX512-BF16/FP16 or AMX), from
    /proc/cpuinfo; True where that cannot be read (not Linux), so we never warn wrongly."""
    flags = cpu_info()[1]
    if flags is None:
        return True
    want = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}[precision]
    return any(flag in flags for flag in want)


# --- threads -----------------------------------------------------------------------------------
def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cpus(samples: int = 3, interval: float = 0.005) -> int:
    """CPUs busy with other work right now: the kernel's count of runnable tasks (the 4th field of
    /proc/loadavg) minus this process, the least of a few quick looks. Unlike the load averages,
    which decay over minutes, it does not count work that has just finished."""
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, min(counts))


def default_threads(cpus: int | None = None, busy: int | None = None) -> int:
    """Intra-op threads for a command: the CPUs this process may use minus those busy with other
    work right now (:func:`busy_cpus`), at least 1. OpenMP threads that share a core with another
    busy process wait on each other at every parallel region: on 2 cores with one busy elsewhere,
    2 threads made sampling 2.5-4x slower than 1 thread."""
    cpus = usable_cpus() if cpus is None else cpus
    busy = busy_cpus() if busy is None else busy
    return max(1, min(cpus, cpus - busy))


def set_threads(requested: int | None = None) -> int:
    """Apply ``requested`` (``--threads``), else ``$GENCLI_THREADS``, else :func:`default_threads`."""
    import torch

    from gencli.errors import UsageError

    env = os.environ.get("GENCLI_THREADS", "").strip()
    if requested is None and env:
        try:
            requested = int(env)
        except ValueError:
            raise UsageError(f"GENCLI_THREADS must be a whole number, got {env!r}") from None
    if requested is not None and requested < 1:
        raise UsageError(f"--threads must be at least 1, got {requested}")
    n = requested if requested is not None else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
