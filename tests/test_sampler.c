// The sampler: sample_token against a double-precision reference and by chi-square goodness of
// fit; sampler_generate against model_forward on prompt + candidate (log-probs and entropies),
// greedy decoding against step-by-step argmax, determinism (seeds, thread counts), stopping
// (EOS, max_new_tokens, the context), shared prefill, and bad input.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/sampler.h"
#include "tests.h"

// ---- sample_token against a double reference -----------------------------------------------

// The distribution sample_token should draw from, in double: the kept tokens in the order the
// inverse CDF walks them (ids in order when nothing is cut, best first when top-k or top-p cut)
// and their probabilities.
typedef struct {
    int n;
    int *order; // [n]
    double *q;  // [n]
    double H_raw, lse_raw, H_sample;
} Ref;

static const float *g_rank_z; // qsort has no context argument

static int rank_cmp(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    if (g_rank_z[i] != g_rank_z[j]) return g_rank_z[i] > g_rank_z[j] ? -1 : 1;
    return i - j;
}

// Entropy (nats) of the weights w[0 .. n) normalised, from H = ln S - sum w ln w / S.
static double entropy_d(const double *w, int n) {
    double S = 0, T = 0;
    for (int i = 0; i < n; i++) S += w[i];
    for (int i = 0; i < n; i++)
        if (w[i] > 0) T += w[i] * log(w[i]);
    return log(S) - T / S;
}

static Ref reference(const float *z, int V, const SamplingConfig *sc) {
    Ref r = {0};
    r.order = mallocCheck(sizeof(int) * V);
    r.q = mallocCheck(sizeof(double) * V);
    double *w = mallocCheck(sizeof(double) * V);
    double m = -INFINITY;
    for (int i = 0; i < V; i++) m = fmax(m, z[i]);
    double S = 0;
    for (int i = 0; i < V; i++) S += (w[i] = exp((double)z[i] - m));
    r.lse_raw = m + log(S);
    r.H_raw = entropy_d(w, V);
    for (int i = 0; i < V; i++) r.order[i] = i;
    g_rank_z = z;
    qsort(r.order, V, sizeof(int), rank_cmp);
    if (sc->temperature == 0 || sc->top_k == 1) {
        r.n = 1, r.q[0] = 1, r.H_sample = 0;
        free(w);
        return r;
    }
    int n = V;
    if (sc->top_k > 0 && sc->top_k < V) n = sc->top_k;
    double tot = 0;
    for (int i = 0; i < n; i++) tot += (w[i] = exp(((double)z[r.order[i]] - m) / sc->temperature));
    if (sc->top_p < 1) {
        double cum = 0;
        int kept = 0;
        while (kept < n && cum < sc->top_p * tot) cum += w[kept++];
        n = kept;
    }
    if (n == V) { // nothing cut: the walk goes by id
        for (int i = 0; i < V; i++) r.order[i] = i;
        for (int i = 0; i < V; i++) w[i] = exp(((double)z[i] - m) / sc->temperature);
    }
    tot = 0;
    for (int i = 0; i < n; i++) tot += w[i];
    for (int i = 0; i < n; i++) r.q[i] = w[i] / tot;
    r.n = n;
    r.H_sample = entropy_d(w, n);
    free(w);
    return r;
}

static void ref_free(Ref *r) {
    free(r->order), free(r->q);
}

// Draws with u and checks the draw against the reference: the token is kept, sits where the
// inverse CDF puts u, and the four numbers agree with the double ones.
static int check_draw(const float *z, int V, const SamplingConfig *sc, const Ref *r, float u,
                      float *scratch, double tol) {
    TokenDraw d;
    sample_token(z, V, sc, u, scratch, &d);
    int pos = -1;
    double before = 0;
    for (int i = 0; i < r->n && pos < 0; i++) {
        if (r->order[i] == d.token)
            pos = i;
        else
            before += r->q[i];
    }
    CU_ASSERT_FATAL(pos >= 0); // a token outside the kept set
    const int greedy = sc->temperature == 0 || sc->top_k == 1;
    if (!greedy) {
        CU_ASSERT(before <= u + 1e-5);
        CU_ASSERT(u <= before + r->q[pos] + 1e-5);
    }
    const double lp_raw = (double)z[d.token] - r->lse_raw;
    const double lp_s = greedy ? 0 : log(r->q[pos]);
    ASSERT_CLOSE(d.logp_raw, lp_raw, tol * fmax(1, fabs(lp_raw)));
    ASSERT_CLOSE(d.entropy_raw, r->H_raw, tol * fmax(1, r->H_raw));
    ASSERT_CLOSE(d.logp_sample, lp_s, tol * fmax(1, fabs(lp_s)));
    ASSERT_CLOSE(d.entropy_sample, r->H_sample, tol * fmax(1, r->H_sample));
    // logp_old: softmax(z / T) over every id, nothing cut (the raw log-prob when greedy)
    double lp_old = lp_raw;
    if (!greedy) {
        double m = -INFINITY, S = 0;
        for (int i = 0; i < V; i++) m = fmax(m, (double)z[i]);
        for (int i = 0; i < V; i++) S += exp(((double)z[i] - m) / sc->temperature);
        lp_old = ((double)z[d.token] - m) / sc->temperature - log(S);
    }
    ASSERT_CLOSE(d.logp_old, lp_old, tol * fmax(1, fabs(lp_old)));
    return d.token;
}

