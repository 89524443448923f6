// Row-major GEMMs (gemm.cuh) on cuBLASLt, or on the host under the emulator.
//
// cuBLASLt is column-major. A row-major [r, c] matrix read as column-major is its transpose, so
// the row-major D = op(A) op(B) is computed as the column-major D^T = op(B)^T op(A)^T: the
// operands swap places and keep their transpose flags, and a bias on every row of D becomes
// cuBLASLt's bias on every column of D^T (its BIAS epilogue, length m = N).
#include "model/cuda/gemm.cuh"

#ifndef GEMC_CUDA_EMU
#include <cstdint>
#include <cublasLt.h>
#include <vector>

#define cublasCheck(call) cublas_check((call), #call, __FILE__, __LINE__)
static void cublas_check(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "gemc: error: cuBLASLt failed at %s:%d: %s returned %d\n", file, line,
                     what, (int)s);
        std::exit(1);
    }
}

static const size_t GEMM_WORKSPACE = 32u << 20; // what cuBLASLt's Hopper kernels ask for at most

// One GEMM shape's descriptors and the algorithm cuBLASLt's heuristic chose for it. A model runs
// a handful of shapes over and over (a decode step: 7 per layer), and asking the heuristic costs
// tens of microseconds of CPU each time, so every shape is planned once.
struct GemmPlan {
    int trans_a, trans_b, M, N, K, lda, ldb, ldd, out, bias, beta_zero;
    int align; // bytes every operand's address is a multiple of (at most 256)
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

struct Gemm {
    cublasLtHandle_t lt;
    void *workspace;
    std::vector<GemmPlan> plans;
};

Gemm *gemm_create(void) {
    Gemm *g = new Gemm;
    cublasCheck(cublasLtCreate(&g->lt));
    cudaCheck(cudaMalloc(&g->workspace, GEMM_WORKSPACE));
    return g;
}

void gemm_free(Gemm *g) {
    if (!g) return;
    for (GemmPlan &p : g->plans) {
        cublasCheck(cublasLtMatrixLayoutDestroy(p.la));
        cublasCheck(cublasLtMatrixLayoutDestroy(p.lb));
        cublasCheck(cublasLtMatrixLayoutDestroy(p.lc));
        cublasCheck(cublasLtMatmulDescDestroy(p.desc));
    }
    cublasCheck(cublasLtDestroy(g->lt));
    cudaCheck(cudaFree(g->workspace));
    delete g;
}

// The plan of a shape, made on first use. The bias pointer is set per call (its attribute is
// part of the descriptor), the rest never changes.
static GemmPlan *plan_for(Gemm *g, int trans_a, int trans_b, int M, int N, int K, int lda, int ldb,
                          int ldd, GemmOut out, int bias, int beta_zero, int align) {
    for (GemmPlan &p : g->plans)
        if (p.trans_a == trans_a && p.trans_b == trans_b && p.M == M && p.N == N && p.K == K &&
            p.lda == lda && p.ldb == ldb && p.ldd == ldd && p.out == (int)out && p.bias == bias &&
            p.beta_zero == beta_zero && p.align == align)
            return &p;
    GemmPlan p;
    p.trans_a = trans_a, p.trans_b = trans_b, p.M = M, p.N = N, p.K = K;
    p.lda = lda, p.ldb = ldb, p.ldd = ldd, p.out = (int)out, p.bias = bias;
    p.beta_zero = beta_zero;
    p.align = align;
    const cudaDataType_t dt = out == GEMM_OUT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    // column-major view: D^T [N, M] = op(B)^T [N, K] op(A)^T [K, M]
    const cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb));
    cublasCheck(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa));
    if (bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const cudaDataType_t bt = CUDA_R_16BF;
        cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                   sizeof epi));
        cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                   sizeof bt));
    }
    // the first operand of the column-major product is B: stored [K, N] and read as [N, K]
    // col-major (no transpose), or stored [N, K] and read as [K, N] (transpose)
    cublasCheck(
        cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, trans_b ? K : N, trans_b ? N : K, ldb));
    cublasCheck(
        cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, trans_a ? M : K, trans_a ? K : M, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.lc, dt, N, M, ldd));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &GEMM_WORKSPACE, sizeof GEMM_WORKSPACE));
    // the heuristic assumes 256-byte aligned operands unless told otherwise; a layer's slice of
    // a small model's slab may be less aligned
    const uint32_t al = (uint32_t)align;
    const cublasLtMatmulPreferenceAttributes_t aligns[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (cublasLtMatmulPreferenceAttributes_t a : aligns)
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, a, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(g->lt, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1,
                                               &heur, &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
        std::fprintf(stderr,
                     "gemc: error: cuBLASLt has no algorithm for a %dx%dx%d GEMM (trans %d%d, "
                     "ld %d %d %d, %s out%s) (%s:%d)\n",
                     M, N, K, trans_a, trans_b, lda, ldb, ldd,
                     out == GEMM_OUT_BF16 ? "bf16" : "fp32", bias ? ", bias" : "", __FILE__,
                     __LINE__);
        std::exit(1);
    }
    p.algo = heur.algo;
    g->plans.push_back(p);
    return &g->plans.back();
}

