// The distributed pipeline end to end through `mpirun ./gemc train` on the stage tests' tiny
// model: the launch checks, the single-process equivalence, 2 generators + 2 learners with
// tp = 2, exact restart after a SIGKILL, SIGTERM preemption, the timeout of a hung rank, and
// shards that must not be used (corrupt, or from another configuration).
#include <cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/safetensors.h"
#include "run/shard.h"
#include "tests.h"

// Open MPI refuses root without these flags; 4 ranks on a 2-core machine need --oversubscribe.
// In a SAN=1 build the ranks' leak check ignores what Open MPI keeps until exit (TEST_MPI_SAN_X).
#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 " TEST_MPI_SAN_X " "

enum { STEPS = 6, BATCH = 4 };

static const char *root;
static char base[1024]; // the overrides every pipeline run shares

static void setup(void) {
    if (root) return;
    root = test_e2e_root();
    snprintf(base, sizeof base,
             "%s/cfg.yaml train.steps=%d train.batch_size=%d sampling.k=3 "
             "sampling.max_new_tokens=12 run.save_every=2 pipeline.timeout=60",
             root, STEPS, BATCH);
}

// "mpirun -np N ./gemc train BASE train.dir=ROOT/DIR EXTRA"
static void train_cmd(char *cmd, size_t n, int np, const char *dir, const char *extra) {
    snprintf(cmd, n,
             MPIRUN "-np %d ./gemc train %s train.dir=%s/%s pipeline.generators=%d "
                    "pipeline.learners=%d %s",
             np, base, root, dir, np / 2, np - np / 2, extra ? extra : "");
}

static char *rpath(const char *fmt, const char *a) {
    char *p = malloc(2048);
    snprintf(p, 2048, fmt, root, a);
    return p;
}

static int same_final(const char *a, const char *b) {
    char *x = rpath("%s/%s/final/model.safetensors", a),
         *y = rpath("%s/%s/final/model.safetensors", b);
    int eq = test_files_equal(x, y);
    free(x), free(y);
    return eq;
}

static int exists(const char *dir, const char *name) {
    char *d = rpath("%s/%s", dir), *p = path_join(d, name);
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    free(d), free(p);
    return f != NULL;
}

// Every step 1..STEPS has exactly one metrics line, and its group_ids are exactly the step's
// groups (t-1)*BATCH .. t*BATCH-1: none lost, none used twice. The shards of the gens generators
// on disk hold the same.
static void check_groups_once(const char *dir, int gens) {
    char *path = rpath("%s/%s/metrics.jsonl", dir);
    char *text = read_text_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    int seen_step[STEPS + 1] = {0}, seen_id[STEPS * BATCH] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        int step = cJSON_GetObjectItem(o, "step")->valueint;
        CU_ASSERT(step >= 1 && step <= STEPS);
        if (step >= 1 && step <= STEPS) seen_step[step]++;
        const cJSON *ids = cJSON_GetObjectItem(o, "group_ids"), *id;
        CU_ASSERT_EQUAL(cJSON_GetArraySize(ids), BATCH);
        cJSON_ArrayForEach(id, ids) {
            int g = id->valueint;
            CU_ASSERT(g >= (step - 1) * BATCH && g < step * BATCH);
            if (g >= 0 && g < STEPS * BATCH) seen_id[g]++;
        }
        cJSON_Delete(o);
    }
    for (int t = 1; t <= STEPS; t++) CU_ASSERT_EQUAL(seen_step[t], 1);
    for (int g = 0; g < STEPS * BATCH; g++) CU_ASSERT_EQUAL(seen_id[g], 1);
    // the shards: each generator with its share of every step's groups
    char *shards = rpath("%s/%s/shards", dir);
    for (int t = 1; t <= STEPS; t++)
        for (int gen = 0; gen < gens; gen++) {
            char *sp = shard_path(shards, t, gen);
            Shard s;
            CU_ASSERT_EQUAL_FATAL(shard_read(sp, &s, 0), 0);
            CU_ASSERT_EQUAL(s.n_groups, BATCH / gens);
            for (int g = 0; g < s.n_groups; g++)
                CU_ASSERT_EQUAL(s.group_id[g], (t - 1) * BATCH + gen * (BATCH / gens) + g);
            shard_free(&s);
            free(sp);
        }
    free(shards), free(text), free(path);
}

