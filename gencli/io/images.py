"""Reading images: files, folders, globs and ``-`` (stdin) into float tensors in [-1, 1].

Every PIL mode is normalised to float in [0, 1] first (alpha composited onto white, 16-bit
scaled by 65535), then converted to the requested channel count, optionally resized (bicubic,
antialiased) and mapped to [-1, 1]. Anything unreadable becomes an :class:`InputError` whose
one-line message names the file.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from gencli.errors import InputError, UsageError
from gencli.io.stdin import STDIN_PREFIX, stdin_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "GRAYSCALE_MODES",
    "is_image_path",
    "list_images",
    "load_image",
    "iter_image_batches",
    "image_size_of",
    "resize",
    "to_channels",
]

#: Extensions (lower case, with the dot) recognised when scanning folders; matching ignores case.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)

#: PIL modes that hold one (grey) channel; ``channels=None`` keeps these as 1 channel.
GRAYSCALE_MODES: frozenset[str] = frozenset(
    {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
)

# ITU-R 601-2 luma, the weights PIL uses for convert("L").
_LUMA = (0.299, 0.587, 0.114)

SizeArg = int | tuple[int, int] | None


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _scan_folder(folder: str, recursive: bool) -> list[str]:
    """Image files under ``folder``, hidden files/folders skipped, sorted by path components.
    Linked folders are followed once: a link back up the tree (a loop) is not entered again."""
    found: list[tuple[tuple[str, ...], str]] = []
    seen = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not _is_hidden(d)) if recursive else []:
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        for fname in filenames:
            if _is_hidden(fname) or not is_image_path(fname):
                continue
            full = os.path.join(dirpath, fname)
            rel = os.path.relpath(full, folder)
            found.append((tuple(Path(rel).parts), full))
    found.sort()
    return [full for _, full in found]


def list_images(inputs: Sequence[str] | str, recursive: bool = True) -> list[str]:
    """Expand files, folders, glob patterns and ``-`` into a list of image paths.

    Explicitly named files are kept whatever their extension (reading them will tell whether they
    are images); folders are scanned (recursively by default) for :data:`IMAGE_EXTENSIONS`,
    skipping hidden files; glob patterns are expanded with ``recursive=True``; ``-`` stays ``-``
    (stdin). Raises :class:`InputError` for a missing path, an image-less folder or a glob that
    matches nothing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [str(inputs)]
    exts = ", ".join(IMAGE_EXTENSIONS[:3]) + ", ..."
    how = "recursively" if recursive else "at the top level"
    out: list[str] = []
    for item in inputs:
        item = str(item)
        if item == "-":
            count = len(stdin_images())
            out.extend(["-"] if count == 1 else [f"{STDIN_PREFIX}{k}" for k in range(count)])
        elif os.path.isdir(item):
            files = _scan_folder(item, recursive)
            if not files:
                raise InputError(f"{item} contains no images (looked for {exts} {how})")
            out.extend(files)
        elif os.path.exists(item):
            out.append(item)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files = []
            for m in matches:
                if os.path.isdir(m):
                    files.extend(_scan_folder(m, recursive))
                elif is_image_path(m):
                    files.append(m)
            if not files:
                raise InputError(f"no images match the pattern {item}")
            out.extend(files)
        else:
            raise InputError(f"no such file or folder: {item}")
    if not out:
        raise InputError("no input images given")
    return out


# --------------------------------------------------------------------------------------------
# Decoding


