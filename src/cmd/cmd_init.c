// gemc init: a randomly initialised model, written as a Hugging Face folder.
#include <stdio.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/model.h"

int cmd_init(int argc, char **argv) {
    const char *config_path = NULL, *out = NULL, *dtype_name = NULL, *tokenizer = NULL;
    int seed = 1;
    const CliOpt opts[] = {
        {"config", OPT_STR, &config_path, "FILE", "a Hugging Face config.json", 1},
        {"out", OPT_STR, &out, "DIR", "output model folder (created when missing)", 1},
        {"seed", OPT_INT, &seed, "N", "random seed (default 1)", 0},
        {"dtype", OPT_STR, &dtype_name, "T", "bf16 (default), f16 or f32", 0},
        {"tokenizer", OPT_STR, &tokenizer, "PATH",
         "copy this tokenizer.json (or a folder's) into the model folder", 0},
        {0},
    };
    const CliCommand cmd = {
        "init",
        "Writes a model with the shape of a config.json and random weights, initialised as\n"
        "transformers does (matrices ~ N(0, initializer_range), norms 1, biases 0).",
        "example:\n  gemc init --config data/arith/config.json --tokenizer data/arith --out "
        "runs/tiny",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    DType dtype = cmd_output_dtype(dtype_name);

    ModelConfig cfg;
    if (model_config_load(config_path, &cfg) != 0) return cmd_fail();
    Model model;
    model_init(&model, &cfg);
    model_init_random(&model, (uint64_t)seed);
    rc = model_save_folder(&model, out, dtype, tokenizer, 1);
    if (rc == 0)
        printf("wrote %s: %s, %zu parameters, %s\n", out, cfg.model_type, model.layout.total,
               dtype_name ? dtype_name : "bf16");
    model_free(&model);
    return rc ? cmd_fail() : 0;
}
