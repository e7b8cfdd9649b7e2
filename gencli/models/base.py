"""The contract every model family implements (DESIGN.md, "The model contract").

A family is an ``nn.Module`` subclass of :class:`GenerativeModel`. It is rebuilt from a plain
``config`` dict (stored in checkpoint metadata), trains through :meth:`train_step` with optimisers
it declares in :meth:`configure_optimizers`, and implements only the capabilities that make sense
for it (its spec.py declares which; the contract suite checks the two agree). Images cross this
boundary as float tensors in [-1, 1], NCHW. Models never parse arguments, print or touch files:
progress is reported through an optional callback, and errors are raised in model terms
(``UsageError`` for a request that makes no sense for this model, ``InputError`` for bad data).

What the commands rely on, so they never ask which family they hold:

- ``prior(n, generator)`` + ``decode(latents)``: the latent a sample starts from and its image.
  :meth:`interpolate` is generic on top of them (slerp in the prior, decoded by the family).
- ``generate(n, seed)`` / ``iter_generate``: batched, seeded sampling (batch b uses seed + b), the
  one code path behind `gencli sample`, `evaluate --model` and the Python API.
- ``export()``: what a checkpoint ships (e.g. the generators, not the discriminators).
- ``config_for_data`` / ``training_data``: how `gencli train` builds a config and a dataset.
- ``export_onnx()``: the network to write as an ONNX graph (:class:`OnnxGraph`); gencli.exporting
  writes it (``export()`` above is the checkpoint's content, another thing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn

from gencli.errors import UsageError
from gencli.models.spec import CAPABILITIES, MAX_BATCH

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class OnnxGraph:
    """What a family exports to ONNX (``GenerativeModel.export_onnx``): a plain fp32 eval-mode
    module (no fast path, no autocast), example inputs for the trace, names, and the axes that
    stay dynamic (always the batch). ``metadata`` (str -> str) goes into the ONNX file's
    ``metadata_props``; ``notes`` are one-line remarks for the user (what the graph leaves out)."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class GenerativeModel(nn.Module):
    family: ClassVar[str] = "base"
    #: TrainConfig fields this family trains with unless the user overrides them.
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: ``sample`` accepts a list of generators, one per image (drawing with :func:`randn`): image i
    #: of ``generate`` is then a function of (seed, i) alone, whatever the batch size or the number
    #: of ranks. Families without it draw each batch from one generator seeded with seed + batch.
    per_image_noise: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.precision = "fp32"  # autocast dtype of generate/translate (set by gencli.load)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GenerativeModel":
        return cls(config)

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The default training config of this family adapted to a dataset (`gencli train`)."""
        raise NotImplementedError(f"{cls.family} cannot be trained")

    @classmethod
    def trainable(cls) -> bool:
        return cls.config_for_data.__func__ is not GenerativeModel.config_for_data.__func__

    @classmethod
    def training_data(cls, data: str | None, *, split: str = "train", channels: int | None = None,
                      size: int | None = None, config: dict[str, Any] | None = None, **options: Any) -> Any:
        """The dataset `gencli train` trains on. ``config`` is the run's config when resuming
        (its channels are then fixed). Image families read ``data`` with gencli.io.datasets."""
        if options:
            raise UsageError(f"{cls.family} takes no data options ({', '.join(sorted(options))})")
        if not data:
            raise UsageError("--data is required: fashion-mnist, mnist, synthetic[:N], or a folder")
        from gencli.io.datasets import resolve_dataset

        return resolve_dataset(data, split=split, channels=channels, size=size)

    @classmethod
    def capabilities(cls) -> tuple[str, ...]:
        """The capabilities this class really implements: the methods it overrides, and
        interpolate where it has a prior and decode."""
        def own(name: str) -> bool:
            return getattr(cls, name, None) is not getattr(GenerativeModel, name, None)

        found = {c for c in CAPABILITIES if c != "interpolate" and own(c)}
        if own("prior") and own("decode"):
            found.add("interpolate")
        return tuple(c for c in CAPABILITIES if c in found)

    # --- what a checkpoint describes ---------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def num_classes(self) -> int | None:
        return self.config.get("num_classes")

    def export(self, state_dict: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config, tensors) a checkpoint ships, from ``state_dict`` (default: this model's own;
        the trainer passes one with the EMA weights in). By default: everything."""
        sd = self.state_dict() if state_dict is None else state_dict
        return dict(self.config), {k: v.detach() for k, v in sd.items()}

    # --- training ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError(f"{self.family} cannot be trained")

    def ema_module(self) -> nn.Module | None:
        """The sub-module whose weights the trainer averages (EMA) and ships; None for none."""
        return None

    compiled = False

    def compile_for_sampling(self) -> None:
        """``torch.compile`` the network sampling runs (the :meth:`ema_module`; `gencli sample
        --compile`). The first batch pays the compilation; a family with a hand-written fast path
        samples on the compiled plain forward instead."""
        from gencli.errors import UsageError

        net = self.ema_module()
        if net is None:
            raise UsageError(f"{self.family} has no network for --compile")
        net.forward = torch.compile(net.forward, dynamic=False)
        self.compiled = True

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier on every optimiser's base learning rate at ``step`` (stateless, so resumable):
        :func:`schedule_factor` of the config's ``optimizer`` block (linear warm-up over
        ``warmup_steps``, then ``decay`` none / linear / cosine from ``decay_start`` (a fraction of
        the run) down to ``min_factor`` at the last step)."""
        return schedule_factor(self.config.get("optimizer") or {}, step, total_steps)

    def preview_options(self) -> dict[str, Any]:
        """Cheap sampling options for the preview grids written during training."""
        return {}

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int, ctx: Any) -> dict[str, torch.Tensor]:
        """One optimisation step. ``ctx`` is the trainer's StepContext (autocast, backward+step)."""
        raise NotImplementedError(f"{self.family} cannot be trained")

    # --- capabilities (override the ones that make sense) -----------------------------------
    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents drawn from the prior, as ``sample(n, generator)`` would start from."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor, **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def sampling_settings(self, **opts: Any) -> dict[str, Any]:
        """The effective settings ``sample(**opts)`` would use (reported by `gencli sample`)."""
        return {}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def translate(self, images: torch.Tensor, **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, images: torch.Tensor, generator: torch.Generator | None = None,
                       **opts: Any) -> torch.Tensor:
        """log P(x) in nats per image of 8-bit ``images`` (in [-1, 1]): exact, or a bound for
        models with latents or dequantisation (gencli.models.layers.distributions)."""
        raise NotImplementedError

    def traverse(self, images: torch.Tensor | None = None, **opts: Any) -> torch.Tensor:
        """A latent-traversal grid (one row per latent dimension), from ``images[0]``'s code."""
        raise NotImplementedError

    def export_onnx(self, **opts: Any) -> OnnxGraph:
        """The network to export to ONNX (``opts``: the family's `export` options), as a module in
        plain fp32 eval mode that does not share state with this model."""
        raise NotImplementedError

    @torch.inference_mode()
    def interpolate(self, frames: int, generators: list[torch.Generator] | None = None, *,
                    class_labels: Any = None, latents: list[torch.Tensor] | None = None,
                    **opts: Any) -> torch.Tensor:
        """``frames`` images along a path through the prior latents of each generator (slerp
        between consecutive ones), decoded by the family. Each end frame starts from exactly the
        latent ``sample(1, generator)`` would. A class-conditional model keeps one class for the
        whole path: ``class_labels`` or, when None, one drawn from the first generator.
        ``latents`` replaces the prior draws with given end latents (e.g. ``encode``d images)."""
        generators = list(generators or [])
        if len(latents if latents is not None else generators) < 2:
            raise UsageError("interpolation needs at least two seeds (or two images)")
        if frames < 2:
            raise UsageError("an interpolation needs at least 2 frames")
        ends = list(latents) if latents is not None else [self.prior(1, g)[0] for g in generators]
        if self.num_classes and class_labels is None and generators:
            g = generators[0]
            class_labels = int(torch.randint(self.num_classes, (1,), generator=g, device=g.device))
        pos = torch.linspace(0, len(ends) - 1, frames, dtype=torch.float64)
        seg = pos.floor().long().clamp(max=len(ends) - 2)
        z = torch.cat([slerp(ends[int(k)], ends[int(k) + 1], (p - k).view(1).float()) for p, k in zip(pos, seg)])
        labels = self.class_labels(z.shape[0], class_labels)
        return self.decode(z, class_labels=labels, **opts)

    def seed_generator(self, seed: int) -> torch.Generator:
        """The generator ``sample(1, ...)`` of ``generate(1, seed)`` draws from: what interpolation
        uses for its ends, so each end frame starts from that image's latent."""
        value = image_seed(seed, 0) if self.per_image_noise else int(seed)
        return torch.Generator(device=self.device).manual_seed(value)

    # --- class labels -------------------------------------------------------------------------
    def class_labels(self, n: int, wanted: Any = None, device: Any = None) -> torch.Tensor | None:
        """Checked labels for ``n`` images: ``wanted`` (one int, or n of them) or, for a
        class-conditional model given none, the classes in turn (0, 1, ..., 0, 1, ...)."""
        device = device or self.device
        if not self.num_classes:
            if wanted is not None:
                raise UsageError("this checkpoint is not class-conditional: drop --class")
            return None
        if wanted is None:
            return torch.arange(n, device=device) % self.num_classes
        labels = torch.as_tensor(wanted, device=device).long().flatten()
        if labels.numel() == 1:
            labels = labels.expand(n)
        if labels.numel() != n:
            raise UsageError(f"got {labels.numel()} class labels for {n} images")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise UsageError(f"--class {int(bad[0])} is out of range: this model knows classes "
                             f"0..{self.num_classes - 1}")
        return labels

    # --- generation (the one path behind `gencli sample`, evaluate --model and the API) --------
    def iter_generate(self, n: int, seed: int = 0, *, batch_size: int | None = None, class_labels: Any = None,
                      init_noise: torch.Tensor | None = None, progress: Progress | None = None,
                      indices: range | None = None, **opts: Any) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(lo, hi, images[lo:hi])`` batch by batch, for the image indices ``indices``
        (default: all ``n``; a rank of a distributed run takes its share). With
        ``per_image_noise`` image i draws from ``torch.Generator(device).manual_seed(image_seed(seed,
        i))``: the same seed and device give the same image i whatever the batch size; otherwise
        batch b draws from one generator seeded with ``seed + b`` (the same seed, batch size and
        device give the same images). ``progress(done, total)`` counts the model's own steps over
        all batches. ``init_noise`` (N, ...) replaces the prior draws (then N is the image count)."""
        from gencli.runtime import autocast

        spec = getattr(self, "spec", None)
        if spec is not None:
            opts = spec.check_options("sample", opts)
        if init_noise is not None:
            if init_noise.dim() == 3:
                init_noise = init_noise[None]
            n = int(init_noise.shape[0])
        if n < 1:
            raise UsageError(f"cannot generate {n} images")
        indices = range(n) if indices is None else indices
        bs = min(batch_size or min(n, MAX_BATCH), n)
        starts = list(range(indices.start, indices.stop, bs))
        labels = self.class_labels(n, class_labels, device="cpu") if class_labels is not None or self.num_classes \
            else None
        state = {"done": 0}

        def step(done: int, total: int) -> None:
            state["done"] += 1
            if progress is not None:
                progress(state["done"], total * len(starts))

        for lo in starts:
            hi = min(lo + bs, indices.stop)
            if self.per_image_noise:
                gen: Any = [torch.Generator(device=self.device).manual_seed(image_seed(seed, i)) for i in range(lo, hi)]
            else:
                gen = torch.Generator(device=self.device).manual_seed(int(seed) + lo // bs)
            extra = {} if labels is None else {"class_labels": labels[lo:hi]}
            if init_noise is not None:
                extra["init_noise"] = init_noise[lo:hi]
            with autocast(self.device, self.precision):
                x = self.sample(hi - lo, gen, progress=step, **extra, **opts)
            yield lo, hi, x.float()

    def generate(self, n: int, seed: int = 0, **opts: Any) -> torch.Tensor:
        """``n`` images (N, C, H, W) in [-1, 1]; the same images as `gencli sample` with the same
        seed and batch size. Options: ``batch_size``, ``class_labels``, ``init_noise``,
        ``progress`` and the family's sampling options (`gencli sample FAMILY --help`)."""
        return torch.cat([x.cpu() for _, _, x in self.iter_generate(n, seed, **opts)])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def schedule_factor(opt: dict[str, Any], step: int, total_steps: int) -> float:
    """The learning-rate multiplier of an ``optimizer`` config block at ``step`` of ``total_steps``."""
    warm = int(opt.get("warmup_steps") or 0)
    f = min(1.0, (step + 1) / warm) if warm else 1.0
    decay = opt.get("decay") or "none"
    if decay == "none":
        return f
    if decay not in ("linear", "cosine"):
        from gencli.errors import UsageError

        raise UsageError(f"unknown learning-rate decay {decay!r}; use none, linear or cosine")
    start = int(float(opt.get("decay_start", 0.0)) * total_steps)
    lo = float(opt.get("min_factor", 0.0))
    if step < start or total_steps <= start:
        return f
    frac = min(1.0, (step - start) / max(1, total_steps - start))
    shape = 1 - frac if decay == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
    return f * (lo + (1 - lo) * shape)


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a run seeded with ``seed`` (per-image noise): a splitmix64
    mix of the pair, folded to the 32 bits torch's CPU generator keeps."""
    x = ((int(seed) << 32) ^ int(index)) & 0xFFFF_FFFF_FFFF_FFFF
    x = (x + 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF
    x = ((x ^ (x >> 30)) * 0xBF58_476D_1CE4_E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    x = ((x ^ (x >> 27)) * 0x94D0_49BB_1331_11EB) & 0xFFFF_FFFF_FFFF_FFFF
    x ^= x >> 31
    return (x ^ (x >> 32)) & 0xFFFF_FFFF


def per_row(draw: Any, shape: tuple[int, ...], generator: Any) -> torch.Tensor:
    """``draw(shape, generator)`` for the whole batch from one generator, or row by row from a
    list of generators, one per image (see ``GenerativeModel.per_image_noise``)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} images")
        return torch.stack([draw(tuple(shape[1:]), g) for g in generator])
    return draw(tuple(shape), generator)


def randn(shape: tuple[int, ...], generator: Any, device: Any) -> torch.Tensor:
    """Standard normal noise of ``shape`` (one generator, or one per image: :func:`per_row`)."""
    return per_row(lambda s, g: torch.randn(s, generator=g, device=device), shape, generator)


def rand(shape: tuple[int, ...], generator: Any, device: Any) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` (one generator, or one per image: :func:`per_row`)."""
    return per_row(lambda s, g: torch.rand(s, generator=g, device=device), shape, generator)


def randint(high: int, shape: tuple[int, ...], generator: Any, device: Any) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` (one generator, or one per image: :func:`per_row`)."""
    return per_row(lambda s, g: torch.randint(int(high), s, generator=g, device=device), shape, generator)


def generator_device(generator: Any, default: Any) -> Any:
    """The device of a generator (or of the first of a list of them), else ``default``."""
    if isinstance(generator, (list, tuple)):
        generator = generator[0] if generator else None
    return generator.device if generator is not None else default


def slerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors for weights w (shape (k,)).

    Returns (k, *a.shape). Falls back to linear interpolation when a and b are parallel.
    """
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.dot(af, bf) / (af.norm() * bf.norm())
    theta = torch.arccos(cos.clamp(-1, 1))
    w = w.double().view(-1, 1)
    if float(theta) < 1e-4:
        out = (1 - w) * af + w * bf
    else:
        s = math.sin(float(theta))
        out = (torch.sin((1 - w) * theta) / s) * af + (torch.sin(w * theta) / s) * bf
    return out.view(-1, *a.shape).to(a.dtype)
