// The summary of a run directory: what `gemc report RUN_DIR` prints, and what every stage prints
// when it ends. Everything comes from the folder itself (metrics.jsonl, checkpoints/, final/),
// so a killed run, or one still going, reports up to its last whole metrics line.
#ifndef GEMC_RUN_REPORT_H
#define GEMC_RUN_REPORT_H

#include <stdio.h>

// Prints the table for dir to out:
//   - steps, tokens trained and sampled;
//   - wall time, and the time of each phase (sample, score, train, shard waits, evaluation);
//   - the main metrics: first, final, mean and best value (with its step);
//   - the evaluations (eval.every, or each model of a `gemc eval` run);
//   - the checkpoints written.
// A cut-off or damaged metrics.jsonl is read up to its last whole line and the table ends with a
// note saying so. Returns 0, or -1 with the error set when dir has no metrics.jsonl.
int run_report_print(const char *dir, FILE *out);

#endif
