// The KV-cache decode path of the CPU backend (see decode.h), on the f32 layer kernels of
// cpu_kernels.h. The prefill and the decode steps go through the same kernels as model_forward,
// matmul_forward included, whose rows do not depend on the other rows of the call (cpu/gemm.h):
// a prompt's keys, values and logits do not depend on the prompts packed or decoded with it.
#include "model/cpu/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/cpu_kernels.h"
#include "model/cpu/gemm.h"

// Prompt tokens per prefill chunk: bounds the activation buffers (a longer prompt is a chunk
// of its own).
#define PREFILL_TOKENS 2048

// Layer l's tensor of kind k in the model's parameter slab (NULL when the config has none).
#define PARAM(m, k, l)                                                                             \
    ((m)->layout.p[k].size                                                                         \
         ? (m)->params + (m)->layout.p[k].offset + (size_t)(l) * (m)->layout.p[k].per_layer        \
         : NULL)

static const float *head_weights(const Model *m) { // [V, C]
    return m->cfg.tie_word_embeddings ? PARAM(m, P_WTE, 0) : PARAM(m, P_LM_HEAD, 0);
}

// ---- the weights, packed once per generation ----------------------------------------------
// Every matrix of the model is packed for gemm_f32_packed when the state is made (the weights
// do not change while it lives): a decode step then streams each weight once, in place, which is
// what sets its speed, and the prefill packs nothing either. The packed copy lives in an arena
// the process keeps from one generation to the next: first touching a fresh copy's pages costs
// more than packing into warm ones (0.9 s against 0.05 s for the Qwen-0.5B head on a 2-core
// VM). A second state alive at the same time packs into memory of its own.

enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_PER_LAYER };

static float *g_arena;     // the kept packed copy
static size_t g_arena_cap; // its floats
static int g_arena_busy;   // a live DecodeState packs into it

static float *packed_memory(size_t floats, int *from_arena) {
    const size_t bytes = (floats ? floats : 16) * sizeof(float);
    *from_arena = !__atomic_exchange_n(&g_arena_busy, 1, __ATOMIC_ACQUIRE);
    if (*from_arena && floats <= g_arena_cap) return g_arena;
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) gemc_fatal("out of memory: %zu bytes for the decode path's packed weights", bytes);
    if (*from_arena) free(g_arena), g_arena = p, g_arena_cap = floats;
    return p;
}

static void pack_weights(DecodeState *d, const Model *m) {
    const int C = d->C, I = d->I, Q = d->Hq * d->D, KV = d->Hkv * d->D;
    const struct {
        int kind, rows, cols;
    } mats[W_PER_LAYER] = {
        [W_Q] = {P_WQ, Q, C},       [W_K] = {P_WK, KV, C},      [W_V] = {P_WV, KV, C},
        [W_O] = {P_WO, C, Q},       [W_GATE] = {P_WGATE, I, C}, [W_UP] = {P_WUP, I, C},
        [W_DOWN] = {P_WDOWN, C, I},
    };
    size_t total = gemm_packed_floats(d->V, C);
    for (int t = 0; t < W_PER_LAYER; t++)
        total += (size_t)d->L * gemm_packed_floats(mats[t].rows, mats[t].cols);
    float *p = packed_memory(total, &d->w_arena);
    d->w_mem = p;
    d->w = mallocCheck(((size_t)d->L * W_PER_LAYER + 1) * sizeof(GemmPackedWeight));
    for (int l = 0; l < d->L; l++)
        for (int t = 0; t < W_PER_LAYER; t++) {
            gemm_pack_weight(&d->w[l * W_PER_LAYER + t], p, PARAM(m, mats[t].kind, l), mats[t].rows,
                             mats[t].cols, mats[t].cols);
            p += gemm_packed_floats(mats[t].rows, mats[t].cols);
        }
    gemm_pack_weight(&d->w[d->L * W_PER_LAYER], p, head_weights(m), d->V, C, C);
}

static const GemmPackedWeight *weight(const DecodeState *d, int l, int t) {
    return &d->w[l * W_PER_LAYER + t];
}

