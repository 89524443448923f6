// `gemc sft`: cross-entropy on the response tokens (chosen + end of turn) of preference pairs;
// the prompt takes no loss (docs/algorithm.md section 6). The loss of a step is the mean over all
// response tokens of its batch, as transformers' causal-LM loss averages over unmasked tokens.
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"
#include "run/run_report.h"
#include "stages/stage.h"

typedef struct {
    const SeqRef *seqs;
    float scale; // 1 / (response tokens of the step)
} SftCtx;

static double sft_grad(void *ctx, int s0, int ns, const float *logp, float *dlogp) {
    const SftCtx *x = ctx;
    double sum = 0;
    long t = 0;
    for (int s = s0; s < s0 + ns; s++)
        for (int j = 0; j < x->seqs[s].R; j++, t++) {
            sum += logp[t];
            dlogp[t] = -x->scale;
        }
    return -sum * x->scale;
}

int stage_sft(const GemConfig *c) {
    Policy p;
    if (policy_load(&p, c->sft.model, c) != 0) return -1;
    if (model_place(&p.model, c) != 0) {
        policy_free(&p);
        return -1;
    }
    Dataset ds;
    if (policy_load_data(&p, c, c->sft.data, DATA_PAIRS, &ds) != 0) {
        policy_free(&p);
        return -1;
    }
    RunDir r;
    if (rundir_open(&r, c->sft.dir, c, "sft") != 0) {
        dataset_free(&ds);
        policy_free(&p);
        return -1;
    }
    printf("sft: %s (%d pairs) on %s, %d steps of %d, lr %g, run dir %s\n", c->sft.data, ds.n,
           c->sft.model, c->sft.steps, c->sft.batch_size, c->sft.lr, c->sft.dir);
    DataOrder order;
    order_init(&order, ds.n, c->run.seed);
    const int B = c->sft.batch_size;
    SeqRef *seqs = mallocCheck(sizeof(SeqRef) * (size_t)B);
    int rc = 0;
    NonFiniteGuard guard = {0};
    double t_loop = now_seconds();
    for (int step = 1; step <= c->sft.steps && rc == 0; step++) {
        double t0 = now_seconds();
        long tokens = 0, resp = 0;
        for (int b = 0; b < B; b++) {
            const DataRecord *rec = &ds.rec[order_next(&order)];
            seqs[b] = (SeqRef){rec->prompt_ids.v, rec->prompt_ids.n, rec->chosen_ids.v,
                               rec->chosen_ids.n};
            tokens += seqs[b].P + seqs[b].R;
            resp += seqs[b].R;
        }
        SftCtx ctx = {seqs, 1.0f / (float)resp};
        double loss = seq_forward_backward(&p.model, seqs, B, 1, c->optim.micro_batch_tokens,
                                           c->optim.shared_prefix, NULL, sft_grad, &ctx);
        float lr = stage_lr(&c->sft, step);
        int updated;
        float norm =
            stage_optimizer_step(&p.model, &c->optim, c->sft.grad_clip, lr, loss, &updated);
        double dt = now_seconds() - t0;

        Metrics m;
        metrics_begin(&m, "sft", step);
        metrics_num(&m, "loss", loss);
        metrics_grad_norm(&m, c->sft.grad_clip, norm);
        metrics_num(&m, "lr", lr);
        metrics_int(&m, "tokens", tokens);
        metrics_int(&m, "response_tokens", resp);
        metrics_num(&m, "train_tok_s", tokens / dt);
        metrics_num(&m, "time_train", dt);
        metrics_num(&m, "mfu", stage_mfu(c, p.model.layout.total, (double)tokens, dt, 1));
        metrics_int(&m, "epoch", order.epoch);
        metrics_int(&m, "updated", updated);
        if (stage_eval_due(c, step, c->sft.steps)) rc = stage_eval_in_training(c, &p, &r, &m, step);
        metrics_end(&m, &r);
        if (rc != 0) break;
        if (step % c->run.log_every == 0 || step == c->sft.steps) {
            char f[160];
            snprintf(f, sizeof f, "loss %.4f | grad norm %.3f | lr %.2e", loss, norm, lr);
            stage_print_step("sft", step, c->sft.steps, f, tokens / dt, t_loop);
        }
        if (nonfinite_guard_step(&guard, &c->optim, "sft", step, updated, loss, norm)) {
            rc = nonfinite_guard_stop(&guard, "sft", c->sft.dir, step, rundir_save(&r, &p, step));
            break;
        }
        if (c->run.save_every > 0 && step % c->run.save_every == 0 && step < c->sft.steps)
            rc = rundir_save(&r, &p, step);
    }
    if (rc == 0) rc = rundir_save(&r, &p, -1);
    if (rc == 0) printf("sft: wrote %s/final\n", c->sft.dir);
    if (rc == 0) run_report_print(c->sft.dir, stdout);
    free(seqs);
    order_free(&order);
    rundir_close(&r);
    dataset_free(&ds);
    policy_free(&p);
    return rc;
}
