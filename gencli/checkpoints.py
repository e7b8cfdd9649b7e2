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

Training state
--------------
:func:`save_training_state` stores an arbitrary nested structure (dicts with str/int/... keys,
lists, tuples, tensors, numpy arrays, python scalars, bytes) -- e.g. model and EMA state dicts,
``optimizer.state_dict()``, RNG states -- as flat safetensors entries with path-like names
(``optimizers/0/state/3/exp_avg``) plus a JSON *skeleton* in the metadata that records the exact
structure with explicit tags for everything JSON cannot express (int dict keys, tuples, numpy
arrays, non-finite floats, bytes).  No pickle anywhere, no ``torch.load``.

All writes are atomic: a temporary file in the destination folder, ``fsync``, ``os.replace``,
``fsync`` of the folder.  A crash or a full disk never leaves a broken or half-written file in
place of a good one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gencli.errors import InputError, UsageError
from gencli.fsutil import atomic_write

if TYPE_CHECKING:  # torch is imported lazily so `gencli --help` stays instant
    import torch

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "require_family",
    "save_training_state",
    "load_training_state",
    "atomic_write",
]

#: Value of the ``gencli_format`` metadata key written by this version.
FORMAT_VERSION = 1

_JSON_KEYS = "gencli_json"  # internal: which metadata keys hold JSON-encoded values
_KIND_KEY = "gencli_kind"  # "training_state" for training-state files
_SKELETON_KEY = "gencli_skeleton"  # JSON skeleton of a training state
_TRAINING_STATE_KIND = "training_state"

# A safetensors header larger than this is not something we wrote (the format's own limit is 100MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024


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
# Tensors
# --------------------------------------------------------------------------------------------


def _prepare_tensors(
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


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors import torch as st

    st.save_file(tensors, str(path), metadata=metadata)


# --------------------------------------------------------------------------------------------
# Metadata encoding
# --------------------------------------------------------------------------------------------


def _encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
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


def _decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`_encode_metadata`; foreign files: JSON-decode what parses as JSON."""
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


def _check_file(path: Path, what: str = "checkpoint") -> None:
    if not path.exists():
        raise InputError(f"{path}: no such {what} file")
    if path.is_dir():
        raise InputError(
            f"{path} is a folder, not a .safetensors {what} "
            "(a diffusers folder or official weights? convert it with `gencli convert`)"
        )


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and validate the safetensors header of ``path`` without reading tensor data.

    Raises :class:`InputError` for a missing file, a file that is not safetensors, or a file
    shorter than its header promises (truncated download / interrupted copy).
    """
    _check_file(path)
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


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded metadata of a checkpoint, reading only its header (no tensors are loaded).

    Returns ``{}`` for a safetensors file without metadata.  Raises :class:`InputError` for a
    missing, truncated or non-safetensors file.
    """
    path = Path(path).expanduser()
    header = _read_header(path)
    return _decode_metadata(header.get("__metadata__") or {})


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
    header = _read_header(path)
    metadata = _decode_metadata(header.get("__metadata__") or {})
    if metadata.get(_KIND_KEY) == _TRAINING_STATE_KIND:
        raise InputError(
            f"{path} is a training state (for --resume), not a model checkpoint; "
            "pass the model checkpoint written next to it"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=str(device) if not isinstance(device, int) else device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path} is truncated or not a safetensors file ({_first_line(e)})") from e
    except RuntimeError as e:  # e.g. an unavailable device
        raise InputError(f"cannot load {path} on device {device!r}: {_first_line(e)}") from e
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
    encoded = _encode_metadata(meta)
    prepared = _prepare_tensors(tensors, dtype)
    return atomic_write(path, lambda tmp: _write_safetensors(tmp, prepared, encoded))


# --------------------------------------------------------------------------------------------
# Training state: nested structure <-> (flat tensors, JSON skeleton)
# --------------------------------------------------------------------------------------------

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__", "__bytes__", "__np__")


def _key_part(key: Any) -> str:
    text = str(key)
    return text.replace("%", "%25").replace("/", "%2F") or "%00"


class _Encoder:
    """Turns a nested state into a JSON-able skeleton and a flat dict of tensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}

    def _tensor_name(self, path: list[str]) -> str:
        base = "/".join(path) or "root"
        name, i = base, 1
        while name in self.tensors:
            name, i = f"{base}#{i}", i + 1
        return name

    def encode(self, obj: Any, path: list[str]) -> Any:
        import numpy as np
        import torch

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):  # before int/float: np.float64 subclasses float
            return {"__np__": obj.dtype.str, "value": self.encode(obj.item(), path)}
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            if math.isfinite(obj):
                return obj
            return {"__float__": repr(obj)}  # 'nan', 'inf', '-inf'
        if isinstance(obj, torch.Tensor):
            name = self._tensor_name(path)
            self.tensors[name] = obj
            return {"__tensor__": name}
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError(f"{'/'.join(path)}: numpy object arrays cannot be stored")
            name = self._tensor_name(path)
            raw = np.ascontiguousarray(obj)
            self.tensors[name] = torch.from_numpy(raw.reshape(-1).view(np.uint8).copy())
            return {"__ndarray__": name, "dtype": raw.dtype.str, "shape": list(raw.shape)}
        if isinstance(obj, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, [*path, str(i)]) for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, [*path, str(i)]) for i, v in enumerate(obj)]
        if isinstance(obj, Mapping):
            plain = all(isinstance(k, str) and k not in _TAGS for k in obj)
            if plain:
                return {k: self.encode(v, [*path, _key_part(k)]) for k, v in obj.items()}
            items = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (str, int, float, bool, tuple))):
                    raise TypeError(f"{'/'.join(path)}: unsupported dict key type {type(k).__name__}")
                items.append([self.encode(k, path), self.encode(v, [*path, _key_part(k)])])
            return {"__dict__": items}
        raise TypeError(
            f"{'/'.join(path) or 'state'}: cannot store a {type(obj).__name__} in a training state "
            "(use tensors, numpy arrays, dicts, lists, tuples, str, int, float, bool, None or bytes)"
        )


