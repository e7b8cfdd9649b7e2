"""Benchmark: `gencli evaluate fid` against pytorch-fid's CLI and torch-fidelity's CLI, end to end.

Same folders of images, same Inception weights file. Each run is a fresh process (start-up,
imports, weights loading, decoding, network, statistics, Frechet distance: what a user waits for).

Rules (issue 15): every contender at its own best settings, each anchor both at its defaults and
tuned (the ratio is against the FASTER of the two); one untimed warm-up run each (also warms the
page cache); ``--repeats`` rounds, interleaved, the order alternating every round; medians; the
FID values ASSERTED equal within ``--tol`` (relative) before any ratio prints (exit 1 otherwise).

pytorch-fid mode (default preprocessing):
  gencli               ``gencli evaluate fid A B --weights pt_inception...pth --no-cache``: starts
                       from the same .pth file as the anchors (its conversion is inside the time),
                       no statistics cache; its defaults (batch 16 on the CPU, allocator tuning)
  pytorch-fid default  ``python -m pytorch_fid A B --device cpu`` (batch 50, DataLoader workers =
                       min(CPUs, 8), which oversubscribe 2 cores)
  pytorch-fid tuned    the same with ``--batch-size 8 --num-workers 0`` and gencli's allocator
                       tuning as environment variables (gencli.runtime.MALLOC_ENV)
torch-fidelity mode (``--preprocess tf``):
  gencli tf            as above with ``--preprocess tf``
  torch-fidelity default  ``fidelity --fid --cpu --no-cache`` (batch 64, 4 DataLoader workers)
  torch-fidelity tuned    the same with ``--batch-size 8 --save-cpu-ram`` (no workers) + allocator env
The warm statistics cache of gencli is timed once, for information (no ratio).

Then the Frechet-distance step alone on 2048-d covariances: gencli's eigh-based
``frechet_distance`` against pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``), same
rules (warm-up, alternating order, values asserted equal).

The real FID weights cannot be downloaded here: a random-weight network is saved in
pytorch-fid's own ``.pth`` layout (put in a private torch hub cache under the official file name,
so pytorch-fid loads it unmodified; torch-fidelity gets ``--feature-extractor-weights-path``;
gencli gets ``--weights`` with the same file). Speed does not depend on the values of the weights.

Usage: ``python bench/fid_vs_anchors.py [-n 2000] [--repeats 3] [--jpeg] [--skip-pytorch-fid]
[--skip-fidelity] [--skip-frechet] [--skip-e2e] [--tol 1e-4] [--work DIR]``
(the anchors are imported from ``$GENCLI_ANCHORS`` or ``.anchors/``: ``make anchors``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
SHIM = ("import sys; sys.path.insert(0, {root!r}); from gencli.metrics.testing import import_anchors; "
        "import_anchors(); ")


def write_images(folder: Path, n: int, split: str, jpeg: bool, seed: int) -> Path:
    """n Fashion-MNIST PNGs (28x28 grey), or random-size colour JPEGs with --jpeg."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return folder
    rng = np.random.default_rng(seed)
    if jpeg:
        for i in range(n):
            h, w = rng.integers(64, 400, size=2)
            base = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((int(w), int(h)), Image.BICUBIC)
            img.save(folder / f"{i:05d}.jpg", quality=90)
        return folder
    from gencli.io.named_datasets import load_fashion_mnist

    ds = load_fashion_mnist(split)
    idx = rng.permutation(len(ds))[:n]
    for j, i in enumerate(idx):
        Image.fromarray(ds.images[int(i), 0].numpy()).save(folder / f"{j:05d}.png")
    return folder


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return dt, p.stdout, p.stderr


