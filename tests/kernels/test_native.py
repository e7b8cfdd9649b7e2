"""gencli's C kernels (gencli.kernels.native) against torch's GroupNorm in float64."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from gencli.kernels import native

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: the C kernels are not built")


def _reference(x, groups, weight, bias, eps, act, sample_bias):
    x = x.double()
    if sample_bias is not None:
        x = x + sample_bias.double()[:, :, None, None]
    y = F.group_norm(x, groups, None if weight is None else weight.double(), None if bias is None else bias.double(), eps)
    return {"silu": F.silu, "relu": F.relu}.get(act, lambda v: v)(y)


def _nhwc(t):
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape,groups", [((3, 64, 8, 8), 32), ((1, 96, 5, 7), 3), ((2, 64, 16, 16), 64),
                                          ((4, 32, 1, 1), 8), ((1, 512, 4, 4), 32),
                                          ((2, 40, 3, 5), 8)])  # 40 channels: a partial 16-lane chunk
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                    (torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("act", [None, "silu", "relu"])
def test_group_norm_matches_torch(shape, groups, dtypes, act):
    gen = torch.Generator().manual_seed(sum(shape) + groups)
    x = _nhwc((torch.randn(shape, generator=gen) * 3 + 2).to(dtypes[0]))
    w, b = torch.randn(shape[1], generator=gen), torch.randn(shape[1], generator=gen)
    t = torch.randn(shape[0], shape[1], generator=gen)
    for weight, bias, sample_bias in ((w, b, None), (None, None, None), (w, b, t)):
        got = native.group_norm_nhwc(x, groups, weight, bias, 1e-5, silu=act == "silu", relu=act == "relu",
                                     sample_bias=sample_bias, out_dtype=dtypes[1])
        assert got.dtype == dtypes[1] and got.shape == x.shape
        assert got.is_contiguous(memory_format=torch.channels_last)
        want = _reference(x, groups, weight, bias, 1e-5, act, sample_bias)
        # fp32 out: summation order only; bf16 out: one rounding of the output (8-bit mantissa)
        tol = 2e-5 if dtypes[1] == torch.float32 else 2 ** -8
        err = ((got.double() - want).abs() / (want.abs() + 1)).max().item()
        assert err <= tol, (shape, dtypes, act, err)


def test_statistics_survive_a_large_mean():
    """The one-pass statistics are shifted: x + 1000 (std 1) normalises as x does, to fp32's
    precision (an unshifted sum of squares would lose ~1e-1 here)."""
    gen = torch.Generator().manual_seed(0)
    x = _nhwc(torch.randn(2, 64, 32, 32, generator=gen, dtype=torch.float64) + 1000)
    got = native.group_norm_nhwc(x.float(), 16, eps=1e-6)
    want = F.group_norm(x.float().double(), 16, eps=1e-6)
    assert (got.double() - want).abs().max().item() < 1e-3


def test_many_pixels_are_summed_accurately():
    gen = torch.Generator().manual_seed(1)
    x = _nhwc(torch.rand(1, 32, 256, 256, generator=gen) * 4)
    got = native.group_norm_nhwc(x, 32)  # instance norm over 65,536 pixels, split across threads
    assert (got.double() - F.group_norm(x.double(), 32)).abs().max().item() < 2e-5


def test_in_place_and_non_finite():
    x = _nhwc(torch.randn(2, 64, 4, 4))
    want = F.group_norm(x, 8)
    native.group_norm_nhwc(x, 8, out=x)
    torch.testing.assert_close(x, want, atol=2e-5, rtol=0)
    y = x.clone()
    y[0, 0, 0, 0] = float("nan")
    got = native.group_norm_nhwc(y.bfloat16(), 8, silu=True)
    assert got[0, :8].float().isnan().all() and got[1].float().isfinite().all()  # NaN stays in its group
    got = native.group_norm_nhwc(y, 64, relu=True)  # an instance norm: NaN only in its channel, as torch's relu
    assert got[0, 0].isnan().all() and not got[0, 1:].isnan().any() and (got[0, 1:] >= 0).all()


def test_bad_arguments_are_refused():
    x = _nhwc(torch.randn(1, 30, 4, 4))
    with pytest.raises(ValueError, match="groups"):
        native.group_norm_nhwc(x, 4)
    with pytest.raises(ValueError, match="channels_last"):
        native.group_norm_nhwc(x, 3, out=torch.empty(1, 30, 4, 4))
    with pytest.raises(ValueError, match="not both"):
        native.group_norm_nhwc(x, 3, silu=True, relu=True)
    assert not native.supports(torch.randn(1, 30, 4, 4))  # NCHW memory
    assert not native.supports(_nhwc(torch.randn(1, 30, 4, 4)).half())


@pytest.mark.parametrize("c1,c2,groups", [(256, 128, 32), (128, 128, 32), (40, 24, 8), (7, 9, 4), (100, 28, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 3])  # one sample: its channels split into blocks among threads
def test_two_inputs_normalise_as_their_concatenation(c1, c2, groups, dtype, n):
    """The UNet's skip connections: cat([x, second], 1) read in place, bit for bit the same output,
    also where a group (12 channels at 384) or a thread's block of channels straddles the two."""
    gen = torch.Generator().manual_seed(c1 + c2 + n)
    x = _nhwc(torch.randn(n, c1, 5, 6, generator=gen).to(dtype))
    second = _nhwc((torch.randn(n, c2, 5, 6, generator=gen) * 3 + 1).to(dtype))
    w, b, t = torch.randn(c1 + c2, generator=gen), torch.randn(c1 + c2, generator=gen), torch.randn(n, c1 + c2)
    want = native.group_norm_nhwc(_nhwc(torch.cat([x, second], 1)), groups, w, b, 1e-5, silu=True, sample_bias=t)
    got = native.group_norm_nhwc(x, groups, w, b, 1e-5, silu=True, sample_bias=t, second=second)
    assert got.shape == (n, c1 + c2, 5, 6) and torch.equal(got, want)


