"""Checks shared by the Winograd kernels' tests (test_kernels.py, test_winograd1d.py, test_winograd2d.py): each
kernel against a float64 reference, and that the comparison is tight enough to catch a broken one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from gencli.kernels import native
from gencli.kernels import winograd as W


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest deviation relative to the largest value of ``want``."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def wrong_tap_error(run: Callable[[torch.Tensor], torch.Tensor], reference: Callable[[torch.Tensor], torch.Tensor],
                    weight: torch.Tensor, where: tuple[int, ...]) -> float:
    """The error of ``run`` (weight -> output) against ``reference`` (float64 weight -> output)
    when one tap of ``weight`` is off by 1% of its largest tap."""
    broken = weight.clone()
    broken[where] += 0.01 * weight.abs().max()
    return rel_err(run(broken), reference(weight.double()))


def same_in_blocks(monkeypatch, run: Callable[[], torch.Tensor], planes: int, channels: int) -> None:
    """``run()`` gives the same result, bit for bit, with 7-tile blocks of tiles (the floor is 8)."""
    whole = run()
    monkeypatch.setattr(W, "NATIVE_BLOCK_BYTES", channels * planes * 4 * 7)
    assert torch.equal(run(), whole)


def use_c_kernels(monkeypatch, fused: bool) -> None:
    """gencli's C kernels, blocked (C transforms, torch's GEMMs) or fused (every layer whose CO is a
    multiple of 16, whatever its filter size and tile count and the vector width)."""
    if not native.available():
        pytest.skip("no C compiler: the C kernels are not built")
    monkeypatch.setattr(W, "FUSED", fused)
    monkeypatch.setattr(W, "FUSED_MAX_FILTER", 1 << 30)
    monkeypatch.setattr(W, "FUSED_MIN_GROUPS", 0)
    monkeypatch.setattr(W, "FUSED_MIN_LANES", 0)
