// placeholder
#include "tests.h"
void register_utf8_tests(void) {}
void register_tokenizer_tests(void) {}
