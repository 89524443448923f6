// (placeholder until its suite is written)
#include "cuda_tests.h"
void register_cuda_model_tests(void) {}
