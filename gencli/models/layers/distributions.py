"""Likelihood pieces shared by the likelihood families (VAE decoders, PixelCNN, flows).

Conventions (README, "Likelihoods and bits/dim"): images cross the model boundary as floats in
[-1, 1] that come from 8-bit data, x_k = k / 127.5 - 1 for k = 0..255. A family's
``log_likelihood(images)`` returns, per image, log P(x) in nats of the 8-bit image: exact for a
discrete model (PixelCNN's 256-way softmax, a discretised logistic), and for a continuous density
p over dequantised data y = (k + u) / 256, u ~ U[0, 1)^D, the bound
``log P(x) >= E_u log p(y) - D ln 256`` (one draw of u per call). Bits/dim is then
``-log P(x) / (D ln 2)``, i.e. ``(NLL_nats(y) / D + ln 256) / ln 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG256 = math.log(256.0)


def to_levels(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels (0..255, long) of images in [-1, 1]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().long()


def from_levels(levels: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] of 8-bit levels."""
    return levels.float() / 127.5 - 1.0


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = (k + u) / 256 in [0, 1) for the 8-bit levels k of ``images``, u ~ U[0, 1)."""
    k = to_levels(images).float()
    u = torch.rand(k.shape, generator=generator, device=k.device)
    return (k + u) / 256.0


def bits_per_dim(log_likelihood: torch.Tensor, dims: int) -> torch.Tensor:
    """Bits/dim of discrete log-likelihoods (nats per image) of images with ``dims`` values each."""
    return -log_likelihood / (dims * math.log(2.0))


def discretized_logistic_mix_log_prob(levels: torch.Tensor, logit_probs: torch.Tensor, means: torch.Tensor,
                                      log_scales: torch.Tensor) -> torch.Tensor:
    """log P(k) of 8-bit ``levels`` (N, C, H, W) under a mixture of discretised logistics
    (Salimans et al. 2017, PixelCNN++), per value: ``logit_probs``, ``means`` and ``log_scales``
    have shape (N, K, C, H, W); means live in [-1, 1] space, bins are 2/255 wide, the end bins
    take the tails. Returns (N, C, H, W) in nats."""
    x = from_levels(levels).unsqueeze(1)  # (N, 1, C, H, W)
    log_scales = log_scales.clamp(min=-7.0)
    centered = x - means
    inv_s = torch.exp(-log_scales)
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = plus_in - F.softplus(plus_in)          # log sigmoid(plus_in), for k = 0
    log_one_minus_cdf_min = -F.softplus(min_in)            # log (1 - sigmoid(min_in)), for k = 255
    # log(sigmoid(plus) - sigmoid(min)), stably: sigmoid(a)-sigmoid(b) = sigmoid(a)(1-sigmoid(b))(1-exp(b-a))
    log_mid = (F.logsigmoid(plus_in) + F.logsigmoid(-min_in)
               + torch.log(-torch.expm1(min_in - plus_in).clamp(max=-1e-12)))
    k = levels.unsqueeze(1)
    log_probs = torch.where(k == 0, log_cdf_plus, torch.where(k == 255, log_one_minus_cdf_min, log_mid))
    return torch.logsumexp(log_probs + F.log_softmax(logit_probs, dim=1), dim=1)


def discretized_logistic_mix_sample(logit_probs: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                                    generator: torch.Generator | None = None,
                                    temperature: float = 1.0) -> torch.Tensor:
    """8-bit levels drawn from the mixture of :func:`discretized_logistic_mix_log_prob` (shapes
    (N, K, C, H, W) -> (N, C, H, W)); ``temperature`` scales the logistic scales."""
    n, k = logit_probs.shape[:2]
    flat = logit_probs.movedim(1, -1).reshape(-1, k)
    comp = torch.multinomial(F.softmax(flat.float(), -1), 1, generator=generator).view(
        *logit_probs.shape[:1], *logit_probs.shape[2:]).unsqueeze(1)
    mean = means.gather(1, comp).squeeze(1)
    log_s = log_scales.clamp(min=-7.0).gather(1, comp).squeeze(1)
    u = torch.rand(mean.shape, generator=generator, device=mean.device).clamp(1e-5, 1 - 1e-5)
    x = mean + torch.exp(log_s) * temperature * (torch.log(u) - torch.log1p(-u))
    return to_levels(x)


def categorical_log_prob(levels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log P(k) of 8-bit ``levels`` (N, C, H, W) under 256-way ``logits`` (N, 256, C, H, W)."""
    return -F.cross_entropy(logits.float(), levels, reduction="none")


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, exp(log_std)^2)."""
    return -0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
