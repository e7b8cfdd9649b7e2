"""The contract every model family implements (DESIGN.md, "The model contract").

A family is an ``nn.Module`` subclass of :class:`GenerativeModel`. It is rebuilt from a plain
``config`` dict (stored in checkpoint metadata), trains through :meth:`train_step` with optimisers
it declares in :meth:`configure_optimizers`, and implements only the capabilities that make sense
for it. Images cross this boundary as float tensors in [-1, 1], NCHW. Models never parse
arguments, print or touch files: progress is reported through an optional callback.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch
from torch import nn

# Capability names, as the registry and the CLI use them.
CAPABILITIES = ("sample", "interpolate", "encode", "decode", "translate", "log_likelihood")

Progress = Callable[[int, int], None]  # (done, total)


class GenerativeModel(nn.Module):
    family: ClassVar[str] = "base"

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GenerativeModel":
        return cls(config)

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The default training config of this family adapted to a dataset (`gencli train`)."""
        raise NotImplementedError(f"{cls.family} cannot be trained")

    @classmethod
    def capabilities(cls) -> tuple[str, ...]:
        """The capabilities this class really implements (methods overridden from the base)."""
        return tuple(c for c in CAPABILITIES
                     if getattr(cls, c, None) is not getattr(GenerativeModel, c, None))

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

    # --- training ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError(f"{self.family} cannot be trained")

    def ema_module(self) -> nn.Module | None:
        """The sub-module whose weights the trainer averages (EMA) and ships; None for none."""
        return None

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier on every optimiser's base learning rate at ``step`` (stateless, so resumable)."""
        return 1.0

    def preview_options(self) -> dict[str, Any]:
        """Cheap sampling options for the preview grids written during training."""
        return {}

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int, ctx: Any) -> dict[str, torch.Tensor]:
        """One optimisation step. ``ctx`` is the trainer's StepContext (autocast, backward+step)."""
        raise NotImplementedError(f"{self.family} cannot be trained")

    # --- capabilities (override the ones that make sense) -----------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def interpolate(self, frames: int, generators: list[torch.Generator], **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def translate(self, images: torch.Tensor, **opts: Any) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


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
