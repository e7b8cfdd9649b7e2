/* The data and output transforms of the 2-D Winograd F(4x4, 5x5) on NHWC fp32 activations (8 x 8
 * input tiles: alpha = m + r - 1 = 8 with m = 4, r = 5), behind gencli.kernels.winograd2d. The
 * matrices come from the caller (built exactly from interpolation points); the alpha^2 GEMMs
 * between the transforms run in torch's BLAS, or, in gencli_winograd2d_fused, in gemm.h's kernel.
 *
 *   input:  V[i*alpha + j, p, c] = sum_kl BT[i][k] d_p[k][l] BT[j][l], d_p the alpha x alpha tile at
 *           p = (b, ty, tx): input rows m ty - pad + k, columns m tx - pad + l (zeros outside)
 *   output: out[b, m ty + a, m tx + e, o] = act(sum_ij AT[a][i] M[i*alpha + j, p, o] AT[e][j] + bias[o])
 *
 * Output sides need not be multiples of m: the last row and column of tiles read zeros past the
 * input and write only the outputs that exist. Output pixels lie ldo floats apart, so the output
 * can be a channel slice of a wider tensor.
 */
#include "common.h"
#include "gemm.h"

#define ALPHA 8
#define M 4
#define R 5

/* The points are 0, +-p1, +-p2, +-p3 and infinity (gencli.kernels.winograd2d checks it): B^T's row
   for 0 uses the even inputs, the row for infinity the odd ones, and the rows for +-p are E + O and
   E - O of the same even part E (inputs 2, 4, 6) and odd part O (inputs 1, 3, 5); A^T's columns for
   +-p are equal in even rows and opposite in odd ones. The transforms use that: 32 multiply-adds
   per 8 inputs instead of 64, 26 per 4 outputs instead of 32. */

/* r = B^T d for eight vectors */
ALWAYS_INLINE void bt8(vf r[ALPHA], const vf d[ALPHA], const float *bt) {
    r[0] = bt[0] * d[0] + bt[2] * d[2] + bt[4] * d[4] + bt[6] * d[6];
    for (int i = 1; i < 7; i += 2) {
        const float *row = bt + i * ALPHA;
        vf even = row[2] * d[2] + row[4] * d[4] + row[6] * d[6], odd = row[1] * d[1] + row[3] * d[3] + row[5] * d[5];
        r[i] = even + odd;
        r[i + 1] = even - odd;
    }
    r[7] = bt[57] * d[1] + bt[59] * d[3] + bt[61] * d[5] + bt[63] * d[7];
}

/* r = A^T v for eight vectors */
ALWAYS_INLINE void at8(vf r[M], const vf v[ALPHA], const float *at) {
    vf sum[3], dif[3];
    for (int k = 0; k < 3; k++) {
        sum[k] = v[2 * k + 1] + v[2 * k + 2];
        dif[k] = v[2 * k + 1] - v[2 * k + 2];
    }
    for (int a = 0; a < M; a++) {
        const float *row = at + a * ALPHA;
        const vf *pair = a % 2 ? dif : sum;
        r[a] = row[0] * v[0] + row[1] * pair[0] + row[3] * pair[1] + row[5] * pair[2] + row[7] * v[7];
    }
}

/* channels [e, e + cn) of one tile: src[k][l] its input pixels (NULL: zero), dst its first value in v */
ALWAYS_INLINE void input_chunk(const float *const src[ALPHA][ALPHA], float *dst, const float *bt, long e, long cn,
                               long plane) {
    vf t[ALPHA][ALPHA], d[ALPHA][ALPHA]; /* d[l]: column l of the tile; t[l] = B^T d[l] */
    for (int k = 0; k < ALPHA; k++)
        for (int l = 0; l < ALPHA; l++) {
            vf z = {0};
            d[l][k] = src[k][l] ? vload(src[k][l] + e, cn) : z;
        }
    for (int l = 0; l < ALPHA; l++) bt8(t[l], d[l], bt);
    for (int i = 0; i < ALPHA; i++) { /* V row i = B^T (row i of B^T d) */
        vf row[ALPHA], r[ALPHA];
        for (int l = 0; l < ALPHA; l++) row[l] = t[l][i];
        bt8(r, row, bt);
        for (int j = 0; j < ALPHA; j++) vstore(dst + (i * ALPHA + j) * plane + e, r[j], cn);
    }
}

/* tile p of x (n x h x w x c; its alpha^2 x c transformed values at dst, planes `plane` floats apart); the
   output is (h + 2 pad - 4) x (w + 2 pad - 4) in tiles of 4 x 4 */
ALWAYS_INLINE void input_at(const float *x, float *dst, long p, long h, long w, long c, long pad, const float *bt,
                            long plane) {
    const long ho = h + 2 * pad - R + 1, wo = w + 2 * pad - R + 1;
    const long th = (ho + M - 1) / M, tw = (wo + M - 1) / M, cv = c - c % VL;
    const long b = p / (th * tw), ty = (p / tw) % th, tx = p % tw;
    const float *src[ALPHA][ALPHA];
    for (int k = 0; k < ALPHA; k++) {
        const long y = M * ty - pad + k;
        for (int l = 0; l < ALPHA; l++) {
            const long q = M * tx - pad + l;
            src[k][l] = (y < 0 || y >= h || q < 0 || q >= w) ? NULL : x + ((b * h + y) * w + q) * c;
        }
    }
    for (long e = 0; e < cv; e += VL) input_chunk(src, dst, bt, e, VL, plane);
    if (cv < c) input_chunk(src, dst, bt, cv, c - cv, plane);
}

