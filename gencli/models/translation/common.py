"""What CycleGAN and pix2pix share: inference (channels, resize, pad/crop, tiles, test-time
behaviour), configs and the linear learning-rate decay. The GAN losses, discriminators and image
pool are :mod:`gencli.models.gan`'s."""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from gencli.errors import UsageError
from gencli.models.configs import merge  # noqa: F401 (the translation modules import it from here)
from gencli.models.base import GenerativeModel, OnnxGraph, Progress
from gencli.models.gan.discriminators import discriminator_config
from gencli.models.translation.networks import generator_config, set_inference_mode
from gencli.models.translation.tiling import run_padded, run_tiled

DIRECTIONS = ("AtoB", "BtoA")

#: TrainConfig values the official recipes use (the CLI applies them unless the user overrides):
#: batch size 1, no gradient clipping, no EMA of the generators.
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 1, "grad_clip": None, "ema_decay": None}


def linear_decay(step: int, total: int, start: float) -> float:
    """1 for the first ``start`` fraction of the steps, then linearly towards 0 (the official 'linear' policy)."""
    first = int(total * start)
    if step < first:
        return 1.0
    return max(0.0, 1.0 - (step - first) / float(total - first + 1))


def _inference_defaults(config: dict[str, Any]) -> dict[str, bool]:
    inf = config.get("inference") or {}
    return {"per_image_norm": bool(inf.get("per_image_norm", False)), "dropout": bool(inf.get("dropout", False))}


