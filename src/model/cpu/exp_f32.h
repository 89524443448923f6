// e^x in float for the CPU kernels: a fixed sequence of IEEE operations (FMAs, one multiply, and
// integer moves), so that the same input gives the same bits on every machine and in every lane
// of a vector, and loops of it vectorize (#pragma omp simd) where the libm's expf does not.
//
// x is clamped to [-87, 88] first (a NaN passes through): below, the result is e^-87 ~ 1.6e-38
// instead of a smaller number or 0, above e^88 ~ 1.7e38 instead of a larger one or inf. The
// kernels use it for softmax terms (arguments <= 0, where 1.6e-38 against a sum >= 1 is nothing)
// and sigmoids (where e^88 and inf both give 1 / (1 + e^88) = 0 to float precision). Within 2
// ulp of e^x inside the range (tests/test_exp.c).
#ifndef GEMC_CPU_EXP_F32_H
#define GEMC_CPU_EXP_F32_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x; // comparisons with a NaN are false: it stays
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln 2) in the low mantissa bits of t (1.5 * 2^23 fixes the exponent)
    const float t = fmaf(x, 1.44269504088896341f, 12582912.0f);
    const float n = t - 12582912.0f;
    // r = x - n ln 2, with ln 2 = 0.693359375 (exact in 9 bits) - 2.12194440e-4
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    // e^r for |r| <= ln 2 / 2: Taylor to degree 7 (truncation < 6e-9, relative)
    float p = 1.98412698e-4f;
    p = fmaf(p, r, 1.38888889e-3f);
    p = fmaf(p, r, 8.33333333e-3f);
    p = fmaf(p, r, 4.16666667e-2f);
    p = fmaf(p, r, 1.66666667e-1f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    // 2^n from the bits of t (n = bits(t) - bits(1.5 * 2^23)), in unsigned arithmetic
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    const uint32_t sb = (tb - 0x4B400000u + 127u) << 23;
    float s;
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

#endif
