// Run reports: metrics.jsonl read back (whole, cut off, damaged), the TensorBoard event file
// every stage writes beside it (the same numbers, each step once across a resume, none with
// log.tensorboard: false), eval.every, MFU, `gemc report` and `gemc plot`.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/metric_keys.h"
#include "base/common.h"
#include "run/metrics_log.h"
#include "run/tb_events.h"
#include "tests.h"

#define GEMC "./gemc"

static int contains(const char *s, const char *needle) {
    return s && strstr(s, needle) != NULL;
}

static char *tmp_file(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    test_write_file(p, text, strlen(text));
    return p;
}

// ---- metrics.jsonl ---------------------------------------------------------------------------

static const char *LINES = "{\"step\": 1, \"stage\": \"sft\", \"wall_time\": 1700000000.5, "
                           "\"loss\": 2.5, \"grad_norm\": null, \"updated\": 1}\n"
                           "{\"step\": 2, \"stage\": \"sft\", \"wall_time\": 1700000001.25, "
                           "\"loss\": 1.5, \"group_ids\": [1, 2], \"updated\": 0}\n";

static void test_metrics_log_read(void) {
    char *dir = test_tmpdir();
    MetricsLog log;
    // whole lines: every number, null as NaN, arrays and strings left out
    char *p = tmp_file(dir, "a.jsonl", LINES);
    CU_ASSERT_EQUAL_FATAL(metrics_log_read(p, &log), 0);
    CU_ASSERT_EQUAL_FATAL(log.n, 2);
    CU_ASSERT_STRING_EQUAL(log.note, "");
    CU_ASSERT_EQUAL(log.rows[0].step, 1);
    CU_ASSERT_STRING_EQUAL(log.rows[0].stage, "sft");
    CU_ASSERT_EQUAL(log.rows[0].wall_time, 1700000000.5);
    CU_ASSERT_EQUAL(metrics_row_get(&log.rows[0], "loss"), 2.5);
    CU_ASSERT(isnan(metrics_row_get(&log.rows[0], "grad_norm")));
    CU_ASSERT(isnan(metrics_row_get(&log.rows[0], "absent")));
    CU_ASSERT_EQUAL(log.rows[1].n_fields, 2); // loss and updated; group_ids is no scalar
    metrics_log_free(&log);
    free(p);
    // a killed writer: the last line has no newline
    StrBuf cut = {0};
    strbuf_puts(&cut, LINES);
    strbuf_puts(&cut, "{\"step\": 3, \"stage\": \"sft\", \"lo");
    p = tmp_file(dir, "b.jsonl", cut.p);
    CU_ASSERT_EQUAL_FATAL(metrics_log_read(p, &log), 0);
    CU_ASSERT_EQUAL(log.n, 2);
    CU_ASSERT(contains(log.note, "b.jsonl: line 3 is cut off"));
    CU_ASSERT(contains(log.note, "read the 2 whole lines before it"));
    metrics_log_free(&log);
    free(p);
    // damage in the middle: read up to it
    free(cut.p);
    cut = (StrBuf){0};
    strbuf_puts(&cut, "{\"step\": 1, \"stage\": \"sft\", \"loss\": 1}\n\x01\x02garbage\n");
    strbuf_puts(&cut, LINES);
    p = tmp_file(dir, "c.jsonl", cut.p);
    CU_ASSERT_EQUAL_FATAL(metrics_log_read(p, &log), 0);
    CU_ASSERT_EQUAL(log.n, 1);
    CU_ASSERT(contains(log.note, "c.jsonl: line 2 is not a metrics object"));
    metrics_log_free(&log);
    free(p);
    // empty is no error, a missing file is one that names it
    p = tmp_file(dir, "d.jsonl", "");
    CU_ASSERT_EQUAL(metrics_log_read(p, &log), 0);
    CU_ASSERT_EQUAL(log.n, 0);
    metrics_log_free(&log);
    free(p);
    p = path_join(dir, "missing.jsonl");
    CU_ASSERT_EQUAL(metrics_log_read(p, &log), -1);
    CU_ASSERT(contains(gemc_error(), "missing.jsonl"));
    free(p), free(cut.p), free(dir);
}

