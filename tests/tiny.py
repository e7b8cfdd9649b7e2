"""Tiny model configurations shared by tests (fast on 2 CPU cores)."""

import torch

from gencli.models.diffusion.ddpm import DiffusionModel

TINY_UNET = {
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}


def tiny_ddpm_config(image_size: int = 16, channels: int = 1, num_classes: int | None = 2, **over):
    overrides = {"unet": dict(TINY_UNET), **over}
    return DiffusionModel.config_for_data(image_size, channels, num_classes, overrides)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (many are zero- or one-initialised, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 16
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model
