// Rotary embedding frequencies, as transformers computes them (ROPE_INIT_FUNCTIONS).
#ifndef GEMC_ROPE_H
#define GEMC_ROPE_H

#include "model/model_config.h"

// inv_freq[i] for i < head_dim / 2: 1 / theta^(2i / head_dim), then the config's scaling
// (linear: / factor; llama3: low frequencies / factor, high ones kept, a smooth blend between).
// The pair (i, i + head_dim/2) of a head rotates by position * inv_freq[i] (rotate-half layout).
void rope_inv_freq(const ModelConfig *cfg, double *inv_freq);

#endif
