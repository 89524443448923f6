// What runs on this machine: the build's target, the CPU, the GEMM kernel family, the BLAS and
// the thread counts. `gemc env` prints it, `gemc --version` too, and every run directory keeps
// it in env.json, so that two runs (or two machines) can be compared.
#ifndef GEMC_CPU_ENV_H
#define GEMC_CPU_ENV_H

#include <cJSON.h>
#include <stdio.h>

typedef struct {
    const char *version;    // GEMC_VERSION
    const char *build_arch; // the compiler's -march of this build: "x86-64-v3" or "native"
    char cpu[128];          // /proc/cpuinfo's model name ("unknown" where there is none)
    char cpu_flags[96];     // of the flags that matter here, those the CPU has
    const char *gemm_isa;   // the kernel family of gemm_f32: avx512, avx2 or scalar
    char blas[160];         // OpenBLAS's build line (its dgemm serves the float64 tests only)
    const char *blas_core;  // the OpenBLAS kernel family it chose (OPENBLAS_CORETYPE)
    int omp_threads;        // OpenMP threads of gemc's kernels
    int blas_threads;       // OpenBLAS's own threads
    const char *libc;       // glibc's version (its libm gives expf, logf, sinf, cosf)
} CpuEnv;

void cpu_env_get(CpuEnv *e);
// "key: value" lines.
void cpu_env_print(const CpuEnv *e, FILE *out);
// The same as a JSON object (for env.json).
cJSON *cpu_env_json(const CpuEnv *e);

#endif
