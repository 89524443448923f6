// Reward sources (docs/algorithm.md section 10): what a candidate's reward is, chosen by
// reward.source. Eq. 1's S is the default; the others are the baselines a user compares GEM
// with, computed from what the generator already has (the text, the token entropies, the
// per-token self-certainty) so that shards and `gemc rescore` can recompute every one.
//   gem             S = -final + lambda * fork (gem.h)
//   answer          1 when the extracted final answer equals the prompt's answer, else 0
//                   (verifiable: needs labels; the RLVR / GRPO baseline and the learner check)
//   majority        1 when the answer is the group's majority answer, else 0 (TTRL)
//   self_certainty  the mean over the tokens of KL(uniform || p_t) (Intuitor)
//   entropy         -(mean token entropy) over the last reward.entropy_span of the tokens (RENT)
//   random          the group's answer rewards in a seeded random order: as many 1s as the true
//                   reward gives, on candidates picked by a coin (the control: a learner that
//                   gains as much from it has learnt nothing from the reward)
#ifndef GEMC_REWARD_H
#define GEMC_REWARD_H

#include <stdint.h>

#include "config/config.h"

// What one candidate offers the sources.
typedef struct {
    const float *entropy;   // [n] entropies of the content tokens (score.entropy_source)
    const float *certainty; // [n] KL(uniform || p_t) of the content tokens; may be NULL
    int n;                  // content tokens (EOS excluded)
    float gem_score;        // S of Eq. 1
    const char *answer;     // the extracted final answer, NULL without the answer marker
} RewardInput;

// -(mean entropy of the last ceil(span * n) tokens); 0 for n == 0.
float reward_entropy_tail(const float *H, int n, float span);
// Mean of the per-token KL(uniform || p_t); 0 for n == 0.
float reward_self_certainty(const float *kl, int n);
// The index of the answer most candidates gave (answers equal as gem_answer_matches says; the
// first of the most-voted on ties), or -1 when none has an answer.
int reward_majority_index(char *const *answers, int k);
// 1 when got (may be NULL) matches expected, else 0.
float reward_answer(const char *got, const char *expected);

// The value each of the k candidates of a group is ranked by and its reward mapped from
// (CandidateScore.value): the source's reward. expected is the prompt's answer (answer source;
// NULL = none, which gives every candidate 0: check reward_needs_labels up front). key seeds the
// random source's order (reward_coin_key); the other sources ignore it.
void reward_group_values(const RewardConfig *rc, const RewardInput *in, int k, const char *expected,
                         uint64_t key, float *value);
// The random source's key of a group: from run.seed, the step and the prompt's dataset index, so
// a run and its resume draw the same order. (`gemc rescore` leaves the control out: its AUROC is
// 0.5 by construction.)
uint64_t reward_coin_key(uint64_t seed, long step, int prompt_index);
// 1 when the source reads the prompts' answers (answer, random).
int reward_needs_labels(const RewardConfig *rc);
// 1 when the source needs each candidate's extracted answer (answer, majority, random).
int reward_needs_answers(const RewardConfig *rc);

// How well a source's values tell right candidates from wrong ones, within groups, summed over
// the groups reward_group_separation was given (`gemc rescore`, the training-time probe).
typedef struct {
    long candidates;   // candidates that took part: labelled (correct 0 or 1), finite value
    long groups;       // groups with at least one such candidate
    long mixed_groups; // groups with both a right and a wrong one
    double pairs;      // (right, wrong) pairs of the same group
    double wins;       // of those, the ones where the right candidate has the larger value (ties
                       // count half)
    double top;        // sum over groups of correct[] of the top-ranked candidate (the largest
                       // value, ties by lower index)
    double mean;       // sum over groups of the share correct
    double bottom;     // sum over groups of correct[] of the bottom-ranked one (last in that
                       // order: the smallest value, ties by higher index)
} RewardSeparation;

// Adds one group of k candidates to acc: value[i] and correct[i] (1/0; negative: no label, the
// candidate is left out, as is one with a non-finite value).
void reward_group_separation(const float *value, const int *correct, int k, RewardSeparation *acc);
// The within-group AUROC, wins / pairs: the chance that a right candidate has a larger value
// than a wrong one of the same group. NAN without pairs.
double reward_separation_auroc(const RewardSeparation *s);

#endif
