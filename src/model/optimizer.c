// Gradient clipping and AdamW on the parameter slab, as PyTorch computes them.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/gpu.h"
#include "model/model.h"

#define NORM_CHUNK 65536 // elements per partial sum of squares

// The full model's config of a tensor-parallel partition (the inverse of tp_local_config).
static ModelConfig tp_full_config(const Model *m) {
    ModelConfig full = m->cfg;
    const int size = m->tp->size;
    full.num_heads *= size;
    full.num_kv_heads *= size;
    full.intermediate_size *= size;
    full.vocab_size = m->tp->vocab_full;
    return full;
}

// With m->tp (a tensor-parallel partition), the norm is the whole model's: each rank sums the squares
// of its partition, counting the replicated tensors (norms, o bias) on rank 0 only (tp_norm_mask),
// the group sums the ranks' totals, and every rank clips its partition by the same coefficient.
// Data-parallel replicas must have allreduced (averaged) their gradients BEFORE this call: the
// norm is of the gradients as they are here.
float model_clip_grad_norm(Model *m, float max_norm) {
    if (m->gpu) return gpu_model_clip_grad_norm(m->gpu, max_norm);
    if (!m->grads) return 0.0f;
    const size_t total = m->layout.total;
    const long nchunks = (long)((total + NORM_CHUNK - 1) / NORM_CHUNK);
    double *partial = mallocCheck((size_t)(nchunks > 0 ? nchunks : 1) * sizeof(double));
    const float *g = m->grads;
    unsigned char *mask = NULL;
    if (m->tp) {
        const ModelConfig full = tp_full_config(m);
        mask = mallocCheck(total ? total : 1);
        tp_norm_mask(&full, m->tp->rank, m->tp->size, mask);
    }
    // each chunk summed by one thread, the chunk sums added in order: no dependence on threads
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nchunks; c++) {
        size_t i0 = (size_t)c * NORM_CHUNK, i1 = i0 + NORM_CHUNK < total ? i0 + NORM_CHUNK : total;
        double s = 0.0;
        if (mask) {
            for (size_t i = i0; i < i1; i++)
                if (mask[i]) s += (double)g[i] * (double)g[i];
        } else {
            for (size_t i = i0; i < i1; i++) s += (double)g[i] * (double)g[i];
        }
        partial[c] = s;
    }
    double ss = 0.0;
    for (long c = 0; c < nchunks; c++) ss += partial[c];
    free(partial);
    free(mask);
    if (m->tp) {
        // the group's sum of squares (the hook sums floats: the same bits on every rank)
        float part = (float)ss;
        m->tp->allreduce_sum(m->tp->ctx, &part, 1);
        ss = (double)part;
    }
    const float norm = (float)sqrt(ss);
    if (max_norm > 0.0f) {
        // torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), applied
        // clamped to 1 (scaling by 1 changes nothing, so only a coefficient below 1 is applied)
        const float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f) {
            float *gw = m->grads;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < total; i++) gw[i] *= coef;
        }
    }
    return norm;
}

// torch.optim.AdamW (single-tensor implementation) on one block of the slab. The scalars are
// computed in double as Python does and rounded to float where torch hands them to a float op.
static void adamw_block(float *p, const float *g, float *mo, float *vo, size_t n, float decay_mul,
                        float w1, float b2, float w2, float bc2_sqrt, float eps, float neg_step) {
    // simd: the same IEEE operations in the same order per element, just 16 lanes at a time
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay_mul; // param.mul_(1 - lr * weight_decay)
        // exp_avg.lerp_(grad, 1 - beta1), with torch's two forms of lerp
        float mi = w1 < 0.5f ? mo[i] + w1 * (g[i] - mo[i]) : g[i] - (g[i] - mo[i]) * (1.0f - w1);
        float vi = vo[i] * b2;                    // exp_avg_sq.mul_(beta2)
        vi = vi + w2 * g[i] * g[i];               //   .addcmul_(grad, grad, value=1 - beta2)
        float denom = sqrtf(vi) / bc2_sqrt + eps; // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
        p[i] = pi + neg_step * mi / denom;        // param.addcdiv_(exp_avg, denom, -step_size)
        mo[i] = mi;
        vo[i] = vi;
    }
}

void model_adamw_step(Model *m, const AdamWConfig *opt) {
    if (m->gpu) {
        gpu_model_adamw_step(m->gpu, opt, ++m->adam_t);
        return;
    }
    const size_t total = m->layout.total;
    if (!m->grads) m->grads = callocCheck(total, sizeof(float));
    if (!m->adam_m) {
        m->adam_m = callocCheck(total, sizeof(float));
        m->adam_v = callocCheck(total, sizeof(float));
    }
    const long t = m->adam_t + 1;
    AdamWScalars a;
    adamw_scalars(opt, t, &a);
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &m->layout.p[k];
        if (!s->size) continue;
        // decoupled weight decay on matrices only (never norms or biases)
        adamw_block(m->params + s->offset, m->grads + s->offset, m->adam_m + s->offset,
                    m->adam_v + s->offset, s->size, s->ndim == 2 ? a.decay_mul : 1.0f, a.w1, a.b2,
                    a.w2, a.bc2_sqrt, a.eps, a.neg_step);
    }
    m->adam_t = t;
}

void adamw_scalars(const AdamWConfig *opt, long t, AdamWScalars *s) {
    const double lr = opt->lr, b1 = opt->beta1, b2 = opt->beta2, wd = opt->weight_decay;
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    s->neg_step = (float)(-(lr / bc1));
    s->bc2_sqrt = (float)sqrt(bc2);
    s->w1 = (float)(1.0 - b1), s->w2 = (float)(1.0 - b2);
    s->b2 = (float)b2, s->eps = opt->eps;
    s->decay_mul = (float)(1.0 - lr * wd);
}
