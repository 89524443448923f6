// `gemc dpo`: the DPO baseline (and the ablation "w/o SEGA (use DPO)", docs/algorithm.md section
// 6):
//   L = mean over pairs of -ln sigmoid(beta ((l_c - l_c_ref) - (l_r - l_r_ref)))
// against a frozen reference, the starting policy (or model.ref). dpo.pairs: data trains on the
// file's (chosen, rejected) pairs; dpo.pairs: entropy samples k candidates per prompt with the
// current policy each step and trains on the (best, worst) pair of each group's entropy ranking.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"
#include "run/run_report.h"
#include "stages/stage.h"

typedef struct {
    const SeqRef *seqs; // 2 per pair: chosen, rejected
    const double *ref;  // [2 * pairs] summed reference log-probs
    float beta;
    int n_pairs;
    double margin_sum, wins; // of the implicit rewards, for the metrics
} DpoCtx;

static double seq_sum(const float *logp, int n) {
    double s = 0;
    for (int t = 0; t < n; t++) s += logp[t];
    return s;
}

static double dpo_grad(void *ctx, int s0, int ns, const float *logp, float *dlogp) {
    DpoCtx *x = ctx;
    double loss = 0;
    long t = 0;
    for (int s = s0; s < s0 + ns; s += 2) { // seq_forward_backward never splits a pair (unit 2)
        const int rc = x->seqs[s].R, rr = x->seqs[s + 1].R;
        double lc = seq_sum(logp + t, rc), lr = seq_sum(logp + t + rc, rr), dlc, dlr;
        loss += dpo_pair_loss(x->beta, lc, lr, x->ref[s], x->ref[s + 1], &dlc, &dlr) / x->n_pairs;
        for (int j = 0; j < rc; j++) dlogp[t + j] = (float)(dlc / x->n_pairs);
        for (int j = 0; j < rr; j++) dlogp[t + rc + j] = (float)(dlr / x->n_pairs);
        double margin = x->beta * ((lc - x->ref[s]) - (lr - x->ref[s + 1]));
        x->margin_sum += margin;
        x->wins += margin > 0 ? 1.0 : margin == 0 ? 0.5 : 0.0;
        t += rc + rr;
    }
    return loss;
}

// Summed log-probs of each sequence's response under the reference.
static void ref_sums(Model *ref, const SeqRef *seqs, int n, int micro, int share, double *out) {
    long total = 0;
    for (int s = 0; s < n; s++) total += seqs[s].R;
    float *lp = mallocCheck(sizeof(float) * (size_t)(total ? total : 1));
    seq_forward_backward(ref, seqs, n, 2, micro, share, lp, NULL, NULL);
    for (int s = 0, t = 0; s < n; t += seqs[s].R, s++) out[s] = seq_sum(lp + t, seqs[s].R);
    free(lp);
}

