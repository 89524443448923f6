// The learner's core, shared by `gemc train` (stage_train.c) and the pipeline's learner ranks
// (src/pipeline/learner.c): one GEM update over a scored and ranked GroupBatch, the SEGA loss
// (Eq. 2, docs/algorithm.md section 5) and its gradient, the optimizer step, the step's metrics
// and its console line. The two callers hand it the same groups (sampled in the same process,
// or read back from shards by groups_from_shards), and the pipeline's collectives sit behind one
// hook that is absent in one process, so one generator and one learner give the bits of one
// process by construction.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "stages/stage.h"

typedef struct {
    const GemConfig *c;
    const SeqRef *seqs;
    const float *adv;                // [n] A_i of each sequence
    const float *weight;             // [n] 1 / (G k_g)
    const float *const *sample_logp; // [n] the generator's logp_old, NULL = on-policy
    const float *ref_logp;           // packed like the response log-probs, or NULL
    const long *off;                 // [n + 1] response offsets
} SegaCtx;

static double sega_grad(void *ctx, int s0, int ns, const float *logp, float *dlogp) {
    const SegaCtx *x = ctx;
    double loss = 0;
    const long base = x->off[s0];
    for (int s = s0; s < s0 + ns; s++) {
        const long o = x->off[s] - base;
        loss += sega_candidate_loss(&x->c->sega, x->adv[s], x->weight[s], logp + o,
                                    x->sample_logp[s], x->ref_logp ? x->ref_logp + x->off[s] : NULL,
                                    x->seqs[s].R, dlogp + o);
    }
    return loss;
}

double sega_accumulate(Model *m, Model *ref, const GemConfig *c, const GroupBatch *gb,
                       const int *const *prompts, const int *prompt_lens, int stride, int offset,
                       long version, int *n_seqs, long *n_tokens) {
    const int G = gb->G, k = gb->k;
    int n = 0;
    long tokens = 0;
    // the weights see the whole batch, whatever share of it this learner trains
    int *len = mallocCheck(sizeof(int) * ((size_t)G * k + 1));
    float *w = mallocCheck(sizeof(float) * ((size_t)G * k + 1));
    for (int i = 0; i < G * k; i++) len[i] = gb->cands[i].n;
    const float constant =
        c->sega.loss_constant > 0 ? c->sega.loss_constant : (float)c->sampling.max_new_tokens;
    sega_batch_weights(&c->sega, gb->rank, len, G, k, constant, w);
    SeqRef *seqs = mallocCheck(sizeof(SeqRef) * ((size_t)G * k + 1));
    float *adv = mallocCheck(sizeof(float) * ((size_t)G * k + 1));
    float *weight = mallocCheck(sizeof(float) * ((size_t)G * k + 1));
    const float **sample_logp = mallocCheck(sizeof(float *) * ((size_t)G * k + 1));
    long *off = mallocCheck(sizeof(long) * ((size_t)G * k + 1));
    for (int g = offset; g < G; g += stride) {
        const GroupRanking *rk = &gb->rank[g];
        if (rk->skipped) continue;
        for (int i = 0; i < k; i++) {
            const Candidate *cd = &gb->cands[(size_t)g * k + i];
            // a zero advantage contributes nothing unless the KL term is on
            if (!rk->valid[i] || (rk->advantage[i] == 0.0f && !ref)) continue;
            seqs[n] = (SeqRef){prompts[g], prompt_lens[g], cd->ids, cd->n};
            adv[n] = rk->advantage[i];
            weight[n] = w[(size_t)g * k + i];
            // weights newer than the sampler's: the PPO-clipped ratio to the sampler's log-probs
            // at the same temperature, untruncated (logp_old); the same weights: rho = 1 and the
            // plain Eq. 2 term
            sample_logp[n] = cd->policy_version < version ? cd->logp_old : NULL;
            tokens += cd->n + prompt_lens[g];
            n++;
        }
    }
    seq_resp_offsets(seqs, n, off);
    // the policy the candidates came from: softmax(z / T) (greedy sampling has no T: the raw one)
    const float T = c->sampling.temperature > 0 ? c->sampling.temperature : 1.0f;
    const float keep_t = m->logit_temperature, keep_ref_t = ref ? ref->logit_temperature : 0;
    m->logit_temperature = T;
    if (ref) ref->logit_temperature = T;
    float *ref_logp = NULL;
    if (ref && n > 0) {
        ref_logp = mallocCheck(sizeof(float) * (size_t)(off[n] ? off[n] : 1));
        seq_forward_backward(ref, seqs, n, 1, c->optim.micro_batch_tokens, c->optim.shared_prefix,
                             ref_logp, NULL, NULL);
    }
    SegaCtx ctx = {c, seqs, adv, weight, sample_logp, ref_logp, off};
    double loss = 0;
    if (n > 0)
        loss = seq_forward_backward(m, seqs, n, 1, c->optim.micro_batch_tokens,
                                    c->optim.shared_prefix, NULL, sega_grad, &ctx);
    m->logit_temperature = keep_t;
    if (ref) ref->logit_temperature = keep_ref_t;
    free(ref_logp), free(seqs), free(adv), free(weight), free(sample_logp), free(off);
    free(len), free(w);
    *n_seqs = n;
    *n_tokens = tokens;
    return loss;
}

