"""CPU kernels in C, compiled on first use with the machine's C compiler and loaded with ctypes.

PyTorch eager runs a normalisation as several passes over memory (statistics, affine, SiLU, and
under autocast a cast to fp32 and back), and Winograd's transforms as a padding copy, a tile
gather and two matmuls each. Here:

- :func:`group_norm_nhwc`: GroupNorm (+ a per-sample bias before it, + SiLU or ReLU after it) on
  NHWC activations in one call that reads its input from cache, fp32 or bf16 in and out
  (``csrc/group_norm.c``); with one group per channel, the translation generators' instance norm;
- the data and output transforms and the fused convolutions of the Winograd kernels
  (``csrc/winograd.c``, ``csrc/winograd1d.c``, ``csrc/winograd2d.c``, ``csrc/gemm.h``), whose Python
  side is :mod:`gencli.kernels.native_winograd`;
- :func:`max_pool3x3_nhwc`: 3x3 max pooling on NHWC without torch's int64 indices (``csrc/pool.c``).

The sources are built together with ``-O3 -march=native`` into ``$XDG_CACHE_HOME/gencli/kernels``
(default ``~/.cache``), once per source, compiler and CPU, in about a second; threads are OpenMP's,
from the libgomp torch has loaded (torch's own pool). Without a compiler (or with
``GENCLI_NATIVE=0``) nothing is built and :func:`available` is False: the fast path then uses its
pure-torch kernels, which compute the same thing (tests compare both with torch's references).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).with_name("csrc") / name
                for name in ("group_norm.c", "winograd.c", "winograd1d.c", "winograd2d.c", "pool.c"))
HEADERS = tuple(Path(__file__).with_name("csrc") / name for name in ("common.h", "gemm.h"))
CFLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno")
#: smallest channel block (a unit of work) when a sample is split among threads: 32 bf16 = 64 bytes
MIN_BLOCK_CHANNELS = 32

_DTYPES = (torch.float32, torch.bfloat16)
_lock = threading.Lock()


def _disabled() -> bool:
    return os.environ.get("GENCLI_NATIVE", "1").strip().lower() in ("0", "false", "no", "off")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gencli" / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) and cc
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def _build_key(cc: str) -> str:
    """Source, compiler version and CPU features: a library built for one never loads on another."""
    from gencli.runtime import cpu_info

    try:
        version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    name, flags = cpu_info()
    h = hashlib.sha256()
    for part in (*(src.read_bytes() for src in SOURCES + HEADERS), " ".join(CFLAGS).encode(), version.encode(), name.encode(),
                 " ".join(sorted(flags or ())).encode(), sys.platform.encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _build() -> Path | None:
    cc = _compiler()
    if cc is None:
        return None
    out = _cache_dir() / f"kernels-{_build_key(cc)}.so"
    if out.exists():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        done = subprocess.run([*cc.split(), *CFLAGS, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True,
                              timeout=120)
        if done.returncode != 0:
            os.unlink(tmp)
            return None
        os.replace(tmp, out)  # atomic: a concurrent build writes the same bytes
    except (OSError, subprocess.SubprocessError):
        return None
    return out


@functools.lru_cache(maxsize=1)
def _library():
    if _disabled() or not sys.platform.startswith("linux"):
        return None
    with _lock:
        path = _build()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            return None
    p, i, lg, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
    for name, args, res in (("gencli_group_norm_nhwc", [p, p, lg, p, i, i, p, p, p, lg, lg, lg, lg, lg, f, i, i],
                             ctypes.c_int),
                            ("gencli_winograd_input", [p, p, lg, lg, lg, lg, i, i, lg, lg, lg, lg], None),
                            ("gencli_winograd_output", [p, p, p, p, p, lg, lg, lg, lg, lg, lg, lg, i], None),
                            ("gencli_gemm_lanes", [], ctypes.c_int),
                            ("gencli_winograd_fused", [p, p, p, p, p, p, lg, lg, lg, lg, lg, i, i, lg, i, lg], ctypes.c_int),
                            ("gencli_winograd1d_input", [p, lg, p, lg, lg, lg, lg, i, i, i, p, lg, lg, lg], None),
                            ("gencli_winograd1d_output", [p, p, lg, p, i, lg, lg, lg, lg, i, i, i, p, lg, lg, lg], None),
                            ("gencli_winograd1d_fused", [p, lg, p, p, lg, p, i, lg, lg, lg, lg, lg, i, i, i, p, p, lg],
                             ctypes.c_int),
                            ("gencli_winograd2d_input", [p, p, lg, lg, lg, lg, lg, p, lg, lg, lg], None),
                            ("gencli_winograd2d_output", [p, p, lg, p, i, lg, lg, lg, lg, p, lg, lg, lg], None),
                            ("gencli_winograd2d_fused", [p, p, p, lg, p, i, lg, lg, lg, lg, lg, lg, p, p, lg], ctypes.c_int),
                            ("gencli_max_pool3x3_nhwc", [p, p, lg, lg, lg, lg, lg, lg, lg, lg], None)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


def _function(name: str):
    lib = _library()
    if lib is None:
        raise RuntimeError("gencli's C kernels are not available (no C compiler, or GENCLI_NATIVE=0)")
    return getattr(lib, name)


def available() -> bool:
    """Whether the C kernels are built and loaded (builds them on the first call)."""
    return _library() is not None


def _blocks(n: int, c: int, groups: int, threads: int) -> int:
    """Channel blocks per sample: 1 when the samples alone give every thread work, else the
    fewest whole-group blocks (of at least MIN_BLOCK_CHANNELS) that do."""
    blocks = 1
    while n * blocks < threads:
        nxt = next((b for b in range(blocks + 1, groups + 1) if groups % b == 0), None)
        if nxt is None or c // nxt < MIN_BLOCK_CHANNELS:
            break
        blocks = nxt
    return blocks


def supports(x: torch.Tensor, out_dtype: torch.dtype | None = None) -> bool:
    """Whether :func:`group_norm_nhwc` takes ``x`` (CPU, fp32/bf16, NHWC memory) here."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.dtype in _DTYPES and (out_dtype or x.dtype) in _DTYPES
            and x.is_contiguous(memory_format=torch.channels_last) and available())


