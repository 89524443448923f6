// The sampler (sampler.h): the fused softmax-entropy-sample step, and batched generation on
// the CPU backend's KV-cache decode path (cpu/decode.h).
#include "model/sampler.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/decode.h"
#include "model/gpu.h"
#include "base/rng.h"

void candidate_free(Candidate *c) {
    free(c->ids);
    free(c->logp_sample);
    free(c->logp_raw);
    free(c->logp_old);
    free(c->entropy_raw);
    free(c->certainty);
    free(c->entropy_sample);
    memset(c, 0, sizeof *c);
}

const char *finish_reason_name(FinishReason f) {
    return f == FINISH_EOS ? "eos" : "length";
}

// ---- fp32 sums in a fixed order --------------------------------------------------------------
//
// Every sum over the vocabulary works in two levels: terms within blocks of SUM_BLOCK, then
// the blocks in order. The rounding error then grows like SUM_BLOCK + V / SUM_BLOCK terms
// rather than V (a 128k vocabulary summed one term after another drifts by ~1e-5).
#define SUM_LANES 8
#define SUM_BLOCK 512

// A running sum along a walk (the inverse CDF, top-p's cumulative mass).
typedef struct {
    float outer, inner;
    int count;
} RunSum;

static inline float run_add(RunSum *r, float x) {
    r->inner += x;
    const float total = r->outer + r->inner;
    if (++r->count == SUM_BLOCK) r->outer = total, r->inner = 0, r->count = 0;
    return total;
}

// ---- the kept set of top-k / top-p ---------------------------------------------------------
//
// Tokens are ranked by logit, descending, ties by lower id: a total order, so the kept set
// and its order are unique whatever algorithm finds them. Neither top-k nor top-p sorts the
// whole vocabulary: quickselect brings the best n to the front, and only those are sorted.

static inline int ranks_before(const float *z, int a, int b) {
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

static inline void swap_int(int *a, int *b) {
    int t = *a;
    *a = *b;
    *b = t;
}

// Partitions idx[lo .. hi] around a median-of-three pivot; returns the pivot's final place:
// every element before it ranks before it, every element after it ranks after it.
static int partition(int *idx, int lo, int hi, const float *z) {
    const int mid = lo + (hi - lo) / 2;
    if (ranks_before(z, idx[mid], idx[lo])) swap_int(&idx[mid], &idx[lo]);
    if (ranks_before(z, idx[hi], idx[lo])) swap_int(&idx[hi], &idx[lo]);
    if (ranks_before(z, idx[hi], idx[mid])) swap_int(&idx[hi], &idx[mid]);
    swap_int(&idx[mid], &idx[hi]); // the median is the pivot, parked at hi
    const int pv = idx[hi];
    int store = lo;
    for (int i = lo; i < hi; i++)
        if (ranks_before(z, idx[i], pv)) swap_int(&idx[i], &idx[store++]);
    swap_int(&idx[store], &idx[hi]);
    return store;
}

// Reorders idx[0 .. n) so that its first k (1 <= k <= n) are the k best, in any order.
static void select_best(int *idx, int n, int k, const float *z) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int p = partition(idx, lo, hi, z);
        if (p == k - 1) return;
        if (p < k - 1)
            lo = p + 1;
        else
            hi = p - 1;
    }
}

// Sorts idx[lo .. hi] best first (quicksort, insertion sort below 16 elements).
static void sort_best(int *idx, int lo, int hi, const float *z) {
    while (hi - lo >= 16) {
        const int p = partition(idx, lo, hi, z);
        if (p - lo < hi - p) { // recurse into the smaller side: stack depth O(log n)
            sort_best(idx, lo, p - 1, z);
            lo = p + 1;
        } else {
            sort_best(idx, p + 1, hi, z);
            hi = p - 1;
        }
    }
    for (int i = lo + 1; i <= hi; i++) {
        const int v = idx[i];
        int j = i - 1;
        for (; j >= lo && ranks_before(z, v, idx[j]); j--) idx[j + 1] = idx[j];
        idx[j + 1] = v;
    }
}

