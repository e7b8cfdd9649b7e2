"""gencli checkpoints: one ``.safetensors`` file with JSON metadata, written atomically.

Model checkpoints
-----------------
A checkpoint is a flat ``{name: tensor}`` dict plus string metadata in the safetensors header
(``__metadata__``).  gencli writes these keys (see DESIGN.md, "Checkpoints")::

    gencli_format  "1"
    family         "ddpm"
    config         '{"channels": 64, ...}'       (JSON)
    dataset        "fashion-mnist"
    image_size     "28"                          (JSON)
    channels       "1"                           (JSON)
    step           "12000"                       (JSON)
    notes          "free text"

plus any extra keys the caller passes.  Strings are stored verbatim, every other value is
JSON-encoded, and the (internal) key ``gencli_json`` lists which keys were JSON-encoded, so that
loading gives back exactly what was saved (the string ``"28"`` stays a string, the int ``28`` an
int).  Files written by other tools have no ``gencli_json``; their values are JSON-decoded where
they parse as JSON and kept as strings otherwise.
All writes are atomic: a temporary file in the destination folder, ``fsync``, ``os.replace``,
``fsync`` of the folder.  A crash or a full disk never leaves a broken or half-written file in
place of a good one.

Training states (for ``--resume``) are in :mod:`gencli.training_state`; the safetensors
header, metadata and tensor handling both share is in :mod:`gencli.safetensors_io`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gencli.errors import InputError, UsageError
from gencli.fsutil import atomic_write
from gencli.safetensors_io import (
    FORMAT_VERSION,
    KIND_KEY,
    TRAINING_STATE_KIND,
    decode_metadata,
    encode_metadata,
    first_line,
    prepare_tensors,
    read_header,
    write_safetensors,
)

if TYPE_CHECKING:  # torch is imported lazily so `gencli --help` stays instant
    import torch

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "require_family",
    "atomic_write",
]


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


# Atomic writes have one implementation for the whole package (gencli.fsutil); `atomic_write`
# is re-exported here for callers.


def _check_overwrite(path: Path, force: bool) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {path / 'model.safetensors'}")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded metadata of a checkpoint, reading only its header (no tensors are loaded).

    Returns ``{}`` for a safetensors file without metadata.  Raises :class:`InputError` for a
    missing, truncated or non-safetensors file.
    """
    path = Path(path).expanduser()
    header = read_header(path)
    return decode_metadata(header.get("__metadata__") or {})


@dataclass
class Checkpoint:
    """Tensors and decoded metadata of a loaded checkpoint."""

    tensors: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def family(self) -> str | None:
        """The model family that wrote this checkpoint, or None for a foreign file."""
        family = self.metadata.get("family")
        return family if isinstance(family, str) else None

    @property
    def config(self) -> dict[str, Any]:
        """The family's config (``{}`` when absent)."""
        config = self.metadata.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def is_gencli(self) -> bool:
        """True when the file was written by gencli (it has ``gencli_format``)."""
        return "gencli_format" in self.metadata


def load_checkpoint(path: str | os.PathLike[str], *, device: Any = "cpu") -> Checkpoint:
    """Load a ``.safetensors`` checkpoint and its decoded metadata.

    Raises :class:`InputError` with a one-line message for a missing file, a folder, a file that
    is not safetensors, or a truncated file.  A safetensors file without gencli metadata loads
    with ``metadata == {}``; use :func:`require_family` to insist on a family.
    """
    path = Path(path).expanduser()
    header = read_header(path)
    metadata = decode_metadata(header.get("__metadata__") or {})
    if metadata.get(KIND_KEY) == TRAINING_STATE_KIND:
        raise InputError(
            f"{path} is a training state (for --resume), not a model checkpoint; "
            "pass the model checkpoint written next to it"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=str(device) if not isinstance(device, int) else device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path} is truncated or not a safetensors file ({first_line(e)})") from e
    except RuntimeError as e:  # e.g. an unavailable device
        raise InputError(f"cannot load {path} on device {device!r}: {first_line(e)}") from e
    return Checkpoint(tensors=tensors, metadata=metadata, path=path)


def require_family(ckpt: Checkpoint, family: str | Iterable[str]) -> Checkpoint:
    """Raise :class:`InputError` unless ``ckpt`` was written by ``family`` (or one of several).

    Returns ``ckpt`` so it can be chained: ``ckpt = require_family(load_checkpoint(p), "ddpm")``.
    """
    wanted = [family] if isinstance(family, str) else list(family)
    got = ckpt.family
    if got in wanted:
        return ckpt
    name = ckpt.path if ckpt.path is not None else "checkpoint"
    want = " or ".join(wanted)
    if got is None:
        raise InputError(
            f"{name} has no gencli metadata (not a gencli {want} checkpoint); "
            "convert foreign weights with `gencli convert` or pass a gencli .safetensors file"
        )
    raise InputError(f"{name} is a {got} checkpoint, not {want}; use it with `{got}` or pass a {want} checkpoint")


# --------------------------------------------------------------------------------------------
# Writing model checkpoints
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``tensors`` and ``metadata`` to ``path`` as one safetensors file, atomically.

    Args:
        path: destination file (parent folders are created).
        tensors: ``{name: tensor}``; tensors are detached, moved to the CPU and made contiguous;
            tensors sharing storage are cloned (safetensors refuses shared memory).
        metadata: ``family``, ``config``, ``dataset``, ``image_size``, ``channels``, ``step``,
            ``notes`` and any extra keys; non-string values are JSON-encoded.  ``gencli_format``
            is added.
        force: overwrite an existing file (otherwise :class:`UsageError`).
        dtype: cast floating-point tensors to this dtype (e.g. ``torch.float16`` for compact
            storage); integer and bool tensors are kept.

    Returns the path written.
    """
    path = Path(path).expanduser()
    _check_overwrite(path, force)
    meta = {"gencli_format": str(FORMAT_VERSION), **dict(metadata or {})}
    encoded = encode_metadata(meta)
    prepared = prepare_tensors(tensors, dtype)
    return atomic_write(path, lambda tmp: write_safetensors(tmp, prepared, encoded))
