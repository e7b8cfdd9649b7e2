"""Autoencoders: ``ae`` (deterministic), ``dae`` (denoising), ``vae`` (Kingma & Welling 2014) and
``beta-vae`` (Higgins et al. 2017), one convolutional encoder/decoder pair (networks.py).

VAE: q(z|x) = N(mu, diag sigma^2) from the encoder, p(z) = N(0, I), reparameterised samples, the
KL in closed form. The decoder p(x|z) is one of

- ``logistic`` (default): a discretised logistic per pixel (mean and log-scale), an exact
  distribution over the 256 levels, so the ELBO/IWAE bounds are bounds on log P(x) of 8-bit data;
- ``gaussian``: N(mean, sigma^2) on the dequantised image in [-1, 1] (one learned log sigma);
  log P(x) >= log p(y) - D ln 128 (y in [-1, 1]: the bins are 2/256 wide);
- ``bernoulli``: cross-entropy against the intensities in [0, 1] (the classic "Bernoulli"
  decoder of grey images); it is not a distribution over 8-bit images, so it has no bits/dim.

``log_likelihood`` is the importance-weighted bound (Burda et al. 2016) with K samples
(``samples``, default the config's ``iwae_samples``); K = 1 is the ELBO. ``beta-vae`` weights the
KL by beta (> 1) with an optional linear warm-up of that weight over the first steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from gencli.errors import InputError, UsageError
from gencli.models.configs import merge
from gencli.models.base import GenerativeModel, Progress
from gencli.models.layers.distributions import (
    discretized_logistic_mix_log_prob, from_levels, gaussian_log_prob, to_levels)
from gencli.models.vae.networks import ConvDecoder, ConvEncoder

DECODERS = ("logistic", "gaussian", "bernoulli")

DEFAULT_CONFIG: dict[str, Any] = {
    "hidden": [32, 64],
    "dense": 256,
    "latent_dim": 32,
    "loss": "mse",             # ae/dae: mse | bce
    "decoder": "logistic",     # vae: logistic | gaussian | bernoulli
    "beta": 1.0,
    "kl_warmup_steps": 0,
    "iwae_samples": 64,
    "noise": "gaussian",       # dae: gaussian | masking
    "noise_level": 0.5,        # dae: std in [-1, 1] units, or the masked fraction
    "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0},
}


def _full(t: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision tensors (autocast), else unchanged (float64 stays exact)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class AutoEncoder(GenerativeModel):
    """Deterministic convolutional autoencoder; ``translate`` reconstructs."""

    family = "ae"
    train_defaults = {"ema_decay": 0.0, "batch_size": 128, "grad_clip": 5.0}
    base_config: dict[str, Any] = {}

    def __init__(self, config: dict[str, Any]):
        super().__init__(merge(DEFAULT_CONFIG, {**self.base_config, **config}))
        cfg = self.config
        size, c = int(cfg["image_size"]), int(cfg["channels"])
        hidden = [int(h) for h in cfg["hidden"]]
        if size % 2 ** len(hidden):
            raise ValueError(f"image_size {size} must be divisible by {2 ** len(hidden)}")
        if cfg["loss"] not in ("mse", "bce") or cfg["decoder"] not in DECODERS:
            raise ValueError(f"unknown loss {cfg['loss']!r} or decoder {cfg['decoder']!r}")
        self.latent_dim = int(cfg["latent_dim"])
        self.encoder = ConvEncoder(c, size, hidden, int(cfg["dense"]), self.latent_dim * self._enc_mult)
        self.decoder = ConvDecoder(self.latent_dim, size, hidden, int(cfg["dense"]), c * self._dec_mult)

    _enc_mult = 1
    _dec_mult = 1

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = merge(merge(DEFAULT_CONFIG, cls.base_config), overrides)
        cfg.update(image_size=image_size, channels=channels, num_classes=None)
        return cfg

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        o = self.config["optimizer"]
        return {"model": torch.optim.Adam(self.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                          weight_decay=o.get("weight_decay", 0.0))}

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(f"{self.family} takes images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}: resize them (e.g. --size) or use a matching checkpoint")
        return images.to(self.device, torch.float32)

    # --- the networks ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The latent code of ``images`` (the posterior mean for a VAE), (N, latent_dim)."""
        return self.encoder(self._check(images))[:, :self.latent_dim]

    def decode(self, latents: torch.Tensor, **opts: Any) -> torch.Tensor:
        """Images in [-1, 1] of ``latents`` (N, latent_dim) (a VAE: its decoder's mean)."""
        out = self.decoder(latents.to(self.device, torch.float32))
        return self._mean_image(out)

    def _mean_image(self, out: torch.Tensor) -> torch.Tensor:
        if self.config["loss"] == "bce":
            return torch.sigmoid(out) * 2 - 1
        return torch.tanh(out)

    def _corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    def _recon_loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.config["loss"] == "bce":
            return F.binary_cross_entropy_with_logits(out.float(), (x + 1) / 2)
        return F.mse_loss(torch.tanh(out.float()), x)

    def train_step(self, batch, step, ctx):
        x, _ = batch
        with ctx.autocast():
            out = self.decoder(self.encoder(self._corrupt(x))[:, :self.latent_dim])
        loss = self._recon_loss(out, x)
        ctx.step(loss, "model")
        return {"loss": loss.detach()}

    def translate(self, images: torch.Tensor, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        """The model's reconstruction of ``images`` (a DAE: denoised)."""
        return self.decode(self.encode(images)).clamp(-1, 1)


class DenoisingAutoEncoder(AutoEncoder):
    """Denoising autoencoder (Vincent et al. 2008): trained to reconstruct clean images from
    corrupted ones, Gaussian noise (std ``noise_level`` in [-1, 1] units) or masking noise (a
    fraction ``noise_level`` of the pixels set to -1). ``translate`` denoises; ``add_noise``
    corrupts the inputs first (to see it work on clean images)."""

    family = "dae"

    def _corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None, level: float | None = None
                 ) -> torch.Tensor:
        level = float(self.config["noise_level"] if level is None else level)
        if self.config["noise"] == "masking":
            keep = torch.rand(x.shape, generator=generator, device=x.device) >= level
            return torch.where(keep, x, torch.full_like(x, -1.0))
        return (x + level * torch.randn(x.shape, generator=generator, device=x.device)).clamp(-1, 1)

    def translate(self, images: torch.Tensor, generator: torch.Generator | None = None, *,
                  add_noise: bool = False, noise_level: float | None = None, **opts: Any) -> torch.Tensor:
        x = self._check(images)
        if add_noise or noise_level is not None:
            x = self._corrupt(x, generator, noise_level)
        return self.decode(self.encode(x)).clamp(-1, 1)


