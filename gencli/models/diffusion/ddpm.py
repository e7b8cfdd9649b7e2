"""The diffusion family: a UNet denoiser + a noise schedule, sampled with DDPM or DDIM.

Class-conditional models reserve one extra class-embedding row as the "no class" token
(index ``num_classes``); training drops labels to it with probability ``cond_drop_prob`` so that
sampling can use classifier-free guidance (Ho & Salimans 2022):
``out = out_uncond + w * (out_cond - out_uncond)``. ``w = 1`` is plain conditional sampling.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gencli.errors import InputError, UsageError
from gencli.kernels import cuda_graphs
from gencli.models.configs import merge
from gencli.models.base import GenerativeModel, OnnxGraph, Progress, randn
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
                  "beta_end": 0.02, "prediction_type": "v_prediction", "variance_type": "fixed_small",
                  "clip_sample": True},
    "cond_drop_prob": 0.1,
    # Min-SNR-gamma loss weighting (Hang et al. 2023 use 5); None: plain MSE. With v-prediction it
    # won the convergence comparison of issue 14 (weights/README.md, "Convergence variants").
    "min_snr_gamma": 5.0,
    "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "warmup_steps": 200},
    "sampling": {"sampler": "ddpm", "steps": 1000, "guidance": 1.0, "spacing": "leading", "eta": 0.0},
}


class DiffusionModel(GenerativeModel):
    family = "ddpm"
    per_image_noise = True  # image i of a run depends on (seed, i) only

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
        cfg = merge(DEFAULT_TRAIN_CONFIG, overrides)
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

    def preview_options(self) -> dict[str, Any]:
        return {"sampler": "ddim", "steps": 50}

    def ema_module(self) -> torch.nn.Module:
        return self.unet

    def train_step(self, batch, step, ctx):
        x, y = batch
        b = x.shape[0]
        # the step's randomness from ctx: the same on 1 or N ranks, and exact on resume
        t = ctx.randint(0, self.schedule.num_train_timesteps, (b,))
        noise = ctx.randn_like(x)
        x_t = self.schedule.add_noise(x, noise, t)
        labels = None
        if self.num_classes:
            labels = y.clone()
            labels[labels < 0] = self.null_class
            drop = ctx.rand(b) < self.config.get("cond_drop_prob", 0.1)
            labels[drop] = self.null_class
        with ctx.autocast():
            out = self.unet(x_t, t, labels)
        target = self.schedule.training_target(x, noise, t)
        w = self.schedule.loss_weights(t, self.config.get("min_snr_gamma"))
        if w is None:
            loss = F.mse_loss(out.float(), target)
        else:  # Min-SNR-gamma: per-sample weights on the per-sample MSE
            loss = (w * (out.float() - target).square().flatten(1).mean(1)).mean()
        ctx.step(loss, "unet")
        return {"loss": loss.detach()}

    # --- sampling ---------------------------------------------------------------------------
    def _unet_call(self, x: torch.Tensor, ts: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, ts, labels)

    def _denoise(self, x: torch.Tensor, t: int, labels: torch.Tensor | None, guidance: float,
                 net: Any = None) -> torch.Tensor:
        """The (guided) network output at step ``t``; ``net(x, ts[, labels])`` runs the UNet (a
        :class:`~gencli.kernels.cuda_graphs.GraphedCall` of it on CUDA)."""
        net = net or self._unet_call
        ts = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if labels is None or guidance == 1.0:
            return (net(x, ts) if labels is None else net(x, ts, labels)).float()
        if self.null_class is None:
            raise UsageError("this checkpoint was not trained for classifier-free guidance: "
                             "use --guidance 1")
        null = torch.full_like(labels, self.null_class)
        out = net(torch.cat([x, x]), torch.cat([ts, ts]), torch.cat([labels, null])).float()
        cond, uncond = out.chunk(2)
        return uncond + guidance * (cond - uncond)

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T: ``n`` standard-normal images, as ``sample(n, generator)`` starts from."""
        return randn((n, self.channels, self.image_size, self.image_size), generator, self.device)

    def sampling_settings(self, *, steps: int | None = None, sampler: str | None = None,
                          eta: float | None = None, spacing: str | None = None,
                          guidance: float | None = None, **_: Any) -> dict[str, Any]:
        """The settings ``sample`` runs with for these options: the checkpoint's sampling config
        fills what is not given; a sampler it was not set up for defaults to 50 steps."""
        d = self.config["sampling"]
        sampler = sampler or d["sampler"]
        if sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler {sampler!r}; use one of {sorted(SAMPLERS)}")
        out = {"sampler": sampler, "steps": steps or (d["steps"] if sampler == d["sampler"] else 50),
               "guidance": d.get("guidance", 1.0) if guidance is None else guidance,
               "spacing": spacing or d.get("spacing", "leading")}
        if sampler == "ddim":
            out["eta"] = d.get("eta", 0.0) if eta is None else eta
        return out

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, steps: int | None = None,
               sampler: str | None = None, eta: float | None = None, spacing: str | None = None,
               variance: str | None = None, class_labels: Any = None,
               guidance: float | None = None, init_noise: torch.Tensor | None = None,
               progress: Progress | None = None, fast: bool = True, **_: Any) -> torch.Tensor:
        """``n`` images in [-1, 1]. ``fast`` runs the UNet on its inference fast path
        (channels_last, Winograd 3x3 where it pays); outputs agree with ``fast=False`` to ~1e-5."""
        if eta is not None and (sampler or self.config["sampling"]["sampler"]) != "ddim":
            raise UsageError("--eta applies to DDIM sampling only: add --sampler ddim (or use the ddim model)")
        if variance is not None and (sampler or self.config["sampling"]["sampler"]) != "ddpm":
            raise UsageError("--variance applies to DDPM sampling only: use --sampler ddpm")
        eff = self.sampling_settings(steps=steps, sampler=sampler, eta=eta, spacing=spacing, guidance=guidance)
        guidance = eff["guidance"]
        if eff["sampler"] == "ddim":
            algo = SAMPLERS["ddim"](self.schedule, eff["steps"], eff["spacing"], eta=eff["eta"],
                                    clipped_eps=guidance != 1.0)
        else:
            algo = SAMPLERS["ddpm"](self.schedule, eff["steps"], eff["spacing"], variance_type=variance)
        device = self.device
        if init_noise is not None:
            x = init_noise.to(device=device, dtype=torch.float32)
            expected = (self.channels, self.image_size, self.image_size)
            if x.dim() == 3:
                x = x[None]
            if tuple(x.shape[1:]) != expected:
                raise InputError(f"the initial noise has shape {tuple(x.shape)}, this model needs "
                                 f"(N, {', '.join(map(str, expected))})")
            n = x.shape[0]
        else:
            x = self.prior(n, generator)
        labels = self.class_labels(n, class_labels, device)
        total = len(algo.steps)
        fast = fast and not self.compiled  # a compiled plain forward replaces the hand-written path
        net = None
        if cuda_graphs.wanted(device):  # the fixed-shape loop: one graph replay per step
            net = cuda_graphs.GraphedCall(self._unet_call)
        with self.unet.fast_inference(enabled=fast):
            for i, s in enumerate(algo.steps):
                out = self._denoise(x, s.t, labels, guidance, net)
                noise = randn(tuple(x.shape), generator, device) if algo.needs_noise(i) else None
                x = algo.step(i, out, x, noise)
                if progress is not None:
                    progress(i + 1, total)
        return x.clamp(-1, 1)

    def decode(self, latents: torch.Tensor, **opts: Any) -> torch.Tensor:
        """Images from x_T latents by deterministic DDIM (eta 0; ``steps`` default 50)."""
        opts.setdefault("steps", 50)
        opts.update(sampler="ddim", eta=0.0)
        return self.sample(latents.shape[0], None, init_noise=latents, **opts)

    # --- export -------------------------------------------------------------------------------
    def export_onnx(self, **_: Any) -> OnnxGraph:
        """The UNet denoiser (not the sampling loop): ``sample`` (N, C, H, W) float32, ``timestep``
        (N,) int64 and, for a class-conditional model, ``class_labels`` (N,) int64 (index
        ``null_class`` is the "no class" token of classifier-free guidance) -> ``model_output``
        (N, C, H, W), epsilon, v or x0 as the schedule's ``prediction_type`` says. A fresh fp32
        copy in eval mode on the CPU: the inference fast path (channels_last, Winograd) is off.
        The schedule and sampling defaults travel in the metadata, so a sampling loop outside
        gencli can rebuild them (README, "Export to ONNX")."""
        import json

        from gencli import __version__

        unet = UNet2DModel(self.config["unet"])
        unet.load_state_dict({k: v.detach().to("cpu", torch.float32).contiguous()
                              for k, v in self.unet.state_dict().items()})
        unet.eval().requires_grad_(False)
        g = torch.Generator().manual_seed(0)
        size, ch = self.image_size, self.channels
        T = self.schedule.num_train_timesteps
        inputs = [torch.randn(2, ch, size, size, generator=g), torch.tensor([T - 1, T // 2], dtype=torch.long)]
        names = ["sample", "timestep"]
        if unet.class_embedding is not None:
            inputs.append(torch.tensor([0, (self.num_classes or 1) - 1], dtype=torch.long))
            names.append("class_labels")
        meta = {"gencli_version": __version__, "gencli_family": self.family,
                "unet_config": json.dumps(self.config["unet"]),
                "scheduler": json.dumps(self.schedule.to_config()),
                "prediction_type": self.schedule.prediction_type,
                "sampling": json.dumps(self.config.get("sampling", {})),
                "image_size": str(size), "channels": str(ch),
                "num_classes": str(self.num_classes or 0),
                "null_class": "" if self.null_class is None else str(self.null_class)}
        return OnnxGraph(unet, tuple(inputs), tuple(names), ("model_output",),
                         {n: {0: "batch"} for n in (*names, "model_output")}, meta)