static void random_logits(float *z, int V, Rng *rng, float scale) {
    for (int i = 0; i < V; i++) z[i] = scale * rng_normal(rng);
    for (int i = 0; i + 7 < V; i += 7) z[i + 3] = z[i]; // ties, which rank by id
}

static void test_sample_token_reference(void) {
    const SamplingConfig cfgs[] = {
        {.temperature = 1.0f, .top_p = 1.0f},
        {.temperature = 0.7f, .top_p = 1.0f},
        {.temperature = 1.3f, .top_p = 1.0f, .top_k = 20},
        {.temperature = 1.0f, .top_p = 0.9f},
        {.temperature = 0.8f, .top_p = 0.8f, .top_k = 50},
        {.temperature = 0.0f, .top_p = 1.0f},
        {.temperature = 1.0f, .top_p = 1.0f, .top_k = 1},
    };
    Rng rng;
    rng_seed(&rng, 7);
    const int V = 300;
    float *z = mallocCheck(sizeof(float) * V), *scratch = mallocCheck(sizeof(float) * 2 * V);
    for (int trial = 0; trial < 6; trial++) {
        random_logits(z, V, &rng, 0.5f + trial);
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
            Ref r = reference(z, V, &cfgs[c]);
            for (int k = 0; k < 20; k++)
                check_draw(z, V, &cfgs[c], &r, rng_uniform(&rng), scratch, 2e-5);
            check_draw(z, V, &cfgs[c], &r, 0.0f, scratch, 2e-5);
            check_draw(z, V, &cfgs[c], &r, 0.99999994f, scratch, 2e-5);
            ref_free(&r);
        }
    }
    free(z), free(scratch);

    // Llama 3's vocabulary: a flat top-p keeps most of it (the ranked block grows many times)
    const int BV = 128256;
    z = mallocCheck(sizeof(float) * BV), scratch = mallocCheck(sizeof(float) * 2 * BV);
    random_logits(z, BV, &rng, 1.0f);
    const SamplingConfig big[] = {
        {.temperature = 1.0f, .top_p = 0.95f},
        {.temperature = 0.6f, .top_p = 1.0f},
        {.temperature = 1.0f, .top_p = 1.0f, .top_k = 40},
    };
    for (int c = 0; c < 3; c++) {
        Ref r = reference(z, BV, &big[c]);
        for (int k = 0; k < 3; k++)
            check_draw(z, BV, &big[c], &r, rng_uniform(&rng), scratch, 5e-5);
        ref_free(&r);
    }
    free(z), free(scratch);
}

