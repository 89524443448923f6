// gemc plot RUN_DIR [RUN_DIR ...] [--out FILE.png|FILE.svg]: the main curves of one or more runs
// on one sheet, drawn by gnuplot (Debian's gnuplot-nox). gemc reads each metrics.jsonl, writes a
// gnuplot script with the points inline, and gnuplot renders it into a temporary file that is
// renamed into place once it is complete.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "run/metric_keys.h"
#include "run/metrics_log.h"
#include "base/strbuf.h"

enum { MAX_RUNS = 12 };

// One panel of the sheet: up to two metrics per run, the second one dashed.
typedef struct {
    const char *title, *ylabel;
    const char *key[2], *name[2];
    int percent; // shares drawn as 0-100%, with a marker at each point (evaluations are few)
} Panel;

static const Panel PANELS[] = {
    {"loss", "loss", {"loss", NULL}, {"", NULL}, 0},
    {"reward (GEM: mean reward; DPO: implicit reward margin, dashed)",
     "reward",
     {"reward_mean", "reward_margin"},
     {"", " margin"},
     0},
    {"entropy (fork: solid, final: dashed)",
     "nats",
     {"fork_entropy", "final_entropy"},
     {" fork", " final"},
     0},
    {"accuracy at each eval (task: solid, preference: dashed)",
     "%",
     {"eval_task_accuracy", "eval_pref_accuracy"},
     {" task", " pref"},
     1},
    {"tokens/s (train: solid, sample: dashed)",
     "tokens/s",
     {"train_tok_s", "sample_tok_s"},
     {" train", " sample"},
     0},
    {"grad norm", "grad norm", {"grad_norm", NULL}, {"", NULL}, 0},
};
#define N_PANELS ((int)(sizeof PANELS / sizeof PANELS[0]))

static const char *const COLORS[MAX_RUNS] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                             "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                             "#7f7f7f", "#bcbd22", "#000000", "#aec7e8"};

// A gnuplot string literal: double quotes, with " and \ escaped.
static void put_quoted(StrBuf *b, const char *s) {
    strbuf_puts(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') strbuf_puts(b, "\\");
        strbuf_put(b, s, 1);
    }
    strbuf_puts(b, "\"");
}

static int has_points(const MetricsLog *log, const char *key) {
    for (int i = 0; i < log->n; i++)
        if (isfinite(metrics_row_get(&log->rows[i], key))) return 1;
    return 0;
}