// out [n, OC] = inp [n, IC] w^T (+ bias): matmul_forward's bits, on a packed weight.
static void matmul_packed(float *out, const float *inp, const GemmPackedWeight *w,
                          const float *bias, int n) {
    gemm_f32_packed(n, inp, w->K, w, 0, out, w->N);
    if (bias) add_bias_f32(out, bias, n, w->N);
}

// Eight floats as one vector (GCC/Clang vector extension): element-wise arithmetic, so each
// lane computes what the scalar code would, in the same order. -O2 does not vectorize loops of
// unknown trip count, and the attention's loops over head_dim are the decode step's hot spot.
typedef float v8 __attribute__((vector_size(32)));
#define V8LOAD(v, p)  memcpy(&(v), (p), sizeof(v8))
#define V8STORE(p, v) memcpy((p), &(v), sizeof(v8))

// Dot product with 8 partial sums added in a fixed order (as kernels.inc's dot_n).
static inline float dot8(const float *a, const float *b, int n) {
    v8 acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        v8 x, y;
        V8LOAD(x, a + i);
        V8LOAD(y, b + i);
        acc += x * y;
    }
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// ---- allocation --------------------------------------------------------------------------

// Largest number of tokens in one prefill chunk (chunks as prefill_chunk_end cuts them).
static int prefill_chunk_end(const int *off, int B, int b0) {
    int b1 = b0 + 1;
    while (b1 < B && off[b1 + 1] - off[b0] <= PREFILL_TOKENS) b1++;
    return b1;
}

static int largest_chunk(const int *off, int B) {
    int mx = 0;
    for (int b0 = 0, b1; b0 < B; b0 = b1) {
        b1 = prefill_chunk_end(off, B, b0);
        if (off[b1] - off[b0] > mx) mx = off[b1] - off[b0];
    }
    return mx;
}

static void decode_alloc(DecodeState *d, const Model *m, const PackedBatch *prompts, int rows,
                         const int *slot_prompt, int gen_cap) {
    const ModelConfig *cfg = &m->cfg;
    memset(d, 0, sizeof *d);
    d->L = cfg->num_layers, d->C = cfg->hidden_size, d->I = cfg->intermediate_size;
    d->Hq = cfg->num_heads, d->Hkv = cfg->num_kv_heads, d->D = cfg->head_dim;
    d->V = cfg->vocab_size, d->window = cfg->sliding_window;
    d->B = prompts->B, d->Np = prompts->N, d->rows = rows, d->gen_cap = gen_cap > 0 ? gen_cap : 1;
    const int chunk = largest_chunk(prompts->offsets, prompts->B);
    d->act_rows = chunk > rows ? chunk : rows;
    int maxlen = 0;
    for (int b = 0; b < d->B; b++) {
        const int len = prompts->offsets[b + 1] - prompts->offsets[b];
        if (len > maxlen) maxlen = len;
    }
    d->span = maxlen + d->gen_cap;
    if (d->window > 0 && d->window < d->span) d->span = d->window;

    const size_t L = (size_t)d->L, C = (size_t)d->C, I = (size_t)d->I, n = (size_t)d->act_rows;
    const size_t Q = (size_t)d->Hq * d->D, KV = (size_t)d->Hkv * d->D, half = (size_t)d->D / 2;
    const size_t slot_kv = L * rows * d->gen_cap * KV;
    struct {
        float **ptr;
        size_t count;
    } bufs[] = {
        {&d->pk, L * d->Np * KV},
        {&d->pv, L * d->Np * KV},
        {&d->gk, slot_kv},
        {&d->gv, slot_kv},
        {&d->x, n * C},
        {&d->ln, n * C},
        {&d->rstd, n},
        {&d->q, n * Q},
        {&d->kn, (size_t)rows * KV},
        {&d->vn, (size_t)rows * KV},
        {&d->att, n * Q},
        {&d->lse, n * d->Hq},
        {&d->branch, n * C},
        {&d->gate, n * I},
        {&d->up, n * I},
        {&d->cosv, n * half},
        {&d->sinv, n * half},
        {&d->scores, (size_t)rows * d->Hq * d->span},
    };
    const int nb = (int)(sizeof bufs / sizeof bufs[0]);
    size_t total = 0;
    for (int b = 0; b < nb; b++) total += bufs[b].count;
    d->slab = mallocCheck((total ? total : 1) * sizeof(float));
    float *p = d->slab;
    for (int b = 0; b < nb; b++) {
        *bufs[b].ptr = p;
        p += bufs[b].count;
    }
    d->prompt_off = mallocCheck((size_t)(d->B + 1) * sizeof(int));
    d->chunk_off = mallocCheck((size_t)(d->B + 1) * sizeof(int));
    memcpy(d->prompt_off, prompts->offsets, (size_t)(d->B + 1) * sizeof(int));
    d->slot_prompt = mallocCheck((size_t)(rows ? rows : 1) * sizeof(int));
    memcpy(d->slot_prompt, slot_prompt, (size_t)rows * sizeof(int));
    d->slot_len = callocCheck((size_t)(rows ? rows : 1), sizeof(int));
    d->pos = mallocCheck(n * sizeof(int));
    pack_weights(d, m);
}

