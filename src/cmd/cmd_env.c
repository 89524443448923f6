// gemc env: what runs on this machine (cpu/cpu_env.h).
#include <stdio.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "model/cpu/cpu_env.h"

int cmd_env(int argc, char **argv) {
    int json = 0;
    const CliOpt opts[] = {
        {"json", OPT_FLAG, &json, NULL, "print the JSON object a run directory keeps in env.json",
         0},
        {0},
    };
    const CliCommand cmd = {
        "env",
        "gemc env [--json]\n\n"
        "Prints what runs here: the build's target (-march), the CPU and its vector flags, the\n"
        "kernel family of gemc's fp32 GEMM (GEMC_ISA=avx2|avx512|scalar forces one), the BLAS\n"
        "and the kernel family it chose (OPENBLAS_CORETYPE), the OpenMP and BLAS thread counts\n"
        "and glibc's version. Every run directory keeps the same in env.json.",
        "examples:\n"
        "  gemc env\n"
        "  GEMC_ISA=avx2 gemc env --json",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    CpuEnv e;
    cpu_env_get(&e);
    if (!json) {
        cpu_env_print(&e, stdout);
        return 0;
    }
    cJSON *o = cpu_env_json(&e);
    char *text = cJSON_Print(o);
    printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(o);
    return 0;
}
