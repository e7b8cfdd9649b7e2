/* Shared by gencli's C kernels (the .c files beside this one). */
#ifndef GENCLI_COMMON_H
#define GENCLI_COMMON_H
#include <stdint.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* exp(x) to ~2e-7 relative on [-87, 88], branch-free so that loops vectorise: 2^k e^r, |r| <= ln2/2 */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23) */
    float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f
                + r * (0.0083333338f + r * 0.0013888889f)))));
    union { uint32_t u; float f; } s;
    s.u = (uint32_t)((int32_t)k + 127) << 23;
    return p * s.f;
}

/* o[i] = o[i] / den[i] to ~1 ulp: a hardware reciprocal estimate and one Newton step (vdivps
   would be the loop's bottleneck: ~10 cycles per 16 lanes) */
static inline void divide_row(float *restrict o, const float *restrict den, long cb) {
    long i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= cb; i += 16) {
        __m512 dv = _mm512_loadu_ps(den + i), r = _mm512_rcp14_ps(dv);
        r = _mm512_mul_ps(r, _mm512_fnmadd_ps(dv, r, _mm512_set1_ps(2.0f)));
        _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), r));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= cb; i += 8) {
        __m256 dv = _mm256_loadu_ps(den + i), r = _mm256_rcp_ps(dv);
        r = _mm256_mul_ps(r, _mm256_fnmadd_ps(dv, r, _mm256_set1_ps(2.0f)));
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), r));
    }
#endif
    for (; i < cb; i++) o[i] = o[i] / den[i];
}

/* o[i] = silu(o[i]) = o[i] / (1 + exp(-o[i])); tmp: n floats of scratch */
static inline void silu_row(float *restrict o, float *restrict tmp, long n) {
    for (long i = 0; i < n; i++) tmp[i] = 1.0f + exp_approx(-o[i]);
    divide_row(o, tmp, n);
}

/* 16 floats: one AVX-512 register (two AVX2 ones); unaligned loads and stores are fine; vi: the
   lane masks of their comparisons */
typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(64)));
#define VL 16

/* the n <= VL floats at p as a vector (the rest zero), and back: the last, partial block of channels
   takes the same code as the full ones. Callers are specialised for n == VL (ALWAYS_INLINE, called
   with the constant), where these are single unaligned vector moves (a memcpy into a zeroed vector
   compiled to two 32-byte stores and a 64-byte reload, a store-forwarding stall per load: 2-3x
   slower transforms). */
#define ALWAYS_INLINE static inline __attribute__((always_inline))
ALWAYS_INLINE vf vload(const float *p, long n) {
    if (n == VL) return *(const vf *)p;
    vf v = {0};
    for (long i = 0; i < n; i++) v[i] = p[i];
    return v;
}
ALWAYS_INLINE void vstore(float *p, vf v, long n) {
    if (n == VL) *(vf *)p = v;
    else for (long i = 0; i < n; i++) p[i] = v[i];
}

/* max(v, 0) per lane; NaN stays NaN, as torch's relu (vector compares and a mask: a loop over
   the lanes compiled to scalar code, which made the fused output transforms slower than a
   separate ReLU pass) */
ALWAYS_INLINE vf vrelu(vf v) {
    const vf z = {0};
    return (vf)((vi)v & ((v >= z) | (v != v)));
}

#endif