static void test_sample_token_edges(void) {
    float *scratch = mallocCheck(sizeof(float) * 2 * 6);
    TokenDraw d;
    // ties: greedy takes the lowest id; top-k keeps the lower id of a tie at its boundary
    const float z[6] = {1, 3, 2, 3, 2, 0};
    SamplingConfig g = {.temperature = 0, .top_p = 1};
    sample_token(z, 6, &g, 0.5f, scratch, &d);
    CU_ASSERT_EQUAL(d.token, 1);
    CU_ASSERT_EQUAL(d.logp_sample, 0.0f);
    CU_ASSERT_EQUAL(d.entropy_sample, 0.0f);
    CU_ASSERT(d.entropy_raw > 0.5f);
    SamplingConfig k3 = {.temperature = 1, .top_p = 1, .top_k = 3};
    int seen[6] = {0};
    for (int i = 0; i < 200; i++) {
        sample_token(z, 6, &k3, (i + 0.5f) / 200, scratch, &d);
        seen[d.token]++;
    }
    CU_ASSERT(seen[1] && seen[2] && seen[3]);
    CU_ASSERT(!seen[0] && !seen[4] && !seen[5]);

    // a tiny temperature: the greedy token, finite numbers (no exp overflow, no 0 * inf)
    const float w[5] = {0.5f, 2.0f, 1.99f, -3.0f, -INFINITY};
    SamplingConfig cold = {.temperature = 1e-4f, .top_p = 1};
    for (int i = 0; i < 50; i++) {
        sample_token(w, 5, &cold, i / 50.0f, scratch, &d);
        CU_ASSERT_EQUAL(d.token, 1);
        CU_ASSERT(isfinite(d.logp_sample) && d.logp_sample <= 0 && d.logp_sample > -1e-3f);
        CU_ASSERT(isfinite(d.entropy_sample) && d.entropy_sample >= 0 && d.entropy_sample < 1e-3f);
        CU_ASSERT(isfinite(d.entropy_raw) && isfinite(d.logp_raw));
    }
    // -inf logits are never drawn and do not poison the sums
    SamplingConfig warm = {.temperature = 1.0f, .top_p = 1};
    for (int i = 0; i < 50; i++) {
        sample_token(w, 5, &warm, i / 50.0f, scratch, &d);
        CU_ASSERT(d.token != 4);
        CU_ASSERT(isfinite(d.entropy_raw) && isfinite(d.entropy_sample));
    }
    // a top_p below the best token's mass keeps only it
    SamplingConfig narrow = {.temperature = 1.0f, .top_p = 0.01f};
    sample_token(w, 5, &narrow, 0.9f, scratch, &d);
    CU_ASSERT_EQUAL(d.token, 1);
    CU_ASSERT_EQUAL(d.logp_sample, 0.0f);
    CU_ASSERT_EQUAL(d.entropy_sample, 0.0f);
    free(scratch);
}

// ---- chi-square goodness of fit ---------------------------------------------------------------

// 0.999 quantiles of chi-square with 1 .. 11 degrees of freedom.
static const double CHI2_999[12] = {0,      10.828, 13.816, 16.266, 18.467, 20.515,
                                    22.458, 24.322, 26.124, 27.877, 29.588, 31.264};

static void chi_square_case(const float *z, int V, const SamplingConfig *sc, int expect_kept) {
    enum { DRAWS = 20000 };
    Ref r = reference(z, V, sc);
    CU_ASSERT_EQUAL(r.n, expect_kept);
    long count[12] = {0};
    float *scratch = mallocCheck(sizeof(float) * 2 * V); // malloc'd: sample_token reuses it as ints
    Rng rng;
    rng_seed(&rng, 1234);
    for (int i = 0; i < DRAWS; i++) {
        TokenDraw d;
        sample_token(z, V, sc, rng_uniform(&rng), scratch, &d);
        count[d.token]++;
    }
    double chi2 = 0;
    long inside = 0;
    for (int i = 0; i < r.n; i++) {
        const double e = DRAWS * r.q[i];
        const long o = count[r.order[i]];
        chi2 += (o - e) * (o - e) / e;
        inside += o;
    }
    CU_ASSERT_EQUAL(inside, DRAWS); // nothing drawn outside the kept set
    printf(" [kept %d chi2 %.1f < %.1f]", r.n, chi2, CHI2_999[r.n - 1]);
    CU_ASSERT(chi2 < CHI2_999[r.n - 1]);
    ref_free(&r);
    free(scratch);
}

static void test_chi_square(void) {
    const float z[12] = {1.2f, -0.3f, 0.8f, 2.0f, 0.1f, -1.0f, 1.5f, 0.4f, -0.6f, 0.9f, 0.0f, 1.1f};
    // top-p 0.8: the cumulative mass passes 0.8 at the 6th token (0.734 before, 0.813 with it)
    SamplingConfig t1 = {.temperature = 1.0f, .top_p = 1.0f};
    SamplingConfig t07 = {.temperature = 0.7f, .top_p = 1.0f};
    SamplingConfig k5 = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 5};
    SamplingConfig p08 = {.temperature = 1.0f, .top_p = 0.8f};
    chi_square_case(z, 12, &t1, 12);
    chi_square_case(z, 12, &t07, 12);
    chi_square_case(z, 12, &k5, 5);
    chi_square_case(z, 12, &p08, 6);
}

// ---- generation on tiny random models ----------------------------------------------------------

// GQA (4 query heads on 2 kv heads), head_dim 8 != hidden / heads, tied head, no bias.
static void config_gqa(ModelConfig *cfg) {
    test_tiny_config(cfg, MODEL_LLAMA);
    cfg->qkv_bias = 0, cfg->o_bias = 0, cfg->tie_word_embeddings = 1;
    cfg->rope_type = ROPE_DEFAULT, cfg->rope_theta = 10000.0;
    cfg->head_dim = 8;
    cfg->max_position_embeddings = 48;
}

