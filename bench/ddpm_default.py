"""Export and measure the bundled DDPM default (weights/ddpm-fashion-mnist.safetensors).

    python bench/ddpm_default.py export runs/ddpm-fmnist       # EMA weights -> weights/, fp16
    python bench/ddpm_default.py classes [--per-class 100] [--sampler ddim] [--steps 50]
    python bench/ddpm_default.py timing                         # the README's sampling commands, timed

The run itself is a plain `gencli train ddpm --data fashion-mnist --out runs/ddpm-fmnist --steps N`
(batch 128, seed 0, EMA 0.999, the default Fashion-MNIST config).

`classes` samples ``--per-class`` images of every class K with ``--class K`` and reports, per class,
the share the bundled Fashion-MNIST classifier (weights/fmnist-classifier.safetensors) puts in K,
next to its accuracy on the real test images of K. Samples are quantised to 8 bits first, as a
saved PNG would be. The FD of samples against the test split is `gencli evaluate fid` itself:

    gencli evaluate fid fashion-mnist:test --model ddim -n 10000 --features fmnist --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights" / "ddpm-fashion-mnist.safetensors"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export(run: Path, out: Path, force: bool, spacing: str | None = None) -> None:
    from gencli.checkpoints import load_checkpoint, read_metadata, save_checkpoint

    src = run / "model.safetensors"
    ckpt = load_checkpoint(src)
    meta = read_metadata(src)
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    start = f", started (gencli train --init) from {meta['init']}" if meta.get("init") else ""
    meta["notes"] = (f"EMA weights of the Fashion-MNIST run {run.name} after {meta.get('step')} steps of batch 128"
                     f"{start} (its commands: weights/README.md); stored as fp16")
    meta.pop("gencli_format", None)
    if spacing:  # the timestep spacing `gencli sample` uses for fewer than 1000 steps unless told
        meta["config"]["sampling"]["spacing"] = spacing
    path = save_checkpoint(out, ckpt.tensors, meta, force=force, dtype=torch.float16)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, step {meta.get('step')}, "
        f"{len(lines)} log lines)")


def quantise(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.inference_mode()
def classes(per_class: int, sampler: str, steps: int, batch: int, seed: int, guidance: float,
            weights: Path = WEIGHTS, only: list[int] | None = None) -> dict:
    from gencli import registry
    from gencli.io.named_datasets import load_fashion_mnist
    from gencli.metrics.fmnist_classifier import classify

    model, _ = registry.load_model("ddpm", weights=str(weights))
    test = load_fashion_mnist(split="test")
    real_x = test.images.float().div(127.5).sub(1)
    real_pred = classify(real_x).argmax(1)
    g = torch.Generator().manual_seed(seed)
    rows, t0 = [], time.perf_counter()
    for k in only or range(10):
        preds = []
        for start in range(0, per_class, batch):
            n = min(batch, per_class - start)
            x = model.sample(n, g, sampler=sampler, steps=steps, class_labels=k, guidance=guidance)
            preds.append(classify(quantise(x)).argmax(1))
        pred = torch.cat(preds)
        mask = test.labels == k
        rows.append({"class": k, "name": test.class_names[k],
                     "samples_as_k": round(float((pred == k).float().mean()), 3),
                     "real_test_as_k": round(float((real_pred[mask] == k).float().mean()), 3)})
        rows[-1]["ratio"] = round(rows[-1]["samples_as_k"] / rows[-1]["real_test_as_k"], 3)
        log(f"{k} {test.class_names[k]:12s} samples {rows[-1]['samples_as_k']:.3f}  "
            f"real {rows[-1]['real_test_as_k']:.3f}  ratio {rows[-1]['ratio']:.3f}")
    mean = {key: round(sum(r[key] for r in rows) / len(rows), 3) for key in ("samples_as_k", "real_test_as_k")}
    worst = min(rows, key=lambda r: r["ratio"])
    log(f"mean samples {mean['samples_as_k']:.3f}  real {mean['real_test_as_k']:.3f}; "
        f"lowest ratio {worst['ratio']:.3f} ({worst['name']})")
    return {"weights": str(weights), "sampler": sampler, "steps": steps, "guidance": guidance,
            "per_class": per_class, "seconds": round(time.perf_counter() - t0, 1),
            "threads": torch.get_num_threads(), "classes": rows, "mean": mean,
            "lowest_ratio": worst["ratio"]}


def timing(out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = {"ddpm_1000_x16": ["sample", "ddpm", "--steps", "1000", "-n", "16"],
            "ddim_50_x16": ["sample", "ddim", "--steps", "50", "-n", "16"],
            "ddpm_1000_x64": ["sample", "ddpm", "--steps", "1000", "-n", "64"]}
    result = {}
    for name, args in runs.items():
        target = out_dir / f"{name}.png"
        cmd = [sys.executable, "-m", "gencli.cli.app", *args, "-o", str(target), "--force", "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        result[name] = round(time.perf_counter() - t0, 2)
        log(f"{name}: {result[name]} s (end to end, process start included) -> {target}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("run", type=Path)
    e.add_argument("--out", type=Path, default=WEIGHTS)
    e.add_argument("--force", action="store_true")
    e.add_argument("--spacing", choices=("leading", "trailing", "linspace"), default=None,
                   help="the checkpoint's default timestep spacing (default: the run's)")
    c = sub.add_parser("classes")
    c.add_argument("--per-class", type=int, default=100)
    c.add_argument("--sampler", default="ddim")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--batch", type=int, default=100)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--guidance", type=float, default=1.0)
    c.add_argument("--weights", type=Path, default=WEIGHTS,
                   help="a DDPM checkpoint (default: the bundled one); a run's model.safetensors works")
    c.add_argument("--only", type=int, nargs="+", choices=range(10), metavar="K",
                   help="only these classes (e.g. --only 6 for a larger draw of the hardest one)")
    t = sub.add_parser("timing")
    t.add_argument("--out", type=Path, default=ROOT / "runs" / "timing")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.cmd == "export":
        export(a.run, a.out, a.force, a.spacing)
    elif a.cmd == "classes":
        print(json.dumps(classes(a.per_class, a.sampler, a.steps, a.batch, a.seed, a.guidance, a.weights, a.only)))
    else:
        print(json.dumps(timing(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
