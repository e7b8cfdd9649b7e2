"""diffusers' spatial self-attention block (``to_q``/``to_k``/``to_v``/``to_out.0``) and the
mapping from its legacy parameter names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gencli.kernels import onednn
from gencli.kernels.fast_path import FastState, fused_linear, group_norm_fast


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

    def _forward_fast(self, state: FastState, x: torch.Tensor) -> torch.Tensor:
        """q, k and v by matmuls on the NHWC activations (each output is already in the layout
        attention reads: one fused matmul's interleaved output would be copied), the residual
        added by the output projection (in bf16 by oneDNN's linear + add). With one head, two of
        the four projections are folded away (see :meth:`_folded`)."""
        b, c, hgt, wid = x.shape
        if state.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        tokens = hgt * wid
        h = group_norm_fast(self.group_norm, x).permute(0, 2, 3, 1).reshape(b * tokens, c)  # a view when NHWC
        d = c // self.heads
        if self.heads == 1:
            wq, bq, wo, bo = self._folded(state)
            q = torch.addmm(bq, h, wq.t()).view(b, 1, tokens, c)
            kv = h.view(b, 1, tokens, c)
            o = F.scaled_dot_product_attention(q, kv, kv, scale=d ** -0.5).view(b * tokens, c)
        else:
            layers = (self.to_q, self.to_k, self.to_v, self.to_out[0])
            weights = state.cached_compute(("attn", id(self)), tuple(p for m in layers for p in (m.weight, m.bias)),
                                           lambda: tuple(p.detach() for m in layers for p in (m.weight, m.bias)))
            q, k, v = (torch.addmm(weights[2 * i + 1], h, weights[2 * i].t()).view(b, tokens, self.heads, d)
                       .transpose(1, 2) for i in range(3))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * tokens, c)
            wo, bo = weights[6:]
        residual = x.permute(0, 2, 3, 1).reshape(b * tokens, c)
        if fused_linear(o, residual):
            out = onednn.linear_add(o, residual, wo, bo)
        else:
            out = torch.add(residual, bo).addmm_(o, wo.t())  # (x + b) + o W^T: one pass besides the GEMM
        if self.rescale_output_factor != 1.0:
            out /= self.rescale_output_factor
        return out.view(b, hgt, wid, c).permute(0, 3, 1, 2)

    def _folded(self, state: FastState) -> tuple[torch.Tensor, ...]:
        """(q weight, q bias, out weight, out bias) of one-head attention with the key and value
        projections folded into the query and output ones, so that k = v = the normalised input h:

        * scores (h Wq^T + bq)(h Wk^T + bk)^T = (h (Wk^T Wq)^T + bq Wk) h^T + terms constant along
          each row, which the softmax cancels;
        * P (h Wv^T + bv) Wo^T + bo = (P h)(Wo Wv)^T + (Wo bv + bo), since each row of P sums to 1.

        Two c x c matmuls per call fewer (of four), same result up to rounding (folded in float64)."""
        q, k, v, o = self.to_q, self.to_k, self.to_v, self.to_out[0]

        def build():
            wq, wk, wv, wo = (m.weight.detach().double() for m in (q, k, v, o))
            bq, bv, bo = (m.bias.detach().double() for m in (q, v, o))
            dtype = q.weight.dtype
            return ((wk.t() @ wq).to(dtype), (bq @ wk).to(dtype), (wo @ wv).to(dtype), (wo @ bv + bo).to(dtype))
        return state.cached_compute(("attn-folded", id(self)), (q.weight, q.bias, k.weight, v.weight, v.bias,
                                                                 o.weight, o.bias), build)


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
