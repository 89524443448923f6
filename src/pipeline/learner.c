// A learner rank: one tensor-parallel partition of the policy in one data-parallel group. Each step
// it reads every generator's shard of the step, takes its group's share of the SEGA loss
// (Eq. 2) through the tensor-parallel forward/backward, sums gradients across the data-parallel
// groups, steps AdamW on its partition, and (learner 0) sends the new version to the generators,
// writes metrics, checkpoints and the final model.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "model/gpu.h"
#include "pipeline/pipeline_internal.h"
#include "run/shard.h"
#include "stages/checkpoint.h"
#include "run/run_report.h"
#include "stages/stage.h"
#include "model/tensor_parallel.h"

typedef struct {
    Pipeline *pl;
    const GemConfig *c;
    Policy p;          // the full policy (tokenizer, config; learner 0 assembles weights in it)
    Model part;        // this rank's tensor-parallel partition, the weights it trains
    Policy ref;        // the frozen reference (kl_coef > 0)
    Model ref_part;    // its partition
    TensorParallel tp; // hooks over pl->tp (unused when tp == 1)
    size_t max_local;  // the largest partition's slab, for the gather
    int root;          // learner 0: metrics, checkpoints, the weight broadcast
    RunDir run;
    float *grads_host; // a GPU partition's gradients on their way through MPI (no NCCL)
    float stop_f;      // the step's SIGTERM flag, maxed over the learners (learner_reduce)
} Learner;

// The partition of a full model for this rank, wired to the tp group when there is one. With
// tp = 1 the partition is the whole model and takes the single-process path (same bits as `gemc
// train`).
static void make_partition(Learner *L, const Model *full, Model *out) {
    const int tp = L->c->pipeline.tp;
    ModelConfig local;
    int v0;
    if (tp_local_config(&full->cfg, L->pl->tp_rank, tp, &local, &v0) != 0) pipeline_fail(L->pl);
    model_init(out, &local);
    tp_partition_from_full(&full->cfg, L->pl->tp_rank, tp, full->params, out->params);
    if (tp > 1) {
        L->tp = (TensorParallel){.rank = L->pl->tp_rank,
                                 .size = tp,
                                 .vocab_start = v0,
                                 .vocab_full = full->cfg.vocab_size,
                                 .allreduce_sum = comm_tp_allreduce_sum,
                                 .allreduce_max = comm_tp_allreduce_max,
                                 .ctx = L->pl->tp};
        out->tp = &L->tp;
    }
}

// The full fp32 weights in L->p.model.params on learner 0, gathered from the tp group of
// data-parallel group 0 (every replica holds the same weights). Called by all learners. The
// partitions stream in buckets of pipeline.bucket_mb (each rank's slab padded to the largest),
// so learner 0 holds one bucket per rank besides the whole model, never every partition at once.
static void gather_full(Learner *L) {
    Pipeline *pl = L->pl;
    if (pl->dp_rank != 0) return;
    model_sync_host(&L->part); // a GPU partition's weights to the host first
    const int tp = L->c->pipeline.tp;
    const size_t n = L->part.layout.total;
    if (tp == 1) {
        if (L->root) memcpy(L->p.model.params, L->part.params, n * sizeof(float));
        return;
    }
    size_t bucket = (size_t)L->c->pipeline.bucket_mb * (1u << 20) / sizeof(float) / (size_t)tp;
    if (bucket > L->max_local) bucket = L->max_local;
    float *send = mallocCheck(bucket * sizeof(float));
    float *recv = L->root ? mallocCheck(bucket * (size_t)tp * sizeof(float)) : NULL;
    for (size_t lo = 0; lo < L->max_local; lo += bucket) {
        const size_t cnt = L->max_local - lo < bucket ? L->max_local - lo : bucket;
        const size_t mine = lo >= n ? 0 : n - lo < cnt ? n - lo : cnt;
        memcpy(send, L->part.params + lo, mine * sizeof(float));
        memset(send + mine, 0, (cnt - mine) * sizeof(float));
        comm_gather(pl->tp, send, recv, cnt * sizeof(float), 0);
        if (L->root)
            for (int r = 0; r < tp; r++)
                tp_partition_range_to_full(&L->p.model.cfg, r, tp, recv + (size_t)r * cnt, lo,
                                           lo + cnt, L->p.model.params);
    }
    free(send);
    free(recv);
}

