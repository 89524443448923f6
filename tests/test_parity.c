// DEV PLACEHOLDER
#include "tests.h"
void register_parity_tests(void) {}
