// libFuzzer harness: a run's metrics.jsonl through metrics_log_read (as `gemc report`, `gemc plot`
// and the TensorBoard replay on resume read it), then every row it kept through the replay path
// itself: metrics_row_to_tb into a fresh event file, read back with tb_read_file. The round trip
// is checked, not just survived: whatever the log held, the event file must hold the version
// event plus one event per row with a finite value (a row of nulls writes nothing), at that row's
// step, with its values and tags. A mismatch is a bug in the writer or the reader, so it aborts.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "run/metrics_log.h"
#include "run/tb_events.h"

static int finite_fields(const MetricsRow *row) {
    int n = 0;
    for (int i = 0; i < row->n_fields; i++) n += isfinite(row->fields[i].value) != 0;
    return n;
}

// The event must be the row: same step, and the row's finite values in order under their tags.
static void check_event(const MetricsRow *row, const TbEvent *ev) {
    if (ev->step != row->step || ev->file_version || ev->n_values != finite_fields(row)) abort();
    char tag[160];
    int k = 0;
    for (int i = 0; i < row->n_fields; i++) {
        if (!isfinite(row->fields[i].value)) continue;
        metrics_tb_tag(row->fields[i].key, row->label, tag, sizeof tag);
        float want = (float)row->fields[i].value;
        if (strcmp(ev->values[k].tag, tag) != 0 || memcmp(&ev->values[k].value, &want, 4) != 0)
            abort();
        k++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = fuzz_write("metrics.jsonl", data, size);
    MetricsLog log;
    if (metrics_log_read(path, &log) != 0) abort(); // the file is there: it can always be read
    int written = 0;
    for (int i = 0; i < log.n; i++) {
        const MetricsRow *row = &log.rows[i];
        // the lookups report, plot and the stages make on every row
        (void)metrics_row_get(row, "loss");
        (void)metrics_row_get(row, "reward_mean");
        (void)metrics_row_get(row, "task_accuracy");
        (void)metrics_row_get(row, "");
        written += finite_fields(row) > 0;
    }

    char *dir = path_join(fuzz_dir(), "tb");
    TbWriter w;
    if (tb_open(&w, dir, 1700000000.0) != 0) abort();
    char *events_path = strdup(w.path);
    for (int i = 0; i < log.n; i++)
        if (metrics_row_to_tb(&w, &log.rows[i]) != 0) abort();
    tb_close(&w);

    TbEvent *ev;
    int n, truncated;
    if (tb_read_file(events_path, &ev, &n, &truncated) != 0 || truncated || n != 1 + written)
        abort();
    if (!ev[0].file_version || strcmp(ev[0].file_version, "brain.Event:2") != 0) abort();
    int k = 1;
    for (int i = 0; i < log.n; i++)
        if (finite_fields(&log.rows[i]) > 0) check_event(&log.rows[i], &ev[k++]);
    tb_events_free(ev, n);

    // one file per input: tb_open would otherwise find its name taken and add a suffix
    remove(events_path);
    free(events_path);
    free(dir);
    metrics_log_free(&log);
    free(path);
    return 0;
}