// A shell loop (malloc'd) that waits, up to 60 s, until the shell condition fmt... holds.
static char *wait_until(const char *fmt, ...) {
    char cond[2048], *out = malloc(4096);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cond, sizeof cond, fmt, ap);
    va_end(ap);
    snprintf(out, 4096,
             "i=0; until %s; do sleep 0.01; i=$((i+1)); [ $i -gt 6000 ] && exit 9; done; ", cond);
    return out;
}

// Starts `run` in the background (output in ROOT/NAME.log, its exit status in ROOT/NAME.rc),
// then runs the shell text `then` (which waits for it). Returns the script's status and its
// stdout in *out (malloc'd).
static int run_interrupted(const char *run, const char *name, const char *then, char **out) {
    char cmd[16384], *err;
    snprintf(cmd, sizeof cmd, "(%s > %s/%s.log 2>&1; echo $? > %s/%s.rc) & %s", run, root, name,
             root, name, then);
    int rc = test_run(cmd, out, &err);
    if (rc) fprintf(stderr, "\n  %s\n  status %d: %s\n", cmd, rc, err);
    free(err);
    return rc;
}

// The exit status ROOT/NAME.rc recorded, or -1.
static int job_status(const char *name) {
    char *path = rpath("%s/%s.rc", name), *text = read_text_file(path, NULL);
    int status = text ? atoi(text) : -1;
    free(path), free(text);
    return status;
}

// ---- the tests

// mpirun -np 3 with `keys`: the job fails, and among mpirun's own lines there is exactly one
// gemc error line (from rank 0), and it contains needle.
static void expect_launch_error(const char *keys, const char *needle) {
    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd, MPIRUN "-np 3 ./gemc train %s train.dir=%s/bad %s", base, root, keys);
    CU_ASSERT_NOT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
    int lines = 0;
    for (const char *e = err; (e = strstr(e, "gemc: error:")); e++) lines++;
    CU_ASSERT_EQUAL(lines, 1);
    if (lines != 1 || !strstr(err, needle)) fprintf(stderr, "\n  %s\n  stderr: %s\n", cmd, err);
    free(out), free(err);
}

static void test_launch_errors(void) {
    setup();
    expect_launch_error("pipeline.generators=1 pipeline.learners=1",
                        "gemc: error: started as 3 ranks, but pipeline.generators");
    expect_launch_error("pipeline.generators=1 pipeline.learners=2 pipeline.tp=3",
                        "is not divisible by pipeline.tp = 3");
    expect_launch_error("pipeline.generators=2 pipeline.learners=1 train.batch_size=1",
                        "pipeline.generators = 2 is more than train.batch_size");
    CU_ASSERT(!exists("bad", "metrics.jsonl"));
}

// One generator and one learner at max_staleness 0 do what `gemc train` does on one process:
// the same groups, the same update, the same bits.
static void test_two_ranks_equal_single_process(void) {
    setup();
    char cmd[4096];
    train_cmd(cmd, sizeof cmd, 2, "p_two", NULL);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    snprintf(cmd, sizeof cmd, "./gemc train %s train.dir=%s/p_single", base, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    CU_ASSERT(same_final("p_two", "p_single"));
    CU_ASSERT(exists("p_two", "checkpoints/step_000002/DONE"));
    CU_ASSERT(exists("p_two", "checkpoints/step_000004/optimizer_tp0.bin"));
    CU_ASSERT(exists("p_two", "shards/step_000006.gen_0.h5"));
    // eval.every on the first learner: the accuracies in its lines, the weights unchanged
    train_cmd(cmd, sizeof cmd, 2, "p_eval", "eval.every=4 eval.every_max=2");
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    CU_ASSERT(same_final("p_two", "p_eval"));
    char *m = rpath("%s/%s/metrics.jsonl", "p_eval");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"eval_task_accuracy\": "), 2); // steps 4 and 6
    CU_ASSERT_EQUAL(test_count_lines(m, "\"eval_pref_accuracy\": "), 2);
    free(m);
}

