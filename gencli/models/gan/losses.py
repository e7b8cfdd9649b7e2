"""Adversarial losses: small pure functions of the discriminator's outputs, which know no network.

:func:`gan_loss` is the one-sided form the translation models use (``lsgan`` / ``vanilla``
against an all-ones or all-zeros target), computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gencli.errors import UsageError

# --------------------------------------------------------------------------------------------
# One side: outputs against an all-real or all-fake target


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _target(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return torch.ones_like(pred) if real else torch.zeros_like(pred)


def vanilla_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE with logits against 1 (``real``) or 0: mean softplus(-pred) or mean softplus(pred)."""
    pred = _f32(pred)
    return F.binary_cross_entropy_with_logits(pred, _target(pred, real))


def lsgan_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Mean squared error to 1 (``real``) or 0."""
    pred = _f32(pred)
    return F.mse_loss(pred, _target(pred, real))


_ONE_SIDED = {"lsgan": lsgan_loss, "vanilla": vanilla_loss}


def gan_loss(pred: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """LSGAN (mean squared error to 1/0) or the vanilla GAN loss (BCE with logits), in float32."""
    fn = _ONE_SIDED.get(mode)
    if fn is None:
        raise UsageError(f"unknown gan_mode {mode!r}; use lsgan or vanilla")
    return fn(pred.float(), real)
