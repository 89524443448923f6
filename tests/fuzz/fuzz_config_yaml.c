// libFuzzer harness: a run configuration through config_load_yaml over the defaults, as
// `gemc STAGE CONFIG.yaml` reads it (libyaml events, key lookup and validation, "did you mean"),
// then what was accepted through every stage's cross-key checks and the resolved-YAML hashes.
#include <stdlib.h>

#include "config/config.h"
#include "fuzz_util.h"

static const char *const STAGES[] = {"sft", "train", "dpo", "eval", "generate"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = fuzz_write("config.yaml", data, size);
    GemConfig c;
    config_defaults(&c);
    if (config_load_yaml(&c, path) == 0) {
        for (size_t i = 0; i < sizeof STAGES / sizeof STAGES[0]; i++) config_check(&c, STAGES[i]);
        config_hash(&c);
        config_shard_hash(&c);
    }
    config_free(&c);
    free(path);
    return 0;
}
