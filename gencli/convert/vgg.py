"""Convert torchvision's ImageNet VGG16 ``.pth`` to gencli safetensors (the precision/recall features).

``gencli convert vgg16 vgg16-397923af.pth -o vgg16.safetensors``

The file is read with :func:`gencli.convert.torchfile.load_torch_file` only (no pickled code
runs); only what :class:`gencli.metrics.vgg.VGG16Features` needs (``features``, fc1, fc2) is kept,
as float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gencli.errors import UsageError
from gencli.metrics.vgg import FAMILY, check_vgg_state_dict

__all__ = ["FAMILY", "CONFIG", "read_vgg16", "convert_vgg16"]

CONFIG = {"network": "vgg16", "output": "fc2_relu"}
NOTES = "torchvision VGG16 (ImageNet) up to fc2; converted by gencli"


def read_vgg16(src: str | os.PathLike[str], family: str = FAMILY
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config, tensors, metadata) of torchvision's VGG16 ``.pth`` in gencli's layout (nothing written)."""
    from gencli.convert.torchfile import load_torch_file

    path = Path(src).expanduser()
    tensors = check_vgg_state_dict(load_torch_file(path), str(src))
    config = dict(CONFIG)
    return config, tensors, {"family": FAMILY, "config": config, "source": path.name, "notes": NOTES}


def convert_vgg16(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, force: bool = False) -> Path:
    """torchvision ``vgg16-397923af.pth`` -> gencli safetensors (features + fc1 + fc2 only)."""
    from gencli.checkpoints import save_checkpoint
    from gencli.hub.checksums import sha256_file

    dst = Path(dst).expanduser()
    if dst.suffix.lower() != ".safetensors":
        raise UsageError(f"-o {dst}: the output must be a .safetensors file")
    _, tensors, meta = read_vgg16(src)
    meta["source_sha256"] = sha256_file(Path(src).expanduser())
    return save_checkpoint(dst, tensors, meta, force=force)
