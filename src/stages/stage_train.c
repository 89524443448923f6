// `gemc train`: GEM itself (docs/algorithm.md sections 1-5), label-free. Each step samples k
// candidates for batch_size prompts with the current policy, scores them by their own token
// entropies (Eq. 1), filters and ranks each group, and takes one SEGA step (Eq. 2):
//   L = -(1/G) sum_g (1/k_g) sum_i A_i l_i
// over the G groups that were not skipped, k_g the group's valid candidates (sega.loss_agg
// picks other weights, sega_batch_weights). reward.source picks another reward (reward.h): only
// `answer` trains on the prompts' `answer` fields; where they exist the metrics count the share
// of right candidates whatever the source.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "stages/checkpoint.h"
#include "run/run_report.h"
#include "stages/stage.h"

// Writes the (best, worst) pair of each ranked group to pairs.jsonl (filter.pairs: true), in the
// {prompt, chosen, rejected} form `gemc dpo` reads.
static void write_pairs(FILE *f, const Policy *p, const Dataset *ds, const GroupBatch *gb) {
    for (int g = 0; g < gb->G; g++) {
        const GroupRanking *rk = &gb->rank[g];
        if (rk->skipped || rk->best < 0 || rk->worst < 0) continue;
        const Candidate *best = &gb->cands[(size_t)g * gb->k + rk->best];
        const Candidate *worst = &gb->cands[(size_t)g * gb->k + rk->worst];
        StrBuf line = {0}, a = {0}, b = {0};
        policy_decode_text(p, best->ids, candidate_content_len(best), &a);
        policy_decode_text(p, worst->ids, candidate_content_len(worst), &b);
        strbuf_puts(&line, "{\"prompt\": ");
        strbuf_json_string(&line, ds->rec[gb->idx[g]].prompt);
        strbuf_puts(&line, ", \"chosen\": ");
        strbuf_json_string(&line, a.p ? a.p : "");
        strbuf_puts(&line, ", \"rejected\": ");
        strbuf_json_string(&line, b.p ? b.p : "");
        strbuf_puts(&line, "}\n");
        fwrite(line.p, 1, line.len, f);
        free(line.p), free(a.p), free(b.p);
    }
    fflush(f);
}

// The step's groups as RUN_DIR/shards/step_N.gen_0.h5, as a generator rank of the distributed
// pipeline writes them: what `gemc inspect` shows and `gemc rescore` recomputes rewards from.
static int write_shard(const GemConfig *c, const Policy *p, const Dataset *ds, const GroupBatch *gb,
                       int step) {
    char *dir = path_join(c->train.dir, "shards");
    long *ids = mallocCheck(sizeof(long) * (size_t)gb->G);
    for (int g = 0; g < gb->G; g++) ids[g] = (long)(step - 1) * c->train.batch_size + g;
    Shard s;
    int rc = ensure_dir(dir);
    if (rc == 0) rc = groups_to_shard(gb, p, c, ds, ids, step, (long)p->model.adam_t, 0, &s);
    if (rc == 0) {
        char *path = shard_path(dir, step, 0);
        rc = shard_write(path, &s);
        free(path);
        shard_free(&s);
    }
    free(ids), free(dir);
    return rc;
}

// The newest complete checkpoint of the run dir (run.resume: auto): its optimizer state (fp32
// master weights, AdamW moments and step count) replaces the starting model's.
static int resume(const GemConfig *c, Model *m, long *start) {
    if (ckpt_resume_point(c, 1, 0, 0, start) != 0) return -1;
    if (*start == 0) return 0;
    char *dir = ckpt_path(c->train.dir, *start, 0);
    int rc = ckpt_read_optimizer(dir, 0, 1, m);
    free(dir);
    return rc;
}

static int save_checkpoint(const GemConfig *c, const Policy *p, int step) {
    TrainState st = {.format_version = TRAIN_STATE_VERSION,
                     .step = step,
                     .policy_version = p->model.adam_t,
                     .shard_cursor = step,
                     .generators = 0, // one process: no shards
                     .learners = 1,
                     .tp = 1,
                     .max_staleness = 0,
                     .config_hash = config_shard_hash(c)};
    return ckpt_save_whole(c->train.dir, step, &p->model, p->dir, save_dtype(c->run.dtype), &st);
}

