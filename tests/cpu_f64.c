// The double instantiation of the CPU kernels and model, for the float64 finite-difference
// gradient tests (tests/test_kernel_grad.c, tests/test_model_grad.c).
#include <cblas.h>
// cblas.h brings in complex.h, whose macro I would clash with the SwiGLU width I
#undef I
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/cpu_kernels.h"

// OpenBLAS's dgemm: these tests compare values to a tolerance, not bits.
void gemm_f64(int trans_a, int trans_b, int M, int N, int K, const double *A, int lda,
              const double *B, int ldb, int accumulate, double *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0, A, lda, B, ldb,
                accumulate ? 1.0 : 0.0, C, ldc);
}

#define real          double
#define SFX(name)     name##_f64
#define EXP           exp
#define LOG           log
#define SQRT          sqrt
#define COS           cos
#define SIN           sin
#define FMA           fma
#define VFMA(c, b, x) ((c) += (b) * (x)) // the float64 tests need accuracy, not bits

#include "model/cpu/kernels.inc"
#include "model/cpu/model.inc"
