// TensorBoard event files: CRC-32C, TFRecord framing, and the few protobuf fields of
// tensorflow.Event that scalar logging needs (see tb_events.h for the layout).
//
// Wire format reminders: a field starts with the varint key (number << 3 | wire type); wire
// type 0 is a varint, 1 eight little-endian bytes, 2 a varint length and that many bytes, 5 four
// little-endian bytes. A negative int64 is its two's complement as a 10-byte varint.
#include "run/tb_events.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"
#include "base/strbuf.h"

// ---- CRC-32C ---------------------------------------------------------------------------------

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_table_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

uint32_t crc32c(const void *data, size_t n) {
    return crc32c_extend(0, data, n);
}

uint32_t crc32c_mask(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint32_t crc32c_unmask(uint32_t masked) {
    uint32_t rot = masked - 0xa282ead8u;
    return (rot >> 17) | (rot << 15);
}

// ---- encoding --------------------------------------------------------------------------------

// Messages are built in a StrBuf (strbuf.h), which holds any bytes.
typedef StrBuf Buf;

static void buf_put(Buf *b, const void *data, size_t n) {
    if (n) strbuf_put(b, (const char *)data, n); // an empty field's data may be NULL
}

static void put_varint(Buf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    while (v >= 0x80) tmp[n++] = (uint8_t)(v | 0x80), v >>= 7;
    tmp[n++] = (uint8_t)v;
    buf_put(b, tmp, (size_t)n);
}

static void put_le(Buf *b, uint64_t v, int nbytes) {
    uint8_t tmp[8];
    for (int i = 0; i < nbytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, tmp, (size_t)nbytes);
}

static void put_key(Buf *b, int field, int wire_type) {
    put_varint(b, (uint64_t)(field << 3 | wire_type));
}

static void put_bytes_field(Buf *b, int field, const void *data, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    buf_put(b, data, n);
}

static uint64_t double_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

// Fields 1 and 2 of Event. proto3 leaves out a zero step and a wall_time whose bits are zero
// (-0.0 is written).
static void put_event_head(Buf *b, double wall_time, long step) {
    if (double_bits(wall_time) != 0) {
        put_key(b, 1, 1);
        put_le(b, double_bits(wall_time), 8);
    }
    if (step != 0) {
        put_key(b, 2, 0);
        put_varint(b, (uint64_t)(int64_t)step);
    }
}

static size_t buf_finish(Buf *b, uint8_t **out) {
    *out = (uint8_t *)b->p;
    return b->len;
}

size_t tb_encode_version_event(double wall_time, const char *file_version, uint8_t **out) {
    Buf b = {0};
    put_event_head(&b, wall_time, 0);
    put_bytes_field(&b, 3, file_version, strlen(file_version));
    return buf_finish(&b, out);
}

size_t tb_encode_scalars_event(long step, double wall_time, int n, const char *const *tags,
                               const float *values, uint8_t **out) {
    Buf sum = {0}, val = {0};
    for (int i = 0; i < n; i++) {
        val.len = 0;
        size_t tag_len = strlen(tags[i]);
        if (tag_len) put_bytes_field(&val, 1, tags[i], tag_len);
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        put_key(&val, 2, 5); // in a oneof: written even when 0.0
        put_le(&val, bits, 4);
        put_bytes_field(&sum, 1, val.p, val.len);
    }
    Buf b = {0};
    put_event_head(&b, wall_time, step);
    put_bytes_field(&b, 5, sum.p, sum.len);
    free(sum.p);
    free(val.p);
    return buf_finish(&b, out);
}

// ---- writing ---------------------------------------------------------------------------------

// One TFRecord around the event, written with a single fwrite so that a killed writer leaves at
// most one partial record at the end.
static int write_record(TbWriter *w, const uint8_t *data, size_t n) {
    if (!w->f) {
        gemc_set_error("TensorBoard event file %s: not open", w->path ? w->path : "(none)");
        return -1;
    }
    Buf rec = {0};
    put_le(&rec, n, 8);
    put_le(&rec, crc32c_mask(crc32c(rec.p, 8)), 4);
    buf_put(&rec, data, n);
    put_le(&rec, crc32c_mask(crc32c(data, n)), 4);
    int ok = fwrite(rec.p, 1, rec.len, w->f) == rec.len && fflush(w->f) == 0;
    int err = errno;
    free(rec.p);
    if (!ok) {
        gemc_set_error("%s: write failed: %s (HINT: is the disk full? log.tensorboard: false "
                       "turns event files off)",
                       w->path, strerror(err));
        return -1;
    }
    return 0;
}

int tb_open(TbWriter *w, const char *dir, double wall_time) {
    memset(w, 0, sizeof *w);
    if (ensure_dir(dir) != 0) {
        char inner[512];
        snprintf(inner, sizeof inner, "%s", gemc_error());
        gemc_set_error("%s: cannot create the TensorBoard directory: %s (HINT: log.tensorboard: "
                       "false turns event files off)",
                       dir, inner);
        return -1;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    int err = 0;
    // Exclusive create: a second writer in the same directory, second and process gets a suffix
    // instead of truncating the first one's file.
    for (int attempt = 0; attempt < 100 && !w->f; attempt++) {
        char name[400];
        int len = snprintf(name, sizeof name, "events.out.tfevents.%ld.%s.%d", (long)wall_time,
                           host, (int)getpid());
        if (attempt) snprintf(name + len, sizeof name - (size_t)len, ".%d", attempt);
        free(w->path);
        w->path = path_join(dir, name);
        w->f = fopen(w->path, "wbx");
        err = errno;
        if (!w->f && err != EEXIST) break;
    }
    if (!w->f) {
        gemc_set_error("%s: cannot create: %s (HINT: log.tensorboard: false turns event files off)",
                       w->path, strerror(err));
        tb_close(w);
        return -1;
    }
    uint8_t *ev;
    size_t n = tb_encode_version_event(wall_time, "brain.Event:2", &ev);
    int rc = write_record(w, ev, n);
    free(ev);
    if (rc != 0) tb_close(w);
    return rc;
}

int tb_write_scalars(TbWriter *w, long step, double wall_time, int n, const char *const *tags,
                     const float *values) {
    if (n <= 0) return 0;
    uint8_t *ev;
    size_t len = tb_encode_scalars_event(step, wall_time, n, tags, values, &ev);
    int rc = write_record(w, ev, len);
    free(ev);
    return rc;
}

void tb_close(TbWriter *w) {
    if (w->f) fclose(w->f);
    free(w->path);
    w->f = NULL;
    w->path = NULL;
}

// ---- reading ---------------------------------------------------------------------------------

typedef struct {
    const char *path;
    const uint8_t *base; // start of the file, for offsets in errors
} Reader;

static int malformed(const Reader *r, const uint8_t *at, const char *what) {
    gemc_set_error("%s: byte %zu: malformed event: %s", r->path, (size_t)(at - r->base), what);
    return -1;
}

static uint64_t get_le(const uint8_t *p, int nbytes) {
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int get_varint(const Reader *r, const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    const uint8_t *p = *pp;
    *v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (p >= end) return malformed(r, *pp, "varint runs past its message");
        uint8_t byte = *p++;
        *v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *pp = p;
            return 0;
        }
    }
    return malformed(r, *pp, "varint longer than 10 bytes");
}

// One field: its key and its value, a varint or the extent [body, body + len).
typedef struct {
    int number, wire_type;
    const uint8_t *start; // the key
    uint64_t varint;
    const uint8_t *body;
    size_t len;
} Field;

static int get_field(const Reader *r, const uint8_t **pp, const uint8_t *end, Field *f) {
    const uint8_t *start = *pp;
    uint64_t key;
    if (get_varint(r, pp, end, &key) != 0) return -1;
    f->start = start;
    f->number = (int)(key >> 3);
    f->wire_type = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return malformed(r, start, "bad field number");
    f->varint = 0;
    if (f->wire_type == 0) {
        f->body = *pp, f->len = 0;
        return get_varint(r, pp, end, &f->varint);
    }
    uint64_t len;
    if (f->wire_type == 1)
        len = 8;
    else if (f->wire_type == 5)
        len = 4;
    else if (f->wire_type == 2) {
        if (get_varint(r, pp, end, &len) != 0) return -1;
    } else
        return malformed(r, start, "unsupported wire type");
    if (len > (uint64_t)(end - *pp)) return malformed(r, start, "field runs past its message");
    f->body = *pp, f->len = (size_t)len;
    *pp += len;
    return 0;
}

static int want_type(const Reader *r, const Field *f, int wire_type) {
    if (f->wire_type == wire_type) return 0;
    return malformed(r, f->start, "known field with the wrong wire type");
}

static char *dup_bytes(const uint8_t *p, size_t n) {
    char *s = mallocCheck(n + 1);
    if (n) memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static int parse_value(const Reader *r, const uint8_t *p, const uint8_t *end, TbEvent *ev) {
    char *tag = NULL;
    int has_simple = 0;
    float value = 0;
    while (p < end) {
        Field f;
        if (get_field(r, &p, end, &f) != 0) goto fail;
        if (f.number == 1) {
            if (want_type(r, &f, 2) != 0) goto fail;
            free(tag);
            tag = dup_bytes(f.body, f.len);
        } else if (f.number == 2) {
            if (want_type(r, &f, 5) != 0) goto fail;
            uint32_t bits = (uint32_t)get_le(f.body, 4);
            memcpy(&value, &bits, sizeof value);
            has_simple = 1;
        }
    }
    if (!has_simple) { // a histogram, image, tensor...: not a scalar of this reader's kind
        free(tag);
        return 0;
    }
    TbValue *v = realloc(ev->values, sizeof *v * (size_t)(ev->n_values + 1));
    if (!v) gemc_fatal("out of memory reading a TensorBoard event");
    ev->values = v;
    v[ev->n_values].tag = tag ? tag : dup_bytes(NULL, 0);
    v[ev->n_values].value = value;
    ev->n_values++;
    return 0;
fail:
    free(tag);
    return -1;
}

static int parse_summary(const Reader *r, const uint8_t *p, const uint8_t *end, TbEvent *ev) {
    while (p < end) {
        Field f;
        if (get_field(r, &p, end, &f) != 0) return -1;
        if (f.number != 1) continue;
        if (want_type(r, &f, 2) != 0 || parse_value(r, f.body, f.body + f.len, ev) != 0) return -1;
    }
    return 0;
}

static int parse_event(const Reader *r, const uint8_t *p, const uint8_t *end, TbEvent *ev) {
    while (p < end) {
        Field f;
        if (get_field(r, &p, end, &f) != 0) return -1;
        switch (f.number) {
        case 1: {
            if (want_type(r, &f, 1) != 0) return -1;
            uint64_t bits = get_le(f.body, 8);
            memcpy(&ev->wall_time, &bits, sizeof bits);
            break;
        }
        case 2:
            if (want_type(r, &f, 0) != 0) return -1;
            ev->step = (long)(int64_t)f.varint;
            break;
        case 3:
            if (want_type(r, &f, 2) != 0) return -1;
            free(ev->file_version);
            ev->file_version = dup_bytes(f.body, f.len);
            break;
        case 5: // a message field seen twice merges: the values add up
            if (want_type(r, &f, 2) != 0 || parse_summary(r, f.body, f.body + f.len, ev) != 0)
                return -1;
            break;
        default: // graph_def, session_log, ...: not needed here
            break;
        }
    }
    return 0;
}

int tb_read_file(const char *path, TbEvent **events, int *n_events, int *truncated) {
    *events = NULL;
    *n_events = 0;
    *truncated = 0;
    size_t size;
    char *data = read_text_file(path, &size);
    if (!data) return -1;
    Reader r = {path, (const uint8_t *)data};
    const uint8_t *p = r.base, *end = r.base + size;
    TbEvent *evs = NULL;
    int n = 0, cap = 0, rc = 0;
    while (p < end) {
        const size_t off = (size_t)(p - r.base), left = (size_t)(end - p);
        if (left < 12) {
            *truncated = 1;
            break;
        }
        const uint32_t len_crc = crc32c(p, 8), stored = crc32c_unmask((uint32_t)get_le(p + 8, 4));
        if (len_crc != stored) {
            gemc_set_error("%s: byte %zu: record length CRC mismatch (stored %08x, computed %08x)",
                           path, off, stored, len_crc);
            rc = -1;
            break;
        }
        const uint64_t len = get_le(p, 8);
        if (len > left - 12 || left - 12 - len < 4) {
            *truncated = 1;
            break;
        }
        const uint8_t *body = p + 12;
        const uint32_t data_crc = crc32c(body, len);
        const uint32_t stored_data = crc32c_unmask((uint32_t)get_le(body + len, 4));
        if (data_crc != stored_data) {
            gemc_set_error("%s: byte %zu: record data CRC mismatch (stored %08x, computed %08x)",
                           path, off, stored_data, data_crc);
            rc = -1;
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            TbEvent *grown = realloc(evs, sizeof *evs * (size_t)cap);
            if (!grown) gemc_fatal("out of memory reading %s", path);
            evs = grown;
        }
        memset(&evs[n], 0, sizeof evs[n]);
        n++;
        if (parse_event(&r, body, body + len, &evs[n - 1]) != 0) {
            rc = -1;
            break;
        }
        p = body + len + 4;
    }
    free(data);
    if (rc != 0) {
        tb_events_free(evs, n);
        *truncated = 0;
        return -1;
    }
    *events = evs;
    *n_events = n;
    return 0;
}

void tb_events_free(TbEvent *events, int n) {
    for (int i = 0; i < n; i++) {
        free(events[i].file_version);
        for (int j = 0; j < events[i].n_values; j++) free(events[i].values[j].tag);
        free(events[i].values);
    }
    free(events);
}
