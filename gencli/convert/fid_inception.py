"""Convert the FID Inception ``.pth`` files to gencli safetensors.

``gencli convert fid-inception pt_inception-2015-12-05-6726825d.pth -o fid_inception.safetensors``

Accepted inputs: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` and torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` (the same torchvision-style state dict), or any
state dict of that network (a ``state_dict``/``model`` wrapper and a ``module.`` prefix are
accepted). The file is read with :func:`gencli.convert.torchfile.load_torch_file` only: no
pickled code runs.
Both official files have a sha256 starting with ``6726825d`` (the suffix of their names); the
converted file records the source's sha256 and whether it is that official file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gencli.errors import UsageError

__all__ = ["FAMILY", "CONFIG", "OFFICIAL_SHA256_PREFIX", "read_fid_inception", "convert_fid_inception"]

FAMILY = "fid-inception"
OFFICIAL_SHA256_PREFIX = "6726825d"
OFFICIAL_NAMES = (
    "pt_inception-2015-12-05-6726825d.pth",
    "weights-inception-2015-12-05-6726825d.pth",
)


#: The gencli config of the converted network.
CONFIG = {"network": "FIDInceptionV3", "num_classes": 1008, "feature_dims": [64, 192, 768, 2048]}
NOTES = "TensorFlow inception-2015-12-05 graph as ported by pytorch-fid; converted by gencli"


def read_fid_inception(src: str | os.PathLike[str], family: str = FAMILY
                       ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config, tensors, metadata) of a FID Inception ``.pth`` in gencli's layout (nothing written).

    The ``fid-inception`` entry of :mod:`gencli.formats`; the file is read by
    :func:`~gencli.convert.torchfile.load_torch_file` (no pickled code runs).
    """
    from gencli.convert.torchfile import load_torch_file
    from gencli.metrics.inception import check_state_dict

    path = Path(src).expanduser()
    tensors = check_state_dict(load_torch_file(path), str(path))
    config = dict(CONFIG)
    return config, tensors, {"family": FAMILY, "config": config, "source": path.name, "notes": NOTES}


def convert_fid_inception(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Convert a FID Inception ``.pth`` to ``dst`` (.safetensors, float32); returns ``dst``."""
    from gencli.checkpoints import save_checkpoint
    from gencli.hub.checksums import sha256_file

    src_path = Path(src).expanduser()
    dst_path = Path(dst).expanduser()
    if dst_path.suffix.lower() != ".safetensors":
        raise UsageError(f"-o {dst}: the output must be a .safetensors file")
    if dst_path.exists() and not force:
        raise UsageError(f"{dst_path} exists; pass --force to overwrite")
    _, tensors, metadata = read_fid_inception(src_path)
    digest = sha256_file(src_path)
    metadata.update(source_sha256=digest, official=digest.startswith(OFFICIAL_SHA256_PREFIX))
    return save_checkpoint(dst_path, tensors, metadata, force=force)
