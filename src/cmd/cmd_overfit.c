// gemc overfit: AdamW on one token sequence until the model has memorised it. It runs the
// whole training path (forward, backward, clipping, AdamW, saving) on a user's own model,
// the quickest way to see that a model folder trains.
#include <stdio.h>
#include <stdlib.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/model.h"

int cmd_overfit(int argc, char **argv) {
    const char *model_dir = NULL, *ids_text = NULL, *out = NULL, *dtype_name = NULL;
    int steps = 20;
    float lr = 1e-3f, grad_clip = 1.0f, weight_decay = 0.0f;
    const CliOpt opts[] = {
        {"model", OPT_STR, &model_dir, "DIR", "Hugging Face model folder", 1},
        {"ids", OPT_STR, &ids_text, "LIST", "the token ids to memorise: 1,2,3", 1},
        {"steps", OPT_INT, &steps, "N", "AdamW steps (default 20)", 0},
        {"lr", OPT_FLOAT, &lr, "F", "learning rate (default 1e-3)", 0},
        {"grad-clip", OPT_FLOAT, &grad_clip, "F", "global grad-norm clip, 0 = off (default 1)", 0},
        {"weight-decay", OPT_FLOAT, &weight_decay, "F", "AdamW weight decay (default 0)", 0},
        {"out", OPT_STR, &out, "DIR", "write the trained model here", 0},
        {"dtype", OPT_STR, &dtype_name, "T", "dtype of --out: bf16 (default), f16 or f32", 0},
        {0},
    };
    const CliCommand cmd = {
        "overfit",
        "Trains the model on one token sequence with next-token cross-entropy and AdamW\n"
        "(betas 0.9/0.999, eps 1e-8), printing the loss (mean negative log-prob) each step.",
        "example:\n  gemc overfit --model runs/tiny --ids 1,72,101,108,108,111 --steps 30 --lr "
        "3e-3",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    DType dtype = cmd_output_dtype(dtype_name);
    if (steps < 1) {
        gemc_set_error("--steps: must be at least 1, got %d", steps);
        return cmd_fail();
    }
    int *ids, n;
    Model model;
    if (cmd_load_model_and_ids(model_dir, ids_text, 2, &model, &ids, &n) != 0) return cmd_fail();
    int offsets[2] = {0, n};
    PackedBatch batch = {.B = 1, .N = n, .tokens = ids, .offsets = offsets};
    float *logprobs = mallocCheck(sizeof(float) * n);
    float *dlogprobs = mallocCheck(sizeof(float) * n);
    for (int i = 0; i < n; i++) dlogprobs[i] = -1.0f / (float)(n - 1); // loss = -mean logprob
    AdamWConfig opt = {
        .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = weight_decay};
    float first = 0, loss = 0;
    for (int step = 1; step <= steps; step++) {
        double t0 = now_seconds();
        model_zero_grad(&model);
        model_forward(&model, &batch, logprobs, NULL);
        double sum = 0;
        for (int i = 0; i + 1 < n; i++) sum += logprobs[i];
        loss = (float)(-sum / (n - 1));
        if (step == 1) first = loss;
        model_backward(&model, &batch, dlogprobs);
        float norm = model_clip_grad_norm(&model, grad_clip);
        model_adamw_step(&model, &opt);
        printf("step %3d/%d | loss %.6f | grad norm %.4f | %.1f ms\n", step, steps, loss, norm,
               1e3 * (now_seconds() - t0));
        fflush(stdout);
    }
    model_forward(&model, &batch, logprobs, NULL);
    double sum = 0;
    for (int i = 0; i + 1 < n; i++) sum += logprobs[i];
    loss = (float)(-sum / (n - 1));
    printf("loss %.6f -> %.6f after %d steps\n", first, loss, steps);
    rc = 0;
    if (out) {
        rc = model_save_folder(&model, out, dtype, model_dir, 0);
        if (rc == 0) printf("wrote %s\n", out);
    }
    free(logprobs);
    free(dlogprobs);
    free(ids);
    model_free(&model);
    return rc ? cmd_fail() : 0;
}
