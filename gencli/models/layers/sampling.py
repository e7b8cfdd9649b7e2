"""diffusers' Downsample2D / Upsample2D with a convolution (``conv``): stride-2 3x3 down,
nearest x2 then 3x3 up."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gencli.kernels.fast_path import FastState, conv_fast, upsample2x_conv_fast


class Downsample2D(nn.Module):
    """3x3 stride-2 convolution; ``padding=0`` pads one row and column at the bottom right
    (diffusers' ``downsample_padding=0``)."""

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)

    def _forward_fast(self, state: FastState, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return conv_fast(state, self.conv, x)


class Upsample2D(nn.Module):
    """Nearest x2 upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def _forward_fast(self, state: FastState, x: torch.Tensor) -> torch.Tensor:
        # one transposed convolution, or Winograd on the upsampled image for wide layers
        return upsample2x_conv_fast(state, self.conv, x)