// The CI layout: 2 generators, 2 learners in one tp=2 group, generators one version ahead; 1 MiB
// buckets, so the tp gather and the weight broadcast stream the tiny model in several.
static void test_four_ranks_tp2(void) {
    setup();
    char cmd[4096], *out, *err;
    train_cmd(cmd, sizeof cmd, 4, "p_a",
              "pipeline.tp=2 pipeline.max_staleness=1 pipeline.bucket_mb=1");
    int rc = test_run(cmd, &out, &err);
    if (rc) fprintf(stderr, "\n%s\n%s\n", out, err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "lag 1"));
    free(out), free(err);
    CU_ASSERT(exists("p_a", "final/model.safetensors"));
    CU_ASSERT(exists("p_a", "checkpoints/step_000004/optimizer_tp1.bin"));
    check_groups_once("p_a", 2);
    // the default 64 MiB buckets (one of everything) give the same bits
    train_cmd(cmd, sizeof cmd, 4, "p_a64", "pipeline.tp=2 pipeline.max_staleness=1");
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    CU_ASSERT(same_final("p_a", "p_a64"));
    // the shards explain themselves to h5ls and to gemc inspect
    char *shard = rpath("%s/%s/shards/step_000003.gen_1.h5", "p_a");
    snprintf(cmd, sizeof cmd, "h5ls -r %s", shard);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/candidates/advantage"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/tokens/logp_sample"));
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "./gemc inspect %s --group 1", shard);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "advantage"));
    free(out), free(err), free(shard);
}

// N steps straight (p_a), then N/2, a SIGKILL to one rank, and a resume to N: the same bits,
// every group used once.
static void test_sigkill_and_resume_is_exact(void) {
    setup();
    if (!exists("p_a", "final/model.safetensors")) test_four_ranks_tp2();
    char run[4096];
    train_cmd(run, sizeof run, 4, "p_b",
              "pipeline.tp=2 pipeline.max_staleness=1 pipeline.bucket_mb=1");
    // start it, wait for the step-2 checkpoint, kill learner 1 (world rank 3): the generators
    // may have written every shard already, the learners cannot finish without it
    char then[4096], *out;
    char *w = wait_until("[ -f %s/p_b/checkpoints/step_000002/DONE ]", root);
    snprintf(then, sizeof then,
             "%sfor p in $(pgrep -f '^./gemc train .*train.dir=%s/p_b '); do "
             "grep -qz '^OMPI_COMM_WORLD_RANK=3$' /proc/$p/environ && kill -9 $p; done; "
             "t0=$(date +%%s); wait; echo $(( $(date +%%s) - t0 ))",
             w, root);
    free(w);
    // the four steps after the checkpoint take a fraction of a second: on a loaded machine the
    // job can end before the kill lands, or the kill can land once the final model is written
    // (while the ranks print their summary and finalize), and then the attempt says nothing;
    // start over
    for (int attempt = 0; attempt < 3; attempt++) {
        char rm[2048];
        snprintf(rm, sizeof rm, "rm -rf %s/p_b", root);
        CU_ASSERT_EQUAL_FATAL(test_run_ok(rm), 0);
        CU_ASSERT_EQUAL_FATAL(run_interrupted(run, "p_b", then, &out), 0);
        CU_ASSERT(atoi(out) < 30); // the other ranks did not hang
        free(out);
        if (job_status("p_b") != 0 && !exists("p_b", "final/model.safetensors")) break;
    }
    CU_ASSERT(job_status("p_b") > 0);
    CU_ASSERT(!exists("p_b", "final/model.safetensors")); // it was stopped mid-run
    CU_ASSERT_EQUAL_FATAL(test_run_ok(run), 0);           // run.resume: auto
    CU_ASSERT(same_final("p_a", "p_b"));
    check_groups_once("p_b", 2);
}

