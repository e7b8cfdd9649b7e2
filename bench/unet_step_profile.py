"""Where one fp32 (or bf16) step of the cifar10-config UNet goes on the CPU fast path.

Builds the UNet of bench/sample_vs_runtimes.py (random weights, 35.7 M parameters), runs the fast
forward at ``--batch`` (default 16) and prints: the median forward time; torch's operators by self
CPU time per forward (the torch profiler over ``--profiled`` forwards); gencli's C kernels
(GroupNorm, Winograd transforms: ctypes calls the profiler does not see), timed around each call.
The matmul-class operators (``bmm``: Winograd's 36 GEMMs; ``addmm``: 1x1 convolutions and
projections; attention; oneDNN convolutions) are the arithmetic; the rest is what the kernels around
them cost.

Usage: ``python bench/unet_step_profile.py [--batch 16] [--precision fp32|bf16] [--threads 2]``.
Measured results in bench/README.md (sample_vs_diffusers section).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--profiled", type=int, default=3)
    args = ap.parse_args()

    from sample_vs_runtimes import build_model

    from gencli.kernels import native
    from gencli.runtime import cpu_features, tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    unet = build_model(0).unet
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.full((args.batch,), 500, dtype=torch.long)
    autocast = (torch.autocast("cpu", torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext())
    print(f"# {cpu_features()}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.precision}, C kernels {'on' if native.available() else 'off'}")

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(name: str):
        fn = getattr(native, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
                calls[name] += 1
        return wrapper

    with torch.inference_mode(), unet.fast_inference(), autocast:
        for _ in range(3):
            unet(x, t)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            unet(x, t)
            times.append(time.perf_counter() - t0)
        forward = statistics.median(times)
        print(f"forward: median {forward * 1e3:.1f} ms over {args.repeats} (min {min(times) * 1e3:.1f})")

        from torch.profiler import profile
        with profile() as prof:
            for _ in range(args.profiled):
                unet(x, t)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        print("| torch operator | ms per forward (self, profiled) | calls per forward |")
        print("|---|---|---|")
        for e in rows[:12]:
            print(f"| {e.key} | {e.self_cpu_time_total / 1e3 / args.profiled:.1f} | {e.count // args.profiled} |")

        originals = {name: getattr(native, name) for name in ("group_norm_nhwc", "winograd_input", "winograd_output")}
        try:
            for name in originals:
                setattr(native, name, timed(name))
            for _ in range(args.profiled):
                unet(x, t)
        finally:
            for name, fn in originals.items():
                setattr(native, name, fn)
    print("| gencli C kernel | ms per forward | calls per forward |")
    print("|---|---|---|")
    for name in originals:
        print(f"| {name} | {spent[name] * 1e3 / args.profiled:.1f} | {calls[name] // args.profiled} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
