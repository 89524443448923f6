// The pipeline's set-up: the launch check, the roles and communicators, where a run resumes
// from, SIGTERM, and the schedule of policy versions both roles follow.
#include "pipeline/pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "pipeline/mpi_check.h"
#include "pipeline/pipeline_internal.h"
#include "stages/checkpoint.h"
#include "stages/stage.h"

int pipeline_check_launch(const GemConfig *c, int world_size) {
    const PipelineConfig *p = &c->pipeline;
    if (p->generators + p->learners != world_size) {
        gemc_set_error("started as %d ranks, but pipeline.generators + pipeline.learners = %d + "
                       "%d = %d (HINT: run mpirun -np %d, or set pipeline.generators=%d "
                       "pipeline.learners=%d)",
                       world_size, p->generators, p->learners, p->generators + p->learners,
                       p->generators + p->learners, world_size > 1 ? world_size / 2 : 1,
                       world_size > 1 ? world_size - world_size / 2 : 1);
        return -1;
    }
    if (p->learners % p->tp != 0) {
        gemc_set_error("pipeline.learners = %d is not divisible by pipeline.tp = %d: learners "
                       "form data-parallel groups of tp ranks (HINT: make pipeline.learners a "
                       "multiple of pipeline.tp)",
                       p->learners, p->tp);
        return -1;
    }
    if (p->generators > c->train.batch_size) {
        gemc_set_error("pipeline.generators = %d is more than train.batch_size = %d: each "
                       "generator samples a share of a step's prompts (HINT: at most %d "
                       "generators, or a larger batch)",
                       p->generators, c->train.batch_size, c->train.batch_size);
        return -1;
    }
    if (c->train.stop_on_collapse > 0) {
        gemc_set_error("train.stop_on_collapse stops a single-process `gemc train`; the "
                       "distributed pipeline logs the probe (eval.probe) but cannot stop on it yet "
                       "(HINT: train.stop_on_collapse=0, and watch probe_accuracy in the metrics)");
        return -1;
    }
    if (p->collectives == COLLECTIVES_NCCL && c->run.device == DEVICE_CPU) {
        gemc_set_error("pipeline.collectives: nccl runs the learners' gradients between GPUs, and "
                       "run.device is cpu (HINT: pipeline.collectives=mpi, or run.device=cuda)");
        return -1;
    }
    return 0;
}

// ---- the schedule

long pipeline_version_for_step(const GemConfig *c, long step) {
    long v = step - 1 - c->pipeline.max_staleness;
    return v > 0 ? v : 0;
}

long pipeline_first_generated_step(const Pipeline *pl) {
    return pl->start_step == 0 ? 1 : pl->start_step + pl->c->pipeline.max_staleness + 1;
}

long pipeline_last_version_sent(const Pipeline *pl) {
    return pipeline_version_for_step(pl->c, pl->c->train.steps);
}

void pipeline_gen_slice(const GemConfig *c, int gen, int *j0, int *j1) {
    const long G = c->train.batch_size, n = c->pipeline.generators;
    *j0 = (int)(G * gen / n);
    *j1 = (int)(G * (gen + 1) / n);
}

// ---- errors

static void role_name(const Pipeline *pl, char *buf, size_t n) {
    if (!pl)
        snprintf(buf, n, "rank ?");
    else if (pl->is_generator)
        snprintf(buf, n, "rank %d (generator %d)", pl->world_rank, pl->gen_rank);
    else
        snprintf(buf, n, "rank %d (learner %d)", pl->world_rank, pl->learner_rank);
}

