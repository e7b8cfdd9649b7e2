"""oneDNN's fused operators (gencli.kernels.onednn) and the bf16 fast path that uses them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from gencli.kernels import fast_path, onednn
from gencli.kernels.fast_path import FastState, conv_fast

needs_onednn = pytest.mark.skipif(not onednn.usable(), reason="torch without oneDNN's fused operators")


def _nhwc(t):
    return t.contiguous(memory_format=torch.channels_last)


@needs_onednn
@pytest.mark.parametrize("shape,stride,padding", [((2, 32, 8, 8), 1, 1), ((3, 16, 9, 7), 2, 1), ((1, 24, 6, 6), 1, 0)])
def test_packed_convolution_with_residual(shape, stride, padding):
    gen = torch.Generator().manual_seed(0)
    x = _nhwc(torch.randn(shape, generator=gen)).bfloat16()
    w = _nhwc(torch.randn(40, shape[1], 3, 3, generator=gen) * 0.1).bfloat16()
    b = torch.randn(40, generator=gen).bfloat16()
    want = F.conv2d(x.double(), w.double(), b.double(), stride, padding)
    r = _nhwc(torch.randn(want.shape, generator=gen)).bfloat16()
    with torch.inference_mode():
        packed = onednn.pack_conv_weight(w, (padding,) * 2, (stride,) * 2, (1, 1), x.shape)
        plain = onednn.conv2d(x, packed, b, (padding,) * 2, (stride,) * 2, (1, 1))
        added = onednn.conv2d(x, packed, b, (padding,) * 2, (stride,) * 2, (1, 1), residual=r)
    assert plain.is_contiguous(memory_format=torch.channels_last) and plain.dtype == torch.bfloat16
    # bf16 inputs, fp32 accumulation, one rounding of the output (2^-8 relative)
    torch.testing.assert_close(plain.double(), want, rtol=2 ** -7, atol=1e-2)
    torch.testing.assert_close(added.double(), want + r.double(), rtol=2 ** -7, atol=2e-2)


@needs_onednn
def test_linear_add():
    gen = torch.Generator().manual_seed(1)
    x, other = torch.randn(37, 64, generator=gen).bfloat16(), torch.randn(37, 48, generator=gen).bfloat16()
    w, b = (torch.randn(48, 64, generator=gen) * 0.1).bfloat16(), torch.randn(48, generator=gen).bfloat16()
    with torch.inference_mode():
        got = onednn.linear_add(x, other, w, b)
    want = F.linear(x.double(), w.double(), b.double()) + other.double()
    torch.testing.assert_close(got.double(), want, rtol=2 ** -7, atol=2e-2)


@needs_onednn
def test_conv_fast_in_bf16_packs_once_and_adds_the_residual(monkeypatch):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).eval()
    state = FastState(channels_last=True, winograd=None)
    x, res = _nhwc(torch.randn(2, 32, 8, 8)), _nhwc(torch.randn(2, 32, 8, 8))
    packs = []
    real = onednn.pack_conv_weight
    monkeypatch.setattr(onednn, "pack_conv_weight", lambda *a: packs.append(a[-1]) or real(*a))
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        first = conv_fast(state, conv, x, residual=res)
        again = conv_fast(state, conv, x, residual=res)
        want = conv(x) + res
    assert len(packs) == 1 and torch.equal(first, again)  # packed once for this input shape
    assert first.dtype == torch.bfloat16 and first.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(first.float(), want.float(), rtol=0.02, atol=0.05)
    with torch.inference_mode():
        conv.weight.mul_(2)  # an in-place change of the weight is seen (the cache is keyed on its version)
        with torch.autocast("cpu", torch.bfloat16):
            changed = conv_fast(state, conv, x)
            want = conv(x)
    assert len(packs) == 2
    torch.testing.assert_close(changed.float(), want.float(), rtol=0.02, atol=0.05)


def test_switched_off_with_the_environment():
    code = "from gencli.kernels import onednn; import sys; sys.exit(0 if not onednn.usable() else 1)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GENCLI_ONEDNN": "0"})
    assert done.returncode == 0


def test_fast_path_leaves_fp32_to_the_plain_operators():
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    state = FastState(channels_last=True, winograd=False)
    x = _nhwc(torch.randn(1, 8, 4, 4))
    assert not fast_path._onednn_conv(state, conv, x)  # fp32, no autocast
    with torch.autocast("cpu", torch.bfloat16):
        assert fast_path._onednn_conv(state, conv, x) == onednn.usable()
    assert not fast_path._onednn_conv(FastState(channels_last=False, winograd=False), conv, x.bfloat16())
