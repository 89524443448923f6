// The whole model on the CPU: float64 central finite differences of the loss
// sum(R * logprobs) over every coordinate of every parameter tensor, for each family
// (llama: biases and llama3 rope; qwen2: tied embeddings and q/k/v bias; mistral: sliding
// window), on packed batches; the float path against the double one; packing independence,
// determinism and thread-count independence of the float path (exact bits).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/common.h"
#include "model/cpu/cpu_kernels.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/rope.h"
#include "tests.h"

#define FD_H   1e-5 // central-difference step
#define FD_TOL 1e-6 // largest accepted relative error (floor 1e-3, as in test_kernel_grad.c)

static double rel_err(double a, double b) {
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) / fmax(m, 1e-3);
}

static int *random_tokens(Rng *rng, int n, int V) {
    int *t = mallocCheck((size_t)(n ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) t[i] = (int)(rng_u64(rng) % (uint64_t)V);
    return t;
}

// ---- finite differences on the double instantiation ----------------------------------------

typedef struct {
    const ModelConfig *cfg;
    const ParamLayout *lay;
    double *params;
    const double *inv_freq;
    Acts_f64 acts;
    const PackedBatch *batch;
    double *lp;
    const double *R;
    double logit_scale; // 1/T of the head (1: the raw logits)
} ModelCtx;

static double model_loss(ModelCtx *c) {
    model_forward_cpu_tp_f64(c->cfg, c->lay, c->params, c->inv_freq, &c->acts, c->batch, c->lp,
                             NULL, NULL, c->logit_scale);
    long double s = 0;
    for (int i = 0; i < c->batch->N; i++) s += (long double)c->R[i] * c->lp[i];
    return (double)s;
}

static void check_family_fd(ModelType type, double temperature) {
    ModelConfig cfg;
    test_tiny_config(&cfg, type);
    Model m;
    test_random_model(&m, &cfg, 100 + type);
    const ParamLayout *lay = &m.layout;
    double *P = mallocCheck(lay->total * sizeof(double));
    for (size_t i = 0; i < lay->total; i++) P[i] = m.params[i];
    double inv[64];
    rope_inv_freq(&cfg, inv);

    // three sequences of different lengths, longer than mistral's window of 3
    Rng rng;
    rng_seed(&rng, 200 + type);
    const int offsets[] = {0, 6, 9, 17};
    int *tok = random_tokens(&rng, 17, cfg.vocab_size);
    PackedBatch batch = {3, 17, tok, offsets, NULL};
    double R[17], lp[17];
    for (int i = 0; i < 17; i++) R[i] = rng_normal(&rng); // sequence ends too: must be ignored

    ModelCtx c = {&cfg, lay, P, inv, {0}, &batch, lp, R, 1.0 / temperature};
    model_loss(&c);
    CU_ASSERT_EQUAL(lp[5], 0.0);
    CU_ASSERT_EQUAL(lp[8], 0.0);
    CU_ASSERT_EQUAL(lp[16], 0.0);
    double *G = callocCheck(lay->total, sizeof(double));
    model_backward_cpu_tp_f64(&cfg, lay, P, &c.acts, &batch, R, G, NULL);

    printf("\n    %s at T %g:", cfg.model_type, temperature);
    double worst_all = 0;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &lay->p[k];
        if (!s->size) continue;
        double worst = 0, gmax = 0;
        for (size_t i = s->offset; i < s->offset + s->size; i++) {
            double save = P[i];
            P[i] = save + FD_H;
            double lpl = model_loss(&c);
            P[i] = save - FD_H;
            double lml = model_loss(&c);
            P[i] = save;
            double fd = (lpl - lml) / (2 * FD_H);
            worst = fmax(worst, rel_err(G[i], fd));
            gmax = fmax(gmax, fabs(fd));
        }
        printf(" %s %.1e", param_kind_name(k), worst);
        CU_ASSERT(worst < FD_TOL);
        CU_ASSERT(gmax > 1e-3); // every tensor kind carries gradient
        worst_all = fmax(worst_all, worst);
    }
    printf("\n    %s: max rel err over all %zu parameters %.2e", cfg.model_type, lay->total,
           worst_all);
    // which kinds exist in this family
    CU_ASSERT_EQUAL(lay->p[P_LM_HEAD].size == 0, type == MODEL_QWEN2);
    CU_ASSERT_EQUAL(lay->p[P_BQ].size != 0, type != MODEL_MISTRAL);
    CU_ASSERT_EQUAL(lay->p[P_BO].size != 0, type == MODEL_LLAMA);

    acts_free_f64(&c.acts);
    free(G), free(P), free(tok);
    model_free(&m);
}