// Mistral-like: sliding window 5, q/k/v and o biases, untied head, GQA.
static void config_window(ModelConfig *cfg) {
    test_tiny_config(cfg, MODEL_MISTRAL);
    cfg->sliding_window = 5;
    cfg->qkv_bias = 1, cfg->o_bias = 1, cfg->tie_word_embeddings = 0;
    cfg->max_position_embeddings = 48;
}

typedef struct {
    int n;
    int **tok;      // [n][len[p]]
    int *len;       // [n]
    uint64_t *keys; // [n]
} Prompts;

static Prompts random_prompts(int n, const int *lens, int V, uint64_t seed) {
    Prompts p = {n, mallocCheck(sizeof(int *) * n), mallocCheck(sizeof(int) * n),
                 mallocCheck(sizeof(uint64_t) * n)};
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        p.len[i] = lens[i];
        p.keys[i] = (uint64_t)i;
        p.tok[i] = mallocCheck(sizeof(int) * (lens[i] ? lens[i] : 1));
        for (int t = 0; t < lens[i]; t++) p.tok[i][t] = (int)(rng_u64(&rng) % (uint64_t)V);
    }
    return p;
}

static void prompts_free(Prompts *p) {
    for (int i = 0; i < p->n; i++) free(p->tok[i]);
    free(p->tok), free(p->len), free(p->keys);
}

typedef struct {
    long calls, last_done, last_total;
    int monotonic;
} Progress;

static void on_progress(void *ctx, long done, long total) {
    Progress *p = ctx;
    if (done <= p->last_done) p->monotonic = 0;
    p->calls++, p->last_done = done, p->last_total = total;
}

// Generates with sc (and eos ids), asserting success; out has p->n * sc->k candidates.
static Candidate *generate(Model *m, const SamplingConfig *sc, uint64_t seed, const Prompts *p,
                           const int *eos, int n_eos, Progress *prog) {
    Candidate *out = callocCheck((size_t)p->n * sc->k, sizeof(Candidate));
    GenerateRequest req = {.sc = sc,
                           .eos_ids = eos,
                           .n_eos = n_eos,
                           .seed = seed,
                           .policy_version = 3,
                           .progress = prog ? on_progress : NULL,
                           .progress_ctx = prog};
    int rc = sampler_generate(m, &req, p->n, (const int *const *)p->tok, p->len, p->keys, out);
    if (rc != 0) printf("\n  sampler_generate: %s\n", gemc_error());
    CU_ASSERT_FATAL(rc == 0);
    return out;
}

static void cands_free(Candidate *c, int n) {
    for (int i = 0; i < n; i++) candidate_free(&c[i]);
    free(c);
}

static int same_candidate(const Candidate *a, const Candidate *b) {
    const size_t n = (size_t)a->n;
    return a->n == b->n && a->finish == b->finish && a->policy_version == b->policy_version &&
           !memcmp(a->ids, b->ids, n * sizeof(int)) &&
           !memcmp(a->logp_sample, b->logp_sample, n * sizeof(float)) &&
           !memcmp(a->logp_raw, b->logp_raw, n * sizeof(float)) &&
           !memcmp(a->entropy_raw, b->entropy_raw, n * sizeof(float)) &&
           !memcmp(a->entropy_sample, b->entropy_sample, n * sizeof(float));
}

// model_forward on every prompt + candidate, packed: the log-prob at position P-1+t is the raw
// log-prob of token t, the entropy there its raw entropy. Returns the largest difference.
static double diff_vs_forward(Model *m, const Prompts *p, const Candidate *c, int k) {
    const int B = p->n * k;
    int *off = mallocCheck(sizeof(int) * (B + 1));
    off[0] = 0;
    for (int i = 0; i < B; i++) off[i + 1] = off[i] + p->len[i / k] + c[i].n;
    int *tok = mallocCheck(sizeof(int) * off[B]);
    for (int i = 0; i < B; i++) {
        memcpy(tok + off[i], p->tok[i / k], sizeof(int) * p->len[i / k]);
        memcpy(tok + off[i] + p->len[i / k], c[i].ids, sizeof(int) * c[i].n);
    }
    PackedBatch batch = {B, off[B], tok, off, NULL};
    float *lp = mallocCheck(sizeof(float) * off[B]), *ent = mallocCheck(sizeof(float) * off[B]);
    model_forward(m, &batch, lp, ent);
    double worst = 0;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < c[i].n; t++) {
            const int at = off[i] + p->len[i / k] - 1 + t;
            worst = fmax(worst, fabs(lp[at] - c[i].logp_raw[t]));
            worst = fmax(worst, fabs(ent[at] - c[i].entropy_raw[t]));
        }
    free(off), free(tok), free(lp), free(ent);
    return worst;
}

