"""Nearest x2 upsampling followed by a 3x3 convolution (padding 1), as one transposed convolution.

Each output phase of ``conv(upsample(x))`` sees a 2x2 neighbourhood of the input whose taps are
sums of the 3x3 taps, so a stride-2 4x4 transposed convolution with summed taps computes it: the
upsampled image is never built and the convolution does 16/36 of the multiplications.
:func:`upsample2x_conv3x3` is the kernel (its weight from :func:`upsample2x_conv3x3_weight`, built
once per weight), :func:`upsample2x_conv3x3_reference` the plain ``interpolate`` + ``conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample2x_conv3x3_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (in, out, 4, 4) transposed-convolution kernel for a (out, in, 3, 3) conv weight."""
    w = weight.detach()
    # rows: transposed-conv tap k = 0..3; columns: 3x3 tap. Output row 2m takes input m-1
    # (tap 3 <- w0) and m (tap 1 <- w1 + w2); row 2m+1 takes m (tap 2 <- w0 + w1) and m+1 (tap 0 <- w2).
    m = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=w.dtype, device=w.device)
    return torch.einsum("ka,lb,oiab->iokl", m, m, w)


def upsample2x_conv3x3(x: torch.Tensor, transposed_weight: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv3x3(nearest_upsample_x2(x))`` with the kernel from :func:`upsample2x_conv3x3_weight`."""
    return F.conv_transpose2d(x, transposed_weight, bias, stride=2, padding=1)


def upsample2x_conv3x3_reference(x: torch.Tensor, weight: torch.Tensor,
                                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`upsample2x_conv3x3` computes: nearest x2 upsampling, then the 3x3 convolution."""
    return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
