"""Convolutions with very few output channels (an RGB output layer: 64 -> 3, 7x7) on NHWC memory.

oneDNN runs such a layer at a fraction of its usual speed (3 output channels fill no vector
register). :func:`conv_few_outputs` reads ``r`` horizontally adjacent pixels as one pixel of
``r * C`` channels (a free view of NHWC memory) and convolves that with a regrouped kernel
(:func:`grouped_weight`) that writes ``r * C_out`` channels, i.e. ``r`` adjacent output pixels, which
is again a free view of the NHWC output. The regrouped kernel has ``ceil((k + r - 1) / r)`` taps
across instead of ``k`` (zeros where a tap falls outside the original kernel), so it does
``(k + r - 1) / k``-fold the multiplications, in a shape oneDNN runs ~2x faster (measured on
Zen 4: 64 -> 3, 7x7 at 256x256: 32 ms direct, 15 ms with r = 4). Exact up to summation order.
:func:`conv_few_outputs_reference` is ``F.conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _taps(kw: int, r: int) -> int:
    return (kw + 2 * r - 2) // r


def input_width(width: int, kw: int, r: int) -> int:
    """The width (a multiple of ``r``) an input of ``width`` columns must be padded to on the right
    so that :func:`conv_few_outputs` yields all ``width - kw + 1`` output columns."""
    need = max(width, width - kw + 1 + r * (_taps(kw, r) - 1))
    return -(-need // r) * r


def grouped_weight(weight: torch.Tensor, r: int) -> torch.Tensor:
    """(out, in, kh, kw) -> (r * out, r * in, kh, taps): output channel b * out + o is output
    pixel x0 + b, input channel v * in + c is input pixel x0 + v of a group of ``r``."""
    co, ci, kh, kw = weight.shape
    taps = _taps(kw, r)
    wp = weight.new_zeros(r, co, r, ci, kh, taps)
    for b in range(r):
        for q in range(taps):
            for v in range(r):
                kj = r * q + v - b
                if 0 <= kj < kw:
                    wp[b, :, v, :, :, q] = weight[:, :, :, kj]
    return wp.reshape(r * co, r * ci, kh, taps).contiguous(memory_format=torch.channels_last)


def conv_few_outputs(x: torch.Tensor, grouped: torch.Tensor, bias: torch.Tensor | None, r: int,
                     out_width: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` (stride 1, no padding) from ``grouped = grouped_weight(weight, r)``.

    ``x``: (N, C, H, W) with channels_last memory and W a multiple of ``r`` (pad it on the right:
    :func:`input_width`); the output is cropped to ``out_width`` columns, which the padded input
    must cover. Returns channels_last memory."""
    n, c, h, w = x.shape
    if w % r or not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("conv_few_outputs needs channels_last input with a width that is a multiple of r")
    if out_width > w - r * (grouped.shape[3] - 1):
        raise ValueError(f"an input {w} wide gives at most {w - r * (grouped.shape[3] - 1)} output columns "
                         f"here, not {out_width}: pad it to input_width()")
    xv = x.permute(0, 2, 3, 1).view(n, h, w // r, r * c).permute(0, 3, 1, 2)
    y = F.conv2d(xv, grouped, None if bias is None else bias.repeat(r))
    co = grouped.shape[0] // r
    y = y.permute(0, 2, 3, 1).reshape(n, y.shape[2], y.shape[3] * r, co)[:, :, :out_width]
    return y.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def conv_few_outputs_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               out_width: int) -> torch.Tensor:
    """What :func:`conv_few_outputs` computes."""
    return F.conv2d(x, weight, bias)[..., :out_width]
