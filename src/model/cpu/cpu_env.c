// What runs on this machine (cpu_env.h).
#include "model/cpu/cpu_env.h"

#include <cblas.h>
#include <gnu/libc-version.h>
#include <omp.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/gemm.h"

// Set by the Makefile from the -march it builds with.
#ifndef GEMC_BUILD_ARCH
#define GEMC_BUILD_ARCH "unknown"
#endif

static void read_cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, n, "%s", v);
        out[strcspn(out, "\n")] = 0;
        break;
    }
    fclose(f);
}

void cpu_env_get(CpuEnv *e) {
    memset(e, 0, sizeof *e);
    e->version = GEMC_VERSION;
    e->build_arch = GEMC_BUILD_ARCH;
    read_cpu_model(e->cpu, sizeof e->cpu);
#if defined(__x86_64__)
    __builtin_cpu_init();
    const struct {
        const char *name;
        int has;
    } flags[] = {
        {"avx2", __builtin_cpu_supports("avx2")},
        {"fma", __builtin_cpu_supports("fma")},
        {"avx512f", __builtin_cpu_supports("avx512f")},
        {"avx512bw", __builtin_cpu_supports("avx512bw")},
        {"avx512vl", __builtin_cpu_supports("avx512vl")},
    };
    size_t len = 0;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].has)
            len += (size_t)snprintf(e->cpu_flags + len, sizeof e->cpu_flags - len, "%s%s",
                                    len ? " " : "", flags[i].name);
#endif
    e->gemm_isa = gemm_isa_name(gemm_isa());
    snprintf(e->blas, sizeof e->blas, "%s", openblas_get_config());
    size_t bl = strlen(e->blas);
    while (bl && e->blas[bl - 1] == ' ') e->blas[--bl] = 0;
    e->blas_core = openblas_get_corename();
    e->omp_threads = omp_get_max_threads();
    e->blas_threads = openblas_get_num_threads();
    e->libc = gnu_get_libc_version();
}

void cpu_env_print(const CpuEnv *e, FILE *out) {
    fprintf(out, "gemc:            %s\n", e->version);
    fprintf(out, "build:           -march=%s\n", e->build_arch);
    fprintf(out, "cpu:             %s\n", e->cpu);
    fprintf(out, "cpu flags:       %s\n", e->cpu_flags[0] ? e->cpu_flags : "(none of note)");
    fprintf(out, "gemm kernels:    %s (gemc's own fp32 GEMM: the same bits on every family)\n",
            e->gemm_isa);
    fprintf(out, "blas:            %s, core %s (float64 tests only)\n", e->blas, e->blas_core);
    fprintf(out, "openmp threads:  %d\n", e->omp_threads);
    fprintf(out, "blas threads:    %d\n", e->blas_threads);
    fprintf(out, "glibc:           %s\n", e->libc);
}

cJSON *cpu_env_json(const CpuEnv *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "gemc_version", e->version);
    cJSON_AddStringToObject(o, "build_arch", e->build_arch);
    cJSON_AddStringToObject(o, "cpu", e->cpu);
    cJSON_AddStringToObject(o, "cpu_flags", e->cpu_flags);
    cJSON_AddStringToObject(o, "gemm_isa", e->gemm_isa);
    cJSON_AddStringToObject(o, "blas", e->blas);
    cJSON_AddStringToObject(o, "blas_core", e->blas_core);
    cJSON_AddNumberToObject(o, "openmp_threads", e->omp_threads);
    cJSON_AddNumberToObject(o, "blas_threads", e->blas_threads);
    cJSON_AddStringToObject(o, "glibc", e->libc);
    return o;
}
