// Command-line options: one table per subcommand gives parsing, errors and --help.
#ifndef GEMC_CLI_H
#define GEMC_CLI_H

#include <stdio.h>

typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_FLAG } OptType;

typedef struct {
    const char *name; // without the leading "--"
    OptType type;
    void *dest;          // const char **, int *, float *, int * (flag)
    const char *metavar; // "DIR", "N", ... (NULL for flags)
    const char *help;
    int required;
} CliOpt;

typedef struct {
    const char *name;    // "score"
    const char *summary; // one line
    const char *details; // printed after the options (may be NULL)
    const CliOpt *opts;  // terminated by {0}
    const char *program; // a standalone tool's name for messages; NULL: "gemc NAME"
} CliCommand;

// Parses argv[1..argc) ("--name value" or "--name=value"); positional arguments are refused.
// Returns 0 when parsed, 1 when --help was printed (exit 0), -1 with the error set (an unknown
// option suggests the closest known one).
int cli_parse(const CliCommand *cmd, int argc, char **argv);
void cli_print_help(const CliCommand *cmd, FILE *out);
// The same for a command that also takes positional arguments (paths): 1 to max_pos of them
// are stored in pos[] (*n_pos of them), the options around them go to cli_parse. An option that
// takes a value keeps it, even a value that looks like a path. None is an error saying what is
// missing (`what`: "the shard file") with the usage line (the summary's first line) as the
// HINT; more than max_pos an error naming the first extra one.
int cli_parse_with_paths(const CliCommand *cmd, int argc, char **argv, const char *what,
                         const char **pos, int max_pos, int *n_pos);

// "1,2,3" -> malloc'd ids. Returns -1 with the error set on anything else.
int cli_parse_ids(const char *text, const char *opt_name, int **ids_out, int *n_out);

// Levenshtein distance, for "did you mean" hints.
int edit_distance(const char *a, const char *b);
// The name in names[0..n) closest to s, or NULL when none is reasonably close.
const char *closest_name(const char *s, const char *const *names, int n);

#endif
