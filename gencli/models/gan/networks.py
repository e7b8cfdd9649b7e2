"""Generators and discriminators of the adversarial families, built from small config dicts.

Two architectures, each with optional class conditioning:

- ``mlp`` (Goodfellow et al. 2014): fully connected layers; ReLU in G, LeakyReLU 0.2 (and
  optional dropout) in D. Works on any data shape (images are flattened; the 2-D toy data of
  :mod:`.toy` is a shape ``[2]``).
- ``conv`` (DCGAN, Radford et al. 2015): G projects z to a ``base x base`` map (a matrix multiply,
  as in the paper) and upsamples with strided transposed convolutions (4x4, stride 2), BatchNorm
  and ReLU, then a 3x3 convolution and tanh; D mirrors it with strided 4x4 convolutions and
  LeakyReLU 0.2, no norm on its input layer, no pooling, and a linear head. ``base`` is what is
  left of the image size after halving it while even and above 7 (28 -> 7, 32 -> 4, 64 -> 4).

Conditioning (``num_classes`` set): G concatenates a learned label embedding to z (cGAN, ACGAN);
D (cGAN) sees the label either as one-hot planes next to the image (conv) or concatenated to
the flattened input (mlp) (``label_classes``), or through a projection (Miyato & Koyama 2018,
``proj_classes``): the score adds the inner product of a learned label embedding with D's
features, ``adv(h) + <embed(y), h>``. D exposes its trunk (:meth:`Discriminator.features`),
:meth:`Discriminator.score` and heads: ``adv`` (one logit / critic score), ``aux`` (ACGAN class
logits), ``q`` (InfoGAN's code posterior). ``minibatch_std: G`` (conv D) appends the minibatch
standard deviation over groups of G samples as one more feature map (:class:`MinibatchStd`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import UsageError
from gencli.models.gan.norms import init_weights

ARCHS = ("mlp", "conv")
D_NORMS = ("batch", "layer", "none")


def conv_layout(size: int) -> tuple[int, int]:
    """(base, k): the image size is base * 2**k, halving while even and above 7."""
    if size < 2:
        raise UsageError(f"image size {size} is too small for a convolutional GAN")
    base, k = int(size), 0
    while base % 2 == 0 and base > 7:
        base //= 2
        k += 1
    if k == 0:
        raise UsageError(f"image size {size} cannot be reached by doubling a small map; use 8, 28, 32 or 64")
    return base, k


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise UsageError(f"unknown GAN architecture {arch!r}; use one of {', '.join(ARCHS)}")
    return arch


def _d_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise UsageError(f"unknown discriminator norm {norm!r}; use one of {', '.join(D_NORMS)}")


class Generator(nn.Module):
    """z (+ label embedding) -> data of ``out_shape``."""

    def __init__(self, cfg: dict[str, Any], out_shape: tuple[int, ...], in_dim: int,
                 num_classes: int | None = None):
        super().__init__()
        self.arch = _check_arch(cfg.get("arch", "conv"))
        self.out_shape = tuple(int(s) for s in out_shape)
        width = int(cfg.get("width", 64))
        bn = cfg.get("norm", "batch") == "batch"
        embed = int(cfg.get("embed_dim", 50))
        self.out_act = cfg.get("out", "tanh")
        if num_classes:
            self.embed = nn.Embedding(int(num_classes), embed)
            in_dim += embed
        if self.arch == "mlp":
            layers: list[nn.Module] = []
            d = in_dim
            for _ in range(int(cfg.get("layers", 2))):
                layers += [nn.Linear(d, width)] + ([nn.BatchNorm1d(width)] if bn else []) + [nn.ReLU(True)]
                d = width
            layers.append(nn.Linear(d, math.prod(self.out_shape)))
            self.net = nn.Sequential(*layers)
        else:
            if len(self.out_shape) != 3:
                raise UsageError("the conv generator makes images: out_shape must be (C, H, W)")
            c_out, size = self.out_shape[0], self.out_shape[1]
            self.base, k = conv_layout(size)
            ch = width * 2 ** k
            self.ch0 = ch
            self.fc = nn.Linear(in_dim, ch * self.base * self.base, bias=not bn)
            self.bn0 = nn.BatchNorm1d(ch * self.base * self.base) if bn else nn.Identity()
            blocks: list[nn.Module] = []
            for _ in range(k):
                blocks += [nn.ConvTranspose2d(ch, max(ch // 2, 8), 4, 2, 1, bias=not bn)]
                ch = max(ch // 2, 8)
                blocks += [nn.BatchNorm2d(ch) if bn else nn.Identity(), nn.ReLU(True)]
            blocks.append(nn.Conv2d(ch, c_out, 3, 1, 1))
            self.net = nn.Sequential(*blocks)
        if cfg.get("init", "normal") == "normal":
            init_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if hasattr(self, "embed"):
            if labels is None:
                raise UsageError("this generator is class-conditional: it needs class labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        if self.arch == "mlp":
            x = self.net(z).view(z.shape[0], *self.out_shape)
        else:
            h = F.relu(self.bn0(self.fc(z)))
            x = self.net(h.view(z.shape[0], self.ch0, self.base, self.base))
        return torch.tanh(x) if self.out_act == "tanh" else x


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN/StyleGAN): one extra feature map,
    the std over groups of ``group`` samples averaged over channels and pixels, so D can see a
    batch's lack of variety (mode collapse) that single samples do not show. A batch that does not
    split into groups of ``group`` uses the largest group size that divides it."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(n, self.group) or 1
        y = x.float().view(g, n // g, c, h, w)
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (n // g,)
        feat = std.repeat(g)[:, None, None, None].expand(n, 1, h, w).to(x.dtype)
        return torch.cat([x, feat], dim=1)


class Discriminator(nn.Module):
    """Data (+ label) -> trunk features; heads ``adv`` (1 score), ``aux`` (classes), ``q`` (codes)."""

    def __init__(self, cfg: dict[str, Any], in_shape: tuple[int, ...], *, label_classes: int | None = None,
                 aux_classes: int | None = None, proj_classes: int | None = None, q_dim: int = 0):
        super().__init__()
        self.arch = _check_arch(cfg.get("arch", "conv"))
        self.in_shape = tuple(int(s) for s in in_shape)
        self.label_classes = int(label_classes or 0)
        width = int(cfg.get("width", 64))
        norm = cfg.get("norm", "batch")
        drop = float(cfg.get("dropout", 0.0))
        if self.arch == "mlp":
            layers: list[nn.Module] = []
            d = math.prod(self.in_shape) + self.label_classes
            for _ in range(int(cfg.get("layers", 2))):
                layers += [nn.Linear(d, width), nn.LeakyReLU(0.2, True)] + ([nn.Dropout(drop)] if drop else [])
                d = width
            self.trunk = nn.Sequential(*layers)
            feat = d
        else:
            c_in, size = self.in_shape[0], self.in_shape[1]
            base, k = conv_layout(size)
            layers = []
            ch_in, ch = c_in + self.label_classes, width
            for i in range(k):
                layers += [nn.Conv2d(ch_in, ch, 4, 2, 1, bias=i == 0 or norm != "batch")]
                layers += ([] if i == 0 else [_d_norm(norm, ch)]) + [nn.LeakyReLU(0.2, True)]
                layers += [nn.Dropout(drop)] if drop else []
                ch_in, ch = ch, ch * 2
            group = int(cfg.get("minibatch_std") or 0)
            if group:
                layers.append(MinibatchStd(group))
            layers.append(nn.Flatten())
            self.trunk = nn.Sequential(*layers)
            feat = (ch_in + (1 if group else 0)) * base * base
        self.adv = nn.Linear(feat, 1)
        if aux_classes:
            self.aux = nn.Linear(feat, int(aux_classes))
        if proj_classes:  # initialised like the linear head it adds to
            self.proj = nn.Embedding(int(proj_classes), feat)
            nn.init.normal_(self.proj.weight, 0.0, 0.02 if cfg.get("init", "normal") == "normal" else 1 / math.sqrt(feat))
        if q_dim:
            self.q = nn.Sequential(nn.Linear(feat, 128), nn.LeakyReLU(0.2, True), nn.Linear(128, int(q_dim)))
        if cfg.get("init", "normal") == "normal":
            init_weights(self)
        if cfg.get("spectral_norm"):
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    torch.nn.utils.parametrizations.spectral_norm(m)

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The trunk's features (N, F); ``labels`` are used only by the one-hot-plane conditioning."""
        if self.label_classes:
            if labels is None:
                raise UsageError("this discriminator is class-conditional: it needs class labels")
            onehot = F.one_hot(labels, self.label_classes).to(x.dtype)
            if self.arch == "conv":
                x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
            else:
                x = torch.cat([x.flatten(1), onehot], dim=1)
        if self.arch == "mlp":
            x = x.flatten(1)
        return self.trunk(x)

    def score(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial score (N,) of trunk features ``h`` (plus the label projection)."""
        out = self.adv(h).squeeze(1)
        if hasattr(self, "proj"):
            if labels is None:
                raise UsageError("this discriminator is class-conditional: it needs class labels")
            out = out + (self.proj(labels).to(h.dtype) * h).sum(1)
        return out

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial score, one per sample (N,)."""
        return self.score(self.features(x, labels), labels)