static void check_vs_forward(const ModelConfig *cfg, int k, int n_prompts, const int *lens,
                             int max_new, uint64_t seed) {
    Model m;
    test_random_model(&m, cfg, seed);
    Prompts p = random_prompts(n_prompts, lens, cfg->vocab_size, seed + 1);
    SamplingConfig sc = {.k = k, .temperature = 1.0f, .top_p = 1.0f, .max_new_tokens = max_new};
    const int eos[] = {5};
    Candidate *c = generate(&m, &sc, 11, &p, eos, 1, NULL);
    long tokens = 0;
    for (int i = 0; i < n_prompts * k; i++) tokens += c[i].n;
    const double worst = diff_vs_forward(&m, &p, c, k);
    printf(" [%s: %ld tokens, worst %.1e]", cfg->model_type, tokens, worst);
    CU_ASSERT(tokens > n_prompts * k * 2);
    CU_ASSERT(worst < 1e-4);
    cands_free(c, n_prompts * k);
    prompts_free(&p);
    model_free(&m);
}

static void test_matches_forward(void) {
    ModelConfig cfg;
    int lens[9];
    for (int i = 0; i < 9; i++) lens[i] = 1 + (i * 7 + 3) % 19; // 1 .. 19
    config_gqa(&cfg);
    check_vs_forward(&cfg, 8, 9, lens, 14, 21); // 72 rows: two groups of decoding
    config_window(&cfg);
    check_vs_forward(&cfg, 3, 5, lens, 14, 22); // prompts and candidates past the window
    // long prompts: two prefill chunks (900 + 1000 tokens, then 700 + 5), rope far out
    const int long_lens[] = {900, 1000, 700, 5};
    config_gqa(&cfg);
    cfg.max_position_embeddings = 2048;
    check_vs_forward(&cfg, 2, 4, long_lens, 6, 23);
}

// Greedy decoding three ways (temperature 0, temperature 1e-4, top-k 1) gives the same
// candidates, and each token is the argmax of model_forward's next-token distribution.
static void test_greedy(void) {
    ModelConfig cfg;
    config_window(&cfg);
    Model m;
    test_random_model(&m, &cfg, 31);
    const int lens[] = {4, 11};
    Prompts p = random_prompts(2, lens, cfg.vocab_size, 32);
    SamplingConfig g0 = {.k = 2, .temperature = 0, .top_p = 1, .max_new_tokens = 10};
    SamplingConfig cold = g0, k1 = g0;
    cold.temperature = 1e-4f;
    k1.temperature = 1.0f, k1.top_k = 1;
    Candidate *a = generate(&m, &g0, 1, &p, NULL, 0, NULL);
    Candidate *b = generate(&m, &cold, 2, &p, NULL, 0, NULL);
    Candidate *c = generate(&m, &k1, 3, &p, NULL, 0, NULL);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(a[i].n, 10);
        CU_ASSERT_EQUAL(a[i].finish, FINISH_LENGTH);
        CU_ASSERT(same_candidate(&a[i], &c[i]));
        CU_ASSERT(same_candidate(&a[i], &a[i - i % 2])); // the k greedy candidates agree
        CU_ASSERT_EQUAL(b[i].n, a[i].n);
        CU_ASSERT(!memcmp(a[i].ids, b[i].ids, sizeof(int) * a[i].n));
        for (int t = 0; t < a[i].n; t++) {
            CU_ASSERT_EQUAL(a[i].logp_sample[t], 0.0f);
            CU_ASSERT_EQUAL(a[i].entropy_sample[t], 0.0f);
            CU_ASSERT(isfinite(b[i].logp_sample[t]) && b[i].logp_sample[t] > -1e-3f);
        }
    }
    // argmax by brute force: every token v appended after prompt + ids[0 .. t), all packed
    const int V = cfg.vocab_size, n = a[0].n;
    int worst_rank = 0;
    for (int pi = 0; pi < 2; pi++) {
        const Candidate *cd = &a[pi * 2];
        const int P = p.len[pi];
        for (int t = 0; t < n; t++) {
            const int L = P + t + 1;
            int *tok = mallocCheck(sizeof(int) * V * L), *off = mallocCheck(sizeof(int) * (V + 1));
            for (int v = 0; v <= V; v++) off[v] = v * L;
            for (int v = 0; v < V; v++) {
                memcpy(tok + v * L, p.tok[pi], sizeof(int) * P);
                memcpy(tok + v * L + P, cd->ids, sizeof(int) * t);
                tok[v * L + L - 1] = v;
            }
            PackedBatch batch = {V, V * L, tok, off, NULL};
            float *lp = mallocCheck(sizeof(float) * V * L);
            model_forward(&m, &batch, lp, NULL);
            int best = 0;
            for (int v = 1; v < V; v++)
                if (lp[v * L + L - 2] > lp[best * L + L - 2]) best = v;
            const double gap = lp[best * L + L - 2] - lp[cd->ids[t] * L + L - 2];
            if (best != cd->ids[t] && gap > 1e-5) worst_rank = 1;
            free(tok), free(off), free(lp);
        }
    }
    CU_ASSERT_EQUAL(worst_rank, 0);
    cands_free(a, 4), cands_free(b, 4), cands_free(c, 4);
    prompts_free(&p);
    model_free(&m);
}

