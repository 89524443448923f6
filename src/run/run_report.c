// gemc report: a run directory read back into one short table.
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "run/metric_keys.h"
#include "run/metrics_log.h"
#include "run/run_report.h"
#include "base/strbuf.h"

static int is_eval_row(const MetricsRow *r) {
    return r->label != NULL;
}

static double sum_of(const MetricsLog *log, const char *key) {
    double s = 0;
    for (int i = 0; i < log->n; i++) {
        double v = metrics_row_get(&log->rows[i], key);
        if (isfinite(v)) s += v;
    }
    return s;
}

static void print_steps(const MetricsLog *log, FILE *out) {
    const MetricsRow *a = &log->rows[0], *z = &log->rows[log->n - 1];
    char tok[32], sampled[32], wall[32];
    double trained = sum_of(log, "tokens"), drawn = sum_of(log, "sampled_tokens");
    format_count(trained, tok, sizeof tok);
    format_count(drawn, sampled, sizeof sampled);
    fprintf(out, "  steps        %ld to %ld (%d logged)", a->step, z->step, log->n);
    if (trained > 0) fprintf(out, ", %s tokens trained", tok);
    if (drawn > 0) fprintf(out, ", %s sampled", sampled);
    fprintf(out, "\n");
    // a line is written when its step ends: the first step's own phases come before it
    double phases0 = 0, phases = 0;
    for (int p = 0; p < N_METRIC_KEYS; p++) {
        if (METRIC_KEYS[p].kind != METRIC_TIME) continue;
        double v = metrics_row_get(a, METRIC_KEYS[p].key);
        if (isfinite(v)) phases0 += v;
        phases += sum_of(log, METRIC_KEYS[p].key);
    }
    double elapsed = isfinite(a->wall_time) && isfinite(z->wall_time)
                         ? z->wall_time - a->wall_time + phases0
                         : phases;
    format_duration(elapsed, wall, sizeof wall);
    fprintf(out, "  wall time    %s\n", wall);
    if (phases <= 0) return;
    fprintf(out, "\n  %-18s %10s %10s %7s\n", "phase", "total", "per step", "share");
    for (int p = 0; p < N_METRIC_KEYS; p++) {
        if (METRIC_KEYS[p].kind != METRIC_TIME) continue;
        double t = sum_of(log, METRIC_KEYS[p].key);
        if (t <= 0) continue;
        fprintf(out, "  %-18s %9.2fs %9.3fs %6.1f%%\n", METRIC_KEYS[p].name, t, t / log->n,
                elapsed > 0 ? 100 * t / elapsed : 0.0);
    }
    if (elapsed > phases + 0.05 * elapsed)
        fprintf(out, "  %-18s %9.2fs %10s %6.1f%%\n", "other (saving, ...)", elapsed - phases, "",
                100 * (elapsed - phases) / elapsed);
}

// "0.1221", "-0.4179", "14.9k", "1.20M": four significant digits, thousands as k and M.
static void fmt_value(char *buf, size_t n, double v) {
    if (fabs(v) >= 1e4)
        format_count(v, buf, n);
    else
        snprintf(buf, n, "%.4g", v);
}

static void print_metrics(const MetricsLog *log, FILE *out) {
    int header = 0;
    // the table's rows: the metrics with a report name (metric_keys.c), when the run has them
    for (int k = 0; k < N_METRIC_KEYS; k++) {
        const MetricKey *mk = &METRIC_KEYS[k];
        if (mk->kind != METRIC_VALUE || !mk->name) continue;
        double first = NAN, last = NAN, best = NAN, sum = 0;
        long best_step = 0, n = 0;
        for (int i = 0; i < log->n; i++) {
            double v = metrics_row_get(&log->rows[i], mk->key);
            if (!isfinite(v)) continue;
            if (n++ == 0) first = v;
            last = v;
            sum += v;
            if (isnan(best) || (mk->best > 0 ? v > best : v < best))
                best = v, best_step = log->rows[i].step;
        }
        if (n == 0) continue;
        if (!header++)
            fprintf(out, "\n  %-20s %11s %11s %11s %13s\n", "metric", "first", "final", "mean",
                    "best (step)");
        char f[32], l[32], m[32], b[64] = "-";
        fmt_value(f, sizeof f, first);
        fmt_value(l, sizeof l, last);
        fmt_value(m, sizeof m, sum / n);
        if (mk->best) {
            fmt_value(b, sizeof b, best);
            snprintf(b + strlen(b), sizeof b - strlen(b), " (%ld)", best_step);
        }
        fprintf(out, "  %-20s %11s %11s %11s %13s\n", mk->name, f, l, m, b);
    }
}

