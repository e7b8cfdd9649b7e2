"""The learning-rate schedule every family gets from its config's optimizer block."""

from __future__ import annotations

import math

import pytest

from gencli.errors import UsageError
from gencli.models.base import schedule_factor


def test_warmup_then_constant_by_default():
    opt = {"warmup_steps": 4}
    assert [schedule_factor(opt, s, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert schedule_factor({}, 50, 100) == 1.0


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_decay_from_its_start_to_the_floor(decay):
    opt = {"decay": decay, "decay_start": 0.5, "min_factor": 0.1}
    assert schedule_factor(opt, 49, 100) == 1.0  # before the decay starts
    assert schedule_factor(opt, 50, 100) == pytest.approx(1.0)
    assert schedule_factor(opt, 100, 100) == pytest.approx(0.1)  # the floor at the end
    mid = schedule_factor(opt, 75, 100)
    assert mid == pytest.approx(0.1 + 0.9 * (0.5 if decay == "linear" else 0.5 * (1 + math.cos(math.pi / 2))))
    f = [schedule_factor(opt, s, 100) for s in range(50, 101)]
    assert all(a >= b for a, b in zip(f, f[1:]))  # monotone


def test_warmup_and_decay_multiply_and_unknown_decay_is_an_error():
    opt = {"warmup_steps": 10, "decay": "linear"}
    assert schedule_factor(opt, 4, 10) == pytest.approx(0.5 * (1 - 0.4))
    with pytest.raises(UsageError, match="unknown learning-rate decay"):
        schedule_factor({"decay": "step"}, 1, 10)


def test_families_use_it():
    from gencli.models.diffusion.ddpm import DiffusionModel

    cfg = DiffusionModel.config_for_data(8, 1, None, {"optimizer": {"decay": "cosine", "warmup_steps": 2}})
    m = DiffusionModel(cfg)
    assert m.lr_factor(0, 10) == pytest.approx(0.5 * 0.5 * (1 + math.cos(0)))
    assert m.lr_factor(9, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
