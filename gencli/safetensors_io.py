"""safetensors files as gencli writes and reads them: header checks without loading tensors,
metadata encoding (strings verbatim, JSON otherwise, ``gencli_json`` saying which), tensor
preparation and writing.  Shared by model checkpoints (:mod:`gencli.checkpoints`) and training
states (:mod:`gencli.training_state`).
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gencli.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily so `gencli --help` stays instant
    import torch

#: Value of the ``gencli_format`` metadata key written by this version.
FORMAT_VERSION = 1

_JSON_KEYS = "gencli_json"  # internal: which metadata keys hold JSON-encoded values
KIND_KEY = "gencli_kind"  # "training_state" for training-state files
SKELETON_KEY = "gencli_skeleton"  # JSON skeleton of a training state
TRAINING_STATE_KIND = "training_state"

# A safetensors header larger than this is not something we wrote (the format's own limit is 100MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def prepare_tensors(
    tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, floating ones cast to ``dtype``; shared storage cloned.

    safetensors refuses tensors that share memory (tied weights, views of one buffer), so every
    tensor whose storage was already seen is cloned.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        t = t.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        t = t.to("cpu").contiguous()
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key[0] != 0 and key[1] != 0:
            if key in seen:
                t = t.clone()
                storage = t.untyped_storage()
                key = (storage.data_ptr(), storage.nbytes())
            seen.add(key)
        out[name] = t
    return out


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors import torch as st

    st.save_file(tensors, str(path), metadata=metadata)


# --------------------------------------------------------------------------------------------
# Metadata encoding
# --------------------------------------------------------------------------------------------


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Strings verbatim, everything else JSON; ``gencli_json`` records which keys are JSON."""
    encoded: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be str, got {key!r}")
        if key in (_JSON_KEYS,):
            continue
        if isinstance(value, str):
            encoded[key] = value
        else:
            try:
                encoded[key] = json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise TypeError(f"metadata[{key!r}] is not JSON-serialisable: {e}") from e
            json_keys.append(key)
    encoded[_JSON_KEYS] = json.dumps(json_keys)
    return encoded


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; foreign files: JSON-decode what parses as JSON."""
    raw = dict(raw)
    json_keys_raw = raw.pop(_JSON_KEYS, None)
    json_keys: set[str] | None = None
    if json_keys_raw is not None:
        try:
            parsed = json.loads(json_keys_raw)
            json_keys = {k for k in parsed if isinstance(k, str)} if isinstance(parsed, list) else None
        except ValueError:
            json_keys = None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if json_keys is not None and key not in json_keys:
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except (ValueError, TypeError):
            out[key] = value
    if "gencli_format" in out and isinstance(out["gencli_format"], str):
        with contextlib.suppress(ValueError):
            out["gencli_format"] = int(out["gencli_format"])
    return out


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def check_file(path: Path, what: str = "checkpoint") -> None:
    if not path.exists():
        raise InputError(f"{path}: no such {what} file")
    if path.is_dir():
        raise InputError(
            f"{path} is a folder, not a .safetensors {what} "
            "(a diffusers folder or official weights? convert it with `gencli convert`)"
        )


def read_header(path: Path) -> dict[str, Any]:
    """Parse and validate the safetensors header of ``path`` without reading tensor data.

    Raises :class:`InputError` for a missing file, a file that is not safetensors, or a file
    shorter than its header promises (truncated download / interrupted copy).
    """
    check_file(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise InputError(f"{path} is truncated or not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", prefix)
            if n == 0 or n > _MAX_HEADER_BYTES:
                raise InputError(f"{path} is truncated or not a safetensors file (invalid header length {n})")
            if 8 + n > size:
                raise InputError(
                    f"{path} is truncated or not a safetensors file "
                    f"(header needs {8 + n} bytes, file has {size})"
                )
            header_bytes = f.read(n)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path} is truncated or not a safetensors file (unreadable header)") from e
    data_size = size - 8 - n
    needed = 0
    for name, info in header.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise InputError(f"{path} is truncated or not a safetensors file (bad __metadata__)")
            continue
        try:
            start, end = info["data_offsets"]
            needed = max(needed, int(end))
        except (TypeError, KeyError, ValueError) as e:
            raise InputError(f"{path} is truncated or not a safetensors file (bad entry {name!r})") from e
    if needed > data_size:
        raise InputError(
            f"{path} is truncated or not a safetensors file "
            f"(header says {needed} bytes of tensor data, file has {data_size})"
        )
    return header


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
