// The run directory of a stage (config.yaml, env.json, metrics.jsonl, checkpoints) and the
// console.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "run/metric_keys.h"
#include "model/cpu/cpu_env.h"
#include "base/json_file.h"
#include "run/metrics_log.h"
#include "stages/stage.h"

// Keeps the lines of path whose "step" is at most keep (a resumed run rewrites the steps after
// its checkpoint), atomically.
static int metrics_keep_through(const char *path, long keep) {
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) return 0; // no log yet
    StrBuf kept = {0};
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        long step = -1;
        if (sscanf(line, "{\"step\": %ld", &step) == 1 && step <= keep) strbuf_put(&kept, line, n);
        line += n;
    }
    int rc = write_file_atomic(path, kept.p ? kept.p : "", kept.len);
    free(kept.p);
    free(text);
    return rc;
}

// RUN_DIR/tb holds one event file, the events of metrics.jsonl as it stands: the files of an
// earlier run in the folder go (they would draw over this one's curves), and a resumed run's
// file is written afresh from the lines metrics.jsonl kept, so the steps it redoes appear once.
static int tb_start(RunDir *r, const char *metrics_path, long resume_step) {
    char *tb_dir = path_join(r->dir, "tb");
    DIR *d = opendir(tb_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0) continue;
        char *old = path_join(tb_dir, e->d_name);
        remove(old);
        free(old);
    }
    if (d) closedir(d);
    int rc = tb_open(&r->tb, tb_dir, epoch_seconds());
    free(tb_dir);
    if (rc != 0 || resume_step < 0) return rc;
    MetricsLog log;
    if (metrics_log_read(metrics_path, &log) != 0) return 0; // no log yet: nothing to replay
    for (int i = 0; i < log.n && rc == 0; i++) rc = metrics_row_to_tb(&r->tb, &log.rows[i]);
    metrics_log_free(&log);
    return rc;
}

int rundir_open_at(RunDir *r, const char *dir, const GemConfig *c, const char *stage,
                   long resume_step) {
    memset(r, 0, sizeof *r);
    if (ensure_dir(dir) != 0) return -1;
    if (config_save(c, dir) != 0) return -1;
    // what this run runs on (build, CPU, GEMM kernels, BLAS, threads), to compare runs by
    CpuEnv env;
    cpu_env_get(&env);
    char *env_path = path_join(dir, "env.json");
    int env_rc = json_write_file(env_path, cpu_env_json(&env));
    free(env_path);
    if (env_rc != 0) return -1;
    char *path = path_join(dir, "metrics.jsonl");
    // a fresh log per run: lines of an earlier run in the same folder would read as this one's;
    // a resumed run keeps the lines of the steps it continues from
    if (resume_step >= 0 && metrics_keep_through(path, resume_step) != 0) {
        free(path);
        return -1;
    }
    r->metrics = fopen(path, resume_step >= 0 ? "a" : "w");
    if (!r->metrics) {
        gemc_set_error("%s: cannot write (%s)", path, strerror(errno));
        free(path);
        return -1;
    }
    r->dir = strdup(dir);
    r->cfg = c;
    r->stage = stage;
    r->t_start = now_seconds();
    r->progress = c->run.progress < 0 ? isatty(STDERR_FILENO) : c->run.progress;
    int rc = c->log.tensorboard ? tb_start(r, path, resume_step) : 0;
    free(path);
    if (rc != 0) rundir_close(r);
    return rc;
}

int rundir_open(RunDir *r, const char *dir, const GemConfig *c, const char *stage) {
    return rundir_open_at(r, dir, c, stage, -1);
}

void rundir_close(RunDir *r) {
    if (r->metrics) fclose(r->metrics);
    tb_close(&r->tb);
    free(r->dir);
    memset(r, 0, sizeof *r);
}

DType save_dtype(SaveDtype d) {
    return d == DTYPE_NAME_F32 ? DT_F32 : d == DTYPE_NAME_F16 ? DT_F16 : DT_BF16;
}

int rundir_save(RunDir *r, const Policy *p, int step) {
    char name[64];
    if (step < 0)
        snprintf(name, sizeof name, "final");
    else
        snprintf(name, sizeof name, "checkpoints/step_%06d", step);
    char *dst = path_join(r->dir, name);
    char tmp_name[96], old_name[96];
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp.%d", name, (int)getpid());
    snprintf(old_name, sizeof old_name, "%s.old.%d", name, (int)getpid());
    char *tmp = path_join(r->dir, tmp_name), *old = path_join(r->dir, old_name);
    int rc = -1;
    remove_dir_files(tmp);
    model_sync_host(&p->model);
    // the complete copy is written under a temporary name and renamed into place, so DIR/final
    // is always either the old model or the new one, never half of each
    if (model_save_folder(&p->model, tmp, save_dtype(r->cfg->run.dtype), p->dir, 0) != 0) {
        remove_dir_files(tmp);
        goto out;
    }
    struct stat st;
    if (stat(dst, &st) == 0 && rename(dst, old) != 0) {
        gemc_set_error("%s: cannot move the older checkpoint aside (%s)", dst, strerror(errno));
        goto out;
    }
    if (rename(tmp, dst) != 0) {
        gemc_set_error("%s: cannot rename %s into place (%s)", dst, tmp, strerror(errno));
        goto out;
    }
    remove_dir_files(old);
    rc = 0;
out:
    free(dst);
    free(tmp);
    free(old);
    return rc;
}