// Makes idx[0 .. want) the best `want` of idx[0 .. n), sorted, given that idx[0 .. have) is
// already the best `have`, sorted.
static void extend_sorted(int *idx, int n, int have, int want, const float *z) {
    if (want <= have) return;
    select_best(idx + have, n - have, want - have, z);
    sort_best(idx, have, want - 1, z);
}

// How many of the ranked tokens top-p keeps: the smallest prefix whose weight reaches
// top_p * total. z [V] ranks, e [V] weighs; idx[0 .. *sorted) is sorted and grown as needed
// (the kept set is usually small, so blocks of a few dozen are ranked at a time).
static int top_p_count(int *idx, int n, int *sorted, const float *z, const float *e, float total,
                       float top_p) {
    const float target = top_p * total;
    RunSum cum = {0, 0, 0};
    int kept = 0;
    while (kept < n) {
        if (kept == *sorted) {
            const int grow = *sorted < 32 ? 32 : *sorted; // doubles: O(n log n) at worst
            const int want = n - *sorted < grow ? n : *sorted + grow;
            extend_sorted(idx, n, *sorted, want, z);
            *sorted = want;
        }
        if (run_add(&cum, e[idx[kept++]]) >= target) break;
    }
    return kept;
}

// ---- the fused step --------------------------------------------------------------------------

// Sums of a softmax: S = sum e^d, T = sum e^d d (d = (z - m) / temperature), in eight lanes
// within each block of SUM_BLOCK terms.

typedef struct {
    float S, T, D; // D = sum d: the raw sweep's only (self-certainty)
} SoftSums;

typedef struct {
    float S[SUM_LANES], T[SUM_LANES], D[SUM_LANES];
} Lanes;

static inline void lane_add(Lanes *ln, int i, float e, float d) {
    ln->S[i % SUM_LANES] += e;
    // e == 0 for d == -inf (a masked logit) would make 0 * -inf = NaN; its term is 0
    ln->T[i % SUM_LANES] += e > 0 ? e * d : 0.0f;
    ln->D[i % SUM_LANES] += d;
}

static inline void lane_flush(Lanes *ln, SoftSums *s) {
    float bs = 0, bt = 0, bd = 0;
    for (int u = 0; u < SUM_LANES; u++) bs += ln->S[u], bt += ln->T[u], bd += ln->D[u];
    s->S += bs, s->T += bt, s->D += bd;
    memset(ln, 0, sizeof *ln);
}

static inline float entropy_of(SoftSums s) {
    const float h = logf(s.S) - s.T / s.S;
    return h > 0 ? h : 0.0f; // rounding can leave -1e-8 for a one-token distribution
}

// Largest logit, lowest id on ties.
static float row_max(const float *z, int V, int *argmax) {
    float m = z[0];
    int a = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > m) m = z[i], a = i;
    *argmax = a;
    return m;
}

// The sweep: raw sums of z, and (when e != NULL) the sampling weights e[i] = e^((z-m)/temp)
// with their sums over ids [0, n_draw) (the weights of the ids above are 0), and in *rest the
// sum of e^((z-m)/temp) over the ids above, which logp_old's softmax over every id counts.
static void sweep(const float *z, int V, int n_draw, float m, float temp, float *e, SoftSums *raw,
                  SoftSums *smp, float *rest) {
    Lanes lr = {{0}, {0}, {0}}, ls = {{0}, {0}, {0}};
    *raw = (SoftSums){0, 0, 0}, *smp = (SoftSums){0, 0, 0};
    *rest = 0;
    for (int b0 = 0; b0 < V; b0 += SUM_BLOCK) {
        const int b1 = b0 + SUM_BLOCK < V ? b0 + SUM_BLOCK : V;
        for (int i = b0; i < b1; i++) {
            const float d = z[i] - m, er = expf(d);
            lane_add(&lr, i, er, d);
            if (!e) continue;
            if (i >= n_draw) {
                e[i] = 0;
                *rest += temp == 1.0f ? er : expf(d / temp);
                continue;
            }
            // (z-m)/temp <= 0: no overflow however small the temperature (temp 1: the same bits)
            const float ds = temp == 1.0f ? d : d / temp, es = temp == 1.0f ? er : expf(ds);
            e[i] = es;
            lane_add(&ls, i, es, ds);
        }
        lane_flush(&lr, raw);
        if (e) lane_flush(&ls, smp);
    }
}