def _composite_on_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend colour ``values`` (HxWxC in [0,1]) over a white background using ``alpha`` (HxW)."""
    a = alpha[..., None]
    return values * a + (1.0 - a)


def _scale_unknown_range(arr: np.ndarray, float_8bit: bool = False) -> np.ndarray:
    """Map an integer/float plane of unknown range into [0, 1] (used for modes I and F).

    Floats already in [0, 1] are kept; with ``float_8bit`` values up to 255 are read as 8-bit
    (what PIL's ``convert("L")`` assumes for mode F); values up to 65535 as 16-bit; anything
    else (negative, larger) is min-max normalised rather than clipped.
    """
    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0 and is_float:
        return arr
    if lo >= 0.0 and hi <= 255.0 and float_8bit:
        return arr / 255.0
    if lo >= 0.0 and hi <= 65535.0:
        return arr / 65535.0
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def _pil_to_float(img: Image.Image) -> np.ndarray:
    """Convert any PIL image to float64 HxWxC in [0, 1] with C in {1, 3}."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(img).astype(np.float64) / 65535.0)[..., None]
    if mode in ("I", "I;32", "I;32B", "I;32L"):
        # Pillow's 32-bit integer mode almost always carries 16-bit data (PNG/TIFF); values
        # outside 0..65535 are min-max normalised rather than clipped.
        return _scale_unknown_range(np.asarray(img))[..., None]
    if mode == "F":
        return _scale_unknown_range(np.asarray(img, dtype=np.float32), float_8bit=True)[..., None]
    if mode == "1":
        return (np.asarray(img.convert("L"), dtype=np.float64) / 255.0)[..., None]
    if mode == "L":
        return (np.asarray(img, dtype=np.float64) / 255.0)[..., None]
    if mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.float64) / 255.0
        return _composite_on_white(la[..., :1], la[..., 1])
    if mode == "RGB":
        return np.asarray(img, dtype=np.float64) / 255.0
    if mode == "P":
        has_alpha = "transparency" in img.info or img.palette is not None and img.palette.mode == "RGBA"
        img = img.convert("RGBA" if has_alpha else "RGB")
        return _pil_to_float(img)
    if mode in ("RGBA", "RGBa", "PA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    # Anything exotic (BGR;15, ...): let PIL convert it, keeping alpha if it has one.
    return _pil_to_float(img.convert("RGBA"))


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a CHW or NCHW tensor (1 or 3 channels, any range) to ``channels`` channels.

    3 -> 1 uses ITU-R 601 luma (as PIL's ``convert("L")``); 1 -> 3 repeats the grey plane.
    """
    cdim = x.dim() - 3
    c = x.shape[cdim]
    if c == channels:
        return x
    if channels == 1 and c == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(dim=cdim, keepdim=True)
    if channels == 3 and c == 1:
        reps = [1] * x.dim()
        reps[cdim] = 3
        return x.repeat(*reps)
    raise UsageError(f"cannot convert {c}-channel images to {channels} channels (use 1 or 3)")


def _size_hw(size: SizeArg) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise UsageError(f"--size must be positive, got {size}")
    return h, w


def resize(x: torch.Tensor, size: SizeArg) -> torch.Tensor:
    """Bicubic (antialiased, PIL-like) resize of a CHW/NCHW tensor in [-1, 1] to ``size``.

    ``size`` is an int (square) or ``(height, width)``; the result is clamped to [-1, 1]. Returns
    ``x`` itself when it already has that size.
    """
    hw = _size_hw(size)
    if hw is None or tuple(x.shape[-2:]) == hw:
        return x
    batched = x.dim() == 4
    y = F.interpolate(
        x if batched else x[None], size=hw, mode="bicubic", align_corners=False, antialias=True
    ).clamp_(-1.0, 1.0)
    return y if batched else y[0]


def _read_source(src: str | Path | bytes, name: str | None) -> tuple[io.BytesIO | str, str]:
    """Resolve ``src`` to something PIL can open, plus the name used in messages."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(src)), name or "<bytes>"
    path = str(src)
    if path == "-" or path.startswith(STDIN_PREFIX):
        parts = stdin_images()
        k = 0 if path == "-" else int(path[len(STDIN_PREFIX):])
        if path == "-" and len(parts) > 1:
            raise InputError(f"stdin holds a stream of {len(parts)} images where one was expected")
        return io.BytesIO(parts[k]), name or ("<stdin>" if path == "-" else f"<stdin image {k + 1}>")
    label = name or path
    if os.path.isdir(path):
        raise InputError(f"{label}: is a folder, not an image")
    if not os.path.exists(path):
        raise InputError(f"no such file or folder: {label}")
    return path, label


def _decode(src: str | Path | bytes, name: str | None) -> tuple[np.ndarray, str, str]:
    """Open and fully decode ``src``; returns (float HxWxC in [0,1], PIL mode, display name)."""
    fp, label = _read_source(src, name)
    if isinstance(fp, io.BytesIO) and fp.getbuffer().nbytes == 0:
        raise InputError(f"{label}: empty input, not an image")
    if isinstance(fp, str) and os.path.getsize(fp) == 0:
        raise InputError(f"{label}: empty file, not an image")
    try:
        with Image.open(fp) as img:
            img.load()
            return _pil_to_float(img), img.mode, label
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{label}: image is too large to decode safely ({e}); downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{label}: not a readable image (unrecognised format)") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as e:
        # PIL reports truncation/corruption through many exception types.
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{label}: not a readable image (truncated or corrupt: {detail})") from None


def load_image(
    src: str | Path | bytes,
    channels: int | None = 3,
    size: SizeArg = None,
    name: str | None = None,
) -> torch.Tensor:
    """Read one image as a float32 CHW tensor in [-1, 1].

    ``src`` is a path, ``-`` (all of stdin) or raw encoded bytes; ``name`` overrides the name used
    in error messages. ``channels``: 1 (grey, ITU-R 601 luma), 3 (RGB) or ``None`` (1 for
    grey-ish modes such as L/LA/I;16/F, else 3). Transparent pixels are composited onto white.
    ``size`` (int or ``(height, width)``) resizes bicubically.
    """
    if channels not in (None, 1, 3):
        raise UsageError(f"channels must be 1, 3 or None, got {channels}")
    arr, mode, _ = _decode(src, name)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float32)
    x = x.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)
    if channels is not None:
        x = to_channels(x, channels)
    return resize(x, size)


