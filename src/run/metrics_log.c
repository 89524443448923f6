// metrics.jsonl read back line by line with cJSON, and the TensorBoard tags of its keys.
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "run/metric_keys.h"
#include "run/metrics_log.h"

int metrics_row_parse(const char *line, size_t len, MetricsRow *row) {
    memset(row, 0, sizeof *row);
    cJSON *o = cJSON_ParseWithLength(line, len);
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
    const cJSON *stage = cJSON_GetObjectItemCaseSensitive(o, "stage");
    // cJSON keeps numbers as doubles: a step beyond long's range (1e300 in a damaged line) would
    // make the cast below undefined, so such a line is not a metrics object. -(double)LONG_MIN is
    // 2^63 exactly, where (double)LONG_MAX would round up to it and let 2^63 through.
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(step) || !cJSON_IsString(stage) ||
        !(step->valuedouble >= (double)LONG_MIN && step->valuedouble < -(double)LONG_MIN)) {
        cJSON_Delete(o);
        return -1;
    }
    row->step = (long)step->valuedouble;
    row->stage = strdup(stage->valuestring);
    row->wall_time = NAN;
    int cap = cJSON_GetArraySize(o);
    row->fields = mallocCheck(sizeof(MetricsField) * (size_t)(cap ? cap : 1));
    for (const cJSON *it = o->child; it; it = it->next) {
        if (!strcmp(it->string, "step") || !strcmp(it->string, "stage")) continue;
        if (!strcmp(it->string, "wall_time")) {
            if (cJSON_IsNumber(it)) row->wall_time = it->valuedouble;
        } else if (!strcmp(it->string, "label") && cJSON_IsString(it)) {
            free(row->label);
            row->label = strdup(it->valuestring);
        } else if (cJSON_IsNumber(it) || cJSON_IsNull(it)) {
            MetricsField *f = &row->fields[row->n_fields++];
            f->key = strdup(it->string);
            f->value = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        }
    }
    cJSON_Delete(o);
    return 0;
}

void metrics_row_free(MetricsRow *row) {
    for (int i = 0; i < row->n_fields; i++) free(row->fields[i].key);
    free(row->fields);
    free(row->stage);
    free(row->label);
    memset(row, 0, sizeof *row);
}

double metrics_row_get(const MetricsRow *row, const char *key) {
    for (int i = 0; i < row->n_fields; i++)
        if (!strcmp(row->fields[i].key, key)) return row->fields[i].value;
    return NAN;
}

int metrics_log_read(const char *path, MetricsLog *log) {
    memset(log, 0, sizeof *log);
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) return -1;
    int cap = 0, line_no = 0;
    for (size_t at = 0; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        line_no++;
        if (!nl) {
            // the writer flushes whole lines, so only a killed run leaves this
            snprintf(log->note, sizeof log->note,
                     "%s: line %d is cut off (%zu bytes without a newline; a killed run?): read "
                     "the %d whole lines before it",
                     path, line_no, len - at, log->n);
            break;
        }
        size_t n = (size_t)(nl - (text + at));
        MetricsRow row;
        if (n > 0 && metrics_row_parse(text + at, n, &row) != 0) {
            snprintf(log->note, sizeof log->note,
                     "%s: line %d is not a metrics object (a damaged file?): read the %d lines "
                     "before it",
                     path, line_no, log->n);
            break;
        }
        if (n > 0) {
            if (log->n == cap) {
                cap = cap ? 2 * cap : 256;
                MetricsRow *grown = realloc(log->rows, sizeof(MetricsRow) * (size_t)cap);
                if (!grown) gemc_fatal("out of memory reading %s", path);
                log->rows = grown;
            }
            log->rows[log->n++] = row;
        }
        at += n + 1;
    }
    free(text);
    return 0;
}

void metrics_log_free(MetricsLog *log) {
    for (int i = 0; i < log->n; i++) metrics_row_free(&log->rows[i]);
    free(log->rows);
    memset(log, 0, sizeof *log);
}

// ---- TensorBoard tags: TensorBoard groups charts by the part before the first '/'

void metrics_tb_tag(const char *key, const char *label, char *buf, size_t n) {
    const MetricKey *mk = metric_key(key);
    const char *tag = mk ? mk->tag : NULL;
    char other[160];
    if (!tag) {
        snprintf(other, sizeof other, "other/%s", key); // a key the table does not know yet
        tag = other;
    }
    if (label)
        snprintf(buf, n, "%s/%s", tag, label);
    else
        snprintf(buf, n, "%s", tag);
}

int metrics_row_to_tb(TbWriter *w, const MetricsRow *row) {
    enum { TAG_MAX = 160 };
    const char **tags = mallocCheck(sizeof(char *) * (size_t)(row->n_fields + 1));
    float *values = mallocCheck(sizeof(float) * (size_t)(row->n_fields + 1));
    char *names = mallocCheck((size_t)TAG_MAX * (size_t)(row->n_fields + 1));
    int n = 0;
    for (int i = 0; i < row->n_fields; i++) {
        // null (a NaN loss, mfu on the CPU) is no point at all rather than a NaN on the chart
        if (!isfinite(row->fields[i].value)) continue;
        char *tag = names + (size_t)n * TAG_MAX;
        metrics_tb_tag(row->fields[i].key, row->label, tag, TAG_MAX);
        tags[n] = tag;
        values[n++] = (float)row->fields[i].value;
    }
    double wall = isfinite(row->wall_time) ? row->wall_time : epoch_seconds();
    int rc = tb_write_scalars(w, row->step, wall, n, tags, values);
    free(tags), free(values), free(names);
    return rc;
}
