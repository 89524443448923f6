// Reward sources (src/gem/reward.h) on hand-made groups, the fused self-certainty of the sampler
// against a double-precision reference, and the SEGA loss aggregations (sega.loss_agg, the
// zero-advantage skip) against their formulas and finite differences.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gem/gem.h"
#include "gem/reward.h"
#include "base/rng.h"
#include "model/sampler.h"
#include "tests.h"

static RewardConfig reward_cfg(RewardSource s) {
    return (RewardConfig){.source = s, .entropy_span = 1.0f / 3.0f};
}

// ---- each source on a hand-made group ----------------------------------------------------------

// Four candidates: answers "9", "9." (the same number), "10", none; entropies and certainties
// chosen so every source orders them differently.
static const float H0[6] = {1, 2, 3, 4, 5, 6}, H1[3] = {0.5f, 0.5f, 0.5f}, H2[4] = {2, 2, 0, 0},
                   H3[2] = {3, 1};
static const float C0[6] = {1, 1, 1, 1, 1, 1}, C1[3] = {3, 3, 3}, C2[4] = {0, 0, 0, 4},
                   C3[2] = {2, 0};

static void hand_group(RewardInput *in) {
    in[0] = (RewardInput){H0, C0, 6, 0.25f, "9"};
    in[1] = (RewardInput){H1, C1, 3, -1.0f, "9."};
    in[2] = (RewardInput){H2, C2, 4, 2.0f, "10"};
    in[3] = (RewardInput){H3, C3, 2, 0.0f, NULL};
}

static void test_gem_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4];
    RewardConfig rc = reward_cfg(REWARD_GEM);
    reward_group_values(&rc, in, 4, "9", 0, v);
    CU_ASSERT(v[0] == 0.25f && v[1] == -1.0f && v[2] == 2.0f && v[3] == 0.0f);
    CU_ASSERT(!reward_needs_labels(&rc) && !reward_needs_answers(&rc));
}

static void test_answer_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4];
    RewardConfig rc = reward_cfg(REWARD_ANSWER);
    reward_group_values(&rc, in, 4, "9", 0, v);
    CU_ASSERT(v[0] == 1.0f && v[1] == 1.0f && v[2] == 0.0f && v[3] == 0.0f);
    reward_group_values(&rc, in, 4, "10", 0, v);
    CU_ASSERT(v[0] == 0.0f && v[1] == 0.0f && v[2] == 1.0f && v[3] == 0.0f);
    reward_group_values(&rc, in, 4, NULL, 0, v); // no label: nothing is right
    CU_ASSERT(v[0] == 0.0f && v[1] == 0.0f && v[2] == 0.0f && v[3] == 0.0f);
    CU_ASSERT(reward_needs_labels(&rc) && reward_needs_answers(&rc));
}

// The control: the group's answer rewards in a seeded order. As many 1s as the true reward gives;
// the same key, the same order; over many keys each candidate is the right one equally often,
// whatever its own answer.
static void test_random_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4], again[4];
    RewardConfig rc = reward_cfg(REWARD_RANDOM);
    CU_ASSERT(reward_needs_labels(&rc) && reward_needs_answers(&rc));
    int hits[4] = {0}, moved = 0;
    const int keys = 4000;
    for (int key = 0; key < keys; key++) {
        const uint64_t kk = reward_coin_key(1, 7, key);
        reward_group_values(&rc, in, 4, "9", kk, v);
        reward_group_values(&rc, in, 4, "9", kk, again);
        CU_ASSERT(!memcmp(v, again, sizeof v));
        CU_ASSERT(v[0] + v[1] + v[2] + v[3] == 2.0f); // "9" and "9." are right
        for (int i = 0; i < 4; i++) {
            hits[i] += v[i] == 1.0f;
            CU_ASSERT(v[i] == 0.0f || v[i] == 1.0f);
        }
        moved += v[0] != 1.0f || v[1] != 1.0f;
    }
    for (int i = 0; i < 4; i++) CU_ASSERT(abs(hits[i] - keys / 2) < keys / 20);
    CU_ASSERT(moved > keys / 2);
    reward_group_values(&rc, in, 4, "11", 3, v); // nothing right: nothing to move
    CU_ASSERT(v[0] + v[1] + v[2] + v[3] == 0.0f);
    // the key: seed, step and prompt each change it
    CU_ASSERT(reward_coin_key(1, 7, 3) != reward_coin_key(2, 7, 3));
    CU_ASSERT(reward_coin_key(1, 7, 3) != reward_coin_key(1, 8, 3));
    CU_ASSERT(reward_coin_key(1, 7, 3) != reward_coin_key(1, 7, 4));
}

