"""CycleGAN (Zhu et al. 2017): unpaired translation between domains A and B.

Two generators, ``G_A`` (A -> B) and ``G_B`` (B -> A), and two discriminators, ``D_A`` (judges
domain B: real B vs G_A's fakes) and ``D_B`` (judges domain A), named as in the official code.
The losses and optimisation are the official defaults: LSGAN, cycle-consistency L1 weighted by
lambda_A = lambda_B = 10, identity L1 weighted by 0.5 x lambda (only when both domains have the
same channel count), a 50-image pool of past fakes for each discriminator, Adam (lr 2e-4,
beta1 0.5) on both generators together and on both discriminators together, a learning rate
that is constant for the first half of the steps and then decays linearly, and one generator
update followed by one discriminator update (D loss halved) per step.

A checkpoint may hold only one generator (a converted official ``NAME.pth`` is one direction):
then ``directions`` is ``["AtoB"]`` and only ``G_A`` exists; discriminators and pools exist only
in training checkpoints (``discriminator`` set in the config).

Training batches are ``(real_A, real_B)``: two image tensors, from
:class:`gencli.models.translation.data.UnpairedDataset`.
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
from gencli.models.gan.pool import ImagePool
from gencli.models.translation.common import (
    DIRECTIONS, TranslationModel, merge, merged_config, normalized_generator, unet_depth_for)
from gencli.models.translation.networks import build_generator

#: The official CycleGAN options (train.py defaults with --model cycle_gan).
DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": 256,
    "channels": 3,           # domain A
    "channels_b": 3,         # domain B
    "generator": {"arch": "resnet", "n_blocks": 9, "ngf": 64, "norm": "instance", "dropout": False},
    "discriminator": {"arch": "n_layers", "n_layers": 3, "ndf": 64, "norm": "instance"},
    "directions": ["AtoB", "BtoA"],
    "gan_mode": "lsgan",
    "lambda_A": 10.0,
    "lambda_B": 10.0,
    "lambda_identity": 0.5,
    "pool_size": 50,
    "optimizer": {"lr": 2e-4, "betas": [0.5, 0.999]},
    "lr_decay_start": 0.5,
    "inference": {"per_image_norm": False, "dropout": False},
    "domains": {"A": "A", "B": "B"},
}


def _domains_from_name(name: str | None) -> dict[str, str] | None:
    if name and name.count("2") == 1:
        a, b = name.split("2")
        a, b = a.rsplit("_", 1)[-1], b.split("_", 1)[0]  # cityscapes_photo2label -> photo, label
        if a and b:
            return {"A": a, "B": b}
    return None


class CycleGAN(TranslationModel):
    family = "cyclegan"

    def __init__(self, config: dict[str, Any]):
        cfg = merged_config(DEFAULT_CONFIG, config)
        cfg["channels_b"] = int(cfg.get("channels_b") or cfg["channels"])
        dirs = list(cfg["directions"])
        if not dirs or any(d not in DIRECTIONS for d in dirs) or len(set(dirs)) != len(dirs) or dirs[0] != "AtoB":
            raise UsageError(f"cyclegan directions must be ['AtoB'] or ['AtoB', 'BtoA'], got {dirs}")
        super().__init__(cfg)
        ca, cb = int(cfg["channels"]), int(cfg["channels_b"])
        g = cfg["generator"]
        self.G_A = init_weights(build_generator({**g, "input_nc": ca, "output_nc": cb}))
        if "BtoA" in dirs:
            self.G_B = init_weights(build_generator({**g, "input_nc": cb, "output_nc": ca}))
        if cfg["discriminator"]:
            if dirs != ["AtoB", "BtoA"]:
                raise UsageError("training a cyclegan needs both generators (directions AtoB and BtoA)")
            self.D_A = init_weights(build_discriminator({**cfg["discriminator"], "input_nc": cb}))
            self.D_B = init_weights(build_discriminator({**cfg["discriminator"], "input_nc": ca}))
            n, s = int(cfg["pool_size"]), int(cfg["image_size"])
            if n > 0:
                self.fake_A_pool = ImagePool(n, (ca, s, s))
                self.fake_B_pool = ImagePool(n, (cb, s, s))

    # --- configs ----------------------------------------------------------------------------
    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None = None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The official training config for domain-A images of ``image_size``/``channels``.

        ``overrides`` may set ``channels_b`` (domain B), ``domains`` names, and any other key.
        """
        cfg = merge(DEFAULT_CONFIG, {"image_size": int(image_size), "channels": int(channels),
                                     "channels_b": int(channels)})
        gen_over = (overrides or {}).get("generator") or {}
        if gen_over.get("arch") == "unet" and "num_downs" not in gen_over:
            cfg["generator"] = {"arch": "unet", "num_downs": unet_depth_for(image_size), "ngf": 64,
                                "norm": "instance", "dropout": False}
        return merge(cfg, overrides)

    @classmethod
    def inference_config(cls, generator: dict[str, Any], directions: list[str] | None = None,
                         name: str | None = None, image_size: int = 256,
                         reverse_name: str | None = None) -> dict[str, Any]:
        """Config of an inference-only checkpoint (e.g. converted official generators)."""
        cfg: dict[str, Any] = {
            "image_size": image_size, "channels": int(generator["input_nc"]),
            "channels_b": int(generator["output_nc"]), "generator": normalized_generator(generator),
            "discriminator": None, "pool_size": 0, "directions": list(directions or ["AtoB"]),
        }
        dom = _domains_from_name(name)
        if dom:
            cfg["domains"] = dom
        if name:
            cfg["name"] = name
        if reverse_name and cfg["directions"] == ["AtoB"]:
            cfg["reverse_name"] = reverse_name
        return merge(DEFAULT_CONFIG, cfg) | {"discriminator": None}

    # --- inference ----------------------------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(self.config["directions"])

    def generator_for(self, direction: str | None) -> tuple[nn.Module, int, int]:
        direction = self._check_direction(direction)
        ca, cb = int(self.config["channels"]), int(self.config["channels_b"])
        return (self.G_A, ca, cb) if direction == "AtoB" else (self.G_B, cb, ca)

    # --- training -------------------------------------------------------------------------------
    def _require_training(self) -> None:
        if not hasattr(self, "D_A"):
            raise UsageError("this cyclegan checkpoint holds no discriminators (inference only); "
                             "train from a training config or a training checkpoint")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._require_training()
        return {"G": self._adam([*self.G_A.parameters(), *self.G_B.parameters()]),
                "D": self._adam([*self.D_A.parameters(), *self.D_B.parameters()])}

    def _pool(self, name: str, images: torch.Tensor) -> torch.Tensor:
        pool = getattr(self, name, None)
        return images.detach() if pool is None else pool.query(images)

    def train_step(self, batch, step, ctx) -> dict[str, torch.Tensor]:
        real_A, real_B = batch
        if real_B.dim() != 4 or not real_B.is_floating_point():
            raise UsageError("cyclegan trains on two unpaired image sets: pass --data-a DIR and --data-b DIR")
        self._require_training()
        c = self.config
        lam_A, lam_B, lam_idt = float(c["lambda_A"]), float(c["lambda_B"]), float(c["lambda_identity"])
        mode = c["gan_mode"]
        run = self.run_generator
        with ctx.autocast():
            fake_B = run(self.G_A, real_A)
            rec_A = run(self.G_B, fake_B)
            fake_A = run(self.G_B, real_B)
            rec_B = run(self.G_A, fake_A)
        # generators (the discriminators are frozen meanwhile)
        self._set_requires_grad([self.D_A, self.D_B], False)
        with ctx.autocast():
            if lam_idt > 0 and c["channels"] == c["channels_b"]:
                idt_A = run(self.G_A, real_B)
                idt_B = run(self.G_B, real_A)
                loss_idt_A = F.l1_loss(idt_A.float(), real_B) * lam_B * lam_idt
                loss_idt_B = F.l1_loss(idt_B.float(), real_A) * lam_A * lam_idt
            else:
                loss_idt_A = loss_idt_B = torch.zeros((), device=real_A.device)
            loss_G_A = gan_loss(self.D_A(fake_B), True, mode)
            loss_G_B = gan_loss(self.D_B(fake_A), True, mode)
            loss_cycle_A = F.l1_loss(rec_A.float(), real_A) * lam_A
            loss_cycle_B = F.l1_loss(rec_B.float(), real_B) * lam_B
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        ctx.step(loss_G, "G")
        # discriminators, on pooled fakes
        self._set_requires_grad([self.D_A, self.D_B], True)
        fake_B_d = self._pool("fake_B_pool", fake_B.float())
        fake_A_d = self._pool("fake_A_pool", fake_A.float())
        with ctx.autocast():
            loss_D_A = 0.5 * (gan_loss(self.D_A(real_B), True, mode) + gan_loss(self.D_A(fake_B_d), False, mode))
            loss_D_B = 0.5 * (gan_loss(self.D_B(real_A), True, mode) + gan_loss(self.D_B(fake_A_d), False, mode))
        ctx.step(loss_D_A + loss_D_B, "D")
        out = {"G_A": loss_G_A, "G_B": loss_G_B, "cycle_A": loss_cycle_A, "cycle_B": loss_cycle_B,
               "idt_A": loss_idt_A, "idt_B": loss_idt_B, "D_A": loss_D_A, "D_B": loss_D_B}
        return {k: v.detach() for k, v in out.items()}

    def export(self, state_dict: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config, tensors) without discriminators and pools: what a checkpoint ships."""
        cfg = merge(self.config, {"pool_size": 0})
        cfg["discriminator"] = None
        sd = self.state_dict() if state_dict is None else state_dict
        return cfg, {k: v.detach() for k, v in sd.items() if k.startswith(("G_A.", "G_B."))}

    @classmethod
    def training_data(cls, data: str | None, *, split: str = "train", channels: int | None = None,
                      size: int | None = None, config: dict[str, Any] | None = None, **options: Any) -> Any:
        """Two unpaired domains: --data-a and --data-b (--direction BtoA swaps them)."""
        from gencli.models.translation.data import unpaired_training_data

        if data and not (options.get("data_a") or options.get("data_b")):
            raise UsageError("cyclegan trains on two unpaired image sets: pass --data-a A_SPEC --data-b B_SPEC "
                             "(e.g. --data-a fashion-mnist:sneaker --data-b 'fashion-mnist:ankle boot')")
        cb = None if config is None else config.get("channels_b")
        return unpaired_training_data(split=split, channels=channels, size=size,
                                      channels_b=None if cb is None else int(cb), **options)
