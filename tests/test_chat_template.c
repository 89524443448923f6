// placeholder
#include "tests.h"
void register_chat_template_tests(void) {}