def test_two_inputs_must_match():
    x = _nhwc(torch.randn(2, 32, 4, 4))
    for bad in (torch.randn(2, 32, 4, 4), _nhwc(torch.randn(1, 32, 4, 4)), _nhwc(torch.randn(2, 32, 4, 5)),
                _nhwc(torch.randn(2, 32, 4, 4)).bfloat16()):
        with pytest.raises(ValueError, match="second"):
            native.group_norm_nhwc(x, 8, second=bad)
    with pytest.raises(ValueError, match="groups"):
        native.group_norm_nhwc(x, 8, second=_nhwc(torch.randn(2, 4, 4, 4)))  # 36 channels


def test_blocks_split_samples_among_threads():
    assert native._blocks(16, 256, 32, 2) == 1
    assert native._blocks(1, 256, 32, 2) == 2
    assert native._blocks(1, 64, 32, 4) == 2  # blocks of at least 32 channels
    assert native._blocks(1, 48, 3, 2) == 1  # no whole-group block of >= 32 channels


def test_without_a_compiler_nothing_is_built(tmp_path):
    """No compiler (or GENCLI_NATIVE=0): available() is False and the fast path runs as before."""
    code = ("from gencli.kernels import native; import torch, sys; "
            "from gencli.kernels.fast_path import fuses_silu; "
            "x = torch.randn(1, 64, 4, 4).contiguous(memory_format=torch.channels_last); "
            "sys.exit(0 if not native.available() and not fuses_silu(x) else 1)")
    for env in ({"CC": "no-such-compiler-xyz"}, {"GENCLI_NATIVE": "0"}):
        run_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
        done = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True)
        assert done.returncode == 0, (env, done.stderr)
    assert not (tmp_path / "cache" / "gencli" / "kernels").exists() or not any(
        (tmp_path / "cache" / "gencli" / "kernels").glob("*.so"))


def test_the_build_is_cached(tmp_path):
    code = "from gencli.kernels import native; print(native.available(), native._library.cache_info())"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.stdout.startswith("True"), done.stderr
    assert len(list((tmp_path / "gencli" / "kernels").glob("kernels-*.so"))) == 1


@pytest.mark.parametrize("shape,stride,padding", [((2, 64, 15, 15), 2, 0), ((1, 40, 8, 8), 1, 1), ((3, 5, 4, 7), 2, 1),
                                                  ((1, 17, 3, 3), 2, 0), ((2, 32, 9, 6), 1, 0)])
def test_max_pool3x3_equals_torch_including_nan(shape, stride, padding):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    x[0, 0, 1, 1] = float("nan")
    x[-1, -1, 0, 0] = -float("inf")
    want = F.max_pool2d(x, 3, stride, padding)
    got = native.max_pool3x3_nhwc(x, stride, padding)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())
    assert got.isnan().any()


def test_max_pool3x3_refuses_nchw():
    with pytest.raises(ValueError):
        native.max_pool3x3_nhwc(torch.randn(1, 4, 5, 5), 2)
