"""The stacks a UNet level is made of (diffusers' ``down_blocks.i`` / ``up_blocks.i`` /
``mid_block`` layouts): resnets, an attention after each where the block type has them, and a
down- or upsampler."""

from __future__ import annotations

import torch
from torch import nn


class UNetBlock2D(nn.Module):
    """A down or up block: resnets (+ attentions after each) (+ a resampler).

    diffusers' DownBlock2D / AttnDownBlock2D (``kind="down"``, sampler kept as
    ``downsamplers.0``) and UpBlock2D / AttnUpBlock2D (``kind="up"``, ``upsamplers.0``)."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module] | None,
                 sampler: nn.Module | None, kind: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        if sampler is not None:
            setattr(self, "downsamplers" if kind == "down" else "upsamplers", nn.ModuleList([sampler]))
        self.kind = kind

    @property
    def sampler(self) -> nn.Module | None:
        holder = getattr(self, "downsamplers" if self.kind == "down" else "upsamplers", None)
        return holder[0] if holder is not None else None


class MidBlock(nn.Module):
    """diffusers' UNetMidBlock2D: resnet, then (attention, resnet) pairs."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module]):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb_act)
        for attn, res in zip(self.attentions, self.resnets[1:]):
            x = res(attn(x), temb_act)
        return x
