"""The inference fast path's dispatch (gencli.kernels.fast_path): when each kernel is used, the
fused extras of a convolution, the fallbacks to torch, and a layer's fast forward against its plain
one. The kernels' own numerics are in test_kernels.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gencli.kernels import native
from gencli.kernels.fast_path import FastState, conv1x1_cat_fast, conv_fast, group_norm_fast
from gencli.models.layers import Upsample2D


# --- Winograd F(4x4, 3x3) --------------------------------------------------------------------
@pytest.mark.parametrize("n, c, co, size", [(2, 32, 48, 8), (3, 64, 32, 12), (1, 32, 32, 16)])
def test_winograd_conv_matches_direct_conv(n, c, co, size):
    torch.manual_seed(n)
    conv = torch.nn.Conv2d(c, co, 3, padding=1)
    x = torch.randn(n, c, size, size)
    res = torch.randn(n, co, size, size)
    tb = torch.randn(n, co)
    state = FastState(channels_last=True, winograd=True)
    assert state.use_winograd(conv, x)
    with torch.no_grad():
        got = conv_fast(state, conv, x.clone(), silu=True, sample_bias=tb, residual=res)
        want = conv(F.silu(x)) + tb[:, :, None, None] + res
        plain = conv_fast(state, conv, x.clone())
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    torch.testing.assert_close(plain, conv(x), rtol=0, atol=2e-5)


def test_winograd_is_used_only_where_it_applies():
    state = FastState(channels_last=True, winograd=None)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    x = torch.zeros(4, 128, 16, 16)
    assert state.use_winograd(conv, x)
    assert not state.use_winograd(conv, torch.zeros(4, 128, 14, 14))  # sides must be multiples of 4
    assert not state.use_winograd(conv, torch.zeros(1, 128, 4, 4))  # too few tiles: direct is faster
    assert not state.use_winograd(conv, x.double())
    assert not state.use_winograd(torch.nn.Conv2d(128, 128, 3, stride=2, padding=1), x)
    assert not state.use_winograd(torch.nn.Conv2d(3, 128, 3, padding=1), torch.zeros(4, 3, 16, 16))
    assert not state.use_winograd(torch.nn.Conv2d(64, 64, 3, padding=1), torch.zeros(4, 64, 16, 16))  # narrow
    assert FastState(True, True).use_winograd(torch.nn.Conv2d(64, 64, 3, padding=1), torch.zeros(4, 64, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not state.use_winograd(conv, x)
    assert not FastState(True, False).use_winograd(conv, x)


# --- GroupNorm on NHWC, upsampling as a transposed convolution --------------------------------
@pytest.mark.parametrize("shape,groups", [((2, 32, 28, 28), 16), ((4, 64, 14, 14), 32), ((16, 64, 7, 7), 16),
                                          ((4, 96, 9, 11), 8)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_fast_matches_group_norm_on_nhwc(shape, groups, affine):
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(groups, shape[1], eps=1e-6, affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    # a large common offset per channel: a one-pass E[x^2] - E[x]^2 would lose digits here
    x = (torch.randn(shape) * 0.5 + 30 * torch.randn(1, shape[1], 1, 1)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = group_norm_fast(norm, x)
        want = F.group_norm(x.double(), groups, None if norm.weight is None else norm.weight.double(),
                            None if norm.bias is None else norm.bias.double(), norm.eps)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-5)


def test_group_norm_fast_leaves_other_layouts_to_torch(monkeypatch):
    norm = torch.nn.GroupNorm(8, 32)
    x = torch.randn(2, 32, 28, 28)  # NCHW
    small = torch.randn(1, 32, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(group_norm_fast(norm, x), norm(x))
        # NHWC goes to the C kernel where it is built, else small tensors to torch's
        torch.testing.assert_close(group_norm_fast(norm, small), norm(small), atol=2e-5, rtol=0)
        monkeypatch.setattr(native, "supports", lambda *a, **k: False)
        assert torch.equal(group_norm_fast(norm, small), norm(small))


@pytest.mark.parametrize("size", [(7, 7), (14, 14), (5, 8)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_upsample_as_transposed_convolution_matches_nearest_then_conv(size, channels_last):
    torch.manual_seed(0)
    up = Upsample2D(48).eval()
    x = torch.randn(3, 48, *size)
    state = FastState(channels_last, None)
    with torch.inference_mode():
        want = up(x)
        got = up._forward_fast(state, x)
    assert got.shape == want.shape == (3, 48, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_group_norm_fast_on_bf16(monkeypatch):
    norm = torch.nn.GroupNorm(8, 32)
    nb = torch.nn.GroupNorm(8, 32).bfloat16()
    x = torch.randn(2, 32, 28, 28).contiguous(memory_format=torch.channels_last)
    t = torch.randn(2, 32)
    with torch.inference_mode():
        want = nb(x.bfloat16() + t.bfloat16()[:, :, None, None])  # torch: bf16 in and out
        if native.available():  # the C kernel: fp32 arithmetic, one rounding of the output
            got = group_norm_fast(norm, x.bfloat16(), sample_bias=t.bfloat16())
            assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(got.float(), want.float(), atol=0.05, rtol=0.02)
            with torch.autocast("cpu", torch.bfloat16):  # autocast: fp32 in, bf16 out (what the next conv takes)
                got = group_norm_fast(norm, x, silu=True)
            assert got.dtype == torch.bfloat16
            torch.testing.assert_close(got.float(), F.silu(norm(x)), atol=0.02, rtol=0.01)
        monkeypatch.setattr(native, "supports", lambda *a, **k: False)
        assert torch.equal(group_norm_fast(nb, x.bfloat16(), sample_bias=t.bfloat16()), want)


def test_conv_fast_one_by_one_as_matmul_and_channels_last_outputs():
    torch.manual_seed(0)
    state = FastState(channels_last=True, winograd=None)
    x = torch.randn(2, 40, 6, 6).contiguous(memory_format=torch.channels_last)
    convs = (torch.nn.Conv2d(40, 24, 1), torch.nn.Conv2d(40, 24, 3, padding=1), torch.nn.Conv2d(40, 1, 3, padding=1))
    for conv in convs:
        with torch.inference_mode():
            got = conv_fast(state, conv, x.clone())
            want = conv(x)
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("native_on", [True, False])
def test_concatenated_inputs_are_read_in_place(native_on, monkeypatch):
    """A decoder's skip connection: the shortcut 1x1 conv and the norm of cat([x, second], 1),
    without the concatenation (two matmuls; the C norm reading both), or with it as a fallback."""
    torch.manual_seed(0)
    if not native_on:
        monkeypatch.setattr(native, "supports", lambda *a, **k: False)
    state = FastState(channels_last=True, winograd=None)
    x, second = (torch.randn(2, c, 6, 5).contiguous(memory_format=torch.channels_last) for c in (40, 24))
    cat = torch.cat([x, second], 1)
    conv, norm = torch.nn.Conv2d(64, 48, 1), torch.nn.GroupNorm(16, 64)  # groups of 4: one straddles 40
    torch.nn.init.normal_(norm.weight)
    with torch.inference_mode():
        torch.testing.assert_close(conv1x1_cat_fast(state, conv, x, second), conv(cat), rtol=0, atol=1e-5)
        got = group_norm_fast(norm, x, silu=True, second=second)
        torch.testing.assert_close(got, F.silu(norm(cat)), rtol=0, atol=2e-5)
        with torch.autocast("cpu", torch.bfloat16):  # autocast: the matmul on the concatenation
            torch.testing.assert_close(conv1x1_cat_fast(state, conv, x, second).float(), conv(cat).float(), rtol=0.02,
                                       atol=0.05)
    assert conv1x1_cat_fast(state, conv, x, second).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("winograd, size", [(True, (6, 8)), (True, (5, 8)), (False, (6, 8))])
def test_upsample_fast_takes_winograd_or_the_transposed_convolution(winograd, size):
    torch.manual_seed(1)
    up = Upsample2D(32).eval()
    x = torch.randn(2, 32, *size)
    state = FastState(True, winograd)
    n, c, h, w = x.shape
    assert state.use_winograd(up.conv, x, (n, c, 2 * h, 2 * w)) == (winograd and h % 2 == 0 and w % 2 == 0)
    with torch.inference_mode():
        torch.testing.assert_close(up._forward_fast(state, x), up(x), rtol=0, atol=2e-5)


# --- the translation generators' fast path ----------------------------------------------------
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("c_kernel", [True, False])
def test_instance_norm_fast_matches_instance_norm(relu, affine, c_kernel, monkeypatch):
    """With gencli's C kernel (the ReLU in its pass) and without it (torch's NHWC kernel)."""
    from gencli.kernels import fast_path
    from gencli.kernels.fast_path import instance_norm_fast

    if c_kernel and not fast_path.native.available():
        pytest.skip("no C compiler: the C kernels are not built")
    if not c_kernel:
        monkeypatch.setattr(fast_path.native, "supports", lambda *a, **k: False)
    torch.manual_seed(3)
    norm = torch.nn.InstanceNorm2d(48, affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = (torch.randn(2, 48, 12, 16) * 3 + 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = norm(x.contiguous())
        want = want.relu() if relu else want
        got = instance_norm_fast(norm, x, relu=relu)
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
        nchw = instance_norm_fast(norm, x.contiguous(), relu=relu)  # other layouts: torch's own
        torch.testing.assert_close(nchw, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("winograd", [None, True, False])
def test_resnet_generator_fast_path_matches_its_plain_forward(winograd):
    from gencli.models.gan.norms import init_weights
    from gencli.models.translation.networks import ResnetGenerator

    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=32, n_blocks=2)).eval()  # 128-channel blocks: Winograd applies
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.inference_mode():
        want = g(x)
        with g.fast_inference(winograd=winograd) as fast:
            got = fast(x)
        assert g._fast is None  # left as it was
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert (got - want).abs().max() > 0 or winograd is False  # the fast path did run


def test_resnet_generator_fast_path_uses_winograd_and_the_narrow_output_conv():
    from gencli.kernels import fast_path
    from gencli.models.translation.networks import ResnetGenerator

    g = ResnetGenerator(ngf=32, n_blocks=1).eval()
    calls = {"wino": 0, "narrow": 0}
    real_wino, real_narrow = fast_path.conv3x3_winograd, fast_path.conv_few_outputs

    def wino(*a, **k):
        calls["wino"] += 1
        assert k["padding_mode"] == "reflect"
        return real_wino(*a, **k)

    def narrow(*a, **k):
        calls["narrow"] += 1
        return real_narrow(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_path, "conv3x3_winograd", wino)
        mp.setattr(fast_path, "conv_few_outputs", narrow)
        with torch.inference_mode(), g.fast_inference():
            g(torch.zeros(1, 3, 64, 64))
    assert calls == {"wino": 2, "narrow": 1}  # the block's two convs; the RGB output layer


def test_fast_state_is_kept_across_keep_blocks_only():
    from gencli.models.translation.networks import ResnetGenerator

    g = ResnetGenerator(ngf=8, n_blocks=1).eval()
    with g.fast_inference(keep=True):
        first = g._fast
    with g.fast_inference(keep=True):
        assert g._fast is first  # the same caches (Winograd filters built once)
    with g.fast_inference():
        assert g._fast is not first
    with g.fast_inference(keep=True, winograd=False):
        assert g._fast is not first and g._fast.winograd is False


def test_a_network_with_a_kept_fast_state_can_be_copied_and_pickled():
    import copy
    import io

    from gencli.models.translation.networks import ResnetGenerator

    g = ResnetGenerator(ngf=8, n_blocks=1).eval()
    with torch.inference_mode(), g.fast_inference(keep=True):
        g(torch.zeros(1, 3, 16, 16))
    assert g._fast_kept.cache  # filled
    twin = copy.deepcopy(g)  # what export_onnx does
    assert twin._fast_kept is not g._fast_kept and not twin._fast_kept.cache
    assert twin._fast_kept.channels_last == g._fast_kept.channels_last
    torch.save(g, io.BytesIO())


def test_instance_norm_fast_normalises_bf16_in_fp32_and_returns_bf16_as_torch_does():
    from gencli.kernels.fast_path import instance_norm_fast

    torch.manual_seed(4)
    norm = torch.nn.InstanceNorm2d(32)
    x = (torch.randn(2, 32, 8, 12) * 2 + 1).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = norm(x.float().contiguous()).relu()  # fp32 statistics of the same bf16 values
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = instance_norm_fast(norm, x, relu=True)
            assert norm(x).dtype == torch.bfloat16  # what torch returns under autocast
    assert got.dtype == torch.bfloat16
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.float(), want, rtol=2 ** -8, atol=1e-6)  # only the result's bf16 rounding