void decode_free(DecodeState *d) {
    free(d->slab);
    free(d->prompt_off);
    free(d->chunk_off);
    free(d->slot_prompt);
    free(d->slot_len);
    free(d->pos);
    free(d->w);
    if (d->w_arena)
        __atomic_store_n(&g_arena_busy, 0, __ATOMIC_RELEASE);
    else
        free(d->w_mem);
    memset(d, 0, sizeof *d);
}

// ---- the MLP block and the head, shared by the prefill and the decode step -----------------

// x [n, C] += down(silu(gate(ln2(x))) * up(ln2(x))).
static void mlp_block(DecodeState *d, const Model *m, int l, int n) {
    const int C = d->C, I = d->I;
    rmsnorm_forward_f32(d->ln, d->rstd, d->x, PARAM(m, P_LN2, l), n, C, m->cfg.rms_norm_eps);
    matmul_packed(d->gate, d->ln, weight(d, l, W_GATE), NULL, n);
    matmul_packed(d->up, d->ln, weight(d, l, W_UP), NULL, n);
    swiglu_forward_f32(d->gate, d->gate, d->up, (size_t)n * I);
    matmul_packed(d->branch, d->gate, weight(d, l, W_DOWN), NULL, n);
    residual_forward_f32(d->x, d->x, d->branch, (size_t)n * C);
}

// logits [n, V] from the residual rows x [n, C] (final norm, then the head).
static void head_rows(DecodeState *d, const Model *m, const float *x, int n, float *logits) {
    rmsnorm_forward_f32(d->ln, d->rstd, x, PARAM(m, P_LNF, 0), n, d->C, m->cfg.rms_norm_eps);
    matmul_packed(logits, d->ln, &d->w[d->L * W_PER_LAYER], NULL, n);
}

// ---- prefill -----------------------------------------------------------------------------

