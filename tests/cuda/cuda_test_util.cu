// Helpers of the GPU tests (cuda_tests.h).
#include <cmath>
#include <cstdio>

#include "cuda_tests.h"

extern "C" {
#include "base/rng.h"
}

std::vector<float> rand_vec(size_t n, uint64_t seed, float scale) {
    Rng r;
    rng_seed(&r, seed);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = scale * (2.0f * (float)rng_uniform(&r) - 1.0f);
    return v;
}

void round_bf16(std::vector<float> &v) {
    for (float &x : v) x = __bfloat162float(__float2bfloat16(x));
}

bf16 *to_dev_bf16(const std::vector<float> &h) {
    std::vector<bf16> b(h.size());
    for (size_t i = 0; i < h.size(); i++) b[i] = __float2bfloat16(h[i]);
    return to_dev(b);
}

std::vector<float> from_dev_bf16(const bf16 *d, size_t n) {
    std::vector<bf16> b = from_dev(d, n);
    std::vector<float> h(n);
    for (size_t i = 0; i < n; i++) h[i] = __bfloat162float(b[i]);
    return h;
}

double rel_err(const char *what, const std::vector<float> &got, const std::vector<float> &want,
               double tol) {
    if (got.size() != want.size()) {
        std::printf("\n    %s: %zu values, expected %zu\n", what, got.size(), want.size());
        return INFINITY;
    }
    double scale = 1e-30, worst = 0.0;
    size_t at = 0;
    for (float w : want) scale = std::fmax(scale, std::fabs((double)w));
    for (size_t i = 0; i < got.size(); i++) {
        double d = std::isfinite(got[i]) || !std::isfinite(want[i])
                       ? std::fabs((double)got[i] - (double)want[i])
                       : INFINITY;
        if (std::isnan(d)) d = INFINITY; // NaN where NaN was expected still fails
        if (d > worst || (i == 0 && d == worst)) worst = d, at = i;
    }
    const double err = worst / scale;
    if (!(err <= tol))
        std::printf("\n    %s: relative error %.3g > %.3g at [%zu]: got %.9g, expected %.9g\n",
                    what, err, tol, at, got.empty() ? 0.0 : got[at], want.empty() ? 0.0 : want[at]);
    return err;
}
