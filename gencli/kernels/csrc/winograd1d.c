/* The data and output transforms of a one-axis Winograd F(m, r) on NHWC fp32 activations: the
 * 1 x r and r x 1 convolutions (stride 1, "same" padding (r - 1) / 2) behind
 * gencli.kernels.winograd1d (F(6, 7): alpha = 12 points; F(4, 3): alpha = 6). The alpha GEMMs
 * between the transforms run in torch's BLAS, or, in gencli_winograd1d_fused, in gemm.h's kernel.
 *
 *   input:  V[i, p, c] = sum_k BT[i][k] x[tile p's pixel k, c]   (zeros past either end)
 *   output: out[tile p's pixel a, o] = act(sum_i AT[a][i] M[i, p, o] + bias[o])
 *
 * A tile is m outputs along the axis: p = (b, t, q) for an r x 1 conv (axis 1, along H: q the
 * column), p = (b, q, t) for a 1 x r one (axis 0, along W: q the row); tile t reads the alpha
 * pixels from m t - pad and writes the (up to) m from m t. The matrices come from the caller
 * (gencli.kernels.winograd1d builds them exactly from the interpolation points). Pixels lie ldx
 * (input) and ldo (output) floats apart, so the output can be a channel slice of a wider tensor.
 */
#include "common.h"
#include "gemm.h"

#define MAX_ALPHA 12
#define MAX_M 6

/* pixel (b, s along the axis, q across it) of an n x h x w image batch */
ALWAYS_INLINE long pixel(long b, long s, long q, long h, long w, int axis) {
    return axis ? (b * h + s) * w + q : (b * h + q) * w + s;
}

/* tile p -> (b, t, q) in the order documented above */
ALWAYS_INLINE void tile_of(long p, long tn, long qn, int axis, long *b, long *t, long *q) {
    const long r = p % (tn * qn);
    *b = p / (tn * qn);
    *t = axis ? r / qn : r % tn;
    *q = axis ? r % qn : r / tn;
}

/* channels [e, e + cn) of one tile: src[k] its alpha input pixels (NULL: zero) */
ALWAYS_INLINE void input_chunk(const float *const src[MAX_ALPHA], float *dst, const float *bt, int alpha, long e,
                               long cn, long plane) {
    vf d[MAX_ALPHA];
    for (int k = 0; k < alpha; k++) {
        vf z = {0};
        d[k] = src[k] ? vload(src[k] + e, cn) : z;
    }
    for (int i = 0; i < alpha; i++) {
        vf r = {0};
        for (int k = 0; k < alpha; k++) r += bt[i * alpha + k] * d[k];
        vstore(dst + i * plane + e, r, cn);
    }
}

/* all channels of one tile, alpha a constant after inlining (the callers' 12 or 6) */
ALWAYS_INLINE void input_tile(const float *const src[MAX_ALPHA], float *dst, const float *bt, int alpha, long c,
                              long plane) {
    const long cv = c - c % VL;
    for (long e = 0; e < cv; e += VL) input_chunk(src, dst, bt, alpha, e, VL, plane);
    if (cv < c) input_chunk(src, dst, bt, alpha, cv, c - cv, plane);
}

/* tile p of x (its alpha x c transformed values, planes `plane` floats apart, at dst) */
ALWAYS_INLINE void input_at(const float *x, long ldx, float *dst, long p, long h, long w, long c, int axis, int r,
                            int m, const float *bt, long plane) {
    const int alpha = m + r - 1;
    const long pad = (r - 1) / 2, len = axis ? h : w, qn = axis ? w : h, tn = (len + m - 1) / m;
    long b, t, q;
    tile_of(p, tn, qn, axis, &b, &t, &q);
    const float *src[MAX_ALPHA];
    for (int k = 0; k < alpha; k++) {
        const long s = m * t - pad + k;
        src[k] = (s < 0 || s >= len) ? NULL : x + pixel(b, s, q, h, w, axis) * ldx;
    }
    if (alpha == 12) input_tile(src, dst, bt, 12, c, plane);
    else input_tile(src, dst, bt, 6, c, plane);
}

/* tiles [p0, p1) of x into v (alpha, p1 - p0, c), whose planes lie `plane` floats apart */
void gencli_winograd1d_input(const float *x, long ldx, float *v, long n, long h, long w, long c, int axis, int r,
                             int m, const float *bt, long p0, long p1, long plane) {
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++) input_at(x, ldx, v + (p - p0) * c, p, h, w, c, axis, r, m, bt, plane);
}

