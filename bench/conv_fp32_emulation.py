"""Can AMX's bf16 units compute the FID Inception's fp32 convolutions faster at fp32 accuracy?

For a few of the Inception's convolution shapes (batch 8), times and relative errors (against a
float64 convolution) of:

  fp32            ``F.conv2d`` in fp32 (what ``gencli evaluate fid`` runs)
  fpmath bf16     the same fp32 tensors with ``torch.backends.mkldnn.conv.fp32_precision = "bf16"``
                  (oneDNN may round inputs to bf16 internally; fp32 output)
  bf16x3          x = xh + xl and w = wh + wl split into bf16-representable parts, xh*wh + xh*wl +
                  xl*wh as ONE convolution over 3x the input channels in the fpmath-bf16 mode
                  (near-fp32 accuracy if it ran at bf16 speed)
  bf16 tensors    ``F.conv2d`` on bf16 tensors (AMX speed, but a bf16 output: 2^-9 rounding)

Usage: ``python bench/conv_fp32_emulation.py [--threads 2]``. Meaningful on CPUs with AMX or
AVX512-BF16; measured results in bench/README.md (fid_vs_anchors section).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from cpu_limits import call_times

SHAPES = [  # (cin, cout, size, kernel, padding): Mixed_6 1x7, Mixed_5 3x3, Mixed_6 1x1, Conv2d_2b
    (192, 192, 17, (1, 7), (0, 3)), (64, 96, 35, (3, 3), (1, 1)), (768, 192, 17, (1, 1), (0, 0)),
    (32, 64, 147, (3, 3), (1, 1))]


def best_of(fn, n: int = 10) -> float:
    return min(call_times(fn, n))


def split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hi = t.bfloat16().float()
    return hi, (t - hi).bfloat16().float()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    print("| shape | fp32 GMAC/s | fpmath bf16 GMAC/s (err) | bf16x3 GMAC/s (err) | bf16 tensors GMAC/s (err) "
          "| fp32 err |")
    print("|---|---|---|---|---|---|")
    for cin, cout, size, k, pad in SHAPES:
        x = torch.randn(8, cin, size, size).relu().contiguous(memory_format=cl)
        w = (torch.randn(cout, cin, *k) / (cin * k[0] * k[1]) ** 0.5).contiguous(memory_format=cl)
        b = torch.randn(cout)
        macs = 8 * cout * size * size * cin * k[0] * k[1]
        ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad)

        def err(y: torch.Tensor) -> float:
            return ((y.double() - ref).norm() / ref.norm()).item()

        def conv(xx, ww, bb):
            return lambda: F.conv2d(xx, ww, bb, padding=pad)

        (xh, xl), (wh, wl) = split(x), split(w)
        x3 = torch.cat([xh, xh, xl], 1).contiguous(memory_format=cl)
        w3 = torch.cat([wh, wl, wh], 1).contiguous(memory_format=cl)
        xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
        rows = {}
        for name, fn, mode in (("fp32", conv(x, w, b), "none"), ("fpmath", conv(x, w, b), "bf16"),
                               ("bf16x3", conv(x3, w3, b), "bf16"), ("bf16", conv(xb, wb, bb), "none")):
            torch.backends.mkldnn.conv.fp32_precision = mode
            try:
                rows[name] = (macs / best_of(fn) / 1e9, err(fn()))
            finally:
                torch.backends.mkldnn.conv.fp32_precision = "none"
        cells = " | ".join(f"{rows[n][0]:.0f} ({rows[n][1]:.1e})" for n in ("fpmath", "bf16x3", "bf16"))
        print(f"| {cin}->{cout} {k[0]}x{k[1]} @{size} | {rows['fp32'][0]:.0f} | {cells} | {rows['fp32'][1]:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
