/* The data and output transforms of Winograd F(4x4, 3x3) on NHWC fp32 activations, the CPU
 * kernels behind gencli.kernels.winograd.conv3x3_winograd (the 36 GEMMs between them run in
 * torch's BLAS, or, in gencli_winograd_fused, in gemm.h's kernel). Each replaces several passes of
 * torch operators (padding copy, tile gather, two matmuls per transform, the final permute and
 * residual add) with one pass over the data.
 *
 *   input:  V[i*6 + j, p, c] = sum_kl BT[i][k] d_p[k][l] BT[j][l], d_p the 6x6 tile of the padded
 *           input (SiLU applied first when asked) at tile p = (n, ty, tx), rows 4ty-pad.., cols
 *           4tx-pad.. (pad 1: a padding-1 convolution; 0: an unpadded one)
 *   output: out[n, 4ty + a, 4tx + b, o] = sum_ij AT[a][i] M[i*6 + j, p, o] AT[b][j] (+ residual, ReLU)
 *
 * Output sides need not be multiples of 4: the last row and column of tiles read zeros past the
 * input and write only the outputs that exist.
 *
 * The matrices are gencli.kernels.winograd's (interpolation points 0, 1, -1, 1/2, -2, infinity).
 */
#include <stdint.h>

#include "common.h"
#include "gemm.h"

/* r = BT d for six vectors d0..d5 */
#define BT6(r, d0, d1, d2, d3, d4, d5) do {                                   \
        (r)[0] = (d0) - 1.5f * (d1) - 2.0f * (d2) + 1.5f * (d3) + (d4);       \
        (r)[1] = -(d1) + 0.5f * (d2) + 2.5f * (d3) + (d4);                    \
        (r)[2] = (d1) - 2.5f * (d2) + 0.5f * (d3) + (d4);                     \
        (r)[3] = -2.0f * (d1) - (d2) + 2.0f * (d3) + (d4);                    \
        (r)[4] = 0.5f * (d1) - (d2) - 0.5f * (d3) + (d4);                     \
        (r)[5] = (d1) - 1.5f * (d2) - 2.0f * (d3) + 1.5f * (d4) + (d5);       \
    } while (0)
/* r = AT m for six vectors m0..m5 */
#define AT6(r, m0, m1, m2, m3, m4, m5) do {                                   \
        (r)[0] = (m0) + (m1) + (m2) + (m3) + (m4);                            \
        (r)[1] = (m1) - (m2) + 0.5f * (m3) - 2.0f * (m4);                     \
        (r)[2] = (m1) + (m2) + 0.25f * (m3) + 4.0f * (m4);                    \
        (r)[3] = (m1) - (m2) + 0.125f * (m3) - 8.0f * (m4) + (m5);            \
    } while (0)

/* padded coordinate -> input coordinate, or -1 for a zero (reflect: -1 -> 1, size -> size - 2) */
static inline long source(long i, long size, int reflect) {
    if (i >= 0 && i < size) return i;
    if (!reflect) return -1;
    return i < 0 ? -i : 2 * size - 2 - i;
}

