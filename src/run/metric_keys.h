// Every key gemc writes to a run's metrics.jsonl, in one table, as config_keys.c is for the
// config: the stages' writer refuses a key that is not here (metrics_num and friends), and the
// readers take their names from it: the TensorBoard tag of each metric (metrics_log.c), the rows
// and the time breakdown of the run report (run_report.c) and the plot's panels (cmd_plot.c).
#ifndef GEMC_METRIC_KEYS_H
#define GEMC_METRIC_KEYS_H

typedef enum {
    METRIC_VALUE, // a number of the step: a TensorBoard scalar
    METRIC_TIME,  // seconds of one phase of the step: the report's time breakdown too
    METRIC_TEXT,  // not a number (an evaluation row's label and model, the pipeline's group ids)
} MetricKind;

typedef struct {
    const char *key; // in metrics.jsonl
    const char *tag; // TensorBoard's tag (its part before '/' groups the charts); NULL for text
    MetricKind kind;
    const char *name; // the run report's row, or its phase for a METRIC_TIME; NULL: not shown
    int best;         // report: +1 the highest value is the best, -1 the lowest, 0 no best column
} MetricKey;

// The table, in the order the run report shows its rows.
extern const MetricKey METRIC_KEYS[];
extern const int N_METRIC_KEYS;

// The entry of `key`, or NULL when gemc never writes it (a newer or foreign metrics.jsonl).
const MetricKey *metric_key(const char *key);

#endif
