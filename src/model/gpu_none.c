// The GPU API (gpu.h) of a gemc built without nvcc: no device, and the reason says how to get
// one. Nothing here can be reached with a model on the device, since none can be created.
#include "base/common.h"
#include "model/gpu.h"

int gpu_device_count(void) {
    return 0;
}

int gpu_describe(int index, char *buf, size_t n) {
    (void)index, (void)buf, (void)n;
    return -1;
}

const char *gpu_unavailable(void) {
    return "gemc was built without CUDA (HINT: install the CUDA toolkit so that nvcc is on the "
           "PATH or in /usr/local/cuda/bin, run `make clean all`, or set run.device=cpu)";
}

int gpu_device_uuid(int index, char *buf, size_t n) {
    (void)index, (void)buf, (void)n;
    return -1;
}

GpuModel *gpu_model_create(const Model *m, int device) {
    (void)m, (void)device;
    gemc_set_error("%s", gpu_unavailable());
    return NULL;
}

// No GpuModel can exist, so the rest is unreachable: each says so if it ever is reached.
#define UNREACHABLE() gemc_fatal("%s: no GPU model exists in a build without CUDA", __func__)

void gpu_model_free(GpuModel *g) {
    (void)g;
}
int gpu_model_device(const GpuModel *g) {
    (void)g;
    UNREACHABLE();
    return -1;
}
void gpu_model_forward(GpuModel *g, const PackedBatch *b, float *lp, float *ent, float scale) {
    (void)g, (void)b, (void)lp, (void)ent, (void)scale;
    UNREACHABLE();
}
void gpu_model_backward(GpuModel *g, const PackedBatch *b, const float *dlp) {
    (void)g, (void)b, (void)dlp;
    UNREACHABLE();
}
void gpu_model_zero_grad(GpuModel *g) {
    (void)g;
    UNREACHABLE();
}
float gpu_model_clip_grad_norm(GpuModel *g, float max_norm) {
    (void)g, (void)max_norm;
    UNREACHABLE();
    return 0.0f;
}
void gpu_model_adamw_step(GpuModel *g, const AdamWConfig *opt, long t) {
    (void)g, (void)opt, (void)t;
    UNREACHABLE();
}
void gpu_model_download(GpuModel *g, float *p, float *m, float *v) {
    (void)g, (void)p, (void)m, (void)v;
    UNREACHABLE();
}
void gpu_model_upload(GpuModel *g, const float *p, const float *m, const float *v) {
    (void)g, (void)p, (void)m, (void)v;
    UNREACHABLE();
}
float *gpu_model_grads_device(GpuModel *g) {
    (void)g;
    UNREACHABLE();
    return NULL;
}
void gpu_model_grads_download(GpuModel *g, float *host) {
    (void)g, (void)host;
    UNREACHABLE();
}
void gpu_model_grads_upload(GpuModel *g, const float *host) {
    (void)g, (void)host;
    UNREACHABLE();
}
void gpu_model_synchronize(GpuModel *g) {
    (void)g;
    UNREACHABLE();
}
GpuDecode *gpu_decode_begin(GpuModel *g, const PackedBatch *prompts, int rows,
                            const int *slot_prompt, int gen_cap) {
    (void)g, (void)prompts, (void)rows, (void)slot_prompt, (void)gen_cap;
    UNREACHABLE();
    return NULL;
}
void gpu_decode_draw(GpuDecode *d, int n, const int *slots, const float *u, int n_draw,
                     const SamplingConfig *sc, int with_entropy, TokenDraw *out) {
    (void)d, (void)n, (void)slots, (void)u, (void)n_draw, (void)sc, (void)with_entropy, (void)out;
    UNREACHABLE();
}
void gpu_decode_step(GpuDecode *d, int n, const int *slots, const int *tokens) {
    (void)d, (void)n, (void)slots, (void)tokens;
    UNREACHABLE();
}
void gpu_decode_end(GpuDecode *d) {
    (void)d;
    UNREACHABLE();
}
