"""The discriminators of the official pytorch-CycleGAN-and-pix2pix (Isola et al. 2017), with its
layout, so that their state-dict keys are the official ones:

- :class:`NLayerDiscriminator` (PatchGAN; ``n_layers=3`` gives the 70x70 receptive field): conv4
  s2 + LeakyReLU 0.2, (n_layers - 1) x [conv4 s2, norm, LeakyReLU], conv4 s1, norm, LeakyReLU,
  conv4 s1 -> 1 logit per patch, all in one ``nn.Sequential`` called ``model`` (keys
  ``model.0.weight``, ``model.2.weight``, ...). Convolutions before a norm carry a bias only
  with instance norm.
- :class:`PixelDiscriminator` (pixelGAN, 1x1 convolutions: one logit per pixel), in ``net``.

Configs take the official ``--netD`` names (``basic``, ``pixel``) or dicts
(:func:`discriminator_config`); :func:`build_discriminator` builds from either.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gencli.errors import UsageError
from gencli.models.gan.norms import check_norm, norm_layer

DISCRIMINATOR_ARCHS = ("n_layers", "pixel")

#: The official ``--netD`` names and what they mean here.
NETD_ALIASES: dict[str, dict[str, Any]] = {
    "basic": {"arch": "n_layers", "n_layers": 3},
    "pixel": {"arch": "pixel"},
}


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv4 s2 + LReLU, (n_layers-1) x [conv4 s2, norm, LReLU], conv4 s1, norm, LReLU, conv4 s1 -> 1."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = check_norm(norm) == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
                   norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (pixelGAN): conv1 -> ndf, LReLU, conv1 -> 2ndf, norm, LReLU, conv1 -> 1."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = check_norm(norm) == "instance"
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(norm, ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def expand_alias(cfg: dict[str, Any] | str, aliases: dict[str, dict[str, Any]], what: str) -> dict[str, Any]:
    """An official name (``"basic"``, ``"resnet_9blocks"``) or a dict whose ``net`` is one, as the
    fields it stands for, overridden by the dict's other fields (also used for ``--netG``)."""
    if isinstance(cfg, str):
        cfg = {"net": cfg}
    cfg = dict(cfg)
    net = cfg.pop("net", None)
    if net is not None:
        if net not in aliases:
            raise UsageError(f"unknown {what} {net!r}; use one of {', '.join(aliases)}")
        cfg = {**aliases[net], **cfg}
    return cfg


def discriminator_config(cfg: dict[str, Any] | str) -> dict[str, Any]:
    """Normalise a discriminator config (an official ``--netD`` name or a dict) with every field set."""
    cfg = expand_alias(cfg, NETD_ALIASES, "discriminator")
    arch = cfg.get("arch", "n_layers")
    if arch not in DISCRIMINATOR_ARCHS:
        raise UsageError(f"unknown discriminator architecture {arch!r}; use n_layers or pixel")
    out = {"arch": arch, "input_nc": int(cfg.get("input_nc", 3)), "ndf": int(cfg.get("ndf", 64)),
           "norm": check_norm(cfg.get("norm", "batch"))}
    if arch == "n_layers":
        out["n_layers"] = int(cfg.get("n_layers", 3))
    return out


def build_discriminator(cfg: dict[str, Any] | str) -> nn.Module:
    c = discriminator_config(cfg)
    if c["arch"] == "n_layers":
        return NLayerDiscriminator(c["input_nc"], c["ndf"], c["n_layers"], c["norm"])
    return PixelDiscriminator(c["input_nc"], c["ndf"], c["norm"])