class TranslationModel(GenerativeModel):
    """Base of the image-to-image families: one generator per direction."""

    family: ClassVar[str] = "translation"
    train_defaults: ClassVar[dict[str, Any]] = TRAIN_DEFAULTS

    # --- what subclasses provide ---------------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        raise NotImplementedError

    def generator_for(self, direction: str | None) -> tuple[nn.Module, int, int]:
        """(generator, input channels, output channels) for ``direction`` (None: the default)."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    @property
    def output_channels(self) -> int:
        return self.generator_for(None)[2]

    @staticmethod
    def _min_side(net: nn.Module) -> int:
        # a ResnetGenerator's blocks reflect-pad its 4x-downsampled features by 1: they need >= 2 px
        return 2 * int(net.divisor) if hasattr(net, "n_downsampling") else 1

    def run_generator(self, net: nn.Module, x: torch.Tensor, tile: int | None = None,
                      overlap: int | None = None, progress: Progress | None = None) -> torch.Tensor:
        """``net(x)`` at any size (reflect pad + crop), optionally in blended tiles."""
        multiple, minimum = int(net.divisor), self._min_side(net)
        if tile:
            return run_tiled(net, x, tile, multiple, overlap, minimum, progress)
        if x.shape[-1] % multiple == 0 and x.shape[-2] % multiple == 0 and min(x.shape[-2:]) >= minimum:
            return net(x)
        return run_padded(net, x, multiple, minimum)

    def _direction_label(self, direction: str) -> str:
        dom = self.config.get("domains") or {}
        a, b = dom.get("A"), dom.get("B")
        if a and b:
            return f"{a} -> {b}" if direction == "AtoB" else f"{b} -> {a}"
        return direction

    @torch.inference_mode()
    def translate(self, images: torch.Tensor, *, direction: str | None = None, size: Any = None,
                  tile: int | None = None, overlap: int | None = None,
                  generator: torch.Generator | None = None, dropout: bool | None = None,
                  per_image_norm: bool | None = None, progress: Progress | None = None,
                  fast: bool = True, **_: Any) -> torch.Tensor:
        """Translate NCHW (or CHW) images in [-1, 1]; the output has the input's size.

        ``direction``: ``AtoB`` (default) or ``BtoA`` where the checkpoint holds both generators.
        ``size``: resize the inputs first (int or (h, w)), like the official test.py (256); the
        output then has that size. ``tile``: run in overlapping tiles of that side (a multiple
        of the generator's divisor) blended over ``overlap`` pixels (default tile/4).
        Inputs with another channel count than the generator takes are converted (grey <-> RGB)
        with a warning. ``dropout``/``per_image_norm`` override the checkpoint's test-time
        behaviour (official pix2pix: both on); test-time dropout draws from ``generator``
        (default: seeded with 0, so results are reproducible). ``fast``: the generator's inference
        fast path where it has one (the ResNet generator: Winograd + NHWC on the CPU, ~1e-4 from
        the plain forward); False runs the plain ``nn.Module`` forward.
        """
        from gencli.io.images import resize, to_channels

        net, in_nc, _ = self.generator_for(direction)
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4:
            raise UsageError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        x = x.to(self.device, torch.float32)
        c = x.shape[1]
        if c != in_nc:
            what = {1: "greyscale", 3: "RGB"}
            warnings.warn(f"{self.family} ({self._direction_label(direction or self.directions[0])}) takes "
                          f"{what.get(in_nc, f'{in_nc}-channel')} images: converting the "
                          f"{what.get(c, f'{c}-channel')} input"
                          + (" (ITU-R 601 luma)" if in_nc == 1 else " (grey copied to R, G and B)"),
                          stacklevel=2)
            x = to_channels(x, in_nc)
        if size is not None:
            x = resize(x, size)
        d = _inference_defaults(self.config)
        use_dropout = d["dropout"] if dropout is None else bool(dropout)
        per_image = d["per_image_norm"] if per_image_norm is None else bool(per_image_norm)
        if use_dropout and generator is None:
            generator = torch.Generator(device=self.device).manual_seed(0)
        was_training = net.training
        net.eval()
        set_inference_mode(net, per_image_norm=per_image, dropout=use_dropout, generator=generator)
        fast_ctx = net.fast_inference(enabled=fast, keep=True) if hasattr(net, "fast_inference") else contextlib.nullcontext()
        try:
            with fast_ctx:
                y = self.run_generator(net, x, tile, overlap, progress)
        finally:
            set_inference_mode(net)
            net.train(was_training)
        return y.float().clamp_(-1.0, 1.0)

    def export_onnx(self, *, direction: str | None = None, **_: Any) -> OnnxGraph:
        """The generator of ``direction`` (default: the first): ``input`` (N, C, H, W) float32 in
        [-1, 1] -> ``output`` (N, C', H, W), with batch, height and width dynamic (H and W must be
        multiples of the generator's divisor, in the metadata; gencli translate pads to them).
        Batch norm behaves as the checkpoint's test-time setting says (running or per-image
        statistics); test-time dropout (official pix2pix) cannot be seeded in ONNX and is left out."""
        import json

        from gencli import __version__

        direction = self._check_direction(direction)
        net, in_nc, out_nc = self.generator_for(direction)
        net = copy.deepcopy(net).to("cpu", torch.float32).eval().requires_grad_(False)
        d = _inference_defaults(self.config)
        set_inference_mode(net, per_image_norm=d["per_image_norm"], dropout=False)
        multiple = int(net.divisor)
        side = -(-max(multiple, self._min_side(net), 8) // multiple) * multiple
        x = torch.randn(2, in_nc, side, side, generator=torch.Generator().manual_seed(0))
        notes = ()
        if d["dropout"]:
            notes = ("this checkpoint applies dropout at test time (as the official pix2pix test.py); the "
                     "exported graph does not (ONNX dropout cannot be seeded), so its outputs are those of a "
                     "dropout-free translate",)
        meta = {"gencli_version": __version__, "gencli_family": self.family, "direction": direction,
                "domains": self._direction_label(direction), "generator": json.dumps(self.config["generator"]),
                "input_channels": str(in_nc), "output_channels": str(out_nc), "size_multiple": str(multiple),
                "min_side": str(self._min_side(net)), "per_image_norm": str(d["per_image_norm"]).lower()}
        axes = {0: "batch", 2: "height", 3: "width"}
        return OnnxGraph(net, (x,), ("input",), ("output",), {"input": axes, "output": axes}, meta, notes)

    def _check_direction(self, direction: str | None) -> str:
        direction = direction or self.directions[0]
        if direction not in DIRECTIONS:
            raise UsageError(f"--direction must be AtoB or BtoA, got {direction!r}")
        if direction not in self.directions:
            have = self.directions[0]
            name = self.config.get("name") or "this checkpoint"
            raise UsageError(f"{name} holds only the {have} generator ({self._direction_label(have)}); "
                             f"{direction} needs a checkpoint for the other direction"
                             + (f" such as {self.config['reverse_name']}" if self.config.get("reverse_name") else ""))
        return direction

    # --- training helpers ---------------------------------------------------------------------
    def lr_factor(self, step: int, total_steps: int) -> float:
        return linear_decay(step, total_steps, float(self.config.get("lr_decay_start", 0.5)))

    def _adam(self, params) -> torch.optim.Optimizer:
        o = self.config.get("optimizer") or {}
        return torch.optim.Adam(params, lr=float(o.get("lr", 2e-4)), betas=tuple(o.get("betas", (0.5, 0.999))))

    @staticmethod
    def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
        for n in nets:
            n.requires_grad_(flag)


def merged_config(defaults: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` over ``defaults``, with the generator and discriminator configs completed and
    without channel counts (those are the model's); no discriminator (None) means inference only."""
    cfg = merge(defaults, config)
    cfg["generator"] = normalized_generator(cfg["generator"])
    if cfg.get("discriminator"):
        d = discriminator_config(cfg["discriminator"])
        d.pop("input_nc", None)
        cfg["discriminator"] = d
    else:
        cfg["discriminator"] = None
    return cfg


def normalized_generator(cfg: dict[str, Any]) -> dict[str, Any]:
    """A generator config without channel counts (those are the model's)."""
    g = generator_config(cfg)
    g.pop("input_nc", None)
    g.pop("output_nc", None)
    return g


def unet_depth_for(image_size: int) -> int:
    """The U-Net depth whose bottleneck is 1x1 at ``image_size`` (at least the official minimum of 5)."""
    depth = 5
    while 2 ** (depth + 1) <= image_size:
        depth += 1
    return depth
