"""The inference fast path's state and dispatch: which kernel runs a layer, with cached weights.

Blocks in :mod:`gencli.models.layers` call :func:`conv_fast`, :func:`group_norm_fast` and
:func:`upsample2x_conv_fast` from their ``_forward_fast`` methods (used only without autograd and
in eval mode; see ``UNet2DModel.fast_inference``). Nothing here changes a parameter:
 - channels_last activations (oneDNN convolutions run on NHWC without reorders), every conv
   output kept NHWC;
 - stride-1 3x3 convolutions as Winograd F(4x4, 3x3) on the CPU in fp32 where it is quicker
   (:mod:`gencli.kernels.winograd`; transformed filters cached), SiLU, the per-sample bias and the
   residual folded into it;
 - GroupNorm (+ the per-sample bias before it, + SiLU) on NHWC CPU activations as one C kernel
   (:mod:`gencli.kernels.native`; its output in autocast's dtype), or without a C compiler with
   :mod:`gencli.kernels.group_norm` where torch's kernel is slower; on CUDA with Triton, GroupNorm
   + SiLU as one kernel (:mod:`gencli.kernels.triton_ops`);
 - in bf16 (CPU autocast), derived weights cached in bf16, and convolutions and the attention
   output through oneDNN's fused operators (:mod:`gencli.kernels.onednn`: packed weights, the
   residual added in the same call);
 - nearest x2 upsampling + 3x3 conv as one transposed convolution (:mod:`gencli.kernels.upsample`);
 - for the translation generators (:func:`padded_conv_fast`, :func:`instance_norm_fast`,
   :func:`conv_transpose_fast`): reflection padding inside the Winograd tile buffer, instance
   norm (+ ReLU) on NHWC, RGB output layers through :mod:`gencli.kernels.narrow_conv`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.kernels import native, onednn, triton_ops
from gencli.kernels.group_norm import group_norm_nhwc
from gencli.kernels.narrow_conv import conv_few_outputs, grouped_weight, input_width
from gencli.kernels.upsample import upsample2x_conv3x3, upsample2x_conv3x3_weight
from gencli.kernels.winograd import WinogradFilters, conv3x3_winograd, native_transforms, winograd_filters
from gencli.kernels.winograd import applies as winograd_applies
from gencli.kernels.winograd1d import Winograd1dFilters, conv1d_winograd, winograd1d_filters
from gencli.kernels.winograd1d import applies as winograd1d_applies
from gencli.kernels.winograd2d import Winograd2dFilters, conv_winograd2d, winograd2d_filters
from gencli.kernels.winograd2d import applies as winograd2d_applies

# Below these sizes (channels; tiles = N * H/4 * W/4) direct convolution wins or ties on AVX2
# cores: the transforms and the 4x larger transformed filters dominate (measured: 32-64 channels
# 0.6-1.2x, 96 channels 1.3x, 128-512 channels 1.5-2.2x). winograd=True ignores both limits.
WINO_MIN_TILES = 16
WINO_MIN_CHANNELS = 96
# Wide-kernel convolutions to at most this many channels (RGB output layers) run as
# :func:`gencli.kernels.narrow_conv.conv_few_outputs` over groups of this many pixels.
NARROW_MAX_OUT = 4
NARROW_GROUP = 4


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes matmuls and convolutions in on ``device_type``; None when off."""
    if not _autocast_on(device_type):
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


