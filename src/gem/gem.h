// The GEM objective, free of models and files: Eq. 1 scoring, cognitive filtering, SEGA
// rewards and advantages, the SEGA / DPO / SFT per-token loss gradients, and the evaluation
// helpers (docs/algorithm.md sections 3-6). Everything a stage computes from log-probs and
// entropies lives here, so each rule can be tested on hand-made numbers.
//
// Losses are written as functions of per-token log-probs l_t = ln pi_theta(token_t | ...): the
// stage runs the model forward, calls these for the value and d(loss)/d(l_t), and hands those to
// model_backward. Padding never exists: a candidate is its n tokens, nothing more.
#ifndef GEMC_GEM_H
#define GEMC_GEM_H

#include <stddef.h>

#include "config/config.h"
#include "model/sampler.h"
#include "text/tokenizer.h"

// ---- Eq. 1 -----------------------------------------------------------------------------------

typedef struct {
    float value;     // what the group is ranked by: S, or reward.source's reward (reward.h)
    float score;     // S = -lambda_final * final + lambda_fork * fork (lambda_final 1: Eq. 1)
    float fork;      // mean of the top-m CoT entropies (0 for an empty CoT span)
    float final;     // mean entropy of the final span (0 for an empty one)
    int n_cot;       // tokens in the CoT span
    int n_final;     // tokens in the final span
    int used_marker; // 1 when the marker was found (final_span: marker)
} CandidateScore;

// Scores n content tokens (prompt and EOS excluded) with entropies H[n]. For final_span: marker,
// text holds the tokens' decoded bytes and tok_end[i] is the end offset of token i in it
// (text and tok_end may be NULL for the other rules). With the marker found, the CoT span is the
// tokens that end at or before the marker's start and the final span the tokens that start at or
// after its end (a token straddling the marker is in neither); without it, or with only spaces
// after its last occurrence (no answer), the fraction rule.
void gem_score_tokens(const ScoreConfig *c, const float *H, int n, const char *text,
                      const int *tok_end, CandidateScore *out);
// Scores a sampled candidate: its content tokens are ids[0 .. n-1) when it ended at EOS, else all
// n; entropies are entropy_raw or entropy_sample (c->entropy_source); the text comes from
// decoding each token with tok. Returns 0, or -1 with the error recorded.
int gem_score_candidate(const ScoreConfig *c, const Tokenizer *tok, const Candidate *cand,
                        CandidateScore *out);
// Number of content tokens (EOS excluded) of a candidate.
int candidate_content_len(const Candidate *cand);
// The final answer a candidate gives: its content tokens decoded without special tokens, as valid
// UTF-8, then gem_extract_answer. *answer is malloc'd, or NULL without the marker. Returns 0, or
// -1 with the error recorded (an id outside the vocabulary).
int gem_candidate_answer(const Tokenizer *tok, const char *marker, const Candidate *cand,
                         char **answer);

// ---- Filtering, rewards, advantages (sections 4-5) ---------------------------------------------

typedef struct {
    int k;
    int *valid;       // [k] 1 when the candidate takes part in the update
    int *rank;        // [k] 0 = best by S (descending, ties by index); -1 when invalid
    float *reward;    // [k] r_i (0 for invalid)
    float *advantage; // [k] A_i, the SEGA weight (0 for invalid)
    int n_valid;      // after trimming
    int skipped;      // 1 when the group takes no part (fewer than 2 valid, std < 1e-6, zero_adv)
    int zero_adv;     // 1 when skipped because every advantage is 0 (filter.skip_zero_adv)
    int best, worst;  // candidate indices of the (best, worst) pair, -1 when skipped
} GroupRanking;

void group_ranking_alloc(GroupRanking *g, int k);
void group_ranking_free(GroupRanking *g);

