"""Each fast-path kernel in gencli.kernels against its plain-torch reference (run in float64 as the
truth), on random inputs of several shapes, and checks that the comparison is tight enough to
catch a broken kernel (one wrong filter tap, one wrong transform entry, a one-pass variance)."""

from __future__ import annotations

import pytest
import torch

from gencli.kernels import group_norm as GN
from gencli.kernels import native
from gencli.kernels import native_winograd
from gencli.kernels import winograd as W
from gencli.kernels.fast_path import FastState
from gencli.kernels.group_norm import group_norm_nhwc, group_norm_reference
from gencli.kernels.upsample import upsample2x_conv3x3, upsample2x_conv3x3_reference, upsample2x_conv3x3_weight
from gencli.kernels.winograd import conv3x3_reference, conv3x3_winograd, winograd_filters, winograd_matrices

from winograd_checks import use_c_kernels

FP32_RTOL = 1e-5  # relative to the largest output magnitude


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def conv_case(n, c, co, h, w, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(co, c, 3, 3, generator=g, dtype=torch.float64) / (3 * c ** 0.5)
    bias = torch.randn(co, generator=g, dtype=torch.float64)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


def as64(*ts):
    return tuple(None if t is None else t.double() for t in ts)


# --- Winograd F(4x4, 3x3) ----------------------------------------------------------------------
@pytest.fixture(params=["torch", "blocked", "fused"])
def winograd_transforms(request, monkeypatch):
    """The Winograd tests run three times: transforms as torch operators, as gencli's C kernels
    around torch's GEMMs, and as the fused C kernel."""
    if request.param == "torch":
        monkeypatch.setattr(W, "native_transforms", lambda x: False)
    else:
        use_c_kernels(monkeypatch, request.param == "fused")


both_transforms = pytest.mark.usefixtures("winograd_transforms")
# (2, 64, 64, 16, 16): both tile buffers (32 tiles x 64 channels) get planes padded by native_winograd.plane_stride
CONV_SHAPES = [(2, 32, 48, 8, 8), (1, 3, 16, 4, 12), (3, 64, 32, 12, 12), (2, 128, 96, 16, 20), (1, 20, 19, 8, 8),
               (2, 64, 64, 16, 16)]


@both_transforms
def test_winograd_matrices_compute_a_correlation_exactly():
    at, g, bt = winograd_matrices(torch.float64)
    torch.manual_seed(0)
    for _ in range(5):
        d, w = torch.randn(6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
        y = at @ ((g @ w) * (bt @ d))
        expected = torch.stack([(d[i:i + 3] * w).sum() for i in range(4)])
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    assert at[:, W.WINO_BIAS_INDEX // 6].eq(1).all()  # the bias row contributes once to every output


@both_transforms
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_winograd_matches_conv2d(shape):
    x, weight, bias = conv_case(*shape)
    got = conv3x3_winograd(x, winograd_filters(weight), bias)
    assert got.shape == (shape[0], shape[2], shape[3], shape[4]) and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, conv3x3_reference(*as64(x, weight, bias))) < FP32_RTOL
    # and the fp32 reference agrees to the same tolerance (what the fast path replaces)
    assert rel_err(got, conv3x3_reference(x, weight, bias)) < FP32_RTOL


@both_transforms
@pytest.mark.parametrize("shape", CONV_SHAPES[:3], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_winograd_fused_silu_biases_and_residual(shape, channels_last):
    n, c, co, h, w = shape
    x, weight, bias = conv_case(*shape, seed=1)
    g = torch.Generator().manual_seed(2)
    sample_bias, residual = torch.randn(n, co, generator=g), torch.randn(n, co, h, w, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_before = x.clone()
    got = conv3x3_winograd(x, winograd_filters(weight), bias, silu=True, sample_bias=sample_bias, residual=residual)
    want = conv3x3_reference(*as64(x, weight, bias), silu=True, sample_bias=sample_bias.double(),
                             residual=residual.double())
    assert rel_err(got, want) < FP32_RTOL
    assert torch.equal(x, x_before)  # SiLU goes into the kernel's own buffer
    no_bias = conv3x3_winograd(x, winograd_filters(weight))
    assert rel_err(no_bias, conv3x3_reference(*as64(x, weight))) < FP32_RTOL


@both_transforms
@pytest.mark.parametrize("shape", CONV_SHAPES[:3], ids=str)
def test_winograd_relu_in_the_output_transform(shape):
    x, weight, bias = conv_case(*shape, seed=5)
    got = conv3x3_winograd(x, winograd_filters(weight), bias, relu=True)
    assert got.min() >= 0 and (got == 0).any()
    assert rel_err(got, conv3x3_reference(*as64(x, weight, bias), relu=True)) < FP32_RTOL


# sides that are not multiples of 4 (partial last tiles) and unpadded convolutions: the C transforms only
ANY_SIZE = [((2, 16, 24, 35, 35), 1), ((1, 8, 12, 73, 71), 0), ((2, 32, 40, 9, 6), 0), ((1, 20, 19, 5, 7), 1),
            ((3, 16, 16, 8, 8), 0), ((1, 4, 4, 3, 3), 0),
            # output channels in multiples of 16 (the fused kernel's; 48 and 80 end on a narrower register block)
            ((2, 16, 48, 35, 35), 1), ((1, 8, 64, 73, 71), 0), ((2, 32, 80, 9, 6), 0), ((1, 3, 32, 5, 7), 1)]


@pytest.mark.parametrize("fused", [False, True], ids=["blocked", "fused"])
@pytest.mark.parametrize("shape,padding", ANY_SIZE, ids=str)
def test_winograd_any_size_and_unpadded_with_the_c_transforms(shape, padding, fused, monkeypatch):
    use_c_kernels(monkeypatch, fused)
    n, c, co, h, w = shape
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    x, weight, bias = conv_case(*shape, seed=3)
    g = torch.Generator().manual_seed(4)
    sample_bias, residual = torch.randn(n, co, generator=g), torch.randn(n, co, ho, wo, generator=g)
    got = conv3x3_winograd(x, winograd_filters(weight), bias, padding=padding, sample_bias=sample_bias,
                           residual=residual, silu=True)
    assert got.shape == (n, co, ho, wo)
    want = conv3x3_reference(*as64(x, weight, bias), padding=padding, sample_bias=sample_bias.double(),
                             residual=residual.double(), silu=True)
    assert rel_err(got, want) < FP32_RTOL


@pytest.mark.parametrize("reflect", [False, True])
def test_winograd_fused_gives_the_same_bits_for_any_group_and_thread_count(reflect, monkeypatch):
    """Groups of tiles are a unit of work, not of arithmetic: 1, 3 (rows left over after the
    register blocks), 32 and more than all the tiles, on 1 or 2 threads, give the same output, equal
    to the blocked path's within fp32 rounding."""
    use_c_kernels(monkeypatch, fused=True)
    x, weight, bias = conv_case(2, 24, 48, 13, 10, seed=6)
    x = x.contiguous(memory_format=torch.channels_last)
    u = winograd_filters(weight).u
    mode = "reflect" if reflect else "zeros"
    outs = []
    threads = torch.get_num_threads()
    try:
        for group, nthreads in ((1, 1), (3, 2), (32, 2), (10_000, 1), (32, 1)):
            torch.set_num_threads(nthreads)
            out = torch.full((2, 48, 13, 10), float("nan")).contiguous(memory_format=torch.channels_last)
            outs.append(native_winograd.winograd_fused(x, u, out, bias=bias, reflect=reflect, relu=True, group=group))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
    want = conv3x3_reference(*as64(x, weight, bias), padding_mode=mode, relu=True)
    assert rel_err(outs[0], want) < FP32_RTOL


def test_winograd_fused_refuses_what_it_cannot_compute():
    if not native.available():
        pytest.skip("no C compiler: the C kernels are not built")
    x, weight, bias = conv_case(1, 8, 24, 8, 8)
    x = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty(1, 24, 8, 8).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="multiple of 16"):  # 24 output channels
        native_winograd.winograd_fused(x, winograd_filters(weight).u, out)
    x, weight, bias = conv_case(1, 8, 16, 8, 8)
    with pytest.raises(ValueError, match="NHWC"):  # NCHW input
        native_winograd.winograd_fused(x, winograd_filters(weight).u, out[:, :16])


@pytest.mark.skipif(not native.available(), reason="no C compiler: the C kernels are not built")
def test_fused_where_it_pays(monkeypatch):
    """Fused: output channels in multiples of 16, small enough filters, enough tiles for every thread,
    an AVX-512 build."""
    threads = torch.get_num_threads()
    enough = W.FUSED_MIN_GROUPS * native_winograd.FUSED_GROUP * threads
    assert W.fused_applies(36, 32, 64, enough) == (native_winograd.gemm_lanes() == 16)  # AVX-512 builds only
    assert not W.fused_applies(36, 32, 24, enough)  # channels
    assert not W.fused_applies(36, 448, 384, 10 * enough)  # filters
    assert not W.fused_applies(36, 32, 64, enough - 1)  # tiles
    monkeypatch.setattr(native_winograd, "gemm_lanes", lambda: 8)
    assert not W.fused_applies(36, 32, 64, enough)  # an AVX2 build


def test_winograd_torch_transforms_refuse_what_only_the_c_ones_take(monkeypatch):
    monkeypatch.setattr(W, "native_transforms", lambda x: False)
    x, weight, bias = conv_case(1, 4, 4, 8, 8)
    with pytest.raises(ValueError, match="C kernels"):
        conv3x3_winograd(x, winograd_filters(weight), bias, padding=0)
    x, weight, bias = conv_case(1, 4, 4, 6, 8)
    with pytest.raises(ValueError, match="C kernels"):
        conv3x3_winograd(x, winograd_filters(weight), bias)
    with pytest.raises(ValueError, match="padding"):
        conv3x3_winograd(x, winograd_filters(weight), bias, padding=0, padding_mode="reflect")


@both_transforms
def test_winograd_in_float64_is_exact_to_rounding():
    x, weight, bias = conv_case(2, 16, 24, 8, 12, dtype=torch.float64)
    got = conv3x3_winograd(x, winograd_filters(weight), bias)
    assert rel_err(got, conv3x3_reference(x, weight, bias)) < 1e-13


@both_transforms
def test_winograd_reused_workspace_gives_the_same_bits():
    state = FastState(channels_last=True, winograd=True)
    big = conv_case(2, 32, 32, 16, 16, seed=3)
    small = conv_case(1, 32, 32, 8, 8, seed=4)
    for x, weight, bias in (big, small, big):  # the second call reuses (a slice of) larger buffers
        filters = winograd_filters(weight)
        fresh = conv3x3_winograd(x, filters, bias, silu=True)
        reused = conv3x3_winograd(x, filters, bias, silu=True, workspace=state.workspace)
        assert torch.equal(fresh, reused)


@pytest.mark.skipif(not native.available(), reason="no C compiler: the C kernels are not built")
def test_winograd_gemms_write_contiguous_planes_out_of_each_others_cache_sets(monkeypatch):
    """16 tiles x 64 channels is a 4 KiB-multiple plane: the GEMMs get a spare row (their output
    stays contiguous, one batched BLAS call) that the output transform never reads, even when the
    scratch memory holds NaNs."""
    use_c_kernels(monkeypatch, fused=False)
    outs = []
    bmm = torch.bmm

    def recording(a, b, *, out=None):
        outs.append(out)
        return bmm(a, b, out=out)
    monkeypatch.setattr(torch, "bmm", recording)
    x, weight, bias = conv_case(1, 32, 64, 16, 16, seed=5)
    filters = winograd_filters(weight)
    poisoned = conv3x3_winograd(x, filters, bias, workspace=lambda role, n, like: torch.full((n,), float("nan")))
    assert [o.shape for o in outs] == [(36, 17, 64)] and outs[0].is_contiguous()
    assert (outs[0].stride(0) * 4) % 4096 != 0
    assert torch.equal(poisoned, conv3x3_winograd(x, filters, bias))
    assert rel_err(poisoned, conv3x3_reference(*as64(x, weight, bias))) < FP32_RTOL


@both_transforms
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (5, 3, 1, 1), (47, 31, 2, 1)])
def test_winograd_comparison_catches_one_wrong_tap(where):
    """One tap of one filter off by 1% of the largest tap: well over the tolerance."""
    x, weight, bias = conv_case(2, 32, 48, 8, 8)
    broken = weight.clone()
    broken[where] += 0.01 * weight.abs().max()
    got = conv3x3_winograd(x, winograd_filters(broken), bias)
    assert rel_err(got, conv3x3_reference(*as64(x, weight, bias))) > 10 * FP32_RTOL


@both_transforms
def test_winograd_comparison_catches_a_wrong_transform_entry(monkeypatch):
    x, weight, bias = conv_case(2, 32, 48, 8, 8)
    rows = [list(r) for r in W._WINO_G]
    rows[3][1] = "-8001/15000"  # -8/15 off by 1.25e-4 relative
    monkeypatch.setattr(W, "_WINO_G", tuple(tuple(r) for r in rows))
    monkeypatch.setattr(W, "_matrices64", W.winograd_matrices)  # past the parsed-once cache
    got = conv3x3_winograd(x, winograd_filters(weight), bias)
    assert rel_err(got, conv3x3_reference(*as64(x, weight, bias))) > 2 * FP32_RTOL


# --- GroupNorm on NHWC -------------------------------------------------------------------------
GN_CASES = [((2, 32, 28, 28), 16), ((4, 64, 14, 14), 32), ((4, 96, 9, 11), 8), ((1, 8, 3, 5), 2), ((3, 6, 4, 4), 6)]


def gn_case(shape, seed=0, offset=30.0):
    g = torch.Generator().manual_seed(seed)
    # a large common offset per channel: a one-pass E[x^2] - E[x]^2 would lose digits here
    x = torch.randn(shape, generator=g) * 0.5 + offset * torch.randn(1, shape[1], 1, 1, generator=g)
    weight, bias = torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)
    return x.contiguous(memory_format=torch.channels_last), weight, bias


