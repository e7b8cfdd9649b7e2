"""diffusers' ResnetBlock2D: two GroupNorm-SiLU-conv stages with a time-embedding projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gencli.kernels.fast_path import FastState, conv1x1_cat_fast, conv_fast, fuses_silu, group_norm_fast


class ResnetBlock2D(nn.Module):
    """GN, SiLU, conv1, + proj(SiLU(temb)), GN, SiLU, dropout, conv2, + shortcut, / scale."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float, dropout: float,
                 scale_shift: bool = False, output_scale_factor: float = 1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.scale_shift = scale_shift
        self.time_emb_proj = nn.Linear(temb, cout * 2 if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        # temb_act is SiLU(temb), computed once per forward pass by the UNet.
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(temb_act)[:, :, None, None]
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = skip + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out

    def _forward_fast(self, state: FastState, x: torch.Tensor, temb_act: torch.Tensor,
                      t: torch.Tensor | None = None, second: torch.Tensor | None = None) -> torch.Tensor:
        """``t``: time_emb_proj(temb_act), plus conv1's bias unless scale_shift (see
        UNet2DModel._time_projections); None computes it here. ``second``: the block's input is
        ``torch.cat([x, second], 1)`` (a decoder's skip connection), read by the shortcut and
        the first norm without being made."""
        folded = t is not None and not self.scale_shift
        if t is None:
            t = self.time_emb_proj(temb_act)
        if second is not None and self.conv_shortcut is None:
            x, second = torch.cat([x, second], dim=1), None
        if second is not None:
            skip = conv1x1_cat_fast(state, self.conv_shortcut, x, second)
        else:
            skip = x if self.conv_shortcut is None else conv_fast(state, self.conv_shortcut, x)
        # the norm applies the SiLU and the time projection (CUDA + Triton, or the CPU's C kernel),
        # else conv_fast folds them into the convolutions
        fuse = fuses_silu(x)
        h = conv_fast(state, self.conv1, group_norm_fast(self.norm1, x, silu=fuse, second=second), silu=not fuse,
                      sample_bias=None if self.scale_shift or fuse else t, add_bias=not folded)
        if self.scale_shift:
            scale, shift = t[:, :, None, None].chunk(2, dim=1)
            out = conv_fast(state, self.conv2, group_norm_fast(self.norm2, h) * (1 + scale) + shift, silu=True,
                            residual=skip)
        else:
            h = group_norm_fast(self.norm2, h, silu=fuse, sample_bias=t if fuse else None)
            out = conv_fast(state, self.conv2, h, silu=not fuse, residual=skip)
        if self.output_scale_factor != 1.0:
            out /= self.output_scale_factor
        return out
