// libFuzzer harness: a model's config.json through model_config_load (as `gemc init`, `score`
// and every stage read it), then the parameter layout and the config.json writer on what was
// accepted, which must never see a size that overflows.
#include <stdlib.h>

#include "fuzz_util.h"
#include "model/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = fuzz_write("config.json", data, size);
    ModelConfig cfg;
    if (model_config_load(path, &cfg) == 0) {
        ParamLayout layout;
        param_layout_init(&layout, &cfg);
        char name[256];
        for (int k = 0; k < NUM_PARAM_KINDS; k++)
            param_hf_name((ParamKind)k, cfg.num_layers - 1, name, sizeof name);
        free(model_config_to_json(&cfg, "bfloat16"));
    }
    free(path);
    return 0;
}