// Sums over the kept tokens idx[0 .. n), in their order.
static SoftSums kept_sums(const int *idx, int n, const float *z, const float *e, float m,
                          float temp) {
    Lanes ln = {{0}, {0}, {0}};
    SoftSums s = {0, 0, 0};
    for (int b0 = 0; b0 < n; b0 += SUM_BLOCK) {
        const int b1 = b0 + SUM_BLOCK < n ? b0 + SUM_BLOCK : n;
        for (int i = b0; i < b1; i++) {
            const float d = z[idx[i]] - m;
            lane_add(&ln, i, e[idx[i]], temp == 1.0f ? d : d / temp);
        }
        lane_flush(&ln, &s);
    }
    return s;
}

// Inverse CDF: the first token (in the order of idx, or of ids when idx is NULL) at which the
// running weight passes u * S. Rounding can leave the running sum just short of u * S: then
// the last token of non-zero weight.
static int draw(const int *idx, int n, const float *e, float S, float u) {
    const float target = u * S;
    RunSum cum = {0, 0, 0};
    int last = idx ? idx[0] : 0;
    for (int i = 0; i < n; i++) {
        const int t = idx ? idx[i] : i;
        if (e[t] <= 0) continue;
        last = t;
        if (run_add(&cum, e[t]) > target) return t;
    }
    return last;
}

void sample_token(const float *z, int V, const SamplingConfig *sc, float u, float *scratch,
                  TokenDraw *out) {
    sample_token_limited(z, V, V, sc, u, scratch, out);
}

void sample_token_limited(const float *z, int V, int n_draw, const SamplingConfig *sc, float u,
                          float *scratch, TokenDraw *out) {
    if (n_draw <= 0 || n_draw > V) n_draw = V;
    int amax;
    const float m = row_max(z, V, &amax);
    if (n_draw < V) row_max(z, n_draw, &amax); // greedy picks among the drawable ids
    const int greedy = !(sc->temperature > 0) || sc->top_k == 1;
    const float temp = sc->temperature;
    float *e = scratch; // [V] sampling weights e^((z-m)/temp), before truncation
    SoftSums raw, smp;
    float rest;
    sweep(z, V, n_draw, m, temp, greedy ? NULL : e, &raw, &smp, &rest);
    const float lnS = logf(raw.S);
    out->entropy_raw = entropy_of(raw);
    const float kl = lnS - raw.D / (float)V - logf((float)V);
    out->certainty = kl > 0 ? kl : 0.0f; // rounding can leave -1e-7 for a uniform p
    if (greedy) {
        out->token = amax;
        out->logp_raw = out->logp_old = (z[amax] - m) - lnS;
        out->logp_sample = 0, out->entropy_sample = 0;
        return;
    }

    const int top_k = sc->top_k > 0 && sc->top_k < n_draw ? sc->top_k : 0;
    const int top_p = sc->top_p < 1.0f;
    int tok;
    SoftSums q = smp;
    if (!top_k && !top_p) {
        tok = draw(NULL, n_draw, e, smp.S, u);
    } else {
        // the second half of scratch, as ints: the ranked token ids (scratch comes from malloc,
        // so its memory takes the type it is written with)
        int *idx = (int *)(scratch + V);
        for (int i = 0; i < n_draw; i++) idx[i] = i;
        int n = n_draw, sorted = 0;
        if (top_k) {
            extend_sorted(idx, n_draw, 0, top_k, z);
            n = sorted = top_k;
        }
        if (top_p) {
            const float total = top_k ? kept_sums(idx, n, z, e, m, temp).S : smp.S;
            n = top_p_count(idx, n, &sorted, z, e, total, sc->top_p);
        }
        q = kept_sums(idx, n, z, e, m, temp);
        tok = draw(idx, n, e, q.S, u);
    }
    const float d = z[tok] - m;
    out->token = tok;
    out->logp_raw = d - lnS;
    out->logp_sample = (temp == 1.0f ? d : d / temp) - logf(q.S);
    // the same temperature before top-k and top-p cut it, over every id: what the learner's
    // forward at T gives
    out->logp_old = temp == 1.0f ? out->logp_raw : d / temp - logf(smp.S + rest);
    out->entropy_sample = entropy_of(q);
}

