// DEV PLACEHOLDER
#include "common.h"
