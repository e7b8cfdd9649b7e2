/* GroupNorm (+ per-sample bias before it, + SiLU or ReLU after it) on NHWC activations, fp32 or
 * bf16 in and out, in one call: the CPU kernel of gencli.kernels.native (compiled on the user's
 * machine with -O3 -march=native; OpenMP for threads, from the libgomp torch has loaded).
 *
 *   y[n, p, c] = act(((x[n, p, c] + t[n, c]) - mean[n, g]) * rstd[n, g] * gamma[c] + beta[c])
 *
 * with g = c / (C / G) and mean/var over the (p, c) of the group, as torch's GroupNorm computes
 * them (biased variance, eps inside the square root). The statistics take one pass, shifted by each
 * channel's first value (no E[x^2] - E[x]^2 cancellation), the normalisation a second. Work is cut
 * into units of (sample, block of whole groups) so that one unit's data (a sample's pixels x the
 * block's channels) stays in the core's cache over both passes; units are shared among threads.
 * The input can also be two tensors read as their channel concatenation (the UNet's skip
 * connections: the concatenated tensor is never written).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct {
    const void *x, *x2; /* x2 NULL, or the second of two inputs read as one: x holds each pixel's
                           channels [0, c1), x2 its channels [c1, c) (a concatenation not made) */
    long c1;
    void *y;
    const float *gamma, *beta, *t; /* gamma, beta (C) or NULL; t (N, C) or NULL */
    long n, hw, c, groups, blocks;
    float eps;
    int x_bf16, y_bf16, act; /* act: 0 none, 1 SiLU, 2 ReLU */
} gn_job;

