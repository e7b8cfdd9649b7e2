"""Winograd F(4x4, 5x5): stride-1 5x5 convolutions with 6.25x fewer multiplications.

The FID Inception has three 5x5 convolutions (Mixed_5b/c/d.branch5x5_2, 48 -> 64 channels at
35 x 35, 10% of its multiply-adds). F(4x4, 5x5) computes a 4 x 4 block of outputs from an 8 x 8
input tile with 64 products per input and output channel pair instead of 16 * 25.

:func:`conv_winograd2d` runs the data and output transforms as gencli's C kernels
(``csrc/winograd2d.c``: bias and ReLU folded into the output transform, which can write a channel
slice of a wider tensor) and the 64 GEMMs with torch's BLAS, in blocks of tiles
(:func:`gencli.kernels.winograd.run_blocks`), or for small filters all three fused per group of
tiles in cache (:func:`gencli.kernels.winograd.fused_applies`); :func:`conv2d_reference` is the
same computation with ``F.conv2d``. The matrices are built exactly from the interpolation points
(:func:`gencli.kernels.winograd1d.exact_matrices`, the one-axis F(4, 5) nested on both axes).

Points: 0, +-1, +-2, +-1/2 and infinity, the least fp32 error in a search of symmetric
small-fraction sets (8.1e-6 of the largest output from a float64 convolution; 0, +-1, +-2, +-2/3
1.1e-5; direct fp32 5e-7). The C transforms rely on the symmetry (pairs +-p) to halve their
arithmetic; :func:`matrices` checks the structure they assume.

Tried and dropped: F(6x6, 3x3) with the same 8 x 8 tiles for the Inception's 3x3 layers (147, 71
and 35 pixels, where F(4x4, 3x3) wastes more of its last tile): 21% fewer GEMM products, but the
data transform writes 64 planes per tile instead of 36 and ran 2-3x slower per tile; 0.70-1.03x
F(4x4, 3x3) per layer on a 2-core Xeon, and 4x its rounding error.
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
from gencli.kernels.winograd1d import _tensor, exact_matrices

POINTS = ("0", "1", "-1", "2", "-2", "1/2", "-1/2")
ALPHA, M, R = 8, 4, 5


@functools.lru_cache(maxsize=1)
def matrices() -> tuple[tuple[tuple[Fraction, ...], ...], ...]:
    """(A^T (4, 8), G (8, 5), B^T (8, 8)) of F(4, 5), exact, after checking the structure the C
    transforms assume: points 0, then pairs +-p, then infinity, so that B^T's row for 0 uses only
    the even inputs, the row for infinity only the odd ones, each pair's rows are E + O and E - O
    over inputs 1 to 6, and A^T's columns for a pair are equal in even rows, opposite in odd ones."""
    at, g, bt = exact_matrices(POINTS, M, R)
    pts = [Fraction(p) for p in POINTS]
    ok = pts[0] == 0 and all(pts[i + 1] == -pts[i] != 0 for i in range(1, ALPHA - 1, 2))
    ok = ok and all(bt[0][k] == 0 for k in range(1, ALPHA, 2)) and all(bt[7][k] == 0 for k in range(0, ALPHA, 2))
    for i in range(1, ALPHA - 1, 2):
        ok = ok and bt[i][0] == bt[i][7] == bt[i + 1][0] == bt[i + 1][7] == 0
        ok = ok and all(bt[i + 1][k] == (bt[i][k] if k % 2 == 0 else -bt[i][k]) for k in range(1, ALPHA - 1))
        ok = ok and all(at[a][i + 1] == (at[a][i] if a % 2 == 0 else -at[a][i]) for a in range(M))
    if not ok:
        raise ValueError(f"points {POINTS} do not have the symmetric structure csrc/winograd2d.c assumes")
    return at, g, bt


class Winograd2dFilters(NamedTuple):
    """A 5x5 weight transformed for :func:`conv_winograd2d` (build once per weight)."""
    u: torch.Tensor   # (64, in, out): G w G^T per tile component
    bt: torch.Tensor  # B^T (8, 8), fp32
    at: torch.Tensor  # A^T (4, 8), fp32


def applies(conv: nn.Conv2d) -> bool:
    """Whether :func:`conv_winograd2d` computes ``conv``: 5x5, stride 1, the same zero padding (0
    to 4) on both axes, no dilation or groups."""
    return (conv.kernel_size == (R, R) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.padding[0] == conv.padding[1] and 0 <= conv.padding[0] < R)


def winograd2d_filters(weight: torch.Tensor) -> Winograd2dFilters:
    """Transform an (out, in, 5, 5) weight (2.56x its memory)."""
    w = weight.detach()
    co, c = w.shape[:2]
    at, g, bt = matrices()
    g64 = _tensor(g, torch.float64)
    # U[(i, j), c, o] = sum_kl G[i, k] G[j, l] w[o, c, k, l]: one GEMM in float64, rounded once
    taps = w.double().permute(2, 3, 1, 0).reshape(R * R, c * co)
    u = torch.mm(torch.kron(g64, g64), taps).view(ALPHA * ALPHA, c, co).to(w.dtype)
    return Winograd2dFilters(u, _tensor(bt, torch.float32), _tensor(at, torch.float32))


def conv_winograd2d(x: torch.Tensor, filters: Winograd2dFilters, bias: torch.Tensor | None = None, *,
                    padding: int = 2, relu: bool = False, out: torch.Tensor | None = None,
                    workspace: Workspace | None = None) -> torch.Tensor:
    """``relu?(conv(x) + bias)`` (5x5, stride 1, zero ``padding`` 0 to 4) for ``x`` (N, C, H, W) fp32
    on the CPU, with gencli's C kernels (:func:`gencli.kernels.native.available`). Writes ``out`` when given (N,
    CO, HO, WO, pixels in NHWC order: e.g. a channel slice of a channels_last tensor); else returns
    a new channels_last tensor."""
    u, bt, at = filters
    co = u.shape[2]
    x = x.contiguous(memory_format=torch.channels_last)
    n, _, h, w = x.shape
    ho, wo = h + 2 * padding - R + 1, w + 2 * padding - R + 1
    if out is None:
        out = torch.empty((n, co, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
    tiles = native_winograd.winograd2d_tiles(n, ho, wo)
    if winograd.fused_applies(u.shape[0], u.shape[1], co, tiles):
        return native_winograd.winograd2d_fused(x, u, out, bt, at, padding, bias=bias, relu=relu)
    run_blocks(x, u, tiles, workspace or _fresh,
               lambda v, tiles: native_winograd.winograd2d_input(x, v, tiles, bt, padding),
               lambda mm, tiles: native_winograd.winograd2d_output(mm, out, tiles, at, bias=bias, relu=relu))
    return out


def conv2d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                     padding: int = 2, relu: bool = False) -> torch.Tensor:
    """What :func:`conv_winograd2d` computes, with ``F.conv2d``."""
    y = F.conv2d(x, weight, bias, padding=padding)
    return F.relu(y) if relu else y
