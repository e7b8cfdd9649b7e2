"""Noise schedules and DDPM/DDIM steps: against diffusers' schedulers (when installed) and against
the closed-form math (always)."""

from __future__ import annotations

import itertools

import pytest
import torch

from references import require

from gencli.models.diffusion.schedulers import DDIMSampler, DDPMSampler, NoiseSchedule

SCHEDULES = {"linear": {"beta_schedule": "linear"},
             "cosine": {"beta_schedule": "squaredcos_cap_v2"},
             "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}}
SHAPE = (2, 3, 8, 8)


@pytest.fixture(scope="module")
def diffusers():
    return require("diffusers")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ours(schedule: str, **kw) -> NoiseSchedule:
    return NoiseSchedule.from_config({**SCHEDULES[schedule], **kw})


def close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 2e-5) -> None:
    err = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1.0)
    assert err <= tol * scale, f"{what}: max abs diff {err:.3g} (scale {scale:.3g})"


# --- against diffusers ----------------------------------------------------------------------
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alphas_cumprod_match_diffusers(diffusers, schedule):
    ref = diffusers.DDPMScheduler(**SCHEDULES[schedule]).alphas_cumprod
    torch.testing.assert_close(ours(schedule).alphas_cumprod, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spacing, steps, offset", [
    *itertools.product(["leading", "trailing", "linspace"], [1, 7, 10, 50, 1000], [0]),
    ("leading", 10, 1), ("leading", 50, 1)])
def test_timesteps_match_diffusers(diffusers, spacing, steps, offset):
    ref = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    ref.set_timesteps(steps)
    assert ours("linear", steps_offset=offset).timesteps(steps, spacing) == ref.timesteps.tolist()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ddpm_steps_match_diffusers(diffusers, schedule, prediction, variance, clip, spacing):
    cfg = {**SCHEDULES[schedule], "prediction_type": prediction, "variance_type": variance, "clip_sample": clip}
    ref = diffusers.DDPMScheduler(**cfg, timestep_spacing=spacing)
    ref.set_timesteps(10)
    sampler = DDPMSampler(NoiseSchedule.from_config(cfg), 10, spacing)
    assert [s.t for s in sampler.steps] == ref.timesteps.tolist()
    data = gen(0)
    for i, s in enumerate(sampler.steps):
        x, out = torch.randn(SHAPE, generator=data), torch.randn(SHAPE, generator=data)
        want = ref.step(out, s.t, x, generator=gen(100 + i)).prev_sample
        noise = torch.randn(SHAPE, generator=gen(100 + i)) if sampler.needs_noise(i) else None
        close(sampler.step(i, out, x, noise), want, f"step {i} (t={s.t})")


