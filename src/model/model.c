// Model lifetime: slabs, random init, token checks. The compute is in model_cpu.c.
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/gpu.h"
#include "base/rng.h"
#include "model/rope.h"

void model_init(Model *m, const ModelConfig *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    param_layout_init(&m->layout, cfg);
    m->params = callocCheck(m->layout.total, sizeof(float));
    int half = cfg->head_dim / 2;
    double *inv = callocCheck(half, sizeof(double));
    rope_inv_freq(cfg, inv);
    m->rope_inv_freq = callocCheck(half, sizeof(float));
    for (int i = 0; i < half; i++) m->rope_inv_freq[i] = (float)inv[i];
    free(inv);
}

void model_init_random(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    float std = m->cfg.initializer_range > 0 ? m->cfg.initializer_range : 0.02f;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &m->layout.p[k];
        float *w = m->params + s->offset;
        if (k == P_LN1 || k == P_LN2 || k == P_LNF) {
            for (size_t i = 0; i < s->size; i++) w[i] = 1.0f;
        } else if (s->ndim == 1) {
            memset(w, 0, s->size * sizeof(float)); // biases
        } else {
            for (size_t i = 0; i < s->size; i++) w[i] = std * rng_normal(&rng);
        }
    }
}

void model_free(Model *m) {
    gpu_model_free(m->gpu);
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->rope_inv_freq);
    model_free_acts(m);
    memset(m, 0, sizeof *m);
}

int model_check_tokens(const Model *m, const int *tokens, int n) {
    // a tensor-parallel partition holds a slice of the vocabulary; tokens index the whole of it
    const int V = m->tp ? m->tp->vocab_full : m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) {
            gemc_set_error("token id %d at position %d is outside the vocabulary [0, %d)",
                           tokens[i], i, V);
            return -1;
        }
    }
    return 0;
}

int model_to_gpu(Model *m, int device) {
    if (m->gpu) return 0;
    m->gpu = gpu_model_create(m, device);
    if (!m->gpu) return -1;
    // the host copies of the moments exist from here on, so a const model can be synced
    const size_t total = m->layout.total;
    if (!m->adam_m) {
        m->adam_m = callocCheck(total ? total : 1, sizeof(float));
        m->adam_v = callocCheck(total ? total : 1, sizeof(float));
    }
    return 0;
}

void model_sync_host(const Model *m) {
    if (m->gpu) gpu_model_download(m->gpu, m->params, m->adam_m, m->adam_v);
}

void model_sync_device(Model *m) {
    if (m->gpu) gpu_model_upload(m->gpu, m->params, NULL, NULL);
}
