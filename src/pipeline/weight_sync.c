// Learner 0 to the generators: each new policy version as one small header and the fp32 weights
// in buckets of pipeline.bucket_mb (a few large broadcasts, not one per tensor).
#include <stdint.h>

#include "pipeline/pipeline_internal.h"

typedef struct {
    int64_t version;
    int64_t stop; // 1: no more weights, finish
    int64_t total;
} SyncHeader;

static size_t bucket_floats(const Pipeline *pl) {
    return (size_t)pl->c->pipeline.bucket_mb * (1u << 20) / sizeof(float);
}

void weights_send(Pipeline *pl, const float *full, size_t total, long version, int stop) {
    SyncHeader h = {version, stop, (int64_t)total};
    comm_bcast(pl->sync, &h, sizeof h, 0);
    if (stop) return;
    const size_t bucket = bucket_floats(pl);
    for (size_t off = 0; off < total; off += bucket) {
        size_t n = total - off < bucket ? total - off : bucket;
        // the root only reads its buffer
        comm_bcast(pl->sync, (float *)(full + off), n * sizeof(float), 0);
    }
}

int weights_recv(Pipeline *pl, float *full, size_t total, long *version) {
    SyncHeader h;
    comm_bcast(pl->sync, &h, sizeof h, 0);
    if (h.stop) return 1;
    if (h.total != (int64_t)total)
        pipeline_fatal(pl,
                       "the learners sent %lld weights, this generator's model has %zu (the "
                       "ranks loaded different models?)",
                       (long long)h.total, total);
    const size_t bucket = bucket_floats(pl);
    for (size_t off = 0; off < total; off += bucket) {
        size_t n = total - off < bucket ? total - off : bucket;
        comm_bcast(pl->sync, full + off, n * sizeof(float), 0);
    }
    *version = (long)h.version;
    return 0;
}
