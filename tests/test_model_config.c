// DEV PLACEHOLDER
#include "tests.h"
void register_model_config_tests(void) {}
