"""A UNet with the module layout and numerics of diffusers' ``UNet2DModel``.

Parameter names match diffusers exactly (``conv_in``, ``time_embedding.linear_1``,
``down_blocks.i.resnets.j.norm1`` ...), so a diffusers ``diffusion_pytorch_model.safetensors``
loads with at most a renaming of the legacy attention keys (``query/key/value/proj_attn``).
The config dictionary uses diffusers' field names too; see :data:`DEFAULT_CONFIG`.

Written from the published architecture description (ANCHORS.md), not from diffusers' code.
It is a plain ``nn.Module``: it knows no scheduler and no training procedure.

Sampling can opt into an inference fast path (``UNet2DModel.fast_inference()`` /
``optimize_for_inference()``): channels_last activations, Winograd F(4x4, 3x3) convolutions on the
CPU and fused projections, with the same parameters and state-dict keys (see the section below).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import InputError

# diffusers' UNet2DModel defaults (a config.json overrides any of these).
DEFAULT_CONFIG: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1.0,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# google/ddpm-cifar10-32's config.json: the architecture of the public diffusers DDPM checkpoints
# (what the compatibility test and bench/sample_vs_diffusers.py build, with random weights).
DDPM_CIFAR10_CONFIG: dict[str, Any] = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "flip_sin_to_cos": False, "freq_shift": 1, "norm_eps": 1e-6,
    "norm_num_groups": 32, "downsample_padding": 0, "act_fn": "silu", "time_embedding_type": "positional",
}

_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float,
                       max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding: freqs = exp(-ln(max_period) * k / (half - freq_shift))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


# ---------------------------------------------------------------------------------------------
# Inference fast path (opt-in: UNet2DModel.optimize_for_inference / UNet2DModel.fast_inference)
# ---------------------------------------------------------------------------------------------
# Used only without autograd and in eval mode. It changes no parameter and no state-dict key:
#  - channels_last activations (oneDNN convolutions run on NHWC without reorders);
#  - stride-1 3x3 convolutions as Winograd F(4x4, 3x3) on the CPU in fp32 (4x fewer
#    multiplications; transformed filters are cached); SiLU is applied while the input is
#    copied into the padded tile buffer, and the conv bias, the per-sample time embedding and
#    the residual are folded into the transforms instead of separate passes;
#  - all resnets' time_emb_proj computed in one matmul, attention q/k/v in one matmul on the
#    NHWC activations (no transposes), the residual added by the output projection's addmm.
#
# Winograd F(m=4, r=3) with interpolation points 0, 1, -1, 1/2, -2 and infinity: y = A^T [(G g G^T)
# * (B^T d B)] A on 6x6 input tiles (stride 4). Against the usual 0, +-1, +-2 these points gave ~3x
# less fp32 error in a search over point sets (the data and output transforms stay exact in binary:
# multiples of 1/8); a layer's output is within ~1.5e-5 of direct convolution on unit-scale
# activations, the cifar10 UNet's within ~1.5e-5 of diffusers.
_WINO_AT = ((1, 1, 1, 1, 1, 0),
            (0, 1, -1, "1/2", -2, 0),
            (0, 1, 1, "1/4", 4, 0),
            (0, 1, -1, "1/8", -8, 1))
_WINO_G = ((1, 0, 0),
           ("1/3", "1/3", "1/3"),
           ("-1/3", "1/3", "-1/3"),
           ("-16/15", "-8/15", "-4/15"),
           ("1/15", "-2/15", "4/15"),
           (0, 0, 1))
_WINO_BT = ((1, "-3/2", -2, "3/2", 1, 0),
            (0, -1, "1/2", "5/2", 1, 0),
            (0, 1, "-5/2", "1/2", 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, "1/2", -1, "-1/2", 1, 0),
            (0, 1, "-3/2", -2, "3/2", 1))
_WINO_BIAS_INDEX = 7  # tile component (1, 1): the point 1, whose output-transform column is all ones
# Below these sizes (channels; tiles = N * H/4 * W/4) direct convolution wins or ties on AVX2
# cores: the transforms and the 4x larger transformed filters dominate (measured: 32-64 channels
# 0.6-1.2x, 96 channels 1.3x, 128-512 channels 1.5-2.2x). winograd=True ignores both limits.
_WINO_MIN_TILES = 16
_WINO_MIN_CHANNELS = 96


def winograd_matrices(dtype: torch.dtype = torch.float64, device: Any = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A^T 4x6, G 6x3, B^T 6x6) of the Winograd F(4x4, 3x3) used by the fast path."""
    def mat(rows):
        return torch.tensor([[float(Fraction(str(v))) for v in r] for r in rows], dtype=dtype, device=device)
    return mat(_WINO_AT), mat(_WINO_G), mat(_WINO_BT)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


