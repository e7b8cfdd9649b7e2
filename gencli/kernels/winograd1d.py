"""One-axis Winograd F(m, r): 1 x r and r x 1 convolutions with fewer multiplications.

The FID Inception spends 26% of its multiply-adds in 1x7 and 7x1 convolutions (stride 1, "same"
padding) and 3% in 1x3 and 3x1 ones. Along the kernel's axis, F(m, r) computes m outputs from
alpha = m + r - 1 inputs with alpha products per input and output channel pair instead of m r:
F(6, 7) 3.5x fewer (3.3x at the Inception's 17-pixel rows, whose 3 tiles cover 18; F(4, 7) took
5 tiles covering 20: 2.4x, 1.3x slower per layer), F(4, 3) 2x (its 8-pixel rows: 2 tiles).

:func:`conv1d_winograd` runs the data and output transforms as gencli's C kernels
(``csrc/winograd1d.c``, bias and ReLU folded into the output transform, which can write into a
channel slice of a wider tensor) and the alpha GEMMs with torch's BLAS, in blocks of tiles, or
for small filters all three fused per group of tiles in cache (see
:func:`gencli.kernels.winograd.fused_applies`);
:func:`conv1d_reference` is the same computation with ``F.conv2d``.

The matrices are built exactly (rational arithmetic) from interpolation points plus infinity:
A^T and G are Vandermonde-like, B^T solves A^T [(G g) * (B^T d)] = correlation(d, g) for every g
and d. Points (searched among sets of small fractions for the least fp32 error, measured as the
largest deviation from a float64 convolution relative to the largest output, 160 channels, unit
activations): r = 7: 0, +-1, +-2, +-1/2, +-3/4, +-4/3 (1.7e-5, as the 2-D F(4x4, 3x3) of
:mod:`gencli.kernels.winograd`; direct fp32 5.5e-7; F(4, 7) with 0, +-1, +-2, +-1/2, +-3/4 8.3e-6;
other F(6, 7) sets 2e-5 to 1.3e-4); r = 3: 0, 1, -1, 1/2, -2 (1.6e-6).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from gencli.kernels import native_winograd
from gencli.kernels import winograd
from gencli.kernels.winograd import Workspace, _fresh, run_blocks

POINTS = {7: ("0", "1", "-1", "2", "-2", "1/2", "-1/2", "3/4", "-3/4", "4/3", "-4/3"),
          3: ("0", "1", "-1", "1/2", "-2")}
TILE = {7: 6, 3: 4}  # outputs per tile (m): len(POINTS[r]) + 2 - r


def matrices(r: int) -> tuple[tuple[tuple[Fraction, ...], ...], ...]:
    """(A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) of this module's F(m, r), m = ``TILE[r]``."""
    return exact_matrices(POINTS[r], TILE[r], r)


@functools.lru_cache(maxsize=None)
def exact_matrices(points: tuple[str, ...], m: int, r: int) -> tuple[tuple[tuple[Fraction, ...], ...], ...]:
    """(A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) of F(m, r) with the interpolation
    ``points`` (fractions as strings; alpha - 1 = m + r - 2 of them) plus infinity, exact. The 2-D
    F(m x m, r x r) nests them: y = A^T [(G g G^T) * (B^T d B)] A."""
    pts = [Fraction(p) for p in points]
    alpha = m + r - 1
    if len(pts) != alpha - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) takes {alpha - 1} distinct points, got {points}")
    at = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j, p in enumerate(pts):
        f = Fraction(1)
        for k, q in enumerate(pts):
            if k != j:
                f *= p - q
        g.append([p ** i / f for i in range(r)])
    g.append([Fraction(0)] * (r - 1) + [Fraction(1)])
    # B^T: sum_j AT[i][j] G[j][k] BT[j][l] = [l == i + k] for all i, k: one system, a right-hand side per column
    system = [[at[i][j] * g[j][k] for j in range(alpha)] for i in range(m) for k in range(r)]
    rhs = [[Fraction(int(col == i + k)) for col in range(alpha)] for i in range(m) for k in range(r)]
    bt = _solve(system, rhs)
    return tuple(map(tuple, at)), tuple(map(tuple, g)), tuple(map(tuple, bt))


