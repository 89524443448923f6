// placeholder
#include "tests.h"
void register_tokenizer_real_tests(void) {}
