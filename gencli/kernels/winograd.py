"""Winograd F(4x4, 3x3): stride-1 3x3 convolutions (padding 1 or 0) with 4x fewer multiplications.

:func:`conv3x3_winograd` is the kernel (fp32 on the CPU is where it pays; see
:mod:`gencli.kernels.fast_path` for when it is used), :func:`conv3x3_reference` the same
computation with ``F.conv2d``. Both compute ``conv(silu(x) if silu else x) + bias +
sample_bias[:, :, None, None] + residual``; the kernel folds SiLU into the copy into its padded
tile buffer, and the bias, the per-sample bias and the residual into its transforms.

With the C kernels, a layer whose transformed filters are small and whose tiles are many runs
fused (:func:`fused_applies`, :func:`gencli.kernels.native_winograd.winograd_fused`): transforms and GEMMs
per group of tiles in cache; otherwise the transforms run in C and the GEMMs in torch's BLAS, in
blocks of tiles (:func:`run_blocks`).

Interpolation points 0, 1, -1, 1/2, -2 and infinity: y = A^T [(G g G^T) * (B^T d B)] A on 6x6
input tiles (stride 4). Against the usual 0, +-1, +-2 these points gave ~3x less fp32 error in a
search over point sets (the data and output transforms stay exact in binary: multiples of 1/8); a
layer's output is within ~1.5e-5 of direct convolution on unit-scale activations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from gencli.kernels import native
from gencli.kernels import native_winograd

_WINO_AT = ((1, 1, 1, 1, 1, 0),
            (0, 1, -1, "1/2", -2, 0),
            (0, 1, 1, "1/4", 4, 0),
            (0, 1, -1, "1/8", -8, 1))
_WINO_G = ((1, 0, 0),
           ("1/3", "1/3", "1/3"),
           ("-1/3", "1/3", "-1/3"),
           ("-16/15", "-8/15", "-4/15"),
           ("1/15", "-2/15", "4/15"),
           (0, 0, 1))
_WINO_BT = ((1, "-3/2", -2, "3/2", 1, 0),
            (0, -1, "1/2", "5/2", 1, 0),
            (0, 1, "-5/2", "1/2", 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, "1/2", -1, "-1/2", 1, 0),
            (0, 1, "-3/2", -2, "3/2", 1))
# Tile component (1, 1): the point 1, whose output-transform column is all ones, so a bias added
# to it reaches every output of the tile exactly once.
WINO_BIAS_INDEX = 7

# With the C transforms (gencli.kernels.native_winograd), tiles are transformed, multiplied and transformed
# back in blocks whose transformed data takes at most about this many bytes (on a 2-core Xeon, 1 and
# 4 MiB blocks were up to 25% slower than 16 MiB: the smaller GEMMs lose more than the cache gains).
NATIVE_BLOCK_BYTES = 1 << 24

# Which layers run fused (the kernels' fused C functions, native_winograd.winograd_fused and the one-axis
# and 5x5 ones: transforms and GEMMs per group of native_winograd.FUSED_GROUP tiles in cache) where the C
# kernels are built: those with enough tiles for FUSED_MIN_GROUPS groups per thread (fewer groups
# leave threads idle, where the blocked path splits each GEMM) and transformed filters (tile
# components x C x CO) of at most FUSED_MAX_FILTER values, read once per group. 2-core Xeon, fused
# against blocked, batch 16: F(4x4, 3x3) 32->32 at 147x147 1.3x, 80->192 at 71x71 1.15x, 128->128
# / 256->128 / 384->128 / 256->256 at 32x32 (1024 tiles) 1.02-1.14x, 256->256 at 16x16 (256 tiles)
# 1.0x, at 8x8 0.73x, at 4x4 0.55x, 448->384 at 8x8 0.66x; F(6, 7) 192->192 at 17x17 (816 tiles)
# 1.07x; F(4, 3) 384->384 at 8x8 (256 tiles) 0.9x; F(4x4, 5x5) 48->64 at 35x35 2.4x.
FUSED_MAX_FILTER = 36 * 256 * 256
FUSED_MIN_GROUPS = 5
# The fused kernels' GEMM pays with AVX-512 (16-float vectors); built for AVX2 it ran 0.75-1.0x the
# blocked path (on the same Xeon, against MKL's AVX-512 GEMMs): AVX2 builds keep the blocked path.
FUSED_MIN_LANES = 16
FUSED = True  # False: always the blocked path (tests and benchmarks compare both)

# A workspace gives the kernel scratch memory: workspace(role, numel, like) -> a flat tensor of
# ``numel`` elements with like's dtype and device (FastState.workspace reuses them across calls).
Workspace = Callable[[str, int, torch.Tensor], torch.Tensor]


def _fresh(role: str, numel: int, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(numel, dtype=like.dtype, device=like.device)


def winograd_matrices(dtype: torch.dtype = torch.float64, device: Any = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A^T 4x6, G 6x3, B^T 6x6) of the Winograd F(4x4, 3x3) used by the fast path."""
    def mat(rows):
        return torch.tensor([[float(Fraction(str(v))) for v in r] for r in rows], dtype=dtype, device=device)
    return mat(_WINO_AT), mat(_WINO_G), mat(_WINO_BT)