// SIGTERM (Slurm preemption) to every rank: a checkpoint at the next step boundary and a clean
// exit; the same command then finishes with the same bits.
static void test_sigterm_checkpoints_and_exits(void) {
    setup();
    if (!exists("p_a", "final/model.safetensors")) test_four_ranks_tp2();
    char run[4096], *out;
    train_cmd(run, sizeof run, 4, "p_c", "pipeline.tp=2 pipeline.max_staleness=1 run.save_every=0");
    char then[4096];
    // as soon as the first shard is out (every rank has its handler by then): the six steps of
    // this small run take well under a second after it
    char *w = wait_until("test -e %s/p_c/shards/step_000001.gen_0.h5", root);
    snprintf(then, sizeof then, "%spkill -TERM -f '^./gemc train .*train.dir=%s/p_c '; wait", w,
             root);
    free(w);
    // a SIGTERM that lands after the job ended says nothing: start over (see above)
    char *log = rpath("%s/%s", "p_c.log"), rm[2048];
    snprintf(rm, sizeof rm, "rm -rf %s/p_c", root);
    for (int attempt = 0; attempt < 3; attempt++) {
        CU_ASSERT_EQUAL_FATAL(test_run_ok(rm), 0);
        CU_ASSERT_EQUAL_FATAL(run_interrupted(run, "p_c", then, &out), 0);
        free(out);
        if (test_count_lines(log, "SIGTERM: stopped after step") == 1) break;
    }
    CU_ASSERT_EQUAL(job_status("p_c"), 0);
    CU_ASSERT_EQUAL(test_count_lines(log, "SIGTERM: stopped after step"), 1);
    free(log);
    CU_ASSERT(!exists("p_c", "final/model.safetensors"));
    CU_ASSERT_EQUAL_FATAL(test_run_ok(run), 0);
    CU_ASSERT(same_final("p_a", "p_c"));
    check_groups_once("p_c", 2);
}

// A rank that stops answering: the others give up after pipeline.timeout with a clear line.
static void test_hung_rank_times_out(void) {
    setup();
    char run[4096], *out;
    train_cmd(run, sizeof run, 4, "p_d", "pipeline.tp=2 pipeline.timeout=3 train.steps=200");
    char then[4096];
    char *w = wait_until("grep -q '\"step\": 1,' %s/p_d/metrics.jsonl 2>/dev/null", root);
    snprintf(then, sizeof then,
             "%spid=$(pgrep -f '^./gemc train .*train.dir=%s/p_d ' | head -1); kill -STOP $pid; "
             "t0=$(date +%%s); wait; echo $(( $(date +%%s) - t0 )); kill -9 $pid 2>/dev/null; true",
             w, root);
    free(w);
    CU_ASSERT_EQUAL_FATAL(run_interrupted(run, "p_d", then, &out), 0);
    CU_ASSERT(atoi(out) < 30);
    free(out);
    char *log = rpath("%s/%s", "p_d.log");
    CU_ASSERT(test_count_lines(log, "(pipeline.timeout)") +
                  test_count_lines(log, "pipeline.timeout = 3") >=
              1);
    free(log);
    CU_ASSERT(job_status("p_d") > 0);
}

// Shards a run must not use: one from another configuration and a corrupt one are named in a
// warning, removed and sampled again, and the run ends with the bits of a clean one.
static void test_foreign_and_corrupt_shards(void) {
    setup();
    char cmd[4096];
    // shards of another temperature in p_e, no checkpoint (save_every 0)
    train_cmd(cmd, sizeof cmd, 2, "p_e", "sampling.temperature=0.7 run.save_every=0 train.steps=3");
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *final = rpath("%s/%s/final", "p_e");
    snprintf(cmd, sizeof cmd, "rm -r %s", final);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    free(final);
    // and a corrupt one: the first half of a valid shard
    char *bad = rpath("%s/%s/shards/step_000003.gen_0.h5", "p_e");
    size_t n;
    char *bytes = read_text_file(bad, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    test_write_file(bad, bytes, n / 2);
    free(bytes);
    char *out, *err;
    train_cmd(cmd, sizeof cmd, 2, "p_e", NULL);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "another configuration"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "step_000003.gen_0.h5"));
    free(out), free(err), free(bad);
    if (!exists("p_two", "final/model.safetensors")) test_two_ranks_equal_single_process();
    CU_ASSERT(same_final("p_e", "p_two"));
}