static void test_fd_llama(void) {
    check_family_fd(MODEL_LLAMA, 1.0);
}

// The log-probs of softmax(z / T), as the SEGA loss computes them at the sampling temperature:
// the backward goes through the 1/T of the head.
static void test_fd_temperature(void) {
    check_family_fd(MODEL_LLAMA, 0.7);
}

static void test_fd_qwen2(void) {
    check_family_fd(MODEL_QWEN2, 1.0);
}

static void test_fd_mistral(void) {
    check_family_fd(MODEL_MISTRAL, 1.0);
}

// ---- the float path against the double one -------------------------------------------------

static void check_float_vs_double(ModelType type) {
    ModelConfig cfg;
    test_tiny_config(&cfg, type);
    Model m;
    test_random_model(&m, &cfg, 300 + type);
    Rng rng;
    rng_seed(&rng, 400 + type);
    const int offsets[] = {0, 11, 12, 20}, N = 20;
    int *tok = random_tokens(&rng, N, cfg.vocab_size);
    PackedBatch batch = {3, N, tok, offsets, NULL};
    float lpf[20], entf[20], Rf[20];
    double lpd[20], entd[20], Rd[20];
    for (int i = 0; i < N; i++) Rd[i] = Rf[i] = rng_normal(&rng);

    model_forward(&m, &batch, lpf, entf);
    model_zero_grad(&m);
    model_backward(&m, &batch, Rf);

    double *P = mallocCheck(m.layout.total * sizeof(double));
    for (size_t i = 0; i < m.layout.total; i++) P[i] = m.params[i];
    double inv[64];
    rope_inv_freq(&cfg, inv);
    Acts_f64 acts = {0};
    model_forward_cpu_f64(&cfg, &m.layout, P, inv, &acts, &batch, lpd, entd);
    double *G = callocCheck(m.layout.total, sizeof(double));
    model_backward_cpu_f64(&cfg, &m.layout, P, &acts, &batch, Rd, G);

    double dlp = 0, dent = 0, gmax = 0, dg = 0;
    for (int i = 0; i < N; i++) {
        dlp = fmax(dlp, fabs(lpf[i] - lpd[i]));
        dent = fmax(dent, fabs(entf[i] - entd[i]));
    }
    for (size_t i = 0; i < m.layout.total; i++) {
        gmax = fmax(gmax, fabs(G[i]));
        dg = fmax(dg, fabs(m.grads[i] - G[i]));
    }
    printf("\n    %s: |lp| %.1e |entropy| %.1e |grad| %.1e (of max %.2f)", cfg.model_type, dlp,
           dent, dg, gmax);
    CU_ASSERT(dlp < 1e-5);
    CU_ASSERT(dent < 1e-5);
    CU_ASSERT(dg < 1e-5 * gmax);
    acts_free_f64(&acts);
    free(G), free(P), free(tok);
    model_free(&m);
}

static void test_float_vs_double(void) {
    check_float_vs_double(MODEL_LLAMA);
    check_float_vs_double(MODEL_QWEN2);
    check_float_vs_double(MODEL_MISTRAL);
}

// ---- exact-bit properties of the float path --------------------------------------------------

