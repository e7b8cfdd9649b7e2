"""The Python side of gencli's Winograd C kernels (built and loaded by :mod:`gencli.kernels.native`):
argument checks, then one call each.

- :func:`winograd_input` / :func:`winograd_output`: Winograd F(4x4, 3x3)'s data and output
  transforms, one pass each, used by :func:`gencli.kernels.winograd.conv3x3_winograd`
  (``csrc/winograd.c``); :func:`winograd_fused`: the whole F(4x4, 3x3) convolution, transforms and
  GEMMs per group of tiles in cache (for layers with small filters);
- :func:`winograd1d_input` / :func:`winograd1d_output` / :func:`winograd1d_fused`: the same for a
  one-axis Winograd F(m, r) (1 x r and r x 1 convolutions), used by
  :func:`gencli.kernels.winograd1d.conv1d_winograd` (``csrc/winograd1d.c``);
- :func:`winograd2d_input` / :func:`winograd2d_output` / :func:`winograd2d_fused`: the same for the
  2-D F(4x4, 5x5) (8 x 8 tiles), used by :func:`gencli.kernels.winograd2d.conv_winograd2d`
  (``csrc/winograd2d.c``); the fused functions share ``csrc/gemm.h``.
"""

from __future__ import annotations

import functools

import torch

from gencli.kernels.native import _f32, _function, _ptr

#: tiles per group of the fused Winograd kernels (a thread's unit of work, its transforms in cache)
FUSED_GROUP = 48


def tile_grid(h: int, w: int) -> tuple[int, int]:
    """Tiles down and across an (h, w) output of Winograd F(4x4, 3x3): 4x4 outputs each, the last
    row and column partial where a side is not a multiple of 4."""
    return -(-h // 4), -(-w // 4)


def winograd_input(x: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], *, silu: bool = False,
                   reflect: bool = False, pad: int = 1) -> torch.Tensor:
    """Winograd F(4x4, 3x3)'s data transform of the ``tiles`` [p0, p1) (p = (n * TH + ty) * TW +
    tx, (TH, TW) = :func:`tile_grid` of the output) of ``x`` (N, C, H, W; fp32 channels_last)
    padded by ``pad`` (1: zeros, or ``reflect``; 0: none, an unpadded convolution), SiLU first with
    ``silu``: writes and returns ``out`` (36, p1 - p0, C) = B^T d B per tile (see csrc/winograd.c).
    ``out``'s rows are contiguous; its 36 planes may lie further apart than a plane's size (see
    :func:`plane_stride`)."""
    n, c, h, w = x.shape
    p0, p1 = tiles
    th, tw = tile_grid(h + 2 * pad - 2, w + 2 * pad - 2)
    if (x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last)
            or pad not in (0, 1) or (reflect and pad != 1) or min(h, w) + 2 * pad < 3
            or not 0 <= p0 < p1 <= n * th * tw or not _planes(out, p1 - p0, c)):
        raise ValueError("winograd_input takes fp32 NHWC x, padding 0 or 1 (reflect: 1), a tile range and a "
                         "(36, tiles, C) out of contiguous rows")
    _function("gencli_winograd_input")(x.data_ptr(), out.data_ptr(), n, h, w, c, bool(silu), bool(reflect), p0, p1,
                                       out.stride(0), pad)
    return out


