// The float instantiation of the CPU kernels and model: the production path (model_cpu.c).
#include <cblas.h>
// cblas.h brings in complex.h, whose macro I would clash with the SwiGLU width I
#undef I
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_kernels.h"

#define real      float
#define SFX(name) name##_f32
#define GEMM      cblas_sgemm
#define EXP       expf
#define LOG       logf
#define SQRT      sqrtf
#define COS       cosf
#define SIN       sinf

#include "kernels.inc"
#include "model.inc"