/* tiles [p0, p1) of x into v (alpha^2, p1 - p0, c), whose planes lie `plane` floats apart */
void gencli_winograd2d_input(const float *x, float *v, long n, long h, long w, long c, long pad, const float *bt,
                             long p0, long p1, long plane) {
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++) input_at(x, v + (p - p0) * c, p, h, w, c, pad, bt, plane);
}

/* channels [e, e + cn) of one tile's first na x nb outputs from src (its first value in mm) into
   out at base (output pixels ldo floats apart, rows w pixels long) */
ALWAYS_INLINE void output_chunk(const float *src, float *out, long base, long w, long ldo, const float *at,
                                const float *bias, int relu, long e, long cn, long plane, int na, int nb) {
    vf t[ALPHA][M]; /* t[j] = A^T (column j of M) */
    for (int j = 0; j < ALPHA; j++) {
        vf mv[ALPHA];
        for (int i = 0; i < ALPHA; i++) mv[i] = vload(src + (i * ALPHA + j) * plane + e, cn);
        at8(t[j], mv, at);
    }
    vf add = {0};
    if (bias) add = vload(bias + e, cn);
    for (int a = 0; a < na; a++) {
        vf row[ALPHA], y[M];
        for (int j = 0; j < ALPHA; j++) row[j] = t[j][a];
        at8(y, row, at);
        for (int bb = 0; bb < nb; bb++) {
            vf s = y[bb] + add;
            vstore(out + base + (a * w + bb) * ldo + e, relu ? vrelu(s) : s, cn);
        }
    }
}

/* tile p of the output (n x ho x wo pixels, ldo floats apart, co channels each) from src (its alpha^2 x co
   products, planes `plane` floats apart), plus bias (co) where not NULL, then ReLU with relu */
ALWAYS_INLINE void output_at(const float *src, float *out, long ldo, const float *bias, int relu, long p, long ho,
                             long wo, long co, const float *at, long plane) {
    const long th = (ho + M - 1) / M, tw = (wo + M - 1) / M, cv = co - co % VL;
    const long b = p / (th * tw), ty = (p / tw) % th, tx = p % tw;
    const long base = ((b * ho + M * ty) * wo + M * tx) * ldo;
    const int na = ho - M * ty < M ? (int)(ho - M * ty) : M, nb = wo - M * tx < M ? (int)(wo - M * tx) : M;
    if (na == M && nb == M) { /* whole tiles: the specialised code */
        for (long e = 0; e < cv; e += VL) output_chunk(src, out, base, wo, ldo, at, bias, relu, e, VL, plane, M, M);
        if (cv < co) output_chunk(src, out, base, wo, ldo, at, bias, relu, cv, co - cv, plane, M, M);
    } else {
        for (long e = 0; e < cv; e += VL) output_chunk(src, out, base, wo, ldo, at, bias, relu, e, VL, plane, na, nb);
        if (cv < co) output_chunk(src, out, base, wo, ldo, at, bias, relu, cv, co - cv, plane, na, nb);
    }
}

/* tiles [p0, p1) of the output from mm (alpha^2, p1 - p0, co; planes `plane` floats apart) */
void gencli_winograd2d_output(const float *mm, float *out, long ldo, const float *bias, int relu, long n, long ho,
                              long wo, long co, const float *at, long p0, long p1, long plane) {
    (void)n;
#pragma omp parallel for schedule(static)
    for (long p = p0; p < p1; p++) output_at(mm + (p - p0) * co, out, ldo, bias, relu, p, ho, wo, co, at, plane);
}

/* The whole convolution, fused (gemm.h's fused_winograd): per group of tiles the data transform, the alpha^2
   GEMMs and the output transform, the group's transforms in cache */
struct fused_args {
    const float *x, *bias, *bt, *at;
    float *out;
    long h, w, c, co, pad, ho, wo, ldo;
    int relu;
};

static void fused_input(const void *ctx, long p, float *dst, long plane) {
    const struct fused_args *f = ctx;
    input_at(f->x, dst, p, f->h, f->w, f->c, f->pad, f->bt, plane);
}

static void fused_output(const void *ctx, long p, float *src, long plane) {
    const struct fused_args *f = ctx;
    output_at(src, f->out, f->ldo, f->bias, f->relu, p, f->ho, f->wo, f->co, f->at, plane);
}

/* the whole convolution of x (n x h x w x c) with u (alpha^2, c, co; co a multiple of VL) into out, in groups
   of `group` tiles; the other arguments as gencli_winograd2d_input's and _output's. Returns 0, or 1 when out
   of memory (nothing written then). */
int gencli_winograd2d_fused(const float *x, const float *u, float *out, long ldo, const float *bias, int relu, long n,
                            long h, long w, long c, long co, long pad, const float *bt, const float *at, long group) {
    const long ho = h + 2 * pad - R + 1, wo = w + 2 * pad - R + 1;
    const struct fused_args f = {x, bias, bt, at, out, h, w, c, co, pad, ho, wo, ldo, relu};
    return fused_winograd(&f, fused_input, fused_output, u, n * ((ho + M - 1) / M) * ((wo + M - 1) / M), ALPHA * ALPHA,
                          c, co, group);
}
