// gemc's own fp32 GEMM: the one matrix product of the CPU backend's float path (training,
// prefill and decode).
//
// Why not a BLAS: a BLAS picks its kernel, its blocking and its reduction order by the shape of
// the call, the thread count and the CPU it runs on (OpenBLAS's Haswell, Zen and SkylakeX
// kernels give different bits for the same product). gemc's determinism properties, a sequence
// alone giving the same bits as inside any packed batch or micro-batch, one thread giving the
// same bits as many, and a run giving the same bits on every x86-64 machine, then hold only by
// luck of the kernel. Here they hold by construction, because every output element is defined
// by one fixed sequence of IEEE operations, in k order:
//
//   c = C[i][j]
//   for each panel of GEMM_KC values of k (k0 = 0, 256, 512, ...):
//       p = 0;  for k in the panel:  p = fmaf(op(A)[i][k], op(B)[k][j], p)
//       c = (accumulate || k0 > 0) ? c + p : p
//   C[i][j] = c
//
// (Chains of 256 from 0, added in order, keep the rounding of a long k, the tokens of a weight
// gradient, close to a blocked BLAS's.) The blocking of rows and columns, the vector width
// (AVX2 or AVX-512) and the split over threads only decide which element is computed when;
// each element still goes through exactly this sequence, and an FMA or an add is one correctly
// rounded IEEE operation on every machine that has them. So the result does not depend on M, on the
// other rows or columns, on the thread count or on the instruction set. tests/test_gemm.c checks
// this bit for bit against the scalar definition above.
#ifndef GEMC_CPU_GEMM_H
#define GEMC_CPU_GEMM_H

#include <stddef.h>

#define GEMM_KC 256 // k values per chain (part of the definition above, not a tuning knob)

// The kernel family that runs: the widest the CPU has, or the one GEMC_ISA names.
typedef enum { GEMM_ISA_SCALAR, GEMM_ISA_AVX2, GEMM_ISA_AVX512 } GemmIsa;

// The kernel family in use (chosen on the first call; GEMC_ISA=avx2|avx512|scalar forces one,
// and a value that is not one of those, or a family the CPU cannot run, is a fatal error).
GemmIsa gemm_isa(void);
const char *gemm_isa_name(GemmIsa isa);
// Forces a family for the calls that follow (tests and benchmarks compare them); returns 0, or
// -1 when this CPU cannot run it.
int gemm_set_isa(GemmIsa isa);

// C [M, N] = (accumulate ? C : 0) + op(A) op(B), row-major, op = transpose when trans_x.
// op(A) is [M, K] with leading dimension lda, op(B) is [K, N] with ldb. Every element is the
// sequence above. Runs on the OpenMP threads (serially inside a parallel region).
void gemm_f32(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
              const float *B, int ldb, int accumulate, float *C, int ldc);

// A weight W [N, K] (row-major, leading dimension ldw) packed once for products by W^T, in the
// strips the kernels of the family in use read; the products below then read each weight once,
// in order, and pack nothing. For a run of calls with the same weights (a generation's prefill
// and decode steps): the packing costs about one product's worth of memory traffic.
typedef struct {
    int N, K;
    int nr;   // columns per strip
    int isa;  // the GemmIsa it was packed for
    float *p; // the caller's memory (gemm_pack_weight's dst)
} GemmPackedWeight;
// The floats a packed [N, K] weight takes (a multiple of 16, so that weights packed back to back
// in 64-byte aligned memory each start 64-byte aligned).
size_t gemm_packed_floats(int N, int K);
// Packs W into dst, gemm_packed_floats(N, K) floats, 64-byte aligned, that the caller owns.
void gemm_pack_weight(GemmPackedWeight *pw, float *dst, const float *W, int N, int K, int ldw);
// C [M, N] = (accumulate ? C : 0) + A W^T, A [M, K] row-major (leading dimension lda): the same
// bits as gemm_f32(0, 1, M, N, K, A, lda, W, ldw, accumulate, C, ldc).
void gemm_f32_packed(int M, const float *A, int lda, const GemmPackedWeight *w, int accumulate,
                     float *C, int ldc);

// The definition itself, one element at a time (the tests' reference; slow).
void gemm_f32_reference(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, int accumulate, float *C, int ldc);

#endif