// ---- generation ----------------------------------------------------------------------------

// Candidate rows decoded together: bounds the slots' KV caches and the [rows, V] logits. The
// k candidates of a prompt are always in one group (more rows when k > the cap). A GPU decodes
// more rows at once: a decode step reads every weight once whatever the rows.
#define ROW_CAP     64
#define ROW_CAP_GPU 512

// splitmix64's output function.
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// The seed of candidate c of the prompt with stream key `key`: each input mixed in turn, so
// nearby seeds, keys and candidates give unrelated streams.
static uint64_t stream_seed(uint64_t seed, uint64_t key, int c) {
    return mix64(mix64(mix64(seed) ^ key) ^ (uint64_t)c);
}

static int check_request(const Model *m, const GenerateRequest *req, int n_prompts,
                         const int *const *prompts, const int *prompt_lens) {
    const SamplingConfig *sc = req->sc;
    const int ctx = m->cfg.max_position_embeddings;
    if (sc->k < 1 || sc->max_new_tokens < 1 || !(sc->temperature >= 0) || !(sc->top_p > 0) ||
        sc->top_k < 0 || n_prompts < 0 || (req->n_eos > 0 && !req->eos_ids)) {
        gemc_set_error("sampler: bad request (k %d, max_new_tokens %d, temperature %g, top_p %g, "
                       "top_k %d, %d prompts, %d eos ids)",
                       sc->k, sc->max_new_tokens, sc->temperature, sc->top_p, sc->top_k, n_prompts,
                       req->n_eos);
        return -1;
    }
    for (int p = 0; p < n_prompts; p++) {
        if (prompt_lens[p] <= 0) {
            gemc_set_error("sampler: prompt %d is empty", p);
            return -1;
        }
        if (prompt_lens[p] >= ctx) {
            gemc_set_error(
                "sampler: prompt %d has %d tokens, which fills the model's context of %d "
                "positions and leaves no room for a token",
                p, prompt_lens[p], ctx);
            return -1;
        }
        if (model_check_tokens(m, prompts[p], prompt_lens[p]) != 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", gemc_error());
            gemc_set_error("sampler: prompt %d: %s", p, why);
            return -1;
        }
    }
    return 0;
}

// One candidate being decoded.
typedef struct {
    Candidate *c;
    Rng rng; // its own stream of uniforms
    int cap; // most tokens: max_new_tokens, fewer where the context ends first
} Row;

static void candidate_start(Candidate *c, int cap, int policy_version) {
    memset(c, 0, sizeof *c);
    c->ids = mallocCheck((size_t)cap * sizeof(int));
    c->logp_sample = mallocCheck((size_t)cap * sizeof(float));
    c->logp_raw = mallocCheck((size_t)cap * sizeof(float));
    c->logp_old = mallocCheck((size_t)cap * sizeof(float));
    c->entropy_raw = mallocCheck((size_t)cap * sizeof(float));
    c->entropy_sample = mallocCheck((size_t)cap * sizeof(float));
    c->certainty = mallocCheck((size_t)cap * sizeof(float));
    c->finish = FINISH_LENGTH;
    c->policy_version = policy_version;
}

