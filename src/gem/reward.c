// Reward sources (reward.h, docs/algorithm.md section 10).
#include "gem/reward.h"

#include <math.h>
#include <stdlib.h>

#include "base/common.h"
#include "gem/gem.h"
#include "base/rng.h"

float reward_entropy_tail(const float *H, int n, float span) {
    if (n <= 0) return 0.0f;
    // 1e-5 absorbs the float rounding of the span: 0.3333333f of 9 tokens is 3, not 4
    int m = (int)ceil((double)span * n - 1e-5);
    if (m < 1) m = 1;
    if (m > n) m = n;
    float sum = 0.0f;
    for (int t = n - m; t < n; t++) sum += H[t];
    return -sum / (float)m;
}

float reward_self_certainty(const float *kl, int n) {
    if (n <= 0 || !kl) return 0.0f;
    float sum = 0.0f;
    for (int t = 0; t < n; t++) sum += kl[t];
    return sum / (float)n;
}

int reward_majority_index(char *const *answers, int k) {
    int best = -1, best_votes = 0;
    for (int i = 0; i < k; i++) {
        if (!answers[i]) continue;
        int votes = 0;
        for (int j = 0; j < k; j++)
            votes += answers[j] && gem_answer_matches(answers[j], answers[i]);
        if (votes > best_votes) best = i, best_votes = votes;
    }
    return best;
}

float reward_answer(const char *got, const char *expected) {
    return got && expected && gem_answer_matches(got, expected) ? 1.0f : 0.0f;
}

int reward_needs_labels(const RewardConfig *rc) {
    return rc->source == REWARD_ANSWER || rc->source == REWARD_RANDOM;
}

int reward_needs_answers(const RewardConfig *rc) {
    return reward_needs_labels(rc) || rc->source == REWARD_MAJORITY;
}

uint64_t reward_coin_key(uint64_t seed, long step, int prompt_index) {
    return seed ^ 0x636f696e73ULL ^ ((uint64_t)step << 32) ^ (uint64_t)(uint32_t)prompt_index;
}

// The answer rewards of the group, shuffled (Fisher-Yates on the key's stream).
static void random_values(const RewardInput *in, int k, const char *expected, uint64_t key,
                          float *value) {
    for (int i = 0; i < k; i++) value[i] = reward_answer(in[i].answer, expected);
    Rng r;
    rng_seed(&r, key);
    for (int i = k - 1; i > 0; i--) {
        const int j = (int)(rng_u64(&r) % (uint64_t)(i + 1));
        const float t = value[i];
        value[i] = value[j], value[j] = t;
    }
}

void reward_group_values(const RewardConfig *rc, const RewardInput *in, int k, const char *expected,
                         uint64_t key, float *value) {
    if (rc->source == REWARD_RANDOM) {
        random_values(in, k, expected, key, value);
        return;
    }
    const char *maj = NULL;
    if (rc->source == REWARD_MAJORITY) {
        char **answers = mallocCheck(sizeof(char *) * (size_t)(k > 0 ? k : 1));
        for (int i = 0; i < k; i++) answers[i] = (char *)in[i].answer;
        const int m = reward_majority_index(answers, k);
        maj = m >= 0 ? in[m].answer : NULL;
        free(answers);
    }
    for (int i = 0; i < k; i++) {
        switch (rc->source) {
        case REWARD_GEM:
            value[i] = in[i].gem_score;
            break;
        case REWARD_ANSWER:
            value[i] = reward_answer(in[i].answer, expected);
            break;
        case REWARD_MAJORITY:
            value[i] = reward_answer(in[i].answer, maj);
            break;
        case REWARD_SELF_CERTAINTY:
            value[i] = reward_self_certainty(in[i].certainty, in[i].n);
            break;
        case REWARD_ENTROPY:
            value[i] = reward_entropy_tail(in[i].entropy, in[i].n, rc->entropy_span);
            break;
        case REWARD_RANDOM: // random_values
            break;
        }
    }
}

void reward_group_separation(const float *value, const int *correct, int k, RewardSeparation *acc) {
    int n = 0, right = 0, top = -1, bottom = -1;
    for (int i = 0; i < k; i++) {
        if (correct[i] < 0 || !isfinite(value[i])) continue;
        n++;
        right += correct[i] > 0;
        if (top < 0 || value[i] > value[top]) top = i;           // ties: the lower index stays
        if (bottom < 0 || value[i] <= value[bottom]) bottom = i; // ties: the higher index wins
        if (correct[i] <= 0) continue;
        for (int j = 0; j < k; j++) {
            if (correct[j] != 0 || !isfinite(value[j])) continue;
            acc->pairs += 1.0;
            acc->wins += value[i] > value[j] ? 1.0 : value[i] == value[j] ? 0.5 : 0.0;
        }
    }
    if (n == 0) return;
    acc->candidates += n;
    acc->groups++;
    acc->mixed_groups += right > 0 && right < n;
    acc->top += correct[top] > 0;
    acc->mean += (double)right / n;
    acc->bottom += correct[bottom] > 0;
}

double reward_separation_auroc(const RewardSeparation *s) {
    return s->pairs > 0 ? s->wins / s->pairs : NAN;
}
