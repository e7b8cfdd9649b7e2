"""Feature extractors behind ``--features``: what turns images into vectors for the metrics.

=============  ===============================================  ============================
name           network                                          features / logits
=============  ===============================================  ============================
``inception``  FID InceptionV3 (TF 2015-12-05, pytorch-fid)     pool3 2048-d (or 64/192/768)
                                                                / 1008 logits without bias
``fmnist``     gencli's bundled Fashion-MNIST CNN (offline)     128-d penultimate / 10 logits
``vgg16``      torchvision VGG16 (ImageNet), torch-fidelity's   fc2 after ReLU 4096-d / none
               precision/recall features
=============  ===============================================  ============================

Every extractor takes float NCHW images in [-1, 1] and returns ``{"features": (N, d) float32}``
plus ``"logits"`` when asked and available. ``identity`` is a string that changes whenever the
numbers could change (network weights, preprocessing, dims); it keys the statistics cache.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gencli.errors import UsageError

__all__ = ["EXTRACTORS", "FeatureExtractor", "build_extractor", "default_features_for_metric"]

EXTRACTORS = ("inception", "fmnist", "vgg16")


@dataclass
class FeatureExtractor:
    name: str
    dims: int
    model: Any
    device: torch.device
    identity: str
    has_logits: bool
    default_batch_size: int
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, images: torch.Tensor, logits: bool = False) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _file_digest(path: Path) -> str:
    from gencli.hub.checksums import sha256_file

    return sha256_file(path)[:16]


class InceptionExtractor(FeatureExtractor):
    def __call__(self, images: torch.Tensor, logits: bool = False) -> dict[str, torch.Tensor]:
        from gencli.metrics.preprocess import inception_input

        x = inception_input(images.to(self.device), self.info["resize"])  # channels_last
        tap = str(self.dims)
        outputs = [tap] + (["logits_unbiased"] if logits else [])
        out = self.model(x, outputs)
        res = {"features": out[tap]}
        if logits:
            res["logits"] = out["logits_unbiased"]
        return res


class FMNISTExtractor(FeatureExtractor):
    def __call__(self, images: torch.Tensor, logits: bool = False) -> dict[str, torch.Tensor]:
        from gencli.io.images import resize, to_channels

        x = images.to(self.device).float()
        if x.shape[1] != 1:
            x = to_channels(x, 1)
        if tuple(x.shape[2:]) != (28, 28):
            if not self.info.get("warned"):
                warnings.warn(
                    f"--features fmnist is meant for 28x28 grey images; resizing {x.shape[3]}x{x.shape[2]} "
                    "images to 28x28", UserWarning, stacklevel=2)
                self.info["warned"] = True
            x = resize(x, 28)
        f, z = self.model.features_and_logits(x)
        res = {"features": f.float()}
        if logits:
            res["logits"] = z.float()
        return res


class VGGExtractor(FeatureExtractor):
    def __call__(self, images: torch.Tensor, logits: bool = False) -> dict[str, torch.Tensor]:
        from gencli.metrics.vgg import vgg_input

        x = vgg_input(images.to(self.device)).contiguous(memory_format=torch.channels_last)
        return {"features": self.model(x)}


def _batch(device: torch.device, accelerator: int, cpu: int) -> int:
    """Default images per batch. On the CPU moderate batches are quicker per image than large
    ones (Inception on 2 cores, before the fast path: 85-90 ms/image at 8 against 100-112 at 50):
    activations stay in cache and under the allocator's reuse threshold (see gencli.runtime)
    instead of faulting in hundreds of MB of fresh pages per batch. Against 8, the Inception's 16
    reads each (Winograd-transformed) weight once per 16 images instead of 8: `evaluate fid` on
    200 + 200 images 11.5-11.7 s against 11.8-12.1 s (2-core Xeon, the fast path, 2026-12-03)."""
    return cpu if device.type == "cpu" else accelerator


def build_extractor(name: str, *, weights: str | None = None, device: Any = "cpu", dims: int | None = None,
                    resize: str = "pytorch-fid", allow_download: bool = True) -> FeatureExtractor:
    """Build the extractor ``name`` (one of :data:`EXTRACTORS`) on ``device``."""
    device = torch.device(device)
    if name == "inception":
        from gencli.metrics.inception import FEATURE_DIMS, load_inception
        from gencli.metrics.preprocess import check_mode
        from gencli.metrics.weights import resolve_network_weights

        check_mode(resize)
        dims = 2048 if dims is None else dims
        if dims not in FEATURE_DIMS:
            raise UsageError(f"--dims must be one of {', '.join(map(str, FEATURE_DIMS))} for inception, got {dims}")
        path = resolve_network_weights("fid-inception", weights, allow_download=allow_download)
        model = load_inception(path, device=device)
        identity = f"inception-{_file_digest(path)}-{resize}-{dims}"
        return InceptionExtractor("inception", dims, model, device, identity, True, _batch(device, 50, 16),
                                  {"resize": resize, "weights": str(path)})
    if name == "fmnist":
        from gencli.metrics.fmnist_classifier import WEIGHTS_FILE, load_classifier
        from gencli.paths import bundled_weights_dir

        if dims not in (None, 128):
            raise UsageError("--dims does not apply to --features fmnist (its features are 128-d)")
        path = Path(weights).expanduser() if weights else bundled_weights_dir() / WEIGHTS_FILE
        model = load_classifier(path if weights else None, device=device)
        identity = f"fmnist-{_file_digest(path)}"
        return FMNISTExtractor("fmnist", model.feature_dim, model, device, identity, True, 1000,
                               {"weights": str(path)})
    if name == "vgg16":
        from gencli.metrics.vgg import load_vgg16
        from gencli.metrics.weights import resolve_network_weights

        if dims not in (None, 4096):
            raise UsageError("--dims does not apply to --features vgg16 (fc2 features are 4096-d)")
        path = resolve_network_weights("vgg16", weights, allow_download=allow_download)
        model = load_vgg16(path, device=device)
        identity = f"vgg16-{_file_digest(path)}-fc2relu"
        return VGGExtractor("vgg16", 4096, model, device, identity, False, 32, {"weights": str(path)})
    raise UsageError(f"unknown --features {name!r}; use one of {', '.join(EXTRACTORS)}")


def default_features_for_metric(metric: str) -> str:
    """torch-fidelity's defaults: Inception for FID/KID/IS, VGG16 for precision/recall."""
    return "vgg16" if metric == "pr" else "inception"


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