@pytest.mark.parametrize("shape, groups", GN_CASES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_nhwc_matches_group_norm(shape, groups, affine):
    x, weight, bias = gn_case(shape)
    if not affine:
        weight = bias = None
    got = group_norm_nhwc(x, groups, weight, bias, 1e-6)
    assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, group_norm_reference(*as64(x), groups, *as64(weight, bias), 1e-6)) < FP32_RTOL


def test_group_norm_nhwc_on_nchw_input_and_weight_without_bias():
    x, weight, _ = gn_case((2, 32, 8, 8), seed=1, offset=1.0)
    x = x.contiguous()
    got = group_norm_nhwc(x, 8, weight, None, 1e-5)
    assert rel_err(got, group_norm_reference(x.double(), 8, weight.double(), None, 1e-5)) < FP32_RTOL


def test_group_norm_comparison_catches_one_pass_variance_and_a_wrong_scale(monkeypatch):
    x, weight, bias = gn_case((2, 32, 28, 28), seed=2)
    want = group_norm_reference(*as64(x), 16, *as64(weight, bias), 1e-6)
    # one channel's scale off by 0.1%
    broken = weight.clone()
    broken[7] *= 1.001
    assert rel_err(group_norm_nhwc(x, 16, broken, bias, 1e-6), want) > 10 * FP32_RTOL

    # the textbook one-pass variance, E[x^2] - E[x]^2, in fp32
    def one_pass(x, num_groups, weight=None, bias=None, eps=1e-5):
        n, c, h, w = x.shape
        xv = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        avg = GN._group_average(c, num_groups, h * w, x.device)
        mean = torch.mm(xv.sum(1), avg)
        var = torch.mm((xv * xv).sum(1), avg) - mean * mean
        out = (xv - mean[:, None]) * (var + eps).rsqrt()[:, None] * weight + bias
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    assert rel_err(one_pass(x, 16, weight, bias, 1e-6), want) > 2 * FP32_RTOL


