"""The table of checkpoint formats gencli reads: one entry per format, native or foreign.

Each :class:`Format` says what it is (``name``, ``description``), which checkpoint families or
metric networks it ``serves``, how to recognise a path (``detect``), how to read it into gencli's
layout (``read(path, family) -> (config, tensors, metadata)``, nothing written) and, for foreign
formats, how to write a gencli ``.safetensors`` file once (``convert(src, out, force=)``;
``gencli convert KIND SRC -o OUT`` dispatches here).

:func:`read_checkpoint` is the one way a model's weights are read: an explicit format name, or
``"auto"``: the first foreign format that serves the family and detects the path, else gencli's
own safetensors. Readers and converters are ``"module:function"`` strings imported only when
used, so this module (and ``gencli convert --help``) imports no torch. Every torch pickle is read
by :func:`gencli.convert.torchfile.load_torch_file` (``weights_only=True``) and nowhere else.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gencli.errors import InputError, UsageError

__all__ = ["Format", "FORMATS", "NATIVE", "ANY_FAMILY", "get_format", "detect_format", "read_checkpoint",
           "convert", "converter_targets", "describe_table", "read_gencli"]

Triple = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
NATIVE = "gencli"
#: ``serves`` value of a format that holds any family (gencli's own files say which one they are).
ANY_FAMILY = "*"


@dataclass(frozen=True)
class Format:
    name: str  # the KIND of `gencli convert KIND` and the format name of registry checkpoints
    description: str
    serves: tuple[str, ...]  # checkpoint families / metric networks read from it (ANY_FAMILY: all)
    detect: Callable[[Path], bool]  # cheap, torch-free: does ``path`` look like this format?
    reader: str  # "module:function" (path, family) -> (config, tensors, metadata)
    converter: str | None = None  # "module:function" (src, out, *, force) -> Path; None: native
    aliases: tuple[str, ...] = ()  # other names (registry CheckpointRef.format values)
    #: "module:function" (family, checkpoint, *, allow_download) -> Path of a gencli file: a named
    #: checkpoint of this format downloaded once and converted into the cache (None: read as is)
    fetcher: str | None = None

    def serves_family(self, family: str) -> bool:
        return ANY_FAMILY in self.serves or family in self.serves

    def read(self, path: str | os.PathLike[str], family: str) -> Triple:
        """(config, tensors, metadata) in gencli's layout; one-line :class:`InputError` otherwise."""
        return _resolve(self.reader)(Path(path).expanduser(), family)

    def fetch(self, family: str, checkpoint: Any, *, allow_download: bool = True) -> Path | None:
        """The cached gencli file of a named ``checkpoint`` (downloaded and converted once), or
        None when this format is read as it is."""
        if self.fetcher is None:
            return None
        return _resolve(self.fetcher)(family, checkpoint, allow_download=allow_download)

    def convert(self, src: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write ``out``, a gencli ``.safetensors`` file, from ``src``; returns its path."""
        if self.converter is None:
            raise UsageError(f"{self.name} is gencli's own format: there is nothing to convert")
        return _resolve(self.converter)(src, out, force=force)


def _resolve(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


# --- detection (torch-free) --------------------------------------------------------------------
_PTH_SUFFIXES = (".pth", ".pt")


def _looks_like_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def _is_gencli(path: Path) -> bool:
    """A ``.safetensors`` file, or a folder holding ``model.safetensors`` (or exactly one ``*.safetensors``)."""
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        return any(p.name == "model.safetensors" for p in found) or len(found) == 1
    return path.is_file() and (path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path))


def _is_diffusers(path: Path) -> bool:
    from gencli.convert.diffusers import is_diffusers_folder  # torch-free module

    return is_diffusers_folder(path)


def _is_pth(path: Path) -> bool:
    """A PyTorch pickle by its name (``.pth``/``.pt``): what the content is, only its reader knows."""
    return path.suffix.lower() in _PTH_SUFFIXES


def read_gencli(path: Path, family: str) -> Triple:
    """gencli's own ``.safetensors`` (or a folder with ``model.safetensors``), checked to be ``family``'s."""
    from gencli import checkpoints

    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors"))
        preferred = [p for p in candidates if p.name == "model.safetensors"]
        if not (preferred or len(candidates) == 1):
            raise InputError(f"{path} is a folder without model.safetensors or a diffusers "
                             f"config.json; pass the checkpoint file itself")
        path = (preferred or candidates)[0]
    ckpt = checkpoints.load_checkpoint(path)
    checkpoints.require_family(ckpt, family)
    meta = dict(ckpt.metadata)
    meta.setdefault("source", str(path))
    return ckpt.config, ckpt.tensors, meta


# --- the table ---------------------------------------------------------------------------------
_FORMATS = (
    Format(NATIVE, "gencli's own .safetensors (or a folder with model.safetensors)", (ANY_FAMILY,), _is_gencli,
           "gencli.formats:read_gencli"),
    Format("diffusers", "diffusers UNet2DModel or DDPM/DDIM pipeline folder -> ddpm, ddim", ("ddpm",), _is_diffusers,
           "gencli.convert.diffusers:read_diffusers", "gencli.convert.diffusers:convert"),
    Format("cyclegan", "official CycleGAN generator .pth (G_A[,G_B]) or folder -> cyclegan", ("cyclegan",), _is_pth,
           "gencli.convert.official_cyclegan:load_official",
           "gencli.convert.official_cyclegan:convert_cyclegan", aliases=("cyclegan-pth",),
           fetcher="gencli.convert.official_download:resolve_official"),
    Format("pix2pix", "official pix2pix generator .pth or its folder -> pix2pix", ("pix2pix",), _is_pth,
           "gencli.convert.official_cyclegan:load_official",
           "gencli.convert.official_cyclegan:convert_pix2pix", aliases=("pix2pix-pth",),
           fetcher="gencli.convert.official_download:resolve_official"),
    Format("fid-inception", "pytorch-fid/torch-fidelity InceptionV3 .pth -> fid, kid, is", ("fid-inception",), _is_pth,
           "gencli.convert.fid_inception:read_fid_inception",
           "gencli.convert.fid_inception:convert_fid_inception"),
    Format("vgg16", "torchvision VGG16 .pth (vgg16-397923af) -> precision/recall",
           ("vgg16-features",), _is_pth, "gencli.convert.vgg:read_vgg16", "gencli.convert.vgg:convert_vgg16"),
)
FORMATS: dict[str, Format] = {f.name: f for f in _FORMATS}


def get_format(name: str) -> Format:
    """The entry named ``name`` (or one of its aliases); :class:`UsageError` for an unknown name."""
    if name in FORMATS:
        return FORMATS[name]
    for f in FORMATS.values():
        if name in f.aliases:
            return f
    raise UsageError(f"unknown checkpoint format {name!r}; known: {', '.join(FORMATS)}")


def detect_format(path: str | os.PathLike[str], family: str | None = None) -> Format | None:
    """The format ``"auto"`` picks for ``path``: the first foreign format (serving ``family`` when
    given) that detects it, else gencli's own when it detects it, else None."""
    path = Path(path).expanduser()
    for f in FORMATS.values():
        if f.name != NATIVE and (family is None or f.serves_family(family)) and f.detect(path):
            return f
    native = FORMATS[NATIVE]
    return native if native.detect(path) else None


def read_checkpoint(path: str | os.PathLike[str], family: str, fmt: str = "auto") -> Triple:
    """(config, tensors, metadata) of the checkpoint at ``path`` for checkpoint family ``family``.

    ``fmt``: a format name (or alias) from :data:`FORMATS`, or ``"auto"``: the first foreign
    format that serves ``family`` and detects ``path``, else gencli's own safetensors (whose
    reader gives the one-line error for anything unreadable). ``family`` is the name written in
    checkpoints (``ddpm`` for ddim). ``metadata["source"]`` is set to the file read when absent.
    Raises :class:`InputError` (one line) for unreadable or unsafe files.
    """
    path = Path(path).expanduser()
    if fmt == "auto":
        entry = detect_format(path, family) or FORMATS[NATIVE]
    else:
        entry = get_format(fmt)
        if not entry.serves_family(family):
            raise UsageError(f"{path}: the {entry.name} format holds {', '.join(entry.serves)} "
                             f"weights, not {family}")
    config, tensors, meta = entry.read(path, family)
    meta = dict(meta)
    meta.setdefault("source", str(path))
    return config, tensors, meta


def convert(kind: str, src: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Convert ``src`` (format ``kind``) to the gencli ``.safetensors`` file ``out``."""
    return get_format(kind).convert(src, out, force=force)


def converter_targets() -> dict[str, str]:
    """``{KIND: "module:function"}`` of the formats ``gencli convert`` can write from."""
    return {f.name: f.converter for f in FORMATS.values() if f.converter}


def describe_table(width: int = 15) -> list[str]:
    """One line per format, ``name  description``, for ``gencli convert --help``."""
    return [f"{f.name:<{width}}{f.description}" + ("; read as is" if not f.converter else "")
            for f in FORMATS.values()]
