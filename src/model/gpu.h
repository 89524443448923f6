// The CUDA backend as the C code sees it (src/model/cuda/, C linkage).
//
// A Model with m->gpu set runs model_forward, model_backward, model_zero_grad,
// model_clip_grad_norm, model_adamw_step and sampler_generate on its GPU: bf16 weights and
// activations, fp32 master weights, gradients and AdamW moments on the device, every sum in
// fp32. The host slabs (m->params, m->adam_m, m->adam_v) are then copies that model_sync_host
// refreshes (before a save or a weight broadcast) and model_sync_device pushes back (after a
// load or a receive).
//
// Without nvcc at build time these functions exist too (src/model/gpu_none.c): the device count is
// 0 and gpu_unavailable says why.
#ifndef GEMC_GPU_H
#define GEMC_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "model/model.h"
#include "model/sampler.h"

// Number of usable CUDA devices; 0 when gemc was built without CUDA, or there is no driver or
// no device (never an error).
int gpu_device_count(void);
// "NVIDIA H100 80GB HBM3, sm_90, 79.2 GiB" for device `index` into buf. Returns 0, or -1 when
// the device does not exist.
int gpu_describe(int index, char *buf, size_t n);
// Why there is no device to run on: one line for an error message, with its HINT.
const char *gpu_unavailable(void);
// The device's UUID as text ("GPU-1f2e..."), the same in every process that sees the device,
// however CUDA_VISIBLE_DEVICES numbers it. Returns 0, or -1 when the device does not exist.
int gpu_device_uuid(int index, char *buf, size_t n);

typedef struct GpuModel GpuModel;

// Copies m (its config, fp32 params and, when present, AdamW moments) to device `device`.
// Returns NULL with the reason in gemc_error() when it cannot (no device, out of memory, a
// tensor-parallel partition).
GpuModel *gpu_model_create(const Model *m, int device);
void gpu_model_free(GpuModel *g);
// The CUDA device the model lives on.
int gpu_model_device(const GpuModel *g);

// The Model API on the device. Batches, log-probs, entropies and dlogprobs are host arrays.
// logit_scale (1/T, model.h's logit_temperature) multiplies the logits before the head's
// softmax; the backward of this forward goes through the same scale.
void gpu_model_forward(GpuModel *g, const PackedBatch *batch, float *logprobs, float *entropy,
                       float logit_scale);
void gpu_model_backward(GpuModel *g, const PackedBatch *batch, const float *dlogprobs);
void gpu_model_zero_grad(GpuModel *g);
float gpu_model_clip_grad_norm(GpuModel *g, float max_norm);
// One AdamW step with the bias corrections of step t (1-based), as model_adamw_step.
void gpu_model_adamw_step(GpuModel *g, const AdamWConfig *opt, long t);

// Host <-> device copies of the fp32 slabs ([layout.total] each; a NULL one is skipped). The
// upload also refreshes the bf16 weights from the fp32 master.
void gpu_model_download(GpuModel *g, float *params, float *adam_m, float *adam_v);
void gpu_model_upload(GpuModel *g, const float *params, const float *adam_m, const float *adam_v);

// The fp32 gradient slab [layout.total] on the device (for an allreduce across learners), and
// host copies of it (the MPI fallback when learners share a GPU).
float *gpu_model_grads_device(GpuModel *g);
void gpu_model_grads_download(GpuModel *g, float *host);
void gpu_model_grads_upload(GpuModel *g, const float *host);
// Waits for the device's queued work (before a collective reads device memory).
void gpu_model_synchronize(GpuModel *g);

// The sampler's KV-cache decode and draw on the device (src/model/cuda/gpu_decode.cu), as
// decode_prefill/decode_step (src/model/cpu/decode.h) plus sample_token_limited: sampler_generate
// drives it when m->gpu is set, with the same slots, uniforms and bookkeeping as on the CPU.
typedef struct GpuDecode GpuDecode;
// Prefills the packed prompts (every token checked by the caller) for `rows` slots, slot s
// continuing prompt slot_prompt[s] with room for gen_cap fed tokens. The next gpu_decode_draw
// of slot s draws from its prompt's last logits.
GpuDecode *gpu_decode_begin(GpuModel *g, const PackedBatch *prompts, int rows,
                            const int *slot_prompt, int gen_cap);
// Draws one token for each slots[r], r < n, with uniform u[r], from the slot's current logits
// (those of the last begin or step that fed it): out[r] as sample_token_limited gives it.
// with_entropy 0 leaves the entropies and the self-certainty 0 (benchmarks time what they cost).
void gpu_decode_draw(GpuDecode *d, int n, const int *slots, const float *u, int n_draw,
                     const SamplingConfig *sc, int with_entropy, TokenDraw *out);
// Feeds tokens[r] to slot slots[r] (distinct slots with room left), computing their next
// logits.
void gpu_decode_step(GpuDecode *d, int n, const int *slots, const int *tokens);
void gpu_decode_end(GpuDecode *d);

#ifdef __cplusplus
}
#endif

#endif