static void test_determinism(void) {
    ModelConfig cfg;
    config_gqa(&cfg);
    Model m;
    test_random_model(&m, &cfg, 41);
    const int lens[] = {6, 2, 13};
    Prompts p = random_prompts(3, lens, cfg.vocab_size, 42);
    SamplingConfig sc = {
        .k = 4, .temperature = 0.9f, .top_p = 0.95f, .top_k = 20, .max_new_tokens = 16};
    const int eos[] = {5, 9};
    const int saved_omp = omp_get_max_threads(), saved_blas = openblas_get_num_threads();
    Candidate *a = generate(&m, &sc, 100, &p, eos, 2, NULL);
    Candidate *b = generate(&m, &sc, 100, &p, eos, 2, NULL);
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    Candidate *c = generate(&m, &sc, 100, &p, eos, 2, NULL);
    omp_set_num_threads(3);
    openblas_set_num_threads(2);
    Candidate *d = generate(&m, &sc, 100, &p, eos, 2, NULL);
    omp_set_num_threads(saved_omp);
    openblas_set_num_threads(saved_blas);
    Candidate *e = generate(&m, &sc, 101, &p, eos, 2, NULL);
    int same_ab = 1, same_ac = 1, same_ad = 1, same_ae = 1, same_within = 1;
    for (int i = 0; i < 12; i++) {
        same_ab &= same_candidate(&a[i], &b[i]);
        same_ac &= same_candidate(&a[i], &c[i]);
        same_ad &= same_candidate(&a[i], &d[i]);
        same_ae &= same_candidate(&a[i], &e[i]);
        if (i % 4) same_within &= same_candidate(&a[i], &a[i - 1]);
        CU_ASSERT_EQUAL(a[i].policy_version, 3);
    }
    CU_ASSERT(same_ab);      // same seed: the same bits
    CU_ASSERT(same_ac);      // one thread
    CU_ASSERT(same_ad);      // three threads
    CU_ASSERT(!same_ae);     // another seed: other candidates
    CU_ASSERT(!same_within); // the k candidates of a prompt have their own streams

    // a prompt's stream key, not its place in the request, decides its candidates
    Prompts q = random_prompts(3, lens, cfg.vocab_size, 42);
    q.keys[0] = 77;
    Candidate *f = generate(&m, &sc, 100, &q, eos, 2, NULL);
    CU_ASSERT(!same_candidate(&a[0], &f[0]) || !same_candidate(&a[1], &f[1]));
    // (the same tokens; the bits may differ, as the decode steps feed other numbers of rows)
    CU_ASSERT(a[4].n == f[4].n && !memcmp(a[4].ids, f[4].ids, sizeof(int) * a[4].n));
    cands_free(a, 12), cands_free(b, 12), cands_free(c, 12), cands_free(d, 12);
    cands_free(e, 12), cands_free(f, 12);
    prompts_free(&p), prompts_free(&q);
    model_free(&m);
}

static int is_in(int t, const int *set, int n) {
    for (int i = 0; i < n; i++)
        if (set[i] == t) return 1;
    return 0;
}

