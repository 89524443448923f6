// The sampler (docs/algorithm.md sections 1-2): batched generation with a KV cache, k candidates
// per prompt sharing that prompt's prefill, and for every generated token its id, its log-prob
// under the sampling distribution, its log-prob and entropy under the raw distribution, and the
// sampling entropy, all from the same pass over the logits that draws the token.
//
// Determinism: candidate c of a prompt draws its uniforms from its own stream, seeded from
// (seed, prompt key, c), so the same seed and the same prompts give the same candidates.
#ifndef GEMC_SAMPLER_H
#define GEMC_SAMPLER_H

#include <stdint.h>

#include "config/config.h"
#include "model/model.h"

typedef enum { FINISH_EOS, FINISH_LENGTH } FinishReason;

// One generated candidate. Nothing after the first EOS is a token of it: n counts the EOS (when
// finish == FINISH_EOS, it is ids[n-1]) and nothing else follows.
typedef struct {
    int n;
    int *ids;              // [n]
    float *logp_sample;    // [n] ln q(token), q the temperature/top-p/top-k distribution
    float *logp_raw;       // [n] ln p(token), p = softmax of the unscaled logits
    float *logp_old;       // [n] ln p_T(token), p_T = softmax(z / T) with nothing cut: the policy
                           // the learner's ratio compares against (logp_raw at T = 1 or greedy)
    float *entropy_raw;    // [n] H(p), nats
    float *entropy_sample; // [n] H(q), nats
    float *certainty; // [n] KL(uniform || p) = ln S - mean(z - m) - ln V, nats (self-certainty)
    FinishReason finish;
    int policy_version; // of the weights that sampled it
} Candidate;

void candidate_free(Candidate *c);
const char *finish_reason_name(FinishReason f); // "eos" | "length"

// What one draw from a row of logits gives.
typedef struct {
    int token;
    float logp_sample, logp_raw;
    float logp_old; // ln p_T(token) over the drawable ids, untruncated (Candidate.logp_old)
    float entropy_sample, entropy_raw;
    float certainty; // KL(uniform || p) over all V ids
} TokenDraw;

// The fused softmax-entropy-sample step on one row of raw logits z [V]: one sweep for the max,
// one sweep that accumulates S = sum e^(z-m), T = sum e^(z-m)(z-m) (raw entropy ln S - T/S),
// D = sum (z-m) (self-certainty KL(uniform || p) = ln S - D/V - ln V) and
// the same sums for the sampling distribution (z/temperature, restricted to top-k / top-p
// when they are on), then the draw by inverse CDF with the uniform u in [0, 1). All sums in fp32
// with fixed order. temperature == 0 (or top_k == 1) is greedy: the largest logit (lowest id on
// ties), logp_sample 0 and entropy_sample 0. scratch is malloc'd memory of at least 2*V floats
// (its second half holds int indices).
void sample_token(const float *z, int V, const SamplingConfig *sc, float u, float *scratch,
                  TokenDraw *out);

// The same, drawing only ids below n_draw (<= V): their weights make the sampling distribution,
// while the raw log-prob and entropy stay those of the model's whole distribution. Models pad
// their embedding past the tokenizer (Qwen2.5: 151,936 rows, 151,665 tokens); an id there has
// no text and is never drawn.
void sample_token_limited(const float *z, int V, int n_draw, const SamplingConfig *sc, float u,
                          float *scratch, TokenDraw *out);

// Called as generation progresses (done/total candidates finished), for progress bars.
typedef void (*ProgressFn)(void *ctx, long done, long total);

typedef struct {
    const SamplingConfig *sc;
    const int *eos_ids; // generation stops at any of these
    int n_eos;
    uint64_t seed;
    int policy_version;
    int draw_vocab;      // ids >= draw_vocab are never drawn (the tokenizer's size); 0 = all
    ProgressFn progress; // may be NULL
    void *progress_ctx;
    int skip_entropy; // benchmarks only, GPU only: entropies left 0, to time what they cost
} GenerateRequest;

// Generates k = sc->k candidates for each of n_prompts prompts (prompt p: prompts[p][0 ..
// prompt_lens[p]), its stream key prompt_keys[p], e.g. its index in the dataset) into
// out[p * k + c]. Candidates are decoded together in batches with a KV cache (on the model's GPU
// when m->gpu is set, gpu.h);
// each prompt is prefilled once and its keys/values are shared by its k candidates. Generation
// stops at an EOS, at sc->max_new_tokens, or at the model's context. Returns 0, or -1 with the
// error recorded (a prompt that leaves no room for a token, an id outside the vocabulary).
int sampler_generate(Model *m, const GenerateRequest *req, int n_prompts, const int *const *prompts,
                     const int *prompt_lens, const uint64_t *prompt_keys, Candidate *out);

#endif
