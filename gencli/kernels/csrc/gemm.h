/* The small GEMMs of gencli's fused Winograd kernels: one tile component's products for a group of tiles
 * that is in cache, m (rows x co) = v (rows x c) @ u (c x co), with register-blocked vector FMAs. For each
 * output value the sum runs over c in order, one FMA per term (as the BLAS kernels torch calls at these
 * sizes: the fused and the blocked paths gave the same bits in every layer measured). */
#ifndef GENCLI_GEMM_H
#define GENCLI_GEMM_H
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* The GEMM works in the machine's own vectors (gv, GV floats: a 64-byte vf on AVX2 is a pair of registers that
   GCC moved through memory in this kernel, 4-9x slower): GEMM_ACC accumulators, GEMM_ACC / kv tiles x kv
   vectors of output channels, kv <= GEMM_VECS (AVX-512: 32 registers, AVX2: 16); the blocks' tile counts all
   divide GEMM_ALIGN */
#if defined(__AVX512F__)
#define GV 16
#define GEMM_ACC 24
#define GEMM_VECS 4
#define GV_SPLAT(s) {s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}
#else
#define GV 8
#define GEMM_ACC 12
#define GEMM_VECS 3
#define GV_SPLAT(s) {s, s, s, s, s, s, s, s}
#endif
#define GEMM_ALIGN 24
typedef float gv __attribute__((vector_size(GV * 4), aligned(4), may_alias));

/* rows x kv vectors of m (row stride ldm) = v (rows x c, row stride c) @ u (c x kv vectors, row stride co) */
ALWAYS_INLINE void gemm_block(const float *restrict v, const float *restrict u, float *restrict m, long c, long co,
                              long ldm, int rows, int kv) {
    gv acc[GEMM_ACC];
    for (int r = 0; r < rows * kv; r++) acc[r] = (gv){0};
    for (long i = 0; i < c; i++) {
        gv b[GEMM_VECS];
        for (int k = 0; k < kv; k++) b[k] = *(const gv *)(u + i * co + k * GV);
        for (int r = 0; r < rows; r++) {
            const float s = v[r * c + i];
            const gv a = GV_SPLAT(s); /* a broadcast load (`(gv){0} + s` compiled to an add and a shuffle) */
            for (int k = 0; k < kv; k++) acc[r * kv + k] += a * b[k];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < kv; k++) *(gv *)(m + r * ldm + k * GV) = acc[r * kv + k];
}

/* one plane: m (rows x co, row stride co; co a multiple of GV) = v (rows x c) @ u (c x co), in blocks of
   GEMM_ACC / KV tiles x KV vectors of channels (KV = GEMM_VECS, the last block of channels narrower where co is
   not a multiple); rows is rounded up to whole blocks: v and m have room for a multiple of GEMM_ALIGN rows */
#define GEMM_PANEL(KV)                                                                                  \
    for (long r = 0; r < rows; r += GEMM_ACC / (KV))                                                    \
        gemm_block(v + r * c, u + k, m + r * co + k, c, co, co, GEMM_ACC / (KV), KV)
static inline void gemm_plane(const float *v, const float *u, float *m, long rows, long c, long co) {
    for (long k = 0; k < co; k += GEMM_VECS * GV) {
        switch (co - k >= GEMM_VECS * GV ? GEMM_VECS : (co - k) / GV) {
        case 1: GEMM_PANEL(1); break;
#if GEMM_VECS > 2
        case 2: GEMM_PANEL(2); break;
#endif
#if GEMM_VECS > 3
        case 3: GEMM_PANEL(3); break;
#endif
        default: GEMM_PANEL(GEMM_VECS); break;
        }
    }
}

/* A fused Winograd convolution of `tiles` tiles, `planes` tile components: for each group of `group` tiles
 * (a thread's unit of work), in(ctx, p, dst, plane) writes tile p's planes x c transformed values at dst
 * (planes `plane` floats apart), the planes' GEMMs with u (planes, c, co; co a multiple of 16) run here, and
 * out(ctx, p, src, plane) writes tile p's outputs from its planes x co products at src. The transformed data
 * and products stay in the core's cache instead of travelling to memory and back. Returns 0, or 1 when out
 * of memory (nothing written then). */
typedef void (*fused_tile_fn)(const void *ctx, long p, float *buf, long plane);

static inline int fused_winograd(const void *ctx, fused_tile_fn in, fused_tile_fn out, const float *u, long tiles,
                                 int planes, long c, long co, long group) {
    const long groups = (tiles + group - 1) / group;
    /* room for whole GEMM blocks (their spare rows computed and never read); planes one vector apart from a
       4 KiB multiple: the output transforms read all of a tile's planes at once */
    const long room = (group + GEMM_ALIGN - 1) / GEMM_ALIGN * GEMM_ALIGN, vplane = room * c + VL, mplane = room * co + VL;
    int failed = 0;
#pragma omp parallel
    {
        float *v = aligned_alloc(64, (size_t)(planes * vplane) * sizeof(float));
        float *m = aligned_alloc(64, (size_t)(planes * mplane) * sizeof(float));
        if (!v || !m) {
#pragma omp atomic write
            failed = 1;
        } else
            memset(v, 0, (size_t)(planes * vplane) * sizeof(float)); /* spare rows: finite values, not denormals */
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(static)
            for (long g = 0; g < groups; g++) {
                const long p0 = g * group, rows = tiles - p0 < group ? tiles - p0 : group;
                for (long p = 0; p < rows; p++) in(ctx, p0 + p, v + p * c, vplane);
                for (int i = 0; i < planes; i++) gemm_plane(v + i * vplane, u + i * c * co, m + i * mplane, rows, c, co);
                for (long p = 0; p < rows; p++) out(ctx, p0 + p, m + p * co, mplane);
            }
        }
        free(v);
        free(m);
    }
    return failed;
}

#endif