static void test_majority_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4];
    RewardConfig rc = reward_cfg(REWARD_MAJORITY);
    reward_group_values(&rc, in, 4, NULL, 0, v); // never reads the label
    CU_ASSERT(v[0] == 1.0f && v[1] == 1.0f && v[2] == 0.0f && v[3] == 0.0f);
    CU_ASSERT(!reward_needs_labels(&rc) && reward_needs_answers(&rc));
    // a 1-1 tie: the first of the most-voted wins; no answers at all: every value 0
    in[1].answer = "11";
    reward_group_values(&rc, in, 4, NULL, 0, v);
    CU_ASSERT(v[0] == 1.0f && v[1] == 0.0f && v[2] == 0.0f && v[3] == 0.0f);
    for (int i = 0; i < 4; i++) in[i].answer = NULL;
    reward_group_values(&rc, in, 4, NULL, 0, v);
    CU_ASSERT(v[0] == 0.0f && v[1] == 0.0f && v[2] == 0.0f && v[3] == 0.0f);
    char *a[3] = {"3", "4", "4.0"};
    CU_ASSERT_EQUAL(reward_majority_index(a, 3), 1);
}

static void test_self_certainty_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4];
    RewardConfig rc = reward_cfg(REWARD_SELF_CERTAINTY);
    reward_group_values(&rc, in, 4, NULL, 0, v);
    CU_ASSERT(v[0] == 1.0f && v[1] == 3.0f && v[2] == 1.0f && v[3] == 1.0f);
    CU_ASSERT(reward_self_certainty(C0, 0) == 0.0f);
}

static void test_entropy_source(void) {
    RewardInput in[4];
    hand_group(in);
    float v[4];
    RewardConfig rc = reward_cfg(REWARD_ENTROPY);
    reward_group_values(&rc, in, 4, NULL, 0, v);
    // the last third: 2 of 6, 1 of 3, 2 of 4 (ceil(4/3) = 2), 1 of 2 (ceil(2/3) = 1)
    CU_ASSERT(v[0] == -5.5f && v[1] == -0.5f && v[2] == 0.0f && v[3] == -1.0f);
    CU_ASSERT(reward_entropy_tail(H0, 6, 0.5f) == -5.0f);
    CU_ASSERT(reward_entropy_tail(H0, 6, 1.0f) == -3.5f);
    CU_ASSERT(reward_entropy_tail(H0, 6, 0.01f) == -6.0f); // at least one token
    CU_ASSERT(reward_entropy_tail(H0, 0, 0.5f) == 0.0f);
}

// The answer reward through ranking: right candidates get positive advantages; a group whose
// candidates are all wrong (or all right) has no signal and is skipped with zero_adv, unless
// filter.skip_zero_adv is off (then it stays, with zero advantages, and counts in G).
static void test_answer_ranking_and_zero_adv(void) {
    Candidate c[4];
    CandidateScore sc[4];
    for (int i = 0; i < 4; i++) c[i] = (Candidate){.n = 3, .finish = FINISH_EOS};
    const float right[4] = {1, 0, 1, 0}, none[4] = {0, 0, 0, 0};
    FilterConfig f = {.skip_zero_adv = 1};
    SegaConfig s = {
        .reward_mapping = REWARD_IDENTITY, .reward_temperature = 1, .adv_norm = ADV_NONE};
    GroupRanking g;
    group_ranking_alloc(&g, 4);
    for (int i = 0; i < 4; i++) sc[i] = (CandidateScore){.value = right[i]};
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(!g.skipped && !g.zero_adv);
    CU_ASSERT(g.advantage[0] == 0.5f && g.advantage[1] == -0.5f && g.advantage[2] == 0.5f &&
              g.advantage[3] == -0.5f);
    CU_ASSERT(g.best == 0 && g.worst == 3); // ties keep index order
    for (int i = 0; i < 4; i++) sc[i] = (CandidateScore){.value = none[i]};
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(g.skipped && g.zero_adv && g.best == -1);
    f.skip_zero_adv = 0;
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(!g.skipped && !g.zero_adv);
    for (int i = 0; i < 4; i++) CU_ASSERT(g.advantage[i] == 0.0f);
    group_ranking_free(&g);
}

