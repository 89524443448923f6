// The policy a stage trains or evaluates, and the micro-batched forward/backward over
// (prompt, response) sequences that every loss goes through.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "stages/checkpoint.h"
#include "model/gpu.h"
#include "base/launch.h"
#include "stages/stage.h"
#include "base/utf8.h"

static void add_stop(Policy *p, int id) {
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop_ids[i] == id) return;
    if (p->n_stop < (int)(sizeof p->stop_ids / sizeof p->stop_ids[0]))
        p->stop_ids[p->n_stop++] = id;
}

int policy_load(Policy *p, const char *dir, const GemConfig *c) {
    memset(p, 0, sizeof *p);
    if (!dir || !dir[0]) {
        gemc_set_error("no model folder given (HINT: set the stage's model key)");
        return -1;
    }
    if (model_load_hf(&p->model, dir) != 0) return -1;
    p->tok = tokenizer_load(dir);
    if (!p->tok) goto fail;
    if (tokenizer_vocab_size(p->tok) > p->model.cfg.vocab_size) {
        gemc_set_error("%s: the tokenizer has %d ids but the model's vocab_size is %d",
                       tokenizer_path(p->tok), tokenizer_vocab_size(p->tok),
                       p->model.cfg.vocab_size);
        goto fail;
    }
    if (chat_template_resolve(c->model.chat_template, "config: model.chat_template", dir,
                              &p->tmpl) != 0)
        goto fail;
    if (p->model.cfg.num_eos == 0) {
        gemc_set_error("%s/config.json: no eos_token_id, so generation could never stop "
                       "(HINT: add \"eos_token_id\" to config.json)",
                       dir);
        goto fail;
    }
    p->eos_id = chat_end_of_turn_id(p->tmpl, p->tok, p->model.cfg.eos_token_ids[0]);
    if (p->eos_id < 0) goto fail;
    add_stop(p, p->eos_id);
    for (int i = 0; i < p->model.cfg.num_eos; i++) add_stop(p, p->model.cfg.eos_token_ids[i]);
    p->dir = strdup(dir);
    return 0;
fail:
    policy_free(p);
    return -1;
}

int model_place(Model *m, const GemConfig *c) {
    if (c->run.device == DEVICE_CPU) return 0;
    const int n = gpu_device_count();
    if (n == 0) {
        if (c->run.device == DEVICE_AUTO) return 0;
        gemc_set_error("config: run.device=cuda: %s", gpu_unavailable());
        return -1;
    }
    // one device per rank, as the Slurm scripts arrange through CUDA_VISIBLE_DEVICES: every
    // rank of a node takes its local rank's device (device 0 when each sees one)
    return model_to_gpu(m, launcher_local_rank() % n);
}

void policy_free(Policy *p) {
    if (p->tok) tokenizer_free(p->tok);
    model_free(&p->model);
    free(p->dir);
    memset(p, 0, sizeof *p);
}

int policy_load_data(const Policy *p, const GemConfig *c, const char *path, DataKind kind,
                     Dataset *ds) {
    if (dataset_load(ds, path, kind, 0) != 0) return -1;
    if (dataset_tokenize(ds, p->tok, p->tmpl, c->model.system_prompt, p->eos_id,
                         p->model.cfg.max_position_embeddings) != 0) {
        dataset_free(ds);
        return -1;
    }
    return 0;
}

void policy_decode_text(const Policy *p, const int *ids, int n, StrBuf *out) {
    StrBuf bytes = {0};
    tokenizer_decode(p->tok, ids, n, 1, &bytes);
    utf8_append_lossy(out, bytes.p ? bytes.p : "", bytes.len);
    free(bytes.p);
}

char *policy_candidate_answer(const Policy *p, const char *marker, const Candidate *cd) {
    char *a;
    gem_candidate_answer(p->tok, marker, cd, &a); // sampled ids are the tokenizer's: no error
    return a;
}

// ---- micro-batched forward/backward ----------------------------------------------------------

void seq_resp_offsets(const SeqRef *seqs, int n, long *off) {
    off[0] = 0;
    for (int s = 0; s < n; s++) off[s + 1] = off[s] + seqs[s].R;
}

// Whether sequences a and b start with the same prompt.
static int same_prompt(const SeqRef *a, const SeqRef *b) {
    return a->P == b->P && (a->prompt == b->prompt ||
                            memcmp(a->prompt, b->prompt, sizeof(int) * (size_t)a->P) == 0);
}

// Sequences [s0, s1) packed as one batch. With share, consecutive sequences with the same prompt
// (a GEM group, a DPO pair) compute it once (PackedBatch.prefix): the prompt's first P - 1
// tokens as a sequence of their own, then each sequence as the prompt's last token and its
// response, reading the shared part as its prefix; the last prompt token stays with each
// response because its position predicts the response's first token. Otherwise each sequence
// is packed whole. Response token j of sequence s is predicted at packed position at[s - s0] + j.
// The log-probs are the same bits either way; the gradients the same sums in another order.
typedef struct {
    int B, N;
    int *tokens, *offsets, *prefix, *at;
} Packed;

