// A scored and ranked GroupBatch packed as an HDF5 shard (shard.h): what a generator rank hands
// to the learners, with every number the update needs and the decoded text for a human reader.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "stages/stage.h"

int groups_to_shard(const GroupBatch *gb, const Policy *p, const GemConfig *c, const Dataset *ds,
                    const long *group_ids, long step, long policy_version, int generator_rank,
                    Shard *s) {
    memset(s, 0, sizeof *s);
    const int G = gb->G, k = gb->k;
    const char *model = c->train.model && c->train.model[0] ? c->train.model : p->dir;
    if (!model) model = "";
    if (strlen(model) >= sizeof s->model) {
        gemc_set_error("%s: the model path is longer than the %zu bytes a shard records "
                       "(HINT: use a shorter path or a symbolic link)",
                       model, sizeof s->model - 1);
        return -1;
    }
    long n_prompt = 0, n_tokens = 0;
    for (int g = 0; g < G; g++) {
        if (gb->idx[g] < 0 || gb->idx[g] >= ds->n) {
            gemc_set_error("%s: group %d names prompt %d, but the file holds %d prompts",
                           ds->path ? ds->path : "dataset", g, gb->idx[g], ds->n);
            return -1;
        }
        n_prompt += ds->rec[gb->idx[g]].prompt_ids.n;
    }
    for (long i = 0; i < (long)G * k; i++) n_tokens += gb->cands[i].n;

    // the text first: its length is only known once decoded
    StrBuf text = {0};
    long *text_off = mallocCheck(sizeof(long) * ((size_t)G * k + 1));
    text_off[0] = 0;
    for (long i = 0; i < (long)G * k; i++) {
        policy_decode_text(p, gb->cands[i].ids, gb->cands[i].n, &text);
        text_off[i + 1] = (long)text.len;
    }

    shard_alloc(s, G, k, n_prompt, n_tokens, (long)text.len);
    s->step = step;
    s->policy_version = policy_version;
    s->generator_rank = generator_rank;
    s->seed = c->run.seed;
    s->config_hash = config_shard_hash(c);
    s->tokenizer_hash = tokenizer_hash(p->tok);
    snprintf(s->model, sizeof s->model, "%s", model);
    snprintf(s->reward_source, sizeof s->reward_source, "%s", reward_source_name(c->reward.source));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); // unix time, not now_seconds()'s monotonic clock
    s->created = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (text.len) memcpy(s->text, text.p, text.len);
    free(text.p);

    const int use_raw = c->score.entropy_source == ENTROPY_RAW;
    long pt = 0, t = 0;
    for (int g = 0; g < G; g++) {
        const IntVec *prompt = &ds->rec[gb->idx[g]].prompt_ids;
        const GroupRanking *rk = &gb->rank[g];
        s->group_id[g] = group_ids[g];
        s->prompt_index[g] = gb->idx[g];
        s->prompt_offsets[g] = pt;
        if (prompt->n) memcpy(s->prompt_tokens + pt, prompt->v, sizeof(int) * (size_t)prompt->n);
        pt += prompt->n;
        s->skipped[g] = (uint8_t)(rk->skipped != 0);
        s->n_valid[g] = rk->n_valid;
        s->zero_adv[g] = (uint8_t)(rk->zero_adv != 0);
        for (int i = 0; i < k; i++) {
            const long row = (long)g * k + i;
            const Candidate *cd = &gb->cands[row];
            const CandidateScore *sc = &gb->scores[row];
            s->group_index[row] = g;
            s->candidate_index[row] = i;
            s->rank_in_group[row] = rk->rank[i];
            s->score[row] = sc->score;
            s->value[row] = sc->value;
            s->correct[row] = gb->correct ? gb->correct[row] : -1;
            s->fork_entropy[row] = sc->fork;
            s->final_entropy[row] = sc->final;
            s->reward[row] = rk->reward[i];
            s->advantage[row] = rk->advantage[i];
            s->valid[row] = (uint8_t)(rk->valid[i] != 0);
            s->finish_reason[row] = cd->finish == FINISH_LENGTH;
            s->token_offsets[row] = t;
            s->text_offsets[row] = text_off[row];
            const size_t n = (size_t)cd->n;
            if (n) {
                memcpy(s->token_id + t, cd->ids, sizeof(int) * n);
                memcpy(s->logp_raw + t, cd->logp_raw, sizeof(float) * n);
                memcpy(s->logp_sample + t, cd->logp_sample, sizeof(float) * n);
                memcpy(s->logp_old + t, cd->logp_old, sizeof(float) * n);
                memcpy(s->entropy + t, use_raw ? cd->entropy_raw : cd->entropy_sample,
                       sizeof(float) * n);
                if (cd->certainty) memcpy(s->self_certainty + t, cd->certainty, sizeof(float) * n);
            }
            t += cd->n;
        }
    }
    s->prompt_offsets[G] = pt;
    s->token_offsets[(long)G * k] = t;
    s->text_offsets[(long)G * k] = text_off[(long)G * k];
    free(text_off);
    return 0;
}

