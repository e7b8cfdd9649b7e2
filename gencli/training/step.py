"""One optimisation step as a family's ``train_step`` takes it: autocast, and a NaN-guarded
backward + optimiser step with loss scaling and gradient clipping."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from gencli.errors import GencliError

if TYPE_CHECKING:
    from gencli.training.trainer import Trainer

__all__ = ["NonFiniteLoss", "StepContext"]


class NonFiniteLoss(GencliError):
    """Raised when a loss is NaN or infinite; the run stops without saving."""

class StepContext:
    """What a family's ``train_step`` uses: autocast and a guarded backward + optimiser step."""

    def __init__(self, trainer: "Trainer"):
        self._t = trainer
        self.index = 0  # the step being taken

    def autocast(self) -> contextlib.AbstractContextManager:
        t = self._t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(t.device.type, dtype=t.amp_dtype)

    def step(self, loss: torch.Tensor, name: str) -> None:
        """Backward ``loss`` and step optimiser ``name`` (with scaling and clipping); NaN-guarded."""
        t = self._t
        if not bool(torch.isfinite(loss.detach())):
            raise NonFiniteLoss(f"the {name} loss became {float(loss.detach())} at step {self.index}")
        opt = t.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if t.scaler is not None:
            t.scaler.scale(loss).backward()
            t.scaler.unscale_(opt)
        else:
            loss.backward()
        if t.cfg.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, t.cfg.grad_clip)
        if t.scaler is not None:
            t.scaler.step(opt)
            t.scaler.update()
        else:
            opt.step()