// Within-group AUROC through reward_group_separation, one group at a time.
static double group_auroc(const float *v, const int *ok, int k) {
    RewardSeparation s = {0};
    reward_group_separation(v, ok, k, &s);
    return reward_separation_auroc(&s);
}

static void test_auroc(void) {
    const float v[4] = {3, 2, 1, 0};
    const int ok[4] = {1, 0, 1, 0};
    // right 3 beats 2 and 0, right 1 beats 0 and loses to 2: 3 of 4 pairs
    ASSERT_CLOSE(group_auroc(v, ok, 4), 0.75, 1e-12);
    const float tie[2] = {1, 1};
    const int ok2[2] = {1, 0};
    ASSERT_CLOSE(group_auroc(tie, ok2, 2), 0.5, 1e-12);
    const int all[2] = {1, 1};
    CU_ASSERT(isnan(group_auroc(tie, all, 2)));
}

// ---- the fused self-certainty against double precision -----------------------------------------

// KL(uniform || softmax(z)) in double: ln sum e^(z - m) - mean(z - m) - ln V.
static double certainty_ref(const float *z, int V) {
    double m = z[0];
    for (int i = 1; i < V; i++) m = fmax(m, z[i]);
    double S = 0, D = 0;
    for (int i = 0; i < V; i++) S += exp(z[i] - m), D += z[i] - m;
    return log(S) - D / V - log((double)V);
}

static void test_self_certainty_fused(void) {
    const int sizes[3] = {7, 1000, 152000};
    SamplingConfig greedy = {.k = 1, .temperature = 0, .top_p = 1, .max_new_tokens = 1};
    SamplingConfig warm = {.k = 1, .temperature = 0.7f, .top_p = 0.9f, .max_new_tokens = 1};
    Rng r;
    rng_seed(&r, 42);
    for (int si = 0; si < 3; si++) {
        const int V = sizes[si];
        float *z = malloc(sizeof(float) * (size_t)V), *scratch = malloc(sizeof(float) * 2 * V);
        for (int shape = 0; shape < 3; shape++) {
            // broad logits, one dominant logit, all equal (KL 0)
            for (int i = 0; i < V; i++)
                z[i] = shape == 2
                           ? 1.5f
                           : 4.0f * (float)rng_normal(&r) + (shape == 1 && i == 3 ? 40.0f : 0.0f);
            const double want = certainty_ref(z, V);
            TokenDraw a, b;
            sample_token(z, V, &greedy, 0.5f, scratch, &a);
            sample_token(z, V, &warm, 0.25f, scratch, &b);
            // fp32 sums over V terms of |z - m| up to ~60: the mean's rounding is a few 1e-6
            // relative to the largest |z - m|, well inside 1e-4 absolute
            const double tol = 1e-4 + 1e-5 * fabs(want);
            if (fabs(a.certainty - want) > tol)
                fprintf(stderr, "\n  V %d shape %d: certainty %.8g, double %.8g\n", V, shape,
                        a.certainty, want);
            CU_ASSERT(fabs(a.certainty - want) <= tol);
            CU_ASSERT(a.certainty == b.certainty); // the raw distribution's, whatever is sampled
            CU_ASSERT(a.certainty >= 0.0f);
        }
        free(z), free(scratch);
    }
}

// ---- loss aggregations -----------------------------------------------------------------------

// Two groups of k = 3: group 0 with lengths 2, 3, 1 and advantages 0.5, -0.25, -0.25; group 1
// with lengths 4, 2 and an invalid third candidate, advantages -0.5, 0.5; a third group skipped.
enum { G3 = 3, K3 = 3 };
static const int LEN[G3 * K3] = {2, 3, 1, 4, 2, 5, 3, 3, 3};
static const float ADV[G3 * K3] = {0.5f, -0.25f, -0.25f, -0.5f, 0.5f, 0.0f, 0, 0, 0};

static void three_groups(GroupRanking *rk) {
    for (int g = 0; g < G3; g++) {
        group_ranking_alloc(&rk[g], K3);
        for (int i = 0; i < K3; i++) {
            rk[g].valid[i] = !(g == 1 && i == 2);
            rk[g].advantage[i] = ADV[g * K3 + i];
        }
        rk[g].n_valid = g == 1 ? 2 : 3;
        rk[g].skipped = g == 2;
    }
}