static void percent(char *buf, size_t n, double v) {
    if (isfinite(v))
        snprintf(buf, n, "%.1f%%", 100 * v);
    else
        snprintf(buf, n, "-");
}

static void print_evals(const MetricsLog *log, FILE *out) {
    int header = 0;
    for (int i = 0; i < log->n; i++) {
        const MetricsRow *r = &log->rows[i];
        double task = metrics_row_get(r, is_eval_row(r) ? "task_accuracy" : "eval_task_accuracy");
        double pref = metrics_row_get(r, is_eval_row(r) ? "pref_accuracy" : "eval_pref_accuracy");
        if (!isfinite(task) && !isfinite(pref)) continue;
        if (!header++)
            fprintf(out, "\n  %-20s %11s %11s\n", is_eval_row(r) ? "eval: model" : "eval at step",
                    "task acc", "pref acc");
        char name[64], t[16], p[16];
        if (is_eval_row(r))
            snprintf(name, sizeof name, "%s", r->label);
        else
            snprintf(name, sizeof name, "%ld", r->step);
        percent(t, sizeof t, task);
        percent(p, sizeof p, pref);
        fprintf(out, "  %-20s %11s %11s\n", name, t, p);
    }
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A checkpoint folder that is whole: a training-state checkpoint of `train` once its DONE marker
// is written (stages/checkpoint.c), an sft or dpo one once its weights are (it is renamed into
// place complete).
static int checkpoint_complete(const char *ck) {
    char *done = path_join(ck, "DONE"), *state = path_join(ck, "trainer_state.json"),
         *weights = path_join(ck, "model.safetensors");
    int whole = path_exists(done) || (!path_exists(state) && path_exists(weights));
    free(done), free(state), free(weights);
    return whole;
}

// checkpoints/step_N (the complete ones) and final.
static void print_checkpoints(const char *dir, FILE *out) {
    char *ck_dir = path_join(dir, "checkpoints");
    DIR *d = opendir(ck_dir);
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "step_", 5) != 0 || strchr(e->d_name, '.')) continue;
        char *ck = path_join(ck_dir, e->d_name);
        if (checkpoint_complete(ck)) {
            char **grown = realloc(names, sizeof(char *) * (size_t)(n + 1));
            if (!grown) gemc_fatal("out of memory listing %s", ck_dir);
            names = grown;
            names[n++] = strdup(e->d_name);
        }
        free(ck);
    }
    if (d) closedir(d);
    free(ck_dir);
    if (n > 1) qsort(names, (size_t)n, sizeof(char *), by_name); // names is NULL when n == 0
    char *final = path_join(dir, "final/model.safetensors");
    int has_final = path_exists(final);
    free(final);
    StrBuf line = {0};
    for (int i = 0; i < n; i++) {
        if (i) strbuf_puts(&line, ", ");
        if (i == 3 && n > 6) { // the first three and the last two of a long list
            char more[48];
            snprintf(more, sizeof more, "... (%d more), ", n - 5);
            strbuf_puts(&line, more);
            i = n - 2;
        }
        strbuf_puts(&line, "checkpoints/");
        strbuf_puts(&line, names[i]);
    }
    if (has_final) strbuf_puts(&line, n ? ", final" : "final");
    fprintf(out, "\n  checkpoints  %s\n", line.p ? line.p : "none");
    free(line.p);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int run_report_print(const char *dir, FILE *out) {
    char *path = path_join(dir, "metrics.jsonl");
    MetricsLog log;
    int rc = metrics_log_read(path, &log);
    free(path);
    if (rc != 0) return -1;
    fprintf(out, "\n== %s: %s ==\n", dir, log.n ? log.rows[0].stage : "no steps logged");
    if (log.n) {
        if (!is_eval_row(&log.rows[0])) {
            print_steps(&log, out);
            print_metrics(&log, out);
        }
        print_evals(&log, out);
    }
    if (!log.n || !is_eval_row(&log.rows[0])) print_checkpoints(dir, out);
    if (log.note[0]) fprintf(out, "\n  note: %s\n", log.note);
    fflush(out);
    metrics_log_free(&log);
    return 0;
}