static void test_stopping(void) {
    ModelConfig cfg;
    config_window(&cfg);
    Model m;
    test_random_model(&m, &cfg, 51);
    // eight EOS ids out of 37: most candidates end on one, some run to max_new_tokens
    const int eos[] = {0, 4, 9, 13, 18, 22, 27, 31};
    const int lens[] = {3, 8, 12, 5};
    Prompts p = random_prompts(4, lens, cfg.vocab_size, 52);
    SamplingConfig sc = {.k = 6, .temperature = 1.0f, .top_p = 1.0f, .max_new_tokens = 6};
    Progress prog = {0, 0, 0, 1};
    Candidate *c = generate(&m, &sc, 5, &p, eos, 8, &prog);
    int n_eos = 0, n_len = 0, ok = 1;
    for (int i = 0; i < 24; i++) {
        for (int t = 0; t + 1 < c[i].n; t++) ok &= !is_in(c[i].ids[t], eos, 8);
        if (c[i].finish == FINISH_EOS) {
            n_eos++;
            ok &= c[i].n >= 1 && is_in(c[i].ids[c[i].n - 1], eos, 8);
        } else {
            n_len++;
            ok &= c[i].n == 6 && !is_in(c[i].ids[c[i].n - 1], eos, 8);
        }
    }
    printf(" [%d eos, %d length]", n_eos, n_len);
    CU_ASSERT(ok);
    CU_ASSERT(n_eos > 0 && n_len > 0);
    CU_ASSERT(prog.calls > 0 && prog.monotonic);
    CU_ASSERT_EQUAL(prog.last_done, 24);
    CU_ASSERT_EQUAL(prog.last_total, 24);
    CU_ASSERT_STRING_EQUAL(finish_reason_name(FINISH_EOS), "eos");
    CU_ASSERT_STRING_EQUAL(finish_reason_name(FINISH_LENGTH), "length");
    cands_free(c, 24);
    prompts_free(&p);

    // the context: a 45-token prompt in 48 positions leaves room for 3 tokens
    const int long_len[] = {45, 4};
    Prompts q = random_prompts(2, long_len, cfg.vocab_size, 53);
    sc.max_new_tokens = 10, sc.k = 2;
    c = generate(&m, &sc, 6, &q, NULL, 0, NULL);
    CU_ASSERT_EQUAL(c[0].n, 3);
    CU_ASSERT_EQUAL(c[1].n, 3);
    CU_ASSERT_EQUAL(c[0].finish, FINISH_LENGTH);
    CU_ASSERT_EQUAL(c[2].n, 10);
    CU_ASSERT(diff_vs_forward(&m, &q, c, 2) < 1e-4);
    cands_free(c, 4);
    prompts_free(&q);
    model_free(&m);
}

// The k candidates of a prompt share its prefill, whatever prompts are decoded with it: two
// prompts together give, per prompt, what each gives alone.
static void test_shared_prefill(void) {
    ModelConfig cfg;
    config_gqa(&cfg);
    Model m;
    test_random_model(&m, &cfg, 61);
    const int lens[] = {9, 15};
    Prompts both = random_prompts(2, lens, cfg.vocab_size, 62);
    SamplingConfig sc = {.k = 3, .temperature = 1.0f, .top_p = 1.0f, .max_new_tokens = 12};
    Candidate *c2 = generate(&m, &sc, 9, &both, NULL, 0, NULL);
    double worst = 0;
    int same_ids = 1;
    for (int pi = 0; pi < 2; pi++) {
        Prompts one = {1, &both.tok[pi], &both.len[pi], &both.keys[pi]};
        Candidate *c1 = generate(&m, &sc, 9, &one, NULL, 0, NULL);
        for (int c = 0; c < 3; c++) {
            const Candidate *x = &c1[c], *y = &c2[pi * 3 + c];
            same_ids &= x->n == y->n && !memcmp(x->ids, y->ids, sizeof(int) * x->n);
            for (int t = 0; same_ids && t < x->n; t++) {
                worst = fmax(worst, fabs(x->logp_raw[t] - y->logp_raw[t]));
                worst = fmax(worst, fabs(x->logp_sample[t] - y->logp_sample[t]));
                worst = fmax(worst, fabs(x->entropy_raw[t] - y->entropy_raw[t]));
            }
        }
        cands_free(c1, 3);
    }
    CU_ASSERT(same_ids);
    CU_ASSERT(worst < 1e-5);
    cands_free(c2, 6);
    prompts_free(&both);
    model_free(&m);
}

static int fails_with(Model *m, const Prompts *p, const char *needle) {
    SamplingConfig sc = {.k = 2, .temperature = 1.0f, .top_p = 1.0f, .max_new_tokens = 4};
    Candidate out[6];
    memset(out, 0, sizeof out);
    GenerateRequest req = {.sc = &sc, .seed = 1};
    gemc_set_error("%s", "");
    const int rc =
        sampler_generate(m, &req, p->n, (const int *const *)p->tok, p->len, p->keys, out);
    int untouched = 1;
    for (int i = 0; i < 6; i++) untouched &= out[i].ids == NULL && out[i].n == 0;
    const int ok = rc == -1 && untouched && strstr(gemc_error(), needle) != NULL &&
                   strchr(gemc_error(), '\n') == NULL;
    if (!ok) printf("\n  rc %d, error: %s\n", rc, gemc_error());
    return ok;
}

