// KV-cache batched decoding and the fused draw on the device (gpu.h), the GPU twin of
// src/model/cpu/decode.c + sample_token_limited.
//
// The prefill is the training forward over the packed prompts (gpu_forward_body): its per-layer
// keys and values, acts.k and acts.v [L, Np, Hkv*D], are the prompt cache, stored once however
// many slots continue a prompt. Each slot's own generated keys and values go to gk, gv
// [L, rows, gen_cap, Hkv*D]; a decode query attends over its prompt's keys, then its own.
#include <cstring>
#include <vector>

#include "model/cuda/attention.cuh"
#include "model/cuda/gpu_model.cuh"
#include "model/cuda/head.cuh"
#include "model/cuda/layers.cuh"

extern "C" {
#include "base/common.h"
}

struct GpuDecode {
    GpuModel *g;
    int B, Np, rows, gen_cap;
    int first_draw;      // the next draw reads the prefill's logits
    int use_graphs;      // replay decode steps as CUDA graphs (GEMC_CUDA_GRAPHS != 0)
    int last_n, graph_n; // the last step's slot count; the captured graph's (0: none)
    cudaGraphExec_t graph;
    std::vector<int> prompt_len;   // [B]
    std::vector<int> slot_prompt;  // [rows]
    std::vector<int> slot_len;     // [rows] tokens in each slot's own cache
    std::vector<int> staging;      // host side of `ints`
    void *slab;                    // every device buffer below points into it
    int *prompt_off;               // [B+1]
    int *slot_prompt_d;            // [rows]
    int *ints;                     // [4, rows]: tokens, slots, pos, slot_len before the step
    int max_keys;                  // most keys one query sees: the longest prompt + gen_cap
    float *att_scratch;            // decode_attention's split-key partial results
    bf16 *gk, *gv;                 // [L, rows, gen_cap, Hkv*D]
    float *x;                      // [rows, C] residual stream
    bf16 *ln;                      // [rows, C]
    float *rstd;                   // [rows]
    bf16 *q, *att;                 // [rows, Hq*D]
    bf16 *kn, *vn;                 // [rows, Hkv*D]
    bf16 *gate, *up, *act;         // [rows, I]
    bf16 *last;                    // [B, C] the final norm of each prompt's last position
    float *prefill_logits;         // [B, V]
    float *logits;                 // [rows, V] logits row r is draw r's
    float *u;                      // [rows]
    SampleOut out;                 // [rows] each (head.cuh)
    void *draws;                   // [7, rows] 4-byte words: out's seven arrays, back to back
    std::vector<uint32_t> draws_h; // their host copy
};

// dst row r = src row idx[r] (rows of n elements).
template <class T> __global__ void gather_rows_kernel(T *dst, const T *src, const int *idx, int n) {
    const T *s = src + (size_t)idx[blockIdx.x] * n;
    T *d = dst + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
}

// idx[r] = the last row of prompt r (prompt_off[r+1] - 1), for r < B.
__global__ void last_rows_kernel(int *idx, const int *prompt_off, int B) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < B) idx[r] = prompt_off[r + 1] - 1;
}

// idx[r] = slot_prompt[slots[r]]: the prompt whose logits draw r reads first.
__global__ void prompt_of_slot_kernel(int *idx, const int *slots, const int *slot_prompt, int n) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < n) idx[r] = slot_prompt[slots[r]];
}

template <class T>
static void gather_rows(T *dst, const T *src, const int *idx, int rows, int n, cudaStream_t s) {
    if (rows <= 0) return;
    LAUNCH(rows, 256, 0, s, gather_rows_kernel<T>)(dst, src, idx, n);
    cudaCheckLaunch();
}