// The prompts b0 .. b1 (rows t0 .. t0+n of the prompt cache), their keys and values written
// straight into pk, pv; logits [b1-b0, V] of their last positions.
static void prefill_chunk(DecodeState *d, const Model *m, const int *tokens, int b0, int b1,
                          float *logits) {
    const int C = d->C, Hq = d->Hq, Hkv = d->Hkv, D = d->D;
    const int KV = Hkv * D, t0 = d->prompt_off[b0], n = d->prompt_off[b1] - t0;
    const int nb = b1 - b0;
    for (int b = b0; b <= b1; b++) d->chunk_off[b - b0] = d->prompt_off[b] - t0;
    for (int b = 0; b < nb; b++)
        for (int i = d->chunk_off[b]; i < d->chunk_off[b + 1]; i++) d->pos[i] = i - d->chunk_off[b];
    rope_table_f32(d->cosv, d->sinv, d->pos, m->rope_inv_freq, n, D / 2);

    embedding_forward_f32(d->x, tokens + t0, PARAM(m, P_WTE, 0), n, C);
    for (int l = 0; l < d->L; l++) {
        float *k = d->pk + ((size_t)l * d->Np + t0) * KV; // [n, KV]
        float *v = d->pv + ((size_t)l * d->Np + t0) * KV;
        rmsnorm_forward_f32(d->ln, d->rstd, d->x, PARAM(m, P_LN1, l), n, C, m->cfg.rms_norm_eps);
        matmul_packed(d->q, d->ln, weight(d, l, W_Q), PARAM(m, P_BQ, l), n);
        matmul_packed(k, d->ln, weight(d, l, W_K), PARAM(m, P_BK, l), n);
        matmul_packed(v, d->ln, weight(d, l, W_V), PARAM(m, P_BV, l), n);
        rope_forward_f32(d->q, d->q, d->cosv, d->sinv, n, Hq, D);
        rope_forward_f32(k, k, d->cosv, d->sinv, n, Hkv, D);
        attention_forward_f32(d->att, d->lse, d->q, k, v, d->chunk_off, NULL, nb, Hq, Hkv, D,
                              d->window);
        matmul_packed(d->branch, d->att, weight(d, l, W_O), PARAM(m, P_BO, l), n);
        residual_forward_f32(d->x, d->x, d->branch, (size_t)n * C);
        mlp_block(d, m, l, n);
    }
    // only each prompt's last position needs logits: gather those rows of the residual stream
    for (int b = 0; b < nb; b++)
        memcpy(d->branch + (size_t)b * C, d->x + (size_t)(d->chunk_off[b + 1] - 1) * C,
               (size_t)C * sizeof(float));
    head_rows(d, m, d->branch, nb, logits);
}

void decode_prefill(DecodeState *d, const Model *m, const PackedBatch *prompts, int rows,
                    const int *slot_prompt, int gen_cap, float *logits) {
    decode_alloc(d, m, prompts, rows, slot_prompt, gen_cap);
    for (int b0 = 0, b1; b0 < d->B; b0 = b1) {
        b1 = prefill_chunk_end(d->prompt_off, d->B, b0);
        prefill_chunk(d, m, prompts->tokens, b0, b1, logits + (size_t)b0 * d->V);
    }
}

// ---- decode step -------------------------------------------------------------------------

// Key/value row j of slot s at layer l, kv head g (j < gen_cap).
static inline size_t slot_row(const DecodeState *d, int l, int s, int j) {
    return (((size_t)l * d->rows + s) * d->gen_cap + j) * (size_t)(d->Hkv * d->D);
}

// Copies the step's new keys and values into each slot's cache at its next free row.
static void store_new_kv(DecodeState *d, int l, int n, const int *slots) {
    const size_t KV = (size_t)d->Hkv * d->D;
    for (int r = 0; r < n; r++) {
        const size_t at = slot_row(d, l, slots[r], d->slot_len[slots[r]]);
        memcpy(d->gk + at, d->kn + r * KV, KV * sizeof(float));
        memcpy(d->gv + at, d->vn + r * KV, KV * sizeof(float));
    }
}

// Softmax of s[0 .. n) in place (n >= 1), sums in a fixed order.
static void softmax_inplace(float *s, int n) {
    float mx = s[0];
    for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    float sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) s[j] *= inv;
}

// w[j] = (q . k_j) * scale for the n keys k_j = k + j * ld.
static void score_keys(float *w, const float *q, const float *k, size_t ld, int n, int D,
                       float scale) {
    for (int j = 0; j < n; j++) w[j] = dot8(q, k + (size_t)j * ld, D) * scale;
}

// out += sum over j in order of w[j] v_j, for the n values v_j = v + j * ld; eight
// dimensions at a time, their sums kept in a register over the whole walk.
static void add_values(float *out, const float *w, const float *v, size_t ld, int n, int D) {
    int e0 = 0;
    for (; e0 + 8 <= D; e0 += 8) {
        v8 acc;
        V8LOAD(acc, out + e0);
        for (int j = 0; j < n; j++) {
            v8 x;
            V8LOAD(x, v + (size_t)j * ld + e0);
            acc += w[j] * x;
        }
        V8STORE(out + e0, acc);
    }
    for (; e0 < D; e0++) {
        float acc = out[e0];
        for (int j = 0; j < n; j++) acc += w[j] * v[(size_t)j * ld + e0];
        out[e0] = acc;
    }
}

