// placeholder: filled in below
#include "chat_template.h"
