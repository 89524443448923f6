// `gemc generate`: samples sampling.k candidates for each prompt, scores and ranks them as `train`
// would, and writes one JSON object per candidate to generate.out: the text, the Eq. 1 terms,
// the rank and SEGA advantage, and the per-token ids, log-probs and entropies. It is the way to
// look at what GEM rewards before training on it.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/common.h"
#include "stages/stage.h"

static void put_floats(StrBuf *b, const char *key, const float *v, int n) {
    char tmp[48];
    snprintf(tmp, sizeof tmp, ", \"%s\": [", key);
    strbuf_puts(b, tmp);
    for (int i = 0; i < n; i++) {
        snprintf(tmp, sizeof tmp, i ? ", %.6g" : "%.6g", v[i]);
        strbuf_puts(b, tmp);
    }
    strbuf_puts(b, "]");
}

static void put_candidate(StrBuf *b, const Policy *p, const DataRecord *rec, int prompt_index,
                          int c, const Candidate *cd, const CandidateScore *s,
                          const GroupRanking *rk) {
    char tmp[512];
    StrBuf text = {0};
    policy_decode_text(p, cd->ids, candidate_content_len(cd), &text);
    snprintf(tmp, sizeof tmp,
             "{\"prompt_index\": %d, \"line\": %d, \"candidate\": %d, \"prompt\": ", prompt_index,
             rec->line, c);
    strbuf_puts(b, tmp);
    strbuf_json_string(b, rec->prompt);
    strbuf_puts(b, ", \"text\": ");
    strbuf_json_string(b, text.p ? text.p : "");
    snprintf(tmp, sizeof tmp,
             ", \"finish_reason\": \"%s\", \"n_tokens\": %d, \"score\": %.6g, \"fork\": %.6g, "
             "\"final\": %.6g, \"n_cot\": %d, \"n_final\": %d, \"used_marker\": %s, "
             "\"valid\": %s, \"rank\": %d, \"reward\": %.6g, \"advantage\": %.6g, "
             "\"group_skipped\": %s, \"ids\": [",
             finish_reason_name(cd->finish), cd->n, s->score, s->fork, s->final, s->n_cot,
             s->n_final, s->used_marker ? "true" : "false", rk->valid[c] ? "true" : "false",
             rk->rank[c], rk->reward[c], rk->advantage[c], rk->skipped ? "true" : "false");
    strbuf_puts(b, tmp);
    for (int t = 0; t < cd->n; t++) {
        snprintf(tmp, sizeof tmp, t ? ", %d" : "%d", cd->ids[t]);
        strbuf_puts(b, tmp);
    }
    strbuf_puts(b, "]");
    put_floats(b, "logp_raw", cd->logp_raw, cd->n);
    put_floats(b, "logp_sample", cd->logp_sample, cd->n);
    put_floats(b, "logp_old", cd->logp_old, cd->n);
    put_floats(b, "entropy_raw", cd->entropy_raw, cd->n);
    put_floats(b, "entropy_sample", cd->entropy_sample, cd->n);
    strbuf_puts(b, "}\n");
    free(text.p);
}

int stage_generate(const GemConfig *c) {
    Policy p;
    if (policy_load(&p, c->generate.model, c) != 0) return -1;
    if (model_place(&p.model, c) != 0) {
        policy_free(&p);
        return -1;
    }
    Dataset ds;
    if (policy_load_data(&p, c, c->generate.prompts, DATA_PROMPTS, &ds) != 0) {
        policy_free(&p);
        return -1;
    }
    int n = c->generate.max_prompts > 0 && c->generate.max_prompts < ds.n ? c->generate.max_prompts
                                                                          : ds.n;
    RunDir con = {.progress = c->run.progress < 0 ? -1 : c->run.progress};
    if (con.progress < 0) con.progress = isatty(2);
    int *idx = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) idx[i] = i;
    GroupBatch gb;
    double t0 = now_seconds();
    int rc = groups_sample(&gb, &p, c, &ds, idx, n, 0, &con);
    if (rc == 0) {
        StrBuf out = {0};
        for (int g = 0; g < n; g++)
            for (int i = 0; i < gb.k; i++)
                put_candidate(&out, &p, &ds.rec[g], g, i, &gb.cands[(size_t)g * gb.k + i],
                              &gb.scores[(size_t)g * gb.k + i], &gb.rank[g]);
        rc = write_file_atomic(c->generate.out, out.p ? out.p : "", out.len);
        free(out.p);
        if (rc == 0)
            printf("generate: %d prompts x %d candidates, %ld tokens in %.1f s (%.0f tok/s), "
                   "wrote %s\n",
                   n, gb.k, gb.new_tokens, now_seconds() - t0,
                   gb.t_sample > 0 ? gb.new_tokens / gb.t_sample : 0.0, c->generate.out);
        groups_free(&gb);
    }
    free(idx);
    dataset_free(&ds);
    policy_free(&p);
    return rc;
}
