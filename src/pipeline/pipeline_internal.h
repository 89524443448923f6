// What the roles of the pipeline share: the communicators, the schedule of policy versions and
// the learner-to-generator weight broadcast.
#ifndef GEMC_PIPELINE_INTERNAL_H
#define GEMC_PIPELINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/comm.h"
#include "config/config.h"

typedef struct {
    const GemConfig *c;
    int world_rank, world_size;
    int is_generator;
    int gen_rank;     // 0 .. generators-1, or -1
    int learner_rank; // 0 .. learners-1, or -1
    int dp_rank, n_dp, tp_rank;
    Comm *world;     // every rank
    Comm *learners;  // the learners (NULL on generators)
    Comm *tp;        // this learner's tensor-parallel group
    Comm *dp;        // the learners of this tp rank across the data-parallel groups
    Comm *dp_nccl;   // the same ranks over NCCL, for gradients on distinct GPUs (else NULL)
    Comm *tp_nccl;   // the tp group over NCCL, for GPU partitions on distinct GPUs (else NULL)
    Comm *sync;      // learner 0 (rank 0 here) and every generator: the weight broadcast
    long start_step; // the checkpoint this run resumes from; 0 for a fresh run
    char *shard_dir; // RUN/shards
    uint64_t shard_hash;
} Pipeline;

// The schedule. Step t's groups are sampled with policy version max(0, t - 1 - max_staleness),
// so the shards, and every bit of the run, do not depend on timing.
long pipeline_version_for_step(const GemConfig *c, long step);
// The first step whose shards the generators write: 1 on a fresh run; after a checkpoint at
// step s, s + max_staleness + 1 (the checkpoint holds the shards up to there).
long pipeline_first_generated_step(const Pipeline *pl);
// The learners broadcast version v after step v (and the resumed version at start) for every v
// in [start_step, pipeline_last_version_sent()]: exactly the versions the generators need.
long pipeline_last_version_sent(const Pipeline *pl);
// Generator gen's share of a step's batch: prompts [*j0, *j1) of the step's batch_size.
void pipeline_gen_slice(const GemConfig *c, int gen, int *j0, int *j1);

// Stops the whole job: one error line ("gemc: error: rank R (ROLE): ...") and MPI_Abort.
_Noreturn void pipeline_fatal(const Pipeline *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// The same with the recorded error (gemc_error()).
_Noreturn void pipeline_fail(const Pipeline *pl);

// Learner 0: the weights of `version` (the full fp32 slab) to every generator, as a header and
// buckets of pipeline.bucket_mb; with stop, only a header that tells the generators to finish.
void weights_send(Pipeline *pl, const float *full, size_t total, long version, int stop);
// Generators: the next message of weights_send into full [total]. Returns 1 for stop, else 0
// with *version set.
int weights_recv(Pipeline *pl, float *full, size_t total, long *version);

int generator_run(Pipeline *pl);
int learner_run(Pipeline *pl);

#endif
