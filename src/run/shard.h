// HDF5 shards: the ranked candidate groups one generator rank sampled for one training step,
// the exchange format between generator and learner ranks and the record that makes a run
// restartable (docs/design.md, "HDF5 shards").
//
// A shard is write-once: it is written to PATH.tmp, closed, fsync'd, renamed to PATH and its
// directory fsync'd, so a reader never sees a partial file. The layout is packed and ragged with
// no variable-length types, so `h5dump` and `h5ls -v` show everything with self-explaining names:
//
//   /                     attributes: format_version, step, policy_version, generator_rank,
//                         seed, config_hash, tokenizer_hash, model, created, k, reward_source
//   /groups/              one row per prompt group (G rows)
//     group_id            int64   unique over the run: (step - 1) * batch_size + j
//     prompt_index        int32   the prompt's index in train.data
//     prompt_offsets      int64   [G + 1] group g's prompt is prompt_tokens[off[g] .. off[g+1])
//     prompt_tokens       int32   packed prompt ids (chat template applied)
//     skipped             uint8   1 when the group takes no part in the update
//     n_valid             int32   candidates that take part
//     zero_adv            uint8   1 when skipped because every advantage was 0
//   /candidates/          one row per candidate (G * k rows, group g's at g * k)
//     group_index         int32   row of its group in /groups
//     candidate_index     int32   0 .. k-1 within the group
//     rank_in_group       int32   0 = best by score; -1 when invalid
//     score               float32 S = -final + lambda_fork * fork (Eq. 1)
//     value               float32 what the group was ranked by: S, or reward_source's reward
//     correct             int32   1/0: the final answer is / is not the prompt's; -1: no answer
//     fork_entropy        float32 mean of the top-m chain-of-thought entropies
//     final_entropy       float32 mean entropy of the final-answer span
//     reward              float32 r_i
//     advantage           float32 A_i, the SEGA weight
//     valid               uint8
//     finish_reason       uint8   0 = eos, 1 = length (attribute "finish_reason_names")
//     token_offsets       int64   [G * k + 1] candidate c's tokens are [off[c] .. off[c+1])
//     text_offsets        int64   [G * k + 1] candidate c's decoded text is text[off[c]..)
//     text                uint8   packed UTF-8 of every candidate (for inspection only)
//   /tokens/              one row per generated token, packed
//     token_id            int32
//     logp_raw            float32 ln p(token), the model's unscaled distribution
//     logp_sample         float32 ln q(token), the sampling distribution (temperature, top-k,
//     top-p) logp_old            float32 ln p_T(token), softmax(z / T) untruncated (the off-policy
//     ratio) entropy             float32 the entropy score.entropy_source selected (what Eq. 1
//     read) self_certainty      float32 KL(uniform || p), p the model's unscaled distribution
//
// The reader checks every size and offset against the others before anything is used: a corrupt
// or truncated file is an error that names it, never a crash.
#ifndef GEMC_SHARD_H
#define GEMC_SHARD_H

#include <stdint.h>

#define SHARD_FORMAT_VERSION 3

typedef struct {
    // provenance (root attributes)
    int format_version;
    long step;           // the training step whose update reads this shard (1-based)
    long policy_version; // optimizer steps behind the weights that sampled it
    int generator_rank;  // 0 .. pipeline.generators - 1
    uint64_t seed;
    uint64_t config_hash;    // config_shard_hash(): what decides the shard's content
    uint64_t tokenizer_hash; // tokenizer_hash() of the tokenizer.json
    char model[512];         // the model folder the run started from
    double created;          // unix time
    int k;                   // candidates per group
    char reward_source[32];  // reward.source's name ("gem", "answer", ...)

    // groups
    int n_groups;
    int64_t *group_id;       // [n_groups]
    int32_t *prompt_index;   // [n_groups]
    int64_t *prompt_offsets; // [n_groups + 1]
    int32_t *prompt_tokens;  // [prompt_offsets[n_groups]]
    uint8_t *skipped;        // [n_groups]
    int32_t *n_valid;        // [n_groups]
    uint8_t *zero_adv;       // [n_groups]

    // candidates: n_groups * k rows
    int32_t *group_index, *candidate_index, *rank_in_group;
    float *score, *value, *fork_entropy, *final_entropy, *reward, *advantage;
    int32_t *correct;
    uint8_t *valid, *finish_reason;
    int64_t *token_offsets; // [n_cands + 1]
    int64_t *text_offsets;  // [n_cands + 1]
    char *text;             // [text_offsets[n_cands]], not NUL-terminated

    // tokens: token_offsets[n_cands] rows
    int32_t *token_id;
    float *logp_raw, *logp_sample, *logp_old, *entropy, *self_certainty;
} Shard;

// Number of candidate rows and token rows of a shard.
static inline long shard_n_cands(const Shard *s) {
    return (long)s->n_groups * s->k;
}
static inline long shard_n_tokens(const Shard *s) {
    return s->token_offsets ? (long)s->token_offsets[shard_n_cands(s)] : 0;
}

// Allocates every array of a shard of n_groups groups of k candidates holding n_prompt_tokens
// prompt tokens, n_tokens generated tokens and text_bytes bytes of text; offsets are zeroed and
// the caller fills everything.
void shard_alloc(Shard *s, int n_groups, int k, long n_prompt_tokens, long n_tokens,
                 long text_bytes);
void shard_free(Shard *s);

// Writes s to path atomically (path.tmp, fsync, rename, fsync of the directory). On any failure
// (disk full included) nothing is left at path or path.tmp, and -1 is returned with one error
// line in gemc_error() that names the file and the cause.
int shard_write(const char *path, const Shard *s);

// Reads and checks a shard: the format version, every dataset's presence, type and length, the
// offsets (monotone, in range), ids, ranks and indices. When expect_config_hash is non-zero the
// shard's config_hash must equal it. Returns 0, or -1 with one error line naming the file and
// what is wrong (and s zeroed).
int shard_read(const char *path, Shard *s, uint64_t expect_config_hash);

// The shard path of (step, generator rank) in the directory dir: "DIR/step_000012.gen_1.h5".
// Returns a malloc'd string.
char *shard_path(const char *dir, long step, int generator_rank);

#endif
