// gemc convert: re-save a model folder in another dtype (and as one safetensors file).
#include <stdio.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/model.h"

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype_name = NULL;
    const CliOpt opts[] = {
        {"model", OPT_STR, &in, "DIR", "Hugging Face model folder to read", 1},
        {"out", OPT_STR, &out, "DIR", "output model folder (created when missing)", 1},
        {"dtype", OPT_STR, &dtype_name, "T", "bf16 (default), f16 or f32", 0},
        {0},
    };
    const CliCommand cmd = {
        "convert",
        "Reads a model (single or sharded safetensors, F32/BF16/F16) and writes it again in\n"
        "one dtype, as model.safetensors plus config.json. Tokenizer files come along.",
        NULL,
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    DType dtype = cmd_output_dtype(dtype_name);
    Model model;
    if (model_load_hf(&model, in) != 0) return cmd_fail();
    rc = model_save_folder(&model, out, dtype, in, 0);
    if (rc == 0) printf("wrote %s (%s)\n", out, dtype_name ? dtype_name : "bf16");
    model_free(&model);
    return rc ? cmd_fail() : 0;
}
