"""Training-step throughput of the bundled DDPM's architecture: images/s per variant.

    python bench/train_ddpm.py [--batch 128] [--steps 6] [--repeats 3] [--threads N]

The Fashion-MNIST UNet that `gencli train ddpm --data fashion-mnist` builds (class-conditional,
28x28), AdamW, one full training step (noise, forward, MSE, backward, optimiser step) per timing,
after 2 untimed warm-up steps per variant; variants interleaved round by round, medians:

  fp32                 what `gencli train ddpm` runs by default
  fp32 channels_last   weights and inputs in channels_last memory
  bf16 autocast        `--precision bf16` (fp32 master weights; pays on AVX512-BF16/AMX CPUs)
  bf16 channels_last   both

Prints images/s and the ratio to fp32, with the CPU's name and bf16 features. A benchmark, not a
test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant and round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    from gencli.models.diffusion.ddpm import DiffusionModel
    from gencli.models.gan.toy import _Ctx
    from gencli.runtime import cpu_features, tune_allocator

    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()

    class Ctx(_Ctx):
        def __init__(self, optimizers, dtype):
            super().__init__(optimizers)
            self.dtype = dtype

        def autocast(self):
            return torch.autocast("cpu", self.dtype) if self.dtype else contextlib.nullcontext()

    variants = {"fp32": (None, False), "fp32 channels_last": (None, True),
                "bf16 autocast": (torch.bfloat16, False), "bf16 channels_last": (torch.bfloat16, True)}
    cfg = DiffusionModel.config_for_data(28, 1, 10)
    runs = {}
    for name, (dtype, cl) in variants.items():
        torch.manual_seed(0)
        model = DiffusionModel(cfg).train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        runs[name] = (model, Ctx(model.configure_optimizers(), dtype), cl)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(10, (args.batch,), generator=g)

    def step(name, i):
        model, ctx, cl = runs[name]
        xb = x.contiguous(memory_format=torch.channels_last) if cl else x
        return model.train_step((xb, y), i, ctx)

    for name in variants:  # warm-up
        for i in range(2):
            step(name, i)
    times = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            for i in range(args.steps):
                step(name, i)
            times[name].append((time.perf_counter() - t) / args.steps)
    print(f"# DDPM Fashion-MNIST UNet ({sum(p.numel() for p in runs['fp32'][0].parameters()) / 1e6:.2f} M params), "
          f"batch {args.batch}, {torch.get_num_threads()} threads, {cpu_features()}, torch {torch.__version__}")
    base = statistics.median(times["fp32"])
    for name in variants:
        med = statistics.median(times[name])
        print(f"  {name:20s} {med:7.3f} s/step  {args.batch / med:7.1f} images/s  {base / med:5.2f}x fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