int stage_dpo(const GemConfig *c) {
    const int entropy_pairs = c->dpo_pairs == DPO_PAIRS_ENTROPY;
    Policy p, ref;
    if (policy_load(&p, c->dpo.model, c) != 0) return -1;
    if (policy_load(&ref, c->model.ref[0] ? c->model.ref : c->dpo.model, c) != 0) {
        policy_free(&p);
        return -1;
    }
    Dataset ds;
    RunDir r;
    int rc = policy_load_data(&p, c, c->dpo.data, entropy_pairs ? DATA_PROMPTS : DATA_PAIRS, &ds);
    if (rc == 0 && (rc = model_place(&p.model, c)) != 0) dataset_free(&ds);
    if (rc == 0 && (rc = model_place(&ref.model, c)) != 0) dataset_free(&ds);
    if (rc == 0 && (rc = rundir_open(&r, c->dpo.dir, c, "dpo")) != 0) dataset_free(&ds);
    if (rc != 0) {
        policy_free(&p);
        policy_free(&ref);
        return -1;
    }
    const int B = c->dpo.batch_size;
    printf("dpo: %s (%d %s, pairs from %s) on %s, %d steps of %d, beta %g, lr %g, run dir %s\n",
           c->dpo.data, ds.n, entropy_pairs ? "prompts" : "pairs",
           entropy_pairs ? "the entropy ranking" : "the data", c->dpo.model, c->dpo.steps, B,
           c->dpo_beta, c->dpo.lr, c->dpo.dir);
    DataOrder order;
    order_init(&order, ds.n, c->run.seed);
    SeqRef *seqs = mallocCheck(sizeof(SeqRef) * 2 * (size_t)B);
    double *refs = mallocCheck(sizeof(double) * 2 * (size_t)B);
    int *idx = mallocCheck(sizeof(int) * (size_t)B);
    NonFiniteGuard guard = {0};
    double t_loop = now_seconds();
    for (int step = 1; step <= c->dpo.steps && rc == 0; step++) {
        double t0 = now_seconds();
        int n_pairs = 0;
        long tokens = 0;
        GroupBatch gb = {0};
        for (int b = 0; b < B; b++) idx[b] = order_next(&order);
        if (entropy_pairs) {
            if ((rc = groups_sample(&gb, &p, c, &ds, idx, B, step, &r)) != 0) break;
            for (int g = 0; g < B; g++) {
                const GroupRanking *rk = &gb.rank[g];
                if (rk->skipped || rk->best < 0 || rk->worst < 0) continue;
                const DataRecord *rec = &ds.rec[idx[g]];
                const Candidate *hi = &gb.cands[(size_t)g * gb.k + rk->best];
                const Candidate *lo = &gb.cands[(size_t)g * gb.k + rk->worst];
                seqs[2 * n_pairs] = (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n, hi->ids, hi->n};
                seqs[2 * n_pairs + 1] =
                    (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n, lo->ids, lo->n};
                n_pairs++;
            }
        } else {
            for (int b = 0; b < B; b++, n_pairs++) {
                const DataRecord *rec = &ds.rec[idx[b]];
                seqs[2 * b] = (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n, rec->chosen_ids.v,
                                       rec->chosen_ids.n};
                seqs[2 * b + 1] = (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n,
                                           rec->rejected_ids.v, rec->rejected_ids.n};
            }
        }
        for (int s = 0; s < 2 * n_pairs; s++) tokens += seqs[s].P + seqs[s].R;
        double t1 = now_seconds();
        DpoCtx ctx = {seqs, refs, c->dpo_beta, n_pairs, 0, 0};
        double loss = 0;
        float norm = 0, lr = stage_lr(&c->dpo, step);
        int updated = 0;
        if (n_pairs > 0) {
            ref_sums(&ref.model, seqs, 2 * n_pairs, c->optim.micro_batch_tokens,
                     c->optim.shared_prefix, refs);
            loss = seq_forward_backward(&p.model, seqs, 2 * n_pairs, 2, c->optim.micro_batch_tokens,
                                        c->optim.shared_prefix, NULL, dpo_grad, &ctx);
            norm = stage_optimizer_step(&p.model, &c->optim, c->dpo.grad_clip, lr, loss, &updated);
        }
        double t_train = now_seconds() - t1;

        Metrics m;
        metrics_begin(&m, "dpo", step);
        metrics_num(&m, "loss", loss);
        metrics_grad_norm(&m, c->dpo.grad_clip, norm);
        metrics_num(&m, "lr", lr);
        metrics_int(&m, "pairs", n_pairs);
        metrics_int(&m, "tokens", tokens);
        metrics_int(&m, "updated", updated);
        metrics_num(&m, "reward_margin", n_pairs ? ctx.margin_sum / n_pairs : NAN);
        metrics_num(&m, "reward_accuracy", n_pairs ? ctx.wins / n_pairs : NAN);
        if (entropy_pairs) groups_metrics(&gb, &m, NULL, NULL, NULL, NULL);
        metrics_num(&m, "train_tok_s", t_train > 0 && n_pairs ? tokens / t_train : NAN);
        metrics_num(&m, "time_train", t_train);
        metrics_num(&m, "mfu", stage_mfu(c, p.model.layout.total, (double)tokens, t_train, 1));
        if (stage_eval_due(c, step, c->dpo.steps)) rc = stage_eval_in_training(c, &p, &r, &m, step);
        metrics_end(&m, &r);
        if (rc != 0) {
            groups_free(&gb);
            break;
        }
        if (step % c->run.log_every == 0 || step == c->dpo.steps) {
            char f[200];
            snprintf(f, sizeof f, "loss %.4f | margin %+.3f | pair acc %.2f | grad norm %.3f", loss,
                     n_pairs ? ctx.margin_sum / n_pairs : 0.0, n_pairs ? ctx.wins / n_pairs : 0.0,
                     norm);
            stage_print_step("dpo", step, c->dpo.steps, f,
                             (tokens + gb.new_tokens) / (now_seconds() - t0), t_loop);
        }
        groups_free(&gb);
        if (n_pairs > 0 &&
            nonfinite_guard_step(&guard, &c->optim, "dpo", step, updated, loss, norm)) {
            rc = nonfinite_guard_stop(&guard, "dpo", c->dpo.dir, step, rundir_save(&r, &p, step));
            break;
        }
        if (c->run.save_every > 0 && step % c->run.save_every == 0 && step < c->dpo.steps)
            rc = rundir_save(&r, &p, step);
    }
    if (rc == 0) rc = rundir_save(&r, &p, -1);
    if (rc == 0) printf("dpo: wrote %s/final\n", c->dpo.dir);
    if (rc == 0) run_report_print(c->dpo.dir, stdout);
    free(seqs), free(refs), free(idx);
    order_free(&order);
    rundir_close(&r);
    dataset_free(&ds);
    policy_free(&p);
    policy_free(&ref);
    return rc;
}