static void pack_sequences(Packed *pk, const SeqRef *seqs, int s0, int s1, int share) {
    const int n = s1 - s0;
    int N = 0;
    for (int s = s0; s < s1; s++) N += seqs[s].P + seqs[s].R; // at most (sharing only saves)
    pk->tokens = mallocCheck(sizeof(int) * (size_t)(N ? N : 1));
    pk->offsets = mallocCheck(sizeof(int) * (size_t)(2 * n + 1));
    pk->prefix = mallocCheck(sizeof(int) * (size_t)(n > 0 ? 2 * n : 1));
    pk->at = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    int B = 0, o = 0, shared = 0;
    pk->offsets[0] = 0;
    for (int s = s0; s < s1;) {
        int e = s + 1; // the run of sequences with s's prompt
        while (share && e < s1 && e - s < PACKED_MAX_SHARERS && same_prompt(&seqs[s], &seqs[e]))
            e++;
        const int P = seqs[s].P;
        if (e - s >= 2 && P >= 2) {
            memcpy(pk->tokens + o, seqs[s].prompt, sizeof(int) * (size_t)(P - 1));
            o += P - 1, pk->prefix[B] = -1, pk->offsets[++B] = o;
            const int pre = B - 1;
            for (int t = s; t < e; t++) {
                pk->tokens[o] = seqs[t].prompt[P - 1];
                memcpy(pk->tokens + o + 1, seqs[t].resp, sizeof(int) * (size_t)seqs[t].R);
                pk->at[t - s0] = o;
                o += 1 + seqs[t].R, pk->prefix[B] = pre, pk->offsets[++B] = o;
            }
            shared = 1;
        } else {
            for (int t = s; t < e; t++) {
                memcpy(pk->tokens + o, seqs[t].prompt, sizeof(int) * (size_t)seqs[t].P);
                memcpy(pk->tokens + o + seqs[t].P, seqs[t].resp, sizeof(int) * (size_t)seqs[t].R);
                pk->at[t - s0] = o + seqs[t].P - 1;
                o += seqs[t].P + seqs[t].R, pk->prefix[B] = -1, pk->offsets[++B] = o;
            }
        }
        s = e;
    }
    pk->B = B, pk->N = o;
    if (!shared) free(pk->prefix), pk->prefix = NULL;
}

static void packed_free(Packed *pk) {
    free(pk->tokens), free(pk->offsets), free(pk->prefix), free(pk->at);
}

static double micro_batch(Model *m, const SeqRef *seqs, int s0, int s1, int share, float *logp_out,
                          LossGradFn fn, void *ctx) {
    Packed pk;
    pack_sequences(&pk, seqs, s0, s1, share);
    const int B = s1 - s0, N = pk.N;
    int R = 0;
    for (int s = s0; s < s1; s++) R += seqs[s].R;
    float *lp = mallocCheck(sizeof(float) * (size_t)(N ? N : 1));
    float *rlp = mallocCheck(sizeof(float) * (size_t)(R ? R : 1));
    PackedBatch batch = {
        .B = pk.B, .N = N, .tokens = pk.tokens, .offsets = pk.offsets, .prefix = pk.prefix};
    model_forward(m, &batch, lp, NULL);
    for (int s = s0, r = 0; s < s1; s++) {
        memcpy(rlp + r, lp + pk.at[s - s0], sizeof(float) * (size_t)seqs[s].R);
        r += seqs[s].R;
    }
    if (logp_out) memcpy(logp_out, rlp, sizeof(float) * (size_t)R);
    double loss = 0;
    if (fn) {
        float *rd = callocCheck((size_t)(R ? R : 1), sizeof(float));
        loss = fn(ctx, s0, B, rlp, rd);
        float *dlp = callocCheck((size_t)(N ? N : 1), sizeof(float)); // prompts take no gradient
        for (int s = s0, r = 0; s < s1; s++) {
            memcpy(dlp + pk.at[s - s0], rd + r, sizeof(float) * (size_t)seqs[s].R);
            r += seqs[s].R;
        }
        model_backward(m, &batch, dlp);
        free(dlp);
        free(rd);
    }
    packed_free(&pk);
    free(lp);
    free(rlp);
    return loss;
}

double seq_forward_backward(Model *m, const SeqRef *seqs, int n, int unit, int max_tokens,
                            int share, float *logp_out, LossGradFn fn, void *ctx) {
    double loss = 0;
    long out = 0;
    for (int s0 = 0; s0 < n;) {
        // take whole units while they fit; a unit larger than max_tokens goes alone
        int s1 = s0, tokens = 0;
        while (s1 < n) {
            int u1 = s1 + unit < n ? s1 + unit : n, ut = 0;
            for (int s = s1; s < u1; s++) ut += seqs[s].P + seqs[s].R;
            if (s1 > s0 && tokens + ut > max_tokens) break;
            tokens += ut;
            s1 = u1;
        }
        loss += micro_batch(m, seqs, s0, s1, share, logp_out ? logp_out + out : NULL, fn, ctx);
        for (int s = s0; s < s1; s++) out += seqs[s].R;
        s0 = s1;
    }
    return loss;
}