// ---- metrics ---------------------------------------------------------------------------------

void metrics_begin(Metrics *m, const char *stage, int step) {
    memset(m, 0, sizeof *m);
    char b[64];
    snprintf(b, sizeof b, "{\"step\": %d, \"stage\": ", step);
    strbuf_puts(&m->buf, b);
    strbuf_json_string(&m->buf, stage);
}

static void metrics_key(Metrics *m, const char *key) {
    // a key outside metric_keys.c would reach no chart, report or plot: a bug, caught by the tests
    if (!metric_key(key))
        gemc_fatal("metrics: '%s' is not in the metric key table (HINT: add it to "
                   "src/run/metric_keys.c)",
                   key);
    strbuf_puts(&m->buf, ", ");
    strbuf_json_string(&m->buf, key);
    strbuf_puts(&m->buf, ": ");
}

void metrics_num(Metrics *m, const char *key, double v) {
    metrics_key(m, key);
    char b[64];
    if (isfinite(v))
        snprintf(b, sizeof b, "%.7g", v);
    else
        snprintf(b, sizeof b, "null");
    strbuf_puts(&m->buf, b);
}

void metrics_raw(Metrics *m, const char *key, const char *json) {
    metrics_key(m, key);
    strbuf_puts(&m->buf, json);
}

void metrics_int(Metrics *m, const char *key, long v) {
    metrics_key(m, key);
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    strbuf_puts(&m->buf, b);
}

void metrics_str(Metrics *m, const char *key, const char *v) {
    metrics_key(m, key);
    strbuf_json_string(&m->buf, v);
}

void metrics_end(Metrics *m, RunDir *r) {
    // when the step ended, its evaluation included (gemc report measures the run with it)
    char b[64];
    snprintf(b, sizeof b, ", \"wall_time\": %.3f}\n", epoch_seconds());
    strbuf_puts(&m->buf, b);
    if (r && r->metrics) {
        fwrite(m->buf.p, 1, m->buf.len, r->metrics);
        fflush(r->metrics);
    }
    // TensorBoard gets what the line says, through the reader that replays it on a resume
    MetricsRow row;
    if (r && r->tb.f && metrics_row_parse(m->buf.p, m->buf.len - 1, &row) == 0) {
        if (metrics_row_to_tb(&r->tb, &row) != 0) {
            fprintf(stderr,
                    "gemc: warning: %s; TensorBoard events stop here, metrics.jsonl goes "
                    "on\n",
                    gemc_error());
            tb_close(&r->tb);
        }
        metrics_row_free(&row);
    }
    free(m->buf.p);
    memset(m, 0, sizeof *m);
}

// ---- console ---------------------------------------------------------------------------------

static const char *bar_label = "";

void progress_set_label(const char *label) {
    bar_label = label;
}

void progress_bar(void *run_dir, long done, long total) {
    const RunDir *r = run_dir;
    if (!r || !r->progress || total <= 0) return;
    enum { WIDTH = 30 };
    int fill = (int)(WIDTH * done / total);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '-';
    bar[WIDTH] = 0;
    fprintf(stderr, "\r  %s [%s] %ld/%ld", bar_label, bar, done, total);
    fflush(stderr);
}

void progress_done(RunDir *r) {
    if (!r || !r->progress) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

void stage_print_step(const char *stage, int step, int steps, const char *fields, double tok_s,
                      double t_loop) {
    double elapsed = now_seconds() - t_loop;
    char eta[32], rate[32];
    format_duration(elapsed / step * (steps - step), eta, sizeof eta);
    format_count(tok_s, rate, sizeof rate);
    printf("%s step %*d/%d | %s | %s tok/s | ETA %s\n", stage, (int)snprintf(NULL, 0, "%d", steps),
           step, steps, fields, rate, eta);
    fflush(stdout);
}

// ---- preemption

volatile sig_atomic_t stage_stop_requested = 0;

static void on_sigterm(int sig) {
    (void)sig;
    stage_stop_requested = 1;
}

void stage_catch_sigterm(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sa.sa_flags = SA_RESTART; // a write or fsync in progress carries on; the flag is read later
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
}
