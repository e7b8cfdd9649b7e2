"""Named datasets (``DATASETS``: Fashion-MNIST, MNIST, synthetic) and folders of IDX files.

Fashion-MNIST/MNIST are looked up in ``root`` (``--data``), then in the Debian package folders
(``/usr/share/datasets/<name>/``), then in ``cache_dir()/datasets/<name>/``, and finally
downloaded into that cache (base URL overridable with ``$GENCLI_DATASETS_MIRROR``), with each file
checked against its published MD5 sum.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gencli import fsutil
from gencli.errors import GencliError, InputError, UsageError
from gencli.io.idx import load_idx_pair, read_idx
from gencli.io.synthetic import SHAPE_CLASSES
from gencli.io.tensor_dataset import TensorImageDataset
from gencli.paths import cache_dir

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "MD5SUMS",
    "SYSTEM_DATA_DIRS",
    "FASHION_MNIST_CLASSES",
    "load_fashion_mnist",
    "load_mnist",
    "load_idx_folder",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What ``gencli models``/``evaluate`` need to know about a registered dataset name."""

    name: str
    title: str
    description: str
    aliases: tuple[str, ...] = ()
    channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    class_names: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "test")
    url: str = ""
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # split -> (images, labels)


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST",
        description="Zalando's 28x28 grey clothing images, 60k train / 10k test, 10 classes",
        aliases=("fmnist", "fashion_mnist", "fashionmnist"),
        class_names=FASHION_MNIST_CLASSES,
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files=_IDX_FILES,
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        description="28x28 grey handwritten digits, 60k train / 10k test, 10 classes",
        class_names=MNIST_CLASSES,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        files=_IDX_FILES,
    ),
    "synthetic": DatasetInfo(
        name="synthetic",
        title="Synthetic shapes",
        description="tiny deterministic squares/circles (synthetic:N for N images), for tests",
        channels=1,
        image_size=16,
        num_classes=2,
        class_names=SHAPE_CLASSES[:2],
    ),
}

#: Published MD5 sums of the official gzip files (the ones torchvision checks). Tests may
#: monkeypatch this table; a file without an entry is checked by parsing its IDX header instead.
MD5SUMS: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}

#: System-wide folders searched before the cache (Debian's dataset-* packages). Files found here
#: are validated by their IDX header and sizes, not MD5: Debian recompresses the .gz files.
SYSTEM_DATA_DIRS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}

MIRROR_ENV = "GENCLI_DATASETS_MIRROR"

# --------------------------------------------------------------------------------------------
# Fashion-MNIST / MNIST: locate, download, load

IDX_IMAGE_RE = re.compile(r"^(?P<prefix>.+?)-images[.-]idx3-ubyte(?P<gz>\.gz)?$")


def _candidates(filename: str) -> list[str]:
    """Accepted spellings of an official file name: with/without .gz, ``-idx`` or ``.idx``."""
    base = filename[:-3] if filename.endswith(".gz") else filename
    dotted = base.replace("-idx", ".idx")
    return [base + ".gz", base, dotted + ".gz", dotted]


def _find_file(folder: Path, filename: str) -> Path | None:
    return next((folder / c for c in _candidates(filename) if (folder / c).is_file()), None)


def _find_split_files(folder: Path, images: str, labels: str) -> tuple[Path, Path] | None:
    img, lab = _find_file(folder, images), _find_file(folder, labels)
    return None if img is None or lab is None else (img, lab)


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mirror_base(info: DatasetInfo) -> str:
    base = os.environ.get(MIRROR_ENV) or info.url
    return base if base.endswith("/") else base + "/"


