/* 3x3 max pooling on NHWC fp32 activations (the FID Inception's five max pools): each output
 * pixel's channels as vectors, its nine inputs read straight from the input (which stays in
 * cache across the overlapping windows). torch's CPU max_pool2d also writes an int64 index per
 * output, which inference does not need. NaN propagates, as in torch.
 *
 *   y[b, oy, ox, c] = max over ky, kx < 3 of x[b, oy*stride - pad + ky, ox*stride - pad + kx, c]
 *   (positions outside the input skipped; every window holds at least one input pixel)
 */
#include "common.h"

ALWAYS_INLINE vf vmax_nan(vf m, vf v) {
    const vi take = (v > m) | (v != v);
    return (vf)(((vi)v & take) | ((vi)m & ~take));
}

ALWAYS_INLINE void pool_chunk(const float *const src[9], int k, float *dst, long e, long cn) {
    vf m = vload(src[0] + e, cn);
    for (int i = 1; i < k; i++) m = vmax_nan(m, vload(src[i] + e, cn));
    vstore(dst + e, m, cn);
}

void gencli_max_pool3x3_nhwc(const float *x, float *y, long n, long h, long w, long c, long stride, long pad,
                             long ho, long wo) {
    const long cv = c - c % VL;
#pragma omp parallel for schedule(static)
    for (long row = 0; row < n * ho; row++) {
        const long b = row / ho, oy = row % ho;
        for (long ox = 0; ox < wo; ox++) {
            const float *src[9];
            int k = 0;
            for (long ky = 0; ky < 3; ky++) {
                const long iy = oy * stride - pad + ky;
                if (iy < 0 || iy >= h) continue;
                for (long kx = 0; kx < 3; kx++) {
                    const long ix = ox * stride - pad + kx;
                    if (ix >= 0 && ix < w) src[k++] = x + ((b * h + iy) * w + ix) * c;
                }
            }
            float *dst = y + ((b * ho + oy) * wo + ox) * c;
            for (long e = 0; e < cv; e += VL) pool_chunk(src, k, dst, e, VL);
            if (cv < c) pool_chunk(src, k, dst, cv, c - cv);
        }
    }
}