void groups_from_shards(const Shard *sh, int n, GroupBatch *gb, const int **prompts,
                        int *prompt_lens, long *group_ids) {
    memset(gb, 0, sizeof *gb);
    int G = 0;
    for (int i = 0; i < n; i++) G += sh[i].n_groups;
    const int k = sh[0].k;
    gb->G = G, gb->k = k;
    gb->idx = mallocCheck(sizeof(int) * (size_t)(G ? G : 1));
    gb->cands = callocCheck((size_t)(G ? G : 1) * k, sizeof(Candidate));
    gb->scores = callocCheck((size_t)(G ? G : 1) * k, sizeof(CandidateScore));
    gb->rank = callocCheck((size_t)(G ? G : 1), sizeof(GroupRanking));
    gb->correct = mallocCheck(sizeof(int) * (size_t)(G ? G : 1) * k);
    int g = 0;
    for (int i = 0; i < n; i++) {
        const Shard *s = &sh[i];
        for (int sg = 0; sg < s->n_groups; sg++, g++) {
            gb->idx[g] = s->prompt_index[sg];
            group_ids[g] = s->group_id[sg];
            prompts[g] = s->prompt_tokens + s->prompt_offsets[sg];
            prompt_lens[g] = (int)(s->prompt_offsets[sg + 1] - s->prompt_offsets[sg]);
            GroupRanking *rk = &gb->rank[g];
            group_ranking_alloc(rk, k);
            rk->n_valid = s->n_valid[sg];
            rk->skipped = s->skipped[sg];
            rk->zero_adv = s->zero_adv[sg];
            for (int i2 = 0; i2 < k; i2++) {
                const long row = (long)sg * k + i2;
                Candidate *cd = &gb->cands[(size_t)g * k + i2];
                const long t0 = s->token_offsets[row], nt = s->token_offsets[row + 1] - t0;
                cd->n = (int)nt;
                cd->ids = mallocCheck(sizeof(int) * (size_t)(nt ? nt : 1));
                cd->logp_old = mallocCheck(sizeof(float) * (size_t)(nt ? nt : 1));
                memcpy(cd->ids, s->token_id + t0, sizeof(int) * (size_t)nt);
                memcpy(cd->logp_old, s->logp_old + t0, sizeof(float) * (size_t)nt);
                cd->finish = s->finish_reason[row] ? FINISH_LENGTH : FINISH_EOS;
                cd->policy_version = (int)s->policy_version;
                gb->scores[(size_t)g * k + i2] = (CandidateScore){.value = s->value[row],
                                                                  .score = s->score[row],
                                                                  .fork = s->fork_entropy[row],
                                                                  .final = s->final_entropy[row]};
                gb->correct[(size_t)g * k + i2] = s->correct[row];
                rk->valid[i2] = s->valid[row];
                rk->rank[i2] = s->rank_in_group[row];
                rk->reward[i2] = s->reward[row];
                rk->advantage[i2] = s->advantage[row];
            }
        }
    }
}
