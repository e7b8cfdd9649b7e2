"""Tiny model configurations shared by tests (fast on 2 CPU cores)."""

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
