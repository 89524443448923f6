// exp_f32 (src/model/cpu/exp_f32.h), the exponential of the CPU kernels: within 2 ulp of the exact
// value over its range, the same bits in a vectorized loop as one at a time, NaN kept.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/exp_f32.h"
#include "tests.h"

// ulps between a float and the exact value e (as double)
static double ulp_error(float got, double e) {
    const double ulp = ldexp(1.0, ilogb(e) - 23);
    return fabs((double)got - e) / ulp;
}

static void test_accuracy(void) {
    double worst = 0;
    long n = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.000731f, n++) {
        const double err = ulp_error(exp_f32(x), exp((double)x));
        if (err > worst) worst = err;
    }
    // a million consecutive floats around 0, where the polynomial does all the work
    float x = -3e-2f;
    for (int i = 0; i < 1000000; i++, n++, x = nextafterf(x, 1.0f)) {
        const double err = ulp_error(exp_f32(x), exp((double)x));
        if (err > worst) worst = err;
    }
    printf("\n  %ld values, worst %.2f ulp", n, worst);
    CU_ASSERT(worst <= 2.0);
    CU_ASSERT_EQUAL(exp_f32(0.0f), 1.0f);
    CU_ASSERT(exp_f32(-1000.0f) > 0.0f && exp_f32(-1000.0f) < 2e-38f); // clamped, not 0
    CU_ASSERT(exp_f32(1000.0f) > 1e38f && isfinite(exp_f32(1000.0f)));
    CU_ASSERT(isnan(exp_f32(NAN)));
}

// The loop the kernels write (#pragma omp simd) gives the same bits as one call at a time, at
// every offset: an element's value does not depend on whether a vector or the tail took it.
static void test_vector_equals_scalar(void) {
    enum { N = 1003 };
    static float x[N], v[N];
    for (int i = 0; i < N; i++) x[i] = -90.0f + 0.179f * (float)i;
    for (int off = 0; off < 8; off++) {
#pragma omp simd
        for (int i = off; i < N; i++) v[i] = exp_f32(x[i]);
        for (int i = off; i < N; i++) {
            const float s = exp_f32(x[i]);
            if (memcmp(&s, &v[i], sizeof s) != 0) {
                CU_FAIL("a vector lane differs from the scalar call");
                return;
            }
        }
    }
}

void register_exp_tests(void) {
    static const TestCase tests[] = {
        {"within 2 ulp of exp over [-87, 88]; clamps; NaN", test_accuracy},
        {"vectorized loop = one call at a time (bits)", test_vector_equals_scalar},
        {NULL, NULL},
    };
    add_suite("exp", tests);
}
