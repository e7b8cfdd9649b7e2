"""`gencli translate cyclegan` against the official CycleGAN generator's forward, same weights, same images.

    python bench/translate_vs_official.py [--images 8] [--size 256] [--repeats 3] [--threads N]
           [--ngf 64] [--blocks 9] [--no-bf16] [--tol 1e-4] [--bf16-tol 0.03]

The anchor is the official resnet_9blocks generator (pytorch-CycleGAN-and-pix2pix `networks.py`:
ResnetGenerator with instance norm, reflection padding, no dropout), written here as plain
``torch.nn`` layers from the published layout (so its state dict has the official keys), with the
official 'normal' init (N(0, 0.02), seeded). Its state dict is saved as a ``.pth`` and loaded into
gencli through the official-checkpoint converter, as a user's ``latest_net_G_A.pth`` would be.

| contender | what runs |
|---|---|
| official test.py | the anchor in eval mode under ``torch.no_grad``, one image at a time (what test.py does) |
| official tuned | the same under ``torch.inference_mode`` with the network and input in channels_last |
| gencli plain | ``model.translate(fast=False)`` one image at a time: gencli's own ``nn.Module`` forward |
| gencli default | ``gencli.translate(model, images)`` as ``gencli translate`` calls it: default batch size (auto), fast path |
| gencli bf16 | the same with the model loaded at ``precision="bf16"`` (autocast) |

Rules (as the other benches): one untimed warm-up pass each; ``--repeats`` rounds, interleaved in
alternating order; medians; every contender's outputs are **asserted** equal to the official
forward's (fp32: max |difference| of the [-1, 1] outputs <= ``--tol``; bf16: mean |difference|
<= ``--bf16-tol``) before any ratio is printed (exit 1 otherwise). Ratios are against the faster
official configuration. Also printed: the network's multiply-adds, the GFLOP/s each contender
achieves, and what this CPU does on a large fp32 matmul (the limit a convolution can approach).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from cpu_limits import conv_macs, matmul_gflops  # noqa: E402


class OfficialResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class OfficialResnetGenerator(nn.Module):
    """resnet_{n}blocks, instance norm (so every conv has a bias), reflection padding, tanh output."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, nc: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(nc, ngf, 7, bias=True), nn.InstanceNorm2d(ngf),
                                   nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=True), nn.InstanceNorm2d(2 * c), nn.ReLU(True)]
        layers += [OfficialResnetBlock(4 * ngf) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def official_init(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
                m.bias.zero_()


def test_images(n: int, size: int, seed: int) -> list[torch.Tensor]:
    """Smooth random RGB images in [-1, 1] (noise upsampled from 1/8 size), like photographs in
    that neighbouring pixels correlate."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, size // 8, size // 8, generator=g)
    big = torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
    return list((big.clamp(0, 1) * 2 - 1).unbind(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--bf16-tol", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import gencli
    from gencli.runtime import cpu_features

    images = test_images(args.images, args.size, args.seed)
    anchor = OfficialResnetGenerator(args.ngf, args.blocks).eval()
    official_init(anchor, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="gencli-bench-"))
    pth = tmp / "latest_net_G_A.pth"
    torch.save(anchor.state_dict(), pth)
    model = gencli.load("cyclegan", weights=str(pth))
    bf16 = None if args.no_bf16 else gencli.load("cyclegan", weights=str(pth), precision="bf16")
    tuned = OfficialResnetGenerator(args.ngf, args.blocks).eval()
    tuned.load_state_dict(anchor.state_dict())
    tuned = tuned.to(memory_format=torch.channels_last)

    def official_test_py() -> list[torch.Tensor]:
        with torch.no_grad():
            return [anchor(x[None])[0] for x in images]

    def official_tuned() -> list[torch.Tensor]:
        with torch.inference_mode():
            return [tuned(x[None].contiguous(memory_format=torch.channels_last))[0].contiguous() for x in images]

    def gencli_plain() -> list[torch.Tensor]:
        return [model.translate(x[None], fast=False)[0] for x in images]

    def gencli_default() -> list[torch.Tensor]:
        return gencli.translate(model, images)

    def gencli_bf16() -> list[torch.Tensor]:
        return gencli.translate(bf16, images)

    contenders = {"official test.py": official_test_py, "official tuned": official_tuned,
                  "gencli plain": gencli_plain, "gencli default": gencli_default}
    if bf16 is not None:
        contenders["gencli bf16"] = gencli_bf16
    threads = torch.get_num_threads()
    print(f"# {cpu_features()}; torch {torch.__version__}, {threads} threads; {args.images} images "
          f"{args.size}x{args.size}, resnet_{args.blocks}blocks ngf {args.ngf}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    outputs = {name: fn() for name, fn in contenders.items()}  # warm-up, and the outputs compared
    ref = torch.stack(outputs["official test.py"])
    failed = False
    diffs = {}
    for name, out in outputs.items():
        d = (torch.stack([o.float() for o in out]) - ref).abs()
        if name == "gencli bf16":
            diffs[name] = f"mean {d.mean().item():.1e}"
            failed |= d.mean().item() > args.bf16_tol
        else:
            diffs[name] = f"max {d.max().item():.1e}"
            failed |= d.max().item() > args.tol
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for r in range(args.repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t)
    macs = conv_macs(anchor, images[0][None]) * args.images
    peak = matmul_gflops()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    best_anchor = min(med["official test.py"], med["official tuned"])
    print(f"# convolutions: {macs / args.images / 1e9:.2f} G multiply-adds per image; a 2048^3 fp32 matmul "
          f"runs at {peak:.0f} GFLOP/s here")
    print("| contender | s/image | wall s (min..max) | GFLOP/s | of matmul | ratio | output diff vs official |")
    print("|---|---|---|---|---|---|---|")
    for name, ts in times.items():
        gf = 2 * macs / med[name] / 1e9
        print(f"| {name} | {med[name] / args.images:.3f} | {med[name]:.2f} ({min(ts):.2f}..{max(ts):.2f}) | "
              f"{gf:.0f} | {gf / peak:.0%} | **{best_anchor / med[name]:.2f}** | {diffs[name]} |")
    if failed:
        print(f"OUTPUTS DIFFER beyond --tol {args.tol} / --bf16-tol {args.bf16_tol}: the ratios above do not count",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