// An NCCL communicator over the ranks of `group` when every one of them holds its partition on a
// GPU of its own (NCCL refuses two ranks of one communicator on the same device), else NULL (MPI
// through host memory). pipeline.collectives=nccl makes the MPI fallback a fatal error. `who`
// names a rank of the group in that error, `what` the communicator.
static Comm *nccl_route(Learner *L, Comm *group, const char *who, const char *what) {
    Pipeline *pl = L->pl;
    const GemConfig *c = L->c;
    const int n = comm_size(group);
    if (n == 1 || c->pipeline.collectives == COLLECTIVES_MPI) return NULL;
    // every peer's device: "host/GPU-uuid", or "" for a CPU partition
    char id[192] = "";
    if (L->part.gpu) {
        char host[96] = "", uuid[80] = "";
        gethostname(host, sizeof host - 1);
        gpu_device_uuid(gpu_model_device(L->part.gpu), uuid, sizeof uuid);
        snprintf(id, sizeof id, "%s/%s", host, uuid);
    }
    char *all = callocCheck((size_t)n, sizeof id);
    comm_gather(group, id, all, sizeof id, 0);
    int use = 1, bad = -1;
    if (comm_rank(group) == 0)
        for (int i = 0; i < n && use; i++) {
            if (!all[i * sizeof id]) use = 0, bad = i;
            for (int j = 0; j < i && use; j++)
                if (!strcmp(all + i * sizeof id, all + j * sizeof id)) use = 0, bad = i;
        }
    int verdict[2] = {use, bad};
    comm_bcast(group, verdict, sizeof verdict, 0);
    free(all);
    if (!verdict[0] && c->pipeline.collectives == COLLECTIVES_NCCL)
        pipeline_fatal(pl,
                       "pipeline.collectives=nccl, but %s %d %s (HINT: one GPU per learner rank, "
                       "e.g. srun --gpus-per-task=1, or pipeline.collectives=auto to fall back "
                       "to MPI)",
                       who, verdict[1], id[0] ? "shares a GPU with another" : "has no GPU");
    return verdict[0] ? comm_create(comm_mpi(group), COMM_NCCL, c->pipeline.timeout, what) : NULL;
}

// The partitions (and the reference's) go where run.device says once their host state is final
// (after a restore). Then the routes of the collectives: NCCL between distinct GPUs (collectives
// auto or nccl), else MPI through host memory (CPU learners, and GPU learners sharing a GPU, which
// NCCL refuses): the tp group's activations and the data-parallel gradients.
static void place_partitions(Learner *L) {
    Pipeline *pl = L->pl;
    const GemConfig *c = L->c;
    if (model_place(&L->part, c) != 0) pipeline_fail(pl);
    if (L->ref_part.params && model_place(&L->ref_part, c) != 0) pipeline_fail(pl);
    if (c->pipeline.tp > 1) {
        pl->tp_nccl = nccl_route(L, pl->tp, "tensor-parallel rank", "the tp group's activations");
        if (pl->tp_nccl) { // the GPU partitions hand NCCL their device buffers
            L->tp.ctx = pl->tp_nccl;
            L->tp.device_buffers = 1;
        }
    }
    if (pl->n_dp > 1)
        pl->dp_nccl = nccl_route(L, pl->dp, "data-parallel learner", "the data-parallel gradients");
}

// Sums the partitions' gradients across the data-parallel groups: in place on the host, over NCCL
// on the devices, or through a host copy when GPU learners have no NCCL route.
static void allreduce_grads(Learner *L) {
    Pipeline *pl = L->pl;
    Model *m = &L->part;
    const size_t total = m->layout.total;
    if (!m->gpu) {
        if (!m->grads) m->grads = callocCheck(total, sizeof(float));
        comm_allreduce_sum_f32(pl->dp, m->grads, total);
    } else if (pl->dp_nccl) {
        gpu_model_synchronize(m->gpu);
        comm_allreduce_sum_f32(pl->dp_nccl, gpu_model_grads_device(m->gpu), total);
    } else {
        if (!L->grads_host) L->grads_host = mallocCheck(total * sizeof(float));
        gpu_model_grads_download(m->gpu, L->grads_host);
        comm_allreduce_sum_f32(pl->dp, L->grads_host, total);
        gpu_model_grads_upload(m->gpu, L->grads_host);
    }
}