// A model larger than the tiny one, so that the batches cross the head's row chunks and the
// kernels split their rows between threads.
static void medium_config(ModelConfig *cfg, ModelType type) {
    test_tiny_config(cfg, type);
    cfg->vocab_size = 301;
    cfg->hidden_size = 64;
    cfg->intermediate_size = 128; // K = 128: shapes where BLAS results depend on the row count
    cfg->head_dim = 32;           // one tile of the float attention micro-kernels
    cfg->initializer_range = 0.05f;
    cfg->max_position_embeddings = 512;
    if (type == MODEL_MISTRAL) cfg->sliding_window = 37;
}

// Sequence A alone, then packed between others: its logprobs and entropies are the same bits.
static void check_packing(const ModelConfig *cfg, int len_a, int len_before, int len_after) {
    Model m;
    test_random_model(&m, cfg, 500);
    Rng rng;
    rng_seed(&rng, 501);
    const int N = len_before + len_a + len_after;
    int *tok = random_tokens(&rng, N, cfg->vocab_size);
    const int *tok_a = tok + len_before;
    float *lp_a = mallocCheck(sizeof(float) * len_a), *ent_a = mallocCheck(sizeof(float) * len_a);
    float *lp = mallocCheck(sizeof(float) * N), *ent = mallocCheck(sizeof(float) * N);
    const int off_a[] = {0, len_a};
    PackedBatch alone = {1, len_a, tok_a, off_a, NULL};
    model_forward(&m, &alone, lp_a, ent_a);
    // before, an empty sequence, A, after
    const int off[] = {0, len_before, len_before, len_before + len_a, N};
    PackedBatch packed = {4, N, tok, off, NULL};
    model_forward(&m, &packed, lp, ent);
    CU_ASSERT(memcmp(lp + len_before, lp_a, sizeof(float) * len_a) == 0);
    CU_ASSERT(memcmp(ent + len_before, ent_a, sizeof(float) * len_a) == 0);
    CU_ASSERT_EQUAL(lp_a[len_a - 1], 0.0f);
    CU_ASSERT(lp_a[0] < 0.0f && ent_a[0] > 0.0f);
    free(lp_a), free(ent_a), free(lp), free(ent), free(tok);
    model_free(&m);
}

static void test_packing_independence(void) {
    for (int t = 0; t < 3; t++) {
        ModelConfig cfg;
        test_tiny_config(&cfg, (ModelType)t);
        check_packing(&cfg, 9, 5, 4);
        medium_config(&cfg, (ModelType)t);
        check_packing(&cfg, 5, 9, 17); // short sequences: BLAS calls of few rows
        check_packing(&cfg, 17, 9, 5);
        check_packing(&cfg, 150, 77, 40); // A crosses the GEMM's 96-row tasks and 6-row tiles
    }
}

// Forward + backward of the float path: logprobs, entropies and gradients.
typedef struct {
    float *lp, *ent, *grads;
} Run;

static Run run_once(Model *m, const PackedBatch *b, const float *R) {
    Run r = {mallocCheck(sizeof(float) * b->N), mallocCheck(sizeof(float) * b->N),
             mallocCheck(sizeof(float) * m->layout.total)};
    model_forward(m, b, r.lp, r.ent);
    model_zero_grad(m);
    model_backward(m, b, R);
    memcpy(r.grads, m->grads, sizeof(float) * m->layout.total);
    return r;
}

static int same_run(const Run *a, const Run *b, int N, size_t total) {
    return memcmp(a->lp, b->lp, sizeof(float) * N) == 0 &&
           memcmp(a->ent, b->ent, sizeof(float) * N) == 0 &&
           memcmp(a->grads, b->grads, sizeof(float) * total) == 0;
}

// ---- shared prefixes (PackedBatch.prefix) -----------------------------------------------------

// One prompt of P tokens and k responses, packed whole (prompt + response, after an unrelated
// sequence) and shared (the unrelated sequence, the prompt's first P - 1 tokens, then each
// response behind the prompt's last token): the same response log-probs and entropies, bit for
// bit, and the same gradients, within 1e-6 of the largest in float and 1e-12 in double, for
// any weights on the responses' log-probs.
typedef struct {
    int N, B;
    int *tok, *off, *prefix;
    int *at; // [k + 1 rows]: where response token j of candidate c is predicted, at[c] + j
} Packing;

