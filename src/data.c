// placeholder: filled in below
#include "data.h"