// att [n, Hq*D]: the new token of slot slots[r] (already in its cache) attends, head by head,
// over its prompt's keys then its slot's own, those within the sliding window when there is
// one. One task per (row, head) writes its own output, summed in key order: the bits do not
// depend on the thread count.
static void decode_attention(DecodeState *d, int l, int n, const int *slots) {
    const int Hq = d->Hq, D = d->D, Q = Hq * D, KV = d->Hkv * D, rep = Hq / d->Hkv;
    const float scale = (float)(1.0 / sqrt((double)D));
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n * Hq; t++) {
        const int r = t / Hq, h = t % Hq, g = h / rep, s = slots[r], p = d->slot_prompt[s];
        const int plen = d->prompt_off[p + 1] - d->prompt_off[p], glen = d->slot_len[s] + 1;
        const int pos = plen + glen - 1;
        const int first = d->window > 0 && pos - d->window + 1 > 0 ? pos - d->window + 1 : 0;
        const int np = first < plen ? plen - first : 0; // prompt keys seen: first .. plen-1
        const int g0 = first > plen ? first - plen : 0; // own keys seen: g0 .. glen-1
        const size_t pk = ((size_t)l * d->Np + d->prompt_off[p] + (first < plen ? first : 0)) * KV +
                          (size_t)g * D;
        const size_t gk = slot_row(d, l, s, g0) + (size_t)g * D;
        const float *qh = d->q + (size_t)r * Q + (size_t)h * D;
        float *out = d->att + (size_t)r * Q + (size_t)h * D;
        float *w = d->scores + (size_t)t * d->span; // [np + glen - g0]
        score_keys(w, qh, d->pk + pk, KV, np, D, scale);
        score_keys(w + np, qh, d->gk + gk, KV, glen - g0, D, scale);
        softmax_inplace(w, np + glen - g0);
        for (int e = 0; e < D; e++) out[e] = 0;
        add_values(out, w, d->pv + pk, KV, np, D);
        add_values(out, w + np, d->gv + gk, KV, glen - g0, D);
    }
}

void decode_step(DecodeState *d, const Model *m, int n, const int *slots, const int *tokens,
                 float *logits) {
    if (n <= 0) return;
    const int C = d->C, Hq = d->Hq, Hkv = d->Hkv, D = d->D;
    for (int r = 0; r < n; r++) {
        const int s = slots[r], p = d->slot_prompt[s];
        if (d->slot_len[s] >= d->gen_cap)
            gemc_fatal("decode_step: slot %d is full (%d tokens)", s, d->gen_cap);
        d->pos[r] = d->prompt_off[p + 1] - d->prompt_off[p] + d->slot_len[s];
    }
    rope_table_f32(d->cosv, d->sinv, d->pos, m->rope_inv_freq, n, D / 2);

    embedding_forward_f32(d->x, tokens, PARAM(m, P_WTE, 0), n, C);
    for (int l = 0; l < d->L; l++) {
        rmsnorm_forward_f32(d->ln, d->rstd, d->x, PARAM(m, P_LN1, l), n, C, m->cfg.rms_norm_eps);
        matmul_packed(d->q, d->ln, weight(d, l, W_Q), PARAM(m, P_BQ, l), n);
        matmul_packed(d->kn, d->ln, weight(d, l, W_K), PARAM(m, P_BK, l), n);
        matmul_packed(d->vn, d->ln, weight(d, l, W_V), PARAM(m, P_BV, l), n);
        rope_forward_f32(d->q, d->q, d->cosv, d->sinv, n, Hq, D);
        rope_forward_f32(d->kn, d->kn, d->cosv, d->sinv, n, Hkv, D);
        store_new_kv(d, l, n, slots);
        decode_attention(d, l, n, slots);
        matmul_packed(d->branch, d->att, weight(d, l, W_O), PARAM(m, P_BO, l), n);
        residual_forward_f32(d->x, d->x, d->branch, (size_t)n * C);
        mlp_block(d, m, l, n);
    }
    head_rows(d, m, d->x, n, logits);
    for (int r = 0; r < n; r++) d->slot_len[slots[r]]++;
}
