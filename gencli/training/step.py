"""One optimisation step as a family's ``train_step`` takes it: autocast, and a NaN-guarded
backward + optimiser step with loss scaling and gradient clipping."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from gencli.errors import GencliError

if TYPE_CHECKING:
    from gencli.training.trainer import Trainer

__all__ = ["NonFiniteLoss", "StepContext", "TorchRandom"]


class NonFiniteLoss(GencliError):
    """Raised when a loss is NaN or infinite; the run stops without saving."""

class TorchRandom:
    """The random-number interface of :class:`StepContext` (``randn``, ``rand``, ``randint``,
    ``randn_like``) on torch's global generator (or ``generator``): for code that runs a family's
    ``train_step`` outside the trainer (tests, toys), and the default of helpers that take an rng."""

    def __init__(self, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        self.device, self.generator = torch.device(device), generator

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(*x.shape).to(x.device, x.dtype)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator).to(self.device)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, tuple(shape), generator=self.generator).to(self.device)


class StepContext:
    """What a family's ``train_step`` uses: autocast, a guarded backward + optimiser step, and the
    step's random numbers.

    ``randn``/``rand``/``randint`` draw from a generator seeded by (run seed, step, draw number)
    for the whole global batch and return this rank's share: a family that draws its training
    noise here trains the same on 1 or N ranks (and resumes exactly without any RNG state).
    """

    def __init__(self, trainer: "Trainer"):
        self._t = trainer
        self.index = 0  # the step being taken
        self._draws = 0

    def begin(self, index: int) -> None:
        self.index, self._draws = index, 0

    def _generator(self) -> torch.Generator:
        self._draws += 1
        seed = (self._t.cfg.seed * 1_000_003 + self.index) * 1_009 + self._draws
        return torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)

    def _global(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0] * self._t.group.world, *shape[1:])

    def randn(self, *shape: int) -> torch.Tensor:
        x = torch.randn(self._global(shape), generator=self._generator())
        return self._t.group.shard(x).to(self._t.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(*x.shape).to(x.dtype)

    def rand(self, *shape: int) -> torch.Tensor:
        x = torch.rand(self._global(shape), generator=self._generator())
        return self._t.group.shard(x).to(self._t.device)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        x = torch.randint(low, high, self._global(tuple(shape)), generator=self._generator())
        return self._t.group.shard(x).to(self._t.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        t = self._t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(t.device.type, dtype=t.amp_dtype)

    def step(self, loss: torch.Tensor, name: str) -> None:
        """Backward ``loss`` and step optimiser ``name`` (with scaling and clipping); NaN-guarded."""
        t = self._t
        finite = bool(torch.isfinite(loss.detach()))
        if t.group.any(not finite):  # collective: every rank stops after the same step
            value = float(loss.detach()) if not finite else "non-finite on another rank"
            raise NonFiniteLoss(f"the {name} loss became {value} at step {self.index}")
        opt = t.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if t.scaler is not None:
            t.scaler.scale(loss).backward()
            t.scaler.unscale_(opt)
        else:
            loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        t.group.average_([p.grad for p in params])  # the mean gradient over the ranks
        if t.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, t.cfg.grad_clip)
        if t.scaler is not None:
            t.scaler.step(opt)
            t.scaler.update()
        else:
            opt.step()
