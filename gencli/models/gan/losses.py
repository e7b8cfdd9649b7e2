"""Adversarial losses and gradient penalties: small pure functions of the discriminator's
outputs (logits, or a WGAN critic's scores), which know no network.

Every loss is a mean over all the outputs (per image, or per patch for a PatchGAN) computed in
float32 at least (half-precision outputs are upcast, float64 stays float64). Discriminator losses are the sum of their real and fake terms (the official CycleGAN and
pix2pix halve that sum themselves). With ``r`` the outputs on real images and ``f`` on fakes:

=========  =====================================  =========================================
mode       discriminator / critic                 generator
=========  =====================================  =========================================
vanilla    mean softplus(-r) + mean softplus(f)   mean softplus(-f) (non-saturating)
           (BCE with logits; Goodfellow 2014)     [minimax: -mean softplus(f)]
lsgan      mean (r - 1)^2 + mean f^2 (Mao 2017)   mean (f - 1)^2
wgan       mean f - mean r (Arjovsky 2017)        -mean f
hinge      mean relu(1 - r) + mean relu(1 + f)    -mean f  (Lim & Ye 2017, Miyato 2018)
=========  =====================================  =========================================

:func:`gan_loss` is the one-sided form the translation models use (``lsgan`` / ``vanilla``
against an all-ones or all-zeros target). :func:`gradient_penalty` (WGAN-GP, Gulrajani 2017) and
:func:`r1_penalty` (Mescheder 2018, StyleGAN) return the unweighted penalties.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from gencli.errors import UsageError

Critic = Callable[[torch.Tensor], torch.Tensor]

MODES = ("vanilla", "lsgan", "wgan", "hinge")


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


# --------------------------------------------------------------------------------------------
# Discriminator (critic) and generator losses


def vanilla_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return vanilla_loss(real_pred, True) + vanilla_loss(fake_pred, False)


def nonsaturating_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): the generator loss used with the vanilla discriminator loss in practice."""
    return vanilla_loss(fake_pred, True)


def minimax_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))), the original minimax objective (saturates when D wins)."""
    return -vanilla_loss(fake_pred, False)


def lsgan_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return lsgan_loss(real_pred, True) + lsgan_loss(fake_pred, False)


def lsgan_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return lsgan_loss(fake_pred, True)


def wgan_critic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Minus the critic's estimate of the Wasserstein-1 distance: mean f - mean r."""
    return _f32(fake_pred).mean() - _f32(real_pred).mean()


def wgan_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return -_f32(fake_pred).mean()


def hinge_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - _f32(real_pred)).mean() + F.relu(1.0 + _f32(fake_pred)).mean()


def hinge_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """-mean f, as for WGAN (SN-GAN, BigGAN)."""
    return -_f32(fake_pred).mean()

D_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "vanilla": vanilla_d_loss, "lsgan": lsgan_d_loss, "wgan": wgan_critic_loss, "hinge": hinge_d_loss}
G_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "vanilla": nonsaturating_g_loss, "lsgan": lsgan_g_loss, "wgan": wgan_g_loss, "hinge": hinge_g_loss}


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown GAN loss {mode!r}; use one of {', '.join(MODES)}")
    return mode


def discriminator_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor, mode: str) -> torch.Tensor:
    """The discriminator (critic) loss of ``mode`` (one of :data:`MODES`)."""
    return D_LOSSES[_check_mode(mode)](real_pred, fake_pred)


def generator_loss(fake_pred: torch.Tensor, mode: str) -> torch.Tensor:
    """The generator loss of ``mode`` (``vanilla``: the non-saturating one)."""
    return G_LOSSES[_check_mode(mode)](fake_pred)


# --------------------------------------------------------------------------------------------
# Gradient penalties


def input_gradients(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d sum(outputs) / d inputs, kept in the graph (so a penalty on it trains the critic).

    Each sample's outputs must depend on that sample only (no batch statistics in the critic,
    as WGAN-GP and R1 assume): then row ``i`` is the gradient of sample ``i``'s outputs.
    """
    (grad,) = torch.autograd.grad(_f32(outputs).sum(), inputs, create_graph=True)
    return grad


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None, center: float = 1.0,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: mean over samples of (||grad_x critic(x)||_2 - center)^2 at x = a*real + (1-a)*fake,
    with one a ~ U[0, 1) per sample (``alpha`` (N,), or drawn from ``generator``). Unweighted
    (WGAN-GP uses 10x).

    ``real`` and ``fake`` are detached: the penalty trains the critic only.
    """
    if real.shape != fake.shape:
        raise UsageError(f"gradient penalty needs real and fake batches of one shape, "
                         f"got {tuple(real.shape)} and {tuple(fake.shape)}")
    if alpha is None:
        dev = generator.device if generator is not None else real.device
        alpha = torch.rand(real.shape[0], generator=generator, device=dev)
    alpha = alpha.reshape((real.shape[0],) + (1,) * (real.dim() - 1)).to(real.device, real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        grad = input_gradients(critic(x), x)
    return (grad.flatten(1).norm(2, dim=1) - center).square().mean()


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1: mean over real samples of ||grad_x critic(x)||_2^2. Unweighted (StyleGAN adds gamma/2 x).

    To reuse the logits of the discriminator step instead of a second forward pass, run the
    critic on ``x = real.detach().requires_grad_()`` and take
    ``input_gradients(logits, x).square().flatten(1).sum(1).mean()``.
    """
    x = real.detach().requires_grad_(True)
    with torch.enable_grad():
        grad = input_gradients(critic(x), x)
    return grad.square().flatten(1).sum(1).mean()