// ---- optimisation ----------------------------------------------------------------------------

float stage_lr(const StageConfig *s, int step) {
    const float lr = s->lr;
    const int warmup = s->warmup_steps, steps = s->steps;
    if (warmup > 0 && step <= warmup) return lr * (float)step / warmup;
    if (s->schedule == LR_CONSTANT || steps <= warmup) return lr;
    double t = (double)(step - warmup) / (double)(steps - warmup);
    double floor_lr = lr * s->min_lr_ratio;
    double shape = s->schedule == LR_COSINE ? 0.5 * (1.0 + cos(M_PI * t)) : 1.0 - t;
    return (float)(floor_lr + (lr - floor_lr) * shape);
}

double stage_mfu(const GemConfig *c, long n_params, double tokens, double seconds, int devices) {
    if (c->log.peak_tflops <= 0 || seconds <= 0 || tokens <= 0) return NAN;
    return 6.0 * (double)n_params * tokens / seconds / (c->log.peak_tflops * 1e12 * devices);
}

float stage_optimizer_step(Model *m, const OptimConfig *o, float grad_clip, float lr, double loss,
                           int *updated) {
    float norm = model_clip_grad_norm(m, grad_clip);
    // a NaN or Inf anywhere in the gradients makes their norm NaN or Inf: one test covers both
    *updated = isfinite(loss) && isfinite(norm);
    if (*updated) {
        AdamWConfig opt = {.lr = lr,
                           .beta1 = o->beta1,
                           .beta2 = o->beta2,
                           .eps = o->eps,
                           .weight_decay = o->weight_decay};
        model_adamw_step(m, &opt);
    }
    model_zero_grad(m);
    return norm;
}

void metrics_grad_norm(Metrics *m, float grad_clip, float norm) {
    const int clipped = grad_clip > 0 && norm > grad_clip;
    metrics_num(m, "grad_norm", norm);
    // model_clip_grad_norm's scale applied to the norm: what AdamW was given
    metrics_num(m, "grad_norm_clipped", clipped ? norm * (grad_clip / (norm + 1e-6f)) : norm);
    metrics_int(m, "clipped", clipped);
}

int nonfinite_guard_step(NonFiniteGuard *g, const OptimConfig *o, const char *stage, int step,
                         int updated, double loss, float norm) {
    if (updated) {
        g->in_a_row = 0;
        return 0;
    }
    if (g->in_a_row++ == 0) g->first_step = step;
    g->last_step = step;
    g->total++;
    // printf writes a NaN with its sign bit as "-nan": one spelling in the log
    g->loss = isnan(loss) ? NAN : loss;
    g->norm = isnan(norm) ? NAN : norm;
    if (!g->quiet)
        fprintf(stderr,
                "gemc: warning: %s step %d: update skipped: loss %g, grad norm %g (%d in a row)\n",
                stage, step, g->loss, (double)g->norm, g->in_a_row);
    return o->max_nonfinite_steps > 0 && g->in_a_row >= o->max_nonfinite_steps;
}

int nonfinite_guard_stop(const NonFiniteGuard *g, const char *stage, const char *run_dir, long step,
                         int save_rc) {
    if (save_rc != 0) return -1; // the checkpoint's own error says more
    char *ckpt = ckpt_path(run_dir, step, 0);
    gemc_set_error(
        "%s: %d updates in a row skipped for a non-finite loss or gradient (steps %d "
        "to %d; last loss %g, grad norm %g); stopped with a checkpoint in %s. HINT: lower "
        "the learning rate or %s.grad_clip, or look for a bad batch; "
        "optim.max_nonfinite_steps sets how many in a row stop the run",
        stage, g->in_a_row, g->first_step, g->last_step, g->loss, (double)g->norm, ckpt, stage);
    free(ckpt);
    return -1;
}

// ---- data order ------------------------------------------------------------------------------

static void shuffle(DataOrder *o) {
    for (int i = 0; i < o->n; i++) o->perm[i] = i;
    for (int i = o->n - 1; i > 0; i--) { // Fisher-Yates
        int j = (int)(rng_u64(&o->rng) % (uint64_t)(i + 1));
        int t = o->perm[i];
        o->perm[i] = o->perm[j];
        o->perm[j] = t;
    }
}

void order_init(DataOrder *o, int n, uint64_t seed) {
    memset(o, 0, sizeof *o);
    o->n = n;
    o->perm = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    rng_seed(&o->rng, seed ^ 0x6f72646572ULL); // a stream of its own, not the sampler's
    shuffle(o);
}

void order_skip(DataOrder *o, long n) {
    for (long i = 0; i < n; i++) order_next(o);
}

int order_next(DataOrder *o) {
    if (o->pos == o->n) {
        o->pos = 0;
        o->epoch++;
        shuffle(o);
    }
    return o->perm[o->pos++];
}

void order_free(DataOrder *o) {
    free(o->perm);
    memset(o, 0, sizeof *o);
}
