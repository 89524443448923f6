#include "base/launch.h"

#include <stdlib.h>

// The first of these variables that is set and positive wins. Slurm's are only read inside a
// job step (SLURM_STEP_ID), since a batch script alone also carries SLURM_NTASKS.
static int env_int(const char *const *names, int fallback) {
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end == 0 && x >= 0) return (int)x;
        }
    }
    return fallback;
}

int launcher_world_size(void) {
    static const char *const mpi[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", NULL};
    static const char *const slurm[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL};
    int n = env_int(mpi, 0);
    if (n > 0) return n;
    if (getenv("SLURM_STEP_ID")) n = env_int(slurm, 0);
    return n > 0 ? n : 1;
}

int launcher_world_rank(void) {
    static const char *const mpi[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
    static const char *const slurm[] = {"SLURM_PROCID", NULL};
    int r = env_int(mpi, -1);
    if (r >= 0) return r;
    if (getenv("SLURM_STEP_ID")) r = env_int(slurm, -1);
    return r >= 0 ? r : 0;
}

int launcher_local_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                        "MPI_LOCALRANKID", NULL};
    return env_int(names, 0);
}