class FastState:
    """Options and caches of the fast path. Cached tensors are keyed on their sources'
    (data_ptr, _version), so weights changed in place by load_state_dict or an optimizer step are
    seen; writes through ``param.data`` bypass the version counter (use a new fast_inference()
    block, or call optimize_for_inference() again, after those)."""

    def __init__(self, channels_last: bool, winograd: bool | None):
        self.channels_last = channels_last
        self.winograd = winograd
        self.cache: dict[Any, tuple[tuple, Any]] = {}
        self._local = threading.local()

    def __reduce__(self):
        # copies and pickles (copy.deepcopy of a network, torch.save of a module) get a fresh
        # state with the same options: the caches are derived data, and thread-local scratch
        # space cannot be copied
        return (FastState, self.options)

    @property
    def options(self) -> tuple[bool, bool | None]:
        """What the state was built for: (channels_last, winograd)."""
        return self.channels_last, self.winograd

    def workspace(self, role: str, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A reusable flat scratch tensor (at least ``numel`` elements) for one role in a kernel.

        Reusing scratch memory avoids page-faulting fresh multi-megabyte allocations on every
        call. Per thread, so concurrent forwards on one model do not share scratch space."""
        store = getattr(self._local, "buffers", None)
        if store is None:
            store = self._local.buffers = {}
        key = (role, like.device, like.dtype)
        t = store.get(key)
        if t is None or t.numel() < numel:
            t = store[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return t[:numel]

    def cached(self, name: Any, sources: tuple[torch.Tensor, ...], build):
        # (inference tensors have no version counter: their storage identity has to do)
        key = tuple((t.data_ptr(), None if t.is_inference() else t._version, t.device, t.dtype)
                    for t in sources)
        hit = self.cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        self.cache[name] = (key, value)
        return value

    def cached_compute(self, name: Any, sources: tuple[torch.Tensor, ...], build):
        """:meth:`cached` for weights fed to matmuls and convolutions: under CPU autocast the
        floating tensors of ``build()`` are kept in autocast's dtype, so that autocast does not
        cast them again on every call (its own cast cache only holds parameters, not derived
        tensors such as these)."""
        dtype = _autocast_dtype("cpu") if sources and sources[0].device.type == "cpu" else None
        if dtype is None:
            return self.cached(name, sources, build)

        def cast(v):
            if isinstance(v, tuple):
                return tuple(cast(t) for t in v)
            return v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
        return self.cached((name, dtype), sources, lambda: cast(build()))

    def use_winograd(self, conv: nn.Conv2d, x: torch.Tensor, shape: tuple[int, ...] | None = None,
                     padded: bool = False) -> bool:
        """Whether ``conv`` on ``x`` (or on a tensor like ``x`` of ``shape``) goes through Winograd;
        ``padded``: ``x`` gets a 1-pixel padding layer first and ``conv`` has none."""
        if self.winograd is False or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if (conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != ((0, 0) if padded else (1, 1))
                or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
            return False
        n, c, h, w = shape or x.shape
        if h % 4 or w % 4:
            return False
        if self.winograd is None and (min(conv.in_channels, conv.out_channels) < WINO_MIN_CHANNELS
                                      or n * (h // 4) * (w // 4) < WINO_MIN_TILES):
            return False
        return not _autocast_on("cpu")

    # -- weights ---------------------------------------------------------------------------
    def conv_weight(self, conv: nn.Conv2d) -> torch.Tensor:
        w = conv.weight
        if (not self.channels_last or w.is_contiguous(memory_format=torch.channels_last)) and (
                w.device.type != "cpu" or _autocast_dtype("cpu") is None):
            return w
        return self.cached_compute(("cl", id(conv)), (w,), lambda: w.detach().contiguous(
            memory_format=torch.channels_last if self.channels_last else torch.contiguous_format))

    def upsample_weight(self, conv: nn.Conv2d) -> torch.Tensor:
        """``conv``'s weight as the transposed-convolution kernel of nearest x2 + ``conv``."""
        def build():
            wt = upsample2x_conv3x3_weight(conv.weight)
            return wt.contiguous(memory_format=torch.channels_last) if self.channels_last else wt.contiguous()
        return self.cached_compute(("up", id(conv)), (conv.weight,), build)

    def winograd_filters(self, conv: nn.Conv2d) -> WinogradFilters:
        return self.cached(("wino", id(conv)), (conv.weight,), lambda: winograd_filters(conv.weight))

    def winograd1d_filters(self, conv: nn.Conv2d) -> Winograd1dFilters:
        return self.cached(("wino1d", id(conv)), (conv.weight,), lambda: winograd1d_filters(conv.weight))

    def winograd2d_filters(self, conv: nn.Conv2d) -> Winograd2dFilters:
        return self.cached(("wino2d", id(conv)), (conv.weight,), lambda: winograd2d_filters(conv.weight))


class FastInference:
    """Mixin of the networks with a fast path (the diffusion UNet, the CycleGAN ResNet generator):
    ``with net.fast_inference(): ...`` switches it on for the block; ``forward`` checks
    :meth:`_use_fast` and runs its fast forward with ``self._fast``."""

    _fast: FastState | None = None
    _fast_kept: FastState | None = None

    @contextlib.contextmanager
    def fast_inference(self, enabled: bool = True, *, channels_last: bool = True,
                       winograd: bool | None = None, keep: bool = False) -> Iterator[Any]:
        """Use the inference fast path inside the block without changing the module.

        Parameters are left as they are; channels_last weight copies and Winograd filters are
        built on first use and freed on exit (the filters take ~4x the 3x3 weights' memory), or,
        with ``keep``, kept on the module for the next ``keep`` block (for callers that run the
        network once per batch: rebuilding the filters every time costs more than Winograd saves
        at batch 1). A state set up before (e.g. by the UNet's ``optimize_for_inference``) with
        the same options is used as it is, caches included. Training (grad enabled or train
        mode) always takes the plain path.
        """
        previous, options = self._fast, (channels_last, winograd)
        if not enabled:
            self._fast = None
        elif previous is None or previous.options != options:
            kept = self._fast_kept if keep else None
            if kept is None or kept.options != options:
                kept = FastState(*options)
            self._fast = kept
            if keep:
                self._fast_kept = kept
        try:
            yield self
        finally:
            self._fast = previous

    def _use_fast(self) -> bool:
        return self._fast is not None and not self.training and not torch.is_grad_enabled()  # type: ignore[attr-defined]


def conv_fast(state: FastState, conv: nn.Conv2d, x: torch.Tensor, *, silu: bool = False,
              sample_bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
              add_bias: bool = True) -> torch.Tensor:
    """conv(silu(x) if silu else x) + sample_bias[:, :, None, None] + residual.

    ``add_bias=False`` leaves out the conv's own bias (the caller folded it into sample_bias).
    With ``silu`` the input may be overwritten (callers pass a fresh normalisation output)."""
    bias = conv.bias if add_bias else None
    if state.use_winograd(conv, x):
        return conv3x3_winograd(x, state.winograd_filters(conv), bias, silu=silu, sample_bias=sample_bias,
                                residual=residual, workspace=state.workspace)
    if silu:
        x = F.silu(x, inplace=True)
    if state.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    one_by_one = _pointwise(conv) and bias is not None and x.is_contiguous(memory_format=torch.channels_last)
    if not one_by_one and _onednn_conv(state, conv, x):
        return _conv_onednn(state, conv, x, add_bias, sample_bias, residual)
    if one_by_one:
        # a 1x1 convolution on NHWC memory is one matmul (oneDNN's 1x1 path is slower here)
        n, c, h, w = x.shape
        out = torch.addmm(bias, x.permute(0, 2, 3, 1).reshape(n * h * w, c), conv.weight.view(-1, c).t())
        out = out.view(n, h, w, -1).permute(0, 3, 1, 2)
    else:
        out = F.conv2d(x, state.conv_weight(conv), bias, conv.stride, conv.padding, conv.dilation,
                       conv.groups)
    if state.channels_last:
        # oneDNN may answer a 1-channel (layout-ambiguous) input with an NCHW output
        out = out.contiguous(memory_format=torch.channels_last)
    if sample_bias is not None:
        out += sample_bias[:, :, None, None]
    if residual is not None:
        out += residual
    return out


def _pointwise(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a plain 1x1 convolution: one matmul on NHWC memory."""
    return conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


def conv1x1_cat_fast(state: FastState, conv: nn.Conv2d, x: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``conv_fast(state, conv, torch.cat([x, second], 1))`` for a 1x1 convolution: on fp32 NHWC
    CPU activations two matmuls into one output (the weight's column blocks for each input), so
    that the concatenation is never made."""
    c1 = x.shape[1]
    if not (_pointwise(conv) and conv.bias is not None and state.channels_last and x.device.type == "cpu"
            and x.dtype == second.dtype == torch.float32 and not _autocast_on("cpu")
            and x.is_contiguous(memory_format=torch.channels_last)
            and second.is_contiguous(memory_format=torch.channels_last)):
        return conv_fast(state, conv, torch.cat([x, second], dim=1))
    n, _, h, w = x.shape
    weight = conv.weight.view(conv.out_channels, -1)
    out = torch.addmm(conv.bias, x.permute(0, 2, 3, 1).reshape(n * h * w, c1), weight[:, :c1].t())
    out.addmm_(second.permute(0, 2, 3, 1).reshape(n * h * w, -1), weight[:, c1:].t())
    return out.view(n, h, w, -1).permute(0, 3, 1, 2)


def _onednn_conv(state: FastState, conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv`` on ``x`` runs as oneDNN's fused convolution (:mod:`gencli.kernels.onednn`):
    bf16 (autocast or bf16 tensors) channels_last CPU activations."""
    return (state.channels_last and x.device.type == "cpu" and _compute_dtype(x) == torch.bfloat16
            and conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and onednn.usable())


def winograd_fp32(conv: nn.Conv2d) -> bool:
    """Whether :func:`conv_fp32` runs ``conv`` through one of its Winograd kernels (where the C
    transforms are built and the state allows it)."""
    return winograd_applies(conv) or winograd1d_applies(conv) or winograd2d_applies(conv)


def conv_fp32(state: FastState, conv: nn.Conv2d, x: torch.Tensor, *, relu: bool = False) -> torch.Tensor:
    """``conv(x)`` (its bias included; then ReLU with ``relu``) for fp32 CPU activations, by the
    quickest kernel here (the FID Inception's layers): Winograd F(4x4, 3x3) for a stride-1 3x3
    conv, F(4x4, 5x5) for a stride-1 5x5 one, F(m, r) along one axis for a 1 x r / r x 1 one (all
    unless ``state.winograd`` is False, and with gencli's C transforms), else oneDNN's convolution
    with the weight packed once per input shape and the ReLU fused, else ``F.conv2d`` (then ReLU in
    place). Returns channels_last."""
    x = x.contiguous(memory_format=torch.channels_last)
    wino = state.winograd is not False and native_transforms(x)
    c = conv
    if wino and winograd_applies(c):
        return conv3x3_winograd(x, state.winograd_filters(c), c.bias, padding=c.padding[0],
                                workspace=state.workspace, relu=relu)
    if wino and winograd1d_applies(c):
        return conv1d_winograd(x, state.winograd1d_filters(c), c.bias, relu=relu, workspace=state.workspace)
    if wino and winograd2d_applies(c):
        return conv_winograd2d(x, state.winograd2d_filters(c), c.bias, padding=c.padding[0], relu=relu,
                               workspace=state.workspace)
    if c.groups == 1 and c.padding_mode == "zeros" and not isinstance(c.padding, str) and onednn.usable(torch.float32):
        packed = state.cached(("onednn32", id(c), tuple(x.shape)), (c.weight,), lambda: onednn.pack_conv_weight(
            c.weight.detach().contiguous(memory_format=torch.channels_last), c.padding, c.stride, c.dilation, x.shape))
        return onednn.conv2d(x, packed, c.bias, c.padding, c.stride, c.dilation, relu=relu)
    return F.relu(c(x), inplace=True) if relu else c(x)


def fused_linear(x: torch.Tensor, residual: torch.Tensor) -> bool:
    """Whether a linear layer on ``x`` plus ``residual`` runs as oneDNN's linear + add
    (:func:`gencli.kernels.onednn.linear_add`): both bf16 CPU tensors, contiguous."""
    return (x.device.type == "cpu" and x.dtype == residual.dtype == torch.bfloat16
            and x.is_contiguous() and residual.is_contiguous() and onednn.usable())


def _conv_onednn(state: FastState, conv: nn.Conv2d, x: torch.Tensor, add_bias: bool,
                 sample_bias: torch.Tensor | None, residual: torch.Tensor | None) -> torch.Tensor:
    """:func:`conv_fast` in bf16 with the weight packed once per input shape and the residual
    added by the convolution itself."""
    bf16 = torch.bfloat16
    x = x.to(bf16).contiguous(memory_format=torch.channels_last)
    bias = conv.bias if add_bias else None
    sources = (conv.weight,) if bias is None else (conv.weight, bias)
    packed, b = state.cached(("onednn", id(conv), add_bias, tuple(x.shape)), sources, lambda: (
        onednn.pack_conv_weight(conv.weight.detach().to(bf16).contiguous(memory_format=torch.channels_last),
                                conv.padding, conv.stride, conv.dilation, x.shape),
        None if bias is None else bias.detach().to(bf16)))
    if residual is not None:
        residual = residual.to(bf16).contiguous(memory_format=torch.channels_last)
    out = onednn.conv2d(x, packed, b, conv.padding, conv.stride, conv.dilation, residual)
    if sample_bias is not None:
        out += sample_bias[:, :, None, None]
    return out


def padded_conv_fast(state: FastState, pad: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(pad(x))`` for a padding layer (``ReflectionPad2d``, ...) and an unpadded
    ``conv``: Winograd with the reflection done in its tile buffer where it applies, else the
    padding then oneDNN's convolution on NHWC memory."""
    if (isinstance(pad, nn.ReflectionPad2d) and tuple(pad.padding) == (1, 1, 1, 1)
            and state.use_winograd(conv, x, padded=True)):
        return conv3x3_winograd(x, state.winograd_filters(conv), conv.bias, workspace=state.workspace,
                                padding_mode="reflect")
    if state.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if _few_outputs(state, pad, conv, x):
        # widen the right padding so the grouped input covers every output; extra outputs are cropped
        p = pad.padding
        width = x.shape[3] + p[0] + p[1]
        extra = input_width(width, conv.kernel_size[1], NARROW_GROUP) - width
        xp = F.pad(x, (p[0], p[1] + extra, p[2], p[3]), mode="reflect")
        grouped = state.cached(("narrow", id(conv)), (conv.weight,),
                               lambda: grouped_weight(conv.weight.detach(), NARROW_GROUP))
        return conv_few_outputs(xp.contiguous(memory_format=torch.channels_last), grouped, conv.bias,
                                NARROW_GROUP, width - conv.kernel_size[1] + 1)
    return conv_fast(state, conv, pad(x))  # the padding, then the convolution as any other


def _few_outputs(state: FastState, pad: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv(pad(x))`` goes through :func:`conv_few_outputs` (an RGB output layer)."""
    return (state.channels_last and isinstance(pad, nn.ReflectionPad2d) and x.device.type == "cpu"
            and x.dtype == torch.float32 and not _autocast_on("cpu")
            and conv.out_channels <= NARROW_MAX_OUT and conv.in_channels >= 16 and conv.kernel_size[1] >= 5
            and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
            and max(pad.padding) + NARROW_GROUP * 3 < min(x.shape[2:]))  # room for the wider reflection


def conv_transpose_fast(state: FastState, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` on NHWC memory (oneDNN's deconvolution is up to ~1.8x quicker there)."""
    if not state.channels_last:
        return conv(x)
    x = x.contiguous(memory_format=torch.channels_last)
    out = F.conv_transpose2d(x, state.conv_weight(conv), conv.bias, conv.stride, conv.padding,
                             conv.output_padding, conv.groups, conv.dilation)
    return out.contiguous(memory_format=torch.channels_last)


def instance_norm_fast(norm: nn.InstanceNorm2d, x: torch.Tensor, *, relu: bool = False) -> torch.Tensor:
    """``norm(x)`` for an instance norm without running statistics (then ReLU with ``relu``): on
    NHWC CPU memory gencli's C GroupNorm kernel with one group per channel, the ReLU applied in the
    same pass (:func:`gencli.kernels.native.group_norm_nhwc`; fp32 or bf16 in and out, fp32
    arithmetic), or without it :func:`group_norm_nhwc` (~10x quicker than torch's channels_last
    instance norm); else ``norm``. A bf16/fp16 input (a convolution's output under autocast) is
    normalised in fp32 and returned in its own dtype, as torch returns it."""
    if not norm.track_running_stats and native.supports(x) and not x.is_contiguous():
        return native.group_norm_nhwc(x, x.shape[1], norm.weight if norm.affine else None,
                                      norm.bias if norm.affine else None, norm.eps, relu=relu)
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and not norm.track_running_stats
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()):
        with torch.autocast("cpu", enabled=False):  # its statistics matmuls stay fp32 under autocast
            y = group_norm_nhwc(x.float(), x.shape[1], norm.weight if norm.affine else None,  # .float() keeps NHWC
                                norm.bias if norm.affine else None, norm.eps).to(x.dtype)
    else:
        y = norm(x)
    return y.relu_() if relu else y


def fuses_silu(x: torch.Tensor) -> bool:
    """Whether :func:`group_norm_fast` applies a following SiLU (and a per-sample bias before the
    norm) itself here: CUDA with Triton (or Triton's interpreter when asked), or the CPU's C
    kernel; elsewhere the SiLU is left to :func:`conv_fast`, which folds it into Winograd."""
    return triton_ops.enabled(x) or native.supports(x)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the next layer computes in: autocast's on the CPU when it is on, else x's."""
    dtype = _autocast_dtype(x.device.type)
    return dtype if dtype in (torch.bfloat16, torch.float32) else x.dtype


def group_norm_fast(norm: nn.GroupNorm, x: torch.Tensor, *, silu: bool = False,
                    sample_bias: torch.Tensor | None = None, second: torch.Tensor | None = None) -> torch.Tensor:
    """``norm(x + sample_bias[:, :, None, None])`` (then SiLU with ``silu``): on CUDA with Triton
    one fused NHWC kernel (:func:`gencli.kernels.triton_ops.group_norm_silu_nhwc`); on NHWC CPU
    activations gencli's C kernel (:func:`gencli.kernels.native.group_norm_nhwc`, whose output is
    in the dtype autocast computes the next layer in: one pass instead of autocast's casts to
    fp32 and back), or without it :func:`group_norm_nhwc` for fp32; else ``norm``. With
    ``second``, the input is ``torch.cat([x, second], 1)``, which the C kernel reads without
    making it."""
    triton = triton_ops.enabled(x)  # asked for explicitly (GENCLI_TRITON): it goes first
    if not triton and native.supports(x) and (second is None or (native.supports(second) and second.dtype == x.dtype)):
        return native.group_norm_nhwc(x, norm.num_groups, norm.weight, norm.bias, norm.eps, silu=silu,
                                      sample_bias=sample_bias, out_dtype=_compute_dtype(x), second=second)
    if second is not None:
        x = torch.cat([x, second], dim=1)
    if sample_bias is not None:
        x = x + sample_bias[:, :, None, None]
    if triton:
        return triton_ops.group_norm_silu_nhwc(x, norm.num_groups, norm.weight, norm.bias, norm.eps, silu=silu)
    if silu:
        return F.silu(group_norm_fast(norm, x), inplace=True)
    if (x.device.type != "cpu" or x.dtype != torch.float32 or x.is_contiguous()
            or not x.is_contiguous(memory_format=torch.channels_last)
            or x.numel() < 32768 or x.shape[1] >= 128):  # where torch's own kernel is as quick (measured)
        return norm(x)
    return group_norm_nhwc(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def upsample2x_conv_fast(state: FastState, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(F.interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, padding-1 ``conv``."""
    n, c, h, w = x.shape
    if state.use_winograd(conv, x, (n, c, 2 * h, 2 * w)):
        # wide layers: Winograd on the upsampled image does fewer multiplications (1/4 vs 16/36)
        return conv_fast(state, conv, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    if state.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return upsample2x_conv3x3(x, state.upsample_weight(conv), conv.bias)
