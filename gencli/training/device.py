"""Devices and precisions: ``--device auto|cpu|cuda[:N]`` to a torch device, ``--precision`` to an
autocast dtype."""

from __future__ import annotations

import torch

from gencli.errors import UsageError

__all__ = ["resolve_device", "AMP"]


def resolve_device(spec: str = "auto") -> torch.device:
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise UsageError(f"--device {spec!r} is not a device; use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: no CUDA GPU is available here; use --device cpu")
    return dev


AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