def _solve(a: list[list[Fraction]], b: list[list[Fraction]]) -> list[list[Fraction]]:
    """The exact solution X of the consistent (rows >= columns, full column rank) system a X = b,
    b with one row per row of a and any number of right-hand sides (one elimination for all)."""
    rows = [row[:] + list(v) for row, v in zip(a, b)]
    n = len(a[0])
    for col in range(n):
        pivot = next(i for i in range(col, len(rows)) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for i, row in enumerate(rows):
            if i != col and row[col] != 0:
                f = row[col]
                rows[i] = [u - f * v for u, v in zip(row, rows[col])]
    if any(v != 0 for row in rows[n:] for v in row):
        raise ValueError("inconsistent Winograd system")
    return [rows[i][n:] for i in range(n)]


def _tensor(rows, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=dtype)


class Winograd1dFilters(NamedTuple):
    """A 1 x r or r x 1 weight transformed for :func:`conv1d_winograd` (build once per weight)."""
    u: torch.Tensor   # (alpha, in, out): G w per point
    bt: torch.Tensor  # B^T (alpha, alpha), fp32
    at: torch.Tensor  # A^T (m, alpha), fp32
    axis: int         # 1: along H (an r x 1 kernel), 0: along W (1 x r)


def applies(conv: nn.Conv2d) -> bool:
    """Whether :func:`conv1d_winograd` computes ``conv`` (1 x r or r x 1, r 3 or 7, stride 1,
    "same" zero padding, no dilation or groups)."""
    kh, kw = conv.kernel_size
    r = max(kh, kw)
    return (min(kh, kw) == 1 and r in POINTS and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.padding == ((r // 2, 0) if kh == r else (0, r // 2)))


def winograd1d_filters(weight: torch.Tensor) -> Winograd1dFilters:
    """Transform a (out, in, r, 1) or (out, in, 1, r) weight (alpha / r times its memory)."""
    w = weight.detach()
    co, c, kh, kw = w.shape
    r, axis = max(kh, kw), int(kh > 1)
    at, g, bt = matrices(r)
    taps = w.double().reshape(co, c, r).permute(2, 1, 0).reshape(r, c * co)  # [k, (c, o)]
    u = torch.mm(_tensor(g, torch.float64), taps).view(len(g), c, co).to(w.dtype)
    return Winograd1dFilters(u, _tensor(bt, torch.float32), _tensor(at, torch.float32), axis)


def conv1d_winograd(x: torch.Tensor, filters: Winograd1dFilters, bias: torch.Tensor | None = None, *,
                    relu: bool = False, out: torch.Tensor | None = None,
                    workspace: Workspace | None = None) -> torch.Tensor:
    """``relu?(conv(x) + bias)`` for ``x`` (N, C, H, W) fp32 on the CPU (channels_last, or any
    tensor whose pixels are in NHWC order), with gencli's C kernels (:func:`gencli.kernels.native.available`).
    Writes ``out`` when given (N, CO, H, W, pixels in NHWC order: e.g. a channel slice of a
    channels_last tensor); else returns a new channels_last tensor."""
    u, bt, at, axis = filters
    co = u.shape[2]
    n, _, h, w = x.shape
    if not native_winograd._pixels(x):
        x = x.contiguous(memory_format=torch.channels_last)
    if out is None:
        out = torch.empty((n, co, h, w), dtype=x.dtype, memory_format=torch.channels_last)
    tile = at.shape[0]
    tiles = native_winograd.winograd1d_tiles(n, h, w, axis, tile)
    if winograd.fused_applies(u.shape[0], u.shape[1], co, tiles):
        return native_winograd.winograd1d_fused(x, u, out, bt, at, axis, bias=bias, relu=relu)
    run_blocks(x, u, tiles, workspace or _fresh,
               lambda v, tiles: native_winograd.winograd1d_input(x, v, tiles, bt, axis, tile),
               lambda m, tiles: native_winograd.winograd1d_output(m, out, tiles, at, axis, bias=bias, relu=relu))
    return out


def conv1d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                     relu: bool = False) -> torch.Tensor:
    """What :func:`conv1d_winograd` computes, with ``F.conv2d``."""
    kh, kw = weight.shape[2:]
    y = F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2))
    return F.relu(y) if relu else y
