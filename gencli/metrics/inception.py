"""The FID InceptionV3: TensorFlow's 2015-12-05 Inception graph as ported to PyTorch by pytorch-fid.

The network is torchvision's InceptionV3 layout (1008 classes, no auxiliary logits) with the four
changes that make it reproduce the TensorFlow graph the FID paper used:

* Mixed_5b/5c/5d (A), Mixed_6b..6e (C) and Mixed_7b (E_1): the pooling branch averages with
  ``count_include_pad=False`` (TensorFlow ignores padded zeros);
* Mixed_7c (E_2): the pooling branch is a 3x3 *max* pool;
* BatchNorm eps is 0.001.

Feature taps (pytorch-fid's ``dims``): 64 (after the first max-pool, spatially averaged), 192
(after the second), 768 (after Mixed_6e), 2048 (the final average pool, "pool3": the standard FID
features). ``logits_unbiased`` is ``pool3 @ fc.weight.T`` (used by the Inception Score),
``logits`` adds the fc bias. Parameter names follow torchvision (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ``fc.weight`` ...), which is the layout of pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` and torch-fidelity's ``weights-inception-2015-12-05-
6726825d.pth``; :mod:`gencli.convert.fid_inception` converts those files to safetensors.

For inference :meth:`FIDInceptionV3.fused` folds each BatchNorm into the convolution before it
(``w * g / sqrt(v + eps)``, ``b - m * g / sqrt(v + eps)``), which is exact up to float rounding
and saves a full pass over every activation; the model then runs in channels-last layout, and on
the CPU in fp32 (:func:`gencli.kernels.fast_path.conv_fp32`): the stride-1 3x3 convolutions (36%
of its multiply-adds) as Winograd F(4x4, 3x3) (:mod:`gencli.kernels.winograd`), the 1x7/7x1 and
1x3/3x1 ones (30%) as a one-axis Winograd F(6, 7) / F(4, 3) (:mod:`gencli.kernels.winograd1d`), the
5x5 ones (10%) as F(4x4, 5x5) (:mod:`gencli.kernels.winograd2d`), all with the ReLU in their C
output transform, the rest through oneDNN with packed weights and
the ReLU fused; the pooling branches average the 1x1 convolution's output instead of its input
(the two commute), and the max pools are a C kernel. Each Winograd layer's output stays within
~1.5e-5 of a float64 convolution relative to its scale (direct fp32: ~1e-6); on random weights the
FID moved by 5e-7 relative with F(4x4, 3x3), 5e-6 with the 1-D kernels and 1e-6 with F(4x4, 5x5)
(see bench/README.md). Where gencli's C kernels are not built, the convolutions stay direct.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gencli.errors import InputError
from gencli.kernels import native
from gencli.kernels.fast_path import FastState, conv_fp32, winograd_fp32

__all__ = [
    "FEATURE_DIMS",
    "OUTPUTS",
    "FIDInceptionV3",
    "check_state_dict",
    "load_inception",
]

#: Feature dims -> name of the tap, as pytorch-fid's ``--dims``.
FEATURE_DIMS = {64: "64", 192: "192", 768: "768", 2048: "2048"}
OUTPUTS = ("64", "192", "768", "2048", "logits_unbiased", "logits")
_ORDER = {name: i for i, name in enumerate(OUTPUTS)}
BN_EPS = 0.001


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=0.001) -> ReLU; after :meth:`fuse` the conv has a bias,
    and with a ``fast`` state (set by :meth:`FIDInceptionV3.fuse_`) it runs on CPU fp32 inputs (no
    grad) through :func:`gencli.kernels.fast_path.conv_fp32`: Winograd for the stride-1 3x3 and
    the 1 x r / r x 1 convolutions, oneDNN with a packed weight and the ReLU fused for the rest."""

    def __init__(self, cin: int, cout: int, **kwargs: Any):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.fast: FastState | None = None

    @property
    def winograd(self) -> bool:
        """Whether the fast path runs this layer through a Winograd kernel (where the C transforms are built)."""
        return (self.fast is not None and self.fast.winograd is not False
                and winograd_fp32(self.conv))

    def _fast_on(self, x: torch.Tensor) -> FastState | None:
        fast = self.fast
        ok = fast is not None and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
        return fast if ok else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = self._fast_on(x)
        if fast is not None:
            return conv_fp32(fast, self.conv, x, relu=True)
        return F.relu(self.bn(self.conv(x)), inplace=True)

    def after_avg_pool(self, x: torch.Tensor) -> torch.Tensor:
        """``self(_avg_pool_tf(x))``. On the fast path computed as ReLU of the average pool of the
        convolution: the (1x1) convolution with its bias and the pool (whose weights sum to 1, the
        padding excluded) are both linear and commute, and the pool then runs over this branch's
        32-192 channels instead of the block input's 192-1280."""
        fast = self._fast_on(x)
        if fast is not None and self.conv.kernel_size == (1, 1):
            return F.relu(_avg_pool_tf(conv_fp32(fast, self.conv, x)), inplace=True)
        return self(_avg_pool_tf(x))

    @torch.no_grad()
    def fuse(self) -> None:
        bn = self.bn
        if not isinstance(bn, nn.BatchNorm2d):
            return
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        conv = self.conv
        with torch.device("meta"):  # the parameters are assigned below (skip_init's to_empty is slow)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, bias=True)
        fused.weight = nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).float(),
                                    requires_grad=conv.weight.requires_grad)
        fused.bias = nn.Parameter((bn.bias.double() - bn.running_mean.double() * scale).float(),
                                  requires_grad=conv.weight.requires_grad)
        self.conv = fused
        self.bn = nn.Identity()


