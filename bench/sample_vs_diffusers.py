"""gencli sampling against diffusers' DDIMPipeline/DDPMPipeline: same weights, batch, steps, noise.

    python bench/sample_vs_diffusers.py [--batch 8] [--steps 20] [--config cifar10|fmnist]
                                        [--repeats 3] [--threads N] [--sampler ddim|ddpm|both]
                                        [--no-bf16] [--tol 1e-4] [--bf16-tol 0.03] [--omp-passive]
                                        [--no-malloc-tuning]

A UNet2DModel with random (seeded) weights -- the google/ddpm-cifar10-32 architecture, or gencli's
default Fashion-MNIST training architecture (unconditional) -- is saved as a diffusers pipeline
folder and loaded into gencli through the registry (the converter under test). Every contender
samples from the same torch.Generator seed, so all start from the same initial noise.

Rules (issue 15): each contender at its own best settings, the anchor both at its defaults and
tuned (the ratio is against the FASTER of the two); the same warm-up for all (one full-length
run each, untimed); ``--repeats`` rounds, interleaved, the order alternating every round
(forward, then reversed); medians reported; every contender's images are ASSERTED equal to the
diffusers defaults' within ``--tol`` (fp32: max |difference| of [0, 1] images, 1e-4) or
``--bf16-tol`` (bf16: MEAN |difference|, 0.03; pixel by pixel bf16 drifts up to ~0.25 after a few
steps through random weights) before that contender's ratio is printed (exit 1 otherwise).

Contenders (ratio = best diffusers time / this time, > 1 means faster than diffusers):
  diffusers default     DDIMPipeline (eta 0) / DDPMPipeline as shipped (its __call__ runs under
                        torch.no_grad), output_type="pt"
  diffusers tuned       the same pipeline under torch.inference_mode (gencli's grad mode) with
                        the UNet in channels_last (diffusers' documented CPU/GPU tuning)
  gencli plain          DiffusionModel.sample(fast=False): the plain nn.Module forward
  gencli fast           DiffusionModel.sample() (fast=True, the default, what `gencli sample`
                        runs): channels_last, Winograd F(4x4,3x3), fused projections; its caches
                        are built inside every call and that time is included
  gencli bf16           sample() under torch.autocast(bfloat16), as `--precision bf16` does
All gencli contenders and "diffusers tuned" run under torch.inference_mode.

--omp-passive sets OMP_WAIT_POLICY=PASSIVE (before torch starts OpenMP): on a machine shared with
other busy processes, OpenMP's default spin-waiting makes every parallel region wait for a
descheduled thread, which slows every contender several-fold (and distorts their ratio).

The process applies gencli's allocator tuning (gencli.runtime.tune_allocator, as every gencli
command does) unless --no-malloc-tuning; it is process-wide, so diffusers runs under it too.
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
    ap.add_argument("--no-bf16", action="store_true", help="leave out the bf16 autocast contender")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |image diff| asserted for fp32 contenders")
    ap.add_argument("--bf16-tol", type=float, default=0.03, help="MEAN |image diff| asserted for bf16")
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
    from gencli.runtime import cpu_features, tune_allocator

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
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({cpu_features()}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    gen = lambda: torch.Generator().manual_seed(args.seed + 1)  # noqa: E731
    B, S = args.batch, args.steps
    samplers = ["ddim", "ddpm"] if args.sampler == "both" else [args.sampler]
    import copy

    fast_model = copy.deepcopy(model)  # sample(fast=True) never touches `model`'s plain forward
    tuned_unet = copy.deepcopy(unet).to(memory_format=torch.channels_last)
    failed = False
    for sampler in samplers:
        def pipeline(u):
            if sampler == "ddim":
                sched = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler(**DDPM_SCHEDULER).config)
                p = diffusers.DDIMPipeline(unet=u, scheduler=sched)
            else:
                p = diffusers.DDPMPipeline(unet=u, scheduler=diffusers.DDPMScheduler(**DDPM_SCHEDULER))
            p.set_progress_bar_config(disable=True)
            return p

        pipe, tuned_pipe = pipeline(unet), pipeline(tuned_unet)
        kw = {"eta": 0.0} if sampler == "ddim" else {}

        def run_diffusers():
            return pipe(batch_size=B, generator=gen(), num_inference_steps=S, output_type="pt", **kw).images

        def run_diffusers_tuned():
            with torch.inference_mode():
                return tuned_pipe(batch_size=B, generator=gen(), num_inference_steps=S, output_type="pt",
                                  **kw).images

        def run_plain():
            with torch.inference_mode():
                return model.sample(B, gen(), sampler=sampler, steps=S, fast=False, **kw) / 2 + 0.5

        def run_fast():
            with torch.inference_mode():
                return fast_model.sample(B, gen(), sampler=sampler, steps=S, **kw) / 2 + 0.5

        def run_bf16():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
                return fast_model.sample(B, gen(), sampler=sampler, steps=S, **kw).float() / 2 + 0.5

        contenders = {"diffusers default": run_diffusers, "diffusers tuned": run_diffusers_tuned,
                      "gencli plain": run_plain, "gencli fast": run_fast}
        if not args.no_bf16:
            contenders["gencli bf16"] = run_bf16
        tol = {name: args.bf16_tol if "bf16" in name else args.tol for name in contenders}
        for fn in contenders.values():  # the same warm-up for everyone: one full run, untimed
            fn()
        outs: dict[str, torch.Tensor] = {}
        wall: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        names = list(contenders)
        for r in range(args.repeats):
            for name in names if r % 2 == 0 else names[::-1]:  # alternating order
                outs[name], w, c = timed(contenders[name])
                wall[name].append(w)
                cpu[name].append(c)
        ref = outs["diffusers default"].float()
        # fp32: the max |difference|; bf16 (8-bit mantissa) cannot be close pixel by pixel after many
        # steps through random weights, so its check is the MEAN |difference| (stated, asserted)
        diffs = {name: ((outs[name].float() - ref).abs().mean() if "bf16" in name
                        else (outs[name].float() - ref).abs().max()).item() for name in contenders}
        print(f"\n## {sampler} ({'eta 0' if sampler == 'ddim' else pipe.scheduler.config.variance_type}), "
              f"{args.repeats} rounds in alternating order after one warm-up run each, medians")
        bad = [n for n in contenders if not diffs[n] <= tol[n]]
        for name in contenders:
            what = "mean" if "bf16" in name else "max"
            print(f"  {what} |image diff| vs diffusers default, {name:18s} {diffs[name]:.2e} "
                  f"(asserted <= {tol[name]:g}){'  FAILED' if name in bad else ''}")
        if bad:
            print(f"OUTPUTS DIFFER beyond the stated tolerance: {', '.join(bad)}; no ratio for them", file=sys.stderr)
            failed = True
        if set(bad) & {"diffusers default", "diffusers tuned"}:
            continue
        med_w = {n: statistics.median(v) for n, v in wall.items()}
        med_c = {n: statistics.median(v) for n, v in cpu.items()}
        best = min(("diffusers default", "diffusers tuned"), key=med_w.get)
        print(f"ratios against the faster diffusers run ({best})")
        print(f"{'contender':20s} {'images/s':>9s} {'wall s':>8s} {'min..max':>13s} {'ratio':>6s} {'cpu s':>8s} "
              f"{'cpu ratio':>9s}")
        for name in contenders:
            w, c = med_w[name], med_c[name]
            ratio, cratio = ("   n/a", "      n/a") if name in bad else (f"{med_w[best] / w:6.2f}", f"{med_c[best] / c:9.2f}")
            print(f"{name:20s} {B / w:9.3f} {w:8.2f} {min(wall[name]):6.2f}..{max(wall[name]):<6.2f} "
                  f"{ratio} {c:8.2f} {cratio}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