static void test_tb_tags(void) {
    char t[160];
    metrics_tb_tag("loss", NULL, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "train/loss");
    metrics_tb_tag("fork_entropy", NULL, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "entropy/fork");
    metrics_tb_tag("eval_task_accuracy", NULL, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "eval/task_accuracy");
    // a `gemc eval` line: one curve per model
    metrics_tb_tag("task_accuracy", "gem", t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "eval/task_accuracy/gem");
    metrics_tb_tag("something_new", NULL, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "other/something_new");
}

// The metric key table: each key once; every number has a grouped TensorBoard tag, every phase a
// name in the report's time breakdown, every report row a direction or none.
static void test_metric_key_table(void) {
    CU_ASSERT(N_METRIC_KEYS > 40);
    for (int i = 0; i < N_METRIC_KEYS; i++) {
        const MetricKey *k = &METRIC_KEYS[i];
        CU_ASSERT_PTR_EQUAL(metric_key(k->key), k); // no key twice
        if (k->kind == METRIC_TEXT) {
            CU_ASSERT_PTR_NULL(k->tag);
            continue;
        }
        CU_ASSERT(k->tag && strchr(k->tag, '/'));
        if (k->kind == METRIC_TIME) CU_ASSERT(k->name != NULL);
        CU_ASSERT(k->best >= -1 && k->best <= 1);
        if (!k->name) CU_ASSERT_EQUAL(k->best, 0);
    }
    CU_ASSERT_PTR_NULL(metric_key("something_new"));
}

// ---- TensorBoard next to metrics.jsonl -------------------------------------------------------

// The one event file of RUN/tb; NULL (and a failed assertion) when there is not exactly one.
static char *only_event_file(const char *run) {
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "ls %s/tb", run);
    test_run(cmd, &out, &err);
    char *nl = strchr(out, '\n');
    int one = nl && nl[1] == 0 && !strncmp(out, "events.out.tfevents.", 20);
    CU_ASSERT(one);
    char *path = NULL;
    if (one) {
        *nl = 0;
        snprintf(cmd, sizeof cmd, "%s/tb", run);
        path = path_join(cmd, out);
    }
    free(out), free(err);
    return path;
}