static void wait_for_shard(Pipeline *pl, const char *path, int gen) {
    const double t0 = now_seconds(), limit = pl->c->pipeline.timeout;
    while (!path_exists(path)) {
        if (now_seconds() - t0 > limit)
            pipeline_fatal(pl,
                           "waited %.0f s (pipeline.timeout) for %s from generator %d: it died "
                           "or hangs (HINT: see that rank's messages; raise pipeline.timeout if "
                           "one step's sampling takes longer)",
                           limit, path, gen);
        usleep(2000);
    }
}

// Reads the shards of step t, checked against what the schedule says they must hold.
// The learners' collectives between the backward and the optimizer step (GemReduceFn): the
// data-parallel sums of the gradients and of the loss and counts, then the SIGTERM flag, so a
// signal to any learner stops them all at the same step boundary.
static void learner_reduce(void *ctx, double sums[3]) {
    Learner *L = ctx;
    Pipeline *pl = L->pl;
    if (pl->n_dp > 1) {
        allreduce_grads(L);
        comm_allreduce_sum_f64(pl->dp, sums, 3);
    }
    L->stop_f = stage_stop_requested ? 1.0f : 0.0f;
    comm_allreduce_max_f32(pl->learners, &L->stop_f, 1);
}

static Shard *read_step(Learner *L, long t, double *t_wait) {
    Pipeline *pl = L->pl;
    const GemConfig *c = L->c;
    const int ngen = c->pipeline.generators, G = c->train.batch_size;
    Shard *sh = callocCheck((size_t)ngen, sizeof(Shard));
    double t0 = now_seconds();
    for (int gen = 0; gen < ngen; gen++) {
        char *path = shard_path(pl->shard_dir, t, gen);
        wait_for_shard(pl, path, gen);
        if (shard_read(path, &sh[gen], pl->shard_hash) != 0)
            pipeline_fatal(pl,
                           "%s (HINT: delete the shard and resume; its generator writes it "
                           "again)",
                           gemc_error());
        const Shard *s = &sh[gen];
        int j0, j1;
        pipeline_gen_slice(c, gen, &j0, &j1);
        int ok = s->step == t && s->generator_rank == gen && s->k == c->sampling.k &&
                 s->policy_version == pipeline_version_for_step(c, t) && s->n_groups == j1 - j0;
        for (int g = 0; ok && g < s->n_groups; g++) ok = s->group_id[g] == (t - 1) * G + j0 + g;
        if (!ok)
            pipeline_fatal(pl,
                           "%s is not the shard of step %ld from generator %d that this run "
                           "expects (it holds step %ld, version %ld, %d groups) (HINT: delete "
                           "it and resume)",
                           path, t, gen, s->step, s->policy_version, s->n_groups);
        free(path);
    }
    *t_wait = now_seconds() - t0;
    return sh;
}

static void checkpoint(Learner *L, long t) {
    Pipeline *pl = L->pl;
    const GemConfig *c = L->c;
    char *tmp = NULL;
    if (L->root && !(tmp = ckpt_begin(c->train.dir, t))) pipeline_fail(pl);
    comm_barrier(pl->learners);
    if (pl->dp_rank == 0) {
        model_sync_host(&L->part);
        char *dir = ckpt_path(c->train.dir, t, 1);
        if (ckpt_write_optimizer(dir, pl->tp_rank, c->pipeline.tp, &L->part) != 0)
            pipeline_fail(pl);
        free(dir);
    }
    if (L->root) {
        TrainState st = {.format_version = TRAIN_STATE_VERSION,
                         .step = t,
                         .policy_version = t,
                         .shard_cursor = t,
                         .generators = c->pipeline.generators,
                         .learners = c->pipeline.learners,
                         .tp = c->pipeline.tp,
                         .max_staleness = c->pipeline.max_staleness,
                         .config_hash = pl->shard_hash};
        if (model_save_folder(&L->p.model, tmp, save_dtype(c->run.dtype), L->p.dir, 0) != 0 ||
            ckpt_write_state(tmp, &st) != 0)
            pipeline_fail(pl);
    }
    comm_barrier(pl->learners);
    if (L->root) {
        // the shards a resumed run reads before its generators write again must be on disk
        const long last = t + c->pipeline.max_staleness;
        for (long u = t + 1; u <= last && u <= c->train.steps; u++)
            for (int gen = 0; gen < c->pipeline.generators; gen++) {
                char *path = shard_path(pl->shard_dir, u, gen);
                wait_for_shard(pl, path, gen);
                free(path);
            }
        if (ckpt_commit(c->train.dir, t) != 0) pipeline_fail(pl);
        printf("train: checkpoint %s/checkpoints/step_%06ld\n", c->train.dir, t);
        fflush(stdout);
        free(tmp);
    }
}

