"""The gated PixelCNN network (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"), shared by ``pixelcnn`` and the VQ-VAE's prior over codes.

Two stacks, no blind spot:

- the vertical stack sees the rows above: a (k//2 + 1) x k convolution padded on top only, so its
  row i sees input rows <= i; it reaches the horizontal stack shifted down by one row (through a
  1x1 convolution), so the horizontal stack at row i sees only rows < i from it;
- the horizontal stack sees the pixels to the left in the same row: a 1 x (k//2 + 1) convolution
  padded on the left. The first layer is "mask A" (its input is shifted right by one pixel, so
  pixel (i, j) does not see itself); the later ones are "mask B" (they see position j of features
  that already exclude input pixel j), with a residual connection.

Gates are tanh(W_f * x) * sigmoid(W_g * x); a class embedding is added inside both (conditional
PixelCNN). The output at (i, j) depends only on input pixels before (i, j) in raster order
(tests/models/autoregressive: a gradient check over a whole image).

Output at row i depends on input rows >= i - :meth:`rows_above`, which sampling uses to run the
network on only the rows that can change the next pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, in_ch: int, ch: int, kernel: int, first: bool, num_classes: int | None):
        super().__init__()
        self.p = kernel // 2
        self.first = first
        self.v_conv = nn.Conv2d(in_ch, 2 * ch, (self.p + 1, kernel))
        self.v_to_h = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.h_conv = nn.Conv2d(in_ch, 2 * ch, (1, self.p + 1))
        self.h_out = nn.Conv2d(ch, ch, 1)
        self.cond = nn.Embedding(num_classes, 4 * ch) if num_classes else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None):
        p = self.p
        v_feat = self.v_conv(F.pad(v, (p, p, p, 0)))                       # rows <= i
        v_down = F.pad(v_feat, (0, 0, 1, 0))[:, :, :-1]                    # rows < i
        h_in = F.pad(h, (1, 0))[:, :, :, :-1] if self.first else h         # mask A: not itself
        h_feat = self.h_conv(F.pad(h_in, (p, 0, 0, 0))) + self.v_to_h(v_down)
        if self.cond is not None and labels is not None:
            cv, ch = self.cond(labels)[:, :, None, None].chunk(2, dim=1)
            v_feat, h_feat = v_feat + cv, h_feat + ch
        h_new = self.h_out(_gate(h_feat))
        if not self.first:
            h_new = h_new + h
        return _gate(v_feat), h_new


class GatedPixelCNN(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, H, W), causal in raster order."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, layers: int = 7,
                 kernel: int = 5, first_kernel: int = 7, head: int = 256, num_classes: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(
            [GatedLayer(in_channels, hidden, first_kernel, True, num_classes)]
            + [GatedLayer(hidden, hidden, kernel, False, num_classes) for _ in range(layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, head, 1), nn.ReLU(), nn.Conv2d(head, out_channels, 1))

    def rows_above(self) -> int:
        """How many rows above row i can change the output at row i."""
        return sum(layer.p for layer in self.layers) + 1

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)
