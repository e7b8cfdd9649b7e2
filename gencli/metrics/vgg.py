"""VGG16 fc2 features for improved precision/recall, as torch-fidelity computes them.

torch-fidelity's ``vgg16`` extractor: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``),
input resized to 224x224 with the TensorFlow-1 bilinear resize from 8-bit values, normalised
with the ImageNet mean/std scaled to 0..255, then ``features`` -> ``avgpool`` (7x7) -> flatten
-> ``classifier[0]`` (fc1) -> ReLU -> ``classifier[3]`` (fc2) -> ReLU: 4096-d ("fc2_relu").
Dropout layers are inactive at inference. Names follow torchvision (``features.0.weight``,
``classifier.3.bias`` ...); :func:`gencli.convert.vgg.convert_vgg16` (``gencli convert vgg16``)
turns torchvision's ``.pth`` into safetensors, keeping only what the features need.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gencli.errors import InputError

__all__ = ["VGG16Features", "vgg_input", "load_vgg16", "check_vgg_state_dict", "FAMILY"]

FAMILY = "vgg16-features"
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


class VGG16Features(nn.Module):
    """torchvision's VGG16 up to fc2 + ReLU, with its parameter names."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(4096, 4096),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (7, 7)).flatten(1)
        return F.relu(self.classifier(x)).float()


def vgg_input(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW (1 or 3 channels) -> VGG16 input (torch-fidelity's preprocessing)."""
    from gencli.metrics.preprocess import rgb, tf_resize_bilinear, to_uint8_levels

    x = tf_resize_bilinear(to_uint8_levels(rgb(images)), INPUT_SIZE)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def _expected() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = VGG16Features()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_vgg_state_dict(tensors: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    want = _expected()
    tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in tensors.items()}
    missing = [k for k in want if k not in tensors]
    if missing:
        raise InputError(f"{source} is not a torchvision VGG16 ({len(missing)} of {len(want)} tensors "
                         f"missing, e.g. {missing[0]})")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise InputError(f"{source} is not a torchvision VGG16: {k} has shape "
                             f"{tuple(tensors[k].shape)}, expected {shape}")
    return {k: tensors[k].float() for k in want}


def load_vgg16(path: str | Path, *, device: Any = "cpu") -> VGG16Features:
    from gencli.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt.family not in (None, FAMILY):
        raise InputError(f"{path} is a {ckpt.family} checkpoint, not VGG16 features")
    tensors = check_vgg_state_dict(ckpt.tensors, str(path))
    model = VGG16Features()
    model.load_state_dict(tensors)
    return model.eval().requires_grad_(False).to(device=device, memory_format=torch.channels_last)
