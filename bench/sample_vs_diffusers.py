"""gencli sampling against diffusers' DDIMPipeline/DDPMPipeline: same weights, batch, steps, noise.

    python bench/sample_vs_diffusers.py [--batch 8] [--steps 20] [--config cifar10|fmnist]
                                        [--repeats 3] [--threads N] [--sampler ddim|ddpm|both]
                                        [--bf16-steps 1] [--no-bf16] [--omp-passive]
                                        [--no-malloc-tuning]

A UNet2DModel with random (seeded) weights -- the google/ddpm-cifar10-32 architecture, or gencli's
default Fashion-MNIST training architecture (unconditional) -- is saved as a diffusers pipeline
folder and loaded into gencli through the registry (the converter under test). Each contender
samples from the same torch.Generator seed, so all start from the same initial noise. After a
warm-up, the contenders run interleaved ``--repeats`` times; the median wall time is reported
(CPU time of the process too: on a machine shared with other jobs it is the steadier number).

Contenders (ratios are "diffusers fp32 time / this time", > 1 means faster than diffusers):
  diffusers fp32        DDIMPipeline (eta 0) / DDPMPipeline, output_type="pt"
  gencli fp32 plain     DiffusionModel.sample, the plain nn.Module forward
  gencli fp32 fast      the same inside unet.fast_inference(): channels_last, Winograd F(4x4,3x3)
                        for the 3x3 convolutions, fused projections (after optimize_for_inference)
  gencli bf16 (fast)    torch.autocast(bfloat16) as `--precision bf16` does, timed over
                        --bf16-steps steps and scaled to --steps (bf16 is emulated on CPUs without
                        AVX512-BF16/AMX, so it is slow there; printed anyway)

--omp-passive sets OMP_WAIT_POLICY=PASSIVE (before torch starts OpenMP): on a machine shared with
other busy processes, OpenMP's default spin-waiting makes every parallel region wait for a
descheduled thread, which slows both contenders several-fold (and distorts their ratio).

The process applies gencli's allocator tuning (gencli.runtime.tune_allocator, as every gencli
command does) unless --no-malloc-tuning; it is process-wide, so diffusers runs under it too (it
speeds up both: measured 1.06-1.13 -> 1.24 images/s for diffusers, cifar10 batch 8).

The max abs difference of the images (in [0, 1], as the pipelines return them) shows that the
outputs match: DDIM eta 0 is deterministic given the noise; DDPM draws the same noise too.
This is a script, not a test (nothing here runs under pytest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DDPM_SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                  "clip_sample": True, "variance_type": "fixed_large"}


def unet_config(name: str) -> dict:
    from gencli.models.diffusion.ddpm import DiffusionModel
    from gencli.models.diffusion.unet import DDPM_CIFAR10_CONFIG

    if name == "cifar10":
        return dict(DDPM_CIFAR10_CONFIG)

    cfg = DiffusionModel.config_for_data(28, 1, None)["unet"]  # what `gencli train ddpm` builds for Fashion-MNIST
    return {k: v for k, v in cfg.items() if k != "num_class_embeds"}


def random_unet(config: dict, seed: int):
    import diffusers
    import torch

    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():  # random everywhere: many parameters start at 0 or 1
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 16
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return unet.eval()


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--config", choices=["cifar10", "fmnist"], default="cifar10")
    ap.add_argument("--sampler", choices=["ddim", "ddpm", "both"], default="ddim")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--bf16-steps", type=int, default=1, help="steps timed for bf16 (scaled to --steps)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE (busy machines)")
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="leave glibc malloc's defaults (gencli's commands tune it; see gencli/runtime.py)")
    args = ap.parse_args(argv)
    if args.omp_passive:
        if "torch" in sys.modules:
            print("--omp-passive must be set before torch is imported", file=sys.stderr)
            return 2
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    try:
        import diffusers
    except ImportError:
        print("diffusers is not installed: pip install 'gencli[bench]'", file=sys.stderr)
        return 2
    diffusers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    from gencli import registry
    from gencli.runtime import tune_allocator

    tuned = False if args.no_malloc_tuning else tune_allocator()

    config = unet_config(args.config)
    unet = random_unet(config, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipe"
        diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**DDPM_SCHEDULER)).save_pretrained(folder)
        model, _ = registry.load_model("ddpm", weights=str(folder))
    print(f"# {args.config} UNet ({sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M params), batch {args.batch}, "
          f"{args.steps} steps, torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}), "
          f"malloc tuning {'on' if tuned else 'off'} (both contenders), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    gen = lambda: torch.Generator().manual_seed(args.seed + 1)  # noqa: E731
    B, S = args.batch, args.steps
    samplers = ["ddim", "ddpm"] if args.sampler == "both" else [args.sampler]

    # a second copy for the fast path: optimize_for_inference (channels_last weights, cached Winograd
    # filters) once, timing its first call; `model` keeps the plain forward
    import copy

    fast_model = copy.deepcopy(model)
    first_call = float("nan")
    for sampler in samplers:
        if sampler == "ddim":
            sched = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler(**DDPM_SCHEDULER).config)
            pipe = diffusers.DDIMPipeline(unet=unet, scheduler=sched)
            kw = {"eta": 0.0}
        else:
            pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**DDPM_SCHEDULER))
            kw = {}
        pipe.set_progress_bar_config(disable=True)

        def run_diffusers(steps=S):
            return pipe(batch_size=B, generator=gen(), num_inference_steps=steps, output_type="pt", **kw).images

        def run_plain(steps=S):
            with torch.inference_mode():
                return model.sample(B, gen(), sampler=sampler, steps=steps, **kw) / 2 + 0.5

        def run_fast(steps=S):
            with torch.inference_mode(), fast_model.unet.fast_inference():
                return fast_model.sample(B, gen(), sampler=sampler, steps=steps, **kw) / 2 + 0.5

        def run_bf16(steps=args.bf16_steps):
            with torch.inference_mode(), fast_model.unet.fast_inference(), torch.autocast("cpu", torch.bfloat16):
                return fast_model.sample(B, gen(), sampler=sampler, steps=steps, **kw).float() / 2 + 0.5

        contenders = {"diffusers fp32": run_diffusers, "gencli fp32 plain": run_plain, "gencli fp32 fast": run_fast}
        # warm-up (oneDNN primitives, caches); the fast path's one-time setup is timed here
        for name, fn in contenders.items():
            if name == "gencli fp32 fast" and fast_model.unet._fast is None:
                fast_model.unet.optimize_for_inference()
                with torch.inference_mode():
                    _, first_call, _ = timed(lambda: fast_model.unet(torch.randn(B, model.channels, model.image_size,
                                                                                 model.image_size), 999))
            fn(steps=2)
        outs: dict[str, torch.Tensor] = {}
        wall: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                outs[name], w, c = timed(fn)
                wall[name].append(w)
                cpu[name].append(c)
        base_w, base_c = statistics.median(wall["diffusers fp32"]), statistics.median(cpu["diffusers fp32"])
        print(f"\n## {sampler} ({'eta 0' if sampler == 'ddim' else pipe.scheduler.config.variance_type}), "
              f"{args.repeats} interleaved repeats, medians")
        print(f"{'contender':24s} {'images/s':>9s} {'wall s':>8s} {'ratio':>6s} {'cpu s':>8s} {'cpu ratio':>9s} "
              f"{'max |diff| vs diffusers':>24s}")
        for name in contenders:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            diff = (outs[name].float() - outs["diffusers fp32"].float()).abs().max().item()
            print(f"{name:24s} {B / w:9.3f} {w:8.2f} {base_w / w:6.2f} {c:8.2f} {base_c / c:9.2f} {diff:24.2e}")
        if not args.no_bf16:
            _, w, c = timed(run_bf16)
            w, c = w * S / args.bf16_steps, c * S / args.bf16_steps
            print(f"{'gencli bf16 autocast':24s} {B / w:9.3f} {w:8.2f} {base_w / w:6.2f} {c:8.2f} {base_c / c:9.2f} "
                  f"{'(n/a: ' + str(args.bf16_steps) + ' steps timed)':>24s}")
            print(f"  bf16: timed over {args.bf16_steps} steps once and scaled to {S}; its ratio is against "
                  f"diffusers fp32. bf16 matmul is emulated on CPUs without AVX512-BF16/AMX.")
    print(f"\nfirst forward after optimize_for_inference (one-time setup incl. Winograd filters + one forward): "
          f"{first_call:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