// One process (no mpirun) resumes too: SIGKILL after the step-2 checkpoint, then SIGTERM after
// step 3's, and the same command finishes with the bits of the uninterrupted p_single.
static void test_single_process_kill_term_resume(void) {
    setup();
    if (!exists("p_single", "final/model.safetensors")) test_two_ranks_equal_single_process();
    char run[4096], cmd[16384], *out, *err;
    snprintf(run, sizeof run, "./gemc train %s train.dir=%s/s_b", base, root);
    char *w1 = wait_until("[ -f %s/s_b/checkpoints/step_000002/DONE ]", root);
    char *w2 = wait_until("grep -q 'train step 3/' %s/s_b.log", root);
    snprintf(cmd, sizeof cmd,
             "%s > %s/s_b.log 2>&1 & pid=$!; %skill -9 $pid; wait $pid; "
             "%s > %s/s_b.log 2>&1 & pid=$!; %skill -TERM $pid; wait $pid",
             run, root, w1, run, root, w2);
    free(w1), free(w2);
    // the steps after each signal's cue take a fraction of a second: on a loaded machine the run
    // can end before the signal lands, and then the attempt says nothing; start over
    char *log = rpath("%s/%s", "s_b.log"), rm[2048];
    snprintf(rm, sizeof rm, "rm -rf %s/s_b", root);
    for (int attempt = 0; attempt < 3; attempt++) {
        CU_ASSERT_EQUAL_FATAL(test_run_ok(rm), 0);
        CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0); // the SIGTERM'd run exits 0
        free(out), free(err);
        if (test_count_lines(log, "SIGTERM: stopped after step") == 1 &&
            test_count_lines(log, "resuming from checkpoint step 2") == 1)
            break;
    }
    CU_ASSERT_EQUAL(test_count_lines(log, "SIGTERM: stopped after step"), 1);
    CU_ASSERT_EQUAL(test_count_lines(log, "resuming from checkpoint step 2"), 1);
    free(log);
    CU_ASSERT(!exists("s_b", "final/model.safetensors"));
    CU_ASSERT_EQUAL_FATAL(test_run_ok(run), 0);
    CU_ASSERT(same_final("p_single", "s_b"));
    char *m = rpath("%s/%s/metrics.jsonl", "s_b");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"loss\""), STEPS); // one line per step, no repeats
    free(m);
}

// The embedded default (the task and tiny model of `make demo`, configs/demo.yaml) through
// mpirun -np 4: 2 generators, and 2 learners in one tp = 2 group.
static void test_embedded_default_np4(void) {
    setup();
    const char *mt = getenv("GEMC_MAKE_TASK");
    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd,
             "%s --seed 1 --out %s/arith > /dev/null && ./gemc init --config %s/arith/config.json "
             "--tokenizer %s/arith --out %s/demo_init --seed 1 --dtype f32 > /dev/null",
             mt && *mt ? mt : "build/make_task", root, root, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    snprintf(cmd, sizeof cmd,
             MPIRUN "-np 4 ./gemc train configs/demo.yaml train.model=%s/demo_init "
                    "train.data=%s/arith/train_prompts.jsonl train.dir=%s/demo_np4 train.steps=2 "
                    "train.batch_size=4 sampling.max_new_tokens=24 run.progress=false "
                    "pipeline.generators=2 pipeline.learners=2 pipeline.tp=2 "
                    "eval.prompts=%s/arith/test_prompts.jsonl eval.pairs=%s/arith/test_pairs.jsonl "
                    "eval.every_max=8",
             root, root, root, root, root);
    int rc = test_run(cmd, &out, &err);
    if (rc) fprintf(stderr, "\n%s\n%s\n", out, err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "2 generators, 2 learners (1 data-parallel x tp 2)"));
    free(out), free(err);
    CU_ASSERT(exists("demo_np4", "final/model.safetensors"));
    CU_ASSERT(exists("demo_np4", "shards/step_000002.gen_1.h5"));
    char *m = rpath("%s/%s/metrics.jsonl", "demo_np4");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"group_ids\""), 2);
    // demo.yaml's eval.every (10): the last step, evaluated by the root on the gathered tp model
    CU_ASSERT_EQUAL(test_count_lines(m, "\"eval_task_accuracy\": "), 1);
    free(m);
}

