"""Training state (for ``--resume``): one safetensors file, written atomically.

:func:`save_training_state` stores an arbitrary nested structure (dicts with str/int/... keys,
lists, tuples, tensors, numpy arrays, python scalars, bytes) -- e.g. model and EMA state dicts,
``optimizer.state_dict()``, RNG states -- as flat safetensors entries with path-like names
(``optimizers/0/state/3/exp_avg``) plus a JSON *skeleton* in the metadata that records the exact
structure with explicit tags for everything JSON cannot express (int dict keys, tuples, numpy
arrays, non-finite floats, bytes).  No pickle anywhere, no ``torch.load``.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gencli.errors import InputError, UsageError
from gencli.fsutil import atomic_write
from gencli.safetensors_io import (
    FORMAT_VERSION,
    KIND_KEY,
    SKELETON_KEY,
    TRAINING_STATE_KIND,
    check_file,
    first_line,
    prepare_tensors,
    read_header,
    write_safetensors,
)

__all__ = ["save_training_state", "load_training_state"]

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
        KIND_KEY: TRAINING_STATE_KIND,
        SKELETON_KEY: json.dumps(skeleton, allow_nan=False, separators=(",", ":")),
    }
    prepared = prepare_tensors(encoder.tensors)
    return atomic_write(path, lambda tmp: write_safetensors(tmp, prepared, metadata))


def load_training_state(path: str | os.PathLike[str], *, device: Any = "cpu") -> dict[str, Any]:
    """Load a training state written by :func:`save_training_state` (exact same structure)."""
    path = Path(path).expanduser()
    check_file(path, "training state")
    header = read_header(path)
    raw_meta = header.get("__metadata__") or {}
    if raw_meta.get(KIND_KEY) != TRAINING_STATE_KIND or SKELETON_KEY not in raw_meta:
        raise InputError(
            f"{path} is not a gencli training state (a model checkpoint?); "
            "resume from the training-state file written by `gencli train`"
        )
    try:
        skeleton = json.loads(raw_meta[SKELETON_KEY])
    except ValueError as e:
        raise InputError(f"{path} is damaged: unreadable training-state skeleton") from e
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=str(device) if not isinstance(device, int) else device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path} is truncated or not a safetensors file ({first_line(e)})") from e
    state = _decode_skeleton(skeleton, tensors, path)
    if not isinstance(state, dict):
        raise InputError(f"{path} is damaged: training state is not a dict")
    return state