def rounds(contenders: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """One untimed warm-up each, then ``repeats`` rounds in alternating order; (times, last values)."""
    values = {name: fn()[1] for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t, values[name] = contenders[name]()
            times[name].append(t)
            print(f"  round {r + 1} {name:24s} {t:8.1f} s  FID {values[name]:.6f}", flush=True)
    return times, values


def inception_macs() -> float:
    """Multiply-adds of the convolutions of one 299x299 forward of the FID Inception."""
    import torch
    from cpu_limits import conv_macs

    from gencli.metrics.inception import FIDInceptionV3

    return float(conv_macs(FIDInceptionV3().eval(), torch.zeros(1, 3, 299, 299)))


def machine_rates() -> dict[str, float]:
    """G multiply-adds/s of this CPU in fp32 (:mod:`cpu_limits`): as a matmul and as a 1x1 convolution."""
    from cpu_limits import conv1x1_gflops, matmul_gflops

    return {"matmul": matmul_gflops() / 2, "conv": conv1x1_gflops() / 2}


def report(times: dict[str, list[float]], values: dict[str, float], ours: str, anchors: list[str],
           tol: float, macs: float | None = None, rates: dict[str, float] | None = None) -> bool:
    """Assert the values, then print the table (ratio: best anchor time / this time). With ``macs``
    (the Inception multiply-adds of the whole run) and ``rates`` (:func:`machine_rates`), also each
    contender's G multiply-adds/s and the time the convolutions alone would take at the CPU's rate."""
    ref = values[anchors[0]]
    bad = [n for n in values if not abs(values[n] - ref) <= tol * abs(ref)]
    for n in values:
        print(f"  {n:24s} FID {values[n]:.9f}  rel diff to {anchors[0]}: {abs(values[n] - ref) / abs(ref):.1e}"
              f" (asserted <= {tol:g})")
    if bad:
        print(f"VALUES DIFFER beyond --tol {tol:g}: {', '.join(bad)}; no ratios printed", file=sys.stderr)
        return False
    med = {n: float(np.median(v)) for n, v in times.items()}
    best = min(anchors, key=med.get)
    print(f"  {'contender':24s} {'median s':>9s} {'min..max':>15s} {'ratio vs ' + best:>28s}"
          + (f" {'GMAC/s':>8s}" if macs else ""))
    for n in times:
        print(f"  {n:24s} {med[n]:9.1f} {min(times[n]):7.1f}..{max(times[n]):<7.1f} {med[best] / med[n]:28.2f}"
              + (f" {macs / med[n] / 1e9:8.1f}" if macs else ""))
    print(f"  => gencli {med[best] / med[ours]:.2f}x the faster {best.split()[0]} run ({best})", flush=True)
    if macs and rates:
        peak = max(rates.values())
        bound = macs / (peak * 1e9)
        print(f"  the limit: {macs / 1e12:.2f} T multiply-adds of convolutions take {bound:.1f} s at this CPU's "
              f"{peak:.0f} GMAC/s, so no direct-convolution fp32 run can beat {best} by more than "
              f"{med[best] / bound:.2f}x (gencli is at {bound / med[ours]:.0%} of that rate)", flush=True)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="images per folder")
    ap.add_argument("--jpeg", action="store_true", help="random-size colour JPEGs instead of Fashion-MNIST PNGs")
    ap.add_argument("--work", default=None, help="folder for images/weights (default: a temp folder)")
    ap.add_argument("--skip-fidelity", action="store_true", help="skip the tf-mode / torch-fidelity pair")
    ap.add_argument("--skip-pytorch-fid", action="store_true", help="skip the pytorch-fid-mode end-to-end runs")
    ap.add_argument("--skip-frechet", action="store_true", help="skip the Frechet-distance-step timing")
    ap.add_argument("--skip-e2e", action="store_true", help="only time the Frechet-distance step")
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--repeats", "--repeat", type=int, default=3, help="timed rounds (after one warm-up)")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative FID difference asserted")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    import torch

    from gencli.metrics.stats import frechet_distance
    from gencli.metrics.testing import import_anchors, random_inception_state, save_pth
    from gencli.runtime import MALLOC_ENV, cpu_features

    pfid, _ = import_anchors()
    work = Path(args.work or tempfile.mkdtemp(prefix="gencli-bench-"))
    torch_home = work / "torch"
    pth = torch_home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    if not pth.exists():
        save_pth(random_inception_state(0), pth)
    kind = "jpeg" if args.jpeg else "fmnist"
    real = write_images(work / f"{kind}-{args.n}-a", args.n, "train", args.jpeg, 0)
    fake = write_images(work / f"{kind}-{args.n}-b", args.n, "test", args.jpeg, 1)
    env = dict(os.environ, TORCH_HOME=str(torch_home), HF_HUB_OFFLINE="1", GENCLI_OFFLINE="1",
               GENCLI_CACHE=str(work / "gencli-cache"), PYTHONPATH=str(ROOT))
    for k in (*MALLOC_ENV, "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
        env.pop(k, None)
    tuned_env = dict(env, **MALLOC_ENV)
    anchors_dir = os.environ.get("GENCLI_ANCHORS")
    if anchors_dir:
        env["GENCLI_ANCHORS"] = tuned_env["GENCLI_ANCHORS"] = anchors_dir
    py = sys.executable
    print(f"{args.n} + {args.n} {'random-size JPEGs' if args.jpeg else 'Fashion-MNIST PNGs'}, dims {args.dims}, "
          f"{os.cpu_count()} CPUs ({cpu_features()}), torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}; {args.repeats} rounds after a warm-up",
          flush=True)

    ok = True
    macs = rates = None
    if not args.skip_e2e:
        rates = machine_rates()
        macs = inception_macs() * 2 * args.n
        print(f"Inception convolutions: {macs / 2 / args.n / 1e9:.2f} G multiply-adds per image; this CPU in fp32: "
              f"2048^3 matmul {rates['matmul']:.0f} GMAC/s, as a 1x1 convolution {rates['conv']:.0f} GMAC/s",
              flush=True)
        gencli = [py, "-m", "gencli", "evaluate", "fid", str(real), str(fake), "--weights", str(pth),
                  "--dims", str(args.dims), "--json", "--quiet", "--no-cache"]

        def gencli_run(extra=()):
            def fn():
                t, out, _ = run(gencli + list(extra), env)
                return t, json.loads(out)["fid"]
            return fn

        def pfid_run(extra, e):
            code = SHIM.format(root=str(ROOT)) + (
                "from pytorch_fid.fid_score import main; "
                f"sys.argv = ['pytorch_fid', {str(real)!r}, {str(fake)!r}, '--device', 'cpu', '--dims', '{args.dims}'"
                + "".join(f", {x!r}" for x in extra) + "]; main()")

            def fn():
                t, out, _ = run([py, "-c", code], e)
                m = re.search(r"FID:\s+([-0-9.eE+naif]+)", out)
                return t, float(m.group(1)) if m else float("nan")
            return fn

        if not args.skip_pytorch_fid:
            print("\n## pytorch-fid mode", flush=True)
            times, values = rounds({"gencli": gencli_run(),
                                    "pytorch-fid default": pfid_run([], env),
                                    "pytorch-fid tuned": pfid_run(["--batch-size", "8", "--num-workers", "0"],
                                                                  tuned_env)},
                                   args.repeats)
            ok &= report(times, values, "gencli", ["pytorch-fid default", "pytorch-fid tuned"], args.tol, macs, rates)
            t_warm, out, _ = run([c for c in gencli if c != "--no-cache"], env)  # fills the cache
            t_warm, out, _ = run([c for c in gencli if c != "--no-cache"], env)
            print(f"  gencli with a warm statistics cache (for information): {t_warm:.1f} s, "
                  f"FID {json.loads(out)['fid']:.6f}")
        if not args.skip_fidelity:
            def fidelity_run(extra, e):
                code = SHIM.format(root=str(ROOT)) + (
                    "from torch_fidelity.fidelity import main; "
                    f"sys.argv = ['fidelity', '--fid', '--cpu', '--json', '--no-cache', '--input1', {str(real)!r}, "
                    f"'--input2', {str(fake)!r}, '--feature-extractor-weights-path', {str(pth)!r}, "
                    f"'--feature-layer-fid', '{args.dims}', '--samples-find-ext', 'png,jpg,jpeg', '--silent'"
                    + "".join(f", {x!r}" for x in extra) + "]; main()")

                def fn():
                    t, out, _ = run([py, "-c", code], e)
                    return t, json.loads(out[out.index("{"):])["frechet_inception_distance"]
                return fn

            print("\n## torch-fidelity mode (--preprocess tf)", flush=True)
            times, values = rounds({"gencli tf": gencli_run(["--preprocess", "tf"]),
                                    "torch-fidelity default": fidelity_run([], env),
                                    "torch-fidelity tuned": fidelity_run(["--batch-size", "8", "--save-cpu-ram"],
                                                                         tuned_env)},
                                   args.repeats)
            ok &= report(times, values, "gencli tf", ["torch-fidelity default", "torch-fidelity tuned"], args.tol,
                         macs, rates)

    if args.skip_frechet:
        return 0 if ok else 1
    # the Frechet-distance step alone, 2048-d
    rng = np.random.default_rng(0)
    d = 2048
    mats = []
    for _ in range(2):
        b = rng.standard_normal((d, d)) / np.sqrt(d)
        mats.append(b @ b.T + 0.01 * np.eye(d))
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    step = {"gencli frechet_distance": lambda: frechet_distance(mu1, mats[0], mu2, mats[1]),
            "pytorch-fid sqrtm": lambda: float(pfid.calculate_frechet_distance(mu1, mats[0], mu2, mats[1]))}

    def timed(fn):
        def run_it():
            t = time.perf_counter()
            v = fn()
            return time.perf_counter() - t, v
        return run_it

    print("\n## Frechet distance alone, 2048-d, full-rank covariances", flush=True)
    times, values = rounds({k: timed(f) for k, f in step.items()}, max(1, args.repeats))
    ok &= report(times, values, "gencli frechet_distance", ["pytorch-fid sqrtm"], args.tol)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
