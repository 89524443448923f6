// `gemc train`: GEM itself (gem-spec.md sections 1-5), label-free. Each step samples k
// candidates for batch_size prompts with the current policy, scores them by their own token
// entropies (Eq. 1), filters and ranks each group, and takes one SEGA step (Eq. 2):
//   L = -(1/G) sum_g (1/k_g) sum_i A_i l_i
// over the G groups that were not skipped, k_g the group's valid candidates. The prompts'
// `answer` fields are never read.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "stage.h"

typedef struct {
    const GemConfig *c;
    const SeqRef *seqs;
    const float *adv;      // [n] A_i of each sequence
    const float *weight;   // [n] 1 / (G k_g)
    const float *ref_logp; // packed like the response log-probs, or NULL
    const long *off;       // [n + 1] response offsets
} SegaCtx;

static double sega_grad(void *ctx, int s0, int ns, const float *logp, float *dlogp) {
    const SegaCtx *x = ctx;
    double loss = 0;
    const long base = x->off[s0];
    for (int s = s0; s < s0 + ns; s++) {
        const long o = x->off[s] - base;
        // the policy sampled these candidates with the current weights: on-policy, rho = 1
        loss += sega_candidate_loss(&x->c->sega, x->adv[s], x->weight[s], logp + o, NULL,
                                    x->ref_logp ? x->ref_logp + x->off[s] : NULL, x->seqs[s].R,
                                    dlogp + o);
    }
    return loss;
}

// Writes the (best, worst) pair of each ranked group to pairs.jsonl (filter.pairs: true), in the
// {prompt, chosen, rejected} form `gemc dpo` reads.
static void write_pairs(FILE *f, const Policy *p, const Dataset *ds, const GroupBatch *gb) {
    for (int g = 0; g < gb->G; g++) {
        const GroupRanking *rk = &gb->rank[g];
        if (rk->skipped || rk->best < 0 || rk->worst < 0) continue;
        const Candidate *best = &gb->cands[(size_t)g * gb->k + rk->best];
        const Candidate *worst = &gb->cands[(size_t)g * gb->k + rk->worst];
        StrBuf line = {0}, a = {0}, b = {0};
        policy_decode_text(p, best->ids, candidate_content_len(best), &a);
        policy_decode_text(p, worst->ids, candidate_content_len(worst), &b);
        strbuf_puts(&line, "{\"prompt\": ");
        strbuf_json_string(&line, ds->rec[gb->idx[g]].prompt);
        strbuf_puts(&line, ", \"chosen\": ");
        strbuf_json_string(&line, a.p ? a.p : "");
        strbuf_puts(&line, ", \"rejected\": ");
        strbuf_json_string(&line, b.p ? b.p : "");
        strbuf_puts(&line, "}\n");
        fwrite(line.p, 1, line.len, f);
        free(line.p), free(a.p), free(b.p);
    }
    fflush(f);
}

