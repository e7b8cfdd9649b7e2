"""The bundled GAN defaults: export a run and measure what weights/README.md reports.

    python bench/gan_default.py export RUN NAME          # RUN/model.safetensors -> weights/NAME.safetensors (fp16)
    python bench/gan_default.py measure FAMILY WEIGHTS [-n 10000] [--truncation PSI]

``measure`` samples N images (seed 0, batches of 500) and prints, with the bundled Fashion-MNIST
classifier: the entropy of its predicted-class histogram (the issue asks >= 0.9 ln 10 = 2.072 for
an unconditional model), and for a class-conditional model its accuracy on ``--class K`` samples
for each K next to its accuracy on the real test images of K (and the variety within a class: the
mean per-pixel std over each class's samples, next to the real images'); then the FD against the test split
with the classifier's features (what `gencli evaluate fid fashion-mnist:test --features fmnist`
computes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time


def export(run: str, name: str) -> None:
    from safetensors import safe_open

    from gencli.checkpoints import read_metadata, save_checkpoint

    path = f"{run}/model.safetensors"
    meta = read_metadata(path)
    with safe_open(path, "pt") as f:
        tensors = {k: (f.get_tensor(k).half() if f.get_tensor(k).is_floating_point() else f.get_tensor(k))
                   for k in f.keys()}
    save_checkpoint(f"weights/{name}.safetensors", tensors, meta, force=True)
    print(f"wrote weights/{name}.safetensors ({len(tensors)} tensors, step {meta.get('step')})")


def _8bit(x):
    """Samples as a saved PNG holds them (what `gencli evaluate --model` scores)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def measure(family: str, weights: str, n: int, truncation: float | None = None) -> dict:
    import torch

    import gencli
    from gencli.io.datasets import resolve_dataset
    from gencli.metrics import fmnist_classifier as fc
    from gencli.metrics.stats import frechet_distance

    model = gencli.load(family, weights)
    test = resolve_dataset("fashion-mnist", split="test")
    xt, yt = test.batch(torch.arange(len(test)))
    clf = fc.default_classifier()
    t0 = time.perf_counter()
    out: dict = {"family": family, "weights": weights, "n": n}
    opts = {} if truncation is None else {"truncation": truncation}
    if opts:
        out["truncation"] = truncation
    if model.num_classes:
        per = n // model.num_classes
        labels = torch.arange(model.num_classes).repeat_interleave(per)
        x = _8bit(model.generate(len(labels), seed=0, batch_size=500, class_labels=labels, **opts))
        probs = fc.classify(x, clf).softmax(1)
        pred = probs.argmax(1)
        real_pred = fc.classify(xt, clf).argmax(1)
        rows = []
        for k in range(model.num_classes):
            acc = float((pred[labels == k] == k).float().mean())
            real = float((real_pred[yt == k] == k).float().mean())
            rows.append({"class": k, "sample_acc": round(acc, 4), "real_acc": round(real, 4),
                         "ratio": round(acc / real, 3)})
        out["per_class"] = rows
        out["min_ratio"] = min(r["ratio"] for r in rows)
        # variety within a class: mean per-pixel std over the samples of each class, against the
        # real test images' (a model that ignores z has ~0)
        out["within_class_std"] = round(float(torch.stack([x[labels == k].std(0).mean()
                                                           for k in range(model.num_classes)]).mean()), 4)
        out["real_within_class_std"] = round(float(torch.stack([xt[yt == k].std(0).mean()
                                                                for k in range(model.num_classes)]).mean()), 4)
    else:
        x = _8bit(model.generate(n, seed=0, batch_size=500, **opts))
        probs = fc.classify(x, clf).softmax(1)
        pred = probs.argmax(1)
    hist = torch.bincount(pred, minlength=10).double() / len(pred)
    ent = float(-(hist[hist > 0] * hist[hist > 0].log()).sum())
    # how sure the classifier is of the samples' classes (a quality proxy; real test images: 0.919)
    out["confidence"] = round(float(probs.max(1).values.mean()), 4)
    out.update(histogram=[round(float(h), 4) for h in hist], entropy=round(ent, 4),
               entropy_floor=round(0.9 * math.log(10), 4))
    import numpy as np

    fa, fb = fc.features(x, clf).double().numpy(), fc.features(xt, clf).double().numpy()
    out["fd"] = round(float(frechet_distance(fa.mean(0), np.cov(fa, rowvar=False),
                                             fb.mean(0), np.cov(fb, rowvar=False))), 4)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("run")
    e.add_argument("name")
    m = sub.add_parser("measure")
    m.add_argument("family")
    m.add_argument("weights")
    m.add_argument("-n", type=int, default=10000)
    m.add_argument("--truncation", type=float, default=None)
    a = p.parse_args(argv)
    if a.cmd == "export":
        export(a.run, a.name)
    else:
        print(json.dumps(measure(a.family, a.weights, a.n, a.truncation)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
