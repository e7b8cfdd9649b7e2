"""Datasets: IDX files (Fashion-MNIST, MNIST), image folders and small synthetic sets.

Every dataset yields ``(image, label)`` with ``image`` a float32 CHW tensor in [-1, 1] and
``label`` an int (-1 when unlabelled), and carries ``num_classes``, ``class_names``,
``channels``, ``image_size`` and ``name``. :func:`resolve_dataset` turns what a user typed
(``fashion-mnist``, ``mnist``, ``synthetic:N``, a folder) into one of them.

The datasets live in :mod:`gencli.io.tensor_dataset`, :mod:`gencli.io.image_folder`,
:mod:`gencli.io.named_datasets` (Fashion-MNIST, MNIST, folders of IDX files; download and
checks), :mod:`gencli.io.synthetic`; the IDX file format in :mod:`gencli.io.idx`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from gencli.errors import UsageError
from gencli.io.idx import load_idx_pair
from gencli.io.image_folder import ImageFolderDataset
from gencli.io.images import SizeArg
from gencli.io.named_datasets import (
    DATASETS,
    IDX_IMAGE_RE,
    idx_image_files,
    labels_for,
    load_idx_folder,
    load_registered,
)
from gencli.io.synthetic import synthetic_shapes
from gencli.io.tensor_dataset import TensorImageDataset

__all__ = ["resolve_dataset"]


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
        ds = load_registered(name, split, root, download)
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
    if path.is_file() and IDX_IMAGE_RE.match(path.name):
        imgs, labels = load_idx_pair(path, labels_for(path))
        return TensorImageDataset(imgs, labels, None, path.name.split("-images")[0]).with_format(channels, size)
    if path.is_dir():
        if idx_image_files(path):
            return load_idx_folder(path, split).with_format(channels, size)
        return ImageFolderDataset(path, channels=3 if channels is None else channels, size=size)
    raise UsageError(f"unknown dataset {spec!r}: use {_ACCEPTED}")