void pipeline_fatal(const Pipeline *pl, const char *fmt, ...) {
    char who[64], msg[1024];
    role_name(pl, who, sizeof who);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "gemc: error: %s: %s\n", who, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

void pipeline_fail(const Pipeline *pl) {
    pipeline_fatal(pl, "%s", gemc_error());
}

// ---- set-up

static Comm *split(Pipeline *pl, int member, int key, const char *name) {
    MPI_Comm sub;
    mpiCheck(MPI_Comm_split(MPI_COMM_WORLD, member ? 1 : MPI_UNDEFINED, key, &sub));
    if (!member) return NULL;
    Comm *c = comm_create(sub, COMM_MPI, pl->c->pipeline.timeout, name);
    mpiCheck(MPI_Comm_free(&sub));
    return c;
}

// Splits of a split: one communicator per value of color among the learners.
static Comm *split_learners(Pipeline *pl, int color, int key, const char *name) {
    MPI_Comm sub;
    mpiCheck(MPI_Comm_split(comm_mpi(pl->learners), color, key, &sub));
    Comm *c = comm_create(sub, COMM_MPI, pl->c->pipeline.timeout, name);
    mpiCheck(MPI_Comm_free(&sub));
    return c;
}

int pipeline_train(const GemConfig *c) {
    int provided;
    mpiCheck(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    Pipeline pl = {.c = c};
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &pl.world_rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &pl.world_size));
    const PipelineConfig *pc = &c->pipeline;
    pl.is_generator = pl.world_rank < pc->generators;
    pl.gen_rank = pl.is_generator ? pl.world_rank : -1;
    pl.learner_rank = pl.is_generator ? -1 : pl.world_rank - pc->generators;
    pl.n_dp = pc->learners / pc->tp;
    pl.dp_rank = pl.is_generator ? -1 : pl.learner_rank / pc->tp;
    pl.tp_rank = pl.is_generator ? -1 : pl.learner_rank % pc->tp;
    pl.shard_hash = config_shard_hash(c);
    pl.shard_dir = path_join(c->train.dir, "shards");

    stage_catch_sigterm();

    pl.world = comm_create(MPI_COMM_WORLD, COMM_MPI, pc->timeout, "all ranks");
    pl.learners = split(&pl, !pl.is_generator, pl.learner_rank, "learners");
    // learner 0 is rank 0 of the weight broadcast, generator g rank g + 1
    pl.sync = split(&pl, pl.is_generator || pl.learner_rank == 0,
                    pl.is_generator ? pl.gen_rank + 1 : 0, "learner 0 and the generators");
    if (!pl.is_generator) {
        char name[64];
        snprintf(name, sizeof name, "tp group %d", pl.dp_rank);
        pl.tp = split_learners(&pl, pl.dp_rank, pl.tp_rank, name);
        snprintf(name, sizeof name, "data-parallel group of tp rank %d", pl.tp_rank);
        pl.dp = split_learners(&pl, pl.tp_rank, pl.dp_rank, name);
    }

    // where the run starts, decided once and told to every rank
    int64_t start[2] = {0, 0}; // step, failed
    if (pl.world_rank == 0) {
        long s = 0;
        if (ensure_dir(pl.shard_dir) != 0 ||
            ckpt_resume_point(c, pc->tp, pc->generators, pc->max_staleness, &s) != 0)
            start[1] = 1;
        start[0] = s;
    }
    comm_bcast(pl.world, start, sizeof start, 0);
    pl.start_step = start[0];

    // rank 0 names a bad start (cmd_fail prints on rank 0 only); every rank exits with 1
    int rc = start[1] ? -1 : pl.is_generator ? generator_run(&pl) : learner_run(&pl);

    if (!start[1]) comm_barrier(pl.world);
    comm_free(pl.world);
    if (pl.learners) comm_free(pl.learners);
    if (pl.sync) comm_free(pl.sync);
    if (pl.tp) comm_free(pl.tp);
    if (pl.dp) comm_free(pl.dp);
    if (pl.dp_nccl) comm_free(pl.dp_nccl);
    if (pl.tp_nccl) comm_free(pl.tp_nccl);
    free(pl.shard_dir);
    mpiCheck(MPI_Finalize());
    return rc;
}