def _f32(t: torch.Tensor | None, numel: int) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.detach().to(torch.float32).contiguous()
    if t.numel() != numel:
        raise ValueError(f"expected {numel} values, got {t.numel()}")
    return t


def group_norm_nhwc(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, eps: float = 1e-5, *, silu: bool = False,
                    relu: bool = False, sample_bias: torch.Tensor | None = None,
                    out_dtype: torch.dtype | None = None, out: torch.Tensor | None = None,
                    second: torch.Tensor | None = None) -> torch.Tensor:
    """``silu?(F.group_norm(x + sample_bias[:, :, None, None], num_groups, weight, bias, eps))``
    (or ``relu?``: one of the two; an instance norm is ``num_groups`` = C).

    ``x`` (N, C, H, W) in channels_last memory, fp32 or bf16 (check :func:`supports`);
    ``sample_bias`` (N, C) or None; the statistics and the arithmetic are fp32 whatever the
    dtypes. Returns a channels_last tensor of ``out_dtype`` (default ``x.dtype``), or writes
    ``out`` (same shape, channels_last; may be ``x`` itself). With ``second`` (N, C2, H, W, same
    dtype and memory format), the input is ``torch.cat([x, second], 1)`` without that
    concatenation being made (the output has C + C2 channels)."""
    fn = _function("gencli_group_norm_nhwc")
    n, c, h, w = x.shape
    if x.device.type != "cpu" or x.dtype not in _DTYPES or (out_dtype or x.dtype) not in _DTYPES:
        raise ValueError("the C kernel takes fp32 or bf16 CPU tensors")
    if not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("x must be in channels_last memory")
    c1 = c
    if second is not None:
        if (second.dtype != x.dtype or second.device != x.device or second.dim() != 4 or second.shape[0] != n
                or second.shape[2:] != x.shape[2:] or not second.is_contiguous(memory_format=torch.channels_last)):
            raise ValueError("second must be a channels_last tensor of x's dtype, batch and size")
        c += second.shape[1]
    if silu and relu:
        raise ValueError("silu or relu, not both")
    if c % num_groups:
        raise ValueError(f"{c} channels do not split into {num_groups} groups")
    if out is None:
        out = torch.empty((n, c, h, w), dtype=out_dtype or x.dtype, memory_format=torch.channels_last)
    elif (out.shape != (n, c, h, w) or out.dtype not in _DTYPES or out.device.type != "cpu"
          or not out.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError("out must be an fp32 or bf16 CPU tensor of the input's shape in channels_last memory")
    gamma, beta, t = _f32(weight, c), _f32(bias, c), _f32(sample_bias, n * c)
    threads = torch.get_num_threads()
    rc = fn(x.data_ptr(), _ptr(second), c1, out.data_ptr(), x.dtype == torch.bfloat16, out.dtype == torch.bfloat16,
            _ptr(gamma), _ptr(beta), _ptr(t), n, h * w, c, num_groups,
            _blocks(n, c, num_groups, threads), float(eps), 1 if silu else 2 if relu else 0, threads)
    if rc != 0:
        raise RuntimeError(f"gencli_group_norm_nhwc failed ({'bad arguments' if rc == 1 else 'out of memory'})")
    return out


def max_pool3x3_nhwc(x: torch.Tensor, stride: int, padding: int = 0) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride, padding)`` for fp32 channels_last CPU ``x``; returns channels_last."""
    n, c, h, w = x.shape
    if (x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last)
            or stride < 1 or not 0 <= padding <= 1 or min(h, w) + 2 * padding < 3):
        raise ValueError("max_pool3x3_nhwc takes an fp32 channels_last CPU tensor, stride >= 1, padding 0 or 1")
    ho, wo = (h + 2 * padding - 3) // stride + 1, (w + 2 * padding - 3) // stride + 1
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
    _function("gencli_max_pool3x3_nhwc")(x.data_ptr(), out.data_ptr(), n, h, w, c, stride, padding, ho, wo)
    return out


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()
