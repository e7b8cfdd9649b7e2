"""Training tricks from the standard lists, each a small pure function, off unless a config asks:

- :func:`smoothed_d_loss`: one-sided label smoothing (Salimans et al. 2016): real targets 1 - s,
  fake targets stay 0 (vanilla and LSGAN losses; the others have no targets to smooth).
- :func:`instance_noise_std`: Gaussian noise added to D's real and fake inputs (Sonderby et al.
  2016), its std decaying linearly to 0 over a number of steps; a pure function of the step, so
  resuming is exact.
- :func:`diff_augment`: DiffAugment (Zhao et al. 2020), differentiable color / translation /
  cutout applied to reals and fakes alike, in D's and G's steps (mit-han-lab/data-efficient-gans
  ``DiffAugment_pytorch.py`` semantics: brightness +-0.5, saturation x U(0, 2), contrast
  x U(0.5, 1.5); translation by up to 1/8 of the size with zero padding; a cutout square of half
  the size).
- :func:`truncated_normal`: the truncation trick for Gaussian z (values beyond +-psi redrawn).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gencli.errors import UsageError
from gencli.models.gan import losses
from gencli.training.step import TorchRandom

POLICIES = ("color", "translation", "cutout")


def smoothed_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor, mode: str, smoothing: float) -> torch.Tensor:
    """The discriminator loss of ``mode`` with real targets ``1 - smoothing`` (vanilla, lsgan)."""
    if not smoothing or mode not in ("vanilla", "lsgan"):
        return losses.discriminator_loss(real_pred, fake_pred, mode)
    r, f = real_pred.float(), fake_pred.float()
    target = torch.full_like(r, 1.0 - float(smoothing))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(r, target) + losses.vanilla_loss(f, False)
    return F.mse_loss(r, target) + losses.lsgan_loss(f, False)


def instance_noise_std(step: int, std: float, decay_steps: int) -> float:
    """``std`` decayed linearly to 0 at ``decay_steps`` (0: constant)."""
    if not std:
        return 0.0
    if decay_steps and decay_steps > 0:
        return float(std) * max(0.0, 1.0 - step / float(decay_steps))
    return float(std)


def parse_policy(policy: str | None) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise UsageError(f"unknown augmentation {bad[0]!r}; use a comma list of {', '.join(POLICIES)}")
    return parts


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], rng: Any = None) -> torch.Tensor:
    """DiffAugment of an image batch (N, C, H, W); differentiable in ``x``. Random numbers come
    from ``rng`` (a training step's context, or anything with ``rand``/``randint`` like it;
    default: torch's global generator)."""
    parts = parse_policy(policy) if isinstance(policy, str) else policy
    if x.dim() != 4 or not parts:
        return x
    rng = rng if rng is not None else TorchRandom(x.device)
    n = x.shape[0]
    for p in parts:
        if p == "color":
            x = x + (rng.rand(n, 1, 1, 1).to(x) - 0.5)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rng.rand(n, 1, 1, 1).to(x) * 2) + mean
            mean = x.mean(dim=[1, 2, 3], keepdim=True)
            x = (x - mean) * (rng.rand(n, 1, 1, 1).to(x) + 0.5) + mean
        elif p == "translation":
            x = _translate(x, 0.125, rng)
        elif p == "cutout":
            x = _cutout(x, 0.5, rng)
    return x


def _translate(x: torch.Tensor, ratio: float, rng: Any) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    tx = rng.randint(-sh, sh + 1, (n, 1, 1)).to(dev)
    ty = rng.randint(-sw, sw + 1, (n, 1, 1)).to(dev)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=dev), torch.arange(h, device=dev),
                                torch.arange(w, device=dev), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float, rng: Any) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    ox = rng.randint(0, h + (1 - ch % 2), (n, 1, 1)).to(dev)
    oy = rng.randint(0, w + (1 - cw % 2), (n, 1, 1)).to(dev)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=dev), torch.arange(ch, device=dev),
                                torch.arange(cw, device=dev), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=dev)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def truncated_normal(shape: tuple[int, ...], psi: float, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, rounds: int = 64) -> torch.Tensor:
    """N(0, 1) draws with every value beyond +-psi redrawn (BigGAN's truncation trick); values
    still outside after ``rounds`` redraws are clamped. Deterministic in ``generator``."""
    if psi <= 0:
        return torch.zeros(shape, device=device)
    z = torch.randn(shape, generator=generator, device=device)
    for _ in range(rounds):
        bad = z.abs() > psi
        if not bool(bad.any()):
            break
        z = torch.where(bad, torch.randn(shape, generator=generator, device=device), z)
    return z.clamp(-psi, psi)