// A full disk while a generator writes its shard (here a file-size limit, which fails the write
// the same way): the run stops with the file and the cause, and no partial shard is visible.
static void test_full_disk_stops_cleanly(void) {
    setup();
    char cmd[8192], *out, *err;
    // each rank under a 12 KiB file-size limit (sh's ulimit counts 512-byte blocks): config.yaml
    // and metrics.jsonl fit, a shard of 4 groups of 3 candidates does not
    snprintf(cmd, sizeof cmd,
             MPIRUN "-np 2 sh -c 'ulimit -f 24; exec ./gemc train %s train.dir=%s/p_full "
                    "pipeline.generators=1 pipeline.learners=1 run.save_every=0'",
             base, root);
    CU_ASSERT_NOT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot write shard"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "step_000001.gen_0.h5"));
    free(out), free(err);
    char *shards = rpath("%s/%s/shards", "p_full");
    CU_ASSERT_EQUAL(test_count_dir_entries(shards), 0); // neither a shard nor its .tmp
    free(shards);
}

// The largest |a - b| over the tensors of two final models (DIR/final/model.safetensors under
// ROOT); -1 when their tensors differ in name or size.
static double final_max_diff(const char *a, const char *b) {
    char *x = rpath("%s/%s/final/model.safetensors", a),
         *y = rpath("%s/%s/final/model.safetensors", b);
    StFile fa, fb;
    double d = -1;
    if (st_open(&fa, x) == 0) {
        if (st_open(&fb, y) == 0) {
            d = fa.n == fb.n ? 0 : -1;
            for (int i = 0; i < fa.n && d >= 0; i++) {
                const StTensor *ta = &fa.tensors[i], *tb = st_find(&fb, ta->name);
                if (!tb || tb->numel != ta->numel) {
                    d = -1;
                    break;
                }
                float *va = malloc(ta->numel * sizeof(float)),
                      *vb = malloc(ta->numel * sizeof(float));
                st_tensor_to_f32(ta, va);
                st_tensor_to_f32(tb, vb);
                for (size_t k = 0; k < ta->numel; k++) d = fmax(d, fabs((double)va[k] - vb[k]));
                free(va), free(vb);
            }
            st_close(&fb);
        }
        st_close(&fa);
    }
    free(x), free(y);
    return d;
}