/* channels [e, e + cn) of one tile: src[k][l] its 36 input pixels (NULL: zero), dst its first value in v */
ALWAYS_INLINE void input_chunk(const float *const src[6][6], float *dst, long e, long cn, long plane, int silu) {
    vf d[6][6], t[6][6];
    for (int k = 0; k < 6; k++)
        for (int l = 0; l < 6; l++) {
            vf z = {0};
            if (src[k][l]) {
                z = vload(src[k][l] + e, cn);
                if (silu) {
                    float tmp[VL];
                    silu_row((float *)&z, tmp, VL);
                }
            }
            d[k][l] = z;
        }
    for (int l = 0; l < 6; l++) {
        vf r[6];
        BT6(r, d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        for (int i = 0; i < 6; i++) t[i][l] = r[i];
    }
    for (int i = 0; i < 6; i++) {
        vf r[6];
        BT6(r, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
        for (int j = 0; j < 6; j++) vstore(dst + (i * 6 + j) * plane + e, r[j], cn);
    }
}

/* tile p of x (its 36 x c transformed values, planes `plane` floats apart, at dst); the output is
   (h + 2 pad - 2) x (w + 2 pad - 2), in th x tw tiles of 4x4 per sample */
ALWAYS_INLINE void input_tile(const float *x, float *dst, long p, long h, long w, long c, long th, long tw,
                              int silu, int reflect, long plane, long pad) {
    const long b = p / (th * tw), ty = (p / tw) % th, tx = p % tw, cv = c - c % VL;
    const float *src[6][6]; /* each tile position's input pixel, or NULL for a zero */
    for (int k = 0; k < 6; k++) {
        const long r = source(4 * ty - pad + k, h, reflect);
        for (int l = 0; l < 6; l++) {
            const long q = source(4 * tx - pad + l, w, reflect);
            src[k][l] = (r < 0 || q < 0) ? NULL : x + ((b * h + r) * w + q) * c;
        }
    }
    for (long e = 0; e < cv; e += VL) input_chunk(src, dst, e, VL, plane, silu);
    if (cv < c) input_chunk(src, dst, cv, c - cv, plane, silu);
}

/* tiles [p0, p1) of x into v (36, p1 - p0, c), whose 36 planes lie `plane` floats apart */
void gencli_winograd_input(const float *x, float *v, long n, long h, long w, long c, int silu, int reflect,
                           long p0, long p1, long plane, long pad) {
    const long th = (h + 2 * pad + 1) / 4, tw = (w + 2 * pad + 1) / 4;
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++)
        input_tile(x, v + (p - p0) * c, p, h, w, c, th, tw, silu, reflect, plane, pad);
}

/* channels [e, e + cn) of one tile's first na x nb outputs from src (its first value in m) into out at base */
ALWAYS_INLINE void output_chunk(const float *src, float *out, const float *bias, const float *sb, const float *residual,
                                long base, long w, long co, long e, long cn, long plane, int na, int nb, int relu) {
    vf t[4][6];
    for (int j = 0; j < 6; j++) {
        vf r[4];
        AT6(r, vload(src + (0 * 6 + j) * plane + e, cn), vload(src + (1 * 6 + j) * plane + e, cn),
            vload(src + (2 * 6 + j) * plane + e, cn), vload(src + (3 * 6 + j) * plane + e, cn),
            vload(src + (4 * 6 + j) * plane + e, cn), vload(src + (5 * 6 + j) * plane + e, cn));
        for (int a = 0; a < 4; a++) t[a][j] = r[a];
    }
    vf add = {0};
    if (bias) add += vload(bias + e, cn);
    if (sb) add += vload(sb + e, cn);
    for (int a = 0; a < na; a++) {
        vf y[4];
        AT6(y, t[a][0], t[a][1], t[a][2], t[a][3], t[a][4], t[a][5]);
        for (int bb = 0; bb < nb; bb++) {
            const long off = base + (a * w + bb) * co + e;
            vf r = residual ? y[bb] + add + vload(residual + off, cn) : y[bb] + add;
            vstore(out + off, relu ? vrelu(r) : r, cn);
        }
    }
}

/* tile p of the output (h x w, th x tw tiles per sample) from src (its 36 x co products, planes `plane`
   floats apart), plus bias, sample_bias and residual where not NULL; then ReLU with relu */
ALWAYS_INLINE void output_tile(const float *src, float *out, const float *bias, const float *sample_bias,
                               const float *residual, long p, long h, long w, long co, long th, long tw, long plane,
                               int relu) {
    const long b = p / (th * tw), ty = (p / tw) % th, tx = p % tw, cv = co - co % VL;
    const float *sb = sample_bias ? sample_bias + b * co : NULL;
    const long base = ((b * h + 4 * ty) * w + 4 * tx) * co;
    const int na = h - 4 * ty < 4 ? (int)(h - 4 * ty) : 4, nb = w - 4 * tx < 4 ? (int)(w - 4 * tx) : 4;
    if (na == 4 && nb == 4) { /* whole tiles: the specialised code */
        for (long e = 0; e < cv; e += VL) output_chunk(src, out, bias, sb, residual, base, w, co, e, VL, plane, 4, 4, relu);
        if (cv < co) output_chunk(src, out, bias, sb, residual, base, w, co, cv, co - cv, plane, 4, 4, relu);
    } else { /* the last row or column of tiles: full channel chunks still as vectors */
        for (long e = 0; e < cv; e += VL) output_chunk(src, out, bias, sb, residual, base, w, co, e, VL, plane, na, nb, relu);
        if (cv < co) output_chunk(src, out, bias, sb, residual, base, w, co, cv, co - cv, plane, na, nb, relu);
    }
}

/* tiles [p0, p1) of the output from m (36, p1 - p0, co; planes `plane` floats apart), plus bias (co),
   sample_bias (n, co) and residual (the output's shape, NHWC), each where not NULL; then ReLU with relu */
void gencli_winograd_output(const float *m, float *out, const float *bias, const float *sample_bias,
                            const float *residual, long n, long h, long w, long co, long p0, long p1, long plane,
                            int relu) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4;
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++)
        output_tile(m + (p - p0) * co, out, bias, sample_bias, residual, p, h, w, co, th, tw, plane, relu);
}

