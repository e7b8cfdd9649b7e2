"""gencli sampling against the CPU runtimes users export to: ONNX Runtime and OpenVINO.

    python bench/sample_vs_runtimes.py [--batch 16] [--steps 50] [--repeats 2] [--threads N]
                                       [--exporter auto|torchscript|dynamo] [--no-openvino]
                                       [--bf16 auto|on|off] [--omp-passive] [--no-split-variants]

The cifar10-config UNet (gencli.models.diffusion.unet.DDPM_CIFAR10_CONFIG, 35.7 M parameters, random
seeded weights with the tests' init, unconditional, linear schedule, clip_sample) is exported once
with ``gencli.exporting`` (the code behind `gencli export`; not timed, its time is printed). Then
DDIM (eta 0, leading spacing) runs ``--steps`` x ``--batch`` from the same x_T in:

  gencli fp32       DiffusionModel.sample, inference fast path (channels_last, Winograd where it
                    pays, fused projections), as `gencli sample ddim` runs it
  onnxruntime fp32  InferenceSession, ORT_ENABLE_ALL, intra_op_num_threads = --threads,
                    the DDIM update by gencli's DDIMSampler (a few vector ops per step)
  openvino f32      core.compile_model(CPU, INFERENCE_PRECISION_HINT=f32, LATENCY hint,
                    INFERENCE_NUM_THREADS = --threads), same loop
  ... split / streams   (unless --no-split-variants) the same runtimes with the batch cut into --threads
                    slices run concurrently (ONNX Runtime: intra_op_num_threads 1, one Run per slice
                    from a thread pool; OpenVINO: THROUGHPUT hint, NUM_STREAMS = --threads, one
                    infer request per slice, start_async). On 2 cores this is the runtimes' best
                    setting (8-13% quicker); gencli gained nothing from the same split (tried and
                    dropped 2026-12-02), so it has no such row
  gencli bf16 / openvino bf16   only where the CPU has AVX512-BF16 or AMX (--bf16 on forces them;
                    elsewhere bf16 is emulated and its numbers mean nothing)

"whole" is one sampling run as a fresh process would do it: session creation / model compile (or
gencli's fast-path setup) plus every step. "per step" is the loop alone divided by the steps.
Each contender is warmed up alike (one 2-step run, session created and dropped), then the
contenders run interleaved, the order rotating each repeat; medians are printed. Before any ratio
is printed, every contender is checked against gencli fp32: fp32 rows by their images, max abs
diff <= --tol (1e-3; DDIM over 50 steps amplifies the 1e-6 per-forward differences); bf16 rows by
one forward, the relative RMS error of the first step's output <= BF16_FORWARD_TOL (their images
drift apart over the steps with random weights, so image differences are printed, not bounded). Ratios are "contender time / gencli fp32 time": > 1 means gencli is faster.
"setup" is whole minus loop (session creation / compile; 0 for gencli, whose fast-path setup happens
inside its first step); "whole@N" projects one run of N steps as setup + N x per step (--project, default
50), for runs timed over fewer steps on a slow machine.

On a machine shared with other busy processes, every number here is noisy: the load average is
printed next to them. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
             "prediction_type": "epsilon", "clip_sample": True, "variance_type": "fixed_large"}
#: relative RMS error allowed for one forward of a bf16 row against gencli fp32 (bf16 keeps 8 bits of
#: mantissa: ~0.4% per rounding, compounded over the UNet's layers; measured on a Xeon with AMX:
#: gencli bf16 0.9%, OpenVINO bf16 4.8%)
BF16_FORWARD_TOL = 0.1
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
            "amx_fp16")


def build_model(seed: int):
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import randomize  # the tests' init: random everywhere, norms near 1

    from gencli.models.diffusion.ddpm import DiffusionModel
    from gencli.models.diffusion.unet import DDPM_CIFAR10_CONFIG

    config = {"unet": dict(DDPM_CIFAR10_CONFIG), "scheduler": dict(SCHEDULER), "image_size": 32, "channels": 3,
              "num_classes": None, "sampling": {"sampler": "ddim", "steps": 50, "eta": 0.0, "spacing": "leading",
                                                "guidance": 1.0}}
    torch.manual_seed(seed)
    model = DiffusionModel(config)
    randomize(model, seed)
    return model.eval()


def timed(fn):
    w0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="threads for every engine (default: the CPUs)")
    ap.add_argument("--exporter", default="auto", choices=["auto", "torchscript", "dynamo"])
    ap.add_argument("--opset", type=int, default=None)
    ap.add_argument("--no-split-variants", dest="split_variants", action="store_false",
                    help="skip the runtimes' split rows: by default they also run with the batch split across --threads single-threaded "
                         "workers (ONNX Runtime: one session, concurrent runs) / streams (OpenVINO: "
                         "THROUGHPUT hint, one request per stream), their best setting on 2 cores")
    ap.add_argument("--tol", type=float, default=1e-3, help="max abs image diff to gencli fp32 (fp32 rows)")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--no-onnxruntime", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for torch and no spinning for ONNX Runtime (busy machines)")
    ap.add_argument("--project", type=int, default=50,
                    help="also print the whole-process time projected to this many steps (setup + N x per step)")
    args = ap.parse_args(argv)
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    threads = args.threads or len(os.sched_getaffinity(0))

    from gencli.runtime import cpu_info  # torch-free: OMP_WAIT_POLICY above still applies

    cpu, flags = cpu_info()
    flags = flags or frozenset()
    have = [f for f in FEATURES if f in flags]
    native_bf16 = bool({"avx512_bf16", "amx_bf16"} & flags)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16)
    print(f"# CPU: {cpu}, {os.cpu_count()} CPUs, features: {' '.join(have) or 'none of ' + ' '.join(FEATURES)}")
    if not native_bf16:
        print("# bf16: this CPU has no AVX512-BF16 or AMX: bf16 rows "
              + ("forced (--bf16 on): emulated, their times mean nothing" if bf16 else
                 "are not measured here (they need such a CPU; run this on one)"))

    import numpy as np
    import torch

    from gencli import exporting
    from gencli.models.diffusion.schedulers import DDIMSampler
    from gencli.runtime import tune_allocator

    torch.set_num_threads(threads)
    tuned = tune_allocator()
    ort = ov = None
    if not args.no_onnxruntime:
        try:
            import onnxruntime as ort
        except ImportError:
            print("# onnxruntime is not installed (pip install 'gencli[bench]'): skipped")
    if not args.no_openvino:
        try:
            import openvino as ov
        except ImportError:
            print("# openvino is not installed (pip install 'gencli[bench]'): skipped")

    model = build_model(args.seed)
    B, S = args.batch, args.steps
    x_T = model.prior(B, torch.Generator().manual_seed(args.seed + 1))
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "unet.onnx"
    graph = model.export_onnx()
    _, t_export = timed(lambda: exporting.write_onnx(graph, path, opset=args.opset, exporter=args.exporter))
    del graph
    print(f"# cifar10-config UNet ({sum(p.numel() for p in model.unet.parameters()) / 1e6:.1f} M params), "
          f"DDIM eta 0, {S} steps x {B} images, {threads} threads everywhere, torch {torch.__version__}"
          + (f", onnxruntime {ort.__version__}" if ort else "") + (f", openvino {ov.__version__}" if ov else "")
          + f", malloc tuning {'on' if tuned else 'off'}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}")
    print(f"# exported once with gencli.exporting ({args.exporter}): {t_export:.1f} s, "
          f"{path.stat().st_size / 1e6:.0f} MB (not timed below)")

    def gencli_run(precision: str):
        def run(steps: int):
            t = {}
            w0 = time.perf_counter()
            with torch.inference_mode():
                if precision == "bf16":
                    with torch.autocast("cpu", torch.bfloat16):
                        x = model.sample(B, None, steps=steps, sampler="ddim", eta=0.0, init_noise=x_T)
                else:
                    x = model.sample(B, None, steps=steps, sampler="ddim", eta=0.0, init_noise=x_T)
            t["whole"] = time.perf_counter() - w0
            t["loop"] = t["whole"]  # gencli has no separate setup: its fast-path caches are built in step 1
            return x.float(), t
        return run

    first_outputs = {}  # the network's output at the first step (x_T), per runtime: the bf16 check

    def loop(forward, steps: int, name: str) -> torch.Tensor:
        algo = DDIMSampler(model.schedule, steps, "leading", eta=0.0)
        x = x_T.clone()
        for i, s in enumerate(algo.steps):
            ts = np.full((B,), s.t, dtype=np.int64)
            out = torch.from_numpy(forward(np.ascontiguousarray(x.numpy()), ts))
            if i == 0 and steps == S:
                first_outputs[name] = out.clone()
            x = algo.step(i, out, x, None)
        return x.clamp(-1, 1)

    def gencli_first_output(precision: str) -> torch.Tensor:
        t0 = DDIMSampler(model.schedule, S, "leading", eta=0.0).steps[0].t
        with torch.inference_mode(), model.unet.fast_inference(), torch.autocast("cpu", torch.bfloat16,
                                                                                  enabled=precision == "bf16"):
            return model.unet(x_T, torch.full((B,), t0, dtype=torch.long)).float()

    def split_forward(run_half, parts: int):
        """A forward that runs the batch as ``parts`` slices concurrently (run_half(xs, ts) each)."""
        def forward(xs, ts):
            bounds = np.linspace(0, len(xs), parts + 1).astype(int)
            futures = [pool.submit(run_half, np.ascontiguousarray(xs[a:b]), ts[a:b])
                       for a, b in zip(bounds[:-1], bounds[1:])]
            return np.concatenate([f.result() for f in futures])
        return forward

    def ort_run_with(split: bool):
        def run(steps: int):
            t = {}
            w0 = time.perf_counter()
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = 1 if split else threads
            if args.omp_passive:  # the same courtesy as OMP_WAIT_POLICY=PASSIVE gives torch: no spin-waiting
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            w1 = time.perf_counter()
            one = lambda xs, ts: sess.run(None, {"sample": xs, "timestep": ts})[0]  # noqa: E731
            x = loop(split_forward(one, threads) if split else one, steps, "onnxruntime fp32" + (" split" if split else ""))
            t["loop"] = time.perf_counter() - w1
            t["whole"] = time.perf_counter() - w0
            return x, t
        return run

    ort_run = ort_run_with(False)

    def ov_run(precision: str, split: bool = False):
        def run(steps: int):
            t = {}
            w0 = time.perf_counter()
            core = ov.Core()
            hint = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads} if split else {"PERFORMANCE_HINT": "LATENCY"}
            compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                             "INFERENCE_NUM_THREADS": threads, **hint})
            reqs = [compiled.create_infer_request() for _ in range(threads if split else 1)]
            w1 = time.perf_counter()

            def forward(xs, ts):
                if not split:
                    reqs[0].infer({"sample": xs, "timestep": ts})
                    return reqs[0].get_output_tensor(0).data.copy()
                bounds = np.linspace(0, len(xs), len(reqs) + 1).astype(int)
                for req, a, b in zip(reqs, bounds[:-1], bounds[1:]):  # one slice per stream, concurrently
                    req.start_async({"sample": np.ascontiguousarray(xs[a:b]), "timestep": ts[a:b]})
                for req in reqs:
                    req.wait()
                return np.concatenate([req.get_output_tensor(0).data.copy() for req in reqs])

            x = loop(forward, steps, f"openvino {precision}" + (" streams" if split else ""))
            t["loop"] = time.perf_counter() - w1
            t["whole"] = time.perf_counter() - w0
            return x, t
        return run

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, threads))
    contenders = {"gencli fp32": gencli_run("fp32")}
    if ort:
        contenders["onnxruntime fp32"] = ort_run
        if threads > 1 and args.split_variants:
            contenders["onnxruntime fp32 split"] = ort_run_with(True)
    if ov:
        contenders["openvino f32"] = ov_run("f32")
        if threads > 1 and args.split_variants:
            contenders["openvino f32 streams"] = ov_run("f32", split=True)
    if bf16:
        contenders["gencli bf16"] = gencli_run("bf16")
        if ov:
            contenders["openvino bf16"] = ov_run("bf16")

    for name, fn in contenders.items():  # warm-up, alike: libraries loaded, one session made and dropped
        fn(2)
    outs, whole, per_step = {}, {k: [] for k in contenders}, {k: [] for k in contenders}
    setup = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            load = os.getloadavg()[0]
            outs[name], t = contenders[name](S)
            whole[name].append(t["whole"])
            per_step[name].append(t["loop"] / S)
            setup[name].append(t["whole"] - t["loop"])
            print(f"#   repeat {r + 1} {name:17s} whole {t['whole']:7.2f} s, loop {t['loop']:7.2f} s "
                  f"(load average {load:.1f})", flush=True)

    ref = outs["gencli fp32"]
    diffs = {name: float((x - ref).abs().max()) for name, x in outs.items()}
    means = {name: float((x - ref).abs().mean()) for name, x in outs.items()}
    # bf16 rows: their images drift from fp32 over the steps (random weights amplify it), so what is
    # asserted is one forward: the relative RMS error of the first step's output against gencli fp32's
    ref_out = gencli_first_output("fp32")
    first_outputs["gencli bf16"] = gencli_first_output("bf16")
    rel = {name: float((o - ref_out).pow(2).mean().sqrt() / ref_out.pow(2).mean().sqrt())
           for name, o in first_outputs.items() if name in outs}
    for name, d in diffs.items():
        if "bf16" in name:
            assert rel[name] <= BF16_FORWARD_TOL, \
                f"{name}: one forward differs from gencli fp32 by {rel[name]:.2e} relative RMS (> {BF16_FORWARD_TOL})"
        else:
            assert d <= args.tol, f"{name}: images differ from gencli fp32 by {d:.2e} max (> {args.tol})"
    print(f"\n## medians of {args.repeats} interleaved repeats (ratio = its time / gencli fp32's; > 1: gencli "
          f"faster); load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    P = args.project
    print(f"{'contender':18s} {'per step s':>10s} {'ratio':>6s} {'setup s':>7s} {'whole s':>8s} {'ratio':>6s} "
          f"{'whole@' + str(P):>9s} {'ratio':>6s} {'max |diff|':>10s} {'mean |diff|':>11s} {'forward rel':>11s}")
    base_s, base_w = statistics.median(per_step["gencli fp32"]), statistics.median(whole["gencli fp32"])
    base_p = base_s * P
    for name in names:
        s, w, su = statistics.median(per_step[name]), statistics.median(whole[name]), statistics.median(setup[name])
        p = su + s * P
        print(f"{name:18s} {s:10.3f} {s / base_s:6.2f} {su:7.2f} {w:8.2f} {w / base_w:6.2f} {p:9.1f} {p / base_p:6.2f} "
              f"{diffs[name]:10.1e} {means[name]:11.1e} {rel.get(name, float('nan')):11.1e}")
    print(f"(images in [-1, 1] compared with gencli fp32: fp32 rows within {args.tol:g} max; bf16 rows by one "
          f"forward: relative RMS error of the first step's output within {BF16_FORWARD_TOL:g}; "
          f"gencli's per step includes its one-time fast-path setup spread over the steps)")
    if "gencli bf16" in names and "openvino bf16" in names:
        g, o = "gencli bf16", "openvino bf16"
        ws = {k: statistics.median(whole[k]) for k in (g, o)}
        ps = {k: statistics.median(setup[k]) + statistics.median(per_step[k]) * P for k in (g, o)}
        print(f"gencli bf16 vs openvino bf16: per step {statistics.median(per_step[o]) / statistics.median(per_step[g]):.2f}x, "
              f"whole {ws[o] / ws[g]:.2f}x, whole@{P} {ps[o] / ps[g]:.2f}x (> 1: gencli faster)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
