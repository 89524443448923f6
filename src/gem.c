// placeholder
#include "gem.h"
