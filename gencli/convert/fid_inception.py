"""Convert the FID Inception ``.pth`` files to gencli safetensors.

``gencli convert fid-inception pt_inception-2015-12-05-6726825d.pth -o fid_inception.safetensors``

Accepted inputs: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` and torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` (the same torchvision-style state dict), or any
state dict of that network (a ``state_dict``/``model`` wrapper and a ``module.`` prefix are
accepted). The file is read with ``torch.load(weights_only=True)`` only: no pickled code runs.
Both official files have a sha256 starting with ``6726825d`` (the suffix of their names); the
converted file records the source's sha256 and whether it is that official file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gencli.errors import InputError, UsageError

__all__ = ["FAMILY", "OFFICIAL_SHA256_PREFIX", "read_torch_state_dict", "convert_fid_inception"]

FAMILY = "fid-inception"
OFFICIAL_SHA256_PREFIX = "6726825d"
OFFICIAL_NAMES = (
    "pt_inception-2015-12-05-6726825d.pth",
    "weights-inception-2015-12-05-6726825d.pth",
)


def read_torch_state_dict(src: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(src, weights_only=True)`` of a state dict, with one-line errors."""
    import pickle
    import zipfile

    import torch

    path = Path(src).expanduser()
    if not path.is_file():
        raise InputError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise InputError(f"{path} cannot be read safely with weights_only=True ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a PyTorch weights file ({first[:160]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return obj


def convert_fid_inception(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Convert a FID Inception ``.pth`` to ``dst`` (.safetensors, float32); returns ``dst``."""
    from gencli import hub
    from gencli.checkpoints import save_checkpoint
    from gencli.metrics.inception import check_state_dict

    src_path = Path(src).expanduser()
    dst_path = Path(dst).expanduser()
    if dst_path.suffix.lower() != ".safetensors":
        raise UsageError(f"-o {dst}: the output must be a .safetensors file")
    if dst_path.exists() and not force:
        raise UsageError(f"{dst_path} exists; pass --force to overwrite")
    state = read_torch_state_dict(src_path)
    tensors = check_state_dict(state, str(src_path))
    digest = hub.sha256_file(src_path)
    official = digest.startswith(OFFICIAL_SHA256_PREFIX)
    metadata = {
        "family": FAMILY,
        "config": {"network": "FIDInceptionV3", "num_classes": 1008, "feature_dims": [64, 192, 768, 2048]},
        "source": src_path.name,
        "source_sha256": digest,
        "official": official,
        "notes": "TensorFlow inception-2015-12-05 graph as ported by pytorch-fid; converted by gencli",
    }
    return save_checkpoint(dst_path, tensors, metadata, force=force)
