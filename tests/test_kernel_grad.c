// DEV PLACEHOLDER
#include "tests.h"
void register_kernel_grad_tests(void) {}