static void pack_group(Packing *pk, const int *other, int n_other, const int *prompt, int P,
                       int *const *resp, const int *R, int k, int shared) {
    pk->B = 1 + (shared ? 1 : 0) + k;
    pk->N = n_other + (shared ? P - 1 : 0);
    for (int c = 0; c < k; c++) pk->N += (shared ? 1 : P) + R[c];
    pk->tok = mallocCheck(sizeof(int) * pk->N);
    pk->off = mallocCheck(sizeof(int) * (pk->B + 1));
    pk->prefix = mallocCheck(sizeof(int) * pk->B);
    pk->at = mallocCheck(sizeof(int) * k);
    int o = 0, b = 0;
    memcpy(pk->tok, other, sizeof(int) * n_other);
    pk->off[0] = 0, pk->prefix[b] = -1, o += n_other, pk->off[++b] = o;
    if (shared) {
        memcpy(pk->tok + o, prompt, sizeof(int) * (P - 1));
        pk->prefix[b] = -1, o += P - 1, pk->off[++b] = o;
    }
    for (int c = 0; c < k; c++) {
        const int lead = shared ? 1 : P; // the prompt tokens in the sequence itself
        memcpy(pk->tok + o, prompt + P - lead, sizeof(int) * lead);
        memcpy(pk->tok + o + lead, resp[c], sizeof(int) * R[c]);
        pk->at[c] = o + lead - 1;
        pk->prefix[b] = shared ? 1 : -1, o += lead + R[c], pk->off[++b] = o;
    }
}