/* values [offset, offset + n) of one input array as fp32 into dst */
static inline void convert(const gn_job *j, const void *x, long offset, long n, float *restrict dst) {
    if (!j->x_bf16) {
        memcpy(dst, (const float *)x + offset, n * sizeof(float));
        return;
    }
    const uint16_t *restrict src = (const uint16_t *)x + offset;
    uint32_t *restrict d = (uint32_t *)dst;
    for (long i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}

/* the cb values at `offset` of the (N, HW, C) input as fp32, in one or two runs: values [at[r], at[r + 1]) of
   the row at p[r]. The row itself (fp32, one input), its two parts (fp32, a row across both inputs: read where
   they lie, not copied), or a copy in buf (bf16) */
typedef struct {
    const float *p[2];
    long at[3];
    int runs;
} gn_row;
static inline gn_row load_row(const gn_job *j, long offset, long cb, float *restrict buf) {
    gn_row r = {{buf, NULL}, {0, cb, cb}, 1};
    const void *x = j->x;
    if (j->x2) { /* which input, and where: pixel q, channel k */
        const long q = offset / j->c, k = offset % j->c, c2 = j->c - j->c1;
        if (k < j->c1 && k + cb > j->c1) { /* across both */
            if (!j->x_bf16) {
                r.p[0] = (const float *)j->x + q * j->c1 + k;
                r.p[1] = (const float *)j->x2 + q * c2;
                r.at[1] = j->c1 - k;
                r.runs = 2;
                return r;
            }
            convert(j, j->x, q * j->c1 + k, j->c1 - k, buf);
            convert(j, j->x2, q * c2, k + cb - j->c1, buf + (j->c1 - k));
            return r;
        }
        x = k < j->c1 ? j->x : j->x2;
        offset = k < j->c1 ? q * j->c1 + k : q * c2 + (k - j->c1);
    }
    if (!j->x_bf16) r.p[0] = (const float *)x + offset;
    else convert(j, x, offset, cb, buf);
    return r;
}

static inline void store_row(const gn_job *j, long offset, long cb, const float *restrict v) {
    if (!j->y_bf16) {
        memcpy((float *)j->y + offset, v, cb * sizeof(float));
        return;
    }
    const uint32_t *restrict u = (const uint32_t *)v;
    uint16_t *restrict dst = (uint16_t *)j->y + offset;
    for (long i = 0; i < cb; i++) {
        uint32_t r = (u[i] + 0x7fffu + ((u[i] >> 16) & 1u)) >> 16; /* round to nearest even */
        dst[i] = (uint16_t)(((u[i] & 0x7fffffffu) > 0x7f800000u) ? ((u[i] >> 16) | 0x40u) : r); /* NaN stays NaN */
    }
}

/* o = act((v - m) * a + b) for n <= APPLY channels. Specialised (always inlined with the
   constant) for n == APPLY, where the chunk stays in vector registers: one pass of loads, the
   arithmetic and one store (separate row loops for the affine, the exponential and the division
   stored and reloaded the row three times: ~2x slower). A partial chunk's SiLU runs on a whole
   (zero-filled) chunk too: the vector division's bits, whichever chunk a channel falls in (a row
   read in two runs has its partial chunks elsewhere). */
#define APPLY 16
static inline __attribute__((always_inline)) void apply_chunk(const float *restrict v, const float *restrict m,
                                                              const float *restrict a, const float *restrict b,
                                                              float *restrict o, long n, int act) {
    float r[APPLY] = {0}, tmp[APPLY];
    for (long i = 0; i < n; i++) r[i] = (v[i] - m[i]) * a[i] + b[i];
    if (act == 1) silu_row(r, tmp, APPLY);
    else if (act == 2)
        for (long i = 0; i < n; i++) r[i] = r[i] < 0.0f ? 0.0f : r[i]; /* NaN stays NaN, as torch's relu */
    for (long i = 0; i < n; i++) o[i] = r[i];
}

/* o = act((v - m) * a + b) for n channels, in chunks of APPLY */
static inline void apply_run(const float *restrict v, const float *restrict m, const float *restrict a,
                             const float *restrict b, float *restrict o, long n, int act) {
    const long nv = n - n % APPLY;
    for (long i = 0; i < nv; i += APPLY) apply_chunk(v + i, m + i, a + i, b + i, o + i, APPLY, act);
    if (nv < n) apply_chunk(v + nv, m + nv, a + nv, b + nv, o + nv, n - nv, act);
}

/* one unit: sample n, channels [c0, c0 + cb); scratch: SCRATCH * cb floats */
#define SCRATCH 12 /* 8 rows of floats, 2 of doubles */
#define CHUNK 256
static void run_unit(const gn_job *j, long unit, float *restrict scratch) {
    const long cb = j->c / j->blocks, d = j->c / j->groups, n = unit / j->blocks;
    const long c0 = (unit % j->blocks) * cb, base = n * j->hw * j->c + c0;
    float *restrict m = scratch, *restrict a = scratch + cb, *restrict b = scratch + 2 * cb;
    float *restrict k = scratch + 3 * cb, *restrict acc = scratch + 4 * cb, *restrict acc2 = scratch + 5 * cb;
    float *restrict buf = scratch + 6 * cb, *restrict o = scratch + 7 * cb;
    const float *t = j->t ? j->t + n * j->c + c0 : NULL;
    const double count = (double)j->hw * (double)d;
    /* one pass: sums of d = x - k and of d^2 with k = the channel's first value (the shift keeps
       the d^2 sum free of cancellation); the group's mean and squared deviations from the
       channels' by the parallel-variance formula, in double */
    double *restrict s1 = (double *)(scratch + 8 * cb), *restrict s2 = s1 + cb;
    const gn_row first = load_row(j, base, cb, buf);
    for (int r = 0; r < first.runs; r++)
        for (long i = first.at[r]; i < first.at[r + 1]; i++) k[i] = first.p[r][i - first.at[r]];
    for (long i = 0; i < cb; i++) { s1[i] = 0.0; s2[i] = 0.0; }
    for (long p0 = 0; p0 < j->hw; p0 += CHUNK) { /* fp32 sums over CHUNK pixels, then into double */
        const long p1 = p0 + CHUNK < j->hw ? p0 + CHUNK : j->hw;
        for (long i = 0; i < cb; i++) { acc[i] = 0.0f; acc2[i] = 0.0f; }
        for (long p = p0; p < p1; p++) {
            const gn_row v = load_row(j, base + p * j->c, cb, buf);
            for (int r = 0; r < v.runs; r++) {
                const long at = v.at[r], n = v.at[r + 1] - at;
                const float *restrict x = v.p[r], *restrict kr = k + at;
                float *restrict s = acc + at, *restrict s2r = acc2 + at;
                for (long i = 0; i < n; i++) {
                    float e = x[i] - kr[i];
                    s[i] += e;
                    s2r[i] += e * e;
                }
            }
        }
        for (long i = 0; i < cb; i++) { s1[i] += acc[i]; s2[i] += acc2[i]; }
    }
    const double px = (double)j->hw;
    for (long g = 0; g < cb; g += d) {
        double mean = 0, m2 = 0;
        for (long i = g; i < g + d; i++) mean += (double)k[i] + s1[i] / px + (t ? (double)t[i] : 0.0);
        mean /= (double)d;
        for (long i = g; i < g + d; i++) {
            double ci = (double)k[i] + s1[i] / px + (t ? (double)t[i] : 0.0); /* channel mean */
            m2 += (s2[i] - s1[i] * s1[i] / px) + px * (ci - mean) * (ci - mean);
        }
        if (m2 < 0) m2 = 0;
        float r = (float)(1.0 / sqrt(m2 / count + (double)j->eps));
        /* m[i]: the group mean minus t[i] (x - m[i] = x + t - mean) */
        for (long i = g; i < g + d; i++) m[i] = (float)(mean - (t ? (double)t[i] : 0.0));
        for (long i = g; i < g + d; i++) { /* a[i] = rstd * gamma, b[i] = beta */
            a[i] = j->gamma ? r * j->gamma[c0 + i] : r;
            b[i] = j->beta ? j->beta[c0 + i] : 0.0f;
        }
    }
    for (long p = 0; p < j->hw; p++) {
        const long offset = base + p * j->c;
        const gn_row v = load_row(j, offset, cb, buf);
        /* fp32 out: straight into y; bf16: into o, then rounded */
        float *dst = j->y_bf16 ? o : (float *)j->y + offset;
        for (int r = 0; r < v.runs; r++) {
            const long at = v.at[r];
            apply_run(v.p[r], m + at, a + at, b + at, dst + at, v.at[r + 1] - at, j->act);
        }
        if (j->y_bf16) store_row(j, offset, cb, o);
    }
}

/* y = act(GroupNorm(x + t)), x one input or (with x2) the channel concatenation of two: x with c1
   channels per pixel, x2 with c - c1. Returns 0 on success, 1 on bad arguments, 2 when scratch
   memory could not be had. */
int gencli_group_norm_nhwc(const void *x, const void *x2, long c1, void *y, int x_bf16, int y_bf16,
                           const float *gamma, const float *beta, const float *t, long n, long hw, long c,
                           long groups, long blocks, float eps, int act, int threads) {
    if ((x2 && (c1 < 1 || c1 >= c)) || n < 1 || hw < 1 || c < 1 || groups < 1 || c % groups || blocks < 1 || groups % blocks || threads < 1
        || act < 0 || act > 2)
        return 1;
    const gn_job job = {x, x2, c1, y, gamma, beta, t, n, hw, c, groups, blocks, eps, x_bf16, y_bf16, act};
    const long units = n * blocks, cb = c / blocks;
    int failed = 0;
    /* OpenMP from the process's libgomp: torch's own thread pool, whose threads are still
       spinning from the last operator, picks the units up (own pthreads would compete with them) */
#pragma omp parallel num_threads(threads < units ? threads : (int)units) reduction(| : failed)
    {
        float *scratch = (float *)malloc(SCRATCH * cb * sizeof(float));
        if (!scratch) failed = 1;
#pragma omp for schedule(static)
        for (long u = 0; u < units; u++)
            if (scratch) run_unit(&job, u, scratch);
        free(scratch);
    }
    return failed ? 2 : 0;
}