// The batch's loss sum_c w_c sum_t (-A_c l_t) with the weights of s, its gradient into g.
static double batch_loss(const SegaConfig *s, const float *w, const float *l, float *g) {
    double total = 0;
    int o = 0;
    for (int c = 0; c < G3 * K3; c++) {
        if (w[c] != 0.0f)
            total +=
                sega_candidate_loss(s, ADV[c], w[c], l + o, NULL, NULL, LEN[c], g ? g + o : NULL);
        else if (g)
            memset(g + o, 0, sizeof(float) * (size_t)LEN[c]);
        o += LEN[c];
    }
    return total;
}

static void test_loss_aggregations(void) {
    GroupRanking rk[G3];
    three_groups(rk);
    int T = 0;
    for (int c = 0; c < G3 * K3; c++) T += LEN[c];
    float *l = malloc(sizeof(float) * (size_t)T), *g = malloc(sizeof(float) * (size_t)T);
    Rng r;
    rng_seed(&r, 7);
    for (int t = 0; t < T; t++) l[t] = -0.25f - (float)(rng_u64(&r) % 64) / 16.0f;
    const LossAgg aggs[3] = {LOSS_SEQ_SUM, LOSS_TOKEN_MEAN, LOSS_CONSTANT};
    for (int a = 0; a < 6; a++) {
        const int batch = a >= 3; // sega.group_norm
        SegaConfig s = {.loss_agg = aggs[a % 3],
                        .logp_agg = LOGP_SUM,
                        .clip_eps = 0.2f,
                        .group_norm = batch ? GROUP_NORM_BATCH : GROUP_NORM_ACTIVE};
        float w[G3 * K3];
        sega_batch_weights(&s, rk, LEN, G3, K3, 8.0f, w);
        // the weights by their formulas: 2 active groups of 3 (active) or all 3 (batch); 3 and 2
        // valid candidates; the trained candidates' tokens 2 + 3 + 1 + 4 + 2 = 12, and 9 more
        // in the skipped group's valid ones (batch)
        const double groups = batch ? 3.0 : 2.0, tokens = batch ? 21.0 : 12.0;
        for (int c = 0; c < G3 * K3; c++) {
            const int grp = c / K3, nv = grp == 0 ? 3 : 2;
            double want = 0;
            if (grp < 2 && !(c == 5))
                want = aggs[a % 3] == LOSS_SEQ_SUM      ? 1.0 / (groups * nv)
                       : aggs[a % 3] == LOSS_TOKEN_MEAN ? 1.0 / tokens
                                                        : 1.0 / (groups * nv * 8.0);
            ASSERT_CLOSE(w[c], want, 1e-7 * want);
        }
        // the value: -sum_c w_c A_c sum_t l_t
        double want = 0;
        int o = 0;
        for (int c = 0; c < G3 * K3; c++) {
            double sum = 0;
            for (int t = 0; t < LEN[c]; t++) sum += l[o + t];
            want -= (double)w[c] * ADV[c] * sum;
            o += LEN[c];
        }
        ASSERT_CLOSE(batch_loss(&s, w, l, g), want, 1e-6);
        // the gradient against central differences (h = 2^-10 is exact in float here)
        const float h = 0x1p-10f;
        for (int t = 0; t < T; t++) {
            const float keep = l[t];
            l[t] = keep + h;
            const double up = batch_loss(&s, w, l, NULL);
            l[t] = keep - h;
            const double down = batch_loss(&s, w, l, NULL);
            l[t] = keep;
            const double fd = (up - down) / (2.0 * h);
            CU_ASSERT(fabs(fd - g[t]) <= 1e-6 + 1e-4 * fabs(fd));
        }
    }
    for (int i = 0; i < G3; i++) group_ranking_free(&rk[i]);
    free(l), free(g);
}

void register_reward_tests(void) {
    static const TestCase tests[] = {
        {"gem source", test_gem_source},
        {"answer source", test_answer_source},
        {"majority source", test_majority_source},
        {"random source (the control)", test_random_source},
        {"self_certainty source", test_self_certainty_source},
        {"entropy source", test_entropy_source},
        {"answer ranking and zero-advantage groups", test_answer_ranking_and_zero_adv},
        {"AUROC", test_auroc},
        {"fused self-certainty against double", test_self_certainty_fused},
        {"loss aggregations: weights, value, finite differences", test_loss_aggregations},
        {NULL, NULL},
    };
    add_suite("reward", tests);
}
