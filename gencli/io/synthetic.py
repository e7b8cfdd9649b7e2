"""Synthetic shapes: a tiny deterministic labelled dataset for fast tests."""

from __future__ import annotations

import numpy as np
import torch

from gencli.errors import UsageError
from gencli.io.tensor_dataset import TensorImageDataset

__all__ = ["SHAPE_CLASSES", "synthetic_shapes"]

SHAPE_CLASSES: tuple[str, ...] = ("square", "circle", "triangle", "cross")


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