extern "C" GpuDecode *gpu_decode_begin(GpuModel *g, const PackedBatch *prompts, int rows,
                                       const int *slot_prompt, int gen_cap) {
    const ModelConfig *c = &g->cfg;
    const int B = prompts->B, Np = prompts->N, L = c->num_layers, C = c->hidden_size;
    const int I = c->intermediate_size, V = c->vocab_size;
    const size_t Q = (size_t)c->num_heads * c->head_dim, KV = (size_t)c->num_kv_heads * c->head_dim;
    // generators sample with whole models; a partition's logits are a slice of the vocabulary
    if (g->tp) gemc_fatal("gpu_decode_begin: a tensor-parallel partition cannot sample");
    cudaCheck(cudaSetDevice(g->device));
    cudaStream_t s = g->stream;
    GpuDecode *d = new GpuDecode;
    d->g = g, d->B = B, d->Np = Np, d->rows = rows, d->gen_cap = gen_cap > 0 ? gen_cap : 1;
    d->first_draw = 1;
    const char *graphs = getenv("GEMC_CUDA_GRAPHS");
    d->use_graphs = !(graphs && !strcmp(graphs, "0"));
    d->last_n = d->graph_n = 0;
    d->prompt_len.resize(B);
    for (int b = 0; b < B; b++) d->prompt_len[b] = prompts->offsets[b + 1] - prompts->offsets[b];
    d->slot_prompt.assign(slot_prompt, slot_prompt + rows);
    d->slot_len.assign(rows, 0);
    d->staging.assign((size_t)4 * rows, 0);
    int longest = 0;
    for (int b = 0; b < B; b++) longest = d->prompt_len[b] > longest ? d->prompt_len[b] : longest;
    d->max_keys = longest + d->gen_cap;
    if (c->sliding_window > 0 && c->sliding_window < d->max_keys) d->max_keys = c->sliding_window;
    d->draws_h.resize((size_t)7 * rows);

    const size_t r = (size_t)rows, cache = (size_t)L * r * d->gen_cap * KV;
    const size_t mr = r > (size_t)B ? r : (size_t)B;
    const DevBuf bufs[] = {
        {(void **)&d->prompt_off, (size_t)(B + 1) * 4},
        {(void **)&d->slot_prompt_d, r * 4},
        {(void **)&d->ints, 4 * mr * 4},
        {(void **)&d->att_scratch,
         decode_attention_scratch_floats(rows, c->num_heads, c->head_dim) * 4},
        {(void **)&d->gk, cache * 2},
        {(void **)&d->gv, cache * 2},
        {(void **)&d->x, r * C * 4},
        {(void **)&d->ln, r * C * 2},
        {(void **)&d->rstd, r * 4},
        {(void **)&d->q, r * Q * 2},
        {(void **)&d->att, r * Q * 2},
        {(void **)&d->kn, r * KV * 2},
        {(void **)&d->vn, r * KV * 2},
        {(void **)&d->gate, r * I * 2},
        {(void **)&d->up, r * I * 2},
        {(void **)&d->act, r * I * 2},
        {(void **)&d->last, (size_t)B * C * 2},
        {(void **)&d->prefill_logits, (size_t)B * V * 4},
        {(void **)&d->logits, r * V * 4},
        {(void **)&d->u, r * 4},
        {&d->draws, 7 * r * 4},
    };
    char what[96];
    snprintf(what, sizeof what, "decoding %d candidates of up to %d tokens", rows, d->gen_cap + 1);
    d->slab = dev_slab(bufs, (int)(sizeof bufs / sizeof bufs[0]), what,
                       "lower sampling.max_new_tokens or the batch size");
    // the draws' seven arrays in one block, so one copy a step brings them to the host
    float *w = (float *)d->draws;
    d->out = {(int *)w, w + r, w + 2 * r, w + 3 * r, w + 4 * r, w + 5 * r, w + 6 * r};
    cudaCheck(cudaMemsetAsync(d->draws, 0, 7 * r * sizeof(float), s)); // rows past n are copied too
    cudaCheck(cudaMemcpyAsync(d->prompt_off, prompts->offsets, (B + 1) * sizeof(int),
                              cudaMemcpyHostToDevice, s));
    cudaCheck(
        cudaMemcpyAsync(d->slot_prompt_d, slot_prompt, r * sizeof(int), cudaMemcpyHostToDevice, s));

    // prefill: the whole forward over the prompts, then the head on each prompt's last row
    gpu_forward_body(g, prompts);
    g->last_N = -1; // the activations are the prefill's now: no backward may follow
    int *idx = d->ints;
    LAUNCH(ceil_div(B, 128), 128, 0, s, last_rows_kernel)(idx, d->prompt_off, B);
    cudaCheckLaunch();
    gather_rows(d->last, g->acts.lnf, idx, B, C, s);
    gemm(g->gemm, 0, 1, B, V, C, d->last, C, param_at(g, g->params, head_kind(g), 0), C, 0.0f,
         nullptr, d->prefill_logits, V, GEMM_OUT_F32, nullptr, s);
    cudaCheck(cudaStreamSynchronize(s)); // the caller's arrays may go away
    return d;
}

