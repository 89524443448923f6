// Reading a run's metrics.jsonl back (gemc report, gemc plot, TensorBoard replay on resume), and
// the TensorBoard tag each metric is shown under.
//
// A line is one JSON object: {"step": N, "stage": "...", key: number|null|..., "wall_time": T}.
// A killed run can leave a last line without its newline, or a damaged one: the log is read up to
// its last whole line, and `note` says what was left out.
#ifndef GEMC_METRICS_LOG_H
#define GEMC_METRICS_LOG_H

#include <stddef.h>

#include "run/tb_events.h"

typedef struct {
    char *key;
    double value; // NAN for null
} MetricsField;

typedef struct {
    long step;
    char *stage;
    char *label;          // eval lines: the model's label; NULL otherwise
    double wall_time;     // seconds since the epoch; NAN when the line has none
    MetricsField *fields; // the numeric fields other than step and wall_time, in line order
    int n_fields;
} MetricsRow;

typedef struct {
    MetricsRow *rows;
    int n;
    char note[512]; // "" when every line was whole and well-formed
} MetricsLog;

// Parses one line (without its newline). Returns 0, or -1 when it is not a metrics object.
int metrics_row_parse(const char *line, size_t len, MetricsRow *row);
void metrics_row_free(MetricsRow *row);
// The value of key in the row: NAN when the row has no such field (or it is null).
double metrics_row_get(const MetricsRow *row, const char *key);

// Reads path up to its last whole, well-formed line. Returns 0, or -1 with the error set when
// the file cannot be read at all.
int metrics_log_read(const char *path, MetricsLog *log);
void metrics_log_free(MetricsLog *log);

// The TensorBoard tag of a metrics key ("loss" -> "train/loss", "fork_entropy" ->
// "entropy/fork", ...): the same metric has the same tag in every stage, so `tensorboard
// --logdir runs/` overlays GEM and DPO. An eval line's tags end in its model's label.
void metrics_tb_tag(const char *key, const char *label, char *buf, size_t n);
// Writes the row's finite values as one TensorBoard event at its step. Returns 0 or -1.
int metrics_row_to_tb(TbWriter *w, const MetricsRow *row);

#endif
