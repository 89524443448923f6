// Megatron tensor parallelism: the partition configs and the copies between a full parameter slab
// and the shards (see tensor_parallel.h for how each tensor is split).
#include "model/tensor_parallel.h"

#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "base/common.h"

// How a parameter kind is split over the tp ranks.
typedef enum {
    SPLIT_ROWS,  // column-parallel: output rows [rank * rows/size, + rows/size) of [OC, IC]
    SPLIT_COLS,  // row-parallel: input columns [rank * cols/size, + cols/size) of [C, IC]
    SPLIT_VOCAB, // vocab-parallel: rows [vocab_start, + local vocab) of [V, C]
    REPLICATED,  // the same on every rank
} SplitKind;

static SplitKind split_kind(ParamKind k) {
    switch (k) {
    case P_WTE:
    case P_LM_HEAD:
        return SPLIT_VOCAB;
    case P_WQ:
    case P_BQ:
    case P_WK:
    case P_BK:
    case P_WV:
    case P_BV:
    case P_WGATE:
    case P_WUP:
        return SPLIT_ROWS;
    case P_WO:
    case P_WDOWN:
        return SPLIT_COLS;
    default: // P_LN1, P_LN2, P_LNF, P_BO
        return REPLICATED;
    }
}

static int gcd(int a, int b) {
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// The vocabulary rows of rank `rank`: as even as possible, the first V % size ranks one more.
static void vocab_range(int V, int rank, int size, int *start, int *count) {
    const int base = V / size, extra = V % size;
    *count = base + (rank < extra);
    *start = rank * base + (rank < extra ? rank : extra);
}

int tp_local_config(const ModelConfig *full, int rank, int size, ModelConfig *local,
                    int *vocab_start) {
    if (size < 1 || rank < 0 || rank >= size) {
        gemc_set_error("tensor-parallel rank %d is outside a group of pipeline.tp %d", rank, size);
        return -1;
    }
    const struct {
        const char *key;
        int value;
    } split[] = {
        {"num_attention_heads", full->num_heads},
        {"num_key_value_heads", full->num_kv_heads},
        {"intermediate_size", full->intermediate_size},
    };
    for (int i = 0; i < 3; i++) {
        if (split[i].value % size == 0) continue;
        // the widths that do work: the divisors of all three
        const int g = gcd(gcd(full->num_heads, full->num_kv_heads), full->intermediate_size);
        char ok[256] = "";
        size_t len = 0;
        for (int d = 1; d <= g && len + 16 < sizeof ok; d++)
            if (g % d == 0)
                len += (size_t)snprintf(ok + len, sizeof ok - len, "%s%d", len ? ", " : "", d);
        gemc_set_error("%s %d does not divide over pipeline.tp %d (HINT: the model's %s is split "
                       "evenly over the tensor-parallel ranks; set pipeline.tp to one of %s)",
                       split[i].key, split[i].value, size, split[i].key, ok);
        return -1;
    }
    if (full->vocab_size < size) {
        gemc_set_error("vocab_size %d is smaller than pipeline.tp %d (HINT: every tensor-parallel "
                       "rank holds at least one vocabulary row; lower pipeline.tp)",
                       full->vocab_size, size);
        return -1;
    }
    *local = *full;
    local->num_heads = full->num_heads / size;
    local->num_kv_heads = full->num_kv_heads / size;
    local->intermediate_size = full->intermediate_size / size;
    int start, count;
    vocab_range(full->vocab_size, rank, size, &start, &count);
    local->vocab_size = count;
    if (vocab_start) *vocab_start = start;
    return 0;
}

// Copies rank `rank`'s partition between the full slab and the local one, kind by kind, layer by
// layer: to_full 0 reads the full slab, 1 writes it. Only the local elements [lo, hi) move, and
// local_params holds just those (element lo at local_params[0]).
static void shard_copy(const ModelConfig *full, int rank, int size, float *full_params,
                       float *local_params, int to_full, size_t lo, size_t hi) {
    ModelConfig lc;
    int v0;
    if (tp_local_config(full, rank, size, &lc, &v0) != 0) gemc_fatal_last();
    ParamLayout fl, ll;
    param_layout_init(&fl, full);
    param_layout_init(&ll, &lc);
    const int layers = full->num_layers;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *fs = &fl.p[k], *ls = &ll.p[k];
        if (!fs->size) continue;
        const int nl = fs->layered ? layers : 1;
        const SplitKind sk = split_kind((ParamKind)k);
        for (int l = 0; l < nl; l++) {
            float *f = full_params + fs->offset + (size_t)l * fs->per_layer;
            const size_t p0 = ls->offset + (size_t)l * ls->per_layer; // local offset of the tensor
            // each tensor as rows x cols, copied as `nrows` runs of `run` elements
            size_t fstart = 0, fstride = 0, lstride = 0, run = 0, nrows = 1;
            const size_t cols = fs->ndim == 2 ? (size_t)fs->shape[1] : 1;
            switch (sk) {
            case SPLIT_VOCAB:
                fstart = (size_t)v0 * cols;
                run = ls->per_layer;
                break;
            case SPLIT_ROWS:
                fstart = (size_t)rank * ls->per_layer;
                run = ls->per_layer;
                break;
            case SPLIT_COLS: {
                const size_t lcols = (size_t)ls->shape[1];
                nrows = (size_t)fs->shape[0];
                fstart = (size_t)rank * lcols;
                fstride = cols;
                lstride = lcols;
                run = lcols;
                break;
            }
            case REPLICATED:
                run = fs->per_layer;
                break;
            }
            for (size_t r = 0; r < nrows; r++) {
                // the part of this run's local elements [a, a + run) inside [lo, hi)
                const size_t a = p0 + r * lstride;
                const size_t b0 = a > lo ? a : lo, b1 = a + run < hi ? a + run : hi;
                if (b0 >= b1) continue;
                float *fr = f + fstart + r * fstride + (b0 - a), *pr = local_params + (b0 - lo);
                if (to_full)
                    memcpy(fr, pr, (b1 - b0) * sizeof(float));
                else
                    memcpy(pr, fr, (b1 - b0) * sizeof(float));
            }
        }
    }
}

void tp_partition_from_full(const ModelConfig *full, int rank, int size, const float *full_params,
                            float *local_params) {
    // the full slab is only read when to_full is 0
    shard_copy(full, rank, size, (float *)full_params, local_params, 0, 0, SIZE_MAX);
}

void tp_partition_to_full(const ModelConfig *full, int rank, int size, const float *local_params,
                          float *full_params) {
    shard_copy(full, rank, size, full_params, (float *)local_params, 1, 0, SIZE_MAX);
}

void tp_partition_range_to_full(const ModelConfig *full, int rank, int size, const float *chunk,
                                size_t lo, size_t hi, float *full_params) {
    shard_copy(full, rank, size, full_params, (float *)chunk, 1, lo, hi);
}

void tp_norm_mask(const ModelConfig *full, int rank, int size, unsigned char *mask) {
    ModelConfig lc;
    int v0;
    if (tp_local_config(full, rank, size, &lc, &v0) != 0) gemc_fatal_last();
    ParamLayout ll;
    param_layout_init(&ll, &lc);
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &ll.p[k];
        memset(mask + s->offset, tp_kind_counts((ParamKind)k, rank), s->size);
    }
}

int tp_kind_counts(ParamKind k, int rank) {
    return split_kind(k) != REPLICATED || rank == 0;
}
