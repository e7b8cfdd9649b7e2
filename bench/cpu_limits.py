"""What this CPU can do, for the benches that say how far a command is from it (issue 16):
the multiply-adds of a network's convolutions, and the fp32 rate of a large product as a matmul
(MKL on x86 builds of torch) and as a 1x1 convolution (oneDNN, the library torch's convolutions use).
Rates are on torch's current thread count: one warm-up call, then the mean of ``reps`` calls.
:func:`call_times` is the per-call timing loop the kernel benches share."""

from __future__ import annotations

import time

import torch
from torch import nn


def call_times(fn, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def conv_macs(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the convolutions in one forward of ``x``."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        net(x)
    for h in handles:
        h.remove()
    return total


def _gflops(fn, n: int, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n^3 fp32 matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return _gflops(lambda: torch.mm(a, b), n, reps)


def conv1x1_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of the same n^3 product as a 1x1 convolution (n pixels of n channels, NHWC memory)."""
    x = torch.randn(1, n, 1, n).permute(0, 3, 1, 2)
    w = torch.randn(n, n, 1, 1)
    return _gflops(lambda: torch.nn.functional.conv2d(x, w), n, reps)