// Appends a drawn token; returns 1 when it finishes the candidate (an EOS, or the cap).
static int candidate_push(Row *row, const TokenDraw *t, const GenerateRequest *req) {
    Candidate *c = row->c;
    const int i = c->n++;
    c->ids[i] = t->token;
    c->logp_sample[i] = t->logp_sample;
    c->logp_raw[i] = t->logp_raw;
    c->logp_old[i] = t->logp_old;
    c->entropy_raw[i] = t->entropy_raw;
    c->entropy_sample[i] = t->entropy_sample;
    c->certainty[i] = t->certainty;
    for (int e = 0; e < req->n_eos; e++)
        if (t->token == req->eos_ids[e]) {
            c->finish = FINISH_EOS;
            return 1;
        }
    return c->n >= row->cap;
}

// Row act[a] draws from the logits z[a], for a < n. Each thread has its own [2V] scratch; what
// a row draws does not depend on which thread draws it.
static void draw_rows(Row *rows, const int *act, int n, float *const *z, int V, int n_draw,
                      const SamplingConfig *sc, float *scratch, TokenDraw *draws) {
#pragma omp parallel for schedule(static)
    for (int a = 0; a < n; a++) {
        const float u = rng_uniform(&rows[act[a]].rng);
        float *mine = scratch + (size_t)omp_get_thread_num() * 2 * V;
        sample_token_limited(z[a], V, n_draw, sc, u, mine, &draws[a]);
    }
}

// Buffers of one group of np prompts and np * k rows (slot s = b * k + c: candidate c of the
// group's prompt b).
typedef struct {
    Row *rows;        // [rows]
    int *slot_prompt; // [rows]
    int *act;         // [rows] the slots still decoding
    int *feed;        // [rows] their last tokens, fed to the next step
    float **z;        // [rows] the logits row each active slot draws from
    TokenDraw *draws; // [rows]
    float *logits;    // [max(rows, np), V]
    float *scratch;   // [threads, 2V]
    int *off;         // [np+1] the packed prompts
    int *tokens;      // [off[np]]
} Group;

static void group_alloc(Group *g, int np, int nrow, int ntok, int V) {
    const size_t r = (size_t)nrow;
    g->rows = mallocCheck(r * sizeof(Row));
    g->slot_prompt = mallocCheck(r * sizeof(int));
    g->act = mallocCheck(r * sizeof(int));
    g->feed = mallocCheck(r * sizeof(int));
    g->z = mallocCheck(r * sizeof(float *));
    g->draws = mallocCheck(r * sizeof(TokenDraw));
    g->logits = mallocCheck((size_t)(nrow > np ? nrow : np) * V * sizeof(float));
    g->scratch = mallocCheck((size_t)omp_get_max_threads() * 2 * V * sizeof(float));
    g->off = mallocCheck((size_t)(np + 1) * sizeof(int));
    g->tokens = mallocCheck((size_t)ntok * sizeof(int));
}

static void group_free(Group *g) {
    free(g->rows), free(g->slot_prompt), free(g->act), free(g->feed), free(g->z);
    free(g->draws), free(g->logits), free(g->scratch), free(g->off), free(g->tokens);
}

// Appends each active slot's draw to its candidate; the slots still decoding move to the front
// of g->act with their tokens in g->feed. Returns how many there are.
static int push_draws(Group *g, int na, const GenerateRequest *req, long *done, long total) {
    int still = 0;
    for (int a = 0; a < na; a++) {
        const int s = g->act[a];
        if (candidate_push(&g->rows[s], &g->draws[a], req)) continue;
        g->act[still] = s, g->feed[still] = g->draws[a].token;
        still++;
    }
    if (still < na) {
        *done += na - still;
        if (req->progress) req->progress(req->progress_ctx, *done, total);
    }
    return still;
}

