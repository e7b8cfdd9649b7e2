"""One configurable adversarial model, and the classic GAN families as its default configs.

:class:`AdversarialModel` holds a generator ``G`` and (in training configs) a discriminator or
critic ``D`` (:mod:`.networks`), and its config picks the rest:

- ``loss``: ``vanilla`` (non-saturating G loss), ``minimax`` (the original log(1 - D(G(z)))),
  ``lsgan``, ``wgan``, ``hinge`` (:mod:`.losses`);
- ``penalty``: ``gp`` (WGAN-GP, one alpha per sample, norm over all pixels), ``dragan``
  (perturbed reals x + 0.5 std(x) U[0, 1)), ``r1`` (gamma/2 ||grad D(x)||^2 on reals), each
  weighted by ``penalty_weight``; ``clip``: WGAN's weight clipping after every D step;
- ``n_critic``: D steps per G step. One ``train_step`` is one D step on its batch, and every
  ``n_critic``-th one also takes a G step (so ``--steps`` counts D steps);
- ``conditioning``: ``concat`` (cGAN: label embedding in G, one-hot label in D) or ``acgan``
  (label embedding in G, an auxiliary classifier head on D, both nets minimise its
  cross-entropy weighted by ``aux_weight``); only with labelled data (``num_classes``);
- ``optimizer``: Adam or RMSprop, ``lr`` for G and ``lr_d`` for D (TTUR when they differ);
- tricks (:mod:`.tricks`), off by default: ``label_smoothing``, ``instance_noise`` (+
  ``instance_noise_steps`` decay), ``augment`` (DiffAugment policy).

Checkpoints ship only ``G`` (the EMA copy when ``--ema-decay`` is on): the exported config has
``discriminator: null``. Each family below is this class with its paper's defaults
(ANCHORS-families.md section 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import UsageError
from gencli.models.configs import merge
from gencli.models.gan.arithmetic import parse_arithmetic  # noqa: F401 (tests import it from here)
from gencli.models.base import GenerativeModel, generator_device, per_row, rand, randn
from gencli.models.gan import losses, tricks
from gencli.models.gan.networks import Discriminator, Generator

LOSSES = ("vanilla", "minimax", "lsgan", "wgan", "hinge")
PENALTIES = ("none", "gp", "dragan", "r1")
CONDITIONING = ("none", "concat", "projection", "acgan")

BASE_CONFIG: dict[str, Any] = {
    "image_size": 28, "channels": 1, "num_classes": None, "data_shape": None,
    "z_dim": 100, "z_dist": "normal",
    "generator": {"arch": "conv", "width": 32, "norm": "batch", "embed_dim": 50, "out": "tanh", "init": "normal"},
    "discriminator": {"arch": "conv", "width": 32, "norm": "batch", "spectral_norm": False, "dropout": 0.0,
                      "init": "normal"},
    "conditioning": "none",
    "loss": "vanilla",
    "penalty": "none", "penalty_weight": 10.0,
    "clip": None,
    "n_critic": 1,
    "optimizer": {"kind": "adam", "lr": 2e-4, "lr_d": None, "betas": [0.5, 0.999]},
    "aux_weight": 1.0, "aux_fakes": True,
    "label_smoothing": 0.0, "instance_noise": 0.0, "instance_noise_steps": 0, "augment": "",
}

#: train options (spec) -> config keys
TRAIN_OPTION_KEYS = {"loss": "loss", "n_critic": "n_critic", "label_smoothing": "label_smoothing",
                     "instance_noise": "instance_noise", "instance_noise_steps": "instance_noise_steps",
                     "augment": "augment", "lr_d": ("optimizer", "lr_d"), "penalty_weight": "penalty_weight"}


class AdversarialModel(GenerativeModel):
    family = "gan"
    #: the family's defaults over BASE_CONFIG
    DEFAULTS: dict[str, Any] = {}
    #: conditioning used when the data has labels (None: unconditional unless the config says)
    LABELLED: str | None = None
    train_defaults = {"batch_size": 64, "grad_clip": 0, "ema_decay": 0, "save_every": 1000}
    per_image_noise = True  # image i of a run depends on (seed, i) only, whatever the batch or ranks

    def __init__(self, config: dict[str, Any]):
        cfg = merge(merge(BASE_CONFIG, self.DEFAULTS), config)
        for key, allowed in (("loss", LOSSES), ("penalty", PENALTIES), ("conditioning", CONDITIONING)):
            if cfg[key] not in allowed:
                raise UsageError(f"unknown {key} {cfg[key]!r}; use one of {', '.join(allowed)}")
        if not cfg.get("num_classes"):
            cfg["num_classes"] = None
        super().__init__(cfg)
        tricks.parse_policy(cfg["augment"])
        nc = cfg["num_classes"] if cfg["conditioning"] != "none" else None
        self.G = self.build_generator(cfg, nc)
        if cfg["discriminator"]:
            self.D = Discriminator(cfg["discriminator"], self.data_shape,
                                   label_classes=nc if cfg["conditioning"] == "concat" else None,
                                   aux_classes=nc if cfg["conditioning"] == "acgan" else None,
                                   proj_classes=nc if cfg["conditioning"] == "projection" else None,
                                   q_dim=self.q_dim)
        self._last_g = 0.0

    # --- shapes ---------------------------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        shape = self.config.get("data_shape")
        if shape:
            return tuple(int(s) for s in shape)
        s = int(self.config["image_size"])
        return (int(self.config["channels"]), s, s)

    @property
    def num_classes(self) -> int | None:
        return self.config["num_classes"] if self.config["conditioning"] != "none" else None

    @property
    def latent_dim(self) -> int:
        return int(self.config["z_dim"])

    q_dim = 0

    def build_generator(self, cfg: dict[str, Any], num_classes: int | None) -> nn.Module:
        return Generator(cfg["generator"], self.data_shape, self.latent_dim, num_classes)

    # --- configs --------------------------------------------------------------------------------
    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        over = dict(overrides or {})
        cond = over.get("conditioning", cls.LABELLED or "none")
        cfg = merge(cls.DEFAULTS, {"image_size": int(image_size), "channels": int(channels),
                                   "num_classes": int(num_classes) if num_classes and cond != "none" else None,
                                   "conditioning": cond if num_classes else "none"})
        over.pop("conditioning", None)
        return merge(merge(BASE_CONFIG, cfg), over)

    @classmethod
    def training_data(cls, data: str | None, *, split: str = "train", channels: int | None = None,
                      size: int | None = None, config: dict[str, Any] | None = None, **options: Any) -> Any:
        """The images; the family's train options (tricks, loss) become config overrides."""
        over: dict[str, Any] = {}
        for name in list(options):
            key = TRAIN_OPTION_KEYS.get(name)
            if key is None:
                continue
            value = options.pop(name)
            if isinstance(key, tuple):
                over.setdefault(key[0], {})[key[1]] = value
            else:
                over[key] = value
        ds = super().training_data(data, split=split, channels=channels, size=size, config=config, **options)
        if over:
            tricks.parse_policy(over.get("augment"))
            try:
                ds.config_overrides = {**dict(getattr(ds, "config_overrides", None) or {}), **over}
            except AttributeError:
                raise UsageError("this dataset takes no GAN training options") from None
        return ds

    def export(self, state_dict: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The generator only (config ``discriminator: null``)."""
        sd = self.state_dict() if state_dict is None else state_dict
        cfg = dict(self.config)
        cfg["discriminator"] = None
        return cfg, {k: v.detach() for k, v in sd.items() if k.startswith("G.")}

    # --- training -------------------------------------------------------------------------------
    def _require_training(self) -> None:
        if not hasattr(self, "D"):
            raise UsageError(f"this {self.family} checkpoint holds no discriminator (inference only); "
                             "train from a training config or a run's state")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._require_training()
        o = self.config["optimizer"]
        lr_g = float(o["lr"])
        lr_d = float(o.get("lr_d") or lr_g)
        d_params = list(self.D.parameters())
        if o.get("kind", "adam") == "rmsprop":
            return {"G": torch.optim.RMSprop(self.G.parameters(), lr=lr_g),
                    "D": torch.optim.RMSprop(d_params, lr=lr_d)}
        if o.get("kind", "adam") != "adam":
            raise UsageError(f"unknown optimizer {o.get('kind')!r}; use adam or rmsprop")
        betas = tuple(float(b) for b in o.get("betas", (0.5, 0.999)))
        return {"G": torch.optim.Adam(self.G.parameters(), lr=lr_g, betas=betas),
                "D": torch.optim.Adam(d_params, lr=lr_d, betas=betas)}

    def ema_module(self) -> nn.Module:
        return self.G

    def _noise(self, n: int, rng: Any) -> torch.Tensor:
        if self.config["z_dist"] == "uniform":
            return rng.rand(n, int(self.config["z_dim"])) * 2 - 1
        return rng.randn(n, int(self.config["z_dim"]))

    def training_latents(self, n: int, rng: Any) -> tuple[torch.Tensor, Any]:
        """(G's input, what the info loss needs) for a training batch, drawn from ``rng`` (the
        step context: the same global batch of noise on 1 or N ranks)."""
        return self._noise(n, rng), None

    def fakes(self, z: torch.Tensor, labels: torch.Tensor | None, rng: Any) -> torch.Tensor:
        """G's training output for ``z`` (stylegan mixes styles here, with ``rng``)."""
        return self.G(z, labels)

    def info_loss(self, feats: torch.Tensor, codes: Any) -> torch.Tensor | None:
        return None

    def _d_input(self, x: torch.Tensor, step: int, rng: Any) -> torch.Tensor:
        c = self.config
        std = tricks.instance_noise_std(step, float(c["instance_noise"]), int(c["instance_noise_steps"]))
        if std > 0:
            x = x + std * rng.randn_like(x)
        return tricks.diff_augment(x, c["augment"], rng) if c["augment"] else x

    def _d_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels D sees (its one-hot planes or its projection); None for acgan, unconditional."""
        return labels if self.config["conditioning"] in ("concat", "projection") else None

    def _critic(self, labels: torch.Tensor | None):
        return lambda x: self.D(x, labels)

    def train_step(self, batch, step, ctx) -> dict[str, torch.Tensor]:
        self._require_training()
        real, y = batch
        c = self.config
        n, dev = real.shape[0], real.device
        if tuple(real.shape[1:]) != self.data_shape:
            raise UsageError(f"{self.family} was built for data of shape {self.data_shape}, got {tuple(real.shape[1:])}")
        labels = y.long() if self.num_classes else None
        dlab = self._d_labels(labels)
        mode = "vanilla" if c["loss"] == "minimax" else c["loss"]
        # --- D step (fakes with the batch's labels)
        z, codes = self.training_latents(n, ctx)
        with torch.no_grad(), ctx.autocast():
            fake = self.fakes(z, labels, ctx)
        with ctx.autocast():
            real_in = self._d_input(real, step, ctx)
            fake_in = self._d_input(fake.float(), step, ctx)
            hr, hf = self.D.features(real_in, dlab), self.D.features(fake_in, dlab)
            loss_d = tricks.smoothed_d_loss(self.D.score(hr, dlab), self.D.score(hf, dlab),
                                            mode, float(c["label_smoothing"]))
            out: dict[str, torch.Tensor] = {}
            if c["conditioning"] == "acgan" and labels is not None:
                aux = F.cross_entropy(self.D.aux(hr).float(), labels)
                if c["aux_fakes"]:  # the paper: D also learns to give fakes their intended class
                    aux = 0.5 * (aux + F.cross_entropy(self.D.aux(hf).float(), labels))
                aux = float(c["aux_weight"]) * aux
                loss_d = loss_d + aux
                out["aux_D"] = aux
            info = self.info_loss(hf, codes)
            if info is not None:
                loss_d = loss_d + info
                out["info"] = info
        pen = self._penalty(real_in, fake_in, dlab, ctx)
        if pen is not None:
            out[c["penalty"]] = pen
            loss_d = loss_d + float(c["penalty_weight"]) * (0.5 if c["penalty"] == "r1" else 1.0) * pen
        ctx.step(loss_d, "D")
        if c.get("clip"):
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-float(c["clip"]), float(c["clip"]))
        out["D"] = loss_d
        # --- G step every n_critic D steps (fresh z, random labels)
        if (step + 1) % max(1, int(c["n_critic"])) == 0:
            out.update(self._g_step(n, step, ctx))
            self._last_g = float(out["G"].detach())
        else:
            out["G"] = torch.tensor(self._last_g)
        return {k: v.detach().float() for k, v in out.items()}

    def _g_step(self, n: int, step: int, ctx) -> dict[str, torch.Tensor]:
        c = self.config
        glabels = ctx.randint(0, self.num_classes, (n,)) if self.num_classes else None
        z, codes = self.training_latents(n, ctx)
        self.D.requires_grad_(False)
        try:
            with ctx.autocast():
                fake = self.fakes(z, glabels, ctx)
                gdlab = self._d_labels(glabels)
                h = self.D.features(self._d_input(fake.float(), step, ctx), gdlab)
                pred = self.D.score(h, gdlab)
                loss_g = (losses.minimax_g_loss(pred) if c["loss"] == "minimax"
                          else losses.generator_loss(pred, c["loss"]))
                out: dict[str, torch.Tensor] = {}
                if c["conditioning"] == "acgan" and glabels is not None:
                    aux = float(c["aux_weight"]) * F.cross_entropy(self.D.aux(h).float(), glabels)
                    loss_g = loss_g + aux
                    out["aux_G"] = aux
                info = self.info_loss(h, codes)
                if info is not None:
                    loss_g = loss_g + info
            ctx.step(loss_g, "G")
        finally:
            self.D.requires_grad_(True)
        out["G"] = loss_g
        return out

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None, rng: Any
                 ) -> torch.Tensor | None:
        kind = self.config["penalty"]
        critic = self._critic(labels)
        n = real.shape[0]
        if kind == "gp":
            return losses.gradient_penalty(critic, real.float(), fake.float(), alpha=rng.rand(n))
        if kind == "dragan":
            x = real.float()
            perturbed = x + 0.5 * x.std() * rng.rand(*x.shape).to(x)
            return losses.gradient_penalty(critic, perturbed, x, alpha=rng.rand(n))
        if kind == "r1":
            return losses.r1_penalty(critic, real.float())
        return None

    # --- sampling -------------------------------------------------------------------------------
    def prior(self, n: int, generator: Any = None, *, truncation: float | None = None) -> torch.Tensor:
        """z for ``n`` images from one generator, or from one generator per image (per-image noise)."""
        dev = generator_device(generator, self.device)
        shape = (n, int(self.config["z_dim"]))
        if self.config["z_dist"] == "uniform":
            z = rand(shape, generator, dev) * 2 - 1
            return z * float(truncation) if truncation is not None and truncation < 1 else z
        if truncation is not None:
            return per_row(lambda s, g: tricks.truncated_normal(s, float(truncation), g, dev), shape, generator)
        return randn(shape, generator, dev)

    def decode(self, latents: torch.Tensor, *, class_labels: Any = None, **opts: Any) -> torch.Tensor:
        labels = self.class_labels(latents.shape[0], class_labels)
        return self.G(latents.to(self.device), labels)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, class_labels: Any = None,
               truncation: float | None = None, progress: Any = None, **opts: Any) -> torch.Tensor:
        z = self.prior(n, generator, truncation=truncation)
        x = self.decode(z, class_labels=class_labels)
        if progress is not None:
            progress(1, 1)
        return x

    def sampling_settings(self, *, truncation: float | None = None, **opts: Any) -> dict[str, Any]:
        return {} if truncation is None else {"truncation": truncation}

    @torch.inference_mode()
    def interpolate(self, frames: int, generators: list[torch.Generator], *, class_labels: Any = None,
                    arithmetic: str | None = None, progress: Any = None, **opts: Any) -> torch.Tensor:
        """The base slerp path, or with ``arithmetic`` ("1,2,3 - 4,5,6 + 7,8,9") the DCGAN
        paper's vector arithmetic: one row of each seed group's mean latent decoded, then the
        result of the +/- combination of the means."""
        if arithmetic:
            return self.latent_arithmetic(arithmetic, class_labels=class_labels)
        return super().interpolate(frames, generators, class_labels=class_labels, **opts)

    def latent_arithmetic(self, expr: str, *, class_labels: Any = None) -> torch.Tensor:
        terms = parse_arithmetic(expr)
        means = []
        for _, seeds in terms:
            zs = [self.prior(1, torch.Generator(device=self.device).manual_seed(s)) for s in seeds]
            means.append(torch.cat(zs).mean(0, keepdim=True))
        result = sum(sign * m for (sign, _), m in zip(terms, means))
        z = torch.cat(means + [result])
        if self.num_classes and class_labels is None:
            class_labels = 0
        return self.decode(z, class_labels=self.class_labels(z.shape[0], class_labels))


# --- the families ---------------------------------------------------------------------------------
_MLP_G = {"arch": "mlp", "width": 256, "layers": 2, "norm": "none", "init": "default"}
_MLP_D = {"arch": "mlp", "width": 256, "layers": 2, "norm": "none", "dropout": 0.0, "init": "default"}


class GAN(AdversarialModel):
    """Goodfellow et al. 2014: MLPs, non-saturating G loss (``loss: minimax`` for the original)."""
    family = "gan"
    DEFAULTS = {"generator": _MLP_G, "discriminator": _MLP_D, "loss": "vanilla"}


class DCGAN(AdversarialModel):
    """Radford et al. 2015: strided convs, BatchNorm, ReLU/LeakyReLU, tanh; Adam 2e-4 (0.5, 0.999)."""
    family = "dcgan"


class CGAN(AdversarialModel):
    """Mirza & Osindero 2014: label embedding in G, one-hot label in D (DCGAN nets)."""
    family = "cgan"
    LABELLED = "concat"


class ACGAN(AdversarialModel):
    """Odena et al. 2017: G conditioned on the label, D with a source and a class head.

    ``aux_fakes: false`` trains D's class head on real images only (G's step is unchanged): the
    head then stays a classifier of the data, and G cannot pass off one class's images as another
    by teaching D to accept them (the paper trains it on fakes too, the default)."""
    family = "acgan"
    LABELLED = "acgan"


class WGAN(AdversarialModel):
    """Arjovsky et al. 2017: critic without BatchNorm, weight clipping 0.01, RMSprop 5e-5, n_critic 5."""
    family = "wgan"
    DEFAULTS = {"loss": "wgan", "clip": 0.01, "n_critic": 5, "discriminator": {"norm": "none"},
                "optimizer": {"kind": "rmsprop", "lr": 5e-5}}


class WGANGP(AdversarialModel):
    """Gulrajani et al. 2017: gradient penalty (lambda 10), n_critic 5, Adam 1e-4 (0, 0.9), no norm in D."""
    family = "wgan-gp"
    DEFAULTS = {"loss": "wgan", "penalty": "gp", "penalty_weight": 10.0, "n_critic": 5,
                "discriminator": {"norm": "none"}, "optimizer": {"lr": 1e-4, "betas": [0.0, 0.9]}}


class LSGAN(AdversarialModel):
    """Mao et al. 2017: least squares, targets a=0, b=c=1."""
    family = "lsgan"
    DEFAULTS = {"loss": "lsgan"}


class SNGAN(AdversarialModel):
    """Miyato et al. 2018: spectral norm on every D layer, hinge loss, Adam 2e-4 (0, 0.9), n_dis 5."""
    family = "sngan"
    DEFAULTS = {"loss": "hinge", "n_critic": 5, "discriminator": {"norm": "none", "spectral_norm": True},
                "optimizer": {"lr": 2e-4, "betas": [0.0, 0.9]}}


class DRAGAN(AdversarialModel):
    """Kodali et al. 2017: vanilla loss + gradient penalty around perturbed reals, lambda 10, Adam 1e-4 (0.5, 0.9)."""
    family = "dragan"
    DEFAULTS = {"penalty": "dragan", "penalty_weight": 10.0, "discriminator": {"norm": "none"},
                "optimizer": {"lr": 1e-4, "betas": [0.5, 0.9]}}
