"""TensorImageDataset: an in-memory image dataset (uint8 NCHW images, optional labels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from gencli.io.images import SizeArg, resize, to_channels

__all__ = ["TensorImageDataset"]


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