// Every line of RUN/metrics.jsonl is an event of RUN/tb at its step and wall time, holding each
// finite number of the line (as a float) under its tag; the steps come in order, once each.
static void check_events_match_metrics(const char *run, int steps) {
    char *events_path = only_event_file(run);
    if (!events_path) return;
    TbEvent *ev;
    int n, truncated;
    CU_ASSERT_EQUAL_FATAL(tb_read_file(events_path, &ev, &n, &truncated), 0);
    CU_ASSERT_EQUAL(truncated, 0);
    char *mpath = path_join(run, "metrics.jsonl");
    MetricsLog log;
    CU_ASSERT_EQUAL_FATAL(metrics_log_read(mpath, &log), 0);
    CU_ASSERT_EQUAL(log.n, steps);
    CU_ASSERT_EQUAL_FATAL(n, log.n + 1);
    CU_ASSERT_STRING_EQUAL(ev[0].file_version, "brain.Event:2");
    int bad = 0, values = 0;
    for (int i = 0; i < log.n; i++) {
        const MetricsRow *r = &log.rows[i];
        const TbEvent *e = &ev[i + 1];
        bad += e->step != r->step || e->step != i + 1 || e->wall_time != r->wall_time;
        int finite = 0;
        for (int f = 0; f < r->n_fields; f++) {
            if (!isfinite(r->fields[f].value)) continue;
            finite++;
            char tag[160];
            metrics_tb_tag(r->fields[f].key, r->label, tag, sizeof tag);
            int found = 0;
            for (int v = 0; v < e->n_values; v++)
                if (!strcmp(e->values[v].tag, tag))
                    found = 1, bad += e->values[v].value != (float)r->fields[f].value;
            bad += !found;
        }
        bad += e->n_values != finite;
        values += finite;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(values >= 8 * log.n); // loss, grad norm, lr, tokens, times, ...
    metrics_log_free(&log);
    tb_events_free(ev, n);
    free(mpath), free(events_path);
}

static void test_tensorboard_events(void) {
    const char *root = test_e2e_root();
    char cmd[2048], *run = path_join(root, "tb_sft");
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml sft.dir=%s log.peak_tflops=0.001", root, run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    check_events_match_metrics(run, 3);
    char *m = path_join(run, "metrics.jsonl");
    // log.peak_tflops gives every step an MFU; without it there is none (null)
    CU_ASSERT_EQUAL(test_count_lines(m, "\"mfu\": null"), 0);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"wall_time\": "), 3);
    // a second run in the same folder replaces the first one's events, as its metrics.jsonl
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml sft.dir=%s sft.steps=2", root, run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    check_events_match_metrics(run, 2);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"mfu\": null"), 2);
    free(m), free(run);
    // log.tensorboard: false: no tb folder at all
    run = path_join(root, "tb_off");
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml sft.dir=%s log.tensorboard=false", root, run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *tb = path_join(run, "tb");
    CU_ASSERT(!path_exists(tb));
    m = path_join(run, "metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"loss\""), 3);
    free(m), free(tb), free(run);
}

// A resumed train run: metrics.jsonl keeps the steps up to its checkpoint, and so does the
// event file, written afresh; the steps done again appear once, with the new run's values.
static void test_tensorboard_across_resume(void) {
    const char *root = test_e2e_root();
    char cmd[2048], *run = path_join(root, "tb_resume");
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s train.steps=3 run.save_every=2",
             root, run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    check_events_match_metrics(run, 3);
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s train.steps=4 run.save_every=2",
             root, run);
    char *out, *err;
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(contains(out, "resuming from checkpoint step 2"));
    free(out), free(err);
    check_events_match_metrics(run, 4);
    free(run);
}

// ---- eval.every ------------------------------------------------------------------------------

static void test_eval_every(void) {
    const char *root = test_e2e_root();
    char cmd[2048], *out, *err, *run = path_join(root, "eval_every");
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s train.steps=3 eval.every=2 eval.every_max=3",
             root, run);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    // steps 2 and 3 (the last): both accuracies on 3 prompts and 3 pairs
    CU_ASSERT(contains(out, "train step 2: eval | task accuracy "));
    CU_ASSERT(contains(out, "% of 3 | pref accuracy "));
    CU_ASSERT(contains(out, "train step 3: eval"));
    CU_ASSERT(!contains(out, "train step 1: eval"));
    free(out), free(err);
    char *m = path_join(run, "metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"eval_task_accuracy\": "), 2);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"eval_pref_accuracy\": "), 2);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"time_eval\": "), 2);
    check_events_match_metrics(run, 3);
    // the evaluations leave training as it was: same final weights as without them
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s_no train.steps=3", root, run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/final/model.safetensors", run);
    snprintf(b, sizeof b, "%s_no/final/model.safetensors", run);
    CU_ASSERT(test_files_equal(a, b));
    free(m), free(run);
    // with nothing to evaluate on: one error line that names the keys
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml eval.every=5 eval.prompts= eval.pairs=", root);
    test_expect_cli_error(cmd, "eval.every is 5, but neither eval.prompts nor eval.pairs is set",
                          "HINT");
    // a file that is not there: said before the stage starts
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml eval.every=5 eval.pairs=%s/no.jsonl", root,
             root);
    test_expect_cli_error(cmd, "eval.pairs: ", "no.jsonl: no such file (HINT: eval.every=5");
}

// ---- gemc report -----------------------------------------------------------------------------

