// The whole model's forward and backward, gradient norm and AdamW on the device (gpu.h), the
// same sequence of operations as src/model/cpu/model.inc in mixed precision: bf16 weights and GEMM
// inputs, fp32 residual stream, fp32 gradients, fp32 accumulation in every GEMM and kernel.
#include <cmath>
#include <cstring>

#include "model/cuda/attention.cuh"
#include "model/cuda/gpu_model.cuh"
#include "model/cuda/head.cuh"
#include "model/cuda/layers.cuh"
#include "model/cuda/prefix.cuh"

extern "C" {
#include "base/common.h"
}

// Rows of logits per head window: the [N, V] logits never exist at once (151,936 x 1024 fp32
// is 620 MB); large enough that the head GEMMs run at full speed.
static const int HEAD_ROWS = 1024;

// ---- lifetime ------------------------------------------------------------------------------

template <class T> static T *dev_alloc(size_t n) {
    T *p = nullptr;
    cudaCheck(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(T)));
    return p;
}

static void refresh_bf16(GpuModel *g) {
    cast_f32_to_bf16(g->params, g->master, g->layout.total, g->stream);
}

extern "C" GpuModel *gpu_model_create(const Model *m, int device) {
    if (device < 0 || device >= gpu_device_count()) {
        gemc_set_error("%s", gpu_unavailable());
        return NULL;
    }
    cudaCheck(cudaSetDevice(device));
    const size_t total = m->layout.total;
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    // weights now; gradients and AdamW moments (12 more bytes a parameter) at the first
    // backward and step, so generators and frozen references never hold them
    const size_t need = total * (sizeof(float) + sizeof(bf16));
    if (need > free_b) {
        gemc_set_error("the model needs %.1f GiB of GPU memory for its weights, gradients and "
                       "AdamW state, and device %d has %.1f GiB free (HINT: a smaller model, "
                       "or run.device=cpu)",
                       need / 1073741824.0, device, free_b / 1073741824.0);
        return NULL;
    }
    GpuModel *g = new GpuModel;
    std::memset((void *)g, 0, sizeof *g);
    g->device = device;
    g->cfg = m->cfg;
    g->layout = m->layout;
    g->tp = m->tp;
    for (int k = 0; k < NUM_PARAM_KINDS; k++)
        g->norm_counts[k] = m->tp ? (unsigned char)tp_kind_counts((ParamKind)k, m->tp->rank) : 1;
    cudaCheck(cudaStreamCreate(&g->stream));
    g->gemm = gemm_create();
    g->master = dev_alloc<float>(total);
    g->params = dev_alloc<bf16>(total);
    g->norm_out = dev_alloc<float>(1 + NUM_PARAM_KINDS); // the sum, then a tp rank's per kind
    const int half = m->cfg.head_dim / 2;
    g->inv_freq = dev_alloc<float>(half);
    cudaCheck(
        cudaMemcpy(g->inv_freq, m->rope_inv_freq, half * sizeof(float), cudaMemcpyHostToDevice));
    gpu_model_upload(g, m->params, m->adam_m, m->adam_v);
    return g;
}

// Zeroed gradients, allocated at the first need.
static void ensure_grads(GpuModel *g) {
    if (g->grads) return;
    const size_t total = g->layout.total;
    g->grads = dev_alloc<float>(total);
    g->norm_scratch = dev_alloc<float>(sum_squares_scratch(total));
    cudaCheck(cudaMemsetAsync(g->grads, 0, total * sizeof(float), g->stream));
}

// Zeroed AdamW moments, allocated at the first need.
static void ensure_adam(GpuModel *g) {
    if (g->adam_m) return;
    const size_t total = g->layout.total;
    g->adam_m = dev_alloc<float>(total);
    g->adam_v = dev_alloc<float>(total);
    cudaCheck(cudaMemsetAsync(g->adam_m, 0, total * sizeof(float), g->stream));
    cudaCheck(cudaMemsetAsync(g->adam_v, 0, total * sizeof(float), g->stream));
}

static void acts_free(GpuActs *a) {
    if (a->slab) cudaCheck(cudaFree(a->slab));
    if (a->ex.slab) cudaCheck(cudaFree(a->ex.slab));
    std::memset((void *)a, 0, sizeof *a);
}

extern "C" void gpu_model_free(GpuModel *g) {
    if (!g) return;
    cudaCheck(cudaSetDevice(g->device));
    cudaCheck(cudaStreamSynchronize(g->stream));
    acts_free(&g->acts);
    cudaCheck(cudaFree(g->master));
    if (g->grads) cudaCheck(cudaFree(g->grads));
    if (g->norm_scratch) cudaCheck(cudaFree(g->norm_scratch));
    if (g->adam_m) cudaCheck(cudaFree(g->adam_m));
    if (g->adam_v) cudaCheck(cudaFree(g->adam_v));
    cudaCheck(cudaFree(g->params));
    cudaCheck(cudaFree(g->norm_out));
    cudaCheck(cudaFree(g->inv_freq));
    std::free(g->tp_host);
    gemm_free(g->gemm);
    cudaCheck(cudaStreamDestroy(g->stream));
    delete g;
}

extern "C" int gpu_model_device(const GpuModel *g) {
    return g->device;
}