// Ranks a group of k candidates by their values (S, or reward.source's reward). Invalid: no content
// tokens, or finish == FINISH_LENGTH with drop_truncated. trim_bottom drops floor(trim_bottom *
// n_valid) of the lowest-valued valid ones. Rewards r_i = identity(v_i) or softmax(v /
// reward_temperature) over the valid ones; A_i = r_i - mean(r); with adv_norm: std, divided by
// (sample std + 1e-6) and the group skipped when that std < 1e-6; with skip_zero_adv, skipped when
// every A_i is 0 (equal rewards: zero_adv is set too). Advantages sum to zero over each valid
// group.
void gem_rank_group(const FilterConfig *f, const SegaConfig *s, const Candidate *cands,
                    const CandidateScore *scores, int k, GroupRanking *out);

// ---- SEGA loss (Eq. 2) -------------------------------------------------------------------------

// One candidate's term of L = -(1/G) sum_g (1/k_g) sum_i A_i * l_i, with weight = 1/(G k_g):
// returns its contribution to L and WRITES dlogp[t] = dL/dl_t for its n tokens (EOS included).
//   logp[n]     l_t under the current weights
//   old_logp[n] the generator's recorded log-probs, or NULL when the weights that sampled the
//               candidate are the current ones (then rho_t = 1 and the value is the plain Eq. 2
//               term); otherwise with clip_eps > 0 the per-token term is the PPO surrogate
//               min(rho_t A, clip(rho_t, 1-eps, 1+eps) A), rho_t = exp(l_t - old_t)
//   ref_logp[n] a frozen reference's log-probs for the k3 KL penalty (kl_coef > 0), or NULL
// logp_agg: mean divides the candidate's sum (policy and KL terms) by n.
double sega_candidate_loss(const SegaConfig *s, float advantage, float weight, const float *logp,
                           const float *old_logp, const float *ref_logp, int n, float *dlogp);

// The weight of each candidate of a batch of G groups of k in the SEGA loss, by sega.loss_agg,
// into weight[g * k + i] (0 for an invalid candidate or a skipped group). With A the active
// (not skipped) groups, k_g a group's valid candidates and len[g * k + i] a candidate's tokens
// (with sega.group_norm batch, A is G and the token count takes the skipped groups' valid
// candidates too):
//   seq_sum     1 / (A k_g)                        Eq. 2: each group weighs the same
//   token_mean  1 / (sum of len over the weighted) DAPO: each token of the batch weighs the same
//   constant    1 / (A k_g constant)               Dr. GRPO: Eq. 2 over a fixed length budget
// With logp_agg: mean (seq_sum only) sega_candidate_loss divides by the length on top.
void sega_batch_weights(const SegaConfig *s, const GroupRanking *rank, const int *len, int G, int k,
                        float constant, float *weight);

// ---- DPO, SFT ----------------------------------------------------------------------------------

// -ln sigmoid(beta * ((lc - lc_ref) - (lr - lr_ref))) for one pair (summed log-probs of the
// chosen and rejected responses), with d/d(lc) and d/d(lr) (the per-token gradient is that value
// for each of the response's tokens).
double dpo_pair_loss(float beta, double lc, double lr, double lc_ref, double lr_ref, double *dlc,
                     double *dlr);

// ---- Evaluation (section 6) --------------------------------------------------------------------

// The answer in text[0..len): what follows the last occurrence of marker, trimmed of spaces,
// to the end of that line. Returns a malloc'd string, or NULL when the marker is absent.
char *gem_extract_answer(const char *text, size_t len, const char *marker);
// Whether an extracted answer equals the reference: as numbers when both parse as numbers (a
// sign, digits with optional thousands commas, an optional fraction, then nothing but spaces or
// a final '.'; "12" equals "12.0", "1,200" equals "1200"), else as strings with surrounding
// spaces trimmed.
int gem_answer_matches(const char *got, const char *expected);
// 95% Wilson score interval of a proportion successes/n (successes may be fractional: ties count
// half). n == 0 gives [0, 1].
void wilson_interval(double successes, int n, double *lo, double *hi);

#endif
