// Subcommands of the gemc binary. Each returns the process exit status.
#ifndef GEMC_COMMANDS_H
#define GEMC_COMMANDS_H

int cmd_score(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_overfit(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_check_data(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_env(int argc, char **argv);
int cmd_rescore(int argc, char **argv);

// Shared by commands: parses --dtype (NULL means bf16). Exits with status 1 on a bad name.
#include "model/dtype.h"
DType cmd_output_dtype(const char *name);
#include "model/model.h"
// Loads --model DIR and parses --ids LIST (at least min_ids ids, all inside the vocabulary).
// Returns 0, or -1 with the error recorded and nothing left allocated.
int cmd_load_model_and_ids(const char *model_dir, const char *ids_text, int min_ids, Model *m,
                           int **ids, int *n);
// Prints the recorded error line and returns 1 (for `return cmd_fail();`).
int cmd_fail(void);

#include "gem/gem.h"
#include "run/shard.h"
// gemc rescore's Eq. 1 for every candidate of a shard under sc, from the shard's token entropies
// (its tokens decoded with tok for final_span: marker), into out[shard_n_cands(s)]: with the
// run's own score settings, S is the shard's score bit for bit. Returns 0, or -1 with the error
// recorded (an id outside tok's vocabulary).
int rescore_shard_scores(const ScoreConfig *sc, const Tokenizer *tok, const Shard *s,
                         CandidateScore *out);

#endif