def _max_pool3x3(x: torch.Tensor, stride: int, padding: int = 0) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride, padding)``; on NHWC fp32 CPU activations gencli's C kernel
    (the same values: a maximum is exact), 2.3-4.3x quicker than torch's, which also writes indices."""
    if (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and x.is_contiguous(memory_format=torch.channels_last) and native.available()):
        return native.max_pool3x3_nhwc(x, stride, padding)
    return F.max_pool2d(x, kernel_size=3, stride=stride, padding=padding)


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool.after_avg_pool(x)
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = _max_pool3x3(x, 2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool.after_avg_pool(x)
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = _max_pool3x3(x, 2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """E block; ``max_pool=True`` is FIDInceptionE_2 (Mixed_7c), else E_1 (Mixed_7b)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            bp = self.branch_pool(_max_pool3x3(x, 1, 1))
        else:
            bp = self.branch_pool.after_avg_pool(x)
        return torch.cat([b1, b3, bd, bp], 1)


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


class FIDInceptionV3(nn.Module):
    """The FID InceptionV3. ``forward(x, outputs)`` takes *preprocessed* 299x299 input in
    [-1, 1] (see :mod:`gencli.metrics.preprocess`) and returns ``{name: (N, dim) float32}``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.is_fused = False

    def forward(self, x: torch.Tensor, outputs: Iterable[str] = ("2048",)) -> dict[str, torch.Tensor]:
        wanted = set(outputs)
        unknown = wanted - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown Inception outputs {sorted(unknown)}; known: {OUTPUTS}")
        last = max(_ORDER[w] for w in wanted)
        out: dict[str, torch.Tensor] = {}
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool3x3(x, 2)
        if "64" in wanted:
            out["64"] = _spatial_mean(x).float()
        if last < 1:
            return out
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = _max_pool3x3(x, 2)
        if "192" in wanted:
            out["192"] = _spatial_mean(x).float()
        if last < 2:
            return out
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        if "768" in wanted:
            out["768"] = _spatial_mean(x).float()
        if last < 3:
            return out
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        pool3 = _spatial_mean(x).float()
        if "2048" in wanted:
            out["2048"] = pool3
        if last >= 4:
            unbiased = pool3 @ self.fc.weight.float().T
            out["logits_unbiased"] = unbiased
            if "logits" in wanted:
                out["logits"] = unbiased + self.fc.bias.float()
        for key in list(out):
            if key not in wanted:
                del out[key]
        return out

    def fused(self, winograd: bool = True) -> FIDInceptionV3:
        """A copy for inference: BatchNorm folded into the convolutions, channels-last, eval."""
        return copy.deepcopy(self).fuse_(winograd)

    def fuse_(self, winograd: bool = True) -> FIDInceptionV3:
        """In place: fold BatchNorm into the convolutions, channels-last, eval, no grad; with
        ``winograd``, stride-1 3x3 convolutions run as Winograd on the CPU in fp32 (see above)."""
        self.eval()
        state = FastState(channels_last=True, winograd=winograd)  # one for all layers: shared scratch memory
        for module in self.modules():
            if isinstance(module, BasicConv2d):
                module.fuse()
                module.fast = state
        self.is_fused = True
        return self.to(memory_format=torch.channels_last).requires_grad_(False)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the FID Inception weights (without num_batches_tracked)."""
    with torch.device("meta"):
        model = FIDInceptionV3()
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_state_dict(tensors: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Validate ``tensors`` as FID Inception weights; one-line :class:`InputError` otherwise.

    ``num_batches_tracked`` buffers are dropped; a ``module.`` prefix (DataParallel) is removed.
    """
    tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    want = expected_shapes()
    missing = [k for k in want if k not in tensors]
    extra = [k for k in tensors if k not in want]
    if missing or extra:
        if len(missing) == len(want):
            what = "none of its tensors has an InceptionV3 name"
        else:
            example = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
            what = f"{len(missing)} missing and {len(extra)} unexpected tensors, e.g. {example}"
        raise InputError(f"{source} is not the FID InceptionV3 network ({what})")
    for k, shape in want.items():
        t = tensors[k]
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{source}: {k} is not a tensor")
        if tuple(t.shape) != shape:
            raise InputError(
                f"{source} is not the FID InceptionV3 network: {k} has shape {tuple(t.shape)}, "
                f"expected {shape} (a torchvision ImageNet InceptionV3 has 1000 classes, FID's has 1008)"
            )
        if not t.is_floating_point():
            raise InputError(f"{source}: {k} has dtype {t.dtype}, expected floating point")
    return {k: tensors[k].float() for k in want}


def load_inception(path: str | Path, *, device: Any = "cpu", fuse: bool = True) -> FIDInceptionV3:
    """Build the FID Inception from a gencli ``.safetensors`` file (see :func:`resolve_weights`)."""
    from gencli.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    family = ckpt.family
    if family is not None and family != "fid-inception":
        raise InputError(f"{path} is a {family} checkpoint, not the FID Inception weights")
    tensors = check_state_dict(ckpt.tensors, str(path))
    with torch.device("meta"):  # no random initialisation of 24M parameters that are overwritten
        model = FIDInceptionV3()
    for name, buf in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            tensors[name] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.eval().requires_grad_(False)
    if fuse:
        model.fuse_()
    return model.to(device)
