"""The diffusion family: a UNet denoiser + a noise schedule, sampled with DDPM or DDIM.

Class-conditional models reserve one extra class-embedding row as the "no class" token
(index ``num_classes``); training drops labels to it with probability ``cond_drop_prob`` so that
sampling can use classifier-free guidance (Ho & Salimans 2022):
``out = out_uncond + w * (out_cond - out_uncond)``. ``w = 1`` is plain conditional sampling.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from gencli.errors import UsageError
from gencli.models.base import GenerativeModel, Progress, slerp
from gencli.models.diffusion.schedulers import SAMPLERS, NoiseSchedule
from gencli.models.diffusion.unet import UNet2DModel, normalize_config

# The configuration `gencli train ddpm` starts from (sized for 28x28 data on a CPU: 1000-step
# sampling of 16 images in about a minute on 2 cores). Data-dependent fields are filled in by
# `DiffusionModel.config_for_data`.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "unet": {
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "attention_head_dim": None,
        "norm_num_groups": 16,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "dropout": 0.0,
    },
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4,
                  "beta_end": 0.02, "prediction_type": "epsilon", "variance_type": "fixed_small",
                  "clip_sample": True},
    "cond_drop_prob": 0.1,
    "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "warmup_steps": 200},
    "sampling": {"sampler": "ddpm", "steps": 1000, "guidance": 1.0, "spacing": "leading", "eta": 0.0},
}


class DiffusionModel(GenerativeModel):
    family = "ddpm"

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        unet_cfg = dict(config["unet"])
        nc = config.get("num_classes")
        if nc and config.get("null_class", nc) is not None:
            # one extra row for the "no class" token used by classifier-free guidance
            unet_cfg.setdefault("num_class_embeds", nc + 1)
        self.config["unet"] = normalize_config(unet_cfg)
        self.unet = UNet2DModel(self.config["unet"])
        self.schedule = NoiseSchedule.from_config(config.get("scheduler", {}))
        self.config["scheduler"] = self.schedule.to_config()
        self.config.setdefault("sampling", dict(DEFAULT_TRAIN_CONFIG["sampling"]))

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The default training config adapted to a dataset."""
        cfg = copy.deepcopy(DEFAULT_TRAIN_CONFIG)
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        cfg["unet"].update(sample_size=image_size, in_channels=channels, out_channels=channels)
        cfg.update(image_size=image_size, channels=channels, num_classes=num_classes or None)
        if num_classes:
            cfg["null_class"] = num_classes
        return cfg

    @property
    def null_class(self) -> int | None:
        return self.config.get("null_class")

    # --- training ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        o = self.config.get("optimizer", DEFAULT_TRAIN_CONFIG["optimizer"])
        return {"unet": torch.optim.AdamW(self.unet.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                          weight_decay=o.get("weight_decay", 0.0))}

    def lr_factor(self, step: int, total_steps: int) -> float:
        warm = self.config.get("optimizer", {}).get("warmup_steps", 0)
        return min(1.0, (step + 1) / warm) if warm else 1.0

    def preview_options(self) -> dict[str, Any]:
        return {"sampler": "ddim", "steps": 50}

    def ema_module(self) -> torch.nn.Module:
        return self.unet

    def train_step(self, batch, step, ctx):
        x, y = batch
        b = x.shape[0]
        t = torch.randint(0, self.schedule.num_train_timesteps, (b,), device=x.device)
        noise = torch.randn_like(x)
        x_t = self.schedule.add_noise(x, noise, t)
        labels = None
        if self.num_classes:
            labels = y.clone()
            labels[labels < 0] = self.null_class
            drop = torch.rand(b, device=x.device) < self.config.get("cond_drop_prob", 0.1)
            labels[drop] = self.null_class
        with ctx.autocast():
            out = self.unet(x_t, t, labels)
        loss = F.mse_loss(out.float(), self.schedule.training_target(x, noise, t))
        ctx.step(loss, "unet")
        return {"loss": loss.detach()}

    # --- sampling ---------------------------------------------------------------------------
    def _labels(self, n: int, class_labels: Any, device: torch.device) -> torch.Tensor | None:
        if not self.num_classes:
            if class_labels is not None:
                raise UsageError("this checkpoint is not class-conditional: drop --class")
            return None
        if class_labels is None:  # cycle through the classes so every class shows up
            return torch.arange(n, device=device) % self.num_classes
        labels = torch.as_tensor(class_labels, device=device).long().flatten()
        if labels.numel() == 1:
            labels = labels.expand(n)
        if labels.numel() != n:
            raise UsageError(f"got {labels.numel()} class labels for {n} images")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise UsageError(f"class {int(bad[0])} is out of range: this model knows classes "
                             f"0..{self.num_classes - 1}")
        return labels

    def _denoise(self, x: torch.Tensor, t: int, labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
        ts = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if labels is None or guidance == 1.0:
            return self.unet(x, ts, labels).float()
        if self.null_class is None:
            raise UsageError("this checkpoint was not trained for classifier-free guidance: "
                             "use --guidance 1")
        null = torch.full_like(labels, self.null_class)
        out = self.unet(torch.cat([x, x]), torch.cat([ts, ts]), torch.cat([labels, null])).float()
        cond, uncond = out.chunk(2)
        return uncond + guidance * (cond - uncond)

    def initial_noise(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> torch.Tensor:
        shape = (n, self.channels, self.image_size, self.image_size)
        return torch.randn(shape, generator=generator, device=device or self.device)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, steps: int | None = None,
               sampler: str | None = None, eta: float | None = None, spacing: str | None = None,
               variance_type: str | None = None, class_labels: Any = None,
               guidance: float | None = None, init_noise: torch.Tensor | None = None,
               progress: Progress | None = None, fast: bool = True, **_: Any) -> torch.Tensor:
        """``n`` images in [-1, 1]. ``fast`` runs the UNet on its inference fast path
        (channels_last, Winograd 3x3 where it pays); outputs agree with ``fast=False`` to ~1e-5."""
        d = self.config["sampling"]
        sampler = sampler or d["sampler"]
        if sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler {sampler!r}; use one of {sorted(SAMPLERS)}")
        steps = steps or (d["steps"] if sampler == d["sampler"] else 50)
        guidance = d.get("guidance", 1.0) if guidance is None else guidance
        spacing = spacing or d.get("spacing", "leading")
        if sampler == "ddim":
            algo = SAMPLERS["ddim"](self.schedule, steps, spacing, eta=d.get("eta", 0.0) if eta is None else eta,
                                    clipped_eps=guidance != 1.0)
        else:
            algo = SAMPLERS["ddpm"](self.schedule, steps, spacing, variance_type=variance_type)
        device = self.device
        if init_noise is not None:
            x = init_noise.to(device=device, dtype=torch.float32)
            expected = (self.channels, self.image_size, self.image_size)
            if x.dim() == 3:
                x = x[None]
            if tuple(x.shape[1:]) != expected:
                raise UsageError(f"--init-noise has shape {tuple(x.shape)}, this model needs "
                                 f"(N, {', '.join(map(str, expected))})")
            n = x.shape[0]
        else:
            x = self.initial_noise(n, generator, device)
        labels = self._labels(n, class_labels, device)
        total = len(algo.steps)
        with self.unet.fast_inference(enabled=fast):
            for i, s in enumerate(algo.steps):
                out = self._denoise(x, s.t, labels, guidance)
                noise = torch.randn(x.shape, generator=generator, device=device) if algo.needs_noise(i) else None
                x = algo.step(i, out, x, noise)
                if progress is not None:
                    progress(i + 1, total)
        return x.clamp(-1, 1)

    @torch.inference_mode()
    def interpolate(self, frames: int, generators: list[torch.Generator], **opts: Any) -> torch.Tensor:
        """Slerp between the initial noises drawn from each generator, decoded with DDIM (eta=0).

        Each endpoint's noise is exactly what ``sample(1, generator)`` would start from.
        """
        if len(generators) < 2:
            raise UsageError("interpolation needs at least two seeds")
        if frames < 2:
            raise UsageError("--frames must be at least 2")
        ends = [self.initial_noise(1, g)[0] for g in generators]
        if self.num_classes and opts.get("class_labels") is None:
            # one class for the whole path (drawn from the first seed), not one per frame
            opts["class_labels"] = int(torch.randint(self.num_classes, (1,), generator=generators[0],
                                                     device=generators[0].device))
        # `frames` points spread evenly along the path through all seeds (k segments).
        pos = torch.linspace(0, len(ends) - 1, frames, dtype=torch.float64)
        seg = pos.floor().long().clamp(max=len(ends) - 2)
        xs = [slerp(ends[int(k)], ends[int(k) + 1], (p - k).view(1).float())
              for p, k in zip(pos, seg)]
        x = torch.cat(xs)
        opts.setdefault("sampler", "ddim")
        opts.setdefault("steps", 50)
        opts["eta"] = 0.0
        return self.sample(x.shape[0], None, init_noise=x, **opts)
