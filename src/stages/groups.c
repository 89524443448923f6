// Sampling, scoring and ranking a batch of candidate groups (docs/algorithm.md sections 1-5): the
// generator's half of GEM, shared by `train`, `dpo` with entropy pairs and `generate`.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gem/reward.h"
#include "stages/stage.h"

static int groups_rank(GroupBatch *gb, const Policy *p, const GemConfig *c, const Dataset *ds);

int groups_sample(GroupBatch *gb, Policy *p, const GemConfig *c, const Dataset *ds, const int *idx,
                  int G, int step, RunDir *r) {
    const int k = c->sampling.k;
    memset(gb, 0, sizeof *gb);
    gb->G = G, gb->k = k, gb->step = step;
    gb->idx = mallocCheck(sizeof(int) * (size_t)G);
    memcpy(gb->idx, idx, sizeof(int) * (size_t)G);
    gb->cands = callocCheck((size_t)G * k, sizeof(Candidate));
    gb->scores = callocCheck((size_t)G * k, sizeof(CandidateScore));
    gb->rank = callocCheck((size_t)G, sizeof(GroupRanking));
    const int **prompts = mallocCheck(sizeof(int *) * (size_t)G);
    int *lens = mallocCheck(sizeof(int) * (size_t)G);
    uint64_t *keys = mallocCheck(sizeof(uint64_t) * (size_t)G);
    for (int g = 0; g < G; g++) {
        const DataRecord *rec = &ds->rec[idx[g]];
        prompts[g] = rec->prompt_ids.v;
        lens[g] = rec->prompt_ids.n;
        keys[g] = ((uint64_t)(uint32_t)step << 32) | (uint32_t)idx[g];
    }
    GenerateRequest req = {.sc = &c->sampling,
                           .eos_ids = p->stop_ids,
                           .n_eos = p->n_stop,
                           .seed = c->run.seed,
                           .policy_version = (int)p->model.adam_t,
                           .draw_vocab = tokenizer_vocab_size(p->tok),
                           .progress = progress_bar,
                           .progress_ctx = r};
    progress_set_label("sampling");
    double t0 = now_seconds();
    int rc = sampler_generate(&p->model, &req, G, prompts, lens, keys, gb->cands);
    progress_done(r);
    gb->t_sample = now_seconds() - t0;
    free(prompts);
    free(lens);
    free(keys);
    if (rc != 0) {
        groups_free(gb);
        return -1;
    }
    t0 = now_seconds();
    rc = groups_rank(gb, p, c, ds);
    gb->t_score = now_seconds() - t0;
    if (rc != 0) groups_free(gb);
    return rc;
}

int groups_check_labels(const GemConfig *c, const Dataset *ds) {
    if (!reward_needs_labels(&c->reward)) return 0;
    for (int i = 0; i < ds->n; i++)
        if (!ds->rec[i].answer) {
            gemc_set_error("%s:%d: reward.source is %s, which needs every prompt's \"answer\", "
                           "and this one has none (HINT: add the answers, or pick a label-free "
                           "source: reward.source=gem, majority, self_certainty or entropy)",
                           ds->path, ds->rec[i].line, reward_source_name(c->reward.source));
            return -1;
        }
    return 0;
}

// Scores, values and ranks the sampled candidates of gb (groups_sample after sampling).
static int groups_rank(GroupBatch *gb, const Policy *p, const GemConfig *c, const Dataset *ds) {
    const int G = gb->G, k = gb->k;
    if (!gb->correct) gb->correct = mallocCheck(sizeof(int) * (size_t)G * k);
    for (int i = 0; i < G * k; i++) {
        gb->new_tokens += gb->cands[i].n;
        if (gem_score_candidate(&c->score, p->tok, &gb->cands[i], &gb->scores[i]) != 0) return -1;
    }
    RewardInput *in = mallocCheck(sizeof(RewardInput) * (size_t)k);
    char **answers = callocCheck((size_t)k, sizeof(char *));
    float *value = mallocCheck(sizeof(float) * (size_t)k);
    for (int g = 0; g < G; g++) {
        const char *expected = ds->rec[gb->idx[g]].answer;
        const int use_raw = c->score.entropy_source == ENTROPY_RAW;
        for (int i = 0; i < k; i++) {
            const Candidate *cd = &gb->cands[(size_t)g * k + i];
            answers[i] = expected || reward_needs_answers(&c->reward)
                             ? policy_candidate_answer(p, c->score.answer_marker, cd)
                             : NULL;
            gb->correct[(size_t)g * k + i] =
                expected ? (int)reward_answer(answers[i], expected) : -1;
            in[i] = (RewardInput){.entropy = use_raw ? cd->entropy_raw : cd->entropy_sample,
                                  .certainty = cd->certainty,
                                  .n = candidate_content_len(cd),
                                  .gem_score = gb->scores[(size_t)g * k + i].score,
                                  .answer = answers[i]};
        }
        reward_group_values(&c->reward, in, k, expected,
                            reward_coin_key(c->run.seed, gb->step, gb->idx[g]), value);
        for (int i = 0; i < k; i++) {
            gb->scores[(size_t)g * k + i].value = value[i];
            free(answers[i]);
            answers[i] = NULL;
        }
        group_ranking_alloc(&gb->rank[g], k);
        gem_rank_group(&c->filter, &c->sega, gb->cands + (size_t)g * k, gb->scores + (size_t)g * k,
                       k, &gb->rank[g]);
    }
    free(in), free(answers), free(value);
    return 0;
}

