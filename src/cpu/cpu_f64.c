// The double instantiation of the CPU kernels and model, for the float64 finite-difference
// gradient tests (tests/test_kernel_grad.c, tests/test_model_grad.c).
#include <cblas.h>
// cblas.h brings in complex.h, whose macro I would clash with the SwiGLU width I
#undef I
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_kernels.h"

#define real      double
#define SFX(name) name##_f64
#define GEMM      cblas_dgemm
#define EXP       exp
#define LOG       log
#define SQRT      sqrt
#define COS       cos
#define SIN       sin

#include "kernels.inc"
#include "model.inc"