static void check_shared_prefix(const ModelConfig *cfg, int P, const int *R, int k, int n_other) {
    Model m;
    test_random_model(&m, cfg, 700);
    Rng rng;
    rng_seed(&rng, 701);
    int *other = random_tokens(&rng, n_other, cfg->vocab_size);
    int *prompt = random_tokens(&rng, P, cfg->vocab_size);
    int *resp[8];
    for (int c = 0; c < k; c++) resp[c] = random_tokens(&rng, R[c], cfg->vocab_size);
    Packing whole, sh;
    pack_group(&whole, other, n_other, prompt, P, resp, R, k, 0);
    pack_group(&sh, other, n_other, prompt, P, resp, R, k, 1);
    PackedBatch bw = {whole.B, whole.N, whole.tok, whole.off, NULL};
    PackedBatch bs = {sh.B, sh.N, sh.tok, sh.off, sh.prefix};
    // the same weights on the unrelated sequence and on every response log-prob
    float *Rw = callocCheck(whole.N, sizeof(float)), *Rs = callocCheck(sh.N, sizeof(float));
    for (int i = 0; i < n_other; i++) Rw[i] = Rs[i] = (float)rng_normal(&rng);
    for (int c = 0; c < k; c++)
        for (int j = 0; j < R[c]; j++)
            Rw[whole.at[c] + j] = Rs[sh.at[c] + j] = (float)rng_normal(&rng);

    Run a = run_once(&m, &bw, Rw), b = run_once(&m, &bs, Rs);
    int same = memcmp(a.lp, b.lp, sizeof(float) * n_other) == 0 &&
               memcmp(a.ent, b.ent, sizeof(float) * n_other) == 0;
    for (int c = 0; c < k; c++)
        same &= memcmp(a.lp + whole.at[c], b.lp + sh.at[c], sizeof(float) * R[c]) == 0 &&
                memcmp(a.ent + whole.at[c], b.ent + sh.at[c], sizeof(float) * R[c]) == 0;
    // the prompt's own positions (all but its last) as in the first candidate's sequence
    same &= memcmp(a.ent + n_other, b.ent + n_other, sizeof(float) * (P - 1)) == 0;
    CU_ASSERT(same);
    double gmax = 0, dg = 0;
    for (size_t i = 0; i < m.layout.total; i++) {
        gmax = fmax(gmax, fabs(a.grads[i]));
        dg = fmax(dg, fabs(a.grads[i] - b.grads[i]));
    }
    CU_ASSERT(gmax > 0 && dg <= 1e-6 * gmax);

    // the double instantiation: the same sums in another order, so agreement to rounding
    double *Pd = mallocCheck(m.layout.total * sizeof(double));
    for (size_t i = 0; i < m.layout.total; i++) Pd[i] = m.params[i];
    double inv[64], ddg = 0, dgmax = 0;
    rope_inv_freq(cfg, inv);
    double *G[2], *lp[2];
    const PackedBatch *bb[2] = {&bw, &bs};
    const float *RR[2] = {Rw, Rs};
    for (int v = 0; v < 2; v++) {
        Acts_f64 acts = {0};
        double *Rd = mallocCheck(sizeof(double) * bb[v]->N);
        for (int i = 0; i < bb[v]->N; i++) Rd[i] = RR[v][i];
        lp[v] = mallocCheck(sizeof(double) * bb[v]->N);
        G[v] = callocCheck(m.layout.total, sizeof(double));
        model_forward_cpu_f64(cfg, &m.layout, Pd, inv, &acts, bb[v], lp[v], NULL);
        model_backward_cpu_f64(cfg, &m.layout, Pd, &acts, bb[v], Rd, G[v]);
        acts_free_f64(&acts);
        free(Rd);
    }
    for (size_t i = 0; i < m.layout.total; i++) {
        dgmax = fmax(dgmax, fabs(G[0][i]));
        ddg = fmax(ddg, fabs(G[0][i] - G[1][i]));
    }
    double dlp = 0; // (the double GEMM is OpenBLAS's, whose bits depend on the row count)
    for (int c = 0; c < k; c++)
        for (int j = 0; j < R[c]; j++)
            dlp = fmax(dlp, fabs(lp[0][whole.at[c] + j] - lp[1][sh.at[c] + j]));
    CU_ASSERT(dlp < 1e-12);
    CU_ASSERT(ddg <= 1e-12 * dgmax);
    printf("\n    %s P %d k %d: float |grad diff| %.1e of %.2f, double %.1e", cfg->model_type, P, k,
           dg, gmax, ddg);
    for (int v = 0; v < 2; v++) free(G[v]), free(lp[v]);
    free(Pd);
    Packing *pks[2] = {&whole, &sh};
    for (int v = 0; v < 2; v++)
        free(pks[v]->tok), free(pks[v]->off), free(pks[v]->prefix), free(pks[v]->at);
    for (int c = 0; c < k; c++) free(resp[c]);
    free(a.lp), free(a.ent), free(a.grads), free(b.lp), free(b.ent), free(b.grads);
    free(Rw), free(Rs), free(other), free(prompt);
    model_free(&m);
}

static void test_shared_prefix(void) {
    const int R4[] = {9, 23, 1, 70}, R2[] = {5, 12};
    for (int t = 0; t < 3; t++) {
        ModelConfig cfg;
        test_tiny_config(&cfg, (ModelType)t);
        check_shared_prefix(&cfg, 6, R2, 2, 3); // a DPO pair
        medium_config(&cfg, (ModelType)t);      // mistral: a window of 37 across the prefix
        check_shared_prefix(&cfg, 40, R4, 4, 7);
        check_shared_prefix(&cfg, 130, R4, 4, 0); // key blocks of 64 in the prefix
        check_shared_prefix(&cfg, 2, R2, 2, 5);   // a prefix of one token
    }
}

static void free_run(Run *r) {
    free(r->lp), free(r->ent), free(r->grads);
}