// The script: a datablock per (run, metric) with points, then a 3 x 2 multiplot.
static void write_script(StrBuf *b, const char *term, const char *out, const char **names,
                         const MetricsLog *logs, int n_runs) {
    char line[256];
    for (int r = 0; r < n_runs; r++)
        for (int p = 0; p < N_PANELS; p++)
            for (int s = 0; s < 2 && PANELS[p].key[s]; s++) {
                if (!has_points(&logs[r], PANELS[p].key[s])) continue;
                snprintf(line, sizeof line, "$r%dp%ds%d << EOD\n", r, p, s);
                strbuf_puts(b, line);
                for (int i = 0; i < logs[r].n; i++) {
                    double v = metrics_row_get(&logs[r].rows[i], PANELS[p].key[s]);
                    if (!isfinite(v)) continue;
                    snprintf(line, sizeof line, "%ld %.9g\n", logs[r].rows[i].step,
                             PANELS[p].percent ? 100 * v : v);
                    strbuf_puts(b, line);
                }
                strbuf_puts(b, "EOD\n");
            }
    strbuf_puts(b, term);
    strbuf_puts(b, "\nset termoption noenhanced\nset output ");
    put_quoted(b, out);
    strbuf_puts(b, "\nset multiplot layout 3,2 title ");
    // runs under one folder are named by what follows it (runs/ablation/s1/gem -> gem)
    size_t skip = 0;
    for (size_t i = 0; n_runs > 1 && names[0][i]; i++) {
        int same = 1;
        for (int r = 1; r < n_runs && same; r++) same = names[r][i] == names[0][i];
        if (!same) break;
        if (names[0][i] == '/') skip = i + 1;
    }
    StrBuf title = {0};
    strbuf_puts(&title, "gemc: ");
    if (skip) {
        strbuf_put(&title, names[0], skip);
        strbuf_puts(&title, ": ");
    }
    for (int r = 0; r < n_runs; r++) {
        if (r) strbuf_puts(&title, " vs ");
        strbuf_puts(&title, names[r] + skip);
    }
    put_quoted(b, title.p);
    free(title.p);
    strbuf_puts(b, " font \",13\"\n");
    // a key of many runs inside a panel would hide the curves behind it: outside, to the right
    strbuf_puts(b, n_runs > 3 ? "set key outside right top font \",8\" samplen 2\n"
                              : "set key top right opaque font \",9\" samplen 2\n");
    strbuf_puts(b, "set grid lc rgb \"#dddddd\"\n"
                   "set xlabel \"step\"\nset border lc rgb \"#555555\"\n");
    for (int p = 0; p < N_PANELS; p++) {
        strbuf_puts(b, "set title ");
        put_quoted(b, PANELS[p].title);
        strbuf_puts(b, "\nset ylabel ");
        put_quoted(b, PANELS[p].ylabel);
        strbuf_puts(b, "\n");
        StrBuf plot = {0};
        for (int r = 0; r < n_runs; r++)
            for (int s = 0; s < 2 && PANELS[p].key[s]; s++) {
                if (!has_points(&logs[r], PANELS[p].key[s])) continue;
                const int eval = PANELS[p].percent;
                snprintf(line, sizeof line,
                         "%s$r%dp%ds%d using 1:2 with %s lw %s lc rgb \"%s\" dt %d title ",
                         plot.len ? ", " : "plot ", r, p, s,
                         eval ? "linespoints pt 7 ps 0.8" : "lines", eval ? "2" : "1.2", COLORS[r],
                         s ? 2 : 1);
                strbuf_puts(&plot, line);
                char t[300];
                snprintf(t, sizeof t, "%s%s", names[r] + skip, PANELS[p].name[s]);
                put_quoted(&plot, t);
            }
        if (plot.len) {
            // headroom above the curves for the key, so that it hides none of them
            strbuf_puts(b, PANELS[p].percent ? "set autoscale x\nset yrange [0:119]\n"
                                             : "set autoscale\nset offsets 0, 0, graph 0.3, 0\n");
            strbuf_put(b, plot.p, plot.len);
            strbuf_puts(b, "\n");
        } else { // an empty frame that says so, rather than a gap in the sheet
            strbuf_puts(b, "set xrange [0:1]\nset yrange [0:1]\nset label 1 \"not logged by "
                           "these runs\" at 0.5,0.5 center\nplot 2 notitle\nunset label 1\n");
        }
        free(plot.p);
    }
    strbuf_puts(b, "unset multiplot\nset output\n");
}

// The exit status of a child whose exec failed (the shell's "command not found").
enum { EXEC_FAILED = 127 };