/* channels [e, e + cn) of one tile's first `no` outputs from src (its first value in m) */
ALWAYS_INLINE void output_chunk(const float *src, float *const dst[MAX_M], int no, const float *at, int alpha,
                                const float *bias, int relu, long e, long cn, long plane) {
    vf mv[MAX_ALPHA];
    for (int i = 0; i < alpha; i++) mv[i] = vload(src + i * plane + e, cn);
    vf add = {0};
    if (bias) add = vload(bias + e, cn);
    for (int a = 0; a < no; a++) {
        vf y = add;
        for (int i = 0; i < alpha; i++) y += at[a * alpha + i] * mv[i];
        vstore(dst[a] + e, relu ? vrelu(y) : y, cn);
    }
}

ALWAYS_INLINE void output_tile(const float *src, float *const dst[MAX_M], int no, const float *at, int alpha,
                               const float *bias, int relu, long co, long plane) {
    const long cv = co - co % VL;
    for (long e = 0; e < cv; e += VL) output_chunk(src, dst, no, at, alpha, bias, relu, e, VL, plane);
    if (cv < co) output_chunk(src, dst, no, at, alpha, bias, relu, cv, co - cv, plane);
}

/* tile p of the output (n x h x w pixels, ldo floats apart, co channels each) from src (its alpha x co
   products, planes `plane` floats apart), plus bias (co) where not NULL, then ReLU with relu */
ALWAYS_INLINE void output_at(const float *src, float *out, long ldo, const float *bias, int relu, long p, long h,
                             long w, long co, int axis, int r, int m, const float *at, long plane) {
    const int alpha = m + r - 1;
    const long len = axis ? h : w, qn = axis ? w : h, tn = (len + m - 1) / m;
    long b, t, q;
    tile_of(p, tn, qn, axis, &b, &t, &q);
    const int no = len - m * t < m ? (int)(len - m * t) : m;
    float *dst[MAX_M];
    for (int a = 0; a < no; a++) dst[a] = out + pixel(b, m * t + a, q, h, w, axis) * ldo;
    if (alpha == 12) output_tile(src, dst, no, at, 12, bias, relu, co, plane);
    else output_tile(src, dst, no, at, 6, bias, relu, co, plane);
}

/* tiles [p0, p1) of the output from mm (alpha, p1 - p0, co; planes `plane` floats apart) */
void gencli_winograd1d_output(const float *mm, float *out, long ldo, const float *bias, int relu, long n, long h,
                              long w, long co, int axis, int r, int m, const float *at, long p0, long p1, long plane) {
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++)
        output_at(mm + (p - p0) * co, out, ldo, bias, relu, p, h, w, co, axis, r, m, at, plane);
}

/* The whole convolution, fused (gemm.h's fused_winograd): per group of tiles the data transform, the alpha
   GEMMs and the output transform, the group's transforms in cache */
struct fused_args {
    const float *x, *bias, *bt, *at;
    float *out;
    long ldx, ldo, h, w, c, co;
    int relu, axis, r, m;
};

static void fused_input(const void *ctx, long p, float *dst, long plane) {
    const struct fused_args *f = ctx;
    input_at(f->x, f->ldx, dst, p, f->h, f->w, f->c, f->axis, f->r, f->m, f->bt, plane);
}

static void fused_output(const void *ctx, long p, float *src, long plane) {
    const struct fused_args *f = ctx;
    output_at(src, f->out, f->ldo, f->bias, f->relu, p, f->h, f->w, f->co, f->axis, f->r, f->m, f->at, plane);
}

/* the whole convolution of x with u (alpha, c, co; co a multiple of VL) into out, in groups of `group` tiles;
   the other arguments as gencli_winograd1d_input's and _output's. Returns 0, or 1 when out of memory. */
int gencli_winograd1d_fused(const float *x, long ldx, const float *u, float *out, long ldo, const float *bias,
                            int relu, long n, long h, long w, long c, long co, int axis, int r, int m,
                            const float *bt, const float *at, long group) {
    const long len = axis ? h : w, tiles = n * (h * w / len) * ((len + m - 1) / m);
    const struct fused_args f = {x, bias, bt, at, out, ldx, ldo, h, w, c, co, relu, axis, r, m};
    return fused_winograd(&f, fused_input, fused_output, u, tiles, m + r - 1, c, co, group);
}
