"""Mode coverage on the ring of 8 Gaussians (VEEGAN setup: radius 2, std 0.02; a sample is high
quality within 3 std of its nearest mode, a mode is covered with at least one such sample).

Every family runs with its own loss, penalty and optimiser betas, on the MLP toy networks
(2 x 128, z 16-d), Adam lr 1e-3 for all, batch 256, the rates decaying to 0 over the last 30%
(gencli.models.gan.toy.fit). The budget is 3000 G steps: 3000 D steps for gan and lsgan, sngan with
n_critic 1 (its default 5 would leave 600 G steps), and 15000 D steps for wgan-gp at its default
n_critic 5, with the WGAN-GP authors' toy settings (lambda 0.1, Adam betas (0.5, 0.9): their
gan_toy.py). The numbers are in README.md ("Mode coverage").
"""

from __future__ import annotations

import pytest
import torch

from gencli.models.configs import merge
from gencli.models.gan import toy
from gencli.models.gan.adversarial import GAN, LSGAN, SNGAN, WGANGP


def test_ring_metrics():
    x = toy.ring_sample(4000, torch.Generator().manual_seed(0))
    stats = toy.mode_stats(x)
    assert stats["modes"] == 8 and stats["hq"] > 0.98
    collapsed = toy.ring_modes()[3].expand(100, 2) + 0.001
    assert toy.mode_stats(collapsed) == {"modes": 1, "hq": 1.0, "counts": [0, 0, 0, 100, 0, 0, 0, 0]}
    assert toy.mode_stats(torch.zeros(10, 2))["modes"] == 0  # the centre is no mode
    assert len({tuple(m.tolist()) for m in toy.ring_modes().round(decimals=4)}) == 8  # no repeated endpoint


def _train(cls, steps, batch_size=256, **over):
    torch.manual_seed(0)
    model = cls(toy.toy_config(cls, **over))
    toy.fit(model, steps, batch_size=batch_size, seed=0)
    return toy.mode_stats(model.generate(1000, seed=0, batch_size=1000))


def test_lsgan_spreads_over_the_ring_quickly():
    """The fast variant: 600 steps (a few seconds) already reach every mode, not yet precisely."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster
    try:
        stats = _train(LSGAN, 600, batch_size=128, optimizer={"lr": 2e-3},
                       generator={"width": 64}, discriminator={"width": 64})
    finally:
        torch.set_num_threads(threads)
    assert stats["modes"] >= 7, stats


@pytest.mark.slow
@pytest.mark.parametrize("cls,steps,over", [
    (GAN, 3000, {}), (LSGAN, 3000, {}), (SNGAN, 3000, {"n_critic": 1}),
    (WGANGP, 15000, {"penalty_weight": 0.1, "optimizer": {"betas": [0.5, 0.9]}})],
    ids=["gan", "lsgan", "sngan", "wgan-gp"])
def test_mode_coverage_within_3000_g_steps(cls, steps, over):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = _train(cls, steps, **merge({"optimizer": {"lr": 1e-3}}, over))
    finally:
        torch.set_num_threads(threads)
    print(cls.family, stats)
    assert stats["modes"] >= 7 and stats["hq"] >= 0.5, stats
