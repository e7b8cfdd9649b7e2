"""PixelCNN: causality (gradient check over a whole image), exact likelihood, sampling shortcuts."""

from __future__ import annotations

import math

import pytest
import torch

from gencli.models.autoregressive.gated import GatedPixelCNN
from gencli.models.autoregressive.pixelcnn import PixelCNN
from gencli.models.layers.distributions import (
    categorical_log_prob, discretized_logistic_mix_log_prob, from_levels)


@pytest.mark.parametrize("kernels", [(3, 3), (5, 7)])
def test_output_at_pixel_i_does_not_depend_on_pixels_at_or_after_i(kernels):
    torch.manual_seed(0)
    s = 7
    net = GatedPixelCNN(1, 2, hidden=4, layers=3, kernel=kernels[0], first_kernel=kernels[1], head=4).double()
    for i in range(s):
        for j in range(s):
            x = torch.randn(1, 1, s, s, dtype=torch.float64, requires_grad=True)
            net(x)[0, :, i, j].sum().backward()
            dep = x.grad[0, 0] != 0
            order = torch.arange(s * s).view(s, s)
            assert not dep[order >= i * s + j].any(), (i, j, dep.nonzero().tolist())
            # no blind spot: the pixels up and to the right matter, as do the left and above ones
            if (i, j) == (3, 3):
                for a, b in ((2, 4), (2, 5), (1, 5), (2, 3), (3, 2), (2, 2)):
                    assert dep[a, b], (a, b)


def test_rows_above_is_the_vertical_reach():
    torch.manual_seed(0)
    net = GatedPixelCNN(1, 2, hidden=4, layers=3, kernel=3, first_kernel=5, head=4).double()
    s = 12
    x = torch.randn(1, 1, s, s, dtype=torch.float64, requires_grad=True)
    net(x)[0, :, s - 1, 0].sum().backward()
    rows = (x.grad[0, 0] != 0).any(1).nonzero().flatten()
    assert int(rows.min()) == s - 1 - net.rows_above()


def _tiny(output="categorical", num_classes=None):
    torch.manual_seed(0)
    cfg = PixelCNN.config_for_data(6, 1, num_classes, {"hidden": 8, "layers": 3, "kernel": 3, "first_kernel": 3,
                                                       "head": 8, "output": output, "mixtures": 3})
    return PixelCNN(cfg).eval()


@pytest.mark.parametrize("output", ["categorical", "logistic"])
def test_row_cropped_sampling_equals_full_image_sampling(output):
    m = _tiny(output)
    a = m.sample(3, torch.Generator().manual_seed(1))
    b = m.sample(3, torch.Generator().manual_seed(1), full=True)
    assert torch.equal(a, b)
    assert torch.equal(a, from_levels(((a + 1) * 127.5).round().long()))  # 8-bit levels


def test_the_exact_likelihood_is_the_sum_of_the_conditionals():
    m = _tiny("categorical", num_classes=3)
    x = m.sample(2, torch.Generator().manual_seed(0), class_labels=[0, 2])
    ll = m.log_likelihood(x, class_labels=[0, 2])
    assert ll.shape == (2,) and (ll < 0).all()
    # a fresh untrained categorical model is about uniform: close to 8 bits/dim
    assert abs(float(-ll.mean() / (36 * math.log(2))) - 8) < 0.5


def test_value_distributions_sum_to_one_over_the_256_levels():
    levels = torch.arange(256).view(1, 1, 1, 256)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 1, 1, 1, generator=g).expand(-1, -1, -1, -1, 256)
    means = (torch.rand(1, 3, 1, 1, 1, generator=g) * 2 - 1).expand_as(logits)
    log_scales = torch.full_like(logits, -3.0)
    p = discretized_logistic_mix_log_prob(levels, logits, means, log_scales).exp().sum()
    assert abs(float(p) - 1) < 1e-5
    cat = categorical_log_prob(levels.view(1, 1, 1, 256), torch.randn(1, 256, 1, 1, 256, generator=g))
    assert cat.shape == (1, 1, 1, 256)