// What `gemc report DIR` prints (malloc'd); it must succeed with nothing on stderr.
static char *report_of(const char *dir) {
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " report %s", dir);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    free(err);
    return out;
}

static void test_report_command(void) {
    const char *root = test_e2e_root();
    char cmd[2048], *out, *err, *run = path_join(root, "rep");
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s train.steps=3 run.save_every=1 eval.every=3 "
                  "eval.every_max=2",
             root, run);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    // the stage ends with the table
    CU_ASSERT(contains(out, "== "));
    CU_ASSERT(contains(out, "steps        1 to 3 (3 logged)"));
    free(out), free(err);
    out = report_of(run);
    CU_ASSERT(contains(out, ": train =="));
    CU_ASSERT(contains(out, "steps        1 to 3 (3 logged), "));
    CU_ASSERT(contains(out, "tokens trained"));
    CU_ASSERT(contains(out, "wall time"));
    CU_ASSERT(contains(out, "  sample "));
    CU_ASSERT(contains(out, "  train "));
    CU_ASSERT(contains(out, "  evaluation "));
    CU_ASSERT(contains(out, "  loss "));
    CU_ASSERT(contains(out, "  fork entropy "));
    CU_ASSERT(contains(out, "  reward mean "));
    CU_ASSERT(contains(out, "eval at step"));
    CU_ASSERT(
        contains(out, "checkpoints  checkpoints/step_000001, checkpoints/step_000002, final"));
    CU_ASSERT(!contains(out, "note:"));
    free(out);
    // a training checkpoint without its DONE marker was cut short: not listed
    snprintf(cmd, sizeof cmd, "rm %s/checkpoints/step_000002/DONE", run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    out = report_of(run);
    CU_ASSERT(contains(out, "checkpoints  checkpoints/step_000001, final"));
    free(out);
    // killed mid-line: the whole lines, and a note
    snprintf(cmd, sizeof cmd, "printf '{\"step\": 4, \"stage\": \"tr' >> %s/metrics.jsonl", run);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    out = report_of(run);
    CU_ASSERT(contains(out, "steps        1 to 3 (3 logged)"));
    CU_ASSERT(contains(out, "note: "));
    CU_ASSERT(contains(out, "metrics.jsonl: line 4 is cut off"));
    free(out);
    // an eval run: one row per model
    snprintf(cmd, sizeof cmd,
             GEMC " eval %s/cfg.yaml eval.dir=%s/rep_eval eval.max_prompts=2 eval.max_pairs=2 "
                  "eval.models=sft=%s/sft/final,again=%s/sft/final",
             root, root, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *eval_run = path_join(root, "rep_eval");
    out = report_of(eval_run);
    CU_ASSERT(contains(out, "eval: model"));
    CU_ASSERT(contains(out, "\n  sft "));
    CU_ASSERT(contains(out, "\n  again "));
    free(out), free(eval_run);
    // no run there: one error line naming the file
    snprintf(cmd, sizeof cmd, GEMC " report %s/nothing_here", root);
    test_expect_cli_error(cmd, "nothing_here/metrics.jsonl", NULL);
    test_expect_cli_error(GEMC " report", "missing the run directory",
                          "HINT: gemc report RUN_DIR [RUN_DIR ...]");
    free(run);
}

// ---- gemc plot -------------------------------------------------------------------------------

static void test_plot_command(void) {
    const char *root = test_e2e_root();
    char cmd[4096], *out, *err;
    // two runs with the curves the sheet draws (train has entropies, eval.every accuracies)
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/plot_gem train.steps=2 eval.every=1 "
                  "eval.every_max=2 && " GEMC " dpo %s/cfg.yaml dpo.dir=%s/plot_dpo",
             root, root, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *dir = test_tmpdir();
    snprintf(cmd, sizeof cmd, GEMC " plot %s/plot_gem %s/plot_dpo --out %s/s.svg", root, root, dir);
    CU_ASSERT_EQUAL_FATAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT(contains(out, "wrote "));
    free(out), free(err);
    char *svg_path = path_join(dir, "s.svg");
    size_t n;
    char *svg = read_text_file(svg_path, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT(contains(svg, "<svg"));
    CU_ASSERT(contains(svg, "</svg>"));
    CU_ASSERT(contains(svg, "accuracy at each eval"));
    CU_ASSERT(contains(svg, "entropy (fork: solid, final: dashed)"));
    CU_ASSERT(contains(svg, "tokens/s"));
    CU_ASSERT(contains(svg, "plot_gem fork"));   // the legend names each run's curves
    CU_ASSERT(contains(svg, "plot_dpo margin")); // DPO's reward
    CU_ASSERT(contains(svg, "plot_gem task"));   // eval.every points
    CU_ASSERT(!contains(svg, "not logged by these runs"));
    free(svg), free(svg_path);
    // one run, PNG: the file's signature and its 1500 x 1050 header
    snprintf(cmd, sizeof cmd, GEMC " plot %s/plot_gem --out %s/p.png", root, dir);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *png_path = path_join(dir, "p.png");
    FILE *f = fopen(png_path, "rb");
    unsigned char head[24] = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    CU_ASSERT_EQUAL(memcmp(head, "\x89PNG\r\n\x1a\n", 8), 0);
    CU_ASSERT_EQUAL(memcmp(head + 12, "IHDR", 4), 0);
    CU_ASSERT_EQUAL((head[16] << 24 | head[17] << 16 | head[18] << 8 | head[19]), 1500);
    CU_ASSERT_EQUAL((head[20] << 24 | head[21] << 16 | head[22] << 8 | head[23]), 1050);
    free(png_path);
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 2); // no temporary file left
    // the default: RUN_DIR/plot.png
    snprintf(cmd, sizeof cmd, GEMC " plot %s/plot_dpo", root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/plot_dpo/plot.png", root);
    CU_ASSERT(path_exists(cmd));
    // errors: one line each, nothing written
    snprintf(cmd, sizeof cmd, GEMC " plot %s/plot_gem --out %s/x.pdf", root, dir);
    test_expect_cli_error(cmd, "x.pdf: unknown format", "HINT: name a .png or a .svg file");
    snprintf(cmd, sizeof cmd,
             "GEMC_GNUPLOT=/nonexistent/gnuplot " GEMC " plot %s/plot_gem --out %s/y.png", root,
             dir);
    test_expect_cli_error(cmd, "gnuplot not found", "apt-get install gnuplot-nox");
    snprintf(cmd, sizeof cmd, GEMC " plot %s/none --out %s/z.png", root, dir);
    test_expect_cli_error(cmd, "none/metrics.jsonl", NULL);
    test_expect_cli_error(GEMC " plot --out x.png", "missing the run directory", "HINT");
    snprintf(cmd, sizeof cmd, GEMC " plot %s/plot_gem --out %s/no/such/dir/a.png", root, dir);
    test_expect_cli_error(cmd, "a.png: cannot write (No such file or directory)", "HINT");
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 2);
    free(dir);
}

void register_report_tests(void) {
    static const TestCase tests[] = {
        {"metrics.jsonl read back: a cut-off or damaged line ends it, with a note",
         test_metrics_log_read},
        {"TensorBoard tags: one per metric, the same in every stage", test_tb_tags},
        {"the metric key table: each key once, a tag for each number", test_metric_key_table},
        {"every metrics line is a TensorBoard event; log.tensorboard: false writes none",
         test_tensorboard_events},
        {"a resumed run's event file holds each step once", test_tensorboard_across_resume},
        {"eval.every: accuracies in the step lines, training unchanged", test_eval_every},
        {"gemc report: the table of a run, a killed run's log up to its last whole line",
         test_report_command},
        {"gemc plot: PNG and SVG sheets of one or several runs, and its errors", test_plot_command},
        {NULL, NULL},
    };
    add_suite("report", tests);
}