extern "C" void gpu_decode_draw(GpuDecode *d, int n, const int *slots, const float *u, int n_draw,
                                const SamplingConfig *sc, int with_entropy, TokenDraw *out) {
    if (n <= 0) return;
    GpuModel *g = d->g;
    const int V = g->cfg.vocab_size;
    cudaStream_t s = g->stream;
    cudaCheck(cudaSetDevice(g->device));
    cudaCheck(cudaMemcpyAsync(d->u, u, n * sizeof(float), cudaMemcpyHostToDevice, s));
    if (d->first_draw) {
        // every slot's first draw reads its prompt's logits
        int *slots_d = d->ints, *idx = d->ints + d->rows;
        cudaCheck(cudaMemcpyAsync(slots_d, slots, n * sizeof(int), cudaMemcpyHostToDevice, s));
        LAUNCH(ceil_div(n, 128), 128, 0, s, prompt_of_slot_kernel)
        (idx, slots_d, d->slot_prompt_d, n);
        cudaCheckLaunch();
        gather_rows(d->logits, d->prefill_logits, idx, n, V, s);
    }
    const int nd = n_draw > 0 && n_draw < V ? n_draw : V;
    sample_rows(d->out, d->logits, d->u, n, V, nd, sc->temperature, sc->top_k, sc->top_p,
                with_entropy, s);
    const size_t R = (size_t)d->rows;
    cudaCheck(cudaMemcpyAsync(d->draws_h.data(), d->draws, 7 * R * sizeof(uint32_t),
                              cudaMemcpyDeviceToHost, s));
    cudaCheck(cudaStreamSynchronize(s));
    const uint32_t *h = d->draws_h.data();
    for (int r = 0; r < n; r++) {
        out[r].token = (int)h[r];
        std::memcpy(&out[r].logp_sample, h + R + r, 4);
        std::memcpy(&out[r].logp_raw, h + 2 * R + r, 4);
        std::memcpy(&out[r].entropy_sample, h + 3 * R + r, 4);
        std::memcpy(&out[r].entropy_raw, h + 4 * R + r, 4);
        std::memcpy(&out[r].certainty, h + 5 * R + r, 4);
        std::memcpy(&out[r].logp_old, h + 6 * R + r, 4);
    }
}