int stage_train(const GemConfig *c) {
    Policy p, ref = {0};
    if (policy_load(&p, c->train.model, c) != 0) return -1;
    const int use_ref = c->sega.kl_coef > 0;
    const char *ref_dir = c->model.ref[0] ? c->model.ref : c->train.model;
    if (use_ref && policy_load(&ref, ref_dir, c) != 0) {
        policy_free(&p);
        return -1;
    }
    Dataset ds;
    RunDir r;
    FILE *pairs = NULL;
    long start = 0;
    ProbeState probe = {0}; // eval.probe: loaded once; its best accuracy so far
    int rc = policy_load_data(&p, c, c->train.data, DATA_PROMPTS, &ds);
    if (rc == 0 && (rc = groups_check_labels(c, &ds)) != 0) dataset_free(&ds);
    if (rc == 0 && (rc = resume(c, &p.model, &start)) != 0) dataset_free(&ds);
    // a resumed run recomputes the best probe accuracy from metrics.jsonl (stage_probe_open)
    if (rc == 0 && (rc = stage_probe_open(&probe, c, &p, c->train.dir, start)) != 0)
        dataset_free(&ds);
    // the resumed host state goes to the device
    if (rc == 0 && (rc = model_place(&p.model, c)) != 0) dataset_free(&ds);
    if (rc == 0 && use_ref && (rc = model_place(&ref.model, c)) != 0) dataset_free(&ds);
    if (rc == 0 && (rc = rundir_open_at(&r, c->train.dir, c, "train", start > 0 ? start : -1)) != 0)
        dataset_free(&ds);
    if (rc != 0) {
        stage_probe_close(&probe);
        policy_free(&p);
        if (use_ref) policy_free(&ref);
        return -1;
    }
    if (c->filter.pairs) {
        char *path = path_join(c->train.dir, "pairs.jsonl");
        pairs = fopen(path, start > 0 ? "a" : "w");
        if (!pairs) gemc_set_error("%s: cannot write (%s)", path, strerror(errno)), rc = -1;
        free(path);
    }
    const int G = c->train.batch_size, k = c->sampling.k;
    printf("train (GEM): %s (%d prompts) on %s, %d steps of %d prompts x k=%d, lr %g, "
           "run dir %s\n",
           c->train.data, ds.n, c->train.model, c->train.steps, G, k, c->train.lr, c->train.dir);
    if (start > 0) printf("train: resuming from checkpoint step %ld\n", start);
    DataOrder order;
    order_init(&order, ds.n, c->run.seed);
    order_skip(&order, start * G); // the prompts of the steps done
    int *idx = mallocCheck(sizeof(int) * (size_t)G);
    const int **prompts = mallocCheck(sizeof(int *) * (size_t)G);
    int *prompt_lens = mallocCheck(sizeof(int) * (size_t)G);
    double t_loop = now_seconds();
    stage_catch_sigterm();
    int stopped = 0;
    NonFiniteGuard guard = {0};
    for (int step = (int)start + 1; step <= c->train.steps && rc == 0 && !stopped; step++) {
        for (int g = 0; g < G; g++) idx[g] = order_next(&order);
        GroupBatch gb;
        if ((rc = groups_sample(&gb, &p, c, &ds, idx, G, step, &r)) != 0) break;
        if (pairs) write_pairs(pairs, &p, &ds, &gb);
        if ((rc = write_shard(c, &p, &ds, &gb, step)) != 0) {
            groups_free(&gb);
            break;
        }

        // the update: every valid candidate of every group that was not skipped
        const double t0 = now_seconds();
        for (int g = 0; g < G; g++) {
            prompts[g] = ds.rec[idx[g]].prompt_ids.v;
            prompt_lens[g] = ds.rec[idx[g]].prompt_ids.n;
        }
        GemStep st;
        gem_step_update(&p.model, use_ref ? &ref.model : NULL, c, &gb, prompts, prompt_lens, 1, 0,
                        p.model.adam_t, step, NULL, NULL, &st);

        Metrics m;
        metrics_begin(&m, "train", step);
        // one process: the sampler always has the newest weights (a version lag of 0)
        gem_step_metrics(&m, c, &gb, &st, (long)p.model.adam_t, 0, p.model.layout.total, 1, -1);
        int collapsed = 0; // train.stop_on_collapse: the probe accuracy fell too far
        if (stage_eval_due(c, step, c->train.steps))
            rc = stage_eval_in_training_probe(c, &p, &r, &m, step, &probe, &collapsed);
        metrics_end(&m, &r);
        if (rc != 0) {
            groups_free(&gb);
            break;
        }
        if (step % c->run.log_every == 0 || step == c->train.steps) {
            char f[240];
            int len = gem_step_fields(&st, f, sizeof f);
            if (isfinite(st.correct))
                snprintf(f + len, sizeof f - (size_t)len, " | correct %.2f", st.correct);
            double dt = now_seconds() - t0 + gb.t_sample + gb.t_score;
            stage_print_step("train", step, c->train.steps, f, (gb.new_tokens + st.tokens) / dt,
                             t_loop);
        }
        groups_free(&gb);
        if (st.trained == 0)
            printf("train step %d: every group was skipped (fewer than 2 valid candidates or equal "
                   "scores), no update\n",
                   step);
        const int gave_up = st.trained > 0 && nonfinite_guard_step(&guard, &c->optim, "train", step,
                                                                   st.updated, st.loss, st.norm);
        const GemStepEnd end = gem_step_end(c, step, stage_stop_requested, gave_up, collapsed);
        rc = end.save ? save_checkpoint(c, &p, step) : 0;
        if (gave_up) {
            rc = nonfinite_guard_stop(&guard, "train", c->train.dir, step, rc);
            break;
        }
        stopped = end.stop;
        if (rc == 0) gem_step_end_print(&end, c, &probe, step);
    }
    if (rc == 0 && !stopped) rc = rundir_save(&r, &p, -1);
    if (rc == 0 && !stopped) printf("train: wrote %s/final\n", c->train.dir);
    if (rc == 0) run_report_print(c->train.dir, stdout); // a SIGTERM stop too
    if (pairs) fclose(pairs);
    stage_probe_close(&probe);
    free(idx), free(prompts), free(prompt_lens);
    order_free(&order);
    rundir_close(&r);
    dataset_free(&ds);
    policy_free(&p);
    if (use_ref) policy_free(&ref);
    return rc;
}
