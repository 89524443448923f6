// placeholder
#include "tests.h"
void register_task_tests(void) {}