static void ids_json(const long *ids, int n, StrBuf *b) {
    strbuf_puts(b, "[");
    for (int i = 0; i < n; i++) {
        char x[32];
        snprintf(x, sizeof x, "%s%ld", i ? ", " : "", ids[i]);
        strbuf_puts(b, x);
    }
    strbuf_puts(b, "]");
}

int learner_run(Pipeline *pl) {
    const GemConfig *c = pl->c;
    Learner L = {.pl = pl, .c = c, .root = pl->learner_rank == 0};
    const int use_ref = c->sega.kl_coef > 0;
    if (policy_load(&L.p, c->train.model, c) != 0) pipeline_fail(pl);
    make_partition(&L, &L.p.model, &L.part);
    if (use_ref) {
        if (policy_load(&L.ref, c->model.ref[0] ? c->model.ref : c->train.model, c) != 0)
            pipeline_fail(pl);
        // the two partitions share one TensorParallel: the same split (and vocabulary range)
        const ModelConfig *a = &L.p.model.cfg, *b = &L.ref.model.cfg;
        if (c->pipeline.tp > 1 &&
            (a->vocab_size != b->vocab_size || a->num_heads != b->num_heads ||
             a->num_kv_heads != b->num_kv_heads || a->intermediate_size != b->intermediate_size))
            pipeline_fatal(pl,
                           "model.ref %s is not split like the policy with pipeline.tp=%d: its "
                           "vocab_size, num_attention_heads, num_key_value_heads or "
                           "intermediate_size differ from %s's (HINT: a reference of the same "
                           "architecture, e.g. the starting model)",
                           c->model.ref, c->pipeline.tp, c->train.model);
        make_partition(&L, &L.ref.model, &L.ref_part);
    }
    // Only learner 0 keeps the whole policy's fp32 weights (what it broadcasts to the generators,
    // checkpoints and evaluates); the other learners hold their partition alone, and no learner
    // keeps the frozen reference's whole weights
    if (!L.root) {
        free(L.p.model.params);
        L.p.model.params = NULL;
    }
    if (use_ref) {
        free(L.ref.model.params);
        L.ref.model.params = NULL;
    }
    for (int r = 0; r < c->pipeline.tp; r++) {
        ModelConfig local;
        int v0;
        tp_local_config(&L.p.model.cfg, r, c->pipeline.tp, &local, &v0);
        ParamLayout lay;
        param_layout_init(&lay, &local);
        if (lay.total > L.max_local) L.max_local = lay.total;
    }
    const long start = pl->start_step, steps = c->train.steps;
    if (start > 0) {
        char *dir = ckpt_path(c->train.dir, start, 0);
        if (ckpt_read_optimizer(dir, pl->tp_rank, c->pipeline.tp, &L.part) != 0) pipeline_fail(pl);
        free(dir);
    }
    place_partitions(&L);
    ProbeState probe = {0}; // eval.probe's signal check, on the root (stop_on_collapse: 1 rank)
    if (L.root) {
        if (stage_probe_open(&probe, c, &L.p, c->train.dir, start) != 0) pipeline_fail(pl);
        if (rundir_open_at(&L.run, c->train.dir, c, "train", start > 0 ? start : -1) != 0)
            pipeline_fail(pl);
        printf("train (GEM pipeline): %d generators, %d learners (%d data-parallel x tp %d), "
               "max_staleness %d; %ld steps of %d prompts x k=%d from %s, run dir %s\n",
               c->pipeline.generators, c->pipeline.learners, pl->n_dp, c->pipeline.tp,
               c->pipeline.max_staleness, steps, c->train.batch_size, c->sampling.k, c->train.data,
               c->train.dir);
        if (start > 0) printf("train: resuming from checkpoint step %ld\n", start);
        fflush(stdout);
    }
    comm_barrier(pl->world); // the generators have cleaned up their shards

    const long last_sent = pipeline_last_version_sent(pl);
    if (start <= last_sent) {
        gather_full(&L);
        if (L.root) weights_send(pl, L.p.model.params, L.p.model.layout.total, start, 0);
    }
    const int G = c->train.batch_size;
    const int **prompts = mallocCheck(sizeof(int *) * (size_t)G);
    int *prompt_lens = mallocCheck(sizeof(int) * (size_t)G);
    long *group_ids = mallocCheck(sizeof(long) * (size_t)G);
    double t_loop = now_seconds();
    NonFiniteGuard guard = {.quiet = !L.root};
    int rc = 0;
    for (long t = start + 1; t <= steps; t++) {
        double t_wait;
        Shard *sh = read_step(&L, t, &t_wait);
        GroupBatch gb;
        groups_from_shards(sh, c->pipeline.generators, &gb, prompts, prompt_lens, group_ids);

        // this data-parallel group's share of the groups; the weights see the whole batch
        const double t0 = now_seconds();
        GemStep st;
        L.stop_f = 0;
        gem_step_update(&L.part, use_ref ? &L.ref_part : NULL, c, &gb, prompts, prompt_lens,
                        pl->n_dp, pl->dp_rank, t - 1, t, learner_reduce, &L, &st);
        // every learner holds the same allreduced loss and gradient norm, so all of them skip
        // (and give up) together; only the root logs
        const int gave_up =
            st.trained > 0 &&
            nonfinite_guard_step(&guard, &c->optim, "train", (int)t, st.updated, st.loss, st.norm);
        // (config_check refuses stop_on_collapse with several ranks: no collapse stop here)
        const GemStepEnd end = gem_step_end(c, t, L.stop_f > 0, gave_up, 0);

        const int send = t <= last_sent;
        // eval.every: the root evaluates the whole model (the generators wait for the weights)
        const int eval_now = stage_eval_due(c, t, steps);
        if (send || end.save || t == steps || eval_now) gather_full(&L);
        if (L.root && send) weights_send(pl, L.p.model.params, L.p.model.layout.total, t, end.stop);

        if (L.root) {
            Metrics m;
            const long lag = t - 1 - pipeline_version_for_step(c, t);
            metrics_begin(&m, "train", (int)t);
            gem_step_metrics(&m, c, &gb, &st, t, lag, L.p.model.layout.total, c->pipeline.learners,
                             t_wait);
            StrBuf ids = {0};
            ids_json(group_ids, gb.G, &ids);
            metrics_raw(&m, "group_ids", ids.p);
            free(ids.p);
            int collapsed = 0; // (config_check refuses stop_on_collapse with several ranks)
            if (eval_now &&
                stage_eval_in_training_probe(c, &L.p, &L.run, &m, t, &probe, &collapsed) != 0)
                pipeline_fail(pl);
            metrics_end(&m, &L.run);
            if (t % c->run.log_every == 0 || t == steps) {
                char f[200];
                int len = gem_step_fields(&st, f, sizeof f);
                snprintf(f + len, sizeof f - (size_t)len, " | lag %ld", lag);
                stage_print_step("train", (int)t, (int)steps, f, st.tokens / (now_seconds() - t0),
                                 t_loop);
            }
        }
        groups_free(&gb);
        for (int i = 0; i < c->pipeline.generators; i++) shard_free(&sh[i]);
        free(sh);
        if (end.save) checkpoint(&L, t);
        if (gave_up) {
            rc = nonfinite_guard_stop(&guard, "train", c->train.dir, t, 0);
            // one line for the job: mpirun's rank 0 is a generator, which ends cleanly
            if (L.root) fprintf(stderr, "gemc: error: %s\n", gemc_error());
            break;
        }
        if (end.stop) {
            if (L.root) gem_step_end_print(&end, c, NULL, t);
            break;
        }
        if (end.final && L.root) {
            if (rundir_save(&L.run, &L.p, -1) != 0) pipeline_fail(pl);
            printf("train: wrote %s/final\n", c->train.dir);
        }
    }
    if (L.root && rc == 0) run_report_print(c->train.dir, stdout);
    fflush(stdout);
    free(prompts), free(prompt_lens), free(group_ids), free(L.grads_host);
    if (L.root) rundir_close(&L.run);
    stage_probe_close(&probe);
    model_free(&L.part);
    policy_free(&L.p);
    if (use_ref) {
        model_free(&L.ref_part);
        policy_free(&L.ref);
    }
    return rc;
}
