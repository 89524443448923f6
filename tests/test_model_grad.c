// DEV PLACEHOLDER
#include "tests.h"
void register_model_grad_tests(void) {}