# --- nearest x2 upsampling + 3x3 conv as a transposed convolution ------------------------------
UP_SHAPES = [(3, 48, 7, 7), (2, 16, 5, 8), (1, 3, 1, 1), (4, 32, 14, 14)]


@pytest.mark.parametrize("shape", UP_SHAPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_transposed_conv_matches_nearest_then_conv(shape, channels_last):
    n, c, h, w = shape
    x, weight, bias = conv_case(n, c, c + 5, h, w)
    wt = upsample2x_conv3x3_weight(weight)
    if channels_last:
        x, wt = (t.contiguous(memory_format=torch.channels_last) for t in (x, wt))
    got = upsample2x_conv3x3(x, wt, bias)
    assert got.shape == (n, c + 5, 2 * h, 2 * w) and got.dtype == torch.float32
    assert rel_err(got, upsample2x_conv3x3_reference(*as64(x, weight, bias))) < FP32_RTOL


@pytest.mark.parametrize("shape", UP_SHAPES[:2], ids=str)
def test_upsample_transposed_conv_in_bf16(shape):
    """Under bf16 (autocast or bf16 weights) the fast path runs this kernel in bf16: its error is
    that of the bf16 reference, not more."""
    n, c, h, w = shape
    x, weight, bias = conv_case(n, c, c, h, w)
    want = upsample2x_conv3x3_reference(*as64(x, weight, bias))
    xb, wb, bb = (t.bfloat16() for t in (x, weight, bias))
    got = upsample2x_conv3x3(xb, upsample2x_conv3x3_weight(wb), bb)
    assert got.dtype == torch.bfloat16
    ref_err = rel_err(upsample2x_conv3x3_reference(xb, wb, bb), want)
    assert rel_err(got, want) < max(2 * ref_err, 1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = upsample2x_conv3x3(x, upsample2x_conv3x3_weight(weight), bias)
    assert rel_err(auto, want) < max(2 * ref_err, 1e-2)


@pytest.mark.parametrize("where", [(0, 0, 0, 0), (9, 4, 2, 1), (20, 15, 1, 2)])
def test_upsample_comparison_catches_one_wrong_tap(where):
    x, weight, bias = conv_case(2, 16, 21, 5, 8)
    broken = weight.clone()
    broken[where] += 0.01 * weight.abs().max()
    got = upsample2x_conv3x3(x, upsample2x_conv3x3_weight(broken), bias)
    assert rel_err(got, upsample2x_conv3x3_reference(*as64(x, weight, bias))) > 10 * FP32_RTOL


@both_transforms
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_winograd_with_reflection_padding_matches_reflect_pad_then_conv(shape):
    """padding_mode="reflect" is ReflectionPad2d(1) + an unpadded conv (the CycleGAN ResnetBlock);
    the residual is added on the way out."""
    x, weight, bias = conv_case(*shape, seed=5)
    residual = torch.randn(shape[0], shape[2], shape[3], shape[4], generator=torch.Generator().manual_seed(6))
    got = conv3x3_winograd(x, winograd_filters(weight), bias, residual=residual, padding_mode="reflect")
    want = conv3x3_reference(*as64(x, weight, bias), residual=residual.double(), padding_mode="reflect")
    assert rel_err(got, want) < FP32_RTOL
    # the border matters: zero padding is far off, so the comparison can tell the two apart
    zeros = conv3x3_reference(*as64(x, weight, bias), residual=residual.double())
    assert rel_err(zeros, want) > 100 * FP32_RTOL
    with pytest.raises(ValueError, match="padding_mode"):
        conv3x3_winograd(x, winograd_filters(weight), bias, padding_mode="circular")


# --- convolutions to few output channels ------------------------------------------------------
@pytest.mark.parametrize("r", [2, 4])
@pytest.mark.parametrize("n, c, co, k, h, w", [(1, 64, 3, 7, 20, 24), (2, 16, 1, 5, 9, 16), (1, 32, 4, 7, 12, 32)])
def test_narrow_conv_matches_conv2d(r, n, c, co, k, h, w):
    from gencli.kernels.narrow_conv import conv_few_outputs, conv_few_outputs_reference, grouped_weight, input_width

    g = torch.Generator().manual_seed(r + c)
    out_w = w - k + 1
    wide = input_width(w, k, r)
    assert wide % r == 0 and wide >= w
    x = torch.randn(n, c, h, wide, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(co, c, k, k, generator=g) / (k * c ** 0.5)
    bias = torch.randn(co, generator=g)
    got = conv_few_outputs(x, grouped_weight(weight, r), bias, r, out_w)
    want = conv_few_outputs_reference(x.double(), weight.double(), bias.double(), out_w)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, want) < FP32_RTOL
    # one tap of the regrouped kernel moved: caught
    bad = grouped_weight(weight, r)
    bad[0, 0, 0, 0] += bad.abs().max()
    assert rel_err(conv_few_outputs(x, bad, bias, r, out_w), want) > 100 * FP32_RTOL
    with pytest.raises(ValueError, match="multiple of r"):
        conv_few_outputs(x[..., :wide - 1].contiguous(memory_format=torch.channels_last), grouped_weight(weight, r),
                         bias, r, out_w)
    with pytest.raises(ValueError, match="input_width"):  # input_width is the least that covers every output
        conv_few_outputs(x[..., :wide - r].contiguous(memory_format=torch.channels_last), grouped_weight(weight, r),
                         bias, r, out_w)
