// A Llama-family decoder (llama, qwen2, mistral) on the CPU backend: fp32, OpenMP, gemc's GEMM.
//
// Parameters, gradients and AdamW moments are four slabs of the same layout
// (model_config.h). Batches are packed: B sequences back to back, N tokens in all, no
// padding anywhere, so no padding can enter a sum.
#ifndef GEMC_MODEL_H
#define GEMC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/dtype.h"
#include "model/model_config.h"
#include "model/tensor_parallel.h"

// B sequences packed into one token array. Sequence b is tokens[offsets[b] .. offsets[b+1]).
//
// A shared prefix (the prompt of a group of candidates, of a DPO pair) is computed once: with
// prefix non-NULL, a sequence b with prefix[b] = a >= 0 continues sequence a. Its tokens read as
// a's followed by its own, at positions len(a) onwards; its queries attend over a's keys and
// values, then its own, never over another sequence's (on the CUDA backend the attention runs
// over a copy of a's rows in front of b's, src/model/cuda/prefix.cuh; every other layer once on
// a's rows). a comes before b, has no prefix itself
// and prefixes at most PACKED_MAX_SHARERS sequences. Every output of b (log-probs, entropies,
// the gradients through them) is what the sequence a + b alone would give at its own positions:
// the same bits in the forward, the same sums in another order in the backward (a's keys and
// values gather the gradients of all the sequences reading them).
#define PACKED_MAX_SHARERS 32
typedef struct {
    int B;
    int N;              // offsets[B]
    const int *tokens;  // [N]
    const int *offsets; // [B+1], offsets[0] == 0, non-decreasing
    const int *prefix;  // [B] or NULL (no sequence has a prefix)
} PackedBatch;

typedef struct CpuActs CpuActs;   // activations kept for backward (src/model/cpu/)
typedef struct GpuModel GpuModel; // the model's copy on a GPU (gpu.h)

typedef struct {
    ModelConfig cfg;
    ParamLayout layout;
    float *params;        // [layout.total]
    float *grads;         // [layout.total], NULL until the first backward
    float *adam_m;        // [layout.total], NULL until the first AdamW step
    float *adam_v;        // [layout.total]
    long adam_t;          // AdamW steps taken
    float *rope_inv_freq; // [head_dim / 2], with rope scaling applied
    CpuActs *acts;        // grown to the largest batch seen
    // NULL for a whole model; for a tensor-parallel partition (cfg is then tp_local_config's), the
    // tp group whose collectives the forward, backward and gradient norm call
    const TensorParallel *tp;
    // NULL on the CPU backend. Set by model_to_gpu: the forward, backward, gradient norm, AdamW
    // and the sampler then run on the device, and params/adam_m/adam_v are host copies that
    // model_sync_host refreshes.
    GpuModel *gpu;
    // The temperature T of the policy the forward computes: log-probs and entropies of
    // softmax(z / T), and the backward through it. 0 or 1: the raw logits. The SEGA loss sets it
    // to sampling.temperature, the policy the candidates were drawn from (docs/algorithm.md
    // section 5).
    float logit_temperature;
} Model;

typedef struct {
    float lr;
    float beta1, beta2, eps;
    float weight_decay; // decoupled; applied to matrices only, never to norms or biases
} AdamWConfig;

// Allocates the parameter slab for `cfg` (zeroed) and the rope table.
void model_init(Model *m, const ModelConfig *cfg);
// Random init as transformers does: matrices ~ N(0, initializer_range), norms 1, biases 0.
void model_init_random(Model *m, uint64_t seed);
void model_free(Model *m);

// Loads DIR/config.json and the weights of DIR (one file, or several with an index), converting
// F32, BF16 or F16 to fp32. Returns 0, or -1 with one error line in gemc_error().
int model_load_hf(Model *m, const char *dir);
// Writes DIR/config.json and DIR/model.safetensors in `dtype` (F32, BF16 or F16), with the
// Hugging Face tensor names; each file atomically. Creates DIR when missing.
int model_save_hf(const Model *m, const char *dir, DType dtype);
// Writes the model folder, plus the tokenizer files of tokenizer_src (a tokenizer.json or a
// folder holding one) when it is non-NULL. A source folder without a tokenizer.json is skipped
// unless required (an explicit --tokenizer).
int model_save_folder(const Model *m, const char *out, DType dtype, const char *tokenizer_src,
                      int required);

// Forward over a packed batch (at m->logit_temperature). For each token position i of sequence b:
//   logprobs[i] = ln p(tokens[i+1] | tokens[offsets[b] .. i]), 0 at the sequence's last position;
//   entropy[i]  = entropy (nats) of the next-token distribution at i, for every position.
// Either output may be NULL. Every token must be in [0, vocab_size) (checked by callers).
void model_forward(Model *m, const PackedBatch *batch, float *logprobs, float *entropy);
// Backward of the last forward (same batch): accumulates d(loss)/d(params) into m->grads, given
// dlogprobs[i] = d(loss)/d(logprobs[i]) (entries at sequence ends are ignored).
void model_backward(Model *m, const PackedBatch *batch, const float *dlogprobs);
void model_zero_grad(Model *m);

// Global L2 norm of the gradients (fp32 chunks summed in a fixed order, so the result does not
// depend on the thread count). When max_norm > 0 and the norm exceeds it, scales the gradients
// by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does. Returns the norm before.
float model_clip_grad_norm(Model *m, float max_norm);
// One AdamW step (PyTorch's torch.optim.AdamW update), then m->adam_t += 1.
void model_adamw_step(Model *m, const AdamWConfig *opt);

// The scalars of AdamW step t (1-based) as torch computes them: in double as Python does, rounded
// where torch hands them to a float operation. Both backends' per-element updates take them.
typedef struct {
    float neg_step;  // -lr / (1 - beta1^t)
    float bc2_sqrt;  // sqrt(1 - beta2^t)
    float w1, w2;    // 1 - beta1, 1 - beta2
    float b2, eps;   // beta2, eps
    float decay_mul; // 1 - lr * weight_decay, for matrices (norms and biases take 1)
} AdamWScalars;
void adamw_scalars(const AdamWConfig *opt, long t, AdamWScalars *s);

// Moves the model's compute to CUDA device `device` (its weights and AdamW state are copied
// there). Returns 0, or -1 with the reason in gemc_error() (no device, a build without CUDA,
// not enough memory).
int model_to_gpu(Model *m, int device);
// On a GPU model: model_sync_host copies the device's fp32 weights and AdamW moments into
// m->params, m->adam_m and m->adam_v (a save, a broadcast); model_sync_device copies m->params
// to the device after the host wrote them (received weights). No-ops on the CPU.
void model_sync_host(const Model *m);
void model_sync_device(Model *m);

// Frees the activation buffers (model_cpu.c); model_free calls it.
void model_free_acts(Model *m);

// Checks every token id of `tokens` against the vocabulary; -1 with an error naming the first
// bad position otherwise.
int model_check_tokens(const Model *m, const int *tokens, int n);

#endif
