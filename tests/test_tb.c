// TensorBoard event files (src/run/tb_events.c): CRC-32C against published vectors, Event bytes
// against protoc's (tests/fixtures/tb, made by tools/tb_fixture.sh), a bit-exact round trip
// through a file, and a reader that turns damage into an error naming the file and offset.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "run/tb_events.h"
#include "tests.h"

#define FIXTURES "tests/fixtures/tb"

static int contains(const char *s, const char *needle) {
    return strstr(s, needle) != NULL;
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint64_t double_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

// ---- CRC -------------------------------------------------------------------------------------

static void test_crc32c_vectors(void) {
    uint8_t m[48];
    memset(m, 0, 32);
    CU_ASSERT_EQUAL(crc32c(m, 32), 0x8A9136AAu);
    memset(m, 0xff, 32);
    CU_ASSERT_EQUAL(crc32c(m, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) m[i] = (uint8_t)i;
    CU_ASSERT_EQUAL(crc32c(m, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) m[i] = (uint8_t)(31 - i);
    CU_ASSERT_EQUAL(crc32c(m, 32), 0x113FDB5Cu);
    // RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU
    static const uint8_t read10[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    CU_ASSERT_EQUAL(crc32c(read10, sizeof read10), 0xD9963A56u);
    CU_ASSERT_EQUAL(crc32c("123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(crc32c("", 0), 0u);
}

static void test_crc32c_extend(void) {
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 37 + (i >> 3));
    const uint32_t whole = crc32c(data, sizeof data);
    int bad = 0;
    for (size_t cut = 0; cut <= sizeof data; cut++)
        bad += crc32c_extend(crc32c(data, cut), data + cut, sizeof data - cut) != whole;
    CU_ASSERT_EQUAL(bad, 0);
    // three pieces too
    CU_ASSERT_EQUAL(crc32c_extend(crc32c_extend(crc32c(data, 5), data + 5, 100), data + 105, 195),
                    whole);
}

static void test_crc32c_mask(void) {
    const uint32_t c = 0xE3069283u; // crc32c("123456789")
    CU_ASSERT_EQUAL(crc32c_mask(c), ((c >> 15) | (c << 17)) + 0xa282ead8u);
    CU_ASSERT_EQUAL(crc32c_mask(c), 0xc78ab0e5u);
    CU_ASSERT_NOT_EQUAL(crc32c_mask(c), c);
    int bad = 0, same = 0;
    uint32_t x = 0x12345678u;
    for (int i = 0; i < 100000; i++) {
        x = x * 1664525u + 1013904223u;
        bad += crc32c_unmask(crc32c_mask(x)) != x;
        same += crc32c_mask(x) == x;
    }
    const uint32_t edges[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0xa282ead8u};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        bad += crc32c_unmask(crc32c_mask(edges[i])) != edges[i];
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(same < 10);
}

// ---- encoding against protoc -----------------------------------------------------------------

static void expect_fixture(const char *name, const uint8_t *got, size_t n) {
    char path[256];
    snprintf(path, sizeof path, FIXTURES "/%s.pb", name);
    size_t want_n = 0;
    char *want = read_text_file(path, &want_n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    int same = n == want_n && memcmp(got, want, n) == 0;
    if (!same) {
        printf("\n%s: %zu bytes from tb_encode, %zu from protoc\n  got ", name, n, want_n);
        for (size_t i = 0; i < n; i++) printf("%02x", got[i]);
        printf("\n want ");
        for (size_t i = 0; i < want_n; i++) printf("%02x", (uint8_t)want[i]);
        printf("\n");
    }
    CU_ASSERT(same);
    free(want);
}

static void expect_scalars(const char *name, long step, double wall_time, int n,
                           const char *const *tags, const float *values) {
    uint8_t *ev = NULL;
    size_t len = tb_encode_scalars_event(step, wall_time, n, tags, values, &ev);
    expect_fixture(name, ev, len);
    free(ev);
}

static void test_encode_golden(void) {
    uint8_t *ev = NULL;
    size_t len = tb_encode_version_event(1700000000.25, "brain.Event:2", &ev);
    expect_fixture("version", ev, len);
    free(ev);

    const char *tags3[] = {"train/loss", "train/lr",
                           "eval/\xc3\xa9"
                           "chelle \xce\xbb"};
    const float vals3[] = {-1.75f, 3e-05f, 0.125f};
    expect_scalars("scalars3", 42, 1700000123.5, 3, tags3, vals3);

    const char *a[] = {"a"};
    expect_scalars("negstep", -3, 1700000000.5, 1, a, (const float[]){1.0f});
    // step 0 and wall_time 0 are left out; a simple_value of 0 is not (it sits in a oneof)
    const char *z[] = {"zero/value"};
    expect_scalars("zero", 0, 0.0, 1, z, (const float[]){0.0f});
    const char *t[] = {"t"};
    expect_scalars("negzero_time", 1, -0.0, 1, t, (const float[]){-0.0f});
    const char *empty[] = {""};
    expect_scalars("empty_tag", 9223372036854775807L, 2.0, 1, empty, (const float[]){2.5f});
}

// ---- files -----------------------------------------------------------------------------------

// A TFRecord around body, built here rather than by the writer.
static size_t frame(const uint8_t *body, size_t n, uint8_t *out) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t c = crc32c_mask(crc32c(out, 8));
    for (int i = 0; i < 4; i++) out[8 + i] = (uint8_t)(c >> (8 * i));
    memcpy(out + 12, body, n);
    c = crc32c_mask(crc32c(body, n));
    for (int i = 0; i < 4; i++) out[12 + n + i] = (uint8_t)(c >> (8 * i));
    return n + 16;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_decode_protoc_bytes(void) {
    // protoc's own bytes for three events, framed by hand, read back
    const char *names[] = {"version", "scalars3", "negstep"};
    uint8_t file[1024];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "/%s.pb", names[i]);
        size_t n;
        char *body = read_text_file(path, &n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(body);
        len += frame((const uint8_t *)body, n, file + len);
        free(body);
    }
    char *dir = test_tmpdir();
    char *path = path_join(dir, "protoc.tfevents");
    test_write_file(path, file, len);
    TbEvent *ev;
    int n = 0, truncated = -1;
    CU_ASSERT_EQUAL_FATAL(tb_read_file(path, &ev, &n, &truncated), 0);
    CU_ASSERT_EQUAL(truncated, 0);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_STRING_EQUAL(ev[0].file_version, "brain.Event:2");
    CU_ASSERT_EQUAL(ev[0].wall_time, 1700000000.25);
    CU_ASSERT_EQUAL(ev[0].step, 0);
    CU_ASSERT_EQUAL(ev[0].n_values, 0);
    CU_ASSERT_PTR_NULL(ev[1].file_version);
    CU_ASSERT_EQUAL(ev[1].step, 42);
    CU_ASSERT_EQUAL(ev[1].wall_time, 1700000123.5);
    CU_ASSERT_EQUAL_FATAL(ev[1].n_values, 3);
    CU_ASSERT_STRING_EQUAL(ev[1].values[0].tag, "train/loss");
    CU_ASSERT_EQUAL(float_bits(ev[1].values[0].value), float_bits(-1.75f));
    CU_ASSERT_STRING_EQUAL(ev[1].values[2].tag, "eval/\xc3\xa9"
                                                "chelle \xce\xbb");
    CU_ASSERT_EQUAL(float_bits(ev[1].values[1].value), float_bits(3e-05f));
    CU_ASSERT_EQUAL(ev[2].step, -3);
    tb_events_free(ev, n);
    free(path);
    free(dir);
}

#define NSTEPS 5
#define NTAGS  4

static void test_round_trip(void) {
    char *root = test_tmpdir();
    char *dir = path_join(root, "run/logs/tb"); // missing, parents too
    TbWriter w;
    CU_ASSERT_EQUAL_FATAL(tb_open(&w, dir, 1700000000.0), 0);
    CU_ASSERT(path_exists(dir));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w.path);
    CU_ASSERT(contains(w.path, "tfevents"));
    CU_ASSERT(strncmp(w.path, dir, strlen(dir)) == 0);
    char suffix[32];
    snprintf(suffix, sizeof suffix, ".%d", (int)getpid());
    CU_ASSERT(contains(w.path, "/events.out.tfevents.1700000000."));
    const size_t pl = strlen(w.path), sl = strlen(suffix);
    CU_ASSERT(pl > sl && strcmp(w.path + pl - sl, suffix) == 0);

    const char *tags[NTAGS] = {"train/loss", "train/lr", "eval/acc \xe2\x9c\x93", "x"};
    float vals[NSTEPS][NTAGS];
    const uint32_t specials[] = {0x7fc00001u, 0x80000000u, 0x7f800000u, 0x00000001u};
    for (int s = 0; s < NSTEPS; s++)
        for (int k = 0; k < NTAGS; k++) vals[s][k] = (float)(s * 10 + k) / 7.0f - 2.0f;
    for (int k = 0; k < NTAGS; k++) memcpy(&vals[2][k], &specials[k], 4); // NaN, -0, inf, denormal
    for (int s = 0; s < NSTEPS; s++) {
        const long step = s == 4 ? -7 : 100L * s;
        CU_ASSERT_EQUAL(
            tb_write_scalars(&w, step, 1700000001.125 + s, NTAGS - s % 2, tags, vals[s]), 0);
    }
    // nothing for no values
    const long size = file_size(w.path);
    CU_ASSERT_EQUAL(tb_write_scalars(&w, 9, 1.0, 0, tags, vals[0]), 0);
    CU_ASSERT_EQUAL(file_size(w.path), size);
    char *path = strdup(w.path);

    // a second writer in the same second gets its own file
    TbWriter w2;
    CU_ASSERT_EQUAL_FATAL(tb_open(&w2, dir, 1700000000.0), 0);
    CU_ASSERT_STRING_NOT_EQUAL(w2.path, path);
    CU_ASSERT(contains(w2.path, "tfevents"));
    tb_close(&w2);
    tb_close(&w);
    tb_close(&w); // twice is fine
    CU_ASSERT_PTR_NULL(w.f);
    CU_ASSERT_EQUAL(file_size(path), size);
    TbWriter zero = {0};
    tb_close(&zero);
    CU_ASSERT_EQUAL(tb_write_scalars(&w, 1, 1.0, 1, tags, vals[0]), -1);

    TbEvent *ev;
    int n = 0, truncated = -1;
    CU_ASSERT_EQUAL_FATAL(tb_read_file(path, &ev, &n, &truncated), 0);
    CU_ASSERT_EQUAL(truncated, 0);
    CU_ASSERT_EQUAL_FATAL(n, 1 + NSTEPS);
    CU_ASSERT_STRING_EQUAL(ev[0].file_version, "brain.Event:2");
    CU_ASSERT_EQUAL(ev[0].step, 0);
    CU_ASSERT_EQUAL(double_bits(ev[0].wall_time), double_bits(1700000000.0));
    CU_ASSERT_EQUAL(ev[0].n_values, 0);
    int bad = 0;
    for (int s = 0; s < NSTEPS; s++) {
        const TbEvent *e = &ev[1 + s];
        bad += e->file_version != NULL;
        bad += e->step != (s == 4 ? -7 : 100L * s);
        bad += double_bits(e->wall_time) != double_bits(1700000001.125 + s);
        if (e->n_values != NTAGS - s % 2) {
            bad++;
            continue;
        }
        for (int k = 0; k < e->n_values; k++) {
            bad += strcmp(e->values[k].tag, tags[k]) != 0;
            bad += float_bits(e->values[k].value) != float_bits(vals[s][k]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    tb_events_free(ev, n);
    free(path);
    free(dir);
    free(root);
}

// An event file of three records (version, two scalar events); returns its bytes and length and
// the offsets where records 1 and 2 start.
static uint8_t *three_records(const char *dir, char **path, size_t *len, size_t off[3]) {
    TbWriter w;
    CU_ASSERT_EQUAL_FATAL(tb_open(&w, dir, 1700000000.0), 0);
    const char *tags[] = {"loss", "reward"};
    const float v[] = {0.5f, -2.0f};
    CU_ASSERT_EQUAL(tb_write_scalars(&w, 1, 1700000001.0, 2, tags, v), 0);
    CU_ASSERT_EQUAL(tb_write_scalars(&w, 2, 1700000002.0, 2, tags, v), 0);
    *path = strdup(w.path);
    tb_close(&w);
    uint8_t *data = (uint8_t *)read_text_file(*path, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    off[0] = 0;
    for (int i = 1; i < 3; i++) {
        uint64_t n = 0;
        for (int b = 0; b < 8; b++) n |= (uint64_t)data[off[i - 1] + b] << (8 * b);
        off[i] = off[i - 1] + 12 + n + 4;
    }
    return data;
}

static void expect_read_error(const char *path, const char *needle, const char *needle2) {
    TbEvent *ev = (TbEvent *)1;
    int n = -1, truncated = -1;
    CU_ASSERT_EQUAL(tb_read_file(path, &ev, &n, &truncated), -1);
    CU_ASSERT_PTR_NULL(ev);
    CU_ASSERT_EQUAL(n, 0);
    const char *err = gemc_error();
    CU_ASSERT(contains(err, path));
    CU_ASSERT(contains(err, needle));
    if (needle2) CU_ASSERT(contains(err, needle2));
    if (!contains(err, path) || !contains(err, needle)) printf("\n  error: %s\n", err);
}

static void test_damage(void) {
    char *dir = test_tmpdir(), *path;
    size_t len, off[3];
    uint8_t *data = three_records(dir, &path, &len, off);
    char *bad = path_join(dir, "damaged.tfevents");
    char where[64];

    // a payload byte of record 1: its data CRC no longer matches
    data[off[1] + 12 + 3] ^= 0x20;
    test_write_file(bad, data, len);
    snprintf(where, sizeof where, "byte %zu:", off[1]);
    expect_read_error(bad, "data CRC", where);
    data[off[1] + 12 + 3] ^= 0x20;

    // a length byte of record 2: its length CRC no longer matches
    data[off[2]] ^= 0x01;
    test_write_file(bad, data, len);
    snprintf(where, sizeof where, "byte %zu:", off[2]);
    expect_read_error(bad, "length CRC", where);
    data[off[2]] ^= 0x01;

    // the stored CRC itself damaged
    data[len - 1] ^= 0x80;
    test_write_file(bad, data, len);
    expect_read_error(bad, "data CRC", NULL);
    data[len - 1] ^= 0x80;

    // a killed writer: the last record cut short in its data, then in its header
    const size_t cuts[] = {off[2] + 12 + 5, off[2] + 7, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        test_write_file(bad, data, cuts[i]);
        TbEvent *ev;
        int n = 0, truncated = 0;
        CU_ASSERT_EQUAL(tb_read_file(bad, &ev, &n, &truncated), 0);
        CU_ASSERT_EQUAL(truncated, 1);
        CU_ASSERT_EQUAL(n, 2);
        if (n == 2) CU_ASSERT_EQUAL(ev[1].step, 1);
        tb_events_free(ev, n);
    }
    // and the intact file reads whole
    test_write_file(bad, data, len);
    TbEvent *ev;
    int n = 0, truncated = -1;
    CU_ASSERT_EQUAL(tb_read_file(bad, &ev, &n, &truncated), 0);
    CU_ASSERT_EQUAL(truncated, 0);
    CU_ASSERT_EQUAL(n, 3);
    tb_events_free(ev, n);

    free(data);
    free(bad);
    free(path);
    free(dir);
}

static void test_malformed_protobuf(void) {
    char *dir = test_tmpdir();
    char *bad = path_join(dir, "malformed.tfevents");
    uint8_t file[64];
    // a good version event, then records with valid CRCs around bad protobuf
    const uint8_t good[] = {0x1a, 0x02, 'v', '1'};
    const size_t head = frame(good, sizeof good, file);
    struct {
        uint8_t body[12];
        size_t n, at; // the offset in body the error names
        const char *needle;
    } cases[] = {
        {{0x1a, 0x09, 'a'}, 3, 0, "past"},                    // string longer than the message
        {{0x10, 0xff, 0xff}, 3, 1, "varint"},                 // step's varint cut short
        {{0x0a, 0x01, 0x00}, 3, 0, "wire type"},              // wall_time as a string
        {{0x2a, 0x04, 0x0a, 0x02, 0x15, 0x00}, 6, 4, "past"}, // a simple_value cut short
        {{0x0b}, 1, 0, "wire type"},                          // a group
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = head + frame(cases[i].body, cases[i].n, file + head);
        test_write_file(bad, file, len);
        char where[32];
        snprintf(where, sizeof where, "byte %zu:", head + 12 + cases[i].at);
        expect_read_error(bad, cases[i].needle, where);
    }
    // unknown fields are skipped; a value without simple_value (a histogram, say) is left out
    const uint8_t other[] = {0x10, 0x05,                         // step 5
                             0x22, 0x01, 0x00,                   // graph_def
                             0x2a, 0x0e,                         // summary:
                             0x0a, 0x03, 0x0a, 0x01, 'h',        //   a value without simple_value
                             0x2a, 0x00,                         //   an unknown field
                             0x0a, 0x05, 0x15, 0x00, 0x00, 0x80, //   a value of 1.0, no tag
                             0x3f};
    size_t len = head + frame(other, sizeof other, file + head);
    test_write_file(bad, file, len);
    TbEvent *ev;
    int n = 0, truncated = -1;
    CU_ASSERT_EQUAL_FATAL(tb_read_file(bad, &ev, &n, &truncated), 0);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_STRING_EQUAL(ev[0].file_version, "v1");
    CU_ASSERT_EQUAL(ev[1].step, 5);
    CU_ASSERT_EQUAL_FATAL(ev[1].n_values, 1);
    CU_ASSERT_STRING_EQUAL(ev[1].values[0].tag, "");
    CU_ASSERT_EQUAL(ev[1].values[0].value, 1.0f);
    tb_events_free(ev, n);
    free(bad);
    free(dir);
}

static void test_open_errors(void) {
    char *root = test_tmpdir();
    char *file = path_join(root, "plain");
    test_write_file(file, "x", 1);
    char *dir = path_join(file, "tb");
    TbWriter w;
    CU_ASSERT_EQUAL(tb_open(&w, dir, 1700000000.0), -1);
    CU_ASSERT(contains(gemc_error(), dir));
    CU_ASSERT(contains(gemc_error(), "HINT"));
    CU_ASSERT_PTR_NULL(w.f);
    CU_ASSERT_PTR_NULL(w.path);
    tb_close(&w);
    // and a missing file reads as an error naming it
    char *missing = path_join(root, "none.tfevents");
    TbEvent *ev;
    int n, truncated;
    CU_ASSERT_EQUAL(tb_read_file(missing, &ev, &n, &truncated), -1);
    CU_ASSERT(contains(gemc_error(), missing));
    free(missing);
    free(dir);
    free(file);
    free(root);
}

void register_tb_tests(void) {
    static const TestCase tests[] = {
        {"CRC-32C: RFC 3720 vectors and the check value", test_crc32c_vectors},
        {"CRC-32C: extend over every split equals the whole", test_crc32c_extend},
        {"masked CRC: TFRecord's formula and its inverse", test_crc32c_mask},
        {"Event bytes equal protoc's", test_encode_golden},
        {"protoc's bytes decode", test_decode_protoc_bytes},
        {"round trip through an event file", test_round_trip},
        {"damaged and truncated files", test_damage},
        {"malformed protobuf, unknown fields", test_malformed_protobuf},
        {"tb_open where the directory cannot be made", test_open_errors},
        {NULL, NULL},
    };
    add_suite("tb", tests);
}
