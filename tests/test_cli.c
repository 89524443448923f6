// DEV PLACEHOLDER
#include "tests.h"
void register_cli_tests(void) {}