// The same loop on the model's GPU: the uniforms come from the same streams in the same order,
// the prefill, decode steps and draws run on the device.
static void generate_gpu(GpuModel *gm, const GenerateRequest *req, const PackedBatch *batch,
                         Group *g, int nrow, int gen_cap, long *done, long total) {
    float *u = mallocCheck((size_t)nrow * sizeof(float));
    GpuDecode *d = gpu_decode_begin(gm, batch, nrow, g->slot_prompt, gen_cap);
    int na = nrow;
    for (;;) {
        for (int a = 0; a < na; a++) u[a] = rng_uniform(&g->rows[g->act[a]].rng);
        gpu_decode_draw(d, na, g->act, u, req->draw_vocab, req->sc, !req->skip_entropy, g->draws);
        na = push_draws(g, na, req, done, total);
        if (na == 0) break;
        gpu_decode_step(d, na, g->act, g->feed);
    }
    gpu_decode_end(d);
    free(u);
}

// Generates the k candidates of prompts[0 .. np) into out[0 .. np * k); *done counts the
// finished candidates of the whole request (for the progress callback).
static void generate_group(Model *m, const GenerateRequest *req, int np, const int *const *prompts,
                           const int *lens, const uint64_t *keys, Candidate *out, long *done,
                           long total) {
    const SamplingConfig *sc = req->sc;
    const int k = sc->k, V = m->cfg.vocab_size, nrow = np * k;
    const int ctx = m->cfg.max_position_embeddings;
    int ntok = 0;
    for (int b = 0; b < np; b++) ntok += lens[b];
    Group g;
    group_alloc(&g, np, nrow, ntok, V);
    g.off[0] = 0;
    for (int b = 0; b < np; b++) {
        memcpy(g.tokens + g.off[b], prompts[b], (size_t)lens[b] * sizeof(int));
        g.off[b + 1] = g.off[b] + lens[b];
    }
    int gen_cap = 0; // tokens a slot feeds back: all but its last
    for (int s = 0; s < nrow; s++) {
        const int b = s / k, c = s % k;
        Row *row = &g.rows[s];
        row->c = out + s;
        row->cap = sc->max_new_tokens < ctx - lens[b] ? sc->max_new_tokens : ctx - lens[b];
        rng_seed(&row->rng, stream_seed(req->seed, keys[b], c));
        candidate_start(row->c, row->cap, req->policy_version);
        g.slot_prompt[s] = b;
        if (row->cap - 1 > gen_cap) gen_cap = row->cap - 1;
    }

    const PackedBatch batch = {np, ntok, g.tokens, g.off, NULL};
    int na = nrow;
    for (int s = 0; s < nrow; s++) g.act[s] = s;
    if (m->gpu) {
        generate_gpu(m->gpu, req, &batch, &g, nrow, gen_cap, done, total);
        group_free(&g);
        return;
    }
    DecodeState d;
    decode_prefill(&d, m, &batch, nrow, g.slot_prompt, gen_cap, g.logits);
    for (int s = 0; s < nrow; s++) g.z[s] = g.logits + (size_t)(s / k) * V;
    for (;;) {
        draw_rows(g.rows, g.act, na, g.z, V, req->draw_vocab, sc, g.scratch, g.draws);
        na = push_draws(&g, na, req, done, total);
        if (na == 0) break;
        decode_step(&d, m, na, g.act, g.feed, g.logits);
        for (int a = 0; a < na; a++) g.z[a] = g.logits + (size_t)a * V;
    }
    decode_free(&d);
    group_free(&g);
}

int sampler_generate(Model *m, const GenerateRequest *req, int n_prompts, const int *const *prompts,
                     const int *prompt_lens, const uint64_t *prompt_keys, Candidate *out) {
    if (check_request(m, req, n_prompts, prompts, prompt_lens) != 0) return -1;
    const int k = req->sc->k;
    const int cap = m->gpu ? ROW_CAP_GPU : ROW_CAP;
    const int per_group = cap / k > 0 ? cap / k : 1; // prompts decoded together
    const long total = (long)n_prompts * k;
    long done = 0;
    for (int p0 = 0; p0 < n_prompts; p0 += per_group) {
        const int np = n_prompts - p0 < per_group ? n_prompts - p0 : per_group;
        generate_group(m, req, np, prompts + p0, prompt_lens + p0, prompt_keys + p0,
                       out + (size_t)p0 * k, &done, total);
    }
    return 0;
}
