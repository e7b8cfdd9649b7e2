"""gencli on a CUDA GPU against its anchors: sampling (diffusers) and FID (pytorch-fid).

    python bench/gpu.py [--batch 64] [--steps 50] [--repeats 3] [-n 10000] [--skip-fid] [--skip-sample]

1. Sampling: the google/ddpm-cifar10-32 UNet architecture with random (seeded) weights, DDIM
   ``--steps`` x ``--batch`` in fp16, from the same initial noise. diffusers' DDIMPipeline with the
   UNet in fp16 (its documented GPU setting; channels_last too) against `gencli sample`'s path
   (``--precision fp16``: autocast, channels_last, CUDA graphs of the UNet step, the Triton
   GroupNorm+SiLU and DDIM kernels when Triton is installed). Warm-up run each, then ``--repeats``
   interleaved rounds, medians; the images are asserted equal within a mean |difference| of
   ``--tol`` (fp16) before the ratio is printed.
2. FID: ``-n`` Fashion-MNIST train images against ``-n`` test images (PNG folders), the whole
   process timed: ``pytorch_fid A B --device cuda`` (at its batch 50 default and at batch 200 with
   8 workers: the faster one counts) against ``gencli evaluate fid A B --device cuda --no-cache``;
   the FIDs asserted equal within 1e-4 relative.

Targets (issue 13): sampling >= 3x diffusers' pipeline, FID >= 3x pytorch-fid. Prints the GPU and
a ratio per row; exits 2 without CUDA (nothing is measured on a CPU: see the other benches).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def sampling(args) -> bool:
    import diffusers
    import torch
    from sample_vs_diffusers import DDPM_SCHEDULER, random_unet, unet_config

    from gencli import registry

    diffusers.utils.logging.set_verbosity_error()
    unet = random_unet(unet_config("cifar10"), 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipe"
        diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**DDPM_SCHEDULER)).save_pretrained(folder)
        model, _ = registry.load_model("ddpm", weights=str(folder))
    model = model.to("cuda")
    model.precision = "fp16"
    ref_unet = unet.to("cuda", torch.float16).to(memory_format=torch.channels_last)
    sched = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler(**DDPM_SCHEDULER).config)
    pipe = diffusers.DDIMPipeline(unet=ref_unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    B, S = args.batch, args.steps

    def gen():
        return torch.Generator(device="cuda").manual_seed(1)

    def run_diffusers():
        with torch.inference_mode():
            return pipe(batch_size=B, generator=gen(), num_inference_steps=S, eta=0.0, output_type="pt").images

    def run_gencli():
        from gencli.runtime import autocast

        with torch.inference_mode(), autocast(torch.device("cuda"), "fp16"):
            return model.sample(B, gen(), sampler="ddim", steps=S, eta=0.0).float() / 2 + 0.5

    contenders = {"diffusers fp16": run_diffusers, "gencli fp16": run_gencli}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    outs = {k: fn() for k, fn in contenders.items()}  # warm-up (and CUDA graph capture)
    names = list(contenders)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            torch.cuda.synchronize()
            t = time.perf_counter()
            outs[name] = contenders[name]()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    a = torch.as_tensor(outs["diffusers fp16"]).float().cpu()
    b = outs["gencli fp16"].float().cpu()
    diff = float((a - b).abs().mean())
    print(f"\n## sampling: cifar10 UNet, DDIM {S} steps x {B}, fp16; mean |image diff| {diff:.4f} "
          f"(asserted <= {args.tol})")
    if diff > args.tol:
        print("IMAGES DIFFER: no ratio printed", file=sys.stderr)
        return False
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in contenders:
        print(f"  {k:16s} {med[k]:8.3f} s  ({min(times[k]):.3f}..{max(times[k]):.3f})")
    print(f"  => gencli {med['diffusers fp16'] / med['gencli fp16']:.2f}x diffusers (target >= 3x)")
    return True


def fid(args) -> bool:
    from fid_vs_anchors import run, write_images

    work = Path(args.work or tempfile.mkdtemp(prefix="gencli-gpu-bench-"))
    a = write_images(work / "train", args.n, "train", False, 0)
    b = write_images(work / "test", args.n, "test", False, 1)
    env = dict(os.environ)
    anchors = env.get("GENCLI_ANCHORS", str(Path(__file__).parent.parent / ".anchors"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (anchors, env.get("PYTHONPATH", "")) if p)
    cmds = {
        "pytorch-fid defaults": [sys.executable, "-m", "pytorch_fid", str(a), str(b), "--device", "cuda"],
        "pytorch-fid tuned": [sys.executable, "-m", "pytorch_fid", str(a), str(b), "--device", "cuda",
                              "--batch-size", "200", "--num-workers", "8"],
        "gencli": [sys.executable, "-m", "gencli", "evaluate", "fid", str(a), str(b), "--device", "cuda",
                   "--no-cache", "-q"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    values: dict[str, float] = {}
    for k, cmd in cmds.items():  # warm-up (weights in the page cache, CUDA context)
        run(cmd, env)
    names = list(cmds)
    for r in range(args.repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            t, out, _ = run(cmds[k], env)
            times[k].append(t)
            values[k] = float(out.strip().split()[-1])
    ref = values["pytorch-fid defaults"]
    print(f"\n## evaluate fid: {args.n} vs {args.n} Fashion-MNIST PNGs, whole process")
    ok = all(abs(v - ref) <= 1e-4 * abs(ref) for v in values.values())
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in cmds:
        print(f"  {k:22s} {med[k]:8.1f} s  FID {values[k]:.6f}")
    if not ok:
        print("FIDs DIFFER beyond 1e-4 relative: no ratio printed", file=sys.stderr)
        return False
    best = min(("pytorch-fid defaults", "pytorch-fid tuned"), key=med.get)
    print(f"  => gencli {med[best] / med['gencli']:.2f}x {best} (target >= 3x)")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-n", type=int, default=10000, help="images per FID folder")
    ap.add_argument("--tol", type=float, default=0.02, help="mean |image diff| asserted (fp16)")
    ap.add_argument("--work", default=None, help="folder for the FID images (default: a temp folder)")
    ap.add_argument("--skip-fid", action="store_true")
    ap.add_argument("--skip-sample", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: bench/gpu.py measures nothing on a CPU (see bench/README.md for the CPU benches)",
              file=sys.stderr)
        return 2
    from gencli.kernels import triton_ops

    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"Triton kernels {'on' if triton_ops.available() else 'off (not installed)'}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    ok = True
    if not args.skip_sample:
        ok &= sampling(args)
    if not args.skip_fid:
        ok &= fid(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
