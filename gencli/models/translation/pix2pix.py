"""pix2pix (Isola et al. 2017): paired translation A -> B with a conditional GAN.

The generator ``G`` (default: the official U-Net, BatchNorm, dropout) maps A to B; the
discriminator ``D`` (70x70 PatchGAN with BatchNorm) sees the input and an output stacked along
the channels. Losses and optimisation are the official defaults: the vanilla GAN loss (BCE with
logits), L1(G(A), B) weighted by 100, Adam (lr 2e-4, beta1 0.5), constant then linearly
decaying learning rate; each step updates D (loss halved) and then G.

Test-time behaviour is part of the config (``inference``): the official test.py runs the
network in train mode with batch size 1, so its BatchNorm layers normalise each image with its
own statistics and its dropout stays on. Converted official checkpoints reproduce that
(``per_image_norm`` and ``dropout`` true, dropout masks seeded); models trained here with
batches larger than one use the running statistics and no dropout by default.

Training batches are ``(A, B)``: two aligned image tensors, from
:class:`gencli.models.translation.data.PairedDataset`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import UsageError
from gencli.models.gan.discriminators import build_discriminator
from gencli.models.gan.losses import gan_loss
from gencli.models.gan.norms import init_weights
from gencli.models.translation.common import (
    TranslationModel, merge, merged_config, normalized_generator, unet_depth_for)
from gencli.models.translation.networks import build_generator

#: The official pix2pix options (train.py defaults with --model pix2pix).
DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": 256,
    "channels": 3,            # input (A)
    "output_channels": 3,     # output (B)
    "generator": {"arch": "unet", "num_downs": 8, "ngf": 64, "norm": "batch", "dropout": True},
    "discriminator": {"arch": "n_layers", "n_layers": 3, "ndf": 64, "norm": "batch"},
    "gan_mode": "vanilla",
    "lambda_L1": 100.0,
    "optimizer": {"lr": 2e-4, "betas": [0.5, 0.999]},
    "lr_decay_start": 0.5,
    "inference": {"per_image_norm": False, "dropout": False},
}

#: What the official test.py does with a pix2pix generator (train mode, batch size 1).
OFFICIAL_INFERENCE = {"per_image_norm": True, "dropout": True}


class Pix2Pix(TranslationModel):
    family = "pix2pix"

    def __init__(self, config: dict[str, Any]):
        cfg = merged_config(DEFAULT_CONFIG, config)
        cfg["output_channels"] = int(cfg.get("output_channels") or cfg["channels"])
        super().__init__(cfg)
        ci, co = int(cfg["channels"]), int(cfg["output_channels"])
        self.G = init_weights(build_generator({**cfg["generator"], "input_nc": ci, "output_nc": co}))
        if cfg["discriminator"]:
            self.D = init_weights(build_discriminator({**cfg["discriminator"], "input_nc": ci + co}))

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None = None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The official training config for A images of ``image_size``/``channels``.

        The U-Net depth follows the image size (8 for 256, 7 for 128, at least 5) unless set;
        ``overrides`` may set ``output_channels`` (B) and any other key.
        """
        gen_over = (overrides or {}).get("generator") or {}
        cfg = merge(DEFAULT_CONFIG, {"image_size": int(image_size), "channels": int(channels),
                                     "output_channels": int(channels)})
        if gen_over.get("arch", "unet") == "unet" and "num_downs" not in gen_over:
            cfg["generator"]["num_downs"] = unet_depth_for(int(image_size))
        return merge(cfg, overrides)

    @classmethod
    def inference_config(cls, generator: dict[str, Any], name: str | None = None,
                         image_size: int = 256, official: bool = True) -> dict[str, Any]:
        cfg = merge(DEFAULT_CONFIG, {
            "image_size": image_size, "channels": int(generator["input_nc"]),
            "output_channels": int(generator["output_nc"]), "generator": normalized_generator(generator),
            "discriminator": None, "inference": OFFICIAL_INFERENCE if official else {}})
        cfg["generator"] = normalized_generator(generator)
        if name:
            cfg["name"] = name
        return cfg

    # --- inference ----------------------------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        return ("AtoB",)

    def generator_for(self, direction: str | None) -> tuple[nn.Module, int, int]:
        if direction not in (None, "AtoB"):
            name = self.config.get("name") or "a pix2pix checkpoint"
            raise UsageError(f"{name} maps one way only (its input to its output): drop --direction "
                             f"{direction}, or use a checkpoint trained for the other direction")
        return self.G, int(self.config["channels"]), int(self.config["output_channels"])

    # --- training -------------------------------------------------------------------------------
    def _require_training(self) -> None:
        if not hasattr(self, "D"):
            raise UsageError("this pix2pix checkpoint holds no discriminator (inference only); "
                             "train from a training config or a training checkpoint")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._require_training()
        return {"G": self._adam(self.G.parameters()), "D": self._adam(self.D.parameters())}

    def train_step(self, batch, step, ctx) -> dict[str, torch.Tensor]:
        real_A, real_B = batch
        if real_B.dim() != 4 or not real_B.is_floating_point():
            raise UsageError("pix2pix trains on paired images: pass --data DIR (A|B side by side, or "
                             "A/ and B/ sub-folders with matching names)")
        if real_A.shape[-2:] != real_B.shape[-2:]:
            raise UsageError(f"paired images differ in size: A {tuple(real_A.shape[-2:])}, B {tuple(real_B.shape[-2:])}")
        self._require_training()
        mode = self.config["gan_mode"]
        with ctx.autocast():
            fake_B = self.run_generator(self.G, real_A)
        # discriminator
        self._set_requires_grad([self.D], True)
        with ctx.autocast():
            pred_fake = self.D(torch.cat([real_A, fake_B.detach()], 1))
            pred_real = self.D(torch.cat([real_A, real_B], 1))
            loss_D_fake = gan_loss(pred_fake, False, mode)
            loss_D_real = gan_loss(pred_real, True, mode)
        ctx.step(0.5 * (loss_D_fake + loss_D_real), "D")
        # generator
        self._set_requires_grad([self.D], False)
        with ctx.autocast():
            loss_G_GAN = gan_loss(self.D(torch.cat([real_A, fake_B], 1)), True, mode)
            loss_G_L1 = F.l1_loss(fake_B.float(), real_B) * float(self.config["lambda_L1"])
        ctx.step(loss_G_GAN + loss_G_L1, "G")
        self._set_requires_grad([self.D], True)
        out = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "D_real": loss_D_real, "D_fake": loss_D_fake}
        return {k: v.detach() for k, v in out.items()}

    def export(self, state_dict: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config, tensors) without the discriminator: the generator is what a checkpoint ships."""
        cfg = dict(self.config)
        cfg["discriminator"] = None
        sd = self.state_dict() if state_dict is None else state_dict
        return cfg, {k: v.detach() for k, v in sd.items() if k.startswith("G.")}

    @classmethod
    def training_data(cls, data: str | None, *, split: str = "train", channels: int | None = None,
                      size: int | None = None, config: dict[str, Any] | None = None, **options: Any) -> Any:
        """Paired data: --data (aligned A|B images, A/ and B/ folders, edges:SPEC) or
        --data-a/--data-b folders matched by name."""
        from gencli.models.translation.data import paired_training_data

        cb = None if config is None else config.get("output_channels")
        return paired_training_data(data=data, split=split, channels=channels, size=size,
                                    channels_b=None if cb is None else int(cb), **options)
