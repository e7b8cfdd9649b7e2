"""Triton kernels for what a UNet sampling step spends outside convolutions and matmuls on a GPU.

- :func:`group_norm_silu_nhwc`: GroupNorm (+ SiLU) on channels_last activations in one kernel, one
  program per (image, group): the mean, then the squared deviations (the exact two-pass formula,
  as :mod:`gencli.kernels.group_norm`), then normalise, affine and SiLU, writing NHWC memory.
  Replaces ``F.silu(F.group_norm(x, ...))`` (:func:`group_norm_silu_reference`), which on CUDA is
  three kernels and two extra round trips through memory.
- :func:`ddim_update`: a DDIM (or DDIM-eta) step as one elementwise kernel: x0 and eps from the
  network output (epsilon, sample or v prediction), x0 clipping, eps re-derived from the clipped
  x0 when asked, then ``sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps + std noise``. Replaces
  ``DDIMSampler.step``'s six to ten elementwise torch kernels (its own code is the reference).

They run where :func:`enabled` says: CUDA tensors when Triton is installed (``GENCLI_TRITON=0``
turns them off). ``GENCLI_TRITON=interpret`` with ``TRITON_INTERPRET=1`` runs them on CPU tensors
in Triton's interpreter: that is how the tests check them against the references without a GPU.
The CPU path never calls them otherwise. The kernels are defined on first use, after the
environment is read (Triton decides between compiling and interpreting when a kernel is defined).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton can be imported."""
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a broken install: the torch path stays
        return False
    return True


def enabled(x: torch.Tensor) -> bool:
    """Whether the Triton kernels handle ``x``: CUDA with Triton, or the interpreter when asked.
    On the CPU (not interpreting) this returns before Triton is ever imported."""
    mode = os.environ.get("GENCLI_TRITON", "")
    if mode == "0":
        return False
    if x.is_cuda:
        return available()
    return (mode == "interpret" and os.environ.get("TRITON_INTERPRET") == "1" and x.device.type == "cpu"
            and available())


@functools.lru_cache(maxsize=1)
def _kernels() -> Any:
    import triton

    from gencli.kernels import _triton_kernels as k

    return k.gn_silu_nhwc, k.ddim, triton


def group_norm_silu_reference(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                              bias: torch.Tensor | None, eps: float = 1e-5, silu: bool = True) -> torch.Tensor:
    """What :func:`group_norm_silu_nhwc` computes."""
    y = F.group_norm(x, num_groups, weight, bias, eps)
    return F.silu(y) if silu else y


def group_norm_silu_nhwc(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                         bias: torch.Tensor | None, eps: float = 1e-5, silu: bool = True) -> torch.Tensor:
    """``silu(group_norm(x))`` (or the norm alone) for ``x`` (N, C, H, W), read and written as
    channels_last memory (other layouts are copied first); fp32, fp16 or bf16 in, the same out,
    statistics in fp32."""
    gn_kernel, _, triton = _kernels()
    n, c, h, w = x.shape
    if c % num_groups:
        raise ValueError(f"{c} channels do not split into {num_groups} groups")
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.ones(c, device=x.device) if weight is None else weight.detach()
    bias = torch.zeros(c, device=x.device) if bias is None else bias.detach()
    y = torch.empty_like(x, memory_format=torch.channels_last)
    cpg = c // num_groups
    block_c = triton.next_power_of_2(cpg)
    block_p = max(1, min(triton.next_power_of_2(h * w), 4096 // block_c))
    gn_kernel[(n, num_groups)](x, weight.contiguous(), bias.contiguous(), y, h * w, c, cpg, float(eps),
                               SILU=bool(silu), BLOCK_P=block_p, BLOCK_C=block_c)
    return y


def ddim_update(out: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None, *, abar: float,
                abar_prev: float, prediction_type: str, clip: float | None, clipped_eps: bool,
                std: float) -> torch.Tensor:
    """One DDIM step (``DDIMSampler.step``'s arithmetic) as a single kernel; same dtype as ``x``."""
    _, kernel, triton = _kernels()
    sa, s1 = abar ** 0.5, (1 - abar) ** 0.5
    if prediction_type == "epsilon":
        ax, ao, ex, eo = 1 / sa, -s1 / sa, 0.0, 1.0
    elif prediction_type == "sample":
        ax, ao, ex, eo = 0.0, 1.0, 1 / s1, -sa / s1
    elif prediction_type == "v_prediction":
        ax, ao, ex, eo = sa, -s1, s1, sa
    else:
        raise ValueError(f"unknown prediction type {prediction_type!r}")
    c0, ce = abar_prev ** 0.5, max(1 - abar_prev - std ** 2, 0.0) ** 0.5
    use_noise = std > 0 and noise is not None
    out, x = out.contiguous(), x.contiguous()
    y = torch.empty_like(x)
    numel = x.numel()
    block = 1024
    kernel[(triton.cdiv(numel, block),)](
        out, x, noise.contiguous() if use_noise else x, y, numel, ax, ao, ex, eo, sa, s1, c0, ce, float(std),
        float(clip or 0.0), CLIP=clip is not None, CLIPPED_EPS=bool(clipped_eps and clip is not None),
        NOISE=use_noise, BLOCK=block)
    return y
