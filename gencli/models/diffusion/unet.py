"""A UNet with the module layout and numerics of diffusers' ``UNet2DModel``.

Parameter names match diffusers exactly (``conv_in``, ``time_embedding.linear_1``,
``down_blocks.i.resnets.j.norm1`` ...), so a diffusers ``diffusion_pytorch_model.safetensors``
loads with at most a renaming of the legacy attention keys (``query/key/value/proj_attn``).
The config dictionary uses diffusers' field names too; see :data:`DEFAULT_CONFIG`.

Written from the published architecture description (ANCHORS.md), not from diffusers' code.
It is a plain ``nn.Module``: it knows no scheduler and no training procedure.

The blocks live in :mod:`gencli.models.layers` (re-exported here for existing callers).
Sampling can opt into an inference fast path (``UNet2DModel.fast_inference()`` /
``optimize_for_inference()``): channels_last activations, Winograd F(4x4, 3x3) convolutions on the
CPU and fused projections, with the same parameters and state-dict keys (the kernels and their
dispatch are in :mod:`gencli.kernels`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import InputError
from gencli.kernels.fast_path import FastInference, FastState, conv_fast, fuses_silu, group_norm_fast
from gencli.kernels.winograd import winograd_matrices
from gencli.models.layers import (Attention, Downsample2D, MidBlock, ResnetBlock2D, TimestepEmbedding,
                                  UNetBlock2D, Upsample2D, rename_legacy_keys, timestep_embedding)

__all__ = ["DDPM_CIFAR10_CONFIG", "DEFAULT_CONFIG", "UNet2DModel", "normalize_config", "rename_legacy_keys",
           # moved to gencli.models.layers / gencli.kernels, re-exported for existing callers
           "Attention", "Downsample2D", "MidBlock", "ResnetBlock2D", "TimestepEmbedding", "Upsample2D",
           "timestep_embedding", "winograd_matrices"]

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

# google/ddpm-cifar10-32's config.json: the architecture of the public diffusers DDPM checkpoints
# (what the compatibility test and bench/sample_vs_diffusers.py build, with random weights).
DDPM_CIFAR10_CONFIG: dict[str, Any] = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "flip_sin_to_cos": False, "freq_shift": 1, "norm_eps": 1e-6,
    "norm_num_groups": 32, "downsample_padding": 0, "act_fn": "silu", "time_embedding_type": "positional",
}

_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


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


class UNet2DModel(FastInference, nn.Module):
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
            self.down_blocks.append(UNetBlock2D(resnets, attns, sampler, "down"))

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
            self.up_blocks.append(UNetBlock2D(resnets, attns, sampler, "up"))

        out_groups = groups if groups is not None else min(boc[0] // 4, 32)
        self.conv_norm_out = nn.GroupNorm(out_groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    @property
    def downscale(self) -> int:
        """Input sides must be divisible by this (2 ** number of downsamplers)."""
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    # --- inference fast path ----------------------------------------------------------------

    def optimize_for_inference(self, device: Any = None, *, channels_last: bool = True,
                               winograd: bool | None = None) -> "UNet2DModel":
        """Switch this UNet to the inference fast path for every later no-grad, eval-mode call.

        Moves it to ``device`` (if given), sets eval mode and, with ``channels_last``, stores the
        convolution weights in channels_last memory format (same values, same state-dict keys; a
        ``state_dict()`` then holds non-contiguous tensors, which gencli's save_checkpoint handles).
        ``winograd``: None (default) uses Winograd F(4x4, 3x3) for the 3x3 convolutions where it is
        faster (CPU, fp32, no autocast, enough tiles); False never; True wherever applicable.
        Outputs match the plain forward to ~1e-5 (Winograd rounds differently from direct
        convolution); with ``winograd=False`` only the summation order differs (~1e-6).
        Training (grad enabled or train mode) always takes the plain path. Returns self.
        """
        if device is not None:
            self.to(device)
        self.eval()
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._fast = FastState(channels_last, winograd)
        return self

    def _time_projections(self, state: FastState, emb_act: torch.Tensor) -> list[torch.Tensor]:
        """Every resnet's time_emb_proj(SiLU(temb)) from one matmul, in forward order.

        Except for scale_shift resnets, conv1's bias is folded in: conv1 + bias + t is one add."""
        resnets = [r for b in self.down_blocks for r in b.resnets]
        resnets += list(self.mid_block.resnets) + [r for b in self.up_blocks for r in b.resnets]

        def bias(r: ResnetBlock2D) -> torch.Tensor:
            b = r.time_emb_proj.bias
            return b if r.scale_shift or r.conv1.bias is None else b + r.conv1.bias

        params = tuple(p for r in resnets for p in (r.time_emb_proj.weight, r.time_emb_proj.bias, r.conv1.bias)
                       if p is not None)
        weight, bias_all = state.cached_compute(("temb", id(self)), params, lambda: (
            torch.cat([r.time_emb_proj.weight for r in resnets]).detach(),
            torch.cat([bias(r) for r in resnets]).detach()))
        sizes = [r.time_emb_proj.out_features for r in resnets]
        return list(torch.addmm(bias_all, emb_act, weight.t()).split(sizes, dim=1))

    def _embed(self, sample: torch.Tensor, timesteps: torch.Tensor | float | int,
               class_labels: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
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
        return emb

    def _forward_fast(self, state: FastState, sample: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        emb_act = F.silu(emb)
        projs = iter(self._time_projections(state, emb_act))
        if state.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        h = conv_fast(state, self.conv_in, sample)
        skips = [h]
        for block in self.down_blocks:
            for j, res in enumerate(block.resnets):
                h = res._forward_fast(state, h, emb_act, next(projs))
                if block.attentions is not None:
                    h = block.attentions[j]._forward_fast(state, h)
                skips.append(h)
            if block.sampler is not None:
                h = block.sampler._forward_fast(state, h)
                skips.append(h)

        mid = self.mid_block
        h = mid.resnets[0]._forward_fast(state, h, emb_act, next(projs))
        for attn, res in zip(mid.attentions, mid.resnets[1:]):
            h = res._forward_fast(state, attn._forward_fast(state, h), emb_act, next(projs))

        for block in self.up_blocks:
            for j, res in enumerate(block.resnets):
                h = res._forward_fast(state, h, emb_act, next(projs), second=skips.pop())  # cat([h, skip])
                if block.attentions is not None:
                    h = block.attentions[j]._forward_fast(state, h)
            if block.sampler is not None:
                h = block.sampler._forward_fast(state, h)

        fuse = fuses_silu(h)
        out = conv_fast(state, self.conv_out, group_norm_fast(self.conv_norm_out, h, silu=fuse), silu=not fuse)
        return out.contiguous()

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if cfg["center_input_sample"]:
            sample = 2 * sample - 1.0
        emb = self._embed(sample, timesteps, class_labels)
        if self._use_fast():
            return self._forward_fast(self._fast, sample, emb)
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
