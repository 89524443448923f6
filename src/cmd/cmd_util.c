#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/launch.h"
#include "base/common.h"

DType cmd_output_dtype(const char *name) {
    if (!name) return DT_BF16;
    DType t = dtype_from_user_name(name);
    if (!dtype_is_float_weight(t))
        gemc_fatal("--dtype: unsupported value '%s' (HINT: use bf16, f16 or f32)", name);
    return t;
}

int cmd_fail(void) {
    fflush(stdout);
    // under mpirun every rank reaches the same error and one line is enough: rank 0 prints it.
    // mpirun ends the job at the first rank that fails, so the others give rank 0 a moment to
    // print before they fail too.
    if (launcher_world_rank() == 0)
        fprintf(stderr, "gemc: error: %s\n", gemc_error()[0] ? gemc_error() : "unknown error");
    else
        sleep(1);
    return 1;
}

int cmd_load_model_and_ids(const char *model_dir, const char *ids_text, int min_ids, Model *m,
                           int **ids, int *n) {
    if (cli_parse_ids(ids_text, "--ids", ids, n) != 0) return -1;
    if (*n < min_ids) {
        gemc_set_error("--ids: need at least %d token ids, got %d", min_ids, *n);
        free(*ids);
        return -1;
    }
    if (model_load_hf(m, model_dir) != 0) {
        free(*ids);
        return -1;
    }
    if (model_check_tokens(m, *ids, *n) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", gemc_error());
        gemc_set_error("--ids: %s of %s/config.json", why, model_dir);
        model_free(m);
        free(*ids);
        return -1;
    }
    return 0;
}