@functools.lru_cache(maxsize=1)
def _matrices64() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # parsed once: building them from the fractions took ~0.5 ms per filter, 25 ms of a UNet's setup
    return winograd_matrices()


class WinogradFilters(NamedTuple):
    """A 3x3 weight transformed for :func:`conv3x3_winograd` (build once per weight)."""
    u: torch.Tensor    # (36, in, out): G w G^T for every tile component
    bt: torch.Tensor   # B^T (6, 6)
    bt3: torch.Tensor  # B^T repeated for the batched second axis (6, 6, 6)
    at: torch.Tensor   # A^T (4, 6)
    at3: torch.Tensor  # A^T repeated (4, 4, 6)


def winograd_filters(weight: torch.Tensor) -> WinogradFilters:
    """Transform a (out, in, 3, 3) convolution weight (~4x its memory)."""
    w = weight.detach()
    at, g, bt = (mat.to(w.device, w.dtype, copy=True) for mat in _matrices64())
    co, c = w.shape[0], w.shape[1]
    # U[(i, j), c, o] = (G w[o, c] G^T)[i, j] = sum_kl G[i, k] G[j, l] w[o, c, k, l]: one GEMM
    wt = w.permute(1, 0, 2, 3).reshape(c * co, 9)
    u = torch.mm(torch.kron(g, g), wt.t()).view(36, c, co)
    # batched copies for the second transform axis (a stride-0 expand is slow in bmm)
    return WinogradFilters(u, bt, bt.expand(6, 6, 6).contiguous(), at, at.expand(4, 4, 6).contiguous())


