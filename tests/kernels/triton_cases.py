"""The cases of tests/kernels/test_triton.py: the Triton kernels against the torch code they
replace. Not collected by the default suite (no test_ prefix): test_triton.py runs this file in a
child pytest, under Triton's interpreter on the CPU (and compiled on a CUDA machine)."""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and os.environ.get("GENCLI_TRITON") == "interpret"
DEVICE = "cpu" if INTERPRETED else "cuda"
cases = pytest.mark.skipif(not (INTERPRETED or torch.cuda.is_available()),
                           reason="needs TRITON_INTERPRET=1 GENCLI_TRITON=interpret, or CUDA")


@cases
@pytest.mark.parametrize("shape,groups", [((2, 32, 7, 9), 8), ((1, 64, 16, 16), 32), ((3, 48, 5, 5), 16),
                                          ((2, 24, 3, 4), 1)])
@pytest.mark.parametrize("silu", [True, False])
def test_group_norm_silu_matches_torch(shape, groups, silu):
    from gencli.kernels import triton_ops as T

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 3 + 1).to(DEVICE).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(shape[1], generator=g).to(DEVICE), torch.randn(shape[1], generator=g).to(DEVICE)
    assert T.enabled(x)
    y = T.group_norm_silu_nhwc(x, groups, w, b, 1e-5, silu=silu)
    ref = T.group_norm_silu_reference(x, groups, w, b, 1e-5, silu=silu)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.shape == x.shape
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # NCHW input (copied to NHWC first), no affine
    y2 = T.group_norm_silu_nhwc(x.contiguous(), groups, None, None, 1e-6, silu=silu)
    torch.testing.assert_close(y2, T.group_norm_silu_reference(x, groups, None, None, 1e-6, silu=silu),
                               rtol=1e-5, atol=1e-5)


@cases
def test_group_norm_silu_in_half_precision():
    from gencli.kernels import triton_ops as T

    x = torch.randn(2, 32, 8, 8).to(DEVICE, torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(32).to(DEVICE), torch.randn(32).to(DEVICE)
    y = T.group_norm_silu_nhwc(x, 8, w, b)
    assert y.dtype == torch.bfloat16
    ref = T.group_norm_silu_reference(x.float(), 8, w, b)
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)


@cases
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("clip,clipped_eps,eta", [(False, False, 0.0), (True, False, 0.0), (True, True, 0.0),
                                                  (True, False, 1.0), (False, False, 0.5)])
def test_ddim_update_matches_the_sampler(prediction, clip, clipped_eps, eta):
    from gencli.kernels import triton_ops as T
    from gencli.models.diffusion.schedulers import DDIMSampler, NoiseSchedule

    schedule = NoiseSchedule(prediction_type=prediction, clip_sample=clip, clip_sample_range=1.0)
    sampler = DDIMSampler(schedule, 10, eta=eta, clipped_eps=clipped_eps)
    g = torch.Generator().manual_seed(1)
    out, x, noise = (torch.randn(2, 3, 9, 7, generator=g).to(DEVICE) * 1.5 for _ in range(3))
    for i in (0, 4, 9):  # the noisiest step, a middle one, the last (abar_prev = 1)
        ref = sampler.step(i, out, x, noise if sampler.needs_noise(i) else None)
        got = sampler.step(i, out, x, noise if sampler.needs_noise(i) else None, fused=True)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@cases
def test_a_ddim_run_through_the_kernels_equals_the_torch_run(monkeypatch):
    """The whole sampling loop with the kernels dispatched (GroupNorm + SiLU in every resnet and
    the output block, the DDIM update) gives the images of the torch path."""
    from gencli import registry

    spec = registry.get_family("ddpm")
    cls = spec.load_class()
    torch.manual_seed(0)
    model = cls.from_config(cls.config_for_data(8, 1, None, spec.tiny_config)).eval().to(DEVICE)
    runs = {}
    for mode in ("0", os.environ.get("GENCLI_TRITON", "")):
        monkeypatch.setenv("GENCLI_TRITON", mode)
        runs[mode] = model.generate(2, seed=3, sampler="ddim", steps=4, eta=0.5)
    plain, fused = runs.values()
    assert not torch.equal(plain, fused)  # the kernels did run (their rounding differs)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
