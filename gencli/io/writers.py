"""Writing images: numbered PNGs in a folder, one grid image, GIF animations, or ``-`` (stdout).

Tensors come in as float in [-1, 1] (CHW or NCHW, 1 or 3 channels). Every file is written
atomically (temp file in the same folder, fsync, ``os.replace``), and existing files are never
overwritten without ``force``; in folder mode every target is checked before anything is written.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Sequence
from pathlib import PurePath

import torch
from PIL import Image

from gencli import fsutil
from gencli.errors import GencliError, UsageError

__all__ = [
    "WRITE_EXTENSIONS",
    "to_uint8",
    "from_uint8",
    "make_grid",
    "to_pil",
    "encode_image",
    "atomic_write_bytes",
    "write_image_file",
    "write_images",
    "write_animation",
]

#: File extensions write_images accepts for a single (grid) image, and the PIL format for each.
WRITE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF", ".ppm": "PPM", ".pgm": "PPM",
}
_SAVE_OPTIONS: dict[str, dict] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map float images in [-1, 1] to uint8 0..255: ``round((x + 1) * 127.5)`` after clamping.

    Rounding is half-to-even (``torch.round``); NaN maps to 0 (mid-grey would hide the bug).
    """
    y = torch.nan_to_num(x.detach().to(torch.float32), nan=-1.0, posinf=1.0, neginf=-1.0)
    return ((y + 1.0) * 127.5).clamp_(0.0, 255.0).round_().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_uint8`: uint8 0..255 -> float32 in [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def make_grid(
    x: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile an NCHW batch into one CHW image with ``nrow`` images per row.

    ``nrow`` defaults to ``ceil(sqrt(n))``; ``padding`` pixels of ``pad_value`` (in the image's
    value range, 1.0 = white) surround every tile. A CHW input is returned unchanged.
    """
    if x.dim() == 3:
        return x
    if x.dim() != 4:
        raise ValueError(f"make_grid expects NCHW or CHW, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n == 0:
        raise GencliError("no images to write")
    nrow = max(1, min(nrow or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / nrow)
    grid = x.new_full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = x[i]
    return grid


def to_pil(img: torch.Tensor) -> Image.Image:
    """A CHW float tensor in [-1, 1] (1 or 3 channels) as a PIL ``L`` or ``RGB`` image."""
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise GencliError(f"cannot write an image of shape {tuple(img.shape)} (need 1 or 3 channels)")
    arr = to_uint8(img).cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")


def _check_finite(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise GencliError("the images contain NaN or infinite values; nothing was written")


def encode_image(img: torch.Tensor, fmt: str = "PNG") -> bytes:
    """Encode one CHW float image as ``fmt`` (a PIL format name) bytes."""
    buf = io.BytesIO()
    to_pil(img).save(buf, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
    return buf.getvalue()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (gencli.fsutil); creates missing parent folders."""
    fsutil.atomic_write_bytes(path, data)


def _refuse_existing(path: str) -> None:
    raise UsageError(f"{path} exists; pass --force to overwrite")


def _format_for(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITE_EXTENSIONS:
        raise UsageError(
            f"cannot write {path}: unknown image extension (use {', '.join(sorted(WRITE_EXTENSIONS))})"
        )
    return WRITE_EXTENSIONS[ext]


def write_image_file(img_chw: torch.Tensor, path: str | os.PathLike[str], *, force: bool = False) -> str:
    """Atomically write one CHW image (format from the extension); refuses to overwrite unless ``force``."""
    path = str(path)
    fmt = _format_for(path)
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder; end -o with a file name such as {path}/grid.png")
    if os.path.exists(path) and not force:
        _refuse_existing(path)
    _check_finite(img_chw)
    _write_bytes_or_fail(path, encode_image(img_chw, fmt))
    return path


def _write_bytes_or_fail(path: str, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except PermissionError:
        raise GencliError(f"cannot write {path}: permission denied") from None
    except OSError as e:
        raise GencliError(f"cannot write {path}: {e.strerror or e}") from None


def _write_stdout(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise GencliError(f"cannot write images of shape {tuple(images.shape)} (need NCHW with 1 or 3 channels)")
    if images.shape[0] == 0:
        raise GencliError("no images to write")
    return images.detach().cpu()


def _is_folder_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or os.path.isdir(out) or os.path.splitext(out)[1] == ""


def _mirror_name(name: str) -> PurePath:
    """A safe relative ``.png`` path for a given output name (no absolute paths, no ``..``)."""
    p = PurePath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise UsageError(f"output name {name!r} must be a relative path inside the output folder")
    return p.with_suffix(".png")


def write_images(
    images: torch.Tensor,
    out: str,
    *,
    force: bool = False,
    nrow: int | None = None,
    names: Sequence[str] | None = None,
    grid: bool = False,
) -> list[str]:
    """Write a batch of images (NCHW or CHW, float in [-1, 1]) and return what was written.

    - ``out`` ending with ``/``, an existing folder, or a path without extension: one PNG per
      image, ``000000.png, 000001.png, ...`` or ``names`` (relative, extension replaced by
      ``.png``, sub-folders created). All targets are checked before anything is written.
    - ``out`` with an image extension (``.png``, ``.jpg``, ``.webp``...): one grid image
      (``nrow`` per row), or the image itself when there is one.
    - ``out == "-"``: the images on stdout as a stream of PNGs one after another (what
      ``gencli translate ... -`` and ffmpeg's image2pipe read), or with ``grid`` one PNG grid;
      returns ``["-"]``.
    """
    x = _as_batch(images)
    _check_finite(x)
    if out == "-" and not grid and x.shape[0] > 1:
        _write_stdout(b"".join(encode_image(img, "PNG") for img in x))
        return ["-"]
    if out == "-" or not _is_folder_target(out):
        grid = x[0] if x.shape[0] == 1 else make_grid(x, nrow)
        if out == "-":
            _write_stdout(encode_image(grid, "PNG"))
            return ["-"]
        return [write_image_file(grid, out, force=force)]

    if names is not None:
        if len(names) != x.shape[0]:
            raise UsageError(f"got {len(names)} output names for {x.shape[0]} images")
        rel = [_mirror_name(n) for n in names]
    else:
        width = max(6, len(str(x.shape[0] - 1)))
        rel = [PurePath(f"{i:0{width}d}.png") for i in range(x.shape[0])]
    targets = [os.path.join(out, str(r)) for r in rel]
    if len(set(targets)) != len(targets):
        dup = next(t for t in targets if targets.count(t) > 1)
        raise UsageError(f"two images would both be written to {dup}; give distinct names")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{out} exists and is not a folder")
    if not force:
        for t in targets:
            if os.path.exists(t):
                _refuse_existing(t)
    for img, t in zip(x, targets):
        if os.path.isdir(t):
            raise UsageError(f"{t} is a folder; cannot write an image there")
        _write_bytes_or_fail(t, encode_image(img, "PNG"))
    return targets


def _frame_list(frames: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    """Normalise animation frames to a list of CHW images (several images per frame -> grid)."""
    if isinstance(frames, torch.Tensor):
        if frames.dim() == 4:  # TCHW: one image per frame
            frames = list(frames)
        elif frames.dim() == 5:  # TNCHW
            frames = list(frames)
        else:
            raise GencliError(f"cannot animate a tensor of shape {tuple(frames.shape)} (need TCHW or TNCHW)")
    out = []
    for f in frames:
        f = _as_batch(f)
        out.append(f[0] if f.shape[0] == 1 else make_grid(f))
    if not out:
        raise GencliError("no frames to write")
    shapes = {tuple(f.shape) for f in out}
    if len(shapes) > 1:
        raise GencliError(f"animation frames differ in shape: {sorted(shapes)}")
    return out


def write_animation(
    frames: Sequence[torch.Tensor] | torch.Tensor,
    out: str,
    *,
    force: bool = False,
    duration_ms: int = 80,
    loop: int = 0,
) -> list[str]:
    """Write an animated GIF (``out`` ends with ``.gif``, or ``-`` for stdout).

    ``frames``: a list of CHW/NCHW tensors or one TCHW (or TNCHW) tensor; a frame holding several
    images is laid out as a grid. ``loop=0`` loops forever. Note that GIF stores 256 colours per
    frame and Pillow merges identical consecutive frames.
    """
    imgs = _frame_list(frames)
    for f in imgs:
        _check_finite(f)
    if out != "-" and os.path.splitext(out)[1].lower() != ".gif":
        raise UsageError(f"cannot write an animation to {out}: use a .gif file or -")
    if out != "-" and os.path.exists(out) and not force:
        _refuse_existing(out)
    pil = [to_pil(f) for f in imgs]
    buf = io.BytesIO()
    pil[0].save(
        buf, format="GIF", save_all=True, append_images=pil[1:],
        duration=int(duration_ms), loop=int(loop), disposal=1,
    )
    if out == "-":
        _write_stdout(buf.getvalue())
        return ["-"]
    _write_bytes_or_fail(out, buf.getvalue())
    return [out]
