"""A small Fashion-MNIST classifier: offline features for FD/KID/IS/PR on 28x28 grey images.

The FID Inception needs 91 MB of weights that cannot be downloaded everywhere, and says little
about 28x28 grey clothing anyway. This CNN is trained by gencli on the Fashion-MNIST train split
and shipped in ``weights/fmnist-classifier.safetensors`` (fp16, under 1 MB). Its penultimate
layer (``feature_dim``-d, after ReLU) gives features for the Frechet distance, KID and
precision/recall (``--features fmnist``), its 10-way logits give class probabilities for an
Inception-Score-like score, and :func:`classify` tells which class a generated image looks like
(used to check class-conditional samplers).

Network (``config``): three conv3x3-BN-ReLU-maxpool2 stages (28 -> 14 -> 7 -> 3) with
``channels`` filters, flatten, ``fc1`` to ``feature_dim`` + ReLU (the features), dropout, ``fc2``
to 10 logits. Input: float NCHW in [-1, 1], 1 x 28 x 28.

Training: ``python -m gencli.metrics.fmnist_classifier train -o weights/fmnist-classifier.safetensors``
(AdamW, one-cycle learning rate, seeded; ``--augment`` adds flips and 2-pixel shifts).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gencli.errors import InputError

__all__ = [
    "FAMILY",
    "DEFAULT_CONFIG",
    "WEIGHTS_FILE",
    "FMNISTClassifier",
    "load_classifier",
    "default_classifier",
    "classify",
    "features",
    "train",
    "evaluate_accuracy",
]

FAMILY = "fmnist-classifier"
WEIGHTS_FILE = "fmnist-classifier.safetensors"
DEFAULT_CONFIG: dict[str, Any] = {"channels": [16, 32, 64], "feature_dim": 128, "num_classes": 10,
                                  "dropout": 0.2, "image_size": 28, "in_channels": 1}


class FMNISTClassifier(nn.Module):
    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        c = list(cfg["channels"])
        layers: list[nn.Module] = []
        cin = cfg["in_channels"]
        for cout in c:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.body = nn.Sequential(*layers)
        side = cfg["image_size"]
        for _ in c:
            side //= 2
        self.fc1 = nn.Linear(cin * side * side, cfg["feature_dim"])
        self.drop = nn.Dropout(cfg["dropout"])
        self.fc2 = nn.Linear(cfg["feature_dim"], cfg["num_classes"])

    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) penultimate features (after ReLU) of [-1, 1] images."""
        return F.relu(self.fc1(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.features(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.fc2(f)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 1 or tuple(images.shape[2:]) != (28, 28):
        raise InputError(f"the Fashion-MNIST classifier takes N x 1 x 28 x 28 images, got {tuple(images.shape)}")
    return images.float()


def load_classifier(path: str | Path | None = None, *, device: Any = "cpu") -> FMNISTClassifier:
    """Load the classifier from ``path`` (default: the bundled file), in eval mode, float32."""
    from gencli.checkpoints import load_checkpoint, require_family
    from gencli.paths import bundled_weights_dir

    if path is None:
        path = bundled_weights_dir() / WEIGHTS_FILE
        if not Path(path).is_file():
            raise InputError(f"the bundled Fashion-MNIST classifier {path} is missing; reinstall gencli "
                             "or train it with `python -m gencli.metrics.fmnist_classifier train`")
    ckpt = require_family(load_checkpoint(path), FAMILY)
    model = FMNISTClassifier(ckpt.config)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.tensors.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(f"{path}: weights do not fit the classifier in its config "
                         f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    return model.eval().requires_grad_(False).to(device)


_DEFAULT: dict[str, FMNISTClassifier] = {}


def default_classifier(device: Any = "cpu") -> FMNISTClassifier:
    """The bundled classifier, loaded once per device."""
    key = str(device)
    if key not in _DEFAULT:
        _DEFAULT[key] = load_classifier(device=device)
    return _DEFAULT[key]


@torch.inference_mode()
def classify(images: torch.Tensor, model: FMNISTClassifier | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Logits (N, 10) of [-1, 1] images N x 1 x 28 x 28 (bundled classifier by default)."""
    images = _check_images(images)
    model = model or default_classifier(images.device)
    return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.inference_mode()
def features(images: torch.Tensor, model: FMNISTClassifier | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate features (N, 128) of [-1, 1] images N x 1 x 28 x 28 (bundled classifier by default)."""
    images = _check_images(images)
    model = model or default_classifier(images.device)
    return torch.cat([model.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.inference_mode()
def evaluate_accuracy(model: FMNISTClassifier, images_u8: torch.Tensor, labels: torch.Tensor,
                      batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch_size):
        x = images_u8[i:i + batch_size].float().div_(127.5).sub_(1.0)
        correct += int((model(x).argmax(1) == labels[i:i + batch_size]).sum())
    return correct / len(images_u8)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 pixels (zero = background padding)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()  # one shift per batch: cheap
    return padded[:, :, dy:dy + 28, dx:dx + 28]


def train(out: str | Path, *, epochs: int = 3, batch_size: int = 128, lr: float = 3e-3,
          weight_decay: float = 5e-4, seed: int = 0, config: dict[str, Any] | None = None,
          augment: bool = False, label_smoothing: float = 0.0,
          root: str | None = None, time_budget_s: float | None = None, force: bool = False,
          log=None) -> dict[str, Any]:
    """Train on the Fashion-MNIST train split, evaluate on test, save fp16 safetensors to ``out``."""
    from gencli.checkpoints import save_checkpoint
    from gencli.io.named_datasets import load_fashion_mnist

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_set = load_fashion_mnist("train", root=root)
    test_set = load_fashion_mnist("test", root=root)
    x_train, y_train = train_set.images, train_set.labels
    model = FMNISTClassifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.2)
    start = time.time()
    step = 0
    stopped_early = False
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = x_train[idx].float().div_(127.5).sub_(1.0)
            if augment:
                x = _augment(x, gen)
            loss = F.cross_entropy(model(x), y_train[idx], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if (i + 1) % 100 == 0:
                log(f"epoch {epoch + 1} step {i + 1}/{steps_per_epoch} loss {running / 100:.4f} "
                    f"({time.time() - start:.0f}s)")
                running = 0.0
            if time_budget_s is not None and time.time() - start > time_budget_s:
                stopped_early = True
                break
        if stopped_early:
            log(f"time budget reached at step {step}")
            break
    train_time = time.time() - start
    model.eval()
    # measure the accuracy of what is shipped: fp16 weights read back as float32
    shipped = FMNISTClassifier(model.config)
    shipped.load_state_dict({k: (v.half().float() if v.is_floating_point() else v)
                             for k, v in model.state_dict().items()})
    acc = evaluate_accuracy(shipped, test_set.images, test_set.labels)
    train_acc = evaluate_accuracy(shipped, x_train[:10000], y_train[:10000])
    log(f"test accuracy {acc:.4f} (train subset {train_acc:.4f}), {step} steps in {train_time:.0f}s")
    meta = {
        "family": FAMILY,
        "config": model.config,
        "dataset": "fashion-mnist",
        "image_size": 28,
        "channels": 1,
        "step": step,
        "test_accuracy": round(acc, 4),
        "train_accuracy_10k": round(train_acc, 4),
        "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                     "seed": seed, "optimizer": "AdamW + OneCycle",
                     "augment": "hflip + shift<=2px" if augment else "none",
                     "label_smoothing": label_smoothing, "seconds": round(train_time, 1),
                     "stopped_early": stopped_early, "threads": torch.get_num_threads()},
        "notes": "features = fc1 output after ReLU; logits = fc2; inputs [-1, 1] 1x28x28",
    }
    save_checkpoint(out, model.state_dict(), meta, force=force, dtype=torch.float16)
    return meta


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m gencli.metrics.fmnist_classifier")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the classifier and save it")
    t.add_argument("-o", "--out", required=True)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    t.add_argument("--channels", default=None, help="e.g. 32,64,128")
    t.add_argument("--augment", action="store_true", help="random flips and 2-pixel shifts")
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--force", action="store_true")
    e = sub.add_parser("accuracy", help="test accuracy of a saved classifier")
    e.add_argument("path", nargs="?")
    args = p.parse_args(argv)
    if args.cmd == "train":
        cfg: dict[str, Any] = {}
        if args.channels:
            cfg["channels"] = [int(c) for c in args.channels.split(",")]
        if args.dropout is not None:
            cfg["dropout"] = args.dropout
        meta = train(args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     config=cfg or None, augment=args.augment, time_budget_s=args.time_budget, force=args.force)
        print(meta["test_accuracy"])
    else:
        from gencli.io.named_datasets import load_fashion_mnist

        test = load_fashion_mnist("test")
        print(evaluate_accuracy(load_classifier(args.path), test.images, test.labels))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