def _decode_skeleton(obj: Any, tensors: Mapping[str, Any], path: Path) -> Any:
    if isinstance(obj, list):
        return [_decode_skeleton(v, tensors, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return _lookup(tensors, obj["__tensor__"], path)
    if "__ndarray__" in obj:
        import numpy as np

        flat = _lookup(tensors, obj["__ndarray__"], path).numpy()
        return flat.view(np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    if "__np__" in obj:
        import numpy as np

        return np.dtype(obj["__np__"]).type(_decode_skeleton(obj["value"], tensors, path))
    if "__tuple__" in obj:
        return tuple(_decode_skeleton(v, tensors, path) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {
            _decode_skeleton(k, tensors, path): _decode_skeleton(v, tensors, path) for k, v in obj["__dict__"]
        }
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    return {k: _decode_skeleton(v, tensors, path) for k, v in obj.items()}


def _lookup(tensors: Mapping[str, Any], name: str, path: Path) -> Any:
    try:
        return tensors[name]
    except KeyError:
        raise InputError(f"{path} is damaged: training state refers to a missing tensor {name!r}") from None


def save_training_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a resumable training state (always overwrites ``path``, atomically).

    ``state`` is a nested structure of dicts (any str/int/float/bool/None/tuple keys), lists,
    tuples, tensors, numpy arrays/scalars, bytes and python scalars, e.g.::

        {"step": 1200, "model": model.state_dict(), "ema": ema.state_dict(),
         "optimizers": [opt.state_dict()],
         "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all(),
                 "python": random.getstate(), "numpy": np.random.get_state()},
         "config": {...}}

    :func:`load_training_state` returns the same structure (int keys stay ints, tuples stay
    tuples, tensors keep dtype and shape and come back on the CPU).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {path / 'state.safetensors'}")
    if not isinstance(state, Mapping):
        raise TypeError(f"training state must be a dict, got {type(state).__name__}")
    encoder = _Encoder()
    skeleton = encoder.encode(state, [])
    metadata = {
        "gencli_format": str(FORMAT_VERSION),
        _KIND_KEY: _TRAINING_STATE_KIND,
        _SKELETON_KEY: json.dumps(skeleton, allow_nan=False, separators=(",", ":")),
    }
    prepared = _prepare_tensors(encoder.tensors)
    return atomic_write(path, lambda tmp: _write_safetensors(tmp, prepared, metadata))


def load_training_state(path: str | os.PathLike[str], *, device: Any = "cpu") -> dict[str, Any]:
    """Load a training state written by :func:`save_training_state` (exact same structure)."""
    path = Path(path).expanduser()
    _check_file(path, "training state")
    header = _read_header(path)
    raw_meta = header.get("__metadata__") or {}
    if raw_meta.get(_KIND_KEY) != _TRAINING_STATE_KIND or _SKELETON_KEY not in raw_meta:
        raise InputError(
            f"{path} is not a gencli training state (a model checkpoint?); "
            "resume from the training-state file written by `gencli train`"
        )
    try:
        skeleton = json.loads(raw_meta[_SKELETON_KEY])
    except ValueError as e:
        raise InputError(f"{path} is damaged: unreadable training-state skeleton") from e
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=str(device) if not isinstance(device, int) else device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path} is truncated or not a safetensors file ({_first_line(e)})") from e
    state = _decode_skeleton(skeleton, tensors, path)
    if not isinstance(state, dict):
        raise InputError(f"{path} is damaged: training state is not a dict")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
