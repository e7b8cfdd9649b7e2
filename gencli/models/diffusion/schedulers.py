"""Noise schedules and the DDPM / DDIM update rules: small pure math, no network.

Numerics follow diffusers' DDPMScheduler / DDIMScheduler (see ANCHORS.md), with one deliberate
difference: the previous timestep is taken from the actual timestep sequence, which equals
diffusers' ``t - T // N`` for "leading" spacing and is also right for "trailing"/"linspace".

All per-step coefficients are precomputed as Python floats, so a sampling loop on CUDA never
synchronises with the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gencli.errors import UsageError
from gencli.kernels import triton_ops

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
VARIANCE_TYPES = ("fixed_small", "fixed_large")
SPACINGS = ("leading", "trailing", "linspace")


@dataclass
class NoiseSchedule:
    """The forward process q(x_t | x_0) and how to read a network's output."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    variance_type: str = "fixed_small"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    steps_offset: int = 0
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise UsageError(f"unknown beta schedule {self.beta_schedule!r}; use one of {BETA_SCHEDULES}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise UsageError(f"unknown prediction type {self.prediction_type!r}; use one of {PREDICTION_TYPES}")
        if self.variance_type not in VARIANCE_TYPES:
            raise UsageError(f"unknown variance type {self.variance_type!r}; use one of {VARIANCE_TYPES}")
        T = self.num_train_timesteps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float64)
        elif self.beta_schedule == "scaled_linear":
            betas = torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, T, dtype=torch.float64) ** 2
        else:  # cosine, Nichol & Dhariwal 2021 (diffusers' squaredcos_cap_v2)
            def abar(s: float) -> float:
                return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)],
                                 dtype=torch.float64)
        # diffusers computes the cumulative product in float32; do the same so the numbers match.
        self.alphas_cumprod = torch.cumprod(1.0 - betas.float(), dim=0)

    # diffusers writes beta_schedule "squaredcos_cap_v2" for cosine.
    _ALIASES = {"squaredcos_cap_v2": "cosine"}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "NoiseSchedule":
        """Build from our config or a diffusers scheduler_config.json (unknown keys ignored)."""
        names = {f for f in cls.__dataclass_fields__ if f != "alphas_cumprod"}
        kw = {k: v for k, v in cfg.items() if k in names}
        if "beta_schedule" in kw:
            kw["beta_schedule"] = cls._ALIASES.get(kw["beta_schedule"], kw["beta_schedule"])
        if kw.get("variance_type") not in (None, *VARIANCE_TYPES):
            kw.pop("variance_type")  # e.g. "learned_range": we sample with fixed_small
        return cls(**kw)

    def to_config(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "alphas_cumprod"}

    def abar(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else 1.0

    # --- training -------------------------------------------------------------------------
    def _coef(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a.sqrt().view(shape), (1 - a).sqrt().view(shape)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s, s1 = self._coef(t, x0)
        return s * x0 + s1 * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        s, s1 = self._coef(t, x0)
        return s * noise - s1 * x0  # v = sqrt(abar) eps - sqrt(1-abar) x0

    def loss_weights(self, t: torch.Tensor, min_snr_gamma: float | None) -> torch.Tensor | None:
        """Per-sample weights of the MSE for Min-SNR-gamma weighting (Hang et al. 2023): with
        SNR(t) = abar / (1 - abar), min(SNR, gamma) / SNR for epsilon prediction,
        min(SNR, gamma) / (SNR + 1) for v and min(SNR, gamma) for x0 -- each the x0-space weight
        min(SNR, gamma) moved to the target the network predicts. None: uniform (plain MSE)."""
        if not min_snr_gamma:
            return None
        a = self.alphas_cumprod.to(t.device)[t].double()
        snr = a / (1 - a)
        clipped = snr.clamp(max=float(min_snr_gamma))
        if self.prediction_type == "epsilon":
            w = clipped / snr
        elif self.prediction_type == "v_prediction":
            w = clipped / (snr + 1)
        else:
            w = clipped
        return w.float()

    # --- sampling -------------------------------------------------------------------------
    def timesteps(self, num_steps: int, spacing: str = "leading") -> list[int]:
        T = self.num_train_timesteps
        if not 1 <= num_steps <= T:
            raise UsageError(f"--steps must be between 1 and {T} (the model was trained with {T} steps)")
        if spacing == "leading":
            ratio = T // num_steps
            ts = [i * ratio + self.steps_offset for i in range(num_steps)][::-1]
        elif spacing == "trailing":
            ratio = T / num_steps
            ts = [int(round(T - i * ratio)) - 1 for i in range(num_steps)]
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round().long().tolist()[::-1]
        else:
            raise UsageError(f"unknown timestep spacing {spacing!r}; use one of {SPACINGS}")
        return [min(max(int(t), 0), T - 1) for t in ts]

    def split_output(self, out: torch.Tensor, x: torch.Tensor, abar: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from a network output at a noise level abar. x0 is not yet clipped."""
        sa, s1 = abar ** 0.5, (1 - abar) ** 0.5
        if self.prediction_type == "epsilon":
            return (x - s1 * out) / sa, out
        if self.prediction_type == "sample":
            return out, (x - sa * out) / s1
        return sa * x - s1 * out, sa * out + s1 * x

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        r = self.clip_sample_range
        return x0.clamp(-r, r) if self.clip_sample else x0


@dataclass
class Step:
    t: int
    prev_t: int
    abar: float
    abar_prev: float


class Sampler:
    """Iterates (t, update) over a timestep sequence. Subclasses define the update."""

    name = "base"

    def __init__(self, schedule: NoiseSchedule, num_steps: int, spacing: str = "leading"):
        self.schedule = schedule
        ts = schedule.timesteps(num_steps, spacing)
        self.steps = [Step(t, p, schedule.abar(t), schedule.abar(p))
                      for t, p in zip(ts, ts[1:] + [-1])]

    def needs_noise(self, i: int) -> bool:
        return False

    def step(self, i: int, out: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020) with fixed_small or fixed_large variance."""

    name = "ddpm"

    def __init__(self, schedule: NoiseSchedule, num_steps: int, spacing: str = "leading",
                 variance_type: str | None = None):
        super().__init__(schedule, num_steps, spacing)
        self.variance_type = variance_type or schedule.variance_type
        if self.variance_type not in VARIANCE_TYPES:
            raise UsageError(f"unknown variance type {self.variance_type!r}; use one of {VARIANCE_TYPES}")

    def needs_noise(self, i: int) -> bool:
        return self.steps[i].t > 0

    def step(self, i: int, out: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        s = self.steps[i]
        beta = 1 - s.abar / s.abar_prev
        alpha = 1 - beta
        x0, _ = self.schedule.split_output(out, x, s.abar)
        x0 = self.schedule.clip(x0)
        c0 = s.abar_prev ** 0.5 * beta / (1 - s.abar)
        ct = alpha ** 0.5 * (1 - s.abar_prev) / (1 - s.abar)
        mean = c0 * x0 + ct * x
        if s.t == 0 or noise is None:
            return mean
        if self.variance_type == "fixed_small":
            var = max((1 - s.abar_prev) / (1 - s.abar) * beta, 1e-20)
        else:
            var = beta
        return mean + var ** 0.5 * noise


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021): eta=0 is deterministic; eta=1 matches DDPM's fixed_small."""

    name = "ddim"

    def __init__(self, schedule: NoiseSchedule, num_steps: int, spacing: str = "leading",
                 eta: float = 0.0, clipped_eps: bool = False):
        super().__init__(schedule, num_steps, spacing)
        self.eta = eta
        # diffusers' `use_clipped_model_output`: re-derive eps from the clipped x0 so that x0 and
        # eps stay consistent. Off by default (as DDIMPipeline); classifier-free guidance needs it,
        # since guided eps overshoots and the clipped x0 plus the raw eps drift off the data.
        self.clipped_eps = clipped_eps

    def needs_noise(self, i: int) -> bool:
        return self.eta > 0

    def step(self, i: int, out: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None,
             fused: bool | None = None) -> torch.Tensor:
        """x at the next timestep. ``fused`` (default: on CUDA with Triton) runs the whole update as
        one Triton kernel (:func:`gencli.kernels.triton_ops.ddim_update`; this code is its reference)."""
        s = self.steps[i]
        var = (1 - s.abar_prev) / (1 - s.abar) * (1 - s.abar / s.abar_prev)
        std = self.eta * var ** 0.5
        if fused or (fused is None and triton_ops.enabled(x)):
            sch = self.schedule
            return triton_ops.ddim_update(out, x, noise, abar=s.abar, abar_prev=s.abar_prev,
                                          prediction_type=sch.prediction_type,
                                          clip=sch.clip_sample_range if sch.clip_sample else None,
                                          clipped_eps=self.clipped_eps, std=std)
        x0, eps = self.schedule.split_output(out, x, s.abar)
        x0 = self.schedule.clip(x0)
        if self.clipped_eps:
            eps = (x - s.abar ** 0.5 * x0) / (1 - s.abar) ** 0.5
        x_prev = s.abar_prev ** 0.5 * x0 + max(1 - s.abar_prev - std ** 2, 0.0) ** 0.5 * eps
        if std > 0 and noise is not None:
            x_prev = x_prev + std * noise
        return x_prev


SAMPLERS = {"ddpm": DDPMSampler, "ddim": DDIMSampler}
