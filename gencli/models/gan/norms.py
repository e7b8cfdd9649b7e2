"""Norm layers and weight init shared by the translation generators and the GAN discriminators,
as in the official pytorch-CycleGAN-and-pix2pix (state-dict keys of plain ``torch.nn`` layers).

- :func:`norm_layer`: instance norm without affine parameters or running statistics (nothing
  in the state dict), or :class:`BatchNorm2d`.
- :class:`BatchNorm2d`: ``nn.BatchNorm2d`` (same keys) that can normalise every image with its
  own statistics at inference (what the official pix2pix ``test.py`` effectively does: it runs
  the network in train mode with batch size 1).
- :func:`init_weights`: the official 'normal' init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import UsageError

NORMS = ("instance", "batch")


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same keys) that can use each image's own statistics at inference.

    With ``per_image = True`` and the module in eval mode, every image is normalised with its
    own per-channel mean and (biased) variance, then scaled by the learned affine parameters:
    exactly what train-mode BatchNorm computes for a batch of one image, so a batch gives the
    same result as images fed one at a time. Running statistics are neither used nor updated.
    """

    per_image: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_image and not self.training:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, use_input_stats=True, eps=self.eps)
        return super().forward(x)


def check_norm(norm: str) -> str:
    """``norm`` if it is one of :data:`NORMS`, else a UsageError."""
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    return norm


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Instance norm without affine parameters or running statistics, or batch norm."""
    if check_norm(norm) == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return BatchNorm2d(channels)


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official 'normal' init: conv weights ~ N(0, gain), biases 0; BatchNorm weight ~ N(1, gain), bias 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net
