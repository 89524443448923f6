// DEV PLACEHOLDER
#include "model.h"
float model_clip_grad_norm(Model *m, float x) { (void)m; return x; }
void model_adamw_step(Model *m, const AdamWConfig *o) { (void)m; (void)o; }
