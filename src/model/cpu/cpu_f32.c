// The float instantiation of the CPU kernels and model: the production path (model_cpu.c).
// Its GEMM is gemc's own (gemm.h), so its bits do not depend on the BLAS or the CPU.
#include <math.h>
#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/exp_f32.h"
#include "model/cpu/gemm.h"
#include "model/cpu/cpu_kernels.h"

#define real      float
#define SFX(name) name##_f32
#define EXP       exp_f32 // vectorizes; the same bits everywhere (exp_f32.h)
#define LOG       logf
#define SQRT      sqrtf
#define COS       cosf
#define SIN       sinf
#define FMA       fmaf
// one vfmadd where the build targets x86-64-v3 (the Makefile's default); the libm's fmaf lane
// by lane elsewhere (the same bits, slower)
#if defined(__FMA__) && defined(__AVX__)
#define VFMA(c, b, x) ((c) = _mm256_fmadd_ps(_mm256_set1_ps(b), (x), (c)))
#else
#define VFMA(c, b, x)                                                                              \
    do {                                                                                           \
        for (int u_ = 0; u_ < 8; u_++) (c)[u_] = fmaf((b), (x)[u_], (c)[u_]);                      \
    } while (0)
#endif

#include "model/cpu/kernels.inc"
#include "model/cpu/model.inc"
