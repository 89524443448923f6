#include "tests.h"

void register_tp_tests(void) {}