// Runs gnuplot (a path, or a name execvp looks up on PATH) on the script (its stdin); what it
// prints goes to err_path. Returns its exit status (EXEC_FAILED when there is no such program),
// or -1 when it could not be started.
static int run_gnuplot(const char *gnuplot, const StrBuf *script, const char *err_path) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        dup2(fds[0], STDIN_FILENO);
        if (err >= 0) dup2(err, STDERR_FILENO);
        // gnuplot sends the image to stdout when it cannot open the output
        if (null >= 0) dup2(null, STDOUT_FILENO);
        close(fds[0]), close(fds[1]);
        execlp(gnuplot, "gnuplot", (char *)NULL);
        _exit(EXEC_FAILED);
    }
    close(fds[0]);
    for (size_t at = 0; at < script->len;) {
        ssize_t w = write(fds[1], script->p + at, script->len - at);
        if (w <= 0 && errno != EINTR) break; // gnuplot stopped reading: its status says why
        if (w > 0) at += (size_t)w;
    }
    close(fds[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The first line gnuplot wrote that says what went wrong, for the error message.
static void first_error_line(const char *err_path, char *buf, size_t n) {
    size_t len;
    char *text = read_text_file(err_path, &len);
    snprintf(buf, n, "no message");
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strstr(line, "error") || strstr(line, "cannot")) {
            snprintf(buf, n, "%s", line);
            break;
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(text);
}

static int plot_runs(const char **dirs, int n_runs, const char *out) {
    const char *ext = strrchr(out, '.');
    const char *term = NULL;
    if (ext && !strcmp(ext, ".png"))
        term = "set terminal pngcairo size 1500,1050 font \"sans,10\" background rgb \"white\"";
    else if (ext && !strcmp(ext, ".svg"))
        term = "set terminal svg size 1500,1050 font \"sans,10\" background rgb \"white\"";
    if (!term) {
        gemc_set_error("gemc plot: --out %s: unknown format (HINT: name a .png or a .svg file)",
                       out);
        return -1;
    }
    // a panel names its metrics by their keys in metric_keys.c, the table the writer checks
    for (int p = 0; p < N_PANELS; p++)
        for (int s = 0; s < 2 && PANELS[p].key[s]; s++)
            if (!metric_key(PANELS[p].key[s]))
                gemc_fatal("plot: panel metric '%s' is not in the metric key table (HINT: add "
                           "it to src/run/metric_keys.c)",
                           PANELS[p].key[s]);
    const char *env = getenv("GEMC_GNUPLOT"), *gnuplot = env && *env ? env : "gnuplot";
    MetricsLog logs[MAX_RUNS] = {0};
    int rc = 0;
    for (int r = 0; r < n_runs && rc == 0; r++) {
        char *path = path_join(dirs[r], "metrics.jsonl");
        rc = metrics_log_read(path, &logs[r]);
        if (rc == 0 && logs[r].n == 0) {
            gemc_set_error("%s: no steps logged yet (HINT: plot a run once its first step is "
                           "done)",
                           path);
            rc = -1;
        }
        if (rc == 0 && logs[r].note[0]) fprintf(stderr, "note: %s\n", logs[r].note);
        free(path);
    }
    char tmp[4096], err[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d%s", out, (int)getpid(), ext);
    snprintf(err, sizeof err, "%s.tmp.%d.log", out, (int)getpid());
    if (rc == 0) {
        // the temporary file is made here, so that an unwritable folder is our error line
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            gemc_set_error("%s: cannot write (%s) (HINT: --out names a file in an existing, "
                           "writable folder)",
                           out, strerror(errno));
            rc = -1;
        } else {
            close(fd);
        }
    }
    if (rc == 0) {
        StrBuf script = {0};
        write_script(&script, term, tmp, dirs, logs, n_runs);
        int status = run_gnuplot(gnuplot, &script, err);
        struct stat st;
        if (status == EXEC_FAILED) {
            gemc_set_error("gemc plot: gnuplot not found%s (HINT: sudo apt-get install "
                           "gnuplot-nox, or make deps)",
                           env && *env ? " at $GEMC_GNUPLOT" : " on PATH");
            rc = -1;
        } else if (status != 0 || stat(tmp, &st) != 0 || st.st_size == 0) {
            char why[512];
            first_error_line(err, why, sizeof why);
            gemc_set_error("gemc plot: gnuplot (%s) failed with status %d writing %s: %s", gnuplot,
                           status, out, why);
            rc = -1;
        } else {
            int fd = open(tmp, O_RDONLY);
            if (fd >= 0) fsync(fd), close(fd);
            if (rename(tmp, out) != 0) {
                gemc_set_error("%s: cannot rename %s into place (%s)", out, tmp, strerror(errno));
                rc = -1;
            }
        }
        remove(tmp);
        remove(err);
        free(script.p);
    }
    for (int r = 0; r < n_runs; r++) metrics_log_free(&logs[r]);
    return rc;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    const CliOpt opts[] = {
        {"out", OPT_STR, &out, "FILE",
         "where the sheet goes: FILE.png or FILE.svg (default: RUN_DIR/plot.png of the first run)",
         0},
        {0},
    };
    const CliCommand cmd = {
        "plot",
        "gemc plot RUN_DIR [RUN_DIR ...] [--out FILE.png|FILE.svg]\n\n"
        "Draws the main curves of each run directory on one sheet, several runs overlaid in\n"
        "their own colours: loss, reward (mean reward of GEM, implicit reward margin of DPO),\n"
        "fork and final entropy, accuracy at each evaluation (eval.every), tokens/s of training\n"
        "and sampling, and grad norm. Needs gnuplot (Debian: gnuplot-nox). A run still going or\n"
        "killed is drawn up to its last whole metrics line.",
        "examples:\n"
        "  gemc plot runs/demo/gem\n"
        "  gemc plot runs/demo/gem runs/demo/dpo --out runs/demo/gem_vs_dpo.png\n"
        "tensorboard --logdir runs/demo shows the same metrics live (log.tensorboard).",
        opts,
        NULL,
    };
    const char *dirs[MAX_RUNS];
    int n = 0;
    int rc = cli_parse_with_paths(&cmd, argc, argv, "the run directory", dirs, MAX_RUNS, &n);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    char *def = out ? NULL : path_join(dirs[0], "plot.png");
    rc = plot_runs(dirs, n, out ? out : def);
    if (rc == 0) printf("wrote %s\n", out ? out : def);
    free(def);
    return rc ? cmd_fail() : 0;
}
