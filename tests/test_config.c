// placeholder until the config tests land
#include "tests.h"
void register_config_tests(void) {}