class _FastState:
    """Options and caches of the fast path. Cached tensors are keyed on their sources'
    (data_ptr, _version), so weights changed in place by load_state_dict or an optimizer step are
    seen; writes through ``param.data`` bypass the version counter (use a new fast_inference()
    block, or call optimize_for_inference() again, after those)."""

    def __init__(self, channels_last: bool, winograd: bool | None):
        self.channels_last = channels_last
        self.winograd = winograd
        self.cache: dict[Any, tuple[tuple, Any]] = {}
        self._local = threading.local()

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

    def use_winograd(self, conv: nn.Conv2d, x: torch.Tensor, shape: tuple[int, ...] | None = None) -> bool:
        """Whether ``conv`` on ``x`` (or on a tensor like ``x`` of ``shape``) goes through Winograd."""
        if self.winograd is False or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if (conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1)
                or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
            return False
        n, c, h, w = shape or x.shape
        if h % 4 or w % 4:
            return False
        if self.winograd is None and (min(conv.in_channels, conv.out_channels) < _WINO_MIN_CHANNELS
                                      or n * (h // 4) * (w // 4) < _WINO_MIN_TILES):
            return False
        return not _autocast_on("cpu")

    # -- weights ---------------------------------------------------------------------------
    def conv_weight(self, conv: nn.Conv2d) -> torch.Tensor:
        w = conv.weight
        if not self.channels_last or w.is_contiguous(memory_format=torch.channels_last):
            return w
        return self.cached(("cl", id(conv)), (w,), lambda: w.detach().contiguous(memory_format=torch.channels_last))

    def upsample_weight(self, conv: nn.Conv2d) -> torch.Tensor:
        """The stride-2 4x4 transposed-convolution kernel equal to nearest x2 upsampling followed
        by ``conv`` (3x3, padding 1): each output phase sees a 2x2 neighbourhood of the input whose
        taps are sums of the 3x3 taps, so the upsampled image is never built and the convolution
        does 16/36 of the multiplications."""
        w = conv.weight

        def build():
            # rows: transposed-conv tap k = 0..3; columns: 3x3 tap. Output row 2m takes input m-1
            # (tap 3 <- w0) and m (tap 1 <- w1 + w2); row 2m+1 takes m (tap 2 <- w0 + w1) and m+1 (tap 0 <- w2).
            m = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=w.dtype, device=w.device)
            wt = torch.einsum("ka,lb,oiab->iokl", m, m, w.detach())
            return wt.contiguous(memory_format=torch.channels_last) if self.channels_last else wt.contiguous()
        return self.cached(("up", id(conv)), (w,), build)

    def winograd_filters(self, conv: nn.Conv2d) -> tuple[torch.Tensor, ...]:
        w = conv.weight

        def build():
            at, g, bt = winograd_matrices(w.dtype, w.device)
            co, c = conv.out_channels, conv.in_channels
            # U[(i, j), c, o] = (G w[o, c] G^T)[i, j] = sum_kl G[i, k] G[j, l] w[o, c, k, l]: one GEMM
            wt = w.detach().permute(1, 0, 2, 3).reshape(c * co, 9)
            u = torch.mm(torch.kron(g, g), wt.t()).view(36, c, co)
            # batched copies for the second transform axis (a stride-0 expand is slow in bmm)
            return u, bt, bt.expand(6, 6, 6).contiguous(), at, at.expand(4, 4, 6).contiguous()
        return self.cached(("wino", id(conv)), (w,), build)


@functools.lru_cache(maxsize=64)
def _group_average(c: int, groups: int, pixels: int, device: torch.device) -> torch.Tensor:
    """(c, c) matrix: per-channel sums times it = each channel's group mean."""
    same = torch.arange(c, device=device) // (c // groups)
    return (same[:, None] == same[None, :]).float() / (pixels * (c // groups))


@functools.lru_cache(maxsize=16)
def _eps_row(eps: float, c: int, device: torch.device) -> torch.Tensor:
    return torch.full((c,), eps, device=device)


def _group_norm_fast(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for NHWC activations on the CPU, ~4x quicker than torch's channels_last kernel.

    Two passes for the statistics (the mean, then the squared deviations, as the exact
    formula: no E[x^2] - E[x]^2 cancellation), one for the affine; the output stays NHWC."""
    n, c, h, w = x.shape
    if (x.device.type != "cpu" or x.dtype != torch.float32 or x.is_contiguous()
            or not x.is_contiguous(memory_format=torch.channels_last)
            or x.numel() < 32768 or c >= 128):  # where torch's own kernel is as quick (measured)
        return norm(x)
    xv = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of the NHWC memory
    avg = _group_average(c, norm.num_groups, h * w, x.device)
    d = xv - torch.mm(xv.sum(1), avg)[:, None]  # minus each channel's group mean
    scale = torch.addmm(_eps_row(norm.eps, c, x.device), (d * d).sum(1), avg).rsqrt_()  # (n, c)
    if norm.weight is not None:
        torch.addcmul(norm.bias, d, scale.mul_(norm.weight)[:, None], out=d)
    else:
        d.mul_(scale[:, None])
    return d.view(n, h, w, c).permute(0, 3, 1, 2)


def _conv_fast(state: _FastState, conv: nn.Conv2d, x: torch.Tensor, *, silu: bool = False,
               sample_bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
               add_bias: bool = True) -> torch.Tensor:
    """conv(silu(x) if silu else x) + sample_bias[:, :, None, None] + residual.

    ``add_bias=False`` leaves out the conv's own bias (the caller folded it into sample_bias).
    With ``silu`` the input may be overwritten (callers pass a fresh normalisation output)."""
    if state.use_winograd(conv, x):
        return _winograd_conv3x3(state, conv, x, silu, sample_bias, residual, add_bias)
    bias = conv.bias if add_bias else None
    if silu:
        x = F.silu(x, inplace=True)
    if state.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1
            and bias is not None and x.is_contiguous(memory_format=torch.channels_last)):
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


def _winograd_conv3x3(state: _FastState, conv: nn.Conv2d, x: torch.Tensor, silu: bool,
                      sample_bias: torch.Tensor | None, residual: torch.Tensor | None,
                      add_bias: bool = True) -> torch.Tensor:
    u, bt, bt3, at, at3 = state.winograd_filters(conv)
    n, c, h, w = x.shape
    co = conv.out_channels
    th, tw = h // 4, w // 4
    p = n * th * tw
    buf = state.workspace
    # zero-padded NHWC copy of the input (SiLU applied on the way)
    xp = buf("pad", n * (h + 2) * (w + 2) * c, x).view(n, h + 2, w + 2, c)
    s = xp.stride()
    xp.as_strided((n, 2, w + 2, c), (s[0], (h + 1) * s[1], s[2], s[3])).zero_()  # top and bottom rows
    xp.as_strided((n, h + 2, 2, c), (s[0], s[1], (w + 1) * s[2], s[3])).zero_()  # left and right columns
    inner = xp[:, 1:h + 1, 1:w + 1]
    if silu:
        torch._C._nn.silu(x.permute(0, 2, 3, 1), out=inner)
    else:
        inner.copy_(x.permute(0, 2, 3, 1))
    # 6x6 tiles with stride 4: d[(i, j), (n, ty, tx, c)] = xp[n, 4 ty + i, 4 tx + j, c]
    tiles = xp.as_strided((6, 6, n, th, tw, c), (s[1], s[2], s[0], 4 * s[1], 4 * s[2], s[3]))
    d = buf("tiles", 36 * p * c, x).view(6, 6, n, th, tw, c)
    d.copy_(tiles)
    # B^T d B, one axis at a time (3x fewer flops than the 36x36 Kronecker product)
    v1 = torch.mm(bt, d.view(6, 6 * p * c), out=buf("v1", 36 * p * c, x).view(6, 6 * p * c))
    v = torch.bmm(bt3, v1.view(6, 6, p * c), out=buf("v", 36 * p * c, x).view(6, 6, p * c)).view(36, p, c)
    m = torch.bmm(v, u, out=buf("m", 36 * p * co, x).view(36, p, co))  # 36 independent GEMMs
    m_bias = m[_WINO_BIAS_INDEX]
    if conv.bias is not None and add_bias:
        m_bias += conv.bias
    if sample_bias is not None:
        m_bias.view(n, th * tw, co).add_(sample_bias[:, None, :])
    y = torch.mm(at, m.view(6, 6 * p * co), out=buf("y1", 24 * p * co, x).view(4, 6 * p * co))
    y = torch.bmm(at3, y.view(4, 6, p * co), out=buf("y", 16 * p * co, x).view(4, 4, p * co))
    y = y.view(4, 4, n, th, tw, co).permute(2, 3, 0, 4, 1, 5)
    out = x.new_empty((n, h, w, co))
    out6 = out.view(n, th, 4, tw, 4, co)
    if residual is not None:
        torch.add(y, residual.permute(0, 2, 3, 1).view(n, th, 4, tw, 4, co), out=out6)
    else:
        out6.copy_(y)
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory (channels_last)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GN, SiLU, conv1, + proj(SiLU(temb)), GN, SiLU, dropout, conv2, + shortcut, / scale."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float, dropout: float,
                 scale_shift: bool = False, output_scale_factor: float = 1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.scale_shift = scale_shift
        self.time_emb_proj = nn.Linear(temb, cout * 2 if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        # temb_act is SiLU(temb), computed once per forward pass by the UNet.
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(temb_act)[:, :, None, None]
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = skip + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out

    def _forward_fast(self, state: _FastState, x: torch.Tensor, temb_act: torch.Tensor,
                      t: torch.Tensor | None = None) -> torch.Tensor:
        """``t``: time_emb_proj(temb_act), plus conv1's bias unless scale_shift (see
        UNet2DModel._time_projections); None computes it here."""
        folded = t is not None and not self.scale_shift
        if t is None:
            t = self.time_emb_proj(temb_act)
        skip = x if self.conv_shortcut is None else _conv_fast(state, self.conv_shortcut, x)
        if self.scale_shift:
            h = _conv_fast(state, self.conv1, _group_norm_fast(self.norm1, x), silu=True)
            scale, shift = t[:, :, None, None].chunk(2, dim=1)
            h = _group_norm_fast(self.norm2, h) * (1 + scale) + shift
        else:
            h = _conv_fast(state, self.conv1, _group_norm_fast(self.norm1, x), silu=True, sample_bias=t,
                           add_bias=not folded)
            h = _group_norm_fast(self.norm2, h)
        out = _conv_fast(state, self.conv2, h, silu=True, residual=skip)
        if self.output_scale_factor != 1.0:
            out /= self.output_scale_factor
        return out


class Attention(nn.Module):
    """Spatial self-attention with a residual: GN, q/k/v projections, softmax, out projection."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float,
                 rescale_output_factor: float = 1.0):
        super().__init__()
        self.heads = max(channels // head_dim, 1)
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.rescale_output_factor = rescale_output_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.group_norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        d = c // self.heads
        q, k, v = (z.view(b, -1, self.heads, d).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, -1, c)
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, hgt, wid)
        out = o + x
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out

    def _forward_fast(self, state: _FastState, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        if state.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        tokens = hgt * wid
        h = _group_norm_fast(self.group_norm, x).permute(0, 2, 3, 1).reshape(b * tokens, c)  # a view when NHWC
        w_qkv, b_qkv = state.cached(("qkv", id(self)), (self.to_q.weight, self.to_k.weight, self.to_v.weight,
                                                        self.to_q.bias, self.to_k.bias, self.to_v.bias),
                                    lambda: (torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight]).detach(),
                                             torch.cat([self.to_q.bias, self.to_k.bias, self.to_v.bias]).detach()))
        d = c // self.heads
        qkv = torch.addmm(b_qkv, h, w_qkv.t()).view(b, tokens, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        o = o.transpose(1, 2).reshape(b * tokens, c)
        proj = self.to_out[0]
        out = torch.addmm(x.permute(0, 2, 3, 1).reshape(b * tokens, c), o, proj.weight.t())  # x + o W^T
        out += proj.bias
        if self.rescale_output_factor != 1.0:
            out /= self.rescale_output_factor
        return out.view(b, hgt, wid, c).permute(0, 3, 1, 2)


class Downsample2D(nn.Module):
    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)

    def _forward_fast(self, state: _FastState, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return _conv_fast(state, self.conv, x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def _forward_fast(self, state: _FastState, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if state.use_winograd(self.conv, x, (n, c, 2 * h, 2 * w)):
            # wide layers: Winograd on the upsampled image does fewer multiplications (1/4 vs 16/36)
            return _conv_fast(state, self.conv, F.interpolate(x, scale_factor=2.0, mode="nearest"))
        if state.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # nearest x2 + 3x3 conv as one stride-2 transposed convolution (see upsample_weight)
        return F.conv_transpose2d(x, state.upsample_weight(self.conv), self.conv.bias, stride=2, padding=1)


class _Block(nn.Module):
    """A down or up block: resnets (+ attentions after each) (+ a resampler)."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module] | None,
                 sampler: nn.Module | None, kind: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        if sampler is not None:
            setattr(self, "downsamplers" if kind == "down" else "upsamplers", nn.ModuleList([sampler]))
        self.kind = kind

    @property
    def sampler(self) -> nn.Module | None:
        holder = getattr(self, "downsamplers" if self.kind == "down" else "upsamplers", None)
        return holder[0] if holder is not None else None


class MidBlock(nn.Module):
    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module]):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb_act)
        for attn, res in zip(self.attentions, self.resnets[1:]):
            x = res(attn(x), temb_act)
        return x


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill diffusers defaults, drop diffusers' bookkeeping keys, reject what we do not support."""
    cfg = dict(DEFAULT_CONFIG)
    cfg.update({k: v for k, v in config.items() if k in DEFAULT_CONFIG})
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        cfg[key] = list(cfg[key])
    unsupported = []
    if cfg["time_embedding_type"] != "positional":
        unsupported.append(f"time_embedding_type={cfg['time_embedding_type']!r}")
    if cfg["act_fn"] != "silu":
        unsupported.append(f"act_fn={cfg['act_fn']!r}")
    if cfg["downsample_type"] != "conv" or cfg["upsample_type"] != "conv":
        unsupported.append("resnet up/down-sampling")
    if cfg["class_embed_type"] not in (None, "identity"):
        unsupported.append(f"class_embed_type={cfg['class_embed_type']!r}")
    for t in cfg["down_block_types"]:
        if t not in _DOWN:
            unsupported.append(f"down block {t!r}")
    for t in cfg["up_block_types"]:
        if t not in _UP:
            unsupported.append(f"up block {t!r}")
    if unsupported:
        raise InputError("unsupported UNet2DModel config: " + ", ".join(unsupported))
    n = len(cfg["block_out_channels"])
    if len(cfg["down_block_types"]) != n or len(cfg["up_block_types"]) != n:
        raise InputError("UNet config: block_out_channels, down_block_types and up_block_types "
                         "must have the same length")
    return cfg


class UNet2DModel(nn.Module):
    """diffusers-compatible UNet2DModel (positional time embedding, conv resamplers)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        cfg = normalize_config(config)
        self.config = cfg
        boc = cfg["block_out_channels"]
        groups, eps, drop = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"]
        attn_groups = cfg["attn_norm_num_groups"] or groups
        scale_shift = cfg["resnet_time_scale_shift"] == "scale_shift"
        head_dim_cfg = cfg["attention_head_dim"]
        temb = boc[0] * 4

        def head_dim(channels: int) -> int:
            # attention_head_dim null means one head as wide as the block.
            return channels if head_dim_cfg is None else head_dim_cfg

        def resnet(cin: int, cout: int, scale: float = 1.0) -> ResnetBlock2D:
            return ResnetBlock2D(cin, cout, temb, groups, eps, drop, scale_shift, scale)

        def attention(ch: int, scale: float = 1.0) -> Attention:
            return Attention(ch, head_dim(ch), attn_groups, eps, scale)

        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.class_embedding = None
        if cfg["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb)
        elif cfg["class_embed_type"] == "identity":
            self.class_embedding = nn.Identity()

        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, btype in enumerate(cfg["down_block_types"]):
            cin, cout = cout, boc[i]
            final = i == len(boc) - 1
            resnets = [resnet(cin if j == 0 else cout, cout) for j in range(cfg["layers_per_block"])]
            attns = [attention(cout) for _ in resnets] if _DOWN[btype] else None
            sampler = None if final else Downsample2D(cout, cfg["downsample_padding"])
            self.down_blocks.append(_Block(resnets, attns, sampler, "down"))

        mid_scale = cfg["mid_block_scale_factor"]
        mid_attn = [attention(boc[-1], mid_scale)] if cfg["add_attention"] else []
        self.mid_block = MidBlock([resnet(boc[-1], boc[-1], mid_scale) for _ in range(2)], mid_attn)

        rev = list(reversed(boc))
        self.up_blocks = nn.ModuleList()
        cout = rev[0]
        n_layers = cfg["layers_per_block"] + 1
        for i, btype in enumerate(cfg["up_block_types"]):
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            final = i == len(boc) - 1
            resnets = []
            for j in range(n_layers):
                skip = cin if j == n_layers - 1 else cout
                resnets.append(resnet((prev if j == 0 else cout) + skip, cout))
            attns = [attention(cout) for _ in resnets] if _UP[btype] else None
            sampler = None if final else Upsample2D(cout)
            self.up_blocks.append(_Block(resnets, attns, sampler, "up"))

        out_groups = groups if groups is not None else min(boc[0] // 4, 32)
        self.conv_norm_out = nn.GroupNorm(out_groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    @property
    def downscale(self) -> int:
        """Input sides must be divisible by this (2 ** number of downsamplers)."""
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    # --- inference fast path ----------------------------------------------------------------
    _fast: _FastState | None = None

    def optimize_for_inference(self, device: Any = None, *, channels_last: bool = True,
                               winograd: bool | None = None) -> "UNet2DModel":
        """Switch this UNet to the inference fast path for every later no-grad, eval-mode call.

        Moves it to ``device`` (if given), sets eval mode and, with ``channels_last``, stores the
        convolution weights in channels_last memory format (same values, same state-dict keys; a
        ``state_dict()`` then holds non-contiguous tensors, which gencli's save_checkpoint handles).
        ``winograd``: None (default) uses Winograd F(4x4, 3x3) for the 3x3 convolutions where it is
        faster (CPU, fp32, no autocast, enough tiles); False never; True wherever applicable.
        Outputs match the plain forward to ~1e-5 (Winograd rounds differently from direct
        convolution); with ``winograd=False`` only the summation order differs (~1e-6).
        Training (grad enabled or train mode) always takes the plain path. Returns self.
        """
        if device is not None:
            self.to(device)
        self.eval()
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._fast = _FastState(channels_last, winograd)
        return self

    @contextlib.contextmanager
    def fast_inference(self, enabled: bool = True, *, channels_last: bool = True,
                       winograd: bool | None = None) -> Iterator["UNet2DModel"]:
        """Use the inference fast path inside the block without changing the module.

        Parameters are left as they are; channels_last weight copies and Winograd filters are
        built on first use and freed on exit (the filters take ~4x the 3x3 weights' memory).
        After :meth:`optimize_for_inference` with the same options, its caches are used as they
        are. ``with unet.fast_inference(): ...`` is what a sampling loop should wrap itself in.
        """
        previous = self._fast
        if not enabled:
            self._fast = None
        elif previous is None or (previous.channels_last, previous.winograd) != (channels_last, winograd):
            self._fast = _FastState(channels_last, winograd)
        try:
            yield self
        finally:
            self._fast = previous

    def _use_fast(self) -> bool:
        return self._fast is not None and not self.training and not torch.is_grad_enabled()

    def _time_projections(self, state: _FastState, emb_act: torch.Tensor) -> list[torch.Tensor]:
        """Every resnet's time_emb_proj(SiLU(temb)) from one matmul, in forward order.

        Except for scale_shift resnets, conv1's bias is folded in: conv1 + bias + t is one add."""
        resnets = [r for b in self.down_blocks for r in b.resnets]
        resnets += list(self.mid_block.resnets) + [r for b in self.up_blocks for r in b.resnets]

        def bias(r: ResnetBlock2D) -> torch.Tensor:
            b = r.time_emb_proj.bias
            return b if r.scale_shift or r.conv1.bias is None else b + r.conv1.bias

        params = tuple(p for r in resnets for p in (r.time_emb_proj.weight, r.time_emb_proj.bias, r.conv1.bias)
                       if p is not None)
        weight, bias_all = state.cached(("temb", id(self)), params, lambda: (
            torch.cat([r.time_emb_proj.weight for r in resnets]).detach(),
            torch.cat([bias(r) for r in resnets]).detach()))
        sizes = [r.time_emb_proj.out_features for r in resnets]
        return list(torch.addmm(bias_all, emb_act, weight.t()).split(sizes, dim=1))

    def _embed(self, sample: torch.Tensor, timesteps: torch.Tensor | float | int,
               class_labels: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(sample.shape[0])
        t_emb = timestep_embedding(timesteps, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"],
                                   cfg["freq_shift"]).to(sample.dtype)
        emb = self.time_embedding(t_emb)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this UNet is class-conditional: class_labels are required")
            emb = emb + self.class_embedding(class_labels).to(emb.dtype)
        return emb

    def _forward_fast(self, state: _FastState, sample: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        emb_act = F.silu(emb)
        projs = iter(self._time_projections(state, emb_act))
        if state.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        h = _conv_fast(state, self.conv_in, sample)
        skips = [h]
        for block in self.down_blocks:
            for j, res in enumerate(block.resnets):
                h = res._forward_fast(state, h, emb_act, next(projs))
                if block.attentions is not None:
                    h = block.attentions[j]._forward_fast(state, h)
                skips.append(h)
            if block.sampler is not None:
                h = block.sampler._forward_fast(state, h)
                skips.append(h)

        mid = self.mid_block
        h = mid.resnets[0]._forward_fast(state, h, emb_act, next(projs))
        for attn, res in zip(mid.attentions, mid.resnets[1:]):
            h = res._forward_fast(state, attn._forward_fast(state, h), emb_act, next(projs))

        for block in self.up_blocks:
            for j, res in enumerate(block.resnets):
                h = res._forward_fast(state, torch.cat([h, skips.pop()], dim=1), emb_act, next(projs))
                if block.attentions is not None:
                    h = block.attentions[j]._forward_fast(state, h)
            if block.sampler is not None:
                h = block.sampler._forward_fast(state, h)

        out = _conv_fast(state, self.conv_out, _group_norm_fast(self.conv_norm_out, h), silu=True)
        return out.contiguous()

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if cfg["center_input_sample"]:
            sample = 2 * sample - 1.0
        emb = self._embed(sample, timesteps, class_labels)
        if self._use_fast():
            return self._forward_fast(self._fast, sample, emb)
        emb_act = F.silu(emb)

        h = self.conv_in(sample)
        skips = [h]
        for block in self.down_blocks:
            for j, res in enumerate(block.resnets):
                h = res(h, emb_act)
                if block.attentions is not None:
                    h = block.attentions[j](h)
                skips.append(h)
            if block.sampler is not None:
                h = block.sampler(h)
                skips.append(h)

        h = self.mid_block(h, emb_act)

        for block in self.up_blocks:
            for j, res in enumerate(block.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), emb_act)
                if block.attentions is not None:
                    h = block.attentions[j](h)
            if block.sampler is not None:
                h = block.sampler(h)

        return self.conv_out(F.silu(self.conv_norm_out(h)))


_LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map old diffusers attention names (query/key/value/proj_attn) to to_q/to_k/to_v/to_out.0."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _LEGACY_ATTN:
            key = ".".join(parts[:-2] + [_LEGACY_ATTN[parts[-2]], parts[-1]])
        out[key] = value
    return out