// The pipeline on the CUDA backend (GEMC_CUDA_BIN: build/gemc_emu, the emulated device, under
// `make test`; ./gemc on a GPU): 1 generator and 2 data-parallel learners. The learners share the
// one device, so their gradients go through host memory over MPI, and every group is used once.
// pipeline.collectives=nccl refuses the shared device with a HINT. Then 2 learners in one tp = 2
// group on the device (the tp collectives through host memory over MPI): straight, and with a
// SIGKILL to a learner after the step-2 checkpoint and a resume, which ends in the same weights
// within 1e-4 (GPU runs are not bit-reproducible in general: the embedding gradient's atomics;
// the emulator's are, and gives 0).
static void test_pipeline_on_cuda(void) {
    const char *bin = getenv("GEMC_CUDA_BIN");
    if (!bin || !*bin) {
        printf("(skipped: GEMC_CUDA_BIN names no CUDA build) ");
        return;
    }
    setup();
    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd,
             MPIRUN "-np 3 %s train %s train.dir=%s/p_cuda pipeline.generators=1 "
                    "pipeline.learners=2 run.device=cuda",
             bin, base, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    check_groups_once("p_cuda", 1);
    CU_ASSERT(exists("p_cuda", "checkpoints/step_000004/optimizer_tp0.bin"));
    CU_ASSERT(exists("p_cuda", "final/model.safetensors"));

    const char *refused[][2] = {
        {"pipeline.learners=2 pipeline.collectives=nccl", "shares a GPU with another"},
        {"pipeline.learners=2 pipeline.tp=2 pipeline.collectives=nccl",
         "tensor-parallel rank 1 shares a GPU with another"},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 MPIRUN "-np 3 %s train %s train.dir=%s/p_cuda_bad%d pipeline.generators=1 "
                        "run.device=cuda %s",
                 bin, base, root, i, refused[i][0]);
        const int rc = test_run(cmd, &out, &err);
        CU_ASSERT(rc != 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, refused[i][1]));
        if (rc == 0 || !strstr(err, refused[i][1])) fprintf(stderr, "\n  %s\n%s", cmd, err);
        free(out), free(err);
    }

    // tp = 2 GPU learners: straight (p_cuda_tp), then killed and resumed (p_cuda_tp_k)
    char run[4096], then[4096];
    for (int i = 0; i < 2; i++) {
        snprintf(i ? run : cmd, sizeof cmd,
                 MPIRUN "-np 3 %s train %s train.dir=%s/p_cuda_tp%s pipeline.generators=1 "
                        "pipeline.learners=2 pipeline.tp=2 run.device=cuda",
                 bin, base, root, i ? "_k" : "");
    }
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    check_groups_once("p_cuda_tp", 1);
    CU_ASSERT(exists("p_cuda_tp", "checkpoints/step_000004/optimizer_tp1.bin"));
    char *w = wait_until("[ -f %s/p_cuda_tp_k/checkpoints/step_000002/DONE ]", root);
    snprintf(then, sizeof then,
             "%sfor p in $(pgrep -f 'gemc_emu train .*train.dir=%s/p_cuda_tp_k |gemc train "
             ".*train.dir=%s/p_cuda_tp_k '); do grep -qz '^OMPI_COMM_WORLD_RANK=2$' "
             "/proc/$p/environ && kill -9 $p; done; wait",
             w, root, root);
    free(w);
    for (int attempt = 0; attempt < 3; attempt++) { // (a kill that lands too late says nothing)
        char rm[2048];
        snprintf(rm, sizeof rm, "rm -rf %s/p_cuda_tp_k", root);
        CU_ASSERT_EQUAL_FATAL(test_run_ok(rm), 0);
        CU_ASSERT_EQUAL_FATAL(run_interrupted(run, "p_cuda_tp_k", then, &out), 0);
        free(out);
        if (job_status("p_cuda_tp_k") != 0 && !exists("p_cuda_tp_k", "final/model.safetensors"))
            break;
    }
    CU_ASSERT(job_status("p_cuda_tp_k") > 0);
    CU_ASSERT(!exists("p_cuda_tp_k", "final/model.safetensors"));
    CU_ASSERT_EQUAL_FATAL(test_run_ok(run), 0); // run.resume: auto
    check_groups_once("p_cuda_tp_k", 1);
    const double d = final_max_diff("p_cuda_tp", "p_cuda_tp_k");
    CU_ASSERT(d >= 0 && d <= 1e-4);
    if (d < 0 || d > 1e-4 || getenv("GEMC_TEST_VERBOSE"))
        fprintf(stderr, "\n  GPU tp=2 resumed vs straight: max weight diff %g\n", d);
}

