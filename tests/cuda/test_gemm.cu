// The row-major GEMM wrapper (src/model/cuda/gemm.cuh) against a double-precision loop: every
// transpose pair, bf16 and fp32 outputs, beta 0 and 1 (in place and into another buffer), the
// bias epilogue, leading dimensions wider than the matrix, and the model's three uses. On the
// device this is cuBLASLt's row-major mapping; under the emulator, its stand-in loop.
#include <cmath>

#include "model/cuda/gemm.cuh"
#include "cuda_tests.h"

// D = op(A) op(B) + beta C (+ bias), in double, from the bf16-rounded inputs.
static std::vector<float> reference(int ta, int tb, int M, int N, int K,
                                    const std::vector<float> &A, int lda,
                                    const std::vector<float> &B, int ldb, float beta,
                                    const std::vector<float> &C, int ldd,
                                    const std::vector<float> *bias) {
    std::vector<float> D(C);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (double)(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            if (beta != 0.0f) s += beta * (double)C[(size_t)i * ldd + j];
            if (bias) s += (*bias)[j];
            D[(size_t)i * ldd + j] = (float)s;
        }
    return D;
}

static void check_case(Gemm *g, int ta, int tb, int M, int N, int K, int pad, GemmOut out,
                       float beta, int with_bias, uint64_t seed) {
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldd = N + pad;
    const int rows_a = ta ? K : M, rows_b = tb ? N : K;
    std::vector<float> A = rand_vec((size_t)rows_a * lda, seed),
                       B = rand_vec((size_t)rows_b * ldb, seed + 1),
                       C = rand_vec((size_t)M * ldd, seed + 2), bias = rand_vec(N, seed + 3);
    round_bf16(A), round_bf16(B), round_bf16(bias);
    if (out == GEMM_OUT_BF16) round_bf16(C);
    std::vector<float> want =
        reference(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldd, with_bias ? &bias : nullptr);
    bf16 *dA = to_dev_bf16(A), *dB = to_dev_bf16(B), *dbias = to_dev_bf16(bias);
    std::vector<float> got;
    if (out == GEMM_OUT_F32) {
        float *dC = to_dev(C);
        gemm(g, ta, tb, M, N, K, dA, lda, dB, ldb, beta, beta != 0.0f ? dC : nullptr, dC, ldd, out,
             nullptr, 0);
        got = from_dev(dC, C.size());
        cudaCheck(cudaFree(dC));
    } else {
        bf16 *dC = to_dev_bf16(C);
        gemm(g, ta, tb, M, N, K, dA, lda, dB, ldb, beta, beta != 0.0f ? dC : nullptr, dC, ldd, out,
             with_bias ? dbias : nullptr, 0);
        got = from_dev_bf16(dC, C.size());
        cudaCheck(cudaFree(dC));
    }
    char what[128];
    std::snprintf(what, sizeof what, "gemm trans %d%d %dx%dx%d pad %d %s beta %g%s", ta, tb, M, N,
                  K, pad, out == GEMM_OUT_F32 ? "f32" : "bf16", beta, with_bias ? " bias" : "");
    // fp32 sums of K bf16 products: 1e-5 of the scale for fp32 outputs, bf16 rounding otherwise
    CHECK_REL(what, got, want, out == GEMM_OUT_F32 ? 1e-5 : TOL_BF16);
    cudaCheck(cudaFree(dA)), cudaCheck(cudaFree(dB)), cudaCheck(cudaFree(dbias));
}

static void test_gemm_shapes(void) {
    Gemm *g = gemm_create();
    uint64_t seed = 1;
    const int M = CUDA_TEST_BIG ? 300 : 13, N = CUDA_TEST_BIG ? 257 : 11,
              K = CUDA_TEST_BIG ? 1000 : 19;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int pad = 0; pad <= 8; pad += 8) {
                check_case(g, ta, tb, M, N, K, pad, GEMM_OUT_F32, 0.0f, 0, seed += 4);
                check_case(g, ta, tb, M, N, K, pad, GEMM_OUT_F32, 1.0f, 0, seed += 4);
                check_case(g, ta, tb, M, N, K, pad, GEMM_OUT_BF16, 0.0f, 0, seed += 4);
                check_case(g, ta, tb, M, N, K, pad, GEMM_OUT_BF16, 0.0f, 1, seed += 4);
            }
    // the model's shapes: forward (0,1), dinp (0,0), dweight (1,0 with beta 1), and one row
    check_case(g, 0, 1, 1, N, K, 0, GEMM_OUT_BF16, 0.0f, 1, seed += 4);
    check_case(g, 0, 0, M, K, N, 0, GEMM_OUT_F32, 1.0f, 0, seed += 4);
    check_case(g, 1, 0, N, K, M, 0, GEMM_OUT_F32, 1.0f, 0, seed += 4);
    gemm_free(g);
}

// The residual form: D = Cin + op(A) op(B) with Cin another buffer, which stays as it was.
static void test_gemm_into_other_buffer(void) {
    Gemm *g = gemm_create();
    const int M = 7, N = 9, K = 5;
    std::vector<float> A = rand_vec(M * K, 11), B = rand_vec(N * K, 12), C = rand_vec(M * N, 13);
    round_bf16(A), round_bf16(B);
    std::vector<float> want = reference(0, 1, M, N, K, A, K, B, K, 1.0f, C, N, nullptr);
    bf16 *dA = to_dev_bf16(A), *dB = to_dev_bf16(B);
    float *dC = to_dev(C), *dD = dev_alloc<float>(C.size());
    gemm(g, 0, 1, M, N, K, dA, K, dB, K, 1.0f, dC, dD, N, GEMM_OUT_F32, nullptr, 0);
    CHECK_REL("gemm into another buffer", from_dev(dD, C.size()), want, 1e-5);
    CU_ASSERT(from_dev(dC, C.size()) == C);
    cudaCheck(cudaFree(dA)), cudaCheck(cudaFree(dB)), cudaCheck(cudaFree(dC));
    cudaCheck(cudaFree(dD));
    gemm_free(g);
}

void register_cuda_gemm_tests(void) {
    static const TestCase tests[] = {
        {"transposes, outputs, beta, bias, padding", test_gemm_shapes},
        {"D = C + A B^T into another buffer", test_gemm_into_other_buffer},
        {NULL, NULL},
    };
    add_suite("cuda_gemm", tests);
}
