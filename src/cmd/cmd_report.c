// gemc report RUN_DIR [RUN_DIR ...]: the summary table of each run directory (run_report.h).
#include <stdio.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "run/run_report.h"

enum { MAX_RUNS = 16 };

int cmd_report(int argc, char **argv) {
    const CliOpt opts[] = {{0}};
    const CliCommand cmd = {
        "report",
        "gemc report RUN_DIR [RUN_DIR ...]\n\n"
        "Prints a short table for each run directory (sft, train, dpo or eval): steps and\n"
        "tokens, wall time per phase, the first, final, mean and best value of the main\n"
        "metrics, the evaluations, and the checkpoints written. It reads the folder only\n"
        "(metrics.jsonl, checkpoints/, final/), so it works on a finished run, one still going,\n"
        "and one that was killed: a cut-off metrics.jsonl is read up to its last whole line,\n"
        "with a note. Every stage prints the same table when it ends.",
        "examples:\n"
        "  gemc report runs/demo/gem\n"
        "  gemc report runs/demo/gem runs/demo/dpo runs/demo/eval",
        opts,
        NULL,
    };
    const char *dirs[MAX_RUNS];
    int n = 0;
    int rc = cli_parse_with_paths(&cmd, argc, argv, "the run directory", dirs, MAX_RUNS, &n);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    for (int i = 0; i < n; i++)
        if (run_report_print(dirs[i], stdout) != 0) return cmd_fail();
    return 0;
}