def conv3x3_winograd(x: torch.Tensor, filters: WinogradFilters, bias: torch.Tensor | None = None, *,
                     silu: bool = False, sample_bias: torch.Tensor | None = None,
                     residual: torch.Tensor | None = None, workspace: Workspace | None = None,
                     padding_mode: str = "zeros", padding: int = 1, relu: bool = False) -> torch.Tensor:
    """3x3 convolution (stride 1) of ``x`` (N, C, H, W) with ``padding`` 1 or 0 (an output of
    H - 2 x W - 2). The C transforms take any size; the torch ones (no compiler) padding 1 and H,
    W multiples of 4.

    ``padding_mode``: "zeros" (``Conv2d(padding=1)``) or "reflect" (``ReflectionPad2d(1)`` then an
    unpadded conv, as the CycleGAN ResnetBlock; H and W >= 2). ``sample_bias`` (N, out) is added
    per sample and channel, ``residual`` (N, out, H, W) to the output; ``relu`` applies ReLU last.
    Returns an NCHW-shaped view of NHWC memory (channels_last)."""
    u, bt, bt3, at, at3 = filters
    buf = workspace or _fresh
    n, c, h, w = x.shape
    co = u.shape[2]
    if padding_mode not in ("zeros", "reflect"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
    if padding not in (0, 1) or (padding_mode == "reflect" and padding != 1):
        raise ValueError(f"padding must be 1, or 0 with zeros padding mode; got {padding} ({padding_mode})")
    if native_transforms(x):
        # the transforms as gencli's C kernels, the 36 GEMMs by torch's BLAS, in blocks of tiles
        # (measured: fewer, larger blocks win; the block bound only caps the scratch memory)
        x = x.contiguous(memory_format=torch.channels_last)
        if residual is not None:
            residual = residual.to(torch.float32).contiguous(memory_format=torch.channels_last)
        ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
        th, tw = native_winograd.tile_grid(ho, wo)
        p = n * th * tw
        out = torch.empty((n, co, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
        if fused_applies(36, c, co, p):
            return native_winograd.winograd_fused(x, u, out, bias=bias, sample_bias=sample_bias, residual=residual, silu=silu,
                                         reflect=padding_mode == "reflect", pad=padding, relu=relu)
        run_blocks(x, u, p, buf,
                   lambda v, tiles: native_winograd.winograd_input(x, v, tiles, silu=silu, reflect=padding_mode == "reflect",
                                                          pad=padding),
                   lambda m, tiles: native_winograd.winograd_output(m, out, tiles, bias=bias, sample_bias=sample_bias,
                                                           residual=residual, relu=relu))
        return out
    if padding != 1 or h % 4 or w % 4:
        raise ValueError("without gencli's C kernels, Winograd takes padding 1 and sides that are multiples of 4")
    th, tw = h // 4, w // 4
    p = n * th * tw
    # padded NHWC copy of the input (SiLU applied on the way)
    xp = buf("pad", n * (h + 2) * (w + 2) * c, x).view(n, h + 2, w + 2, c)
    s = xp.stride()
    inner = xp[:, 1:h + 1, 1:w + 1]
    if silu:
        torch._C._nn.silu(x.permute(0, 2, 3, 1), out=inner)
    else:
        inner.copy_(x.permute(0, 2, 3, 1))
    if padding_mode == "zeros":
        xp.as_strided((n, 2, w + 2, c), (s[0], (h + 1) * s[1], s[2], s[3])).zero_()  # top and bottom rows
        xp.as_strided((n, h + 2, 2, c), (s[0], s[1], (w + 1) * s[2], s[3])).zero_()  # left and right columns
    else:  # reflection: padded row 0 = input row 1, row h + 1 = input row h - 2; then the columns
        xp[:, 0].copy_(xp[:, 2])
        xp[:, h + 1].copy_(xp[:, h - 1])
        xp[:, :, 0].copy_(xp[:, :, 2])
        xp[:, :, w + 1].copy_(xp[:, :, w - 1])
    # 6x6 tiles with stride 4: d[(i, j), (n, ty, tx, c)] = xp[n, 4 ty + i, 4 tx + j, c]
    tiles = xp.as_strided((6, 6, n, th, tw, c), (s[1], s[2], s[0], 4 * s[1], 4 * s[2], s[3]))
    d = buf("tiles", 36 * p * c, x).view(6, 6, n, th, tw, c)
    d.copy_(tiles)
    # B^T d B, one axis at a time (3x fewer flops than the 36x36 Kronecker product)
    v1 = torch.mm(bt, d.view(6, 6 * p * c), out=buf("v1", 36 * p * c, x).view(6, 6 * p * c))
    v = torch.bmm(bt3, v1.view(6, 6, p * c), out=buf("v", 36 * p * c, x).view(6, 6, p * c)).view(36, p, c)
    m = torch.bmm(v, u, out=buf("m", 36 * p * co, x).view(36, p, co))  # 36 independent GEMMs
    m_bias = m[WINO_BIAS_INDEX]  # the tile component that reaches every output once
    if bias is not None:
        m_bias += bias
    if sample_bias is not None:
        m_bias.view(n, th * tw, co).add_(sample_bias[:, None, :])
    y = torch.mm(at, m.view(6, 6 * p * co), out=buf("y1", 24 * p * co, x).view(4, 6 * p * co))
    y = torch.bmm(at3, y.view(4, 6, p * co), out=buf("y", 16 * p * co, x).view(4, 4, p * co))
    y = y.view(4, 4, n, th, tw, co).permute(2, 3, 0, 4, 1, 5)
    out = x.new_empty((n, h, w, co))
    out6 = out.view(n, th, 4, tw, 4, co)
    if residual is not None:
        torch.add(y, residual.permute(0, 2, 3, 1).view(n, th, 4, tw, 4, co), out=out6)
    else:
        out6.copy_(y)
    if relu:
        out.relu_()
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory (channels_last)


def run_blocks(x: torch.Tensor, u: torch.Tensor, tiles: int, buf: Workspace,
               data: Callable[[torch.Tensor, tuple[int, int]], Any],
               output: Callable[[torch.Tensor, tuple[int, int]], Any]) -> None:
    """A Winograd convolution's ``tiles`` tiles in blocks (shared by the 2-D and the one-axis
    kernels): per block [p0, p1), ``data(v, (p0, p1))`` writes the (planes, p1 - p0, C) transformed
    input, the planes' GEMMs with the filters ``u`` (planes, C, CO) run in one torch ``bmm`` into a
    contiguous buffer, and ``output(m, (p0, p1))`` transforms their (planes, p1 - p0, CO) products
    back. Blocks hold at most about NATIVE_BLOCK_BYTES of transformed input."""
    planes, c, co = u.shape
    step = max(NATIVE_BLOCK_BYTES // (planes * 4 * max(c, co)), 8)
    for p0 in range(0, tiles, step):
        p1 = min(p0 + step, tiles)
        rows = _gemm_rows(p1 - p0, co)
        v = _tile_buffer(buf, "v", rows, c, x, planes)
        data(v[:, :p1 - p0], (p0, p1))
        if rows > p1 - p0:
            v[:, p1 - p0:].zero_()  # the spare row (see _gemm_rows)
        m = torch.bmm(v, u, out=buf("m", planes * rows * co, x).view(planes, rows, co))
        output(m[:, :p1 - p0], (p0, p1))


def _gemm_rows(tiles: int, co: int) -> int:
    """Rows of the 36 GEMMs for a block of ``tiles`` tiles: ``tiles``, or one spare row where a
    (tiles, co) plane of their contiguous output would be a multiple of 4 KiB. The output stays
    contiguous (torch's bmm makes one batched BLAS call for a contiguous output and 36 separate
    ones otherwise: 1.1-1.8x slower at these shapes on a 2-core Xeon) while its planes, which the
    output transform reads at once, stay out of each other's cache sets (see
    :func:`native_winograd.plane_stride`)."""
    if native_winograd.plane_stride(tiles, co) == tiles * co:  # not a 4 KiB multiple: no spacing needed
        return tiles
    # one spare row moves the plane off the multiple (unless co itself is a multiple of 1024 floats)
    return tiles + 1 if native_winograd.plane_stride(tiles + 1, co) == (tiles + 1) * co else tiles


def _tile_buffer(buf: Workspace, role: str, rows: int, cols: int, like: torch.Tensor,
                 planes: int = 36) -> torch.Tensor:
    """A (planes, rows, cols) tile buffer whose planes lie :func:`native_winograd.plane_stride` apart."""
    stride = native_winograd.plane_stride(rows, cols)
    return buf(role, (planes - 1) * stride + rows * cols, like).as_strided((planes, rows, cols), (stride, cols, 1))


def applies(conv: nn.Conv2d) -> bool:
    """Whether :func:`conv3x3_winograd` computes ``conv`` (3x3, stride 1, padding 1 or 0 with zeros,
    no dilation or groups)."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros")


def fused_applies(planes: int, c: int, co: int, tiles: int) -> bool:
    """Whether a Winograd kernel with ``planes`` tile components runs a C -> CO layer of ``tiles``
    tiles with its fused C kernel (when its C kernels run at all: :func:`native_transforms`)."""
    return (FUSED and co % 16 == 0 and planes * c * co <= FUSED_MAX_FILTER
            and tiles >= FUSED_MIN_GROUPS * native_winograd.FUSED_GROUP * torch.get_num_threads()
            and native_winograd.gemm_lanes() >= FUSED_MIN_LANES)


def native_transforms(x: torch.Tensor) -> bool:
    """Whether :func:`conv3x3_winograd` runs its transforms as gencli's C kernels
    (:mod:`gencli.kernels.native`) for ``x``: fp32 CPU tensors, with the kernels built."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and native.available()


def conv3x3_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                      silu: bool = False, sample_bias: torch.Tensor | None = None,
                      residual: torch.Tensor | None = None, padding_mode: str = "zeros",
                      padding: int = 1, relu: bool = False) -> torch.Tensor:
    """What :func:`conv3x3_winograd` computes, with ``F.conv2d``."""
    x = F.silu(x) if silu else x
    if padding_mode == "reflect":
        out = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias)
    else:
        out = F.conv2d(x, weight, bias, padding=padding)
    if sample_bias is not None:
        out = out + sample_bias[:, :, None, None]
    if residual is not None:
        out = out + residual
    return F.relu(out) if relu else out