def _download(info: DatasetInfo, filename: str, dest: Path) -> None:
    """Download ``filename`` from the mirror to ``dest`` atomically, verifying MD5 (or IDX header)."""
    url = _mirror_base(info) + filename
    hint = (
        f"install Debian's dataset-{info.name} or pass --data PATH"
        if info.name == "fashion-mnist"
        else "pass --data PATH to a folder holding the IDX files"
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsutil.temp_path(dest, ".part")
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with open(tmp, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        md5.update(chunk)
                        f.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise GencliError(f"could not download {info.title} from {url} ({reason}); {hint}") from None
            f.flush()
            os.fsync(f.fileno())
        expected = MD5SUMS.get(info.name, {}).get(filename)
        if expected is not None and md5.hexdigest() != expected:
            raise GencliError(
                f"downloaded {url} has MD5 {md5.hexdigest()}, expected {expected}; "
                f"the mirror may be corrupt or partial, try again or {hint}"
            )
        if expected is None:  # no published checksum known: at least the IDX structure must hold
            try:
                read_idx(tmp)
            except InputError as e:
                raise GencliError(f"downloaded {url} is not a valid IDX file ({e}); {hint}") from None
        fsutil.finish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _locate(info: DatasetInfo, split: str, root: str | os.PathLike[str] | None, download: bool) -> tuple[Path, Path]:
    """Find (downloading if needed) the images/labels files of ``split``."""
    if split not in info.files:
        raise UsageError(f"unknown split {split!r} for {info.name}: use {' or '.join(info.files)}")
    images, labels = info.files[split]
    if root is not None:
        folder = Path(root)
        hit = _find_split_files(folder, images, labels)
        if hit is None:
            raise InputError(f"{folder} does not hold {images} and {labels} (gzip or raw)")
        return hit
    cache = cache_dir() / "datasets" / info.name
    looked = [*SYSTEM_DATA_DIRS.get(info.name, ()), str(cache)]
    for folder in looked:
        hit = _find_split_files(Path(folder), images, labels)
        if hit is not None:
            return hit
    if not download:
        raise InputError(
            f"{info.title} {split} split not found (looked in {', '.join(looked)}); "
            "pass --data PATH or allow downloading"
        )
    found = []
    for fname in (images, labels):
        hit = _find_file(cache, fname)
        if hit is None:
            hit = cache / fname
            _download(info, fname, hit)
        found.append(hit)
    return found[0], found[1]


def load_registered(
    name: str, split: str, root: str | os.PathLike[str] | None, download: bool
) -> TensorImageDataset:
    info = DATASETS[name]
    images_path, labels_path = _locate(info, split, root, download)
    imgs, labels = load_idx_pair(images_path, labels_path)
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise InputError(f"{labels_path}: labels outside 0..{info.num_classes - 1}")
    return TensorImageDataset(imgs, labels, info.class_names, info.name)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None, download: bool = True
) -> TensorImageDataset:
    """Fashion-MNIST ``split`` ("train": 60000, "test": 10000) as 1x28x28 uint8 images, 10 classes."""
    return load_registered("fashion-mnist", split, root, download)


def load_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None, download: bool = True
) -> TensorImageDataset:
    """MNIST ``split`` ("train": 60000, "test": 10000) as 1x28x28 uint8 images, 10 classes."""
    return load_registered("mnist", split, root, download)


def idx_image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and IDX_IMAGE_RE.match(p.name))


def labels_for(images_path: Path) -> Path | None:
    m = IDX_IMAGE_RE.match(images_path.name)
    assert m is not None
    sep = "." if ".idx3" in images_path.name else "-"
    base = f"{m['prefix']}-labels{sep}idx1-ubyte"
    for cand in (base + ".gz", base):
        if (images_path.parent / cand).is_file():
            return images_path.parent / cand
    return None


def load_idx_folder(folder: str | os.PathLike[str], split: str = "train") -> TensorImageDataset:
    """A folder of IDX files: picks ``train-*`` or ``t10k-*``/``test-*`` images (+ labels if present).

    A folder with a single images file uses it for any split. Folders named like Fashion-MNIST get
    its class names.
    """
    folder = Path(folder)
    files = idx_image_files(folder)
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    chosen = [p for p in files if IDX_IMAGE_RE.match(p.name)["prefix"].lower() in prefixes]
    if not chosen and len(files) == 1:
        chosen = files
    if not chosen:
        raise InputError(f"{folder} has no {split} images IDX file (looked for {prefixes[0]}-images-idx3-ubyte[.gz])")
    images_path = chosen[0]
    labels_path = labels_for(images_path)
    imgs, labels = load_idx_pair(images_path, labels_path)
    lowered = folder.resolve().name.lower().replace("_", "-")
    fashion = "fashion" in lowered and labels is not None and (len(labels) == 0 or labels.max() < 10)
    return TensorImageDataset(imgs, labels, FASHION_MNIST_CLASSES if fashion else None, folder.resolve().name)
