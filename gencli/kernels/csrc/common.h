/* Shared by gencli's C kernels (gencli/kernels/csrc/*.c). */
#ifndef GENCLI_COMMON_H
#define GENCLI_COMMON_H
#include <stdint.h>

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

#endif
