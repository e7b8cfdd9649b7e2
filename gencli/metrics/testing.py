"""Random-weight metric networks for tests and benchmarks.

The real FID Inception / VGG16 weights cannot be downloaded everywhere, so comparisons with the
reference tools build a random network, save it in the reference's own ``.pth`` layout (a
torchvision-style state dict), and let both sides load that file. The random weights are scaled
so that activations stay O(1) through the whole network (He-initialised convolutions, BatchNorm
statistics near the identity), which keeps the features well away from all-zero or overflow.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = ["random_inception_state", "save_pth", "random_vgg16_state"]


def random_inception_state(seed: int = 0, *, num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """A random FID-Inception state dict in torchvision/pytorch-fid naming."""
    from gencli.metrics.inception import FIDInceptionV3

    g = torch.Generator().manual_seed(seed)
    model = FIDInceptionV3()
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            if num_batches_tracked:
                state[name] = torch.tensor(0, dtype=torch.long)
            continue
        shape = t.shape
        if name.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            v = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif name.endswith("bn.weight"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bn.bias"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("running_mean"):
            v = 0.05 * torch.randn(shape, generator=g)
        elif name.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif name == "fc.weight":
            v = torch.randn(shape, generator=g) * math.sqrt(1.0 / shape[1])
        elif name == "fc.bias":
            v = 0.1 * torch.randn(shape, generator=g)
        else:  # pragma: no cover
            raise KeyError(name)
        state[name] = v.float()
    return state


def random_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random torchvision VGG16 state dict (with classifier.6, as torchvision's file has)."""
    from gencli.metrics.vgg import VGG16Features

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in VGG16Features().state_dict().items():
        shape = t.shape
        if name.endswith("weight"):
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        else:
            state[name] = 0.01 * torch.randn(shape, generator=g)
    state["classifier.6.weight"] = torch.randn(1000, 4096, generator=g) * 0.01
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def save_pth(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def import_anchors() -> tuple[object, object]:
    """Import the reference tools (pytorch-fid, torch-fidelity) for comparisons; ImportError if absent.

    They may live outside the main environment: ``$GENCLI_ANCHORS`` (default ``.anchors/`` at the
    repository root, filled by ``make anchors``) is put on ``sys.path`` when it exists. Both tools
    import torchvision only for its model classes; when torchvision's compiled ops do not match
    the installed torch (PyPI's torchvision is a CUDA build; with a CPU-only torch its ``_C``
    library cannot load), torchvision >= 0.2x still fails at import, registering a fake kernel for
    ``torchvision::nms`` that was never defined. In that case the two operator *schemas* are
    defined here (no kernels: detection ops stay unusable, and neither tool uses them) and the
    import is retried. Returns ``(pytorch_fid, torch_fidelity)``.
    """
    import importlib
    import sys

    root = Path(__file__).resolve().parents[2]
    anchors = Path(os.environ.get("GENCLI_ANCHORS") or root / ".anchors")
    if anchors.is_dir() and str(anchors) not in sys.path:
        sys.path.insert(0, str(anchors))
    try:
        importlib.import_module("torchvision")
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise ImportError(f"torchvision does not import: {e}") from None
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if not hasattr(import_anchors, "_lib"):
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
            import_anchors._lib = lib  # type: ignore[attr-defined]  # keep the definitions alive
        importlib.import_module("torchvision")
    pytorch_fid = importlib.import_module("pytorch_fid.fid_score")
    importlib.import_module("pytorch_fid.inception")
    torch_fidelity = importlib.import_module("torch_fidelity")
    return pytorch_fid, torch_fidelity
