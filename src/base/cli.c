#include "base/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

// "gemc NAME" for a subcommand, or the program's own name for a standalone tool.
static const char *cli_title(const CliCommand *cmd) {
    static char buf[96];
    if (cmd->program) return cmd->program;
    snprintf(buf, sizeof buf, "gemc %s", cmd->name);
    return buf;
}

int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *row = callocCheck(lb + 1, sizeof(int));
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}

const char *closest_name(const char *s, const char *const *names, int n) {
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(s, names[i]);
        if (d < best_d) best_d = d, best = names[i];
    }
    // close means: at most a third of the word differs
    int limit = (int)strlen(s) / 3 + 1;
    return best_d <= limit ? best : NULL;
}

static const CliOpt *find_opt(const CliCommand *cmd, const char *name, size_t len) {
    for (const CliOpt *o = cmd->opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static int set_value(const CliCommand *cmd, const CliOpt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_STR:
        *(const char **)o->dest = v;
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < INT_MIN || x > INT_MAX) break;
        *(int *)o->dest = (int)x;
        return 0;
    }
    case OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end) break;
        *(float *)o->dest = x;
        return 0;
    }
    case OPT_FLAG:
        return 0;
    }
    gemc_set_error("%s: --%s: '%s' is not %s", cli_title(cmd), o->name, v,
                   o->type == OPT_INT ? "an integer" : "a number");
    return -1;
}

int cli_parse(const CliCommand *cmd, int argc, char **argv) {
    int nopts = 0;
    for (const CliOpt *o = cmd->opts; o->name; o++) nopts++;
    char *seen = callocCheck(nopts + 1, 1);
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_help(cmd, stdout);
            free(seen);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            gemc_set_error("%s: unexpected argument '%s' (HINT: see '%s --help')", cli_title(cmd),
                           a, cli_title(cmd));
            rc = -1;
            break;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const CliOpt *o = find_opt(cmd, name, len);
        if (!o) {
            const char **names = mallocCheck(sizeof(char *) * (nopts + 1));
            for (int k = 0; k < nopts; k++) names[k] = cmd->opts[k].name;
            char *given = strndup(name, len);
            const char *near = closest_name(given, names, nopts);
            if (near)
                gemc_set_error("%s: unknown option '--%s' (did you mean '--%s'?)", cli_title(cmd),
                               given, near);
            else
                gemc_set_error("%s: unknown option '--%s' (HINT: see '%s --help')", cli_title(cmd),
                               given, cli_title(cmd));
            free(given);
            free(names);
            rc = -1;
            break;
        }
        seen[o - cmd->opts] = 1;
        if (o->type == OPT_FLAG) {
            if (eq) {
                gemc_set_error("%s: --%s takes no value", cli_title(cmd), o->name);
                rc = -1;
                break;
            }
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            gemc_set_error("%s: --%s needs a value (%s)", cli_title(cmd), o->name,
                           o->metavar ? o->metavar : "VALUE");
            rc = -1;
            break;
        }
        rc = set_value(cmd, o, v);
    }
    for (int k = 0; k < nopts && rc == 0; k++) {
        if (cmd->opts[k].required && !seen[k]) {
            gemc_set_error("%s: --%s %s is required (HINT: see '%s --help')", cli_title(cmd),
                           cmd->opts[k].name, cmd->opts[k].metavar, cli_title(cmd));
            rc = -1;
        }
    }
    free(seen);
    return rc;
}

void cli_print_help(const CliCommand *cmd, FILE *out) {
    fprintf(out, "usage: %s [options]\n\n%s\n\noptions:\n", cli_title(cmd), cmd->summary);
    for (const CliOpt *o = cmd->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-22s %s%s\n", left, o->help, o->required ? " (required)" : "");
    }
    fprintf(out, "  %-22s %s\n", "--help", "show this help");
    if (cmd->details) fprintf(out, "\n%s\n", cmd->details);
}

int cli_parse_with_paths(const CliCommand *cmd, int argc, char **argv, const char *what,
                         const char **pos, int max_pos, int *n_pos) {
    char **rest = mallocCheck(sizeof(char *) * (size_t)(argc + 1));
    int n_rest = 0;
    const char *extra = NULL;
    *n_pos = 0;
    rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            rest[n_rest++] = argv[i];
            for (const CliOpt *o = cmd->opts; o->name && !strchr(a, '='); o++)
                if (o->type != OPT_FLAG && !strncmp(a, "--", 2) && !strcmp(a + 2, o->name) &&
                    i + 1 < argc) {
                    rest[n_rest++] = argv[++i];
                    break;
                }
        } else if (*n_pos < max_pos) {
            pos[(*n_pos)++] = a;
        } else if (!extra) {
            extra = a;
        }
    }
    int rc = cli_parse(cmd, n_rest, rest);
    free(rest);
    if (rc == 0 && extra) {
        gemc_set_error("%s: unexpected argument '%s' (HINT: see '%s --help')", cli_title(cmd),
                       extra, cli_title(cmd));
        rc = -1;
    }
    if (rc == 0 && *n_pos == 0) {
        const char *nl = strchr(cmd->summary, '\n');
        int usage = nl ? (int)(nl - cmd->summary) : (int)strlen(cmd->summary);
        gemc_set_error("%s: missing %s (HINT: %.*s)", cli_title(cmd), what, usage, cmd->summary);
        rc = -1;
    }
    return rc;
}

int cli_parse_ids(const char *text, const char *opt_name, int **ids_out, int *n_out) {
    int cap = 16, n = 0;
    int *ids = mallocCheck(sizeof(int) * cap);
    const char *p = text;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT_MIN || x > INT_MAX) {
            gemc_set_error("%s: item %d ('%.20s') is not an integer token id (HINT: write ids as "
                           "1,2,3)",
                           opt_name, n + 1, p);
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, sizeof(int) * cap);
            if (!ids) gemc_fatal("out of memory");
        }
        ids[n++] = (int)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == 0) break;
        if (*p != ',') {
            gemc_set_error("%s: unexpected '%c' after item %d (HINT: write ids as 1,2,3)", opt_name,
                           *p, n);
            free(ids);
            return -1;
        }
        p++;
    }
    *ids_out = ids;
    *n_out = n;
    return 0;
}