class VAE(AutoEncoder):
    family = "vae"
    _enc_mult = 2
    @property
    def _dec_mult(self) -> int:  # type: ignore[override]
        return 2 if self.config["decoder"] == "logistic" else 1

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        if self.config["decoder"] == "gaussian":
            self.log_sigma = torch.nn.Parameter(torch.full((), math.log(0.1)))
        if self.num_classes:  # class-conditional decoder p(x | z, y): a class vector added to z
            self.label_emb = torch.nn.Embedding(int(self.num_classes), self.latent_dim)

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = super().config_for_data(image_size, channels, num_classes, overrides)
        cfg["num_classes"] = num_classes or None
        return cfg

    def _decode_out(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise UsageError("this VAE is class-conditional: give class labels (--class)")
            z = z + self.label_emb(labels.to(z.device).long().clamp(min=0))
        return self.decoder(z)

    # --- distributions --------------------------------------------------------------------------
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z|x)."""
        h = self.encoder(images)
        mu, logvar = h[:, :self.latent_dim], h[:, self.latent_dim:]
        return mu, logvar.clamp(-12, 8)

    def log_px_z(self, target: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(target | z) per image, from the decoder output ``out``. ``target``: 8-bit levels
        (long) for the logistic decoder, the dequantised image in [-1, 1] for the Gaussian one,
        the image in [-1, 1] for the Bernoulli one."""
        dec = self.config["decoder"]
        c = self.channels
        out = _full(out)
        if dec == "logistic":
            mean, log_scale = out[:, :c], out[:, c:]
            lp = discretized_logistic_mix_log_prob(target, torch.zeros_like(mean[:, None]), mean[:, None],
                                                   log_scale[:, None])
        elif dec == "gaussian":
            lp = gaussian_log_prob(target, out, self.log_sigma)
        else:
            lp = -F.binary_cross_entropy_with_logits(out, (target + 1) / 2, reduction="none")
        return lp.flatten(1).sum(1)

    def _target(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        dec = self.config["decoder"]
        if dec == "logistic":
            return to_levels(x)
        if dec == "gaussian":  # dequantised, in [-1, 1]
            k = to_levels(x).float()
            return (k + torch.rand(k.shape, generator=generator, device=k.device)) / 128.0 - 1.0
        return x

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(0, I)) per row, in closed form."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)

    def elbo(self, images: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None,
             beta: float = 1.0, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ELBO, reconstruction log-likelihood, KL) per image, one reparameterised sample, the KL
        analytic; ``target`` as :meth:`log_px_z` takes it."""
        mu, logvar = self.posterior(images)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        rec = self.log_px_z(target, self._decode_out(z, labels))
        kl = self.kl(_full(mu), _full(logvar))
        return rec - beta * kl, rec, kl

    def log_weights(self, images: torch.Tensor, target: torch.Tensor, k: int,
                    generator: torch.Generator | None = None, labels: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for K posterior samples z_i: (K, N)."""
        mu, logvar = self.posterior(images)
        std = torch.exp(0.5 * logvar)
        out = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator, device=mu.device)
            z = mu + eps * std
            log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
            log_qz = gaussian_log_prob(z, mu, 0.5 * logvar).sum(1)
            out.append(self.log_px_z(target, self._decode_out(z, labels)) + log_pz - log_qz)
        return torch.stack(out)

    def kl_weight(self, step: int) -> float:
        beta = float(self.config["beta"])
        warm = int(self.config.get("kl_warmup_steps") or 0)
        return beta * min(1.0, (step + 1) / warm) if warm else beta

    def train_step(self, batch, step, ctx):
        x, y = batch
        w = self.kl_weight(step)
        with ctx.autocast():
            elbo, rec, kl = self.elbo(x, self._target(x, None), beta=w, labels=y if self.num_classes else None)
        dims = x[0].numel()
        loss = -elbo.mean() / dims  # nats per dimension
        ctx.step(loss, "model")
        return {"loss": loss.detach(), "recon": -rec.mean().detach() / dims, "kl": kl.mean().detach(),
                "kl_weight": torch.tensor(w)}

    # --- capabilities ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.posterior(self._check(images))[0]

    def decode(self, latents: torch.Tensor, class_labels: Any = None, **opts: Any) -> torch.Tensor:
        z = latents.to(self.device, torch.float32)
        labels = self.class_labels(z.shape[0], class_labels) if self.num_classes else None
        return self._mean_image(self._decode_out(z, labels))

    def _mean_image(self, out: torch.Tensor) -> torch.Tensor:
        dec = self.config["decoder"]
        if dec == "logistic":
            return out[:, :self.channels].clamp(-1, 1)
        if dec == "gaussian":
            return out.clamp(-1, 1)
        return torch.sigmoid(out) * 2 - 1

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((n, self.latent_dim), generator=generator, device=self.device)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0,
               class_labels: Any = None, init_noise: torch.Tensor | None = None,
               progress: Progress | None = None, **_: Any) -> torch.Tensor:
        """Decoder means of z ~ N(0, T^2 I) (``temperature`` T)."""
        z = self.prior(n, generator) if init_noise is None else init_noise.to(self.device).view(-1, self.latent_dim)
        x = self.decode(z * float(temperature), class_labels=class_labels)
        if progress is not None:
            progress(1, 1)
        return x.clamp(-1, 1)

    @torch.inference_mode()
    def translate(self, images: torch.Tensor, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        """Reconstruction: the decoder mean of the posterior mean."""
        return self.decode(self.encode(images)).clamp(-1, 1)

    @torch.inference_mode()
    def traverse(self, images: torch.Tensor | None = None, *, frames: int = 9, span: float = 3.0,
                 dims: int | None = None, class_labels: Any = None, **_: Any) -> torch.Tensor:
        """A latent traversal: one row per latent dimension (the first ``dims``, default all), each
        row ``frames`` images with that dimension swept over [-span, span] from the code of the
        first of ``images`` (or from z = 0), the others fixed. (rows * frames, C, H, W)."""
        if frames < 2:
            raise UsageError("a traversal needs at least 2 frames")
        z0 = self.encode(images[:1])[0] if images is not None else torch.zeros(self.latent_dim, device=self.device)
        d = self.latent_dim if dims is None else min(int(dims), self.latent_dim)
        values = torch.linspace(-span, span, frames, device=self.device)
        z = z0.repeat(d, frames, 1)  # (d, frames, latent)
        idx = torch.arange(d, device=self.device)
        z[idx, :, idx] = values.expand(d, frames)
        label = None if class_labels is None else torch.as_tensor(class_labels).flatten()[:1]
        return self.decode(z.view(d * frames, -1), class_labels=label).clamp(-1, 1)

    @torch.inference_mode()
    def log_likelihood(self, images: torch.Tensor, generator: torch.Generator | None = None, *,
                       samples: int | None = None, class_labels: Any = None, **_: Any) -> torch.Tensor:
        """The IWAE bound on log P(x) of the 8-bit images, nats per image (K = ``samples``)."""
        dec = self.config["decoder"]
        if dec == "bernoulli":
            raise UsageError("this VAE has a Bernoulli decoder (intensities, not 8-bit levels): it has no "
                             "likelihood of 8-bit images; train with a logistic or gaussian decoder")
        k = int(samples or self.config.get("iwae_samples", 64))
        x = self._check(images)
        target = self._target(x, generator)
        labels = None
        if self.num_classes:
            if class_labels is None:
                raise UsageError("this VAE is class-conditional: its likelihood needs the images' labels")
            labels = self.class_labels(x.shape[0], class_labels)
        lw = self.log_weights(x, target, k, generator, labels)
        bound = torch.logsumexp(lw.double(), 0) - math.log(k)
        if dec == "gaussian":  # density of y in [-1, 1]; bins of width 2/256
            bound = bound - x[0].numel() * math.log(128.0)
        return bound.float()


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017): the KL weighted by beta > 1 (linear warm-up optional), a
    smaller latent, for disentangled factors that a traversal shows one per row."""

    family = "beta-vae"
    base_config = {"beta": 4.0, "latent_dim": 10, "kl_warmup_steps": 1000}


# keep ``from_levels`` importable here for the tests
__all__ = ["AutoEncoder", "DenoisingAutoEncoder", "VAE", "BetaVAE", "from_levels"]
