"""Running a fully convolutional generator on images of any size: pad-and-crop, and tiling.

The official generators only accept sides that are multiples of their total downsampling factor
(4 for the ResNet generators, 2**num_downs for the U-Nets: 256 for unet_256). The official
test.py resizes every input to 256x256; here the input is instead padded (by reflection, which
works for any amount: the image is mirrored as often as needed) to the next valid size, run,
and the output cropped back, so it has exactly the input's size.

Large images can be run in tiles: overlapping windows of a valid size are translated one batch
at a time and blended with weights that ramp linearly across the overlaps, so the peak memory
depends on the tile size, not the image size (only the input and the output themselves are
held whole).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch

from gencli.errors import UsageError

Net = Callable[[torch.Tensor], torch.Tensor]


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices 0..n-1 extended by ``before``/``after`` positions of mirror reflection (no edge repeat)."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    m = torch.remainder(idx, period)
    return torch.where(m >= n, period - m, m)


def pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflection padding of an NCHW tensor by any amounts (mirrors repeatedly when needed)."""
    if top == bottom == left == right == 0:
        return x
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        return torch.nn.functional.pad(x, (left, right, top, bottom), mode="reflect")
    rows = _reflect_index(h, top, bottom, x.device)
    cols = _reflect_index(w, left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def valid_size(n: int, multiple: int, minimum: int = 1) -> int:
    """The smallest size >= max(n, minimum) that is a multiple of ``multiple``."""
    n = max(n, minimum)
    return int(math.ceil(n / multiple) * multiple)


def padding_for(h: int, w: int, multiple: int, minimum: int = 1) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) centring an h x w image in the next valid size."""
    ph, pw = valid_size(h, multiple, minimum) - h, valid_size(w, multiple, minimum) - w
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def run_padded(net: Net, x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """``net(x)`` for any spatial size: reflect-pad to a valid size, run, crop back."""
    h, w = x.shape[-2:]
    top, bottom, left, right = padding_for(h, w, multiple, minimum)
    y = net(pad_reflect(x, top, bottom, left, right))
    return y[..., top:top + h, left:left + w]


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(tile: int, overlap: int, device: torch.device) -> torch.Tensor:
    """Blend weights along one tile side: 1 in the middle, linear towards the edges over ``overlap``."""
    i = torch.arange(tile, device=device, dtype=torch.float32)
    if overlap <= 0:
        return torch.ones(tile, device=device)
    r = torch.minimum((i + 1) / (overlap + 1), (tile - i) / (overlap + 1))
    return r.clamp(max=1.0)


def tile_geometry(tile: int, multiple: int, overlap: int | None = None) -> tuple[int, int]:
    """Validate ``tile``/``overlap`` for a generator needing ``multiple``: (tile, overlap)."""
    if tile < multiple:
        raise UsageError(f"--tile {tile} is smaller than this generator's minimum of {multiple} pixels "
                         f"(its sides must be multiples of {multiple})")
    if tile % multiple:
        rounded = tile // multiple * multiple
        warnings.warn(f"--tile {tile} rounded down to {rounded}, a multiple of {multiple} as this generator needs",
                      stacklevel=3)
        tile = rounded
    if overlap is None:
        overlap = tile // 4
    if not 0 <= overlap < tile:
        raise UsageError(f"--tile-overlap must be between 0 and {tile - 1}, got {overlap}")
    return tile, overlap


def run_tiled(net: Net, x: torch.Tensor, tile: int, multiple: int, overlap: int | None = None,
              minimum: int = 1, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``net`` over overlapping ``tile`` x ``tile`` windows of ``x`` (NCHW), blended; same size out.

    The image is first padded to a valid size (as :func:`run_padded`); windows smaller than the
    padded image are placed every ``tile - overlap`` pixels (the last one flush with the edge),
    and each window's output is weighted by a ramp over the overlap before normalising.
    """
    tile, overlap = tile_geometry(tile, multiple, overlap)
    tile = max(tile, valid_size(minimum, multiple))
    h, w = x.shape[-2:]
    top, bottom, left, right = padding_for(h, w, multiple, minimum)
    xp = pad_reflect(x, top, bottom, left, right)
    hp, wp = xp.shape[-2:]
    th, tw = min(tile, hp), min(tile, wp)
    stride_h, stride_w = max(th - overlap, 1), max(tw - overlap, 1)
    ys, xs = _starts(hp, th, stride_h), _starts(wp, tw, stride_w)
    if len(ys) == 1 and len(xs) == 1:
        y = net(xp)
        return y[..., top:top + h, left:left + w]
    weight = (_ramp(th, min(overlap, th - 1) if len(ys) > 1 else 0, x.device)[:, None]
              * _ramp(tw, min(overlap, tw - 1) if len(xs) > 1 else 0, x.device)[None, :])
    out: torch.Tensor | None = None
    total = torch.zeros(hp, wp, device=x.device)
    done, count = 0, len(ys) * len(xs)
    for y0 in ys:
        for x0 in xs:
            piece = net(xp[..., y0:y0 + th, x0:x0 + tw]).float()
            if out is None:
                out = torch.zeros(x.shape[0], piece.shape[1], hp, wp, device=x.device)
            out[..., y0:y0 + th, x0:x0 + tw] += piece * weight
            total[y0:y0 + th, x0:x0 + tw] += weight
            done += 1
            if progress is not None:
                progress(done, count)
    assert out is not None
    out /= total
    return out[..., top:top + h, left:left + w]
