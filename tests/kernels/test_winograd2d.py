"""Winograd F(4x4, 5x5) (gencli.kernels.winograd2d) against F.conv2d in float64, and checks that
the comparison is tight enough to catch a broken kernel."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn as nn

from gencli.kernels import native
from gencli.kernels import native_winograd
from gencli.kernels import winograd2d as W2
from gencli.kernels.winograd2d import applies, conv2d_reference, conv_winograd2d, winograd2d_filters

from winograd_checks import rel_err, same_in_blocks, use_c_kernels, wrong_tap_error

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: the C kernels are not built")

RTOL = 2e-5  # relative to the largest output (seen: up to 8e-6 at 48 input channels)


@pytest.fixture(autouse=True, params=["blocked", "fused"])
def kernel(request, monkeypatch):
    """Every test runs with the blocked kernel (C transforms, torch's GEMMs) and the fused one (for
    every layer whose output channels are a multiple of 16)."""
    use_c_kernels(monkeypatch, request.param == "fused")


def case(n, c, co, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(co, c, 5, 5, generator=g, dtype=torch.float64) / (c * 25) ** 0.5
    bias = torch.randn(co, generator=g, dtype=torch.float64)
    return x.float().contiguous(memory_format=torch.channels_last), weight.float(), bias.float()


def test_matrices_compute_a_2d_correlation_exactly():
    at, g, bt = W2.matrices()
    assert len(at) == 4 and len(g) == 8 and len(bt) == 8
    d = [[Fraction(k * k - 3 * k + l + 1, k + l + 2) for l in range(8)] for k in range(8)]
    w = [[Fraction(2 * k - 5 + l, 3) for l in range(5)] for k in range(5)]
    u = [[sum(g[i][k] * w[k][l] * g[j][l] for k in range(5) for l in range(5)) for j in range(8)] for i in range(8)]
    v = [[sum(bt[i][k] * d[k][l] * bt[j][l] for k in range(8) for l in range(8)) for j in range(8)] for i in range(8)]
    y = [[sum(at[a][i] * u[i][j] * v[i][j] * at[b][j] for i in range(8) for j in range(8)) for b in range(4)]
         for a in range(4)]
    assert y == [[sum(d[a + k][b + l] * w[k][l] for k in range(5) for l in range(5)) for b in range(4)]
                 for a in range(4)]  # exact, in rationals


def test_matrices_refuse_points_without_the_symmetry_the_c_transforms_assume(monkeypatch):
    monkeypatch.setattr(W2, "POINTS", ("0", "1", "-1", "2", "-2", "1/2", "-1/3"))
    W2.matrices.cache_clear()
    try:
        with pytest.raises(ValueError, match="symmetric"):
            W2.matrices()
    finally:
        monkeypatch.undo()
        W2.matrices.cache_clear()


# (n, c, co, h, w, padding): the Inception's shape, sides that are not multiples of 4, sides
# shorter than a tile, channel counts that are not multiples of 16, every padding
SHAPES = [(2, 48, 64, 35, 35, 2), (1, 20, 17, 11, 9, 2), (3, 5, 3, 6, 7, 0), (1, 17, 33, 9, 5, 4),
          (2, 16, 16, 5, 5, 1), (1, 33, 18, 13, 21, 3),
          # output channels in multiples of 16 besides (the fused kernel's)
          (1, 20, 48, 11, 9, 2), (1, 17, 32, 9, 5, 4), (1, 5, 80, 6, 7, 0)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_matches_conv2d(shape, relu):
    n, c, co, h, w, pad = shape
    x, weight, bias = case(n, c, co, h, w)
    got = conv_winograd2d(x, winograd2d_filters(weight), bias, padding=pad, relu=relu)
    assert got.shape == (n, co, h + 2 * pad - 4, w + 2 * pad - 4) and got.is_contiguous(memory_format=torch.channels_last)
    want = conv2d_reference(x.double(), weight.double(), bias.double(), padding=pad, relu=relu)
    assert rel_err(got, want) < RTOL
    if relu:
        assert got.min() >= 0
    no_bias = conv_winograd2d(x, winograd2d_filters(weight), padding=pad)
    assert rel_err(no_bias, conv2d_reference(x.double(), weight.double(), padding=pad)) < RTOL


@pytest.mark.parametrize("co", [20, 32])
def test_writes_a_channel_slice_of_a_wider_tensor(co):
    x, weight, bias = case(2, 24, co, 11, 9, seed=1)
    wide_out = torch.full((2, co + 12, 11, 9), 7.0).contiguous(memory_format=torch.channels_last)
    conv_winograd2d(x, winograd2d_filters(weight), bias, relu=True, out=wide_out[:, 5:5 + co])
    want = conv2d_reference(x.double(), weight.double(), bias.double(), relu=True)
    assert rel_err(wide_out[:, 5:5 + co], want) < RTOL
    assert wide_out[:, :5].eq(7).all() and wide_out[:, 5 + co:].eq(7).all()  # nothing written outside the slice


def test_blocks_of_tiles_give_the_same_result(monkeypatch):
    x, weight, bias = case(4, 16, 16, 17, 17, seed=2)
    filters = winograd2d_filters(weight)
    same_in_blocks(monkeypatch, lambda: conv_winograd2d(x, filters, bias), 64, 16)


@pytest.mark.parametrize("where", [(0, 0, 0, 0), (5, 3, 2, 4), (47, 31, 4, 0)])
def test_comparison_catches_one_wrong_tap(where):
    """One tap of one filter off by 1% of the largest tap: well over the tolerance."""
    x, weight, bias = case(2, 32, 48, 17, 17)
    err = wrong_tap_error(lambda w: conv_winograd2d(x, winograd2d_filters(w), bias),
                          lambda w: conv2d_reference(x.double(), w, bias.double()), weight, where)
    assert err > 10 * RTOL


@pytest.mark.parametrize("which", ["bt", "at"])
def test_comparison_catches_a_wrong_transform_entry(monkeypatch, which):
    x, weight, bias = case(2, 32, 48, 17, 17)
    at, g, bt = W2.matrices()
    rows = [list(row) for row in (bt if which == "bt" else at)]
    col = max(range(1, 7), key=lambda k: abs(rows[3][k]))  # an entry the C transforms read
    rows[3][col] *= Fraction(10001, 10000)  # off by 1e-4 relative
    rows = tuple(map(tuple, rows))
    monkeypatch.setattr(W2, "matrices", lambda: (at, g, rows) if which == "bt" else (rows, g, bt))
    got = conv_winograd2d(x, winograd2d_filters(weight), bias)
    assert rel_err(got, conv2d_reference(x.double(), weight.double(), bias.double())) > 2 * RTOL


def test_applies_to_stride_1_5x5_convolutions_only():
    assert applies(nn.Conv2d(8, 8, 5, padding=2)) and applies(nn.Conv2d(8, 8, 5)) and applies(nn.Conv2d(8, 8, 5, padding=4))
    assert not applies(nn.Conv2d(8, 8, 5, padding=5))
    assert not applies(nn.Conv2d(8, 8, 5, padding=(2, 1)))
    assert not applies(nn.Conv2d(8, 8, 5, padding=2, stride=2))
    assert not applies(nn.Conv2d(8, 8, 5, padding=2, dilation=2))
    assert not applies(nn.Conv2d(8, 8, 5, padding=2, groups=2))
    assert not applies(nn.Conv2d(8, 8, 3, padding=1)) and not applies(nn.Conv2d(8, 8, (1, 5), padding=(0, 2)))


def test_native_refuses_mismatched_buffers():
    x, weight, _ = case(1, 8, 8, 8, 8)
    f = winograd2d_filters(weight)
    with pytest.raises(ValueError):
        native_winograd.winograd2d_input(x, torch.empty(36, 4, 8), (0, 4), f.bt, 2)  # 64 planes needed
    with pytest.raises(ValueError):
        native_winograd.winograd2d_input(x, torch.empty(64, 5, 8), (0, 5), f.bt, 2)  # 2 x 2 tiles only
    with pytest.raises(ValueError):
        native_winograd.winograd2d_input(x, torch.empty(64, 4, 8), (0, 4), f.bt, 5)  # padding 5
    with pytest.raises(ValueError):
        native_winograd.winograd2d_input(x.contiguous(), torch.empty(64, 4, 8), (0, 4), f.bt, 2)  # NCHW
    native_winograd.winograd2d_input(x, torch.empty(64, 4, 8), (0, 4), f.bt, 2)  # and the right arguments pass
