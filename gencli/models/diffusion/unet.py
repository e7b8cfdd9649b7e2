"""A UNet with the module layout and numerics of diffusers' ``UNet2DModel``.

Parameter names match diffusers exactly (``conv_in``, ``time_embedding.linear_1``,
``down_blocks.i.resnets.j.norm1`` ...), so a diffusers ``diffusion_pytorch_model.safetensors``
loads with at most a renaming of the legacy attention keys (``query/key/value/proj_attn``).
The config dictionary uses diffusers' field names too; see :data:`DEFAULT_CONFIG`.

Written from the published architecture description (ANCHORS.md), not from diffusers' code.
It is a plain ``nn.Module``: it knows no scheduler and no training procedure.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import InputError

# diffusers' UNet2DModel defaults (a config.json overrides any of these).
DEFAULT_CONFIG: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1.0,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float,
                       max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding: freqs = exp(-ln(max_period) * k / (half - freq_shift))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


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


class Attention(nn.Module):
    """Spatial self-attention with a residual: GN, q/k/v projections, softmax, out projection."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float,
                 rescale_output_factor: float = 1.0):
        super().__init__()
        self.heads = max(channels // head_dim, 1)
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.rescale_output_factor = rescale_output_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.group_norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        d = c // self.heads
        q, k, v = (z.view(b, -1, self.heads, d).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, -1, c)
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, hgt, wid)
        out = o + x
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out


class Downsample2D(nn.Module):
    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Block(nn.Module):
    """A down or up block: resnets (+ attentions after each) (+ a resampler)."""

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
    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module]):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb_act)
        for attn, res in zip(self.attentions, self.resnets[1:]):
            x = res(attn(x), temb_act)
        return x


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill diffusers defaults, drop diffusers' bookkeeping keys, reject what we do not support."""
    cfg = dict(DEFAULT_CONFIG)
    cfg.update({k: v for k, v in config.items() if k in DEFAULT_CONFIG})
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        cfg[key] = list(cfg[key])
    unsupported = []
    if cfg["time_embedding_type"] != "positional":
        unsupported.append(f"time_embedding_type={cfg['time_embedding_type']!r}")
    if cfg["act_fn"] != "silu":
        unsupported.append(f"act_fn={cfg['act_fn']!r}")
    if cfg["downsample_type"] != "conv" or cfg["upsample_type"] != "conv":
        unsupported.append("resnet up/down-sampling")
    if cfg["class_embed_type"] not in (None, "identity"):
        unsupported.append(f"class_embed_type={cfg['class_embed_type']!r}")
    for t in cfg["down_block_types"]:
        if t not in _DOWN:
            unsupported.append(f"down block {t!r}")
    for t in cfg["up_block_types"]:
        if t not in _UP:
            unsupported.append(f"up block {t!r}")
    if unsupported:
        raise InputError("unsupported UNet2DModel config: " + ", ".join(unsupported))
    n = len(cfg["block_out_channels"])
    if len(cfg["down_block_types"]) != n or len(cfg["up_block_types"]) != n:
        raise InputError("UNet config: block_out_channels, down_block_types and up_block_types "
                         "must have the same length")
    return cfg


class UNet2DModel(nn.Module):
    """diffusers-compatible UNet2DModel (positional time embedding, conv resamplers)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        cfg = normalize_config(config)
        self.config = cfg
        boc = cfg["block_out_channels"]
        groups, eps, drop = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"]
        attn_groups = cfg["attn_norm_num_groups"] or groups
        scale_shift = cfg["resnet_time_scale_shift"] == "scale_shift"
        head_dim_cfg = cfg["attention_head_dim"]
        temb = boc[0] * 4

        def head_dim(channels: int) -> int:
            # attention_head_dim null means one head as wide as the block.
            return channels if head_dim_cfg is None else head_dim_cfg

        def resnet(cin: int, cout: int, scale: float = 1.0) -> ResnetBlock2D:
            return ResnetBlock2D(cin, cout, temb, groups, eps, drop, scale_shift, scale)

        def attention(ch: int, scale: float = 1.0) -> Attention:
            return Attention(ch, head_dim(ch), attn_groups, eps, scale)

        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.class_embedding = None
        if cfg["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb)
        elif cfg["class_embed_type"] == "identity":
            self.class_embedding = nn.Identity()

        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, btype in enumerate(cfg["down_block_types"]):
            cin, cout = cout, boc[i]
            final = i == len(boc) - 1
            resnets = [resnet(cin if j == 0 else cout, cout) for j in range(cfg["layers_per_block"])]
            attns = [attention(cout) for _ in resnets] if _DOWN[btype] else None
            sampler = None if final else Downsample2D(cout, cfg["downsample_padding"])
            self.down_blocks.append(_Block(resnets, attns, sampler, "down"))

        mid_scale = cfg["mid_block_scale_factor"]
        mid_attn = [attention(boc[-1], mid_scale)] if cfg["add_attention"] else []
        self.mid_block = MidBlock([resnet(boc[-1], boc[-1], mid_scale) for _ in range(2)], mid_attn)

        rev = list(reversed(boc))
        self.up_blocks = nn.ModuleList()
        cout = rev[0]
        n_layers = cfg["layers_per_block"] + 1
        for i, btype in enumerate(cfg["up_block_types"]):
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            final = i == len(boc) - 1
            resnets = []
            for j in range(n_layers):
                skip = cin if j == n_layers - 1 else cout
                resnets.append(resnet((prev if j == 0 else cout) + skip, cout))
            attns = [attention(cout) for _ in resnets] if _UP[btype] else None
            sampler = None if final else Upsample2D(cout)
            self.up_blocks.append(_Block(resnets, attns, sampler, "up"))

        out_groups = groups if groups is not None else min(boc[0] // 4, 32)
        self.conv_norm_out = nn.GroupNorm(out_groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    @property
    def downscale(self) -> int:
        """Input sides must be divisible by this (2 ** number of downsamplers)."""
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if cfg["center_input_sample"]:
            sample = 2 * sample - 1.0
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(sample.shape[0])
        t_emb = timestep_embedding(timesteps, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"],
                                   cfg["freq_shift"]).to(sample.dtype)
        emb = self.time_embedding(t_emb)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this UNet is class-conditional: class_labels are required")
            emb = emb + self.class_embedding(class_labels).to(emb.dtype)
        emb_act = F.silu(emb)

        h = self.conv_in(sample)
        skips = [h]
        for block in self.down_blocks:
            for j, res in enumerate(block.resnets):
                h = res(h, emb_act)
                if block.attentions is not None:
                    h = block.attentions[j](h)
                skips.append(h)
            if block.sampler is not None:
                h = block.sampler(h)
                skips.append(h)

        h = self.mid_block(h, emb_act)

        for block in self.up_blocks:
            for j, res in enumerate(block.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), emb_act)
                if block.attentions is not None:
                    h = block.attentions[j](h)
            if block.sampler is not None:
                h = block.sampler(h)

        return self.conv_out(F.silu(self.conv_norm_out(h)))


_LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map old diffusers attention names (query/key/value/proj_attn) to to_q/to_k/to_v/to_out.0."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _LEGACY_ATTN:
            key = ".".join(parts[:-2] + [_LEGACY_ATTN[parts[-2]], parts[-1]])
        out[key] = value
    return out