// ROOT/nan_ref: ROOT/sft/final with a NaN in the final norm's weight (every logit NaN).
static void write_nan_model(void) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s/nan_ref && cp -r %s/sft/final %s/nan_ref", root, root,
             root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *path = rpath("%s/%s/model.safetensors", "nan_ref");
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, path), 0);
    const StTensor *t = st_find(&f, "model.norm.weight");
    CU_ASSERT_FATAL(t && t->dtype == DT_F32);
    const long at = (long)(t->data - f.map);
    st_close(&f);
    FILE *fp = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    const float nan = NAN;
    CU_ASSERT(fseek(fp, at, SEEK_SET) == 0 && fwrite(&nan, sizeof nan, 1, fp) == 1);
    fclose(fp);
    free(path);
}

// Non-finite losses on data-parallel learners (the KL term to a reference that answers NaN):
// every learner skips the same updates, and optim.max_nonfinite_steps in a row stop the job
// with a checkpoint it resumes from, and exactly one error line (from the learners' root, not
// from mpirun's rank 0).
static void test_nonfinite_stop_on_learners(void) {
    setup();
    write_nan_model();
    char cmd[4096], *out, *err, keys[1024];
    snprintf(keys, sizeof keys,
             "sega.kl_coef=0.1 model.ref=%s/nan_ref optim.max_nonfinite_steps=2 run.save_every=0",
             root);
    train_cmd(cmd, sizeof cmd, 3, "p_nan", keys);
    CU_ASSERT_NOT_EQUAL(test_run(cmd, &out, &err), 0);
    int lines = 0, warnings = 0;
    for (const char *e = err; (e = strstr(e, "gemc: error:")); e++) lines++;
    for (const char *e = err; (e = strstr(e, "update skipped")); e++) warnings++;
    CU_ASSERT_EQUAL(lines, 1);
    CU_ASSERT_EQUAL(warnings, 2); // logged once, by the root learner
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gemc: error: train: 2 updates in a row skipped for a "
                                       "non-finite loss or gradient (steps 1 to 2; last loss nan"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "p_nan/checkpoints/step_000002. HINT:"));
    if (lines != 1 || warnings != 2) fprintf(stderr, "\n  %s\n  stderr: %s\n", cmd, err);
    free(out), free(err);
    CU_ASSERT(exists("p_nan", "checkpoints/step_000002/DONE"));
    CU_ASSERT(exists("p_nan", "checkpoints/step_000002/optimizer_tp0.bin"));
    CU_ASSERT(!exists("p_nan", "final/model.safetensors"));
    // the same command resumes from it (and stops again two steps later)
    CU_ASSERT_NOT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "resuming from checkpoint step 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(steps 3 to 4;"));
    free(out), free(err);
    CU_ASSERT(exists("p_nan", "checkpoints/step_000004/DONE"));
}

void register_pipeline_tests(void) {
    static const TestCase tests[] = {
        {"launch: ranks must match the config", test_launch_errors},
        {"1 generator + 1 learner = the single-process bits", test_two_ranks_equal_single_process},
        {"2 generators + 2 learners (tp 2, staleness 1): every group once", test_four_ranks_tp2},
        {"SIGKILL one rank, resume: bit-identical, no group lost or reused",
         test_sigkill_and_resume_is_exact},
        {"SIGTERM: checkpoint at the step boundary, clean exit, exact resume",
         test_sigterm_checkpoints_and_exits},
        {"a hung rank: the others stop after pipeline.timeout", test_hung_rank_times_out},
        {"one process: SIGKILL, SIGTERM, resume: bit-identical",
         test_single_process_kill_term_resume},
        {"foreign-config and corrupt shards: warned, removed, sampled again",
         test_foreign_and_corrupt_shards},
        {"the embedded default on mpirun -np 4 (2 generators, tp 2)", test_embedded_default_np4},
        {"a full disk: a clear error, no partial shard", test_full_disk_stops_cleanly},
        {"NaN/Inf loss: every learner skips, then one stop with a checkpoint",
         test_nonfinite_stop_on_learners},
        {"on the CUDA backend: data-parallel GPU learners, and what is refused",
         test_pipeline_on_cuda},
        {NULL, NULL},
    };
    add_suite("pipeline", tests);
}
