"""The Triton kernels of :mod:`gencli.kernels.triton_ops` (imported on first use, so that
``TRITON_INTERPRET`` is read when they are defined; module-level, as Triton's interpreter needs)."""

import triton
import triton.language as tl


@triton.jit
def gn_silu_nhwc(x_ptr, w_ptr, b_ptr, y_ptr, HW, C, CPG, eps,
                 SILU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n = tl.program_id(0)
    g = tl.program_id(1)
    base = n * HW * C + g * CPG
    cols = tl.arange(0, BLOCK_C)
    cmask = cols < CPG
    count = HW * CPG
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for p0 in range(0, HW, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        m = (rows < HW)[:, None] & cmask[None, :]
        acc += tl.load(x_ptr + base + rows[:, None] * C + cols[None, :], mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(tl.sum(acc, axis=1), axis=0) / count
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for p0 in range(0, HW, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        m = (rows < HW)[:, None] & cmask[None, :]
        v = tl.load(x_ptr + base + rows[:, None] * C + cols[None, :], mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, v - mean, 0.0)
        acc += d * d
    rstd = 1.0 / tl.sqrt(tl.sum(tl.sum(acc, axis=1), axis=0) / count + eps)
    w = tl.load(w_ptr + g * CPG + cols, mask=cmask, other=1.0).to(tl.float32)
    b = tl.load(b_ptr + g * CPG + cols, mask=cmask, other=0.0).to(tl.float32)
    scale = w * rstd
    shift = b - mean * scale
    for p0 in range(0, HW, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        m = (rows < HW)[:, None] & cmask[None, :]
        offs = base + rows[:, None] * C + cols[None, :]
        v = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
        y = v * scale[None, :] + shift[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=m)

@triton.jit
def ddim(out_ptr, x_ptr, noise_ptr, y_ptr, numel, ax, ao, ex, eo, sa, s1, c0, ce, std, lim,
         CLIP: tl.constexpr, CLIPPED_EPS: tl.constexpr, NOISE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < numel
    o = tl.load(out_ptr + offs, mask=m, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
    x0 = ax * x + ao * o
    eps = ex * x + eo * o
    if CLIP:
        x0 = tl.minimum(tl.maximum(x0, -lim), lim)
        if CLIPPED_EPS:
            eps = (x - sa * x0) / s1
    y = c0 * x0 + ce * eps
    if NOISE:
        y += std * tl.load(noise_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=m)
