"""Train, export and measure the bundled translation defaults (Fashion-MNIST, CPU-friendly).

    python bench/translation_defaults.py all sneaker2boot             # train + export + evaluate
    python bench/translation_defaults.py all edges2fashion
    python bench/translation_defaults.py train sneaker2boot --steps 4000 --out runs/sneaker2boot [--resume]
    python bench/translation_defaults.py export sneaker2boot runs/sneaker2boot   # -> weights/..., measured
    python bench/translation_defaults.py evaluate sneaker2boot [--weights FILE]  # JSON on stdout

Training goes through the documented CLI (`gencli train ...`, run in-process with the exact argument
list printed first), so the recipe is also the answer to "how do I train my own":

  gencli train cyclegan --data-a fashion-mnist:sneaker --data-b "fashion-mnist:ankle boot" \
      --batch-size 16 --steps 4000 --config '{"generator": {"ngf": 16, "n_blocks": 6},
      "discriminator": {"ndf": 32, "n_layers": 2}}' --out runs/sneaker2boot
  gencli train pix2pix --data edges:fashion-mnist --batch-size 32 --steps 6000 \
      --config '{"generator": {"ngf": 24}, "discriminator": {"ndf": 32, "n_layers": 2}}' --out runs/edges2fashion

Everything else is the official recipe (CycleGAN: LSGAN, cycle 10, identity 0.5, pool 50; pix2pix:
vanilla GAN + 100 x L1; Adam 2e-4 / beta1 0.5, constant then linear decay over the second half; no
EMA, no gradient clipping). `export` drops the discriminators (and image pools), stores fp16, and
evaluates the exported file on the Fashion-MNIST *test* split with the bundled Fashion-MNIST
classifier (weights/fmnist-classifier.safetensors):

- sneaker2boot: share of translated test sneakers the classifier calls "Ankle boot" and of
  translated ankle boots it calls "Sneaker"; cycle reconstruction error mean |G_B(G_A(a)) - a| in
  [0, 1] intensity units (and B -> A -> B).
- edges2fashion: L1 between G(edges(x)) and x ([0, 1] units), and the share of outputs the
  classifier puts in the class of the image the edges came from (next to its accuracy on the real
  images).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
SNEAKER, ANKLE_BOOT = 7, 9

RECIPES: dict[str, dict[str, Any]] = {
    "sneaker2boot": {
        "family": "cyclegan",
        "data": ["--data-a", "fashion-mnist:sneaker", "--data-b", "fashion-mnist:ankle boot"],
        "batch_size": 16,
        "steps": 4000,
        "config": {"generator": {"ngf": 16, "n_blocks": 6}, "discriminator": {"ndf": 32, "n_layers": 2}},
        "weights": "cyclegan-sneaker2boot.safetensors",
        "domains": {"A": "sneaker", "B": "ankle boot"},
        "description": "unpaired CycleGAN between the Fashion-MNIST classes Sneaker (A) and Ankle boot (B)",
    },
    "edges2fashion": {
        "family": "pix2pix",
        "data": ["--data", "edges:fashion-mnist"],
        "batch_size": 32,
        "steps": 6000,
        "config": {"generator": {"ngf": 24}, "discriminator": {"ndf": 32, "n_layers": 2}},
        "weights": "pix2pix-edges2fashion.safetensors",
        "description": "pix2pix from edge maps (gencli.models.translation.data.edges: Sobel of the "
                       "3x3-blurred image > 0.6, black on white) to Fashion-MNIST images, all 10 classes",
    },
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# train


def train_args(name: str, steps: int, out: str, resume: bool = False) -> list[str]:
    r = RECIPES[name]
    args = ["train", r["family"], "--out", out, "--steps", str(steps)]
    if resume:
        return args + ["--resume"]
    return args + [*r["data"], "--batch-size", str(r["batch_size"]), "--config", json.dumps(r["config"]),
                   "--save-every", "500", "--log-every", "50", "--sample-n", "0"]


def train(name: str, steps: int, out: str, resume: bool = False) -> float:
    from gencli.cli.app import run

    args = train_args(name, steps, out, resume)
    log("gencli " + shlex.join(args))
    t0 = time.time()
    code = run(args)
    if code != 0:
        raise SystemExit(code)
    return time.time() - t0


# --------------------------------------------------------------------------------------------
# evaluate


def _classifier(path: str | None):
    from gencli.metrics.fmnist_classifier import load_classifier

    return load_classifier(path)


def _batched(fn, x: torch.Tensor, bs: int = 500) -> torch.Tensor:
    return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])


@torch.inference_mode()
def evaluate_sneaker2boot(model, clf, limit: int | None = None) -> dict[str, Any]:
    from gencli.io.named_datasets import load_fashion_mnist
    from gencli.metrics.fmnist_classifier import classify

    test = load_fashion_mnist("test")
    out: dict[str, Any] = {}
    for src, dst, direction, back, tag in ((SNEAKER, ANKLE_BOOT, "AtoB", "BtoA", "sneaker_to_boot"),
                                           (ANKLE_BOOT, SNEAKER, "BtoA", "AtoB", "boot_to_sneaker")):
        idx = (test.labels == src).nonzero().flatten()[:limit]
        x, _ = test.batch(idx)
        fake = _batched(lambda t: model.translate(t, direction=direction), x)
        rec = _batched(lambda t: model.translate(t, direction=back), fake)
        pred_fake = classify(fake, clf).argmax(1)
        pred_real = classify(x, clf).argmax(1)
        out[tag] = {
            "n": len(idx),
            "classified_as_target": round(float((pred_fake == dst).float().mean()), 4),
            "real_classified_as_target": round(float((pred_real == dst).float().mean()), 4),
            "cycle_l1": round(float((rec - x).abs().mean() / 2), 4),
            "change_l1": round(float((fake - x).abs().mean() / 2), 4),
        }
    return out


@torch.inference_mode()
def evaluate_edges2fashion(model, clf, limit: int | None = None) -> dict[str, Any]:
    from gencli.io.named_datasets import load_fashion_mnist
    from gencli.metrics.fmnist_classifier import classify
    from gencli.models.translation.data import edges

    test = load_fashion_mnist("test")
    n = len(test) if limit is None else min(limit, len(test))
    x, y = test.batch(torch.arange(n))
    fake = _batched(lambda t: model.translate(edges(t)), x)
    pred_fake = classify(fake, clf).argmax(1)
    pred_real = classify(x, clf).argmax(1)
    return {
        "n": n,
        "l1": round(float((fake - x).abs().mean() / 2), 4),
        "class_agreement": round(float((pred_fake == y).float().mean()), 4),
        "agreement_with_classifier_on_real": round(float((pred_fake == pred_real).float().mean()), 4),
        "classifier_accuracy_on_real": round(float((pred_real == y).float().mean()), 4),
    }


def evaluate(name: str, weights: str | None = None, classifier: str | None = None,
             limit: int | None = None) -> dict[str, Any]:
    from gencli import registry

    r = RECIPES[name]
    model, meta = registry.load_model(r["family"], None if weights else name, weights)
    clf = _classifier(classifier)
    t0 = time.time()
    fn = evaluate_sneaker2boot if name == "sneaker2boot" else evaluate_edges2fashion
    metrics = fn(model, clf, limit)
    metrics["eval_seconds"] = round(time.time() - t0, 1)
    return metrics


# --------------------------------------------------------------------------------------------
# export


def export(name: str, run_dir: str, dest: str | None = None, fp32: bool = False,
           classifier: str | None = None, limit: int | None = None, train_seconds: float | None = None) -> Path:
    from gencli.checkpoints import load_checkpoint, require_family, save_checkpoint
    from gencli.models.translation.cyclegan import CycleGAN
    from gencli.models.translation.pix2pix import Pix2Pix

    r = RECIPES[name]
    cls = CycleGAN if r["family"] == "cyclegan" else Pix2Pix
    src = Path(run_dir) / "model.safetensors" if Path(run_dir).is_dir() else Path(run_dir)
    ck = require_family(load_checkpoint(src), r["family"])
    model = cls.from_config(ck.config)
    model.load_state_dict(ck.tensors)
    config, tensors = model.export()
    config["name"] = name
    if "domains" in r:
        config["domains"] = r["domains"]
    dest_path = Path(dest) if dest else ROOT / "weights" / r["weights"]
    step = int(ck.metadata.get("step", 0))
    if train_seconds is None:
        train_seconds = _train_seconds(src.parent / "log.jsonl")
    meta = {
        "family": r["family"], "config": config, "dataset": "fashion-mnist", "image_size": 28, "channels": 1,
        "step": step,
        "training": {"command": "gencli " + shlex.join(train_args(name, step, "RUN")),
                     "batch_size": r["batch_size"], "steps": step,
                     "seconds": round(train_seconds, 1) if train_seconds else None,
                     "threads": torch.get_num_threads(), "device": "cpu"},
        "notes": r["description"] + "; trained by gencli (bench/translation_defaults.py)",
    }
    save_checkpoint(dest_path, tensors, meta, force=True, dtype=None if fp32 else torch.float16)
    metrics = evaluate(name, str(dest_path), classifier, limit)
    meta["metrics"] = metrics
    save_checkpoint(dest_path, tensors, meta, force=True, dtype=None if fp32 else torch.float16)
    log(f"wrote {dest_path} ({dest_path.stat().st_size / 1e6:.1f} MB)")
    print(json.dumps({"weights": str(dest_path), "step": step, "metrics": metrics}, indent=2))
    log("weights/README.md line:\n" + readme_line(name, dest_path.name, step, train_seconds, metrics))
    return dest_path


def _train_seconds(log_file: Path) -> float | None:
    try:
        recs = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    times = [r["time"] for r in recs if "time" in r]
    if len(times) < 2:
        return None
    first = recs[0]
    per_step = (times[-1] - times[0]) / max(recs[-1]["step"] - first["step"], 1)
    return per_step * recs[-1]["step"]


def readme_line(name: str, file: str, step: int, seconds: float | None, m: dict[str, Any]) -> str:
    r = RECIPES[name]
    took = f", {seconds / 60:.0f} min on {torch.get_num_threads()} CPU thread(s)" if seconds else ""
    if name == "sneaker2boot":
        a, b = m["sneaker_to_boot"], m["boot_to_sneaker"]
        quality = (f"test split: {a['classified_as_target']:.1%} of {a['n']} translated sneakers are classified as "
                   f"ankle boots and {b['classified_as_target']:.1%} of {b['n']} translated boots as sneakers "
                   f"(bundled Fashion-MNIST classifier); cycle reconstruction L1 {a['cycle_l1']:.3f} / "
                   f"{b['cycle_l1']:.3f} (intensity 0..1)")
    else:
        quality = (f"test split ({m['n']} images): L1 {m['l1']:.3f} (intensity 0..1); the classifier gives "
                   f"{m['class_agreement']:.1%} of outputs the class of the source image "
                   f"(its accuracy on the real images: {m['classifier_accuracy_on_real']:.1%})")
    return (f"- `{file}` ({r['family']} {name}): {r['description']}; {step} steps at batch "
            f"{r['batch_size']}{took}; {quality}. Reproduce: `python bench/translation_defaults.py all {name}`.")


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/translation_defaults.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("all", "train", "export", "evaluate"):
        s = sub.add_parser(cmd)
        s.add_argument("name", choices=sorted(RECIPES))
        if cmd == "export":
            s.add_argument("run", help="run folder (or its model.safetensors)")
        if cmd in ("all", "train"):
            s.add_argument("--steps", type=int, default=None)
            s.add_argument("--out", default=None, help="run folder (default runs/NAME)")
            s.add_argument("--resume", action="store_true")
        if cmd in ("all", "export"):
            s.add_argument("-o", "--dest", default=None, help="exported file (default weights/...)")
            s.add_argument("--fp32", action="store_true", help="store float32 instead of float16")
        if cmd in ("all", "export", "evaluate"):
            s.add_argument("--classifier", default=None, help="Fashion-MNIST classifier (default: bundled)")
            s.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images")
        if cmd == "evaluate":
            s.add_argument("--weights", default=None, help="default: the registry's bundled file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    os.chdir(ROOT)
    if a.cmd == "evaluate":
        print(json.dumps(evaluate(a.name, a.weights, a.classifier, a.limit), indent=2))
        return 0
    if a.cmd == "export":
        export(a.name, a.run, a.dest, a.fp32, a.classifier, a.limit)
        return 0
    out = a.out or f"runs/{a.name}"
    seconds = train(a.name, a.steps or RECIPES[a.name]["steps"], out, a.resume)
    if a.cmd == "all":
        export(a.name, out, a.dest, a.fp32, a.classifier, a.limit, None if a.resume else seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
