// A generator rank: holds a full copy of the policy, samples k candidates for its slice of each
// step's prompts, scores and ranks them (Eq. 1), and writes one shard per step. New weights come
// from learner 0 as the schedule needs them (pipeline_version_for_step).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "pipeline/pipeline_internal.h"
#include "run/shard.h"
#include "stages/stage.h"

// A shard left by an earlier run of this configuration is reused when it is whole and is the
// one this schedule would write; anything else is removed (with a warning) and written again.
static int shard_reusable(const Pipeline *pl, const char *path, long step, long version) {
    if (!path_exists(path)) return 0;
    Shard s;
    int ok = 0;
    if (shard_read(path, &s, pl->shard_hash) != 0) {
        fprintf(stderr,
                "gemc: warning: rank %d (generator %d): %s; removing it and sampling "
                "its groups again\n",
                pl->world_rank, pl->gen_rank, gemc_error());
    } else if (s.step != step || s.policy_version != version || s.generator_rank != pl->gen_rank) {
        fprintf(stderr,
                "gemc: warning: rank %d (generator %d): %s holds step %ld, version %ld of "
                "generator %d, not step %ld, version %ld of generator %d; removing it and "
                "sampling its groups again\n",
                pl->world_rank, pl->gen_rank, path, s.step, s.policy_version, s.generator_rank,
                step, version, pl->gen_rank);
        shard_free(&s);
    } else {
        ok = 1;
        shard_free(&s);
    }
    if (!ok) unlink(path);
    return ok;
}

int generator_run(Pipeline *pl) {
    const GemConfig *c = pl->c;
    Policy p;
    Dataset ds;
    if (policy_load(&p, c->train.model, c) != 0) pipeline_fail(pl);
    if (policy_load_data(&p, c, c->train.data, DATA_PROMPTS, &ds) != 0) pipeline_fail(pl);
    if (groups_check_labels(c, &ds) != 0) pipeline_fail(pl);
    if (model_place(&p.model, c) != 0) pipeline_fail(pl);
    const int G = c->train.batch_size;
    const long steps = c->train.steps, first = pipeline_first_generated_step(pl);
    int j0, j1;
    pipeline_gen_slice(c, pl->gen_rank, &j0, &j1);

    // before any learner reads a shard: keep the reusable ones, remove the rest
    int *reuse = callocCheck((size_t)(steps + 2), sizeof(int));
    for (long t = first; t <= steps; t++) {
        char *path = shard_path(pl->shard_dir, t, pl->gen_rank);
        reuse[t] = shard_reusable(pl, path, t, pipeline_version_for_step(c, t));
        free(path);
    }
    comm_barrier(pl->world);

    // the data order from step 1: every rank draws the same prompts for a step
    DataOrder order;
    order_init(&order, ds.n, c->run.seed);
    int *idx = mallocCheck(sizeof(int) * (size_t)G);
    long *ids = mallocCheck(sizeof(long) * (size_t)G);
    order_skip(&order, (first - 1) * G);

    long held = -1; // the policy version of p's weights
    const size_t total = p.model.layout.total;
    for (long t = first; t <= steps; t++) {
        for (int j = 0; j < G; j++) idx[j] = order_next(&order);
        const long version = pipeline_version_for_step(c, t);
        const long had = held;
        while (held < version)
            if (weights_recv(pl, p.model.params, total, &held)) goto stop;
        if (held != had) model_sync_device(&p.model); // the received weights to the GPU
        if (reuse[t]) continue;
        // the sampler stamps every candidate with this version
        p.model.adam_t = held;
        GroupBatch gb;
        if (groups_sample(&gb, &p, c, &ds, idx + j0, j1 - j0, (int)t, NULL) != 0) pipeline_fail(pl);
        for (int j = j0; j < j1; j++) ids[j - j0] = (t - 1) * G + j;
        Shard s;
        if (groups_to_shard(&gb, &p, c, &ds, ids, t, held, pl->gen_rank, &s) != 0)
            pipeline_fail(pl);
        char *path = shard_path(pl->shard_dir, t, pl->gen_rank);
        if (shard_write(path, &s) != 0) pipeline_fail(pl);
        free(path);
        shard_free(&s);
        groups_free(&gb);
    }
stop:
    free(idx), free(ids), free(reuse);
    order_free(&order);
    dataset_free(&ds);
    policy_free(&p);
    return 0;
}