// The layers and the head of one decode step over the n slots whose tokens, slots, positions
// and cache lengths are in d->ints: kernels and GEMMs only, so a graph can capture it.
static void step_body(GpuDecode *d, int n) {
    GpuModel *g = d->g;
    const ModelConfig *c = &g->cfg;
    const int L = c->num_layers, C = c->hidden_size, I = c->intermediate_size;
    const int Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim, V = c->vocab_size;
    const int Q = Hq * D, KV = Hkv * D, R = d->rows;
    const float eps = c->rms_norm_eps;
    cudaStream_t s = g->stream;
    const int *tok = d->ints, *slot = d->ints + R, *pos = d->ints + 2 * R;
    const int *len = d->ints + 3 * R;
    const size_t layer_cache = (size_t)R * d->gen_cap * KV;
    const size_t np = (size_t)d->Np;
    embedding_forward(d->x, tok, param_at(g, g->params, P_WTE, 0), n, C, s);
    for (int l = 0; l < L; l++) {
#define W(k) param_at(g, g->params, k, l)
        bf16 *gk = d->gk + l * layer_cache, *gv = d->gv + l * layer_cache;
        const bf16 *pk = g->acts.k + l * np * KV, *pv = g->acts.v + l * np * KV;
        rmsnorm_forward(d->ln, d->rstd, d->x, W(P_LN1), n, C, eps, s);
        linear(g, d->q, d->ln, W(P_WQ), W(P_BQ), n, C, Q);
        linear(g, d->kn, d->ln, W(P_WK), W(P_BK), n, C, KV);
        linear(g, d->vn, d->ln, W(P_WV), W(P_BV), n, C, KV);
        rope_forward(d->q, pos, g->inv_freq, n, Hq, D, s);
        rope_forward(d->kn, pos, g->inv_freq, n, Hkv, D, s);
        kv_append(gk, gv, d->kn, d->vn, slot, len, n, d->gen_cap, KV, s);
        decode_attention(d->att, d->q, pk, pv, d->prompt_off, gk, gv, slot, d->slot_prompt_d, len,
                         n, d->gen_cap, Hq, Hkv, D, c->sliding_window, d->max_keys, d->att_scratch,
                         s);
        linear_residual(g, d->x, d->x, d->att, W(P_WO), W(P_BO), n, Q, C);
        rmsnorm_forward(d->ln, d->rstd, d->x, W(P_LN2), n, C, eps, s);
        linear(g, d->gate, d->ln, W(P_WGATE), nullptr, n, C, I);
        linear(g, d->up, d->ln, W(P_WUP), nullptr, n, C, I);
        swiglu_forward(d->act, d->gate, d->up, (size_t)n * I, s);
        linear_residual(g, d->x, d->x, d->act, W(P_WDOWN), nullptr, n, I, C);
#undef W
    }
    rmsnorm_forward(d->ln, d->rstd, d->x, param_at(g, g->params, P_LNF, 0), n, C, eps, s);
    gemm(g->gemm, 0, 1, n, V, C, d->ln, C, param_at(g, g->params, head_kind(g), 0), C, 0.0f,
         nullptr, d->logits, V, GEMM_OUT_F32, nullptr, s);
}

extern "C" void gpu_decode_step(GpuDecode *d, int n, const int *slots, const int *tokens) {
    if (n <= 0) return;
    GpuModel *g = d->g;
    const int R = d->rows;
    cudaStream_t s = g->stream;
    cudaCheck(cudaSetDevice(g->device));

    // the step's tokens, slots, positions and the slots' cache lengths before it, in one copy
    int *h = d->staging.data();
    for (int r = 0; r < n; r++) {
        const int slot = slots[r];
        if (d->slot_len[slot] >= d->gen_cap)
            gemc_fatal("gpu_decode_step: slot %d has no room left (%d tokens)", slot, d->gen_cap);
        h[r] = tokens[r];
        h[R + r] = slot;
        h[2 * R + r] = d->prompt_len[d->slot_prompt[slot]] + d->slot_len[slot];
    }
    for (int i = 0; i < R; i++) h[3 * R + i] = d->slot_len[i];
    for (int r = 0; r < n; r++) d->slot_len[slots[r]]++;
    cudaCheck(cudaMemcpyAsync(d->ints, h, (size_t)4 * R * sizeof(int), cudaMemcpyHostToDevice, s));

    // A decode step is some 15 launches per layer, too short for the GPU to hide their CPU
    // cost; a CUDA graph launches them all at once. Its launches bake in n, so a step with the
    // same n as the last one (all of them, until candidates end) replays the graph captured for
    // that n. GEMC_CUDA_GRAPHS=0 turns graphs off.
    if (!d->use_graphs || (n != d->graph_n && n != d->last_n)) {
        step_body(d, n);
    } else {
        if (n != d->graph_n) {
            if (d->graph_n) cudaCheck(cudaGraphExecDestroy(d->graph));
            cudaGraph_t graph;
            cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            step_body(d, n);
            cudaCheck(cudaStreamEndCapture(s, &graph));
            cudaCheck(cudaGraphInstantiate(&d->graph, graph, 0));
            cudaCheck(cudaGraphDestroy(graph));
            d->graph_n = n;
        }
        cudaCheck(cudaGraphLaunch(d->graph, s));
    }
    d->last_n = n;
    d->first_draw = 0;
}

extern "C" void gpu_decode_end(GpuDecode *d) {
    if (!d) return;
    cudaCheck(cudaStreamSynchronize(d->g->stream));
    if (d->graph_n) cudaCheck(cudaGraphExecDestroy(d->graph));
    cudaCheck(cudaFree(d->slab));
    delete d;
}
