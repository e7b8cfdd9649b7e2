"""Datasets: IDX files, Fashion-MNIST (real, when installed), downloads, folders, synthetic."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencli.errors import GencliError, InputError, UsageError
from gencli.io import named_datasets as D
from gencli.io.datasets import resolve_dataset
from gencli.io.idx import read_idx, write_idx
from gencli.io.image_folder import ImageFolderDataset
from gencli.io.named_datasets import DATASETS, FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist
from gencli.io.synthetic import synthetic_shapes
from gencli.io.tensor_dataset import TensorImageDataset

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _fake_idx_folder(folder: Path, n: int = 6, prefixes=("train", "t10k")) -> dict[str, bytes]:
    """Write small gzip IDX image/label files; returns {filename: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for prefix in prefixes:
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    for p in folder.iterdir():
        out[p.name] = p.read_bytes()
    return out


# ---------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, dtype, gz):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(p, arr)
    back = read_idx(p)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


def test_idx_header_layout(tmp_path):
    p = tmp_path / "x"
    write_idx(p, np.zeros((3, 2), dtype=np.uint8))
    assert p.read_bytes()[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 2])


def test_idx_errors(tmp_path):
    p = tmp_path / "t-images-idx3-ubyte"
    write_idx(p, np.zeros((10, 4, 4), dtype=np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    with pytest.raises(InputError, match="t-images-idx3-ubyte: truncated"):
        read_idx(p)
    p.write_bytes(data + b"xx")
    with pytest.raises(InputError, match="unexpected bytes"):
        read_idx(p)
    p.write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(InputError, match="magic"):
        read_idx(p)
    gz = tmp_path / "bad.gz"
    noisy = tmp_path / "n-images-idx3-ubyte"
    write_idx(noisy, np.random.default_rng(0).integers(0, 256, (10, 8, 8), dtype=np.uint8))
    gz.write_bytes(gzip.compress(noisy.read_bytes())[:300])
    with pytest.raises(InputError, match="bad.gz"):
        read_idx(gz)
    with pytest.raises(InputError, match="no such file"):
        read_idx(tmp_path / "missing")


# ------------------------------------------------------------------------------ Fashion-MNIST


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    ds = load_fashion_mnist("train", download=False)
    assert tuple(ds.images.shape) == (60000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 10 and ds.class_names == list(FASHION_MNIST_CLASSES)
    assert ds.channels == 1 and ds.image_size == 28 and ds.name == "fashion-mnist"
    assert ds.labels is not None and set(ds.labels.unique().tolist()) == set(range(10))
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y < 10
    assert x.min() == -1.0 and x.max() <= 1.0
    xb, yb = ds.batch(torch.arange(5))
    assert xb.shape == (5, 1, 28, 28) and yb.dtype == torch.int64
    test = resolve_dataset("fmnist", split="test", channels=3, size=32)
    assert len(test) == 10000 and test[0][0].shape == (3, 32, 32)
    assert test.channels == 3 and test.image_size == 32


# ------------------------------------------------------------------------------ downloading


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No system dataset folders, an empty gencli cache; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENCLI_CACHE", str(cache))
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", {})
    return cache


def test_download_verified_and_cached(tmp_path, monkeypatch, isolated):
    files = _fake_idx_folder(tmp_path / "mirror")
    sums = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    monkeypatch.setattr(D, "MD5SUMS", {"fashion-mnist": sums, "mnist": sums})
    with _serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("GENCLI_DATASETS_MIRROR", url)
        ds = load_fashion_mnist("test")
        assert len(ds) == 6 and ds.labels.tolist() == [0, 1, 2, 3, 4, 5]
        assert ds.class_names[0] == "T-shirt/top"
        mn = load_mnist("train")
        assert mn.class_names[3] == "3" and len(mn) == 6
    cached = isolated / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(cached)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # served again from the cache with the server gone
    monkeypatch.setenv("GENCLI_DATASETS_MIRROR", "http://127.0.0.1:9/")
    assert len(load_fashion_mnist("test")) == 6


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, isolated):
    _fake_idx_folder(tmp_path / "mirror")
    monkeypatch.setattr(D, "MD5SUMS", {"fashion-mnist": {"t10k-images-idx3-ubyte.gz": "0" * 32}})
    with _serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("GENCLI_DATASETS_MIRROR", url)
        with pytest.raises(GencliError, match="MD5 .*expected 0000"):
            load_fashion_mnist("test")
    cached = isolated / "datasets" / "fashion-mnist"
    assert not cached.exists() or os.listdir(cached) == []


def test_download_without_checksum_checks_structure(tmp_path, monkeypatch, isolated):
    files = _fake_idx_folder(tmp_path / "mirror")
    name = "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(files[name])
    (tmp_path / "mirror" / name).write_bytes(gzip.compress(raw[:-100]))  # size mismatch
    monkeypatch.setattr(D, "MD5SUMS", {})
    with _serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("GENCLI_DATASETS_MIRROR", url)
        with pytest.raises(GencliError, match="not a valid IDX file.*truncated"):
            load_fashion_mnist("test")
    cached = isolated / "datasets" / "fashion-mnist"
    assert not cached.exists() or os.listdir(cached) == []


def test_download_offline_message(monkeypatch, isolated):
    monkeypatch.setenv("GENCLI_DATASETS_MIRROR", "http://127.0.0.1:9/")  # discard port: refused
    with pytest.raises(GencliError, match="could not download Fashion-MNIST from .*dataset-fashion-mnist or pass --data"):
        load_fashion_mnist("train")
    with pytest.raises(InputError, match="not found"):
        load_fashion_mnist("train", download=False)
    with pytest.raises(UsageError, match="split"):
        load_fashion_mnist("valid")


def test_root_and_idx_folder(tmp_path):
    folder = tmp_path / "my-fashion_data"
    _fake_idx_folder(folder, n=4)
    ds = load_fashion_mnist("train", root=folder)
    assert len(ds) == 4
    with pytest.raises(InputError, match="does not hold"):
        load_mnist("train", root=tmp_path)
    res = resolve_dataset(str(folder), split="test")
    assert isinstance(res, TensorImageDataset) and len(res) == 4
    assert res.class_names == list(FASHION_MNIST_CLASSES)  # folder name mentions fashion
    single = tmp_path / "only"
    _fake_idx_folder(single, n=3, prefixes=("emnist",))
    assert len(resolve_dataset(str(single), split="test")) == 3


# ------------------------------------------------------------------------------ image folders


def _img(path: Path, colour, size=(8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_folder_labelled(tmp_path):
    _img(tmp_path / "d" / "zebra" / "1.png", (255, 255, 255))
    _img(tmp_path / "d" / "cat" / "a.PNG", (0, 0, 0))
    _img(tmp_path / "d" / "cat" / "deep" / "b.jpg", (0, 0, 0))
    ds = resolve_dataset(str(tmp_path / "d"))
    assert isinstance(ds, ImageFolderDataset)
    assert ds.class_names == ["cat", "zebra"] and ds.num_classes == 2 and len(ds) == 3
    assert [ds[i][1] for i in range(3)] == [0, 0, 1]
    x, _ = ds[2]
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.ones_like(x))
    grey = ImageFolderDataset(tmp_path / "d", channels=1, size=4)
    assert grey[0][0].shape == (1, 4, 4) and grey.image_size == 4


def test_image_folder_unlabelled_and_mixed_sizes(tmp_path):
    _img(tmp_path / "u" / "a.png", (10, 20, 30))
    _img(tmp_path / "u" / "sub" / "b.png", (10, 20, 30), size=(16, 8))
    ds = ImageFolderDataset(tmp_path / "u")
    assert ds.labels is None and ds.num_classes == 0 and ds[0][1] == -1
    with pytest.raises(InputError, match=r"b\.png is 16x8 .*--size"):
        ds[1]
    ok = ImageFolderDataset(tmp_path / "u", size=(4, 6))
    assert ok[1][0].shape == (3, 4, 6) and ok.image_size == (4, 6)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="contains no images"):
        resolve_dataset(str(empty))


# ------------------------------------------------------------------------------ synthetic + misc


def test_synthetic_shapes_deterministic():
    a = synthetic_shapes(12, size=16, seed=3)
    b = synthetic_shapes(12, size=16, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, synthetic_shapes(12, size=16, seed=4).images)
    assert tuple(a.images.shape) == (12, 1, 16, 16) and a.num_classes == 2
    assert a.labels.tolist() == [i % 2 for i in range(12)]
    x, y = a[0]
    assert x.min() == -1.0 and x.max() > 0.2  # black background, bright shape
    c4 = synthetic_shapes(8, size=12, channels=3, num_classes=4)
    assert c4.channels == 3 and c4.num_classes == 4 and c4.class_names[2] == "triangle"


def test_resolve_dataset_specs(tmp_path):
    s = resolve_dataset("synthetic:10", size=8, channels=3)
    assert len(s) == 10 and s[0][0].shape == (3, 8, 8)
    assert len(resolve_dataset("synthetic")) == 256
    assert not torch.equal(resolve_dataset("synthetic:4", split="test").images, resolve_dataset("synthetic:4").images)
    with pytest.raises(UsageError, match="fashion-mnist .*mnist.*synthetic"):
        resolve_dataset("imagenet-21k")
    with pytest.raises(UsageError, match="synthetic:N"):
        resolve_dataset("synthetic:lots")
    assert {"fashion-mnist", "mnist", "synthetic"} <= set(DATASETS)
    assert "fmnist" in DATASETS["fashion-mnist"].aliases


def test_tensor_dataset_with_format_and_loader():
    ds = synthetic_shapes(6, size=8)
    three = ds.with_format(channels=3)
    assert three.channels == 3 and torch.equal(three[1][0][0], ds[1][0][0])
    assert ds.with_format() is ds
    big = ds.with_format(size=12)
    assert big.image_size == 12 and big.images.dtype == torch.uint8
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 1, 8, 8) and yb.tolist() == [0, 1, 0, 1]
    unl = TensorImageDataset(ds.images)
    assert unl[0][1] == -1 and unl.batch([0, 1])[1].tolist() == [-1, -1]