def iter_image_batches(
    paths: Iterable[str],
    batch_size: int,
    channels: int | None = 3,
    size: SizeArg = None,
    on_error: str = "fail",
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Stream ``(names, NCHW float tensor)`` batches of at most ``batch_size`` images.

    Memory is constant in the number of images (only one batch is held). Without ``size``, all
    images must share the first image's size (and channel count when ``channels`` is None);
    otherwise :class:`InputError` names both files and suggests ``--size``. ``on_error="skip"``
    skips unreadable files with a ``warnings.warn`` instead of failing; if nothing at all could
    be read, :class:`InputError` is raised.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if on_error not in ("fail", "skip"):
        raise UsageError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    ref_name: str | None = None
    ref_shape: tuple[int, ...] | None = None
    names: list[str] = []
    tensors: list[torch.Tensor] = []
    seen = read = 0
    for path in paths:
        seen += 1
        try:
            x = load_image(path, channels=channels, size=size)
        except InputError as e:
            if on_error == "skip":
                warnings.warn(f"skipping {e}", stacklevel=2)
                continue
            raise
        read += 1
        shape = tuple(x.shape)
        if ref_shape is None:
            ref_name, ref_shape = path, shape
        elif shape != ref_shape:
            if shape[0] != ref_shape[0]:
                raise InputError(
                    f"{path} has {shape[0]} channel(s) but {ref_name} has {ref_shape[0]}; "
                    "pass --channels 1 or --channels 3"
                )
            raise InputError(
                f"{path} is {shape[2]}x{shape[1]} but {ref_name} is {ref_shape[2]}x{ref_shape[1]}; "
                "pass --size N to resize all images"
            )
        names.append(path)
        tensors.append(x)
        if len(tensors) == batch_size:
            yield names, torch.stack(tensors)
            names, tensors = [], []
    if tensors:
        yield names, torch.stack(tensors)
    if seen and not read:
        raise InputError(f"none of the {seen} input image(s) could be read")


def image_size_of(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header without decoding pixels."""
    label = str(path)
    if label == "-":
        raise InputError("cannot read the size of stdin without consuming it")
    fp, label = _read_source(path, None)
    try:
        with Image.open(fp) as img:
            return img.size
    except UnidentifiedImageError:
        raise InputError(f"{label}: not a readable image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{label}: image is too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{label}: not a readable image (truncated or corrupt: {e})") from None