@pytest.mark.parametrize("clipped_eps", [False, True], ids=["eps", "clipped_eps"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ddim_steps_match_diffusers_for_leading_spacing(diffusers, schedule, prediction, clip, eta, clipped_eps):
    cfg = {**SCHEDULES[schedule], "prediction_type": prediction, "clip_sample": clip}
    ref = diffusers.DDIMScheduler(**cfg)
    ref.set_timesteps(10)
    sampler = DDIMSampler(NoiseSchedule.from_config(cfg), 10, "leading", eta=eta, clipped_eps=clipped_eps)
    assert [s.t for s in sampler.steps] == ref.timesteps.tolist()
    data = gen(1)
    for i, s in enumerate(sampler.steps):
        x, out = torch.randn(SHAPE, generator=data), torch.randn(SHAPE, generator=data)
        want = ref.step(out, s.t, x, eta=eta, use_clipped_model_output=clipped_eps,
                        generator=gen(200 + i)).prev_sample
        noise = torch.randn(SHAPE, generator=gen(200 + i)) if sampler.needs_noise(i) else None
        close(sampler.step(i, out, x, noise), want, f"step {i} (t={s.t})")


# --- the formulas (no diffusers needed) -------------------------------------------------------
def _x0_eps(schedule: NoiseSchedule, abar, out, x):
    if schedule.prediction_type == "epsilon":
        return (x - (1 - abar).sqrt() * out) / abar.sqrt(), out
    if schedule.prediction_type == "sample":
        return out, (x - abar.sqrt() * out) / (1 - abar).sqrt()
    return abar.sqrt() * x - (1 - abar).sqrt() * out, abar.sqrt() * out + (1 - abar).sqrt() * x


def _abars(schedule: NoiseSchedule, t: int, prev: int):
    a = schedule.alphas_cumprod.double()
    return a[t], (a[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64))


def ddim_reference(schedule: NoiseSchedule, t: int, prev: int, out, x, eta, noise, clipped_eps=False):
    """DDIM (Song et al. 2021, eq. 12) in float64 with the true previous timestep. ``clipped_eps``:
    eps re-derived from the clipped x0 at the CURRENT noise level, eps = (x_t - sqrt(abar_t) x0) /
    sqrt(1 - abar_t) (diffusers' use_clipped_model_output)."""
    abar, abar_prev = _abars(schedule, t, prev)
    x, out = x.double(), out.double()
    x0, eps = _x0_eps(schedule, abar, out, x)
    if schedule.clip_sample:
        x0 = x0.clamp(-1, 1)
    if clipped_eps:
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    prev_x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    return prev_x + sigma * noise.double() if eta > 0 else prev_x


@pytest.mark.parametrize("spacing", ["trailing", "linspace", "leading"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_uses_the_true_previous_timestep(spacing, prediction, eta):
    """diffusers' DDIM takes prev = t - T // N, right only for "leading"; gencli walks the sequence."""
    schedule = ours("cosine", prediction_type=prediction, clip_sample=False)
    sampler = DDIMSampler(schedule, 7, spacing, eta=eta)
    ts = schedule.timesteps(7, spacing)
    assert [(s.t, s.prev_t) for s in sampler.steps] == list(zip(ts, ts[1:] + [-1]))
    data = gen(2)
    for i, s in enumerate(sampler.steps):
        x, out, noise = (torch.randn(SHAPE, generator=data) for _ in range(3))
        got = sampler.step(i, out, x, noise if sampler.needs_noise(i) else None)
        close(got.double(), ddim_reference(schedule, s.t, s.prev_t, out, x, eta, noise), f"step {i}", 1e-5)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_clipped_eps_follows_the_closed_form(prediction, eta):
    """The guided-sampling path (clipped_eps) against the formula, without diffusers. The data
    make x0 fall outside [-1, 1] at most steps, so the clipped x0 and the re-derived eps matter."""
    schedule = ours("linear", prediction_type=prediction, clip_sample=True)
    sampler = DDIMSampler(schedule, 10, "leading", eta=eta, clipped_eps=True)
    data = gen(5)
    clipped = 0
    for i, s in enumerate(sampler.steps):
        x, out, noise = (2 * torch.randn(SHAPE, generator=data) for _ in range(3))
        x0, _ = _x0_eps(schedule, _abars(schedule, s.t, s.prev_t)[0], out.double(), x.double())
        clipped += int((x0.abs() > 1).any())
        got = sampler.step(i, out, x, noise if sampler.needs_noise(i) else None)
        want = ddim_reference(schedule, s.t, s.prev_t, out, x, eta, noise, clipped_eps=True)
        close(got.double(), want, f"step {i} (t={s.t})", 1e-5)
    assert clipped >= 5  # the clipped branch was exercised


def ddpm_reference(schedule: NoiseSchedule, variance: str, t: int, prev: int, out, x, noise):
    """One ancestral DDPM step (Ho et al. 2020, eqs. 6-7) in float64, as ANCHORS.md states it:
    posterior mean from the (clipped) x0; variance fixed_small = (1-abar')/(1-abar) beta_t,
    fixed_large = beta_t (beta_t = 1 - abar_t/abar_prev between the sampled steps); no noise at t=0."""
    abar, abar_prev = _abars(schedule, t, prev)
    x, out = x.double(), out.double()
    beta = 1 - abar / abar_prev
    x0, _ = _x0_eps(schedule, abar, out, x)
    if schedule.clip_sample:
        x0 = x0.clamp(-1, 1)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar) * x
    if t == 0:
        return mean
    var = beta if variance == "fixed_large" else (1 - abar_prev) / (1 - abar) * beta
    return mean + var.sqrt() * noise.double()


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
def test_ddpm_steps_follow_the_closed_form(variance, prediction, clip):
    """Both variance types against the formula, without diffusers (10 of 1000 steps, so beta_t
    between sampled steps is large and fixed_large differs from fixed_small by up to 1.0 in std)."""
    schedule = ours("linear", prediction_type=prediction, clip_sample=clip, variance_type=variance)
    sampler = DDPMSampler(schedule, 10, "leading")
    assert sampler.variance_type == variance
    data = gen(6)
    for i, s in enumerate(sampler.steps):
        x, out, noise = (torch.randn(SHAPE, generator=data) for _ in range(3))
        assert sampler.needs_noise(i) == (s.t > 0)
        got = sampler.step(i, out, x, noise if sampler.needs_noise(i) else None)
        close(got.double(), ddpm_reference(schedule, variance, s.t, s.prev_t, out, x, noise), f"step {i} (t={s.t})", 1e-5)
    # and the sampler's own argument overrides the schedule's
    assert DDPMSampler(ours("linear", variance_type="fixed_small"), 10, variance_type="fixed_large").variance_type \
        == "fixed_large"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_eta1_is_ddpm_with_fixed_small_variance(schedule, spacing):
    """Same variance (1-abar')/(1-abar) beta_t, and without clipping the same mean."""
    sched = ours(schedule, clip_sample=False, variance_type="fixed_small")
    ddim, ddpm = DDIMSampler(sched, 10, spacing, eta=1.0), DDPMSampler(sched, 10, spacing)
    data = gen(3)
    for i, s in enumerate(ddpm.steps):
        beta = 1 - s.abar / s.abar_prev
        small = (1 - s.abar_prev) / (1 - s.abar) * beta
        ddim_var = (1 - s.abar_prev) / (1 - s.abar) * (1 - s.abar / s.abar_prev)
        assert ddim_var == pytest.approx(small, rel=1e-9, abs=1e-15)
        x, out, noise = (torch.randn(SHAPE, generator=data) for _ in range(3))
        if s.t == 0:  # DDPM adds no noise at t = 0, where DDIM's sigma is 0 anyway (abar' = 1)
            noise = torch.zeros(SHAPE)
        close(ddim.step(i, out, x, noise), ddpm.step(i, out, x, noise if ddpm.needs_noise(i) else None),
              f"step {i} (t={s.t})", 1e-4)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_training_target_and_split_output_are_inverse(schedule, prediction):
    sched = ours(schedule, prediction_type=prediction)
    g = gen(4)
    x0 = torch.rand(SHAPE, generator=g) * 2 - 1
    eps = torch.randn(SHAPE, generator=g)
    for t in (0, 1, 250, 999):
        tt = torch.full((SHAPE[0],), t)
        x_t = sched.add_noise(x0, eps, tt)
        abar = sched.abar(t)
        torch.testing.assert_close(x_t, abar ** 0.5 * x0 + (1 - abar) ** 0.5 * eps, rtol=1e-5, atol=1e-6)
        target = sched.training_target(x0, eps, tt)
        got_x0, got_eps = sched.split_output(target, x_t, abar)
        # dividing by sqrt(abar) (epsilon) or sqrt(1-abar) (sample) amplifies float32 rounding
        tol = 2e-6 / min(abar, 1 - abar) ** 0.5
        torch.testing.assert_close(got_x0, x0, rtol=0, atol=tol)
        torch.testing.assert_close(got_eps, eps, rtol=0, atol=tol)


def test_timesteps_edges():
    sched = ours("linear")
    assert sched.timesteps(1, "leading") == [0]
    assert sched.timesteps(1, "trailing") == [999]
    assert sched.timesteps(1000, "linspace") == list(range(999, -1, -1))
    assert sched.timesteps(10, "trailing")[0] == 999 and sched.timesteps(10, "leading")[0] == 900
