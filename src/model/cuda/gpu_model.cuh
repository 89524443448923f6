// The model on the device: the GpuModel behind gpu.h, shared by the training path
// (gpu_model.cu) and the sampler (gpu_decode.cu and sample.cu).
//
// Slabs, each in the CPU layout (model_config.h), so an offset means the same tensor everywhere:
//   master [total] fp32  the weights AdamW updates (the host's m->params, on the device)
//   params [total] bf16  the weights every GEMM and kernel reads, rounded from master
//   grads  [total] fp32  accumulated by the backward
//   adam_m, adam_v [total] fp32
#ifndef GEMC_GPU_MODEL_CUH
#define GEMC_GPU_MODEL_CUH

#include "model/cuda/cuda_common.cuh"
#include "model/cuda/gemm.cuh"

extern "C" {
#include "model/gpu.h"
}

// Activations of the last forward, kept for the backward (as CpuActs), for up to cap_N rows.
// Per-layer slabs stack the layers: layer l of ln1 is ln1 + l * N * C.
// The expanded batch of a forward with shared prefixes (prefix.cuh), NE rows; unused (NE = 0)
// when the batch has none.
struct GpuPrefix {
    int NE, cap_NE, cap_N, cap_B;
    void *slab;
    int *src, *dsrc, *own, *sum_start, *sum_list, *offsets; // the maps; offsets [B+1]
    bf16 *q, *att, *datt;                                   // [NE, Hq*D]
    bf16 *k, *v;                                            // [NE, Hkv*D]
    float *lse;                                             // [NE, Hq]
    float *dq, *dk, *dv;                                    // [NE, Hq*D], [NE, Hkv*D] x2
};

struct GpuActs {
    int cap_N, cap_B;
    GpuPrefix ex;
    void *slab;      // every buffer below points into it
    int *tokens;     // [N]
    int *targets;    // [N] tokens[i+1], or -1 at a sequence's last position
    int *pos;        // [N] position within the sequence
    int *offsets;    // [B+1]
    float *res;      // [L+1, N, C] residual stream entering layer l (fp32)
    bf16 *ln1;       // [L, N, C]
    float *ln1_rstd; // [L, N]
    bf16 *q, *att;   // [L, N, Hq*D] queries after rope; attention output
    bf16 *k, *v;     // [L, N, Hkv*D] keys after rope; values
    float *att_lse;  // [L, N, Hq]
    float *mid;      // [L, N, C] residual stream after the attention block (fp32)
    bf16 *ln2;       // [L, N, C]
    float *ln2_rstd; // [L, N]
    bf16 *gate, *up; // [L, N, I]
    bf16 *lnf;       // [N, C]
    float *lnf_rstd; // [N]
    float *head_lse; // [N]
    float *lp, *ent; // [N] the forward's outputs
    // a tensor-parallel partition's (tp set; empty otherwise):
    int *tokens_vp;   // [N] tokens - vocab_start where this rank holds the row, else -1
    int *targets_vp;  // [N] targets the same way: -1 at a sequence's end, V (local) off-rank
    float *branch;    // [N, C] a row-parallel projection's partial sum, then the group's
    float *head_stat; // [head_rows, 8] the vocab-parallel head's mx, stat and sums
    float *dlp;       // [N] the backward's input
    // scratch
    float *logits;            // [head_rows, V] fp32 logits of a window of rows
    bf16 *dlogits;            // [head_rows, V]
    bf16 *act;                // [N, I] silu(gate) * up
    float *dres;              // [N, C] gradient of the residual stream (fp32)
    bf16 *dres_bf;            // [N, C] its bf16 copy, the GEMMs' input
    float *dln;               // [N, C] gradient of a norm's output (fp32, GEMMs accumulate)
    bf16 *datt;               // [N, Hq*D]
    float *dq, *dk, *dv;      // [N, Hq*D], [N, Hkv*D] x2, the attention backward's fp32 output
    bf16 *dq_bf, *dk_bf;      // after the rope backward
    bf16 *dv_bf;              // [N, Hkv*D]
    bf16 *dact, *dgate, *dup; // [N, I]
    float *scratch;           // rmsnorm_backward's partial sums of dw
    size_t scratch_n;
};

struct GpuModel {
    int device;
    ModelConfig cfg;
    ParamLayout layout;
    cudaStream_t stream;
    Gemm *gemm;
    float *master;                  // [total] fp32
    float *grads, *adam_m, *adam_v; // [total] fp32, NULL until first needed
    bf16 *params;                   // [total]
    float *inv_freq;                // [D/2] rope frequencies, scaling applied
    float *norm_out;                // [1] sum of squares of the gradients
    float *norm_scratch;            // its reduction's partial sums
    GpuActs acts;
    // a tensor-parallel partition: its group's collectives (tensor_parallel.h), on host buffers
    // staged through tp_host, or on device buffers when tp->device_buffers (NCCL). NULL: a whole
    // model.
    const TensorParallel *tp;
    float *tp_host;
    size_t tp_host_n;
    unsigned char norm_counts[NUM_PARAM_KINDS]; // kinds counted in the norm (tp_kind_counts)
    int last_N;                                 // rows of the last forward (the backward checks it)
    float logit_scale; // 1/T of the last forward's head (1: the raw logits)
};

// The tp group's allreduce (SUM, or MAX when max) of the device buffer buf [n] in place, after
// the work queued on the model's stream: directly for device_buffers hooks, else through the host
// (gpu_model.cu). A no-op without tp.
void tp_allreduce_dev(GpuModel *g, float *buf, size_t n, int max);

// Layer l's tensor of kind k in a slab of the model's layout (NULL when the config has none).
template <class T> T *param_at(const GpuModel *g, T *slab, int k, int l) {
    const ParamSpec *s = &g->layout.p[k];
    return s->size ? slab + s->offset + (size_t)l * s->per_layer : nullptr;
}

// The head's weights [V, C]: wte when tied, lm_head otherwise.
inline int head_kind(const GpuModel *g) {
    return g->cfg.tie_word_embeddings ? P_WTE : P_LM_HEAD;
}

// One device allocation carved into buffers, each 256-byte aligned: *bufs[i].ptr points at
// bufs[i].bytes of it. Returns the allocation (to cudaFree). When the device has too little free
// memory, stops with "WHAT needs X GiB of GPU memory and Y GiB are free (HINT: hint)".
struct DevBuf {
    void **ptr;
    size_t bytes;
};
void *dev_slab(const DevBuf *bufs, int n, const char *what, const char *hint);

// out [N, OC] = inp [N, IC] w^T (+ bias), bf16 out (gpu_model.cu).
void linear(GpuModel *g, bf16 *out, const bf16 *inp, const bf16 *w, const bf16 *bias, int N, int IC,
            int OC);
// out [N, OC] = res [N, OC] + inp [N, IC] w^T (+ bias) in fp32: a projection that adds straight
// into the residual stream (out may be res).
void linear_residual(GpuModel *g, float *out, const float *res, const bf16 *inp, const bf16 *w,
                     const bf16 *bias, int N, int IC, int OC);
// The forward of a packed batch up to the final norm (acts.lnf), keeping every layer's
// activations; acts.k and acts.v then hold each layer's keys (after rope) and values, [L, N,
// Hkv*D] (the decode's prompt cache).
void gpu_forward_body(GpuModel *g, const PackedBatch *batch);

#endif
