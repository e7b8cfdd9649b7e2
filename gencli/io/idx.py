"""IDX files (the Fashion-MNIST/MNIST format): read and write numpy arrays, gzip or raw, and read
an images + labels pair as uint8 NCHW / int64 tensors."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from gencli.errors import InputError
from gencli.io.writers import atomic_write_bytes

__all__ = ["read_idx", "write_idx", "load_idx_pair"]

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


def load_idx_pair(images_path: Path, labels_path: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
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
