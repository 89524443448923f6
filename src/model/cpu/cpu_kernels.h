// CPU layer kernels and the whole-model forward/backward, written once over a scalar type
// `real` (src/model/cpu/kernels.inc, src/model/cpu/model.inc) and instantiated twice:
//   name_f32: float, the production path behind model.h (cpu_f32.c)
//   name_f64: double, for the finite-difference gradient tests (cpu_f64.c)
// The declarations of one instantiation are in cpu_api.inc; this header includes it once
// for each type.
#ifndef GEMC_CPU_KERNELS_H
#define GEMC_CPU_KERNELS_H

#include <stddef.h>

#include "model/model.h"

#define real         float
#define SFX(name)    name##_f32
#define CPU_ACTS_TAG CpuActs
#include "model/cpu/cpu_api.inc"
#undef real
#undef SFX
#undef CPU_ACTS_TAG

#define real         double
#define SFX(name)    name##_f64
#define CPU_ACTS_TAG CpuActs64
#include "model/cpu/cpu_api.inc"
#undef real
#undef SFX
#undef CPU_ACTS_TAG

#endif
