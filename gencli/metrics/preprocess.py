"""How images become network input: the two FID preprocessing conventions.

Images arrive as float NCHW in [-1, 1] (gencli's convention; files are decoded by
:mod:`gencli.io.images`, 8-bit values ``k`` becoming ``2k/255 - 1``). Grey images are repeated
to 3 channels, as PIL's ``convert("RGB")`` does.

``pytorch-fid`` (the default, what pytorch-fid's ``calculate_fid_given_paths`` does):
    ``[0, 1]`` -> ``F.interpolate(size=299, mode="bilinear", align_corners=False)`` (no
    antialiasing) -> ``2x - 1``.

``tf`` (what torch-fidelity does to reproduce the original TensorFlow code):
    8-bit values ``0..255`` -> TensorFlow 1.x ``resize_bilinear`` (``align_corners=False``,
    without half-pixel centres: source coordinate ``dst * in / out``, neighbours ``floor`` and
    ``min(floor + 1, in - 1)``) -> ``(x - 128) / 128``. Implemented as two small interpolation
    matrices applied to rows and columns (one batched matmul each).

Both resize even when the input is already 299x299 (then both are the identity).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from gencli.errors import UsageError

__all__ = ["MODES", "DEFAULT_MODE", "to_uint8_levels", "tf_resize_bilinear", "inception_input", "rgb"]

MODES = ("pytorch-fid", "tf")
DEFAULT_MODE = "pytorch-fid"
INCEPTION_SIZE = 299


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"--preprocess must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def rgb(x: torch.Tensor) -> torch.Tensor:
    """NCHW with 1 or 3 channels -> 3 channels (grey repeated)."""
    if x.shape[1] == 3:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    raise UsageError(f"expected images with 1 or 3 channels, got {x.shape[1]}")


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> float32 values in {0, ..., 255}, rounded as an 8-bit PNG would store them."""
    return ((x.float() + 1.0) * 127.5).round_().clamp_(0.0, 255.0)


@functools.lru_cache(maxsize=16)
def _tf_matrix(n_in: int, n_out: int, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in) weights of TF1 ``resize_bilinear`` along one axis (align_corners=False)."""
    scale = n_in / n_out
    src = torch.arange(n_out, dtype=torch.float64) * scale
    lo = src.floor().long().clamp_(max=n_in - 1)
    hi = (lo + 1).clamp_(max=n_in - 1)
    frac = src - lo.double()
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    w.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    w.index_put_((rows, hi), frac, accumulate=True)
    return w.to(dtype)


def tf_resize_bilinear(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x bilinear resize (align_corners=False, no half-pixel centres) of NCHW ``x``."""
    h, w = (size, size) if isinstance(size, int) else size
    wy = _tf_matrix(x.shape[2], h, x.dtype).to(x.device)
    wx = _tf_matrix(x.shape[3], w, x.dtype).to(x.device)
    return torch.matmul(torch.matmul(wy, x), wx.T)


def inception_input(x: torch.Tensor, mode: str = DEFAULT_MODE, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """[-1, 1] NCHW (1 or 3 channels, any size) -> the network input of ``mode`` (3 x size x size),
    in channels_last memory (the layout the network reads; the affine step in place). Grey images
    are repeated to RGB before resizing, as pytorch-fid's PIL ``convert("RGB")`` does: resizing
    one channel and repeating it afterwards differs from that by an ulp on some pixels."""
    check_mode(mode)
    x = rgb(x.float())
    if mode == "pytorch-fid":
        y = F.interpolate((x + 1.0) * 0.5, size=(size, size), mode="bilinear", align_corners=False)
        y = y.mul_(2.0).sub_(1.0)
    else:
        y = tf_resize_bilinear(to_uint8_levels(x), size).sub_(128.0).div_(128.0)
    return y.contiguous(memory_format=torch.channels_last)
