#include "tests.h"

void register_pipeline_tests(void) {}
