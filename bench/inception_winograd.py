"""The FID Inception's Winograd layers (gencli's default on CPU fp32) against direct convolution,
per layer and for the whole forward, and where the forward's convolution time goes.

Per layer: each of the 49 convolutions the fused Inception runs as Winograd (12 stride-1 3x3 as
F(4x4, 3x3), 26 1x7/7x1 as F(6, 7), 8 1x3/3x1 as F(4, 3), 3 5x5 as F(4x4, 5x5)), at its real input size for a 299x299
image, batch ``--batch``: median time direct (``F.conv2d`` + ReLU, channels_last) and Winograd
(:func:`gencli.kernels.fast_path.conv_fp32`, ReLU in its output transform), and both outputs'
relative error against a float64 convolution. By kernel: every layer as the fast path runs it,
summed per kernel shape (ms, direct-convolution multiply-adds, effective rate). Whole forward:
``FIDInceptionV3.fused()`` against ``fused(winograd=False)`` (random weights, 2048-d features),
interleaved, ms per image, and the features' largest difference relative to their largest value.

Usage: ``python bench/inception_winograd.py [--batch 8] [--repeats 5] [--threads 2]``. Needs the C
kernels (a C compiler); measured results in bench/README.md (fid_vs_anchors section).
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from cpu_limits import call_times


def median_ms(fn, repeats: int) -> float:
    return statistics.median(call_times(fn, repeats)) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from gencli.kernels import native
    from gencli.kernels.fast_path import FastState, conv_fp32
    from gencli.metrics.inception import BasicConv2d, FIDInceptionV3
    from gencli.metrics.testing import random_inception_state
    from gencli.runtime import cpu_features, tune_allocator

    if not native.available():
        print("gencli's C kernels are not built here (no C compiler, or GENCLI_NATIVE=0): nothing to compare")
        return 1
    tune_allocator()
    torch.set_num_threads(args.threads)
    model = FIDInceptionV3()
    model.load_state_dict(random_inception_state(0), strict=False)
    wino, direct = model.eval().fused(), model.eval().fused(winograd=False)
    cl = torch.channels_last
    x = (torch.rand(args.batch, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1).contiguous(
        memory_format=cl)
    print(f"# {cpu_features()}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}")

    inputs: dict[str, torch.Tensor] = {}
    names = {m: n for n, m in wino.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda mod, a: inputs.setdefault(names[mod], a[0].clone()))
             for m in wino.modules() if isinstance(m, BasicConv2d)]
    with torch.inference_mode():
        wino(x)
    for h in hooks:
        h.remove()
    print("| layer | kernel | in -> out @ size | direct ms | Winograd ms | speed-up | error direct | error Winograd |")
    print("|---|---|---|---|---|---|---|---|")
    state = FastState(channels_last=True, winograd=True)
    by_kernel: dict[str, list[float]] = {}
    with torch.inference_mode():
        for name, inp in inputs.items():
            layer = wino.get_submodule(name)
            conv = layer.conv
            kernel = "x".join(map(str, conv.kernel_size)) + (f" stride {conv.stride[0]}" if conv.stride[0] > 1 else "")
            macs = layer(inp).numel() * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            t = median_ms(lambda: layer(inp), args.repeats)
            entry = by_kernel.setdefault(kernel + (" Winograd" if layer.winograd else ""), [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += t
            entry[2] += macs
            if not layer.winograd:
                continue
            ref = F.conv2d(inp.double(), conv.weight.double(), conv.bias.double(), padding=conv.padding).relu()

            def err(y: torch.Tensor) -> float:
                return ((y.double() - ref).abs().max() / ref.abs().max()).item()

            def d() -> torch.Tensor:
                return F.conv2d(inp, conv.weight, conv.bias, padding=conv.padding).relu_()

            def w() -> torch.Tensor:
                return conv_fp32(state, conv, inp, relu=True)

            td, tw = median_ms(d, args.repeats), median_ms(w, args.repeats)
            print(f"| {name} | {kernel} | {conv.in_channels} -> {conv.out_channels} @ {inp.shape[2]} | {td:.2f} | "
                  f"{tw:.2f} | {td / tw:.2f}x | {err(d()):.1e} | {err(w()):.1e} |")
        print()
        print("| kernel (layers) | ms per batch | G multiply-adds (direct) | effective G/s |")
        print("|---|---|---|---|")
        for kernel, (count, t, macs) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1]):
            print(f"| {kernel} ({count}) | {t:.1f} | {macs / 1e9:.2f} | {macs / t / 1e6:.0f} |")
        print()

        tw_all, td_all = [], []
        for _ in range(args.repeats):  # interleaved
            tw_all.append(median_ms(lambda: wino(x), 1) / args.batch)
            td_all.append(median_ms(lambda: direct(x), 1) / args.batch)
        fw, fd = wino(x)["2048"], direct(x)["2048"]
    diff = ((fw - fd).abs().max() / fd.abs().max()).item()
    print(f"whole forward: Winograd {statistics.median(tw_all):.1f} ms/image, direct {statistics.median(td_all):.1f} "
          f"ms/image ({statistics.median(td_all) / statistics.median(tw_all):.2f}x); 2048-d features differ by "
          f"{diff:.1e} of their largest value")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
