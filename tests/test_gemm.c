// gemc's fp32 GEMM (src/model/cpu/gemm.h): every element is the FMA sequence of the definition, bit
// for bit, in every kernel family this CPU can run, for every transpose, edge and k panel; so a row
// does not depend on the rows beside it, nor on the thread count, nor on the family.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/gemm.h"
#include "base/rng.h"
#include "tests.h"

static float *random_matrix(Rng *rng, size_t n) {
    float *m = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) m[i] = (float)(rng_uniform(rng) * 2.0 - 1.0);
    return m;
}

// The families this CPU can run, the default one last (it stays selected).
static int families(GemmIsa *out) {
    const GemmIsa def = gemm_isa();
    int n = 0;
    for (int i = GEMM_ISA_SCALAR; i <= GEMM_ISA_AVX512; i++)
        if ((GemmIsa)i != def && gemm_set_isa((GemmIsa)i) == 0) out[n++] = (GemmIsa)i;
    gemm_set_isa(def);
    out[n++] = def;
    return n;
}

// C from gemm_f32 under `isa` against the reference, for one shape; 1 when the bits agree.
static int check_shape(GemmIsa isa, int ta, int tb, int M, int N, int K, int acc, Rng *rng) {
    // leading dimensions wider than the operands, so that strides are exercised
    const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    float *A = random_matrix(rng, (size_t)(ta ? K : M) * lda);
    float *B = random_matrix(rng, (size_t)(tb ? N : K) * ldb);
    float *C = random_matrix(rng, (size_t)M * ldc), *R = malloc((size_t)M * ldc * sizeof(float));
    memcpy(R, C, (size_t)M * ldc * sizeof(float));
    gemm_set_isa(isa);
    gemm_f32(ta, tb, M, N, K, A, lda, B, ldb, acc, C, ldc);
    gemm_f32_reference(ta, tb, M, N, K, A, lda, B, ldb, acc, R, ldc);
    // the padding columns of C (j >= N) must be untouched too: compare the whole buffer
    int same = memcmp(C, R, (size_t)M * ldc * sizeof(float)) == 0;
    if (!same)
        printf("\n  %s: ta=%d tb=%d M=%d N=%d K=%d acc=%d differs from the definition",
               gemm_isa_name(isa), ta, tb, M, N, K, acc);
    free(A), free(B), free(C), free(R);
    return same;
}

static void test_bits_of_the_definition(void) {
    GemmIsa fam[3];
    const int nf = families(fam);
    const GemmIsa def = gemm_isa();
    Rng rng;
    rng_seed(&rng, 11);
    // rows and columns around every MR / NR / MC / NCH edge; k across the 256-wide panels
    const int Ms[] = {1, 5, 12, 13, 97, 130}, Ns[] = {1, 7, 16, 33, 260, 300};
    const int Ks[] = {1, 9, 256, 600};
    for (int f = 0; f < nf; f++)
        for (int t = 0; t < 4; t++)
            for (int acc = 0; acc < 2; acc++)
                for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
                    for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                            CU_ASSERT(check_shape(fam[f], t & 1, t >> 1, Ms[mi], Ns[ni], Ks[ki],
                                                  acc, &rng));
    gemm_set_isa(def);
}

// K = 0: C is zeroed, or left as it is when accumulating.
static void test_empty_k(void) {
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {0}, B[1] = {0};
    gemm_f32(0, 0, 2, 3, 0, A, 1, B, 3, 1, C, 3);
    CU_ASSERT_EQUAL(C[5], 6.0f);
    gemm_f32(0, 0, 2, 3, 0, A, 1, B, 3, 0, C, 3);
    for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(C[i], 0.0f);
}

// What the model relies on: a row alone, a row among 200, one thread or two, the same bits.
static void test_rows_and_threads(void) {
    Rng rng;
    rng_seed(&rng, 5);
    const int M = 200, N = 352, K = 300;
    float *A = random_matrix(&rng, (size_t)M * K), *W = random_matrix(&rng, (size_t)N * K);
    float *all = malloc((size_t)M * N * sizeof(float)), *one = malloc(N * sizeof(float));
    float *serial = malloc((size_t)M * N * sizeof(float));
    gemm_f32(0, 1, M, N, K, A, K, W, K, 0, all, N);
    for (int i = 0; i < M; i += 37) {
        gemm_f32(0, 1, 1, N, K, A + (size_t)i * K, K, W, K, 0, one, N);
        CU_ASSERT_EQUAL(memcmp(one, all + (size_t)i * N, N * sizeof(float)), 0);
    }
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    gemm_f32(0, 1, M, N, K, A, K, W, K, 0, serial, N);
    omp_set_num_threads(threads);
    CU_ASSERT_EQUAL(memcmp(serial, all, (size_t)M * N * sizeof(float)), 0);
    free(A), free(W), free(all), free(one), free(serial);
}

// A weight packed once (gemm_pack_weight) gives the bits of the definition for every row count
// (the narrow kernels of 1 to 8 rows, the micro-kernel tiles with their short last block),
// every edge strip and panel, with and without accumulate, in every family.
static void test_packed_weight(void) {
    GemmIsa fam[3];
    const int nf = families(fam);
    const GemmIsa def = gemm_isa();
    Rng rng;
    rng_seed(&rng, 23);
    // N = 530: more strips than 16 tasks of one, so the multi-strip groups run, with an edge
    const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 97, 130}, Ns[] = {1, 7, 33, 530};
    const int Ks[] = {1, 9, 600};
    int bad = 0;
    for (int f = 0; f < nf; f++) {
        gemm_set_isa(fam[f]);
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                const int N = Ns[ni], K = Ks[ki], ldw = K + 3, lda = K + 1, ldc = N + 2;
                float *W = random_matrix(&rng, (size_t)N * ldw);
                GemmPackedWeight pw;
                float *mem = aligned_alloc(64, gemm_packed_floats(N, K) * sizeof(float));
                gemm_pack_weight(&pw, mem, W, N, K, ldw);
                for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
                    for (int acc = 0; acc < 2; acc++) {
                        const int M = Ms[mi];
                        float *A = random_matrix(&rng, (size_t)M * lda);
                        float *C = random_matrix(&rng, (size_t)M * ldc);
                        float *R = malloc((size_t)M * ldc * sizeof(float));
                        memcpy(R, C, (size_t)M * ldc * sizeof(float));
                        gemm_f32_packed(M, A, lda, &pw, acc, C, ldc);
                        gemm_f32_reference(0, 1, M, N, K, A, lda, W, ldw, acc, R, ldc);
                        if (memcmp(C, R, (size_t)M * ldc * sizeof(float)) != 0 && bad++ < 5)
                            printf("\n  %s packed: M=%d N=%d K=%d acc=%d differs from the "
                                   "definition",
                                   gemm_isa_name(fam[f]), M, N, K, acc);
                        free(A), free(C), free(R);
                    }
                free(mem);
                free(W);
            }
    }
    CU_ASSERT_EQUAL(bad, 0);
    gemm_set_isa(def);
}

void register_gemm_tests(void) {
    static const TestCase tests[] = {
        {"every element is the FMA sequence of the definition (bits, every family)",
         test_bits_of_the_definition},
        {"K = 0", test_empty_k},
        {"a row alone = the row among others; one thread = two (bits)", test_rows_and_threads},
        {"a weight packed once: the definition's bits for 1 to 130 rows (every family)",
         test_packed_weight},
        {NULL, NULL},
    };
    add_suite("gemm", tests);
}
