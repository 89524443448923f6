// DEV PLACEHOLDER
#include "tests.h"
void register_safetensors_tests(void) {}
