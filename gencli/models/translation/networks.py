"""The networks of the official pytorch-CycleGAN-and-pix2pix (Zhu et al. 2017, Isola et al. 2017).

Written from the published architecture description so that the official ``.pth`` state dicts
load key-for-key (see ``gencli.convert.official_cyclegan``):

- :class:`ResnetGenerator` (Johnson et al.): reflect-pad 3, conv7 -> ngf, two stride-2 conv3
  downsamplings, ``n_blocks`` residual blocks at ngf*4, two stride-2 transposed conv3
  upsamplings, reflect-pad 3, conv7 -> output, tanh. Everything lives in one ``nn.Sequential``
  called ``model`` and each block keeps its layers in ``conv_block`` (so the keys are
  ``model.1``, ``model.4``, ``model.7``, ``model.10.conv_block.1`` ...). Convolutions carry a
  bias only with instance norm (whose layers have no parameters).
- :class:`UnetGenerator`: ``num_downs`` nested skip blocks (stride-2 conv4 down with LeakyReLU
  0.2, stride-2 transposed conv4 up with ReLU, outermost without norm and ending in tanh); the
  ``num_downs - 5`` blocks right above the innermost one, all at ngf*8, end in Dropout(0.5) when
  enabled. unet_256 = 8 downs, unet_128 = 7. As in the official code (whose LeakyReLU works in
  place on the block input), the skip connections carry LeakyReLU(x).

The discriminators (PatchGAN, pixelGAN), the norm layers and the official weight init are shared
with the GAN family and live in :mod:`gencli.models.gan` (``discriminators``, ``norms``).

Two deviations from plain ``torch.nn`` layers, both without effect on the state-dict keys:
:class:`~gencli.models.gan.norms.BatchNorm2d` can normalise every image with its own
statistics at inference (what the official pix2pix ``test.py`` effectively does: it runs the
network in train mode with batch size 1), and :class:`Dropout` can stay active at inference (pix2pix's test-time noise), drawing
its masks from a ``torch.Generator`` so the result is reproducible.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gencli.errors import UsageError
from gencli.kernels.fast_path import (FastInference, FastState, conv_fast, conv_transpose_fast, instance_norm_fast,
                                      padded_conv_fast)
from gencli.models.gan.discriminators import expand_alias
from gencli.models.gan.norms import BatchNorm2d, check_norm, norm_layer

PADDINGS = ("reflect", "replicate", "zero")
GENERATOR_ARCHS = ("resnet", "unet")

#: The official ``--netG`` names and what they mean here.
NETG_ALIASES: dict[str, dict[str, Any]] = {
    "resnet_9blocks": {"arch": "resnet", "n_blocks": 9},
    "resnet_6blocks": {"arch": "resnet", "n_blocks": 6},
    "unet_256": {"arch": "unet", "num_downs": 8},
    "unet_128": {"arch": "unet", "num_downs": 7},
}


# --------------------------------------------------------------------------------------------
# Layers


class Dropout(nn.Dropout):
    """``nn.Dropout`` that can stay active in eval mode, drawing masks from ``generator``."""

    at_inference: bool = False
    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        if not self.at_inference or self.p == 0.0:
            return x
        g = self.generator
        dev = g.device if g is not None else x.device
        keep = torch.rand(x.shape, generator=g, device=dev).to(x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


def _pad(padding_type: str, amount: int) -> tuple[list[nn.Module], int]:
    """(padding modules, conv padding) for ``padding_type``."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(amount)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(amount)], 0
    if padding_type == "zero":
        return [], amount
    raise UsageError(f"unknown padding {padding_type!r}; use one of {', '.join(PADDINGS)}")


