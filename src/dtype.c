// DEV PLACEHOLDER (replaced by the I/O work)
#include "dtype.h"
