"""The 2-D mode-collapse toy: a ring of 8 Gaussians (VEEGAN / Unrolled-GAN setup), and its metrics.

Data: 8 modes evenly spaced on a circle (``endpoint=False``: the Unrolled-GAN notebook's
``linspace(0, 2 pi, 8)`` repeats a mode), each an isotropic Gaussian. Metrics as PacGAN/VEEGAN:
each sample goes to its nearest mode; it is high quality (HQ) when within 3 std of it; a mode is
covered when it has at least one HQ sample (:func:`mode_stats` also reports the share of HQ
samples per mode, so a threshold above 1 sample can be asked for).

:func:`fit` trains any adversarial model on the ring with a plain loop (no files, no EMA): the
model's own ``train_step`` with a minimal step context.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from gencli.training.step import TorchRandom


def ring_modes(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    a = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return torch.stack([radius * torch.cos(a), radius * torch.sin(a)], dim=1).float()


def ring_sample(n: int, generator: torch.Generator | None = None, *, k: int = 8, radius: float = 2.0,
                std: float = 0.02) -> torch.Tensor:
    modes = ring_modes(k, radius)
    idx = torch.randint(k, (n,), generator=generator)
    return modes[idx] + std * torch.randn(n, 2, generator=generator)


def mode_stats(x: torch.Tensor, *, k: int = 8, radius: float = 2.0, std: float = 0.02,
               min_count: int = 1) -> dict[str, Any]:
    """Modes covered (>= ``min_count`` HQ samples), the HQ share, and the HQ counts per mode."""
    modes = ring_modes(k, radius)
    d = torch.cdist(x.float(), modes)
    dist, nearest = d.min(dim=1)
    hq = dist < 3 * std
    counts = torch.bincount(nearest[hq], minlength=k)
    return {"modes": int((counts >= min_count).sum()), "hq": float(hq.float().mean()),
            "counts": counts.tolist()}


class _Ctx(TorchRandom):
    """The trainer's StepContext, reduced to what ``train_step`` calls (fp32, no clipping; random
    numbers from torch's global generator)."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        super().__init__("cpu")
        self.optimizers = optimizers

    def autocast(self):
        return contextlib.nullcontext()

    def step(self, loss: torch.Tensor, name: str) -> None:
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(f"the {name} loss became {float(loss)}")
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def toy_config(family_cls: Any, **over: Any) -> dict[str, Any]:
    """An MLP config of ``family_cls`` for 2-D points (2 x ``width`` layers, linear output)."""
    from gencli.models.configs import merge

    mlp = {"arch": "mlp", "width": 128, "layers": 2, "norm": "none", "init": "default", "out": "linear"}
    cfg = family_cls.config_for_data(2, 1, None, {"data_shape": [2], "z_dim": 16,
                                                  "generator": mlp, "discriminator": dict(mlp, spectral_norm=False)})
    cfg["discriminator"]["spectral_norm"] = bool(family_cls.DEFAULTS.get("discriminator", {}).get("spectral_norm"))
    return merge(cfg, over)


def fit(model: Any, steps: int, *, batch_size: int = 256, seed: int = 0, anneal: float = 0.3, **ring: Any) -> Any:
    """Train ``model`` on the ring for ``steps`` D steps, the learning rates decaying linearly to
    0 over the last ``anneal`` fraction of them (the samples then settle on the modes); returns the
    model (in eval mode)."""
    start = int(steps * (1 - anneal))
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    optimizers = model.configure_optimizers()
    base = {name: [grp["lr"] for grp in opt.param_groups] for name, opt in optimizers.items()}
    ctx = _Ctx(optimizers)
    model.train()
    y = torch.zeros(batch_size, dtype=torch.long)
    for step in range(steps):
        if step >= start:
            for name, opt in optimizers.items():
                for grp, lr in zip(opt.param_groups, base[name]):
                    grp["lr"] = lr * (steps - step) / (steps - start)
        model.train_step((ring_sample(batch_size, g, **ring), y), step, ctx)
    return model.eval()
