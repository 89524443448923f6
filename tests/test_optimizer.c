// DEV PLACEHOLDER
#include "tests.h"
void register_optimizer_tests(void) {}