void gem_step_update(Model *m, Model *ref, const GemConfig *c, const GroupBatch *gb,
                     const int *const *prompts, const int *prompt_lens, int stride, int offset,
                     long version, long step, GemReduceFn reduce, void *reduce_ctx, GemStep *st) {
    memset(st, 0, sizeof *st);
    const double t0 = now_seconds();
    int n;
    long tokens;
    double loss =
        sega_accumulate(m, ref, c, gb, prompts, prompt_lens, stride, offset, version, &n, &tokens);
    double sums[3] = {loss, n, (double)tokens};
    if (reduce) reduce(reduce_ctx, sums);
    st->loss = sums[0], st->trained = (long)sums[1], st->tokens = (long)sums[2];
    st->lr = stage_lr(&c->train, (int)step);
    if (st->trained > 0)
        st->norm =
            stage_optimizer_step(m, &c->optim, c->train.grad_clip, st->lr, st->loss, &st->updated);
    st->t_train = now_seconds() - t0;
    for (int g = 0; g < gb->G; g++) st->skipped += gb->rank[g].skipped;
}

void gem_step_metrics(Metrics *m, const GemConfig *c, const GroupBatch *gb, GemStep *st,
                      long policy_version, long version_lag, long n_params, int devices,
                      double t_wait) {
    metrics_num(m, "loss", st->loss);
    metrics_grad_norm(m, c->train.grad_clip, st->norm);
    metrics_num(m, "lr", st->lr);
    groups_metrics(gb, m, &st->reward, &st->fork, &st->final, &st->correct);
    metrics_int(m, "candidates_trained", st->trained);
    metrics_int(m, "tokens", st->tokens);
    metrics_int(m, "policy_version", policy_version);
    metrics_int(m, "version_lag", version_lag);
    metrics_num(m, "train_tok_s",
                st->t_train > 0 && st->trained > 0 ? st->tokens / st->t_train : NAN);
    metrics_num(m, "time_train", st->t_train);
    if (t_wait >= 0) metrics_num(m, "time_wait_shards", t_wait);
    metrics_num(m, "mfu", stage_mfu(c, n_params, (double)st->tokens, st->t_train, devices));
    metrics_int(m, "updated", st->updated);
}

int gem_step_fields(const GemStep *st, char *buf, size_t n) {
    return snprintf(buf, n, "loss %+.4f | reward %+.3f | H fork %.3f final %.3f | skipped %d",
                    st->loss, st->reward, st->fork, st->final, st->skipped);
}

GemStepEnd gem_step_end(const GemConfig *c, long step, int stop_requested, int gave_up,
                        int collapsed) {
    const long steps = c->train.steps, every = c->run.save_every;
    GemStepEnd e = {0};
    // a collapse stops at the last step too: no final/ from weights that fell apart
    e.stop = gave_up || collapsed || (stop_requested && step < steps);
    e.save = e.stop || (step < steps && every > 0 && step % every == 0);
    e.final = !e.stop && step == steps;
    e.collapsed = !gave_up && collapsed;
    e.sigterm = e.stop && !gave_up && !collapsed;
    return e;
}

void gem_step_end_print(const GemStepEnd *e, const GemConfig *c, const ProbeState *pr, long step) {
    if (e->collapsed)
        printf("train: probe accuracy fell from %.1f%% (step %ld) to %.1f%% at step %ld, more "
               "than train.stop_on_collapse = %g points below its best: stopped with a "
               "checkpoint at step %ld (HINT: lower train.lr, or raise "
               "train.stop_on_collapse)\n",
               100 * pr->best, pr->best_step, 100 * pr->last, step,
               (double)c->train.stop_on_collapse, step);
    else if (e->sigterm)
        printf("train: SIGTERM: stopped after step %ld with a checkpoint; the same command "
               "resumes (run.resume: auto)\n",
               step);
}
