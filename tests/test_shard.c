#include "tests.h"

void register_shard_tests(void) {}