static void test_determinism_and_threads(void) {
    const int saved_omp = omp_get_max_threads(), saved_blas = openblas_get_num_threads();
    for (int t = 0; t < 3; t++) {
        ModelConfig cfg;
        medium_config(&cfg, (ModelType)t);
        Model m;
        test_random_model(&m, &cfg, 600 + t);
        Rng rng;
        rng_seed(&rng, 601);
        const int offsets[] = {0, 100, 103, 260, 300}, N = 300;
        int *tok = random_tokens(&rng, N, cfg.vocab_size);
        PackedBatch batch = {4, N, tok, offsets, NULL};
        float *R = mallocCheck(sizeof(float) * N);
        for (int i = 0; i < N; i++) R[i] = rng_normal(&rng);

        omp_set_num_threads(2);
        Run a = run_once(&m, &batch, R), b = run_once(&m, &batch, R);
        CU_ASSERT(same_run(&a, &b, N, m.layout.total)); // twice: the same bits
        omp_set_num_threads(1);
        openblas_set_num_threads(1);
        Run c = run_once(&m, &batch, R);
        CU_ASSERT(same_run(&a, &c, N, m.layout.total)); // one thread: the same bits
        omp_set_num_threads(3);
        openblas_set_num_threads(2);
        Run d = run_once(&m, &batch, R);
        CU_ASSERT(same_run(&a, &d, N, m.layout.total)); // three threads: the same bits
        omp_set_num_threads(saved_omp);
        openblas_set_num_threads(saved_blas);

        // the backward accumulates into the gradients
        model_forward(&m, &batch, NULL, NULL);
        model_backward(&m, &batch, R);
        double worst = 0, gmax = 0;
        for (size_t i = 0; i < m.layout.total; i++) {
            worst = fmax(worst, fabs(m.grads[i] - 2.0 * a.grads[i]));
            gmax = fmax(gmax, fabs(a.grads[i]));
        }
        CU_ASSERT(gmax > 0 && worst <= 1e-6 * gmax);
        model_zero_grad(&m);
        for (size_t i = 0; i < m.layout.total; i++)
            if (m.grads[i] != 0.0f) {
                CU_FAIL("model_zero_grad left a nonzero gradient");
                break;
            }
        free_run(&a), free_run(&b), free_run(&c), free_run(&d);
        free(R), free(tok);
        model_free(&m);
    }
}

// The acts grow for a larger batch and still serve smaller ones.
static void test_acts_regrow(void) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_QWEN2);
    Model m;
    test_random_model(&m, &cfg, 700);
    Rng rng;
    rng_seed(&rng, 701);
    int *tok = random_tokens(&rng, 40, cfg.vocab_size);
    float lp1[8], lp2[40], lp3[8];
    const int o1[] = {0, 8}, o2[] = {0, 40};
    PackedBatch b1 = {1, 8, tok, o1, NULL}, b2 = {1, 40, tok, o2, NULL};
    model_forward(&m, &b1, lp1, NULL);
    model_forward(&m, &b2, lp2, NULL);
    model_forward(&m, &b1, lp3, NULL);
    CU_ASSERT(memcmp(lp1, lp3, sizeof lp1) == 0);
    CU_ASSERT(memcmp(lp1, lp2, sizeof(float) * 7) == 0); // causal: a prefix sees only itself
    model_free_acts(&m);
    CU_ASSERT_PTR_NULL(m.acts);
    model_forward(&m, &b1, lp3, NULL);
    CU_ASSERT(memcmp(lp1, lp3, sizeof lp1) == 0);
    free(tok);
    model_free(&m);
}

void register_model_grad_tests(void) {
    static const TestCase tests[] = {
        {"finite differences llama", test_fd_llama},
        {"finite differences qwen2", test_fd_qwen2},
        {"finite differences mistral", test_fd_mistral},
        {"finite differences at temperature 0.7 (llama)", test_fd_temperature},
        {"float path matches double path", test_float_vs_double},
        {"packing independence", test_packing_independence},
        {"a shared prefix: the same log-probs (bits) and gradients", test_shared_prefix},
        {"determinism and thread count", test_determinism_and_threads},
        {"activations regrow", test_acts_regrow},
        {NULL, NULL},
    };
    add_suite("model_grad", tests);
}
