// The Model API (model.h) on the CPU: the float instantiation of src/model/cpu/model.inc; a model
// moved to a GPU (m->gpu) goes to the CUDA backend instead (gpu.h).
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/cpu_kernels.h"
#include "model/gpu.h"
#include "model/model.h"

// 1 / T of the head, 1 for the raw logits.
static float model_logit_scale(const Model *m) {
    const float t = m->logit_temperature;
    return t > 0 && t != 1.0f ? 1.0f / t : 1.0f;
}

// The contract of PackedBatch.prefix (model.h); a batch that breaks it is a caller's bug.
static void check_prefixes(const PackedBatch *batch) {
    if (!batch->prefix) return;
    for (int b = 0; b < batch->B; b++) {
        const int a = batch->prefix[b];
        if (a < 0) continue;
        int sharers = 0;
        for (int c = a + 1; c < batch->B; c++) sharers += batch->prefix[c] == a;
        if (a >= b || batch->prefix[a] >= 0 || sharers > PACKED_MAX_SHARERS)
            gemc_fatal("model_forward: sequence %d's prefix %d is not an earlier sequence without "
                       "a prefix of its own, shared by at most %d",
                       b, a, PACKED_MAX_SHARERS);
    }
}

void model_forward(Model *m, const PackedBatch *batch, float *logprobs, float *entropy) {
    check_prefixes(batch);
    if (m->gpu) {
        gpu_model_forward(m->gpu, batch, logprobs, entropy, model_logit_scale(m));
        return;
    }
    if (!m->acts) m->acts = callocCheck(1, sizeof(CpuActs));
    // m->tp: a tensor-parallel partition, whose forward calls its group's collectives
    model_forward_cpu_tp_f32(&m->cfg, &m->layout, m->params, m->rope_inv_freq, m->acts, batch,
                             logprobs, entropy, m->tp, model_logit_scale(m));
}

void model_backward(Model *m, const PackedBatch *batch, const float *dlogprobs) {
    if (m->gpu) {
        gpu_model_backward(m->gpu, batch, dlogprobs);
        return;
    }
    if (!m->acts || m->acts->last_N != batch->N)
        gemc_fatal("model_backward: no forward of this batch (%d tokens) to go back through",
                   batch->N);
    if (!m->grads) m->grads = callocCheck(m->layout.total, sizeof(float));
    model_backward_cpu_tp_f32(&m->cfg, &m->layout, m->params, m->acts, batch, dlogprobs, m->grads,
                              m->tp);
}

void model_zero_grad(Model *m) {
    if (m->gpu) gpu_model_zero_grad(m->gpu);
    if (m->grads) memset(m->grads, 0, m->layout.total * sizeof(float));
}

void model_free_acts(Model *m) {
    if (!m->acts) return;
    acts_free_f32(m->acts);
    free(m->acts);
    m->acts = NULL;
}
