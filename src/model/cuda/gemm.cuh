// Row-major GEMMs of the CUDA backend: bf16 inputs, fp32 accumulation, bf16 or fp32 output,
// through cuBLASLt (or, under the emulator, a plain loop in the same precision).
//
//   D [M, N] = op(A) op(B) + beta * Cin (+ bias [N] on every row)
//   op(A) [M, K]: A is [M, K] (lda >= K), or [K, M] with trans_a (lda >= M)
//   op(B) [K, N]: B is [K, N] (ldb >= N), or [N, K] with trans_b (ldb >= K)
//
// The model's three uses, for a linear layer out = inp w^T with w [OC, IC]:
//   forward  out [N, OC]  = inp [N, IC] w^T        gemm(0, 1, N, OC, IC, inp, w, ...)
//   dinp     dinp [N, IC] = dout [N, OC] w         gemm(0, 0, N, IC, OC, dout, w, ...)
//   dweight  dw [OC, IC] += dout^T inp             gemm(1, 0, OC, IC, N, dout, inp, beta 1)
#ifndef GEMC_CUDA_GEMM_CUH
#define GEMC_CUDA_GEMM_CUH

#include "model/cuda/cuda_common.cuh"

// The cuBLASLt handle and its workspace (one per model; not thread-safe).
struct Gemm;
Gemm *gemm_create(void);
void gemm_free(Gemm *g);

enum GemmOut { GEMM_OUT_BF16, GEMM_OUT_F32 };

// D and Cin have the output type `out` and leading dimension ldd; Cin may be D (accumulate in
// place) or NULL when beta == 0. bias [N] is bf16 and is only allowed with a bf16 output
// (gemm_add_bias covers fp32 outputs).
void gemm(Gemm *g, int trans_a, int trans_b, int M, int N, int K, const bf16 *A, int lda,
          const bf16 *B, int ldb, float beta, const void *Cin, void *D, int ldd, GemmOut out,
          const bf16 *bias, cudaStream_t stream);

// D [M, N] += bias [N] on every row, fp32.
void gemm_add_bias_f32(float *D, const bf16 *bias, int M, int N, cudaStream_t stream);

#endif