void gemm(Gemm *g, int trans_a, int trans_b, int M, int N, int K, const bf16 *A, int lda,
          const bf16 *B, int ldb, float beta, const void *Cin, void *D, int ldd, GemmOut out,
          const bf16 *bias, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return;
    if (bias && out != GEMM_OUT_BF16) {
        std::fprintf(stderr, "gemc: error: gemm: a bias needs a bf16 output (%s:%d)\n", __FILE__,
                     __LINE__);
        std::exit(1);
    }
    int align = 256; // the largest power of two (up to 256) dividing every operand's address
    for (const void *q : {(const void *)A, (const void *)B, Cin ? Cin : (const void *)D,
                          (const void *)D, (const void *)bias})
        while (q && (uintptr_t)q % align) align >>= 1;
    GemmPlan *p = plan_for(g, trans_a, trans_b, M, N, K, lda, ldb, ldd, out, bias != nullptr,
                           beta == 0.0f, align);
    if (bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
    const float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(g->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, Cin ? Cin : D,
                               p->lc, D, p->lc, &p->algo, g->workspace, GEMM_WORKSPACE, stream));
}

#else // GEMC_CUDA_EMU: the same contract on the host, fp32 sums in k order

struct Gemm {
    int unused;
};

Gemm *gemm_create(void) {
    return new Gemm{0};
}

void gemm_free(Gemm *g) {
    delete g;
}

void gemm(Gemm *, int trans_a, int trans_b, int M, int N, int K, const bf16 *A, int lda,
          const bf16 *B, int ldb, float beta, const void *Cin, void *D, int ldd, GemmOut out,
          const bf16 *bias, cudaStream_t) {
    if (bias && out != GEMM_OUT_BF16) emu::fail("gemm: a bias needs a bf16 output");
    if (emu::capturing()) { // a graph node: the same call, replayed
        emu::capture([=]() {
            gemm(nullptr, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, Cin, D, ldd, out, bias,
                 nullptr);
        });
        return;
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                const bf16 a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const bf16 b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += __bfloat162float(a) * __bfloat162float(b);
            }
            const size_t at = (size_t)i * ldd + j;
            if (out == GEMM_OUT_F32) {
                if (beta != 0.0f) s += beta * ((const float *)Cin)[at];
                ((float *)D)[at] = s;
            } else {
                if (beta != 0.0f) s += beta * __bfloat162float(((const bf16 *)Cin)[at]);
                if (bias) s += __bfloat162float(bias[j]);
                ((bf16 *)D)[at] = __float2bfloat16(s);
            }
        }
}

#endif

__global__ void add_bias_f32_kernel(float *D, const bf16 *bias, int M, int N) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long)M * N) D[i] += bf2f(bias[i % N]);
}

void gemm_add_bias_f32(float *D, const bf16 *bias, int M, int N, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return;
    LAUNCH(ceil_div((long)M * N, 256), 256, 0, stream, add_bias_f32_kernel)(D, bias, M, N);
    cudaCheckLaunch();
}
