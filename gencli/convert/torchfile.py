"""The one reader of PyTorch pickle files (``.pth``, ``.pt``, ``.bin``) in gencli.

:func:`load_torch_file` is the only place where gencli calls ``torch.load``, always with
``weights_only=True`` and ``map_location="cpu"``: a file that would run code while unpickling
(a ``__reduce__`` naming ``os.system``, any class or function outside torch's allow-list) is
refused before anything runs. ``tests/test_formats.py`` fails if ``torch.load`` appears anywhere
else in gencli. Every failure is a one-line :class:`~gencli.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gencli.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["load_torch_file", "WRAPPER_KEYS"]

#: Keys under which training scripts nest the state dict (``{"state_dict": {...}, "epoch": 3}``).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)")
_DETAIL = re.compile(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def load_torch_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict in a PyTorch pickle file, read without running pickled code.

    A ``state_dict``/``model``/``model_state_dict`` wrapper is unwrapped, and a ``module.`` prefix
    on every key (a DataParallel save) is removed. Raises :class:`InputError` (one line) for a
    missing file, a folder, pickled code or other non-tensor content, a truncated or foreign file.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"no such file: {path}" if not path.exists() else f"{path} is a folder, not a PyTorch file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        m = _GLOBAL.search(text)
        if m:
            raise InputError(f"{path}: refusing to load: it is not a plain state dict of tensors (it would run "
                             f"{m.group(1)}, which torch.load(weights_only=True) forbids)") from None
        m = _DETAIL.search(text)
        detail = m.group(1).strip() if m else text[:120]
        raise InputError(f"{path} is truncated or not a PyTorch weights file ({detail})") from None
    except Exception as e:  # noqa: BLE001 - zip, EOF, storage errors: all mean an unreadable file
        raise InputError(f"{path} is truncated or not a PyTorch weights file ({_first_line(e)})") from None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        found = "an empty dict" if isinstance(obj, Mapping) else type(obj).__name__
        raise InputError(f"{path} does not hold a state dict (found {found})")
    tensors: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise InputError(f"{path} is not a state dict of tensors (entry {k!r} is {type(v).__name__})")
        tensors[k] = v
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors
