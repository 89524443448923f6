#include "model/rope.h"

#include <math.h>

void rope_inv_freq(const ModelConfig *cfg, double *inv_freq) {
    int half = cfg->head_dim / 2;
    for (int i = 0; i < half; i++) {
        // transformers computes this in fp32; rounding here keeps the fp32 path identical
        float f = (float)(1.0 / pow(cfg->rope_theta, (double)(2 * i) / (double)cfg->head_dim));
        inv_freq[i] = f;
    }
    if (cfg->rope_type == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] /= cfg->rope_factor;
    } else if (cfg->rope_type == ROPE_LLAMA3) {
        double factor = cfg->rope_factor;
        double lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
        double old_ctx = cfg->rope_original_max_position_embeddings;
        double low_freq_wavelen = old_ctx / lo;
        double high_freq_wavelen = old_ctx / hi;
        for (int i = 0; i < half; i++) {
            double f = inv_freq[i];
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_freq_wavelen) {
                f = f / factor; // long wavelengths: interpolate fully
            } else if (wavelen >= high_freq_wavelen) {
                // in between: blend the scaled and unscaled frequencies
                double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
            inv_freq[i] = f;
        }
    }
}
