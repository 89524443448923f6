// libFuzzer harness: a TensorBoard event file through tb_read_file (as `gemc report` and the tests
// read the files a run writes), then every event it decoded re-encoded with the writer's own
// encoders, framed, and read back: the second read must give the same events.
//
// Every record carries a masked CRC-32C of its length and of its data, so a mutated file is
// almost always refused at the first CRC and the protobuf decoder behind it is never reached. An
// input that starts with 'R' is therefore a recipe instead of a file:
//   'R' | damage | arg | (uint16 little-endian length | that many payload bytes)...
// Each payload (cut short by the end of the input) becomes one correctly framed record, so the
// mutator works on the Event bytes themselves. `damage` then hurts the framed file the way a
// crash or a bad disk would: 1 cuts arg + 1 bytes off its end, 2 flips a bit of record arg's
// length CRC, 3 one of its data CRC, 4 a bit of its length field (the length CRC then no longer
// matches), 5 appends arg bytes of garbage; anything else leaves it whole. Any other input is the
// event file as it is.
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "run/tb_events.h"

typedef struct {
    uint8_t *p;
    size_t len, cap;
    size_t *starts; // where each record begins
    int n;
} File;

static void put(File *f, const void *data, size_t n) {
    if (f->len + n > f->cap) {
        f->cap = 2 * (f->len + n) + 64;
        f->p = realloc(f->p, f->cap);
        if (!f->p) abort();
    }
    if (n) memcpy(f->p + f->len, data, n);
    f->len += n;
}

static void put_le(File *f, uint64_t v, int nbytes) {
    uint8_t b[8];
    for (int i = 0; i < nbytes; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(f, b, (size_t)nbytes);
}

// TFRecord framing, written independently of tb_events.c's writer so that its mistakes show.
static void put_record(File *f, const uint8_t *data, size_t n) {
    f->starts = realloc(f->starts, sizeof *f->starts * (size_t)(f->n + 1));
    if (!f->starts) abort();
    f->starts[f->n++] = f->len;
    put_le(f, n, 8);
    put_le(f, crc32c_mask(crc32c(f->p + f->len - 8, 8)), 4);
    put(f, data, n);
    put_le(f, crc32c_mask(crc32c(data, n)), 4);
}

static void build_recipe(File *f, const uint8_t *data, size_t size) {
    uint8_t damage = size > 1 ? data[1] : 0, arg = size > 2 ? data[2] : 0;
    size_t at = size < 3 ? size : 3;
    while (at + 2 <= size) {
        size_t n = (size_t)data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (n > size - at) n = size - at;
        put_record(f, data + at, n);
        at += n;
    }
    if (damage == 1) {
        f->len -= (size_t)arg + 1 < f->len ? (size_t)arg + 1 : f->len;
    } else if (damage == 5) {
        for (int i = 0; i < arg; i++) put(f, &(uint8_t){(uint8_t)(i * 37 + arg)}, 1);
    } else if (damage >= 2 && damage <= 4 && f->n > 0) {
        size_t start = f->starts[arg % f->n];
        size_t len = (size_t)(f->p[start] | f->p[start + 1] << 8); // payloads are < 64 KB
        size_t at_bit = damage == 2 ? start + 8 : damage == 3 ? start + 12 + len : start;
        f->p[at_bit + (arg >> 3) % 4] ^= (uint8_t)(1u << (arg & 7));
    }
}

// Same event, as far as the encoders can say it: tags and file_version are C strings to them.
static void check_same(const TbEvent *a, const TbEvent *b, int values) {
    if (memcmp(&a->wall_time, &b->wall_time, sizeof a->wall_time) != 0) abort();
    if (values) {
        if (a->step != b->step || b->file_version || a->n_values != b->n_values) abort();
        for (int i = 0; i < a->n_values; i++)
            if (strcmp(a->values[i].tag, b->values[i].tag) != 0 ||
                memcmp(&a->values[i].value, &b->values[i].value, sizeof(float)) != 0)
                abort();
    } else if (b->step != 0 || b->n_values != 0 || !b->file_version ||
               strcmp(a->file_version, b->file_version) != 0) {
        abort();
    }
}

// An event with a file_version becomes a version event, one with values (or neither) a scalars
// event; one with both becomes both, in that order.
static void reencode(const TbEvent *ev, int n) {
    File f = {0};
    for (int i = 0; i < n; i++) {
        uint8_t *bytes;
        size_t len;
        if (ev[i].file_version) {
            len = tb_encode_version_event(ev[i].wall_time, ev[i].file_version, &bytes);
            put_record(&f, bytes, len);
            free(bytes);
        }
        if (ev[i].n_values > 0 || !ev[i].file_version) {
            const char **tags = malloc(sizeof *tags * (size_t)(ev[i].n_values + 1));
            float *values = malloc(sizeof *values * (size_t)(ev[i].n_values + 1));
            if (!tags || !values) abort();
            for (int k = 0; k < ev[i].n_values; k++)
                tags[k] = ev[i].values[k].tag, values[k] = ev[i].values[k].value;
            len = tb_encode_scalars_event(ev[i].step, ev[i].wall_time, ev[i].n_values, tags, values,
                                          &bytes);
            put_record(&f, bytes, len);
            free(bytes);
            free(tags);
            free(values);
        }
    }
    char *path = fuzz_write("again.tfevents", f.p, f.len);
    TbEvent *back;
    int n_back, truncated;
    if (tb_read_file(path, &back, &n_back, &truncated) != 0 || truncated || n_back != f.n) abort();
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].file_version) check_same(&ev[i], &back[k++], 0);
        if (ev[i].n_values > 0 || !ev[i].file_version) check_same(&ev[i], &back[k++], 1);
    }
    tb_events_free(back, n_back);
    free(path);
    free(f.p);
    free(f.starts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path;
    if (size > 0 && data[0] == 'R') {
        File f = {0};
        build_recipe(&f, data, size);
        path = fuzz_write("events.out.tfevents", f.p, f.len);
        free(f.p);
        free(f.starts);
    } else {
        path = fuzz_write("events.out.tfevents", data, size);
    }
    TbEvent *ev;
    int n, truncated;
    if (tb_read_file(path, &ev, &n, &truncated) == 0) {
        reencode(ev, n);
        tb_events_free(ev, n);
    }
    free(path);
    return 0;
}