void groups_free(GroupBatch *gb) {
    if (gb->cands)
        for (int i = 0; i < gb->G * gb->k; i++) candidate_free(&gb->cands[i]);
    if (gb->rank)
        for (int g = 0; g < gb->G; g++) group_ranking_free(&gb->rank[g]);
    free(gb->idx);
    free(gb->cands);
    free(gb->scores);
    free(gb->rank);
    free(gb->correct);
    memset(gb, 0, sizeof *gb);
}

typedef struct {
    double sum, sq;
    long n;
} Moments;

static void mom_add(Moments *m, double x) {
    m->sum += x, m->sq += x * x, m->n++;
}
static double mom_mean(const Moments *m) {
    return m->n ? m->sum / m->n : NAN;
}
static double mom_std(const Moments *m) {
    if (m->n < 2) return NAN;
    double mean = m->sum / m->n, var = (m->sq - m->n * mean * mean) / (m->n - 1);
    return var > 0 ? sqrt(var) : 0;
}

void groups_metrics(const GroupBatch *gb, Metrics *m, double *reward_mean, double *fork_mean,
                    double *final_mean, double *correct_share) {
    Moments reward = {0}, score = {0}, adv = {0}, fork = {0}, final = {0}, len = {0};
    int len_max = 0, truncated = 0, skipped = 0, zero_adv = 0;
    long labelled = 0, correct = 0;
    for (int g = 0; g < gb->G; g++) {
        const GroupRanking *rk = &gb->rank[g];
        skipped += rk->skipped;
        zero_adv += rk->zero_adv;
        for (int i = 0; i < gb->k; i++) {
            const Candidate *cd = &gb->cands[(size_t)g * gb->k + i];
            const CandidateScore *s = &gb->scores[(size_t)g * gb->k + i];
            // entropies, lengths and truncation describe every sample; rewards and advantages
            // only the candidates that take part in the update
            mom_add(&score, s->score);
            mom_add(&fork, s->fork);
            mom_add(&final, s->final);
            mom_add(&len, cd->n);
            if (cd->n > len_max) len_max = cd->n;
            truncated += cd->finish == FINISH_LENGTH;
            const int ok = gb->correct ? gb->correct[(size_t)g * gb->k + i] : -1;
            labelled += ok >= 0, correct += ok > 0;
            if (rk->valid[i] && !rk->skipped) {
                mom_add(&reward, rk->reward[i]);
                mom_add(&adv, rk->advantage[i]);
            }
        }
    }
    const long n = (long)gb->G * gb->k;
    metrics_num(m, "reward_mean", mom_mean(&reward));
    metrics_num(m, "reward_std", mom_std(&reward));
    metrics_num(m, "score_mean", mom_mean(&score));
    metrics_num(m, "score_std", mom_std(&score));
    metrics_num(m, "adv_std", mom_std(&adv));
    metrics_num(m, "fork_entropy", mom_mean(&fork));
    metrics_num(m, "final_entropy", mom_mean(&final));
    metrics_num(m, "len_mean", mom_mean(&len));
    metrics_int(m, "len_max", len_max);
    metrics_num(m, "truncated", n ? (double)truncated / n : 0);
    metrics_int(m, "groups", gb->G);
    metrics_int(m, "groups_skipped", skipped);
    metrics_int(m, "groups_zero_adv", zero_adv);
    // the share of sampled candidates whose final answer is right, where prompts have answers:
    // the training reward curve of a verifiable task, whatever reward.source trains on
    if (labelled) metrics_num(m, "correct", (double)correct / labelled);
    metrics_int(m, "sampled_tokens", gb->new_tokens);
    metrics_num(m, "sample_tok_s", gb->t_sample > 0 ? gb->new_tokens / gb->t_sample : NAN);
    metrics_num(m, "time_sample", gb->t_sample);
    metrics_num(m, "time_score", gb->t_score);
    if (reward_mean) *reward_mean = mom_mean(&reward);
    if (fork_mean) *fork_mean = mom_mean(&fork);
    if (final_mean) *final_mean = mom_mean(&final);
    if (correct_share) *correct_share = labelled ? (double)correct / labelled : NAN;
}