def run_fast(state: FastState, layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The layers of an ``nn.Sequential`` on the inference fast path (see
    :mod:`gencli.kernels.fast_path`): padding + 3x3 conv as Winograd with the padding in its tile
    buffer, other convolutions on NHWC memory, instance norm (+ ReLU) on NHWC; anything else as is."""
    i = 0
    while i < len(layers):
        m, nxt = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(m, (nn.ReflectionPad2d, nn.ReplicationPad2d)) and isinstance(nxt, nn.Conv2d):
            x, i = padded_conv_fast(state, m, nxt, x), i + 2
        elif isinstance(m, nn.Conv2d):
            x, i = conv_fast(state, m, x), i + 1
        elif isinstance(m, nn.ConvTranspose2d):
            x, i = conv_transpose_fast(state, m, x), i + 1
        elif isinstance(m, nn.InstanceNorm2d):
            relu = isinstance(nxt, nn.ReLU)
            x, i = instance_norm_fast(m, x, relu=relu), i + 1 + relu
        elif isinstance(m, ResnetBlock):
            x, i = m._forward_fast(state, x), i + 1
        else:
            x, i = m(x), i + 1
    return x


# --------------------------------------------------------------------------------------------
# Generators


class ResnetBlock(nn.Module):
    """x + [pad, conv3, norm, ReLU, (Dropout 0.5), pad, conv3, norm](x)."""

    def __init__(self, dim: int, padding_type: str, norm: str, dropout: bool, bias: bool):
        super().__init__()
        layers: list[nn.Module] = []
        pads, p = _pad(padding_type, 1)
        layers += [*pads, nn.Conv2d(dim, dim, 3, padding=p, bias=bias), norm_layer(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(Dropout(0.5))
        pads, p = _pad(padding_type, 1)
        layers += [*pads, nn.Conv2d(dim, dim, 3, padding=p, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)

    def _forward_fast(self, state: FastState, x: torch.Tensor) -> torch.Tensor:
        return run_fast(state, list(self.conv_block), x).add_(x)


class ResnetGenerator(FastInference, nn.Module):
    """The official CycleGAN generator (resnet_9blocks / resnet_6blocks); sides must be multiples of 4.

    ``with g.fast_inference(): g(x)`` runs the inference fast path (:func:`run_fast`): on the
    CPU in fp32 the residual blocks' convolutions are Winograd F(4x4, 3x3) (outputs within ~1e-4
    of the plain forward) and everything stays NHWC."""

    n_downsampling = 2

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "instance",
                 dropout: bool = False, n_blocks: int = 9, padding_type: str = "reflect"):
        super().__init__()
        if n_blocks < 0:
            raise UsageError(f"n_blocks must be >= 0, got {n_blocks}")
        bias = check_norm(norm) == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(self.n_downsampling):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), norm_layer(norm, c * 2), nn.ReLU(True)]
        c = ngf * 2 ** self.n_downsampling
        layers += [ResnetBlock(c, padding_type, norm, dropout, bias) for _ in range(n_blocks)]
        for i in range(self.n_downsampling):
            c = ngf * 2 ** (self.n_downsampling - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.input_nc, self.output_nc = input_nc, output_nc

    @property
    def divisor(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_fast():
            return run_fast(self._fast, list(self.model), x).contiguous()
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up; concatenated with its input (but outermost)."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = check_norm(norm) == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), downconv, nn.ReLU(True), upconv, norm_layer(norm, outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), downconv, norm_layer(norm, inner_nc), submodule,
                      nn.ReLU(True), upconv, norm_layer(norm, outer_nc)]
            if dropout:
                layers.append(Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The official block starts with an in-place LeakyReLU, which rewrites its input before the
        # concatenation: the skip connection carries LeakyReLU(x), not x. Reproduced explicitly.
        x = self.model[0](x)
        h = x
        for layer in list(self.model)[1:]:
            h = layer(h)
        return torch.cat([x, h], 1)


class UnetGenerator(nn.Module):
    """The official pix2pix U-Net (unet_256: num_downs 8; unet_128: 7); sides must be multiples of 2**num_downs."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        if num_downs < 5:
            raise UsageError(f"a U-Net generator needs num_downs >= 5, got {num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, norm=norm)
        self.num_downs = num_downs
        self.input_nc, self.output_nc = input_nc, output_nc

    @property
    def divisor(self) -> int:
        return 2 ** self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------
# Building from configs, inference switches


def generator_config(cfg: dict[str, Any] | str) -> dict[str, Any]:
    """Normalise a generator config (an official ``--netG`` name or a dict) with every field set."""
    cfg = expand_alias(cfg, NETG_ALIASES, "generator")
    arch = cfg.get("arch", "resnet")
    if arch not in GENERATOR_ARCHS:
        raise UsageError(f"unknown generator architecture {arch!r}; use resnet or unet")
    out: dict[str, Any] = {"arch": arch, "input_nc": int(cfg.get("input_nc", 3)),
                           "output_nc": int(cfg.get("output_nc", 3)), "ngf": int(cfg.get("ngf", 64)),
                           "norm": check_norm(cfg.get("norm", "instance" if arch == "resnet" else "batch")),
                           "dropout": bool(cfg.get("dropout", False))}
    if arch == "resnet":
        out["n_blocks"] = int(cfg.get("n_blocks", 9))
        out["padding_type"] = cfg.get("padding_type", "reflect")
        if out["padding_type"] not in PADDINGS:
            raise UsageError(f"unknown padding {out['padding_type']!r}; use one of {', '.join(PADDINGS)}")
    else:
        out["num_downs"] = int(cfg.get("num_downs", 8))
    return out


def build_generator(cfg: dict[str, Any] | str) -> nn.Module:
    c = generator_config(cfg)
    if c["arch"] == "resnet":
        return ResnetGenerator(c["input_nc"], c["output_nc"], c["ngf"], c["norm"], c["dropout"],
                               c["n_blocks"], c["padding_type"])
    return UnetGenerator(c["input_nc"], c["output_nc"], c["num_downs"], c["ngf"], c["norm"], c["dropout"])


def set_inference_mode(net: nn.Module, *, per_image_norm: bool = False, dropout: bool = False,
                       generator: torch.Generator | None = None) -> None:
    """Choose how ``net`` behaves in eval mode: BatchNorm statistics and test-time dropout."""
    for m in net.modules():
        if isinstance(m, BatchNorm2d):
            m.per_image = per_image_norm
        elif isinstance(m, Dropout):
            m.at_inference = dropout
            m.generator = generator


def generator_divisor(net: nn.Module) -> int:
    return int(getattr(net, "divisor", 1))
