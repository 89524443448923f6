// DEV PLACEHOLDER
#include "tests.h"
void register_model_io_tests(void) {}