static void test_bad_input(void) {
    ModelConfig cfg;
    config_gqa(&cfg);
    Model m;
    test_random_model(&m, &cfg, 71);
    const int lens[] = {4, 5, 6};
    Prompts p = random_prompts(3, lens, cfg.vocab_size, 72);
    p.len[1] = 0;
    CU_ASSERT(fails_with(&m, &p, "prompt 1 is empty"));
    p.len[1] = 5;
    p.tok[2][3] = cfg.vocab_size;
    CU_ASSERT(fails_with(&m, &p, "prompt 2: token id 37 at position 3 is outside the vocabulary"));
    p.tok[2][3] = -1;
    CU_ASSERT(fails_with(&m, &p, "prompt 2: token id -1"));
    p.tok[2][3] = 0;
    prompts_free(&p);
    const int full[] = {3, 48};
    Prompts q = random_prompts(2, full, cfg.vocab_size, 73);
    CU_ASSERT(fails_with(&m, &q, "prompt 1 has 48 tokens, which fills the model's context of 48"));
    prompts_free(&q);
    model_free(&m);
}

// A padded embedding: ids at and above n_draw are never drawn, even with the largest logits, in
// every mode; the raw log-prob and entropy are still those of the whole distribution.
static void test_draw_limit(void) {
    enum { V = 12, N_DRAW = 8 };
    float z[V], *scratch = malloc(sizeof(float) * 2 * V); // its second half holds ints
    for (int i = 0; i < V; i++) z[i] = 0.3f * (float)((i * 5) % 7);
    z[9] = z[11] = 6.0f; // the two most likely ids are padding
    const float modes[][3] = {
        {1.0f, 1.0f, 0}, {0.7f, 1.0f, 0}, {1.0f, 1.0f, 3}, {1.0f, 0.6f, 0}, {0.0f, 1.0f, 0}};
    for (int md = 0; md < 5; md++) {
        SamplingConfig sc = {.k = 1,
                             .temperature = modes[md][0],
                             .top_p = modes[md][1],
                             .top_k = (int)modes[md][2],
                             .max_new_tokens = 1};
        Rng rng;
        rng_seed(&rng, 40 + md);
        int drawn[V] = {0};
        for (int t = 0; t < 2000; t++) {
            TokenDraw lim, full;
            const float u = rng_uniform(&rng);
            sample_token_limited(z, V, N_DRAW, &sc, u, scratch, &lim);
            sample_token(z, V, &sc, u, scratch, &full);
            drawn[lim.token]++;
            CU_ASSERT_EQUAL(lim.entropy_raw, full.entropy_raw);
            CU_ASSERT(lim.logp_sample <= 0 && lim.entropy_sample >= 0);
            // logp_old is softmax(z / T) over every id, the padding included: the learner's
            double S = 0, T = sc.temperature > 0 ? sc.temperature : 1;
            for (int i = 0; i < V; i++) S += exp((z[i] - 6.0) / T);
            const double want = (z[lim.token] - 6.0) / T - log(S);
            CU_ASSERT(fabs(lim.logp_old - want) <= 1e-5 * fmax(1, fabs(want)));
        }
        int above = 0, below = 0;
        for (int i = 0; i < V; i++) {
            if (i < N_DRAW)
                below += drawn[i];
            else
                above += drawn[i];
        }
        CU_ASSERT_EQUAL(above, 0);
        CU_ASSERT_EQUAL(below, 2000);
    }
    // greedy picks the best drawable id: z[4] = 0.3 * (20 % 7) = 1.8 is the largest below 8
    SamplingConfig g = {.k = 1, .temperature = 0, .top_p = 1, .top_k = 0, .max_new_tokens = 1};
    TokenDraw d;
    sample_token_limited(z, V, N_DRAW, &g, 0.5f, scratch, &d);
    CU_ASSERT_EQUAL(d.token, 4);
    free(scratch);
}

void register_sampler_tests(void) {
    static const TestCase tests[] = {
        {"sample_token against a double reference", test_sample_token_reference},
        {"sample_token ties, tiny temperature, -inf", test_sample_token_edges},
        {"chi-square goodness of fit", test_chi_square},
        {"generated log-probs and entropies match model_forward", test_matches_forward},
        {"greedy three ways, and it is the argmax", test_greedy},
        {"determinism: seeds, streams, thread counts", test_determinism},
        {"stopping at EOS, max_new_tokens, the context", test_stopping},
        {"shared prefill: prompts together or alone", test_shared_prefill},
        {"bad input", test_bad_input},
        {"ids past the tokenizer are never drawn", test_draw_limit},
        {NULL, NULL},
    };
    add_suite("sampler", tests);
}