int stage_train(const GemConfig *c) {
    Policy p, ref = {0};
    if (policy_load(&p, c->train.model, c) != 0) return -1;
    const int use_ref = c->sega.kl_coef > 0;
    const char *ref_dir = c->model.ref[0] ? c->model.ref : c->train.model;
    if (use_ref && policy_load(&ref, ref_dir, c) != 0) {
        policy_free(&p);
        return -1;
    }
    Dataset ds;
    RunDir r;
    FILE *pairs = NULL;
    int rc = policy_load_data(&p, c, c->train.data, DATA_PROMPTS, &ds);
    if (rc == 0 && (rc = rundir_open(&r, c->train.dir, c, "train")) != 0) dataset_free(&ds);
    if (rc != 0) {
        policy_free(&p);
        if (use_ref) policy_free(&ref);
        return -1;
    }
    if (c->filter.pairs) {
        char *path = path_join(c->train.dir, "pairs.jsonl");
        pairs = fopen(path, "w");
        if (!pairs) gemc_set_error("%s: cannot write (%s)", path, strerror(errno)), rc = -1;
        free(path);
    }
    const int G = c->train.batch_size, k = c->sampling.k;
    printf("train (GEM): %s (%d prompts) on %s, %d steps of %d prompts x k=%d, lr %g, "
           "run dir %s\n",
           c->train.data, ds.n, c->train.model, c->train.steps, G, k, c->train.lr, c->train.dir);
    DataOrder order;
    order_init(&order, ds.n, c->run.seed);
    int *idx = mallocCheck(sizeof(int) * (size_t)G);
    SeqRef *seqs = mallocCheck(sizeof(SeqRef) * (size_t)G * k);
    float *adv = mallocCheck(sizeof(float) * (size_t)G * k);
    float *weight = mallocCheck(sizeof(float) * (size_t)G * k);
    long *off = mallocCheck(sizeof(long) * ((size_t)G * k + 1));
    double t_loop = now_seconds();
    for (int step = 1; step <= c->train.steps && rc == 0; step++) {
        for (int g = 0; g < G; g++) idx[g] = order_next(&order);
        GroupBatch gb;
        if ((rc = groups_sample(&gb, &p, c, &ds, idx, G, step, &r)) != 0) break;
        if (pairs) write_pairs(pairs, &p, &ds, &gb);

        // the update: every valid candidate of every group that was not skipped
        double t0 = now_seconds();
        int n = 0, active = 0;
        long tokens = 0;
        for (int g = 0; g < G; g++) active += !gb.rank[g].skipped;
        for (int g = 0; g < G; g++) {
            const GroupRanking *rk = &gb.rank[g];
            if (rk->skipped) continue;
            const DataRecord *rec = &ds.rec[idx[g]];
            for (int i = 0; i < k; i++) {
                const Candidate *cd = &gb.cands[(size_t)g * k + i];
                // a zero advantage contributes nothing unless the KL term is on
                if (!rk->valid[i] || (rk->advantage[i] == 0.0f && !use_ref)) continue;
                seqs[n] = (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n, cd->ids, cd->n};
                adv[n] = rk->advantage[i];
                weight[n] = 1.0f / ((float)active * (float)rk->n_valid);
                tokens += cd->n + rec->prompt_ids.n;
                n++;
            }
        }
        seq_resp_offsets(seqs, n, off);
        float *ref_logp = NULL;
        if (use_ref && n > 0) {
            ref_logp = mallocCheck(sizeof(float) * (size_t)(off[n] ? off[n] : 1));
            seq_forward_backward(&ref.model, seqs, n, 1, c->optim.micro_batch_tokens, ref_logp,
                                 NULL, NULL);
        }
        SegaCtx ctx = {c, seqs, adv, weight, ref_logp, off};
        double loss = 0;
        float norm = 0, lr = stage_lr(&c->optim, c->train.lr, step, c->train.steps);
        if (n > 0) {
            loss = seq_forward_backward(&p.model, seqs, n, 1, c->optim.micro_batch_tokens, NULL,
                                        sega_grad, &ctx);
            norm = stage_optimizer_step(&p.model, &c->optim, lr);
        }
        free(ref_logp);
        double t_train = now_seconds() - t0;

        Metrics m;
        double reward, fork, final;
        metrics_begin(&m, "train", step);
        metrics_num(&m, "loss", loss);
        metrics_num(&m, "grad_norm", norm);
        metrics_num(&m, "lr", lr);
        groups_metrics(&gb, &m, &reward, &fork, &final);
        metrics_int(&m, "candidates_trained", n);
        metrics_int(&m, "policy_version", (long)p.model.adam_t);
        metrics_int(&m, "version_lag", 0); // one process: the sampler always has the newest weights
        metrics_num(&m, "train_tok_s", t_train > 0 && n ? tokens / t_train : NAN);
        metrics_num(&m, "time_train", t_train);
        metrics_num(&m, "mfu", NAN); // model FLOPs utilisation is a GPU figure: null on the CPU
        metrics_int(&m, "updated", n > 0);
        metrics_end(&m, &r);
        if (step % c->run.log_every == 0 || step == c->train.steps) {
            char f[200];
            snprintf(f, sizeof f, "loss %+.4f | reward %+.3f | H fork %.3f final %.3f | skipped %d",
                     loss, reward, fork, final, G - active);
            double dt = now_seconds() - t0 + gb.t_sample + gb.t_score;
            stage_print_step("train", step, c->train.steps, f, (gb.new_tokens + tokens) / dt,
                             t_loop);
        }
        groups_free(&gb);
        if (n == 0)
            printf("train step %d: every group was skipped (fewer than 2 valid candidates or equal "
                   "scores), no update\n",
                   step);
        if (c->run.save_every > 0 && step % c->run.save_every == 0 && step < c->train.steps)
            rc = rundir_save(&r, &p, step);
    }
    if (rc == 0) rc = rundir_save(&r, &p, -1);
    if (rc == 0) printf("train: wrote %s/final\n", c->train.dir);
    if (pairs) fclose(pairs);
    free(idx), free(seqs), free(adv), free(weight), free(off);
    order_free(&order);
    rundir_close(&r);
    dataset_free(&ds);
    policy_free(&p);
    if (use_ref) policy_free(&ref);
    return rc;
}
