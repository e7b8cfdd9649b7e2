"""Datasets: IDX files (Fashion-MNIST, MNIST), image folders and small synthetic sets.

Every dataset yields ``(image, label)`` with ``image`` a float32 CHW tensor in [-1, 1] and
``label`` an int (-1 when unlabelled), and carries ``num_classes``, ``class_names``,
``channels``, ``image_size`` and ``name``. :func:`resolve_dataset` turns what a user typed
(``fashion-mnist``, ``mnist``, ``synthetic:N``, a folder) into one of them.

Fashion-MNIST/MNIST are looked up in ``root`` (``--data``), then in the Debian package folders
(``/usr/share/datasets/<name>/``), then in ``cache_dir()/datasets/<name>/``, and finally
downloaded into that cache (base URL overridable with ``$GENCLI_DATASETS_MIRROR``), with each file
checked against its published MD5 sum.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gencli import fsutil
from gencli.errors import GencliError, InputError, UsageError
from gencli.io.images import SizeArg, image_size_of, list_images, load_image, resize, to_channels
from gencli.io.writers import atomic_write_bytes
from gencli.paths import cache_dir

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "MD5SUMS",
    "SYSTEM_DATA_DIRS",
    "FASHION_MNIST_CLASSES",
    "read_idx",
    "write_idx",
    "TensorImageDataset",
    "ImageFolderDataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_idx_folder",
    "synthetic_shapes",
    "resolve_dataset",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
SHAPE_CLASSES: tuple[str, ...] = ("square", "circle", "triangle", "cross")


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
# IDX files

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {v.newbyteorder(">") if v.itemsize > 1 else v: k for k, v in _IDX_DTYPES.items()}


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise InputError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian numpy array.

    Format: two zero bytes, a dtype code, the number of dimensions, then big-endian uint32 sizes
    and the data. Raises :class:`InputError` on a bad header, truncation or trailing bytes.
    """
    path = Path(path)
    try:
        data = _read_maybe_gzip(path)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an IDX file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise InputError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise InputError(
            f"{path}: truncated IDX file (header says {'x'.join(map(str, dims))}, "
            f"needs {expected} data bytes, found {actual})"
        )
    if actual > expected:
        raise InputError(f"{path}: {actual - expected} unexpected bytes after the IDX data")
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends with ``.gz``), atomically."""
    arr = np.asarray(array)
    dt = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    if dt not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    payload = struct.pack(f">BBBB{arr.ndim}I", 0, 0, _IDX_CODES[dt], arr.ndim, *arr.shape)
    payload += arr.astype(dt).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)


# --------------------------------------------------------------------------------------------
# Datasets


def _hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else image_size


class TensorImageDataset(Dataset):
    """An in-memory image dataset: ``images`` uint8 NCHW, ``labels`` int64 (N,) or ``None``.

    ``ds[i]`` returns ``(float CHW in [-1, 1], int label)`` (label -1 when unlabelled);
    :meth:`batch` converts many items at once (faster than a DataLoader over single items).
    ``image_size`` is an int for square images, else ``(height, width)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "tensors",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 NCHW, got {images.dtype} {tuple(images.shape)}")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        self.images = images
        self.labels = labels
        if class_names is not None:
            self.class_names: list[str] = list(class_names)
        elif labels is not None and len(labels):
            self.class_names = [str(i) for i in range(int(labels.max()) + 1)]
        else:
            self.class_names = []
        self.num_classes = len(self.class_names)
        self.name = name
        self.channels = int(images.shape[1])
        h, w = int(images.shape[2]), int(images.shape[3])
        self.image_size: int | tuple[int, int] = h if h == w else (h, w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index].to(torch.float32).div_(127.5).sub_(1.0)
        label = -1 if self.labels is None else int(self.labels[index])
        return img, label

    def batch(self, indices: torch.Tensor | Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``(float NCHW in [-1, 1], int64 labels)`` for ``indices`` (labels -1 when unlabelled)."""
        imgs = self.images[indices].to(torch.float32).div_(127.5).sub_(1.0)
        if self.labels is None:
            labels = torch.full((imgs.shape[0],), -1, dtype=torch.int64)
        else:
            labels = self.labels[indices]
        return imgs, labels

    def with_format(
        self, channels: int | None = None, size: SizeArg = None, chunk: int = 4096
    ) -> TensorImageDataset:
        """A copy converted to ``channels`` (1/3) and resized to ``size`` (bicubic); self if unchanged."""
        target_hw = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
        same_c = channels is None or channels == self.channels
        same_hw = target_hw is None or tuple(target_hw) == tuple(self.images.shape[2:])
        if same_c and same_hw:
            return self
        if same_hw and channels == 3 and self.channels == 1:
            images = self.images.expand(-1, 3, -1, -1)  # a view: no extra memory
        else:
            parts = []
            for start in range(0, len(self), chunk):
                x, _ = self.batch(slice(start, start + chunk))
                if channels is not None:
                    x = to_channels(x, channels)
                x = resize(x, size)
                parts.append(((x + 1.0) * 127.5).clamp_(0, 255).round_().to(torch.uint8))
            images = torch.cat(parts)
        return TensorImageDataset(images, self.labels, self.class_names, self.name)

    def __repr__(self) -> str:
        return (
            f"TensorImageDataset(name={self.name!r}, n={len(self)}, channels={self.channels}, "
            f"image_size={self.image_size}, num_classes={self.num_classes})"
        )


class ImageFolderDataset(Dataset):
    """All images under ``root``, decoded lazily per item.

    If every image sits inside a first-level sub-folder, the sorted sub-folder names are the
    classes (``root/cat/1.png`` -> "cat"); otherwise the set is unlabelled (label -1).
    ``channels=None`` follows the first image; ``size=None`` requires every image to have the
    first image's size (a mismatch raises :class:`InputError` suggesting ``--size``).
    """

    def __init__(self, root: str | os.PathLike[str], channels: int | None = 3, size: SizeArg = None) -> None:
        self.root = str(root)
        self.paths = list_images([self.root])
        rel = [Path(os.path.relpath(p, self.root)).parts for p in self.paths]
        if all(len(parts) >= 2 for parts in rel):
            self.class_names = sorted({parts[0] for parts in rel})
            index = {c: i for i, c in enumerate(self.class_names)}
            self.labels: torch.Tensor | None = torch.tensor([index[p[0]] for p in rel], dtype=torch.int64)
        else:
            self.class_names = []
            self.labels = None
        self.num_classes = len(self.class_names)
        self.name = Path(self.root).resolve().name or self.root
        first = self.paths[0]
        if channels is None:
            channels = int(load_image(first, channels=None).shape[0])
        self.channels = channels
        if size is None:
            w, h = image_size_of(first)
            self._hw: tuple[int, int] | None = None
            self._ref = (first, h, w)
        else:
            h, w = _hw(size) if isinstance(size, int) else tuple(size)
            self._hw = (h, w)
            self._ref = (first, h, w)
        self.image_size: int | tuple[int, int] = h if h == w else (h, w)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        img = load_image(path, channels=self.channels, size=self._hw)
        ref, h, w = self._ref
        if tuple(img.shape[1:]) != (h, w):
            raise InputError(
                f"{path} is {img.shape[2]}x{img.shape[1]} but {ref} is {w}x{h}; "
                "pass --size N to resize all images"
            )
        label = -1 if self.labels is None else int(self.labels[index])
        return img, label

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={self.root!r}, n={len(self)}, channels={self.channels}, "
            f"image_size={self.image_size}, num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------------------------
# Fashion-MNIST / MNIST: locate, download, load

_IDX_IMAGE_RE = re.compile(r"^(?P<prefix>.+?)-images[.-]idx3-ubyte(?P<gz>\.gz)?$")


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


def _load_idx_pair(images_path: Path, labels_path: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    imgs = read_idx(images_path)
    if imgs.dtype != np.uint8:
        raise InputError(f"{images_path}: expected uint8 images, found {imgs.dtype}")
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    elif imgs.ndim == 4 and imgs.shape[-1] in (1, 3):  # NHWC
        imgs = imgs.transpose(0, 3, 1, 2)
    else:
        raise InputError(f"{images_path}: expected N x H x W images, found shape {imgs.shape}")
    labels = None
    if labels_path is not None:
        lab = read_idx(labels_path)
        if lab.ndim != 1 or lab.shape[0] != imgs.shape[0]:
            raise InputError(
                f"{labels_path}: {lab.shape} labels do not match {imgs.shape[0]} images in {images_path.name}"
            )
        labels = torch.from_numpy(lab.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(imgs)), labels


def _load_registered(
    name: str, split: str, root: str | os.PathLike[str] | None, download: bool
) -> TensorImageDataset:
    info = DATASETS[name]
    images_path, labels_path = _locate(info, split, root, download)
    imgs, labels = _load_idx_pair(images_path, labels_path)
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise InputError(f"{labels_path}: labels outside 0..{info.num_classes - 1}")
    return TensorImageDataset(imgs, labels, info.class_names, info.name)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None, download: bool = True
) -> TensorImageDataset:
    """Fashion-MNIST ``split`` ("train": 60000, "test": 10000) as 1x28x28 uint8 images, 10 classes."""
    return _load_registered("fashion-mnist", split, root, download)


def load_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None, download: bool = True
) -> TensorImageDataset:
    """MNIST ``split`` ("train": 60000, "test": 10000) as 1x28x28 uint8 images, 10 classes."""
    return _load_registered("mnist", split, root, download)


def _idx_image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _IDX_IMAGE_RE.match(p.name))


def _labels_for(images_path: Path) -> Path | None:
    m = _IDX_IMAGE_RE.match(images_path.name)
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
    files = _idx_image_files(folder)
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    chosen = [p for p in files if _IDX_IMAGE_RE.match(p.name)["prefix"].lower() in prefixes]
    if not chosen and len(files) == 1:
        chosen = files
    if not chosen:
        raise InputError(f"{folder} has no {split} images IDX file (looked for {prefixes[0]}-images-idx3-ubyte[.gz])")
    images_path = chosen[0]
    labels_path = _labels_for(images_path)
    imgs, labels = _load_idx_pair(images_path, labels_path)
    lowered = folder.resolve().name.lower().replace("_", "-")
    fashion = "fashion" in lowered and labels is not None and (len(labels) == 0 or labels.max() < 10)
    return TensorImageDataset(imgs, labels, FASHION_MNIST_CLASSES if fashion else None, folder.resolve().name)


# --------------------------------------------------------------------------------------------
# Synthetic shapes


def synthetic_shapes(
    n: int, size: int = 16, channels: int = 1, seed: int = 0, num_classes: int = 2
) -> TensorImageDataset:
    """A tiny deterministic labelled set of white shapes on black, for fast tests.

    Classes cycle through square, circle, triangle, cross (``num_classes`` of them, 1..4); each
    image has a random position, size and brightness (colour when ``channels=3``) drawn from
    ``seed``. Label ``i % num_classes`` for image ``i``.
    """
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise UsageError(f"synthetic shapes support 1..{len(SHAPE_CLASSES)} classes, got {num_classes}")
    if channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, got {channels}")
    if n < 0 or size < 4:
        raise UsageError(f"synthetic shapes need n >= 0 and size >= 4, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.zeros((n, channels, size, size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % num_classes
    for i in range(n):
        r = rng.uniform(0.2, 0.4) * size  # half-extent
        cx, cy = rng.uniform(r, size - r, size=2)
        dx, dy = xx - cx, yy - cy
        cls = labels[i]
        if cls == 0:
            mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        elif cls == 1:
            mask = dx * dx + dy * dy <= r * r
        elif cls == 2:
            mask = (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
        else:
            t = max(r / 3, 1.0)
            mask = ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
        colour = rng.integers(160, 256, size=channels) if channels == 3 else rng.integers(160, 256, size=1)
        images[i][:, mask] = colour[:, None].astype(np.uint8)
    return TensorImageDataset(
        torch.from_numpy(images), torch.from_numpy(labels), SHAPE_CLASSES[:num_classes], "synthetic"
    )


# --------------------------------------------------------------------------------------------
# Resolution of a user's --data


_ALIASES = {alias: name for name, info in DATASETS.items() for alias in (name, *info.aliases)}
_ACCEPTED = "fashion-mnist (fmnist), mnist, synthetic[:N], a folder of images, or a folder of IDX files"


def resolve_dataset(
    spec: str,
    *,
    split: str = "train",
    channels: int | None = None,
    size: SizeArg = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Dataset:
    """Turn a user's dataset spec into a dataset yielding ``(float CHW in [-1, 1], label)``.

    ``spec``: ``fashion-mnist``/``fmnist``, ``mnist``, ``synthetic`` or ``synthetic:N``, a folder
    holding ``*-images-idx3-ubyte[.gz]`` (+ labels) files, an IDX images file, or a folder of
    images. ``channels`` (1/3) and ``size`` convert the images; ``None`` keeps them as stored
    (image folders default to 3 channels). ``root`` points the named datasets at a folder.
    """
    key = str(spec).strip()
    name = _ALIASES.get(key.lower())
    if name in ("fashion-mnist", "mnist"):
        ds = _load_registered(name, split, root, download)
        return ds.with_format(channels, size)
    if name == "synthetic" or key.lower().startswith("synthetic:"):
        count = 256
        if ":" in key:
            try:
                count = int(key.split(":", 1)[1])
            except ValueError:
                raise UsageError(f"bad dataset {spec!r}: use synthetic:N with N a number of images") from None
        side = size if isinstance(size, int) else (16 if size is None else None)
        if side is None:
            raise UsageError("synthetic shapes are square: pass --size N")
        seed = 0 if split == "train" else 1
        return synthetic_shapes(count, size=side, channels=channels or 1, seed=seed)
    path = Path(key).expanduser()
    if path.is_file() and _IDX_IMAGE_RE.match(path.name):
        imgs, labels = _load_idx_pair(path, _labels_for(path))
        return TensorImageDataset(imgs, labels, None, path.name.split("-images")[0]).with_format(channels, size)
    if path.is_dir():
        if _idx_image_files(path):
            return load_idx_folder(path, split).with_format(channels, size)
        return ImageFolderDataset(path, channels=3 if channels is None else channels, size=size)
    raise UsageError(f"unknown dataset {spec!r}: use {_ACCEPTED}")