extern "C" void gpu_model_download(GpuModel *g, float *params, float *adam_m, float *adam_v) {
    const size_t bytes = g->layout.total * sizeof(float);
    cudaCheck(cudaStreamSynchronize(g->stream));
    if (params) cudaCheck(cudaMemcpy(params, g->master, bytes, cudaMemcpyDeviceToHost));
    // no step taken yet: the moments are zeros
    if (adam_m && !g->adam_m) std::memset(adam_m, 0, bytes);
    if (adam_v && !g->adam_v) std::memset(adam_v, 0, bytes);
    if (adam_m && g->adam_m)
        cudaCheck(cudaMemcpy(adam_m, g->adam_m, bytes, cudaMemcpyDeviceToHost));
    if (adam_v && g->adam_v)
        cudaCheck(cudaMemcpy(adam_v, g->adam_v, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_upload(GpuModel *g, const float *params, const float *adam_m,
                                 const float *adam_v) {
    const size_t bytes = g->layout.total * sizeof(float);
    cudaCheck(cudaStreamSynchronize(g->stream));
    if (params) cudaCheck(cudaMemcpy(g->master, params, bytes, cudaMemcpyHostToDevice));
    if (adam_m || adam_v) ensure_adam(g);
    if (adam_m) cudaCheck(cudaMemcpy(g->adam_m, adam_m, bytes, cudaMemcpyHostToDevice));
    if (adam_v) cudaCheck(cudaMemcpy(g->adam_v, adam_v, bytes, cudaMemcpyHostToDevice));
    if (params) refresh_bf16(g);
}

extern "C" float *gpu_model_grads_device(GpuModel *g) {
    ensure_grads(g);
    return g->grads;
}

extern "C" void gpu_model_grads_download(GpuModel *g, float *host) {
    ensure_grads(g);
    cudaCheck(cudaStreamSynchronize(g->stream));
    cudaCheck(cudaMemcpy(host, g->grads, g->layout.total * sizeof(float), cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_grads_upload(GpuModel *g, const float *host) {
    ensure_grads(g);
    cudaCheck(cudaStreamSynchronize(g->stream));
    cudaCheck(cudaMemcpy(g->grads, host, g->layout.total * sizeof(float), cudaMemcpyHostToDevice));
}

extern "C" void gpu_model_synchronize(GpuModel *g) {
    cudaCheck(cudaStreamSynchronize(g->stream));
}

extern "C" void gpu_model_zero_grad(GpuModel *g) {
    ensure_grads(g);
    cudaCheck(cudaMemsetAsync(g->grads, 0, g->layout.total * sizeof(float), g->stream));
}

// ---- activations -----------------------------------------------------------------------------

void *dev_slab(const DevBuf *bufs, int n, const char *what, const char *hint) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (bufs[i].bytes + 255) / 256 * 256;
    size_t free_b = 0, all_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &all_b));
    if (total > free_b)
        gemc_fatal("%s needs %.1f GiB of GPU memory and %.1f GiB are free (HINT: %s)", what,
                   total / 1073741824.0, free_b / 1073741824.0, hint);
    void *slab = nullptr;
    cudaCheck(cudaMalloc(&slab, total ? total : 1));
    char *p = (char *)slab;
    for (int i = 0; i < n; i++) {
        *bufs[i].ptr = p;
        p += (bufs[i].bytes + 255) / 256 * 256;
    }
    return slab;
}

// One allocation for every buffer of N rows and B sequences (grown on demand).
static void acts_ensure(GpuModel *g, int N, int B) {
    GpuActs *a = &g->acts;
    if (a->slab && N <= a->cap_N && B <= a->cap_B) return;
    acts_free(a);
    const ModelConfig *c = &g->cfg;
    const size_t n = (size_t)N, L = (size_t)c->num_layers, C = (size_t)c->hidden_size;
    const size_t I = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    const size_t Q = (size_t)c->num_heads * c->head_dim, KV = (size_t)c->num_kv_heads * c->head_dim;
    const size_t hr = n < (size_t)HEAD_ROWS ? n : (size_t)HEAD_ROWS;
    const size_t scratch_n = rmsnorm_backward_scratch(N, (int)C);
    const DevBuf bufs[] = {
        {(void **)&a->tokens, n * 4},
        {(void **)&a->targets, n * 4},
        {(void **)&a->pos, n * 4},
        {(void **)&a->offsets, (size_t)(B + 1) * 4},
        {(void **)&a->res, (L + 1) * n * C * 4},
        {(void **)&a->ln1, L * n * C * 2},
        {(void **)&a->ln1_rstd, L * n * 4},
        {(void **)&a->q, L * n * Q * 2},
        {(void **)&a->att, L * n * Q * 2},
        {(void **)&a->k, L * n * KV * 2},
        {(void **)&a->v, L * n * KV * 2},
        {(void **)&a->att_lse, L * n * c->num_heads * 4},
        {(void **)&a->mid, L * n * C * 4},
        {(void **)&a->ln2, L * n * C * 2},
        {(void **)&a->ln2_rstd, L * n * 4},
        {(void **)&a->gate, L * n * I * 2},
        {(void **)&a->up, L * n * I * 2},
        {(void **)&a->lnf, n * C * 2},
        {(void **)&a->lnf_rstd, n * 4},
        {(void **)&a->head_lse, n * 4},
        {(void **)&a->tokens_vp, g->tp ? n * 4 : 0},
        {(void **)&a->targets_vp, g->tp ? n * 4 : 0},
        {(void **)&a->branch, g->tp ? n * C * 4 : 0},
        {(void **)&a->head_stat, g->tp ? hr * 8 * 4 : 0},
        {(void **)&a->lp, n * 4},
        {(void **)&a->ent, n * 4},
        {(void **)&a->dlp, n * 4},
        {(void **)&a->logits, hr * V * 4},
        {(void **)&a->dlogits, hr * V * 2},
        {(void **)&a->act, n * I * 2},
        {(void **)&a->dres, n * C * 4},
        {(void **)&a->dres_bf, n * C * 2},
        {(void **)&a->dln, n * C * 4},
        {(void **)&a->datt, n * Q * 2},
        {(void **)&a->dq, n * Q * 4},
        {(void **)&a->dk, n * KV * 4},
        {(void **)&a->dv, n * KV * 4},
        {(void **)&a->dq_bf, n * Q * 2},
        {(void **)&a->dk_bf, n * KV * 2},
        {(void **)&a->dv_bf, n * KV * 2},
        {(void **)&a->dact, n * I * 2},
        {(void **)&a->dgate, n * I * 2},
        {(void **)&a->dup, n * I * 2},
        {(void **)&a->scratch, scratch_n * 4},
    };
    char what[96];
    snprintf(what, sizeof what, "a batch of %d tokens", N);
    a->slab = dev_slab(bufs, (int)(sizeof bufs / sizeof bufs[0]), what,
                       "lower the batch size, optim.micro_batch_tokens or sampling.max_new_tokens");
    a->scratch_n = scratch_n;
    a->cap_N = N;
    a->cap_B = B;
}

// The expanded batch's buffers for NE rows (N packed rows, B sequences), grown on demand.
static void prefix_ensure(GpuModel *g, int NE, int N, int B) {
    GpuPrefix *e = &g->acts.ex;
    if (e->slab && NE <= e->cap_NE && N <= e->cap_N && B <= e->cap_B) return;
    if (e->slab) cudaCheck(cudaFree(e->slab));
    const ModelConfig *c = &g->cfg;
    const size_t ne = (size_t)NE, Q = (size_t)c->num_heads * c->head_dim;
    const size_t KV = (size_t)c->num_kv_heads * c->head_dim;
    const DevBuf bufs[] = {
        {(void **)&e->src, ne * 4},        {(void **)&e->dsrc, ne * 4},
        {(void **)&e->own, (size_t)N * 4}, {(void **)&e->sum_start, (size_t)(N + 1) * 4},
        {(void **)&e->sum_list, ne * 4},   {(void **)&e->offsets, (size_t)(B + 1) * 4},
        {(void **)&e->q, ne * Q * 2},      {(void **)&e->att, ne * Q * 2},
        {(void **)&e->datt, ne * Q * 2},   {(void **)&e->k, ne * KV * 2},
        {(void **)&e->v, ne * KV * 2},     {(void **)&e->lse, ne * c->num_heads * 4},
        {(void **)&e->dq, ne * Q * 4},     {(void **)&e->dk, ne * KV * 4},
        {(void **)&e->dv, ne * KV * 4},
    };
    char what[96];
    snprintf(what, sizeof what, "the shared-prefix attention of %d rows", NE);
    e->slab = dev_slab(bufs, (int)(sizeof bufs / sizeof bufs[0]), what,
                       "lower optim.micro_batch_tokens, or set optim.shared_prefix=false");
    e->cap_NE = NE, e->cap_N = N, e->cap_B = B;
}

// The maps of the expanded batch (prefix.cuh) of a batch with shared prefixes, built on the
// host and uploaded; ex.NE = 0 for a batch without.
static void upload_prefix_maps(GpuModel *g, const PackedBatch *batch) {
    GpuPrefix *e = &g->acts.ex;
    e->NE = 0;
    if (!batch->prefix) return;
    const int N = batch->N, B = batch->B, *off = batch->offsets, *pre = batch->prefix;
    int NE = 0;
    for (int b = 0; b < B; b++)
        NE += off[b + 1] - off[b] + (pre[b] >= 0 ? off[pre[b] + 1] - off[pre[b]] : 0);
    int *host = (int *)mallocCheck((size_t)(3 * NE + 2 * N + B + 2) * sizeof(int));
    int *src = host, *dsrc = src + NE, *list = dsrc + NE, *own = list + NE, *start = own + N;
    int *eoff = start + N + 1;
    int ne = 0;
    eoff[0] = 0;
    for (int b = 0; b < B; b++) {
        if (pre[b] >= 0)
            for (int i = off[pre[b]]; i < off[pre[b] + 1]; i++) src[ne] = i, dsrc[ne++] = -1;
        for (int i = off[b]; i < off[b + 1]; i++) own[i] = ne, src[ne] = i, dsrc[ne++] = i;
        eoff[b + 1] = ne;
    }
    // the expanded rows of each packed row in ascending order: its own first (a prefix comes
    // before the sequences that read it), then its copies
    for (int i = 0; i <= N; i++) start[i] = 0;
    for (int x = 0; x < NE; x++) start[src[x] + 1]++;
    for (int i = 0; i < N; i++) start[i + 1] += start[i];
    int *fill = (int *)mallocCheck((size_t)(N ? N : 1) * sizeof(int));
    std::memcpy(fill, start, (size_t)N * sizeof(int));
    for (int x = 0; x < NE; x++) list[fill[src[x]]++] = x;
    std::free(fill);
    prefix_ensure(g, NE, N, B);
    cudaStream_t s = g->stream;
    const struct {
        int *dst;
        const int *from;
        int n;
    } up[] = {{e->src, src, NE}, {e->dsrc, dsrc, NE},          {e->sum_list, list, NE},
              {e->own, own, N},  {e->sum_start, start, N + 1}, {e->offsets, eoff, B + 1}};
    for (const auto &u : up)
        cudaCheck(
            cudaMemcpyAsync(u.dst, u.from, (size_t)u.n * sizeof(int), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaStreamSynchronize(s)); // the host arrays go
    std::free(host);
    e->NE = NE;
}

// Positions, targets and offsets of the batch, built on the host and copied in one go each.
static void upload_batch(GpuModel *g, const PackedBatch *batch) {
    GpuActs *a = &g->acts;
    const int N = batch->N, B = batch->B;
    int *host = (int *)mallocCheck((size_t)(2 * N) * sizeof(int));
    int *pos = host, *targets = host + N;
    for (int b = 0; b < B; b++) {
        const int p = batch->prefix ? batch->prefix[b] : -1;
        const int start = p >= 0 ? batch->offsets[p + 1] - batch->offsets[p] : 0; // after it
        for (int i = batch->offsets[b]; i < batch->offsets[b + 1]; i++) {
            pos[i] = start + i - batch->offsets[b];
            targets[i] = i + 1 < batch->offsets[b + 1] ? batch->tokens[i + 1] : -1;
        }
    }
    upload_prefix_maps(g, batch);
    cudaStream_t s = g->stream;
    cudaCheck(
        cudaMemcpyAsync(a->tokens, batch->tokens, N * sizeof(int), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaMemcpyAsync(a->pos, pos, N * sizeof(int), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaMemcpyAsync(a->targets, targets, N * sizeof(int), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaMemcpyAsync(a->offsets, batch->offsets, (B + 1) * sizeof(int),
                              cudaMemcpyHostToDevice, s));
    cudaCheck(cudaStreamSynchronize(s)); // the host arrays go out of scope
    if (g->tp) {
        // the vocab-parallel embedding's and head's ids: this rank's rows [v0, v0 + V)
        // (into the host arrays of the positions and targets, which are on the device already)
        const int v0 = g->tp->vocab_start, V = g->cfg.vocab_size;
        int *tokens_vp = pos, *targets_vp = targets;
        for (int i = 0; i < N; i++) {
            const int t = batch->tokens[i] - v0, tg = targets[i] - v0;
            tokens_vp[i] = t >= 0 && t < V ? t : -1;
            targets_vp[i] = targets[i] < 0 ? -1 : tg >= 0 && tg < V ? tg : V;
        }
        cudaCheck(
            cudaMemcpyAsync(a->tokens_vp, tokens_vp, N * sizeof(int), cudaMemcpyHostToDevice, s));
        cudaCheck(
            cudaMemcpyAsync(a->targets_vp, targets_vp, N * sizeof(int), cudaMemcpyHostToDevice, s));
        cudaCheck(cudaStreamSynchronize(s));
    }
    std::free(host);
}

// ---- the tensor-parallel group's collectives -----------------------------------------------

void tp_allreduce_dev(GpuModel *g, float *buf, size_t n, int max) {
    const TensorParallel *tp = g->tp;
    if (!tp || n == 0) return;
    cudaCheck(cudaStreamSynchronize(g->stream)); // the collective reads what the stream wrote
    if (tp->device_buffers) {
        (max ? tp->allreduce_max : tp->allreduce_sum)(tp->ctx, buf, n);
        return;
    }
    if (n > g->tp_host_n) {
        std::free(g->tp_host);
        g->tp_host = (float *)mallocCheck(n * sizeof(float));
        g->tp_host_n = n;
    }
    cudaCheck(cudaMemcpy(g->tp_host, buf, n * sizeof(float), cudaMemcpyDeviceToHost));
    (max ? tp->allreduce_max : tp->allreduce_sum)(tp->ctx, g->tp_host, n);
    cudaCheck(cudaMemcpy(buf, g->tp_host, n * sizeof(float), cudaMemcpyHostToDevice));
}

// Megatron's g for a row-parallel projection (o, down): out [N, C] = res + the group's sum of
// this rank's partial inp w^T, plus the bias (replicated) once.
static void linear_row_parallel(GpuModel *g, float *out, const float *res, const bf16 *inp,
                                const bf16 *w, const bf16 *bias, int N, int IC, int C) {
    float *branch = g->acts.branch;
    gemm(g->gemm, 0, 1, N, C, IC, inp, IC, w, IC, 0.0f, nullptr, branch, C, GEMM_OUT_F32, nullptr,
         g->stream);
    tp_allreduce_dev(g, branch, (size_t)N * C, 0);
    add_f32(out, res, branch, (size_t)N * C, g->stream);
    if (bias) gemm_add_bias_f32(out, bias, N, C, g->stream);
}

// ---- forward -------------------------------------------------------------------------------

#define W(k, l) param_at(g, g->params, k, l)

void linear(GpuModel *g, bf16 *out, const bf16 *inp, const bf16 *w, const bf16 *bias, int N, int IC,
            int OC) {
    gemm(g->gemm, 0, 1, N, OC, IC, inp, IC, w, IC, 0.0f, nullptr, out, OC, GEMM_OUT_BF16, bias,
         g->stream);
}

void linear_residual(GpuModel *g, float *out, const float *res, const bf16 *inp, const bf16 *w,
                     const bf16 *bias, int N, int IC, int OC) {
    gemm(g->gemm, 0, 1, N, OC, IC, inp, IC, w, IC, 1.0f, res, out, OC, GEMM_OUT_F32, nullptr,
         g->stream);
    if (bias) gemm_add_bias_f32(out, bias, N, OC, g->stream);
}

// q, k, v of the packed rows into the rows of the expanded batch (prefix.cuh).
static void expand_qkv(GpuModel *g, const bf16 *q, const bf16 *k, const bf16 *v) {
    const ModelConfig *c = &g->cfg;
    GpuPrefix *e = &g->acts.ex;
    const int D = c->head_dim;
    gather_rows(e->q, q, e->src, e->NE, c->num_heads * D, g->stream);
    gather_rows(e->k, k, e->src, e->NE, c->num_kv_heads * D, g->stream);
    gather_rows(e->v, v, e->src, e->NE, c->num_kv_heads * D, g->stream);
}

// The attention of one layer over the packed batch, or over its expanded form when it shares
// prefixes (prefix.cuh): q, k, v gathered into the expanded rows, the kernels of a plain packed
// batch, each packed row's own output and lse gathered back.
static void attention_fwd(GpuModel *g, bf16 *att, float *lse, const bf16 *q, const bf16 *k,
                          const bf16 *v, int B, int N) {
    const ModelConfig *c = &g->cfg;
    const int Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim, Q = Hq * D;
    GpuActs *a = &g->acts;
    GpuPrefix *e = &a->ex;
    cudaStream_t s = g->stream;
    if (!e->NE) {
        attention_forward(att, lse, q, k, v, a->offsets, B, N, Hq, Hkv, D, c->sliding_window, s);
        return;
    }
    expand_qkv(g, q, k, v);
    attention_forward(e->att, e->lse, e->q, e->k, e->v, e->offsets, B, e->NE, Hq, Hkv, D,
                      c->sliding_window, s);
    gather_rows(att, e->att, e->own, N, Q, s);
    gather_rows(lse, e->lse, e->own, N, Hq, s);
}

// Its backward (WRITES dq, dk, dv): over the expanded batch, the output gradient entering only
// each row's own copy; a prefix row's key and value gradients are the sums over its copies.
static void attention_bwd(GpuModel *g, float *dq, float *dk, float *dv, const bf16 *datt,
                          const bf16 *att, const float *lse, const bf16 *q, const bf16 *k,
                          const bf16 *v, int B, int N) {
    const ModelConfig *c = &g->cfg;
    const int Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim, Q = Hq * D, KV = Hkv * D;
    GpuActs *a = &g->acts;
    GpuPrefix *e = &a->ex;
    cudaStream_t s = g->stream;
    if (!e->NE) {
        attention_backward(dq, dk, dv, datt, att, lse, q, k, v, a->offsets, B, N, Hq, Hkv, D,
                           c->sliding_window, s);
        return;
    }
    expand_qkv(g, q, k, v);
    gather_rows(e->att, att, e->src, e->NE, Q, s); // a copy's own output takes no gradient
    gather_rows(e->lse, lse, e->src, e->NE, Hq, s);
    gather_rows(e->datt, datt, e->dsrc, e->NE, Q, s);
    attention_backward(e->dq, e->dk, e->dv, e->datt, e->att, e->lse, e->q, e->k, e->v, e->offsets,
                       B, e->NE, Hq, Hkv, D, c->sliding_window, s);
    gather_rows(dq, e->dq, e->own, N, Q, s);
    sum_rows(dk, e->dk, e->sum_start, e->sum_list, N, KV, s);
    sum_rows(dv, e->dv, e->sum_start, e->sum_list, N, KV, s);
}

void gpu_forward_body(GpuModel *g, const PackedBatch *batch) {
    const ModelConfig *c = &g->cfg;
    const int N = batch->N, B = batch->B;
    const int L = c->num_layers, C = c->hidden_size, I = c->intermediate_size;
    const int Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int Q = Hq * D, KV = Hkv * D;
    const float eps = c->rms_norm_eps;
    cudaCheck(cudaSetDevice(g->device));
    acts_ensure(g, N, B);
    upload_batch(g, batch);
    GpuActs *a = &g->acts;
    cudaStream_t s = g->stream;
    const size_t n = (size_t)N;

    if (!g->tp) {
        embedding_forward(a->res, a->tokens, W(P_WTE, 0), N, C, s);
    } else {
        // vocab-parallel: this rank's rows, zeros for the others', summed over the group
        embedding_forward(a->res, a->tokens_vp, W(P_WTE, 0), N, C, s);
        tp_allreduce_dev(g, a->res, n * C, 0);
    }
    for (int l = 0; l < L; l++) {
        const float *x = a->res + l * n * C;
        bf16 *ln1 = a->ln1 + l * n * C, *ln2 = a->ln2 + l * n * C;
        float *ln1_rstd = a->ln1_rstd + l * n, *ln2_rstd = a->ln2_rstd + l * n;
        bf16 *q = a->q + l * n * Q, *k = a->k + l * n * KV, *v = a->v + l * n * KV;
        bf16 *att = a->att + l * n * Q;
        float *att_lse = a->att_lse + l * n * Hq;
        float *mid = a->mid + l * n * C, *x_out = a->res + (l + 1) * n * C;
        bf16 *gate = a->gate + l * n * I, *up = a->up + l * n * I;

        // attention block: mid = x + o_proj(attention(rope(q), rope(k), v))
        rmsnorm_forward(ln1, ln1_rstd, x, W(P_LN1, l), N, C, eps, s);
        linear(g, q, ln1, W(P_WQ, l), W(P_BQ, l), N, C, Q);
        linear(g, k, ln1, W(P_WK, l), W(P_BK, l), N, C, KV);
        linear(g, v, ln1, W(P_WV, l), W(P_BV, l), N, C, KV);
        rope_forward(q, a->pos, g->inv_freq, N, Hq, D, s);
        rope_forward(k, a->pos, g->inv_freq, N, Hkv, D, s);
        attention_fwd(g, att, att_lse, q, k, v, B, N);
        if (!g->tp)
            linear_residual(g, mid, x, att, W(P_WO, l), W(P_BO, l), N, Q, C);
        else
            linear_row_parallel(g, mid, x, att, W(P_WO, l), W(P_BO, l), N, Q, C);

        // MLP block: x_out = mid + down_proj(silu(gate_proj(h)) * up_proj(h)), h = ln2(mid)
        rmsnorm_forward(ln2, ln2_rstd, mid, W(P_LN2, l), N, C, eps, s);
        linear(g, gate, ln2, W(P_WGATE, l), nullptr, N, C, I);
        linear(g, up, ln2, W(P_WUP, l), nullptr, N, C, I);
        swiglu_forward(a->act, gate, up, n * I, s);
        if (!g->tp)
            linear_residual(g, x_out, mid, a->act, W(P_WDOWN, l), nullptr, N, I, C);
        else
            linear_row_parallel(g, x_out, mid, a->act, W(P_WDOWN, l), nullptr, N, I, C);
    }
    rmsnorm_forward(a->lnf, a->lnf_rstd, a->res + (size_t)L * n * C, W(P_LNF, 0), N, C, eps, s);
}

extern "C" void gpu_model_forward(GpuModel *g, const PackedBatch *batch, float *logprobs,
                                  float *entropy, float logit_scale) {
    const int N = batch->N, C = g->cfg.hidden_size, V = g->cfg.vocab_size;
    g->last_N = N;
    g->logit_scale = logit_scale;
    if (N <= 0) return;
    gpu_forward_body(g, batch);
    GpuActs *a = &g->acts;
    cudaStream_t s = g->stream;
    const size_t n = (size_t)N;

    // the head, a window of rows at a time: fp32 logits, then one pass for lse, log-prob and
    // entropy of each row
    const bf16 *head = W(head_kind(g), 0); // [V, C]
    for (int r0 = 0; r0 < N; r0 += HEAD_ROWS) {
        const int cnt = N - r0 < HEAD_ROWS ? N - r0 : HEAD_ROWS;
        gemm(g->gemm, 0, 1, cnt, V, C, a->lnf + (size_t)r0 * C, C, head, C, 0.0f, nullptr,
             a->logits, V, GEMM_OUT_F32, nullptr, s);
        // z / T (none at T = 1, so the raw logits keep their bits)
        if (logit_scale != 1.0f) scale_f32(a->logits, (size_t)cnt * V, logit_scale, s);
        if (!g->tp) {
            head_forward(a->lp + r0, a->ent + r0, a->head_lse + r0, a->logits, a->targets + r0, cnt,
                         V, s);
        } else {
            // vocab-parallel: the group's max of each row (MAX), then its sums (SUM)
            const int hr = N < HEAD_ROWS ? N : HEAD_ROWS;
            float *mx = a->head_stat, *stat = mx + hr, *sums = stat + 4 * (size_t)hr;
            head_vp_partial(mx, stat, a->logits, a->targets_vp + r0, cnt, V, s);
            tp_allreduce_dev(g, mx, cnt, 1);
            head_vp_rebase(sums, stat, mx, cnt, s);
            tp_allreduce_dev(g, sums, 3 * (size_t)cnt, 0);
            head_vp_finish(a->lp + r0, a->ent + r0, a->head_lse + r0, mx, sums, a->targets + r0,
                           cnt, s);
        }
    }
    if (logprobs)
        cudaCheck(cudaMemcpyAsync(logprobs, a->lp, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    if (entropy)
        cudaCheck(cudaMemcpyAsync(entropy, a->ent, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    cudaCheck(cudaStreamSynchronize(s));
}

// ---- backward ------------------------------------------------------------------------------

#define G(k, l) param_at(g, g->grads, k, l)

// For out = inp w^T with dout [N, OC] (bf16): dinp [N, IC] (fp32) = dout w, added to what
// dinp holds when accumulate; dw [OC, IC] += dout^T inp.
static void linear_backward(GpuModel *g, float *dinp, int accumulate, float *dw, const bf16 *dout,
                            const bf16 *inp, const bf16 *w, int N, int IC, int OC) {
    gemm(g->gemm, 0, 0, N, IC, OC, dout, OC, w, IC, accumulate ? 1.0f : 0.0f,
         accumulate ? dinp : nullptr, dinp, IC, GEMM_OUT_F32, nullptr, g->stream);
    gemm(g->gemm, 1, 0, OC, IC, N, dout, OC, inp, IC, 1.0f, dw, dw, IC, GEMM_OUT_F32, nullptr,
         g->stream);
}

// The same with a bf16 dinp that is written (the input of the next GEMMs back).
static void linear_backward_bf16(GpuModel *g, bf16 *dinp, float *dw, const bf16 *dout,
                                 const bf16 *inp, const bf16 *w, int N, int IC, int OC) {
    gemm(g->gemm, 0, 0, N, IC, OC, dout, OC, w, IC, 0.0f, nullptr, dinp, IC, GEMM_OUT_BF16, nullptr,
         g->stream);
    gemm(g->gemm, 1, 0, OC, IC, N, dout, OC, inp, IC, 1.0f, dw, dw, IC, GEMM_OUT_F32, nullptr,
         g->stream);
}

extern "C" void gpu_model_backward(GpuModel *g, const PackedBatch *batch, const float *dlogprobs) {
    const ModelConfig *c = &g->cfg;
    const int N = batch->N, B = batch->B;
    const int L = c->num_layers, C = c->hidden_size, I = c->intermediate_size;
    const int Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim, V = c->vocab_size;
    const int Q = Hq * D, KV = Hkv * D;
    if (g->last_N != N)
        gemc_fatal("gpu_model_backward: no forward of this batch (%d tokens) to go back through",
                   N);
    if (N <= 0) return;
    cudaCheck(cudaSetDevice(g->device));
    ensure_grads(g);
    GpuActs *a = &g->acts;
    cudaStream_t s = g->stream;
    const size_t n = (size_t)N;
    float *scr = a->scratch;
    cudaCheck(cudaMemcpyAsync(a->dlp, dlogprobs, n * sizeof(float), cudaMemcpyHostToDevice, s));
    // the head read z / T: dL/dz = (1/T) dL/d(z/T), folded into dlogprob before the bf16 dlogits
    if (g->logit_scale != 1.0f) scale_f32(a->dlp, n, g->logit_scale, s);

    // head: recompute each window's logits, dlogits = dlogprob (onehot - softmax), then
    // dlnf = dlogits head and dhead += dlogits^T lnf
    const int hk = head_kind(g);
    const bf16 *head = W(hk, 0);
    float *dhead = G(hk, 0);
    for (int r0 = 0; r0 < N; r0 += HEAD_ROWS) {
        const int cnt = N - r0 < HEAD_ROWS ? N - r0 : HEAD_ROWS;
        const bf16 *h = a->lnf + (size_t)r0 * C;
        gemm(g->gemm, 0, 1, cnt, V, C, h, C, head, C, 0.0f, nullptr, a->logits, V, GEMM_OUT_F32,
             nullptr, s);
        if (g->logit_scale != 1.0f) scale_f32(a->logits, (size_t)cnt * V, g->logit_scale, s);
        const int *targets = (g->tp ? a->targets_vp : a->targets) + r0;
        head_backward(a->dlogits, a->logits, a->head_lse + r0, nullptr, targets, a->dlp + r0,
                      nullptr, cnt, V, s);
        linear_backward(g, a->dln + (size_t)r0 * C, 0, dhead, a->dlogits, h, head, cnt, C, V);
    }
    // the head is column-parallel over the vocabulary: f's backward sums the partial dln
    tp_allreduce_dev(g, a->dln, n * C, 0);
    cudaCheck(cudaMemsetAsync(a->dres, 0, n * C * sizeof(float), s));
    rmsnorm_backward(a->dres, G(P_LNF, 0), a->dln, a->res + (size_t)L * n * C, W(P_LNF, 0),
                     a->lnf_rstd, N, C, scr, s);

    for (int l = L - 1; l >= 0; l--) {
        const float *x = a->res + l * n * C, *mid = a->mid + l * n * C;
        const bf16 *ln1 = a->ln1 + l * n * C, *ln2 = a->ln2 + l * n * C;
        const float *ln1_rstd = a->ln1_rstd + l * n, *ln2_rstd = a->ln2_rstd + l * n;
        const bf16 *q = a->q + l * n * Q, *k = a->k + l * n * KV, *v = a->v + l * n * KV;
        const bf16 *att = a->att + l * n * Q;
        const float *att_lse = a->att_lse + l * n * Hq;
        const bf16 *gate = a->gate + l * n * I, *up = a->up + l * n * I;

        // MLP block (the residual passes dres through unchanged)
        swiglu_forward(a->act, gate, up, n * I, s); // recomputed: not kept per layer
        cast_f32_to_bf16(a->dres_bf, a->dres, n * C, s);
        linear_backward_bf16(g, a->dact, G(P_WDOWN, l), a->dres_bf, a->act, W(P_WDOWN, l), N, I, C);
        swiglu_backward(a->dgate, a->dup, a->dact, gate, up, n * I, s);
        linear_backward(g, a->dln, 0, G(P_WGATE, l), a->dgate, ln2, W(P_WGATE, l), N, C, I);
        linear_backward(g, a->dln, 1, G(P_WUP, l), a->dup, ln2, W(P_WUP, l), N, C, I);
        tp_allreduce_dev(g, a->dln, n * C, 0); // f before gate/up
        rmsnorm_backward(a->dres, G(P_LN2, l), a->dln, mid, W(P_LN2, l), ln2_rstd, N, C, scr, s);

        // attention block
        cast_f32_to_bf16(a->dres_bf, a->dres, n * C, s);
        linear_backward_bf16(g, a->datt, G(P_WO, l), a->dres_bf, att, W(P_WO, l), N, Q, C);
        if (c->o_bias) bias_backward(G(P_BO, l), a->dres_bf, N, C, s);
        attention_bwd(g, a->dq, a->dk, a->dv, a->datt, att, att_lse, q, k, v, B, N);
        rope_backward(a->dq_bf, a->dq, a->pos, g->inv_freq, N, Hq, D, s);
        rope_backward(a->dk_bf, a->dk, a->pos, g->inv_freq, N, Hkv, D, s);
        cast_f32_to_bf16(a->dv_bf, a->dv, n * KV, s);
        if (c->qkv_bias) {
            bias_backward(G(P_BQ, l), a->dq_bf, N, Q, s);
            bias_backward(G(P_BK, l), a->dk_bf, N, KV, s);
            bias_backward(G(P_BV, l), a->dv_bf, N, KV, s);
        }
        linear_backward(g, a->dln, 0, G(P_WQ, l), a->dq_bf, ln1, W(P_WQ, l), N, C, Q);
        linear_backward(g, a->dln, 1, G(P_WK, l), a->dk_bf, ln1, W(P_WK, l), N, C, KV);
        linear_backward(g, a->dln, 1, G(P_WV, l), a->dv_bf, ln1, W(P_WV, l), N, C, KV);
        tp_allreduce_dev(g, a->dln, n * C, 0); // f before q/k/v
        rmsnorm_backward(a->dres, G(P_LN1, l), a->dln, x, W(P_LN1, l), ln1_rstd, N, C, scr, s);
    }
    // vocab-parallel: only the rows this rank holds
    embedding_backward(G(P_WTE, 0), a->dres, g->tp ? a->tokens_vp : a->tokens, N, C, s);
    cudaCheck(cudaStreamSynchronize(s));
}

#undef G
#undef W

// ---- optimizer -----------------------------------------------------------------------------

extern "C" float gpu_model_clip_grad_norm(GpuModel *g, float max_norm) {
    cudaCheck(cudaSetDevice(g->device));
    ensure_grads(g);
    const size_t total = g->layout.total;
    float ss = 0.0f;
    if (!g->tp) {
        sum_squares(g->norm_out, g->grads, total, g->norm_scratch, g->stream);
    } else {
        // the whole model's norm: this rank's kinds that count (the replicated ones on rank 0
        // only), added in kind order, then summed over the group
        float *part = g->norm_out + 1;
        for (int k = 0; k < NUM_PARAM_KINDS; k++) {
            const ParamSpec *sp = &g->layout.p[k];
            if (sp->size && g->norm_counts[k])
                sum_squares(part + k, g->grads + sp->offset, sp->size, g->norm_scratch, g->stream);
            else
                cudaCheck(cudaMemsetAsync(part + k, 0, sizeof(float), g->stream));
        }
        float host[NUM_PARAM_KINDS];
        cudaCheck(cudaMemcpyAsync(host, part, sizeof host, cudaMemcpyDeviceToHost, g->stream));
        cudaCheck(cudaStreamSynchronize(g->stream));
        for (int k = 0; k < NUM_PARAM_KINDS; k++) ss += host[k];
        cudaCheck(cudaMemcpyAsync(g->norm_out, &ss, sizeof ss, cudaMemcpyHostToDevice, g->stream));
        tp_allreduce_dev(g, g->norm_out, 1, 0);
    }
    cudaCheck(cudaMemcpyAsync(&ss, g->norm_out, sizeof ss, cudaMemcpyDeviceToHost, g->stream));
    cudaCheck(cudaStreamSynchronize(g->stream));
    const float norm = std::sqrt(ss);
    if (max_norm > 0.0f) {
        // torch.nn.utils.clip_grad_norm_, as model_clip_grad_norm
        const float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f) scale_f32(g->grads, total, coef, g->stream);
    }
    return norm;
}

extern "C" void gpu_model_adamw_step(GpuModel *g, const AdamWConfig *opt, long t) {
    cudaCheck(cudaSetDevice(g->device));
    AdamWScalars a; // as model_adamw_step takes them
    adamw_scalars(opt, t, &a);
    ensure_grads(g);
    ensure_adam(g);
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *sp = &g->layout.p[k];
        if (!sp->size) continue;
        const size_t o = sp->offset;
        adamw_update(g->master + o, g->params + o, g->grads + o, g->adam_m + o, g->adam_v + o,
                     sp->size, sp->ndim == 2 ? a.decay_mul : 1.0f, a.w1, a.b2, a.w2, a.bc2_sqrt,
                     a.eps, a.neg_step, g->stream);
    }
}
