"""oneDNN's fused CPU operators, as torch ships them for its compiler (``torch.ops.mkldnn``).

The bf16 fast path calls them where eager PyTorch would take two passes over memory or repack a
weight on every call: a convolution with its weight packed once into oneDNN's blocked layout
(AMX/AVX-512 tiles) and a residual added in the same call, and a linear layer plus residual; the
fp32 FID Inception a convolution + ReLU with its weight packed once (3-11% quicker per layer). They
are internal operators (no stability promise), so :func:`usable` checks once that they exist and
agree with ``F.conv2d`` / ``F.linear`` on a small case; where they do not, the fast path keeps
the plain operators. The results match the plain operators up to bf16 rounding (the fused add
rounds once, after the sum; measured max difference: one bf16 ulp of the output).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def usable(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether the fused operators exist here and compute what the plain ones do on ``dtype``
    tensors (bf16 or fp32), and are not switched off with ``GENCLI_ONEDNN=0``."""
    if os.environ.get("GENCLI_ONEDNN", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 16, 6, 6, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(8, 16, 3, 3, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        b = torch.randn(8, generator=gen).to(dtype)
        r = torch.randn(2, 8, 6, 6, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        xl, rl, wl = (torch.randn(*shape, generator=gen).to(dtype) for shape in ((5, 16), (5, 8), (8, 16)))
        with torch.inference_mode():
            packed = pack_conv_weight(w, (1, 1), (1, 1), (1, 1), x.shape)
            got = conv2d(x, packed, b, (1, 1), (1, 1), (1, 1), r)
            relu = conv2d(x, packed, b, (1, 1), (1, 1), (1, 1), relu=True)
            want = F.conv2d(x.float(), w.float(), b.float(), padding=1)
            lin = linear_add(xl, rl, wl, b)
            lin_want = F.linear(xl.float(), wl.float(), b.float()) + rl.float()
        # bf16 outputs of magnitude ~10: a few ulps (0.06 each) of rounding
        return bool((got.float() - want - r.float()).abs().max() < 0.25 and (relu.float() - want.relu()).abs().max() < 0.25
                    and (lin.float() - lin_want).abs().max() < 0.25
                    and got.is_contiguous(memory_format=torch.channels_last)
                    and relu.is_contiguous(memory_format=torch.channels_last))
    except Exception:  # noqa: BLE001 - any failure of an internal operator means: do not use it
        return False


def pack_conv_weight(weight: torch.Tensor, padding, stride, dilation, input_shape) -> torch.Tensor:
    """``weight`` (bf16 or fp32) reordered once into oneDNN's layout for inputs of ``input_shape``."""
    return torch.ops.mkldnn._reorder_convolution_weight(weight, list(padding), list(stride), list(dilation), 1,
                                                        list(input_shape))


def conv2d(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, padding, stride, dilation,
           residual: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """``conv2d(x, weight, bias) + residual`` (or, without ``residual``, ReLU of the convolution
    with ``relu``) on channels_last bf16 or fp32 tensors, ``packed`` from :func:`pack_conv_weight`;
    the output is channels_last."""
    ops = torch.ops.mkldnn
    if residual is None:
        return ops._convolution_pointwise(x, packed, bias, list(padding), list(stride), list(dilation), 1,
                                          "relu" if relu else "none", [], "")
    if relu:
        raise ValueError("a residual or a ReLU, not both")
    return ops._convolution_pointwise.binary(x, residual, packed, bias, list(padding), list(stride), list(dilation),
                                             1, "add", 1.0, None, [], None)


def linear_add(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias + other`` (2-d bf16 tensors) in one call."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, "add")
