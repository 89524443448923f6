// A growable int array: token ids of one sequence.
#ifndef GEMC_INTVEC_H
#define GEMC_INTVEC_H

#include <stdlib.h>

#include "base/common.h"

typedef struct {
    int *v; // NULL until the first push
    int n, cap;
} IntVec;

static inline void intvec_push(IntVec *a, int x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = (int *)realloc(a->v, sizeof(int) * (size_t)a->cap); // (int *): C++ includes it too
        if (!a->v) gemc_fatal("out of memory");
    }
    a->v[a->n++] = x;
}
static inline void intvec_free(IntVec *a) {
    free(a->v);
    a->v = NULL, a->n = a->cap = 0;
}

#endif