def winograd_output(m: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], *, bias: torch.Tensor | None = None,
                    sample_bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
                    relu: bool = False) -> torch.Tensor:
    """Winograd's output transform of the ``tiles`` [p0, p1): writes their pixels of ``out``
    (N, CO, H, W; fp32 channels_last) from the tile products ``m`` (36, p1 - p0, CO; planes as
    :func:`winograd_input`'s), plus ``bias`` (CO), ``sample_bias`` (N, CO) and ``residual``
    (``out``'s shape, channels_last), then ReLU with ``relu``."""
    n, co, h, w = out.shape
    p0, p1 = tiles
    th, tw = tile_grid(h, w)
    if (not _planes(m, p1 - p0, co) or not 0 <= p0 < p1 <= n * th * tw
            or out.dtype != torch.float32 or not out.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError("winograd_output takes an fp32 (36, tiles, CO) m of contiguous rows and an fp32 NHWC out")
    _check_residual(residual, out)
    bias, sample_bias = _f32(bias, co), _f32(sample_bias, n * co)
    _function("gencli_winograd_output")(m.data_ptr(), out.data_ptr(), _ptr(bias), _ptr(sample_bias), _ptr(residual),
                                        n, h, w, co, p0, p1, m.stride(0), bool(relu))
    return out


def _check_residual(residual: torch.Tensor | None, out: torch.Tensor) -> None:
    if residual is not None and (residual.shape != out.shape or residual.dtype != torch.float32
                                 or not residual.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError("residual must be an fp32 channels_last tensor of the output's shape")


def _fused_filters(u: torch.Tensor, planes: int, c: int, co: int, group: int) -> bool:
    """Whether ``u`` is what the fused kernels take: contiguous fp32 (planes, C, CO), CO a multiple
    of 16, and ``group`` at least one tile."""
    return (u.dtype == torch.float32 and tuple(u.shape) == (planes, c, co) and u.is_contiguous() and co % 16 == 0
            and group >= 1)


def _run_fused(name: str, *args) -> None:
    """Call the fused C kernel ``name``, which returns 1 when its tile buffers could not be had."""
    if _function(name)(*args):
        raise MemoryError(f"{name}: out of memory for its tile buffers")


@functools.lru_cache(maxsize=1)
def gemm_lanes() -> int:
    """Floats per vector of the fused Winograd kernels' GEMM as built on this machine (16 with
    AVX-512, 8 with AVX2)."""
    return _function("gencli_gemm_lanes")()


def winograd_fused(x: torch.Tensor, u: torch.Tensor, out: torch.Tensor, *, bias: torch.Tensor | None = None,
                   sample_bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
                   silu: bool = False, reflect: bool = False, pad: int = 1, relu: bool = False,
                   group: int = FUSED_GROUP) -> torch.Tensor:
    """The whole Winograd F(4x4, 3x3) convolution of ``x`` (N, C, H, W; fp32 channels_last) with
    the transformed filters ``u`` (36, C, CO; CO a multiple of 16) into ``out`` (N, CO, H + 2 pad -
    2, W + 2 pad - 2; fp32 channels_last): per ``group`` of tiles, :func:`winograd_input`'s
    transform, the 36 GEMMs and :func:`winograd_output`'s transform (with its bias, sample_bias,
    residual and relu) in one pass that keeps the tiles' transforms in cache."""
    n, c, h, w = x.shape
    co = u.shape[2]
    if (x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last)
            or pad not in (0, 1) or (reflect and pad != 1) or min(h, w) + 2 * pad < 3
            or not _fused_filters(u, 36, c, co, group) or out.dtype != torch.float32 or out.shape != (n, co, h + 2 * pad - 2, w + 2 * pad - 2)
            or not out.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError("winograd_fused takes fp32 NHWC x and out, padding 0 or 1 (reflect: 1) and contiguous "
                         "fp32 (36, C, CO) filters with CO a multiple of 16")
    _check_residual(residual, out)
    bias, sample_bias = _f32(bias, co), _f32(sample_bias, n * co)
    _run_fused("gencli_winograd_fused", x.data_ptr(), u.data_ptr(), out.data_ptr(), _ptr(bias), _ptr(sample_bias),
               _ptr(residual), n, h, w, c, co, bool(silu), bool(reflect), pad, bool(relu), group)
    return out


def _pixels(t: torch.Tensor) -> bool:
    """Whether ``t`` (N, C, H, W) is fp32 on the CPU with each pixel's channels contiguous and
    its pixels one stride apart in NHWC order (channels_last, or a channel slice of such a tensor)."""
    n, c, h, w = t.shape
    s = t.stride()
    return (t.dtype == torch.float32 and t.device.type == "cpu" and s[1] == 1 and s[3] >= c
            and s[2] == w * s[3] and s[0] == h * w * s[3])


def winograd1d_tiles(n: int, h: int, w: int, axis: int, m: int) -> int:
    """Tiles of m outputs along ``axis`` (1: H, 0: W) of an n x h x w batch, the last one partial
    where the side is not a multiple of m."""
    length = h if axis else w
    return n * (h * w // length) * -(-length // m)


def _winograd1d_shape(alpha: int, m: int, axis: int, n: int, h: int, w: int) -> tuple[int, int] | None:
    """(r, tiles) of a one-axis F(m, r) with ``alpha`` points (F(6, 7) or F(4, 3)) on an n x h x w
    batch along ``axis``; None for another pair."""
    r = alpha - m + 1
    if (r, m) not in ((7, 6), (3, 4)) or axis not in (0, 1):
        return None
    return r, winograd1d_tiles(n, h, w, axis, m)


def winograd1d_input(x: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], bt: torch.Tensor,
                     axis: int, m: int) -> torch.Tensor:
    """One-axis Winograd F(m, r)'s data transform (``bt``: the (alpha, alpha) B^T, alpha = m + r -
    1: F(6, 7) or F(4, 3)) of the ``tiles`` [p0, p1) of ``x`` (N, C, H, W; fp32, pixels in NHWC
    order), along H (``axis`` 1: an r x 1 convolution) or W (0: 1 x r), zero-padded by (r - 1) / 2:
    writes and returns ``out`` (alpha, p1 - p0, C), rows contiguous. Tile order: see csrc/winograd1d.c."""
    n, c, h, w = x.shape
    alpha = bt.shape[0]
    p0, p1 = tiles
    shape = _winograd1d_shape(alpha, m, axis, n, h, w)
    if (shape is None or bt.shape != (alpha, alpha) or bt.dtype != torch.float32 or not bt.is_contiguous()
            or not _pixels(x) or not 0 <= p0 < p1 <= shape[1] or not _planes(out, p1 - p0, c, alpha)):
        raise ValueError("winograd1d_input takes fp32 NHWC x, the B^T of F(6, 7) or F(4, 3), axis 0 or 1, a tile "
                         "range and an (alpha, tiles, C) out of contiguous rows")
    _function("gencli_winograd1d_input")(x.data_ptr(), x.stride(3), out.data_ptr(), n, h, w, c, axis, shape[0], m,
                                         bt.data_ptr(), p0, p1, out.stride(0))
    return out


def winograd1d_output(mm: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], at: torch.Tensor, axis: int, *,
                      bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """:func:`winograd1d_input`'s output transform (``at``: the (m, alpha) A^T): writes the pixels
    of the ``tiles`` [p0, p1) of ``out`` (N, CO, H, W; fp32, pixels in NHWC order, e.g. a channel
    slice of a channels_last tensor) from the products ``mm`` (alpha, p1 - p0, CO), plus ``bias``
    (CO), then ReLU with ``relu``."""
    n, co, h, w = out.shape
    m, alpha = at.shape
    p0, p1 = tiles
    shape = _winograd1d_shape(alpha, m, axis, n, h, w)
    if (shape is None or at.dtype != torch.float32 or not at.is_contiguous() or not _pixels(out)
            or not 0 <= p0 < p1 <= shape[1] or not _planes(mm, p1 - p0, co, alpha)):
        raise ValueError("winograd1d_output takes an fp32 (alpha, tiles, CO) mm of contiguous rows, the A^T of "
                         "F(6, 7) or F(4, 3), axis 0 or 1 and an fp32 out with pixels in NHWC order")
    bias = _f32(bias, co)
    _function("gencli_winograd1d_output")(mm.data_ptr(), out.data_ptr(), out.stride(3), _ptr(bias), bool(relu), n, h,
                                          w, co, axis, shape[0], m, at.data_ptr(), p0, p1, mm.stride(0))
    return out


def winograd1d_fused(x: torch.Tensor, u: torch.Tensor, out: torch.Tensor, bt: torch.Tensor, at: torch.Tensor,
                     axis: int, *, bias: torch.Tensor | None = None, relu: bool = False,
                     group: int = FUSED_GROUP) -> torch.Tensor:
    """The whole one-axis Winograd convolution (:func:`winograd1d_input`, the alpha GEMMs with the
    transformed filters ``u`` (alpha, C, CO; CO a multiple of 16), :func:`winograd1d_output`) per
    ``group`` of tiles, their transforms kept in cache: writes ``out`` (pixels in NHWC order)."""
    n, c, h, w = x.shape
    co = out.shape[1]
    m, alpha = at.shape
    shape = _winograd1d_shape(alpha, m, axis, n, h, w)
    if (shape is None or bt.shape != (alpha, alpha) or bt.dtype != torch.float32 or not bt.is_contiguous()
            or at.dtype != torch.float32 or not at.is_contiguous() or not _pixels(x) or not _pixels(out)
            or out.shape != (n, co, h, w) or not _fused_filters(u, alpha, c, co, group)):
        raise ValueError("winograd1d_fused takes fp32 x and out with pixels in NHWC order, the B^T and A^T of F(6, 7) "
                         "or F(4, 3), axis 0 or 1 and contiguous fp32 (alpha, C, CO) filters with CO a multiple of 16")
    bias = _f32(bias, co)
    _run_fused("gencli_winograd1d_fused", x.data_ptr(), x.stride(3), u.data_ptr(), out.data_ptr(), out.stride(3),
               _ptr(bias), bool(relu), n, h, w, c, co, axis, shape[0], m, bt.data_ptr(), at.data_ptr(), group)
    return out


def winograd2d_tiles(n: int, ho: int, wo: int) -> int:
    """Tiles of 4 x 4 outputs of an n x ho x wo output (F(4x4, 5x5)), the last row and column
    partial where a side is not a multiple of 4."""
    return n * -(-ho // 4) * -(-wo // 4)


def winograd2d_input(x: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], bt: torch.Tensor,
                     pad: int) -> torch.Tensor:
    """Winograd F(4x4, 5x5)'s data transform (``bt``: its (8, 8) B^T) of the ``tiles`` [p0, p1) (p =
    (n * TH + ty) * TW + tx over the output's 4 x 4 tiles) of ``x`` (N, C, H, W; fp32
    channels_last) zero-padded by ``pad`` (0 to 4): writes and returns ``out`` (64, p1 - p0, C), rows
    contiguous, planes possibly further apart (see csrc/winograd2d.c)."""
    n, c, h, w = x.shape
    p0, p1 = tiles
    ho, wo = h + 2 * pad - 4, w + 2 * pad - 4
    if (not 0 <= pad < 5 or min(ho, wo) < 1 or bt.shape != (8, 8) or bt.dtype != torch.float32
            or not bt.is_contiguous() or x.dtype != torch.float32 or x.device.type != "cpu"
            or not x.is_contiguous(memory_format=torch.channels_last)
            or not 0 <= p0 < p1 <= winograd2d_tiles(n, ho, wo) or not _planes(out, p1 - p0, c, 64)):
        raise ValueError("winograd2d_input takes fp32 NHWC x, the 8 x 8 B^T of F(4x4, 5x5), padding 0 to 4, a "
                         "tile range and a (64, tiles, C) out of contiguous rows")
    _function("gencli_winograd2d_input")(x.data_ptr(), out.data_ptr(), n, h, w, c, pad, bt.data_ptr(), p0, p1,
                                         out.stride(0))
    return out


def winograd2d_output(mm: torch.Tensor, out: torch.Tensor, tiles: tuple[int, int], at: torch.Tensor, *,
                      bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """:func:`winograd2d_input`'s output transform (``at``: the (4, 8) A^T): writes the pixels of the
    ``tiles`` [p0, p1) of ``out`` (N, CO, H, W; fp32, pixels in NHWC order, e.g. a channel slice of
    a channels_last tensor) from the products ``mm`` (64, p1 - p0, CO), plus ``bias`` (CO), then
    ReLU with ``relu``."""
    n, co, h, w = out.shape
    p0, p1 = tiles
    if (at.shape != (4, 8) or at.dtype != torch.float32 or not at.is_contiguous() or not _pixels(out)
            or not 0 <= p0 < p1 <= winograd2d_tiles(n, h, w) or not _planes(mm, p1 - p0, co, 64)):
        raise ValueError("winograd2d_output takes an fp32 (64, tiles, CO) mm of contiguous rows, the A^T of "
                         "F(4x4, 5x5) and an fp32 out with pixels in NHWC order")
    bias = _f32(bias, co)
    _function("gencli_winograd2d_output")(mm.data_ptr(), out.data_ptr(), out.stride(3), _ptr(bias), bool(relu), n, h,
                                          w, co, at.data_ptr(), p0, p1, mm.stride(0))
    return out


def winograd2d_fused(x: torch.Tensor, u: torch.Tensor, out: torch.Tensor, bt: torch.Tensor, at: torch.Tensor,
                     pad: int, *, bias: torch.Tensor | None = None, relu: bool = False,
                     group: int = FUSED_GROUP) -> torch.Tensor:
    """The whole F(4x4, 5x5) convolution (:func:`winograd2d_input`, the 64 GEMMs with the
    transformed filters ``u`` (64, C, CO; CO a multiple of 16), :func:`winograd2d_output`) per
    ``group`` of tiles, their transforms kept in cache: writes ``out`` (pixels in NHWC order)."""
    n, c, h, w = x.shape
    co = out.shape[1]
    ho, wo = h + 2 * pad - 4, w + 2 * pad - 4
    if (not 0 <= pad < 5 or min(ho, wo) < 1 or bt.shape != (8, 8) or bt.dtype != torch.float32
            or not bt.is_contiguous() or at.shape != (4, 8) or at.dtype != torch.float32 or not at.is_contiguous()
            or x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last)
            or not _pixels(out) or out.shape != (n, co, ho, wo) or not _fused_filters(u, 64, c, co, group)):
        raise ValueError("winograd2d_fused takes fp32 NHWC x, an fp32 out with pixels in NHWC order, the B^T and A^T "
                         "of F(4x4, 5x5), padding 0 to 4 and contiguous fp32 (64, C, CO) filters with CO a multiple "
                         "of 16")
    bias = _f32(bias, co)
    _run_fused("gencli_winograd2d_fused", x.data_ptr(), u.data_ptr(), out.data_ptr(), out.stride(3), _ptr(bias),
               bool(relu), n, h, w, c, co, pad, bt.data_ptr(), at.data_ptr(), group)
    return out


def plane_stride(rows: int, cols: int) -> int:
    """Floats between the 36 planes of a Winograd tile buffer of (rows, cols) planes: the plane
    size, plus one cache line where that is a multiple of 4 KiB (the transforms read or write the
    36 planes at once; 36 streams a multiple of 4 KiB apart share cache sets and evict each other:
    measured on a 2-core Xeon, the data transform at 16 x 256 x 32 x 32 1.3x slower, the cifar10
    UNet's forward ~3%)."""
    size = rows * cols
    return size + 16 if size % 1024 == 0 else size


def _planes(t: torch.Tensor, rows: int, cols: int, planes: int = 36) -> bool:
    """Whether ``t`` is an fp32 CPU (planes, rows, cols) tile buffer of contiguous rows."""
    return (t.dtype == torch.float32 and t.device.type == "cpu" and t.shape == (planes, rows, cols)
            and t.stride(1) == cols and t.stride(2) == 1 and t.stride(0) >= rows * cols)
