// placeholder
#include "sampler.h"
