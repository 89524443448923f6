// gemc score: the per-position log-probs and entropies of one token sequence. This output is
// the reference for every parity check, so its format never changes.
#include <stdio.h>
#include <stdlib.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/model.h"

int cmd_score(int argc, char **argv) {
    const char *model_dir = NULL, *ids_text = NULL;
    const CliOpt opts[] = {
        {"model", OPT_STR, &model_dir, "DIR", "Hugging Face model folder", 1},
        {"ids", OPT_STR, &ids_text, "LIST", "token ids, comma-separated: 1,2,3", 1},
        {0},
    };
    const CliCommand cmd = {
        "score",
        "Scores a token sequence with the model: one line per position p = 0 .. n-2,\n"
        "  p<TAB>ids[p+1]<TAB>logprob<TAB>entropy\n"
        "where logprob = ln P(ids[p+1] | ids[0..p]) and entropy is that next-token\n"
        "distribution's entropy in nats, both printed with %.6f.",
        "example:\n  gemc score --model runs/demo/init --ids 1,72,101,108,108,111",
        opts,
        NULL,
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : cmd_fail();

    int *ids, n;
    Model model;
    if (cmd_load_model_and_ids(model_dir, ids_text, 2, &model, &ids, &n) != 0) return cmd_fail();
    int offsets[2] = {0, n};
    PackedBatch batch = {.B = 1, .N = n, .tokens = ids, .offsets = offsets};
    float *logprobs = mallocCheck(sizeof(float) * n);
    float *entropy = mallocCheck(sizeof(float) * n);
    model_forward(&model, &batch, logprobs, entropy);
    for (int p = 0; p + 1 < n; p++)
        printf("%d\t%d\t%.6f\t%.6f\n", p, ids[p + 1], logprobs[p], entropy[p]);
    free(logprobs);
    free(entropy);
    free(ids);
    model_free(&model);
    return 0;
}
