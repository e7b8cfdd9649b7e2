"""ImageFolderDataset: all images under a folder, decoded lazily; sub-folders are classes."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from gencli.errors import InputError
from gencli.io.images import SizeArg, image_size_of, list_images, load_image

__all__ = ["ImageFolderDataset"]


def _hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else image_size


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
