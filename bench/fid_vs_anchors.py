"""Benchmark: `gencli evaluate fid` against pytorch-fid's CLI and torch-fidelity's CLI, end to end.

Same folders of images, same Inception weights, one run. Each tool runs in a fresh process
(start-up, imports, decoding, network, statistics, Frechet distance: what a user waits for):

* gencli ``evaluate fid A B`` (cold statistics cache; the warm, cached run is printed too),
* pytorch-fid ``python -m pytorch_fid A B`` (its own defaults: batch 50, DataLoader workers),
* gencli ``evaluate fid A B --preprocess tf`` and torch-fidelity ``fidelity --fid --cpu``,

then the Frechet-distance step alone on 2048-d covariances: gencli's eigh-based
``frechet_distance`` against pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``).
Prints seconds, ratios and the FID values side by side.

The real FID weights cannot be downloaded here: a random-weight network is saved in
pytorch-fid's own ``.pth`` layout (put in a private torch hub cache under the official file name,
so pytorch-fid loads it unmodified; torch-fidelity gets ``--feature-extractor-weights-path``;
gencli gets the same file through ``--weights``, converted once). Speed does not depend on the
values of the weights.

Usage: ``python bench/fid_vs_anchors.py [-n 2000] [--jpeg] [--skip-fidelity] [--work DIR]``
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="images per folder")
    ap.add_argument("--jpeg", action="store_true", help="random-size colour JPEGs instead of Fashion-MNIST PNGs")
    ap.add_argument("--work", default=None, help="folder for images/weights (default: a temp folder)")
    ap.add_argument("--skip-fidelity", action="store_true", help="skip the tf-mode / torch-fidelity pair")
    ap.add_argument("--skip-e2e", action="store_true", help="only time the Frechet-distance step")
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3, help="timings of the Frechet step (interleaved)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    import torch

    from gencli.metrics.stats import frechet_distance
    from gencli.metrics.testing import import_anchors, random_inception_state, save_pth

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
    anchors = os.environ.get("GENCLI_ANCHORS")
    if anchors:
        env["GENCLI_ANCHORS"] = anchors
    py = sys.executable
    print(f"{args.n} + {args.n} {'random-size JPEGs' if args.jpeg else 'Fashion-MNIST PNGs'}, dims {args.dims}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
          flush=True)

    rows = []
    if not args.skip_e2e:
        # convert once so that every gencli run (cold stats cache) starts from the same file
        from gencli.convert.fid_inception import convert_fid_inception

        st = work / "fid_inception.safetensors"
        if not st.exists():
            convert_fid_inception(pth, st)
        gencli = [py, "-m", "gencli", "evaluate", "fid", str(real), str(fake), "--weights", str(st),
                  "--dims", str(args.dims), "--json", "--quiet"]
        import shutil

        shutil.rmtree(work / "gencli-cache", ignore_errors=True)
        t_g, out, _ = run(gencli, env)
        fid_g = json.loads(out)["fid"]
        print(f"gencli (pytorch-fid mode, cold cache): {t_g:8.1f} s  FID {fid_g:.6f}", flush=True)
        t_gw, out, _ = run(gencli, env)
        print(f"gencli (warm statistics cache):        {t_gw:8.1f} s  FID {json.loads(out)['fid']:.6f}", flush=True)
        code = SHIM.format(root=str(ROOT)) + (
            "from pytorch_fid.fid_score import main; "
            f"sys.argv = ['pytorch_fid', {str(real)!r}, {str(fake)!r}, '--device', 'cpu', '--dims', '{args.dims}']; "
            "main()")
        t_p, out, _ = run([py, "-c", code], env)
        m = re.search(r"FID:\s+([-0-9.eE+naif]+)", out)
        fid_p = float(m.group(1)) if m else float("nan")
        print(f"pytorch-fid CLI:                       {t_p:8.1f} s  FID {fid_p:.6f}", flush=True)
        rows.append(("pytorch-fid", t_p, t_g, fid_p, fid_g))
        if not args.skip_fidelity:
            shutil.rmtree(work / "gencli-cache", ignore_errors=True)
            t_gt, out, _ = run(gencli + ["--preprocess", "tf"], env)
            fid_gt = json.loads(out)["fid"]
            print(f"gencli --preprocess tf (cold cache):   {t_gt:8.1f} s  FID {fid_gt:.6f}", flush=True)
            layer = str(args.dims)
            code = SHIM.format(root=str(ROOT)) + (
                "from torch_fidelity.fidelity import main; "
                f"sys.argv = ['fidelity', '--fid', '--cpu', '--json', '--no-cache', '--input1', {str(real)!r}, "
                f"'--input2', {str(fake)!r}, '--feature-extractor-weights-path', {str(pth)!r}, "
                f"'--feature-layer-fid', '{layer}', '--samples-find-ext', 'png,jpg,jpeg', '--silent']; main()")
            try:
                t_f, out, _ = run([py, "-c", code], env)
            except SystemExit:  # older/newer CLIs without --silent
                t_f, out, _ = run([py, "-c", code.replace(", '--silent'", "")], env)
            fid_f = json.loads(out[out.index("{"):])["frechet_inception_distance"]
            print(f"torch-fidelity CLI:                    {t_f:8.1f} s  FID {fid_f:.6f}", flush=True)
            rows.append(("torch-fidelity", t_f, t_gt, fid_f, fid_gt))

    # the Frechet-distance step alone, 2048-d
    rng = np.random.default_rng(0)
    d = 2048
    mats = []
    for _ in range(2):
        b = rng.standard_normal((d, d)) / np.sqrt(d)
        mats.append(b @ b.T + 0.01 * np.eye(d))
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    times_ours, times_ref = [], []
    for _ in range(max(1, args.repeat)):  # interleaved, so that a change of machine load hits both
        t = time.perf_counter()
        ours = frechet_distance(mu1, mats[0], mu2, mats[1])
        times_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = pfid.calculate_frechet_distance(mu1, mats[0], mu2, mats[1])
        times_ref.append(time.perf_counter() - t)
    t_ours, t_ref = float(np.median(times_ours)), float(np.median(times_ref))
    ratios = ", ".join(f"{r / o:.1f}x" for o, r in zip(times_ours, times_ref))
    print(f"Frechet distance 2048-d (median of {len(times_ours)}): gencli {t_ours:.2f} s, pytorch-fid sqrtm "
          f"{t_ref:.2f} s ({t_ref / t_ours:.1f}x; each run: {ratios}); values {ours:.9f} vs {ref:.9f} "
          f"(rel diff {abs(ours - ref) / abs(ref):.1e})")

    if rows:
        print()
        print(f"{'anchor':<16}{'anchor s':>10}{'gencli s':>10}{'speed-up':>10}{'FID anchor':>16}{'FID gencli':>16}"
              f"{'rel diff':>10}")
        for name, ta, tg, fa, fg in rows:
            rel = abs(fa - fg) / max(abs(fa), 1e-12)
            print(f"{name:<16}{ta:>10.1f}{tg:>10.1f}{ta / tg:>9.2f}x{fa:>16.6f}{fg:>16.6f}{rel:>10.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
