"""One-axis Winograd F(m, r) (gencli.kernels.winograd1d) against F.conv2d in float64, and checks
that the comparison is tight enough to catch a broken kernel."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn as nn

from gencli.kernels import native
from gencli.kernels import native_winograd
from gencli.kernels import winograd1d as W1
from gencli.kernels.fast_path import FastState, conv_fp32
from gencli.kernels.winograd1d import applies, conv1d_reference, conv1d_winograd, winograd1d_filters

from winograd_checks import rel_err, same_in_blocks, use_c_kernels, wrong_tap_error

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: the C kernels are not built")

RTOL = {7: 4e-5, 3: 1e-5}  # relative to the largest output


@pytest.fixture(autouse=True, params=["blocked", "fused"])
def kernel(request, monkeypatch):
    """Every test runs with the blocked kernel (C transforms, torch's GEMMs) and the fused one (for
    every layer whose output channels are a multiple of 16)."""
    use_c_kernels(monkeypatch, request.param == "fused")


def case(n, c, co, h, w, kh, kw, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(co, c, kh, kw, generator=g, dtype=torch.float64) / (c * kh * kw) ** 0.5
    bias = torch.randn(co, generator=g, dtype=torch.float64)
    return x.float().contiguous(memory_format=torch.channels_last), weight.float(), bias.float()


@pytest.mark.parametrize("r", [3, 7])
def test_matrices_compute_a_correlation_exactly(r):
    at, g, bt = W1.matrices(r)
    m = W1.TILE[r]
    alpha = m + r - 1
    assert len(at) == m and len(g) == alpha and len(bt) == alpha
    d = [Fraction(k * k - 3 * k + 1, k + 2) for k in range(alpha)]
    w = [Fraction(2 * k - 5, 3) for k in range(r)]
    gw = [sum(g[i][k] * w[k] for k in range(r)) for i in range(alpha)]
    bd = [sum(bt[i][k] * d[k] for k in range(alpha)) for i in range(alpha)]
    y = [sum(at[a][i] * gw[i] * bd[i] for i in range(alpha)) for a in range(m)]
    assert y == [sum(d[a + k] * w[k] for k in range(r)) for a in range(m)]  # exact, in rationals


# (n, c, co, h, w, kh, kw): the Inception's shapes, sides that are not multiples of 4, sides
# shorter than a tile, channel counts that are not multiples of 16
SHAPES = [(2, 32, 48, 17, 17, 1, 7), (2, 32, 48, 17, 17, 7, 1), (1, 40, 24, 8, 8, 1, 3), (1, 40, 24, 8, 8, 3, 1),
          (3, 20, 36, 13, 6, 7, 1), (1, 5, 7, 3, 2, 1, 3), (2, 16, 16, 5, 9, 1, 7), (1, 18, 17, 9, 4, 3, 1),
          # output channels in multiples of 16 besides (the fused kernel's)
          (1, 40, 32, 8, 8, 1, 3), (3, 20, 64, 13, 6, 7, 1), (1, 18, 80, 9, 4, 3, 1), (1, 5, 16, 3, 2, 1, 7)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_matches_conv2d(shape, relu):
    x, weight, bias = case(*shape)
    got = conv1d_winograd(x, winograd1d_filters(weight), bias, relu=relu)
    n, c, co, h, w, kh, kw = shape
    assert got.shape == (n, co, h, w) and got.is_contiguous(memory_format=torch.channels_last)
    want = conv1d_reference(x.double(), weight.double(), bias.double(), relu=relu)
    assert rel_err(got, want) < RTOL[max(kh, kw)]
    if relu:
        assert got.min() >= 0
    no_bias = conv1d_winograd(x, winograd1d_filters(weight))
    assert rel_err(no_bias, conv1d_reference(x.double(), weight.double())) < RTOL[max(kh, kw)]


@pytest.mark.parametrize("co", [20, 32])
def test_reads_and_writes_channel_slices_of_wider_tensors(co):
    x, weight, bias = case(2, 24, co, 11, 9, 7, 1, seed=1)
    wide_in = torch.randn(2, 30, 11, 9).contiguous(memory_format=torch.channels_last)
    wide_in[:, 4:28] = x
    wide_out = torch.full((2, co + 12, 11, 9), 7.0).contiguous(memory_format=torch.channels_last)
    conv1d_winograd(wide_in[:, 4:28], winograd1d_filters(weight), bias, relu=True, out=wide_out[:, 5:5 + co])
    want = conv1d_reference(x.double(), weight.double(), bias.double(), relu=True)
    assert rel_err(wide_out[:, 5:5 + co], want) < RTOL[7]
    assert wide_out[:, :5].eq(7).all() and wide_out[:, 5 + co:].eq(7).all()  # nothing written outside the slice


def test_blocks_of_tiles_give_the_same_result(monkeypatch):
    x, weight, bias = case(4, 16, 16, 17, 17, 1, 7, seed=2)
    filters = winograd1d_filters(weight)
    same_in_blocks(monkeypatch, lambda: conv1d_winograd(x, filters, bias), 12, 16)


@pytest.mark.parametrize("where", [(0, 0, 0, 0), (5, 3, 0, 6), (47, 31, 0, 2)])
def test_comparison_catches_one_wrong_tap(where):
    """One tap of one filter off by 1% of the largest tap: well over the tolerance."""
    x, weight, bias = case(2, 32, 48, 17, 17, 1, 7)
    err = wrong_tap_error(lambda w: conv1d_winograd(x, winograd1d_filters(w), bias),
                          lambda w: conv1d_reference(x.double(), w, bias.double()), weight, where)
    assert err > 10 * RTOL[7]


def test_comparison_catches_a_wrong_transform_entry(monkeypatch):
    x, weight, bias = case(2, 32, 48, 17, 17, 7, 1)
    at, g, bt = W1.matrices(7)
    rows = [list(row) for row in bt]
    col = max(range(len(rows)), key=lambda k: abs(rows[3][k]))
    rows[3][col] *= Fraction(10001, 10000)  # off by 1e-4 relative
    monkeypatch.setattr(W1, "matrices", lambda r: (at, g, tuple(map(tuple, rows))))
    got = conv1d_winograd(x, winograd1d_filters(weight), bias)
    assert rel_err(got, conv1d_reference(x.double(), weight.double(), bias.double())) > 2 * RTOL[7]


def test_applies_to_same_padded_stride_1_convolutions_only():
    assert applies(nn.Conv2d(8, 8, (1, 7), padding=(0, 3))) and applies(nn.Conv2d(8, 8, (3, 1), padding=(1, 0)))
    assert not applies(nn.Conv2d(8, 8, (1, 7), padding=(0, 2)))
    assert not applies(nn.Conv2d(8, 8, (1, 7), padding=(0, 3), stride=2))
    assert not applies(nn.Conv2d(8, 8, (1, 5), padding=(0, 2)))
    assert not applies(nn.Conv2d(8, 8, (3, 3), padding=1))
    assert not applies(nn.Conv2d(8, 8, (1, 3), padding=(0, 1), groups=2))


def test_native_refuses_mismatched_buffers():
    x, weight, _ = case(1, 8, 8, 8, 8, 1, 7)
    f = winograd1d_filters(weight)
    with pytest.raises(ValueError):
        native_winograd.winograd1d_input(x, torch.empty(6, 16, 8), (0, 16), f.bt, 0, 6)  # 12 planes needed
    with pytest.raises(ValueError):
        native_winograd.winograd1d_input(x, torch.empty(12, 16, 8), (0, 17), f.bt, 0, 6)  # 8 rows x 2 tiles only
    with pytest.raises(ValueError):
        native_winograd.winograd1d_input(x, torch.empty(12, 16, 8), (0, 16), f.bt, 0, 4)  # F(4, 9) does not exist
    with pytest.raises(ValueError):
        native_winograd.winograd1d_input(x.contiguous(), torch.empty(12, 16, 8), (0, 16), f.bt, 0, 6)  # NCHW
    native_winograd.winograd1d_input(x, torch.empty(12, 16, 8), (0, 16), f.bt, 0, 6)  # and the right arguments pass


@pytest.mark.parametrize("kernel,padding,stride", [((3, 3), 1, 1), ((3, 3), 0, 1), ((1, 7), (0, 3), 1),
                                                   ((7, 1), (3, 0), 1), ((1, 1), 0, 1), ((3, 3), 0, 2),
                                                   ((5, 5), 2, 1)])
@pytest.mark.parametrize("winograd", [True, False])
def test_conv_fp32_matches_conv_then_relu(kernel, padding, stride, winograd):
    conv = nn.Conv2d(24, 40, kernel, stride=stride, padding=padding)
    x = torch.randn(2, 24, 13, 11).contiguous(memory_format=torch.channels_last)
    state = FastState(channels_last=True, winograd=winograd)
    with torch.inference_mode():
        want = conv.double()(x.double())
        conv.float()
        got = conv_fp32(state, conv, x)
        got_relu = conv_fp32(state, conv, x, relu=True)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, want) < 2e-5 and rel_err(got_relu, want.relu()) < 2e-5
