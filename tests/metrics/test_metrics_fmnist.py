"""The bundled Fashion-MNIST classifier (``--features fmnist``) and the feature-extractor registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gencli.errors import InputError, UsageError
from gencli.metrics.features import build_extractor
from gencli.metrics.fmnist_classifier import (
    FAMILY,
    WEIGHTS_FILE,
    FMNISTClassifier,
    classify,
    evaluate_accuracy,
    features,
    load_classifier,
)
from gencli.paths import bundled_weights_dir

BUNDLED = bundled_weights_dir() / WEIGHTS_FILE
FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_bundled = pytest.mark.skipif(not BUNDLED.is_file(), reason="weights/fmnist-classifier.safetensors absent")


def test_network_shapes():
    model = FMNISTClassifier().eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    f, z = model.features_and_logits(x)
    assert f.shape == (3, 128) and z.shape == (3, 10) and (f >= 0).all()
    assert sum(p.numel() for p in model.parameters()) < 300_000


@needs_bundled
def test_bundled_file_is_small_and_described():
    from gencli.checkpoints import read_metadata

    assert BUNDLED.stat().st_size < 2_000_000
    meta = read_metadata(BUNDLED)
    assert meta["family"] == FAMILY and meta["dataset"] == "fashion-mnist"
    assert meta["test_accuracy"] >= 0.90


@needs_bundled
def test_classify_and_features_api():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert classify(x).shape == (4, 10)
    assert features(x).shape == (4, 128)
    assert classify(x[0]).shape == (1, 10)  # a single CHW image
    with pytest.raises(InputError, match="28 x 28"):
        classify(torch.zeros(2, 3, 28, 28))


@needs_bundled
@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST absent")
def test_accuracy_on_test_subset():
    from gencli.io.named_datasets import load_fashion_mnist

    test = load_fashion_mnist("test")
    acc = evaluate_accuracy(load_classifier(), test.images[:2000], test.labels[:2000])
    assert acc > 0.88


@needs_bundled
def test_extractor_resizes_and_greys_with_a_warning():
    ex = build_extractor("fmnist")
    assert ex.dims == 128 and ex.has_logits and ex.identity.startswith("fmnist-")
    with pytest.warns(UserWarning, match="resizing 32x32"):
        out = ex(torch.rand(2, 3, 32, 32) * 2 - 1, logits=True)
    assert out["features"].shape == (2, 128) and out["logits"].shape == (2, 10)


def test_load_classifier_rejects_other_families(tmp_path):
    from gencli.checkpoints import save_checkpoint

    path = save_checkpoint(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, {"family": "ddpm"})
    with pytest.raises(InputError, match="ddpm checkpoint"):
        load_classifier(path)


def test_unknown_extractor_and_dims():
    with pytest.raises(UsageError, match="--features"):
        build_extractor("clip")
    with pytest.raises(UsageError, match="--dims"):
        build_extractor("fmnist", dims=64)


def test_train_smoke(tmp_path, monkeypatch):
    """Two steps of the training loop on a tiny fake dataset; the file loads back."""
    import gencli.io.named_datasets as datasets
    from gencli.io.tensor_dataset import TensorImageDataset

    imgs = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    fake = TensorImageDataset(imgs, torch.arange(64) % 10)
    monkeypatch.setattr(datasets, "load_fashion_mnist", lambda split="train", root=None, download=True: fake)
    from gencli.metrics.fmnist_classifier import train

    meta = train(tmp_path / "c.safetensors", epochs=1, batch_size=32, config={"channels": [4, 4, 4]})
    assert meta["step"] == 2 and 0 <= meta["test_accuracy"] <= 1
    model = load_classifier(tmp_path / "c.safetensors")
    assert model.config["channels"] == [4, 4, 4]
