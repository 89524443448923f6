// placeholder
#include "tests.h"
void register_data_tests(void) {}