/* The fused kernel (gemm.h's fused_winograd): per group of tiles, the data transform, the 36 GEMMs and the
 * output transform, the group's transformed data and products in cache (the blocked path writes them to
 * memory and reads them back: ~2.25x the input and the output in traffic, which bounds layers of few
 * channels). The filters are read once per group: it pays where they are small (see
 * gencli.kernels.winograd.fused_applies). */
struct fused_args {
    const float *x, *bias, *sample_bias, *residual;
    float *out;
    long h, w, c, co, ho, wo, th, tw, pad;
    int silu, reflect, relu;
};

static void fused_input(const void *ctx, long p, float *dst, long plane) {
    const struct fused_args *f = ctx;
    input_tile(f->x, dst, p, f->h, f->w, f->c, f->th, f->tw, f->silu, f->reflect, plane, f->pad);
}

static void fused_output(const void *ctx, long p, float *src, long plane) {
    const struct fused_args *f = ctx;
    output_tile(src, f->out, f->bias, f->sample_bias, f->residual, p, f->ho, f->wo, f->co, f->th, f->tw, plane, f->relu);
}

/* the whole convolution of x (n, h, w, c) with u (36, c, co; co a multiple of VL) into out (n, ho, wo, co),
   ho = h + 2 pad - 2, wo likewise, in groups of `group` tiles; bias, sample_bias, residual and relu as
   gencli_winograd_output. Returns 0, or 1 when out of memory. */
int gencli_winograd_fused(const float *x, const float *u, float *out, const float *bias, const float *sample_bias,
                          const float *residual, long n, long h, long w, long c, long co, int silu, int reflect,
                          long pad, int relu, long group) {
    const long ho = h + 2 * pad - 2, wo = w + 2 * pad - 2, th = (ho + 3) / 4, tw = (wo + 3) / 4;
    const struct fused_args f = {x, bias, sample_bias, residual, out, h, w, c, co, ho, wo, th, tw, pad, silu, reflect,
                                 relu};
    return fused_winograd(&f, fused_input, fused_output, u, n * th * tw, 36, c, co, group);
}

/* floats per vector of the fused kernels' GEMM as built here (16: AVX-512; see gencli.kernels.winograd.fused_applies) */
int gencli_gemm_lanes(void) { return GV; }
