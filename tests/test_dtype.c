// DEV PLACEHOLDER
#include "tests.h"
void register_dtype_tests(void) {}
