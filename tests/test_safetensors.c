// safetensors: round trips, sharded folders, and every kind of broken file st_open must refuse.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/safetensors.h"
#include "tests.h"

// Writes a safetensors file from raw parts: 8-byte length, `header` padded with spaces to a
// multiple of 8, then `data`.
static void write_st_raw(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + n;
    uint8_t *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    if (n) memcpy(buf + 8 + padded, data, n);
    test_write_file(path, buf, total);
    free(buf);
}

// st_open must fail with one line naming the file and containing `phrase`.
static void expect_open_fails(const char *path, const char *phrase) {
    StFile f;
    CU_ASSERT_EQUAL(st_open(&f, path), -1);
    const char *e = gemc_error();
    CU_ASSERT_PTR_NOT_NULL(strstr(e, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, phrase));
    if (!strstr(e, path) || !strstr(e, phrase))
        fprintf(stderr, "\n  error was: %s\n  expected: %s\n", e, phrase);
    CU_ASSERT_PTR_NULL(f.map);
    CU_ASSERT_PTR_NULL(f.tensors);
}

// A file with the given header and 64 zero bytes of data; st_open must fail with `phrase`.
static void expect_header_fails(const char *header, const char *phrase) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "bad.safetensors");
    uint8_t data[64] = {0};
    write_st_raw(path, header, data, sizeof data);
    expect_open_fails(path, phrase);
    free(path);
    free(dir);
}

static char *read_bytes(const char *path, size_t *n) {
    char *b = read_text_file(path, n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    return b;
}

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

// ---------------------------------------------------------------------------------------------

static void test_roundtrip_f32(void) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "t.safetensors");
    float a[6] = {1.0f, -2.5f, 0.0f, -0.0f, 1e-40f /* subnormal */, 3.14159265f};
    float one[1] = {42.0f};
    float c[24];
    for (int i = 0; i < 24; i++) c[i] = (float)i * 0.37f - 4.0f;
    c[5] = NAN;
    c[6] = INFINITY;
    c[7] = -INFINITY;
    float s[1] = {-7.25f};
    StWriteTensor ts[5] = {
        {.name = "z.first", .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "b.one", .ndim = 1, .shape = {1}, .data = one},
        {.name = "a.cube", .ndim = 3, .shape = {2, 3, 4}, .data = c},
        {.name = "empty", .ndim = 2, .shape = {0, 5}, .data = NULL},
        {.name = "scalar", .ndim = 0, .data = s},
    };
    CU_ASSERT_EQUAL_FATAL(st_write(path, ts, 5, DT_F32), 0);
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 1); // no temporary file left behind

    // layout: header padded to a multiple of 8, keys in the order given, data contiguous
    size_t n;
    char *raw = read_bytes(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
    CU_ASSERT_EQUAL(hl % 8, 0);
    CU_ASSERT_EQUAL(n, 8 + hl + (6 + 1 + 24 + 0 + 1) * 4);
    CU_ASSERT_EQUAL(strncmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31), 0);
    char *p1 = strstr(raw + 8, "\"z.first\""), *p2 = strstr(raw + 8, "\"b.one\"");
    char *p3 = strstr(raw + 8, "\"a.cube\"");
    CU_ASSERT(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    size_t last = 8 + hl - 1; // the JSON ends with '}', then only padding spaces
    while (last > 8 && raw[last] == ' ') last--;
    CU_ASSERT_EQUAL(raw[last], '}');
    CU_ASSERT(8 + hl - 1 - last < 8);
    float first;
    memcpy(&first, raw + 8 + hl, 4); // z.first is first in the data block (little-endian host)
    CU_ASSERT_EQUAL(first, 1.0f);
    free(raw);

    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, path), 0);
    CU_ASSERT_EQUAL(f.n, 5);
    for (int i = 0; i < 5; i++) {
        const StTensor *t = st_find(&f, ts[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_EQUAL(t->dtype, DT_F32);
        CU_ASSERT_EQUAL(t->ndim, ts[i].ndim);
        size_t ne = 1;
        for (int d = 0; d < t->ndim; d++) {
            CU_ASSERT_EQUAL(t->shape[d], ts[i].shape[d]);
            ne *= (size_t)ts[i].shape[d];
        }
        CU_ASSERT_EQUAL(t->numel, ne);
        CU_ASSERT_EQUAL(t->nbytes, ne * 4);
        float back[24];
        CU_ASSERT_EQUAL(st_tensor_to_f32(t, back), 0);
        for (size_t k = 0; k < ne; k++) CU_ASSERT_EQUAL(bits(back[k]), bits(ts[i].data[k]));
    }
    CU_ASSERT_PTR_NULL(st_find(&f, "missing"));
    CU_ASSERT_PTR_NULL(st_find(&f, "__metadata__"));
    st_close(&f);
    free(path);
    free(dir);
}

// Writes `dtype`, reads back, writes again: the two files are byte-identical, and the values
// read are the rounded originals.
static void roundtrip_half(DType dtype) {
    char *dir = test_tmpdir();
    char *p1 = path_join(dir, "one.safetensors"), *p2 = path_join(dir, "two.safetensors");
    enum { N1 = 3 * 5, N2 = 7 };
    float w[N1], bvec[N2];
    for (int i = 0; i < N1; i++) w[i] = sinf((float)i * 1.7f) * 3.0f + 1e-3f * (float)i;
    for (int i = 0; i < N2; i++) bvec[i] = (float)i / 3.0f - 1.0f;
    w[0] = 70000.0f; // beyond f16's range
    StWriteTensor ts[2] = {
        {.name = "w", .ndim = 2, .shape = {3, 5}, .data = w},
        {.name = "b", .ndim = 1, .shape = {N2}, .data = bvec},
    };
    CU_ASSERT_EQUAL_FATAL(st_write(p1, ts, 2, dtype), 0);
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, p1), 0);
    float rw[N1], rb[N2];
    const StTensor *tw = st_find(&f, "w"), *tb = st_find(&f, "b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tb);
    CU_ASSERT_EQUAL(tw->dtype, dtype);
    CU_ASSERT_EQUAL(tw->nbytes, N1 * 2);
    CU_ASSERT_EQUAL(st_tensor_to_f32(tw, rw), 0);
    CU_ASSERT_EQUAL(st_tensor_to_f32(tb, rb), 0);
    for (int i = 0; i < N1; i++) {
        float want =
            dtype == DT_BF16 ? bf16_to_f32(f32_to_bf16(w[i])) : f16_to_f32(f32_to_f16(w[i]));
        CU_ASSERT_EQUAL(bits(rw[i]), bits(want));
    }
    if (dtype == DT_F16) CU_ASSERT(isinf(rw[0]));
    for (int i = 0; i < N2; i++) CU_ASSERT(fabsf(rb[i] - bvec[i]) <= 1e-2f * (fabsf(bvec[i]) + 1));
    st_close(&f);
    StWriteTensor again[2] = {
        {.name = "w", .ndim = 2, .shape = {3, 5}, .data = rw},
        {.name = "b", .ndim = 1, .shape = {N2}, .data = rb},
    };
    CU_ASSERT_EQUAL_FATAL(st_write(p2, again, 2, dtype), 0);
    size_t n1, n2;
    char *b1 = read_bytes(p1, &n1), *b2 = read_bytes(p2, &n2);
    CU_ASSERT_EQUAL(n1, n2);
    CU_ASSERT(n1 == n2 && memcmp(b1, b2, n1) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b1 + 8, dtype == DT_BF16 ? "\"BF16\"" : "\"F16\""));
    free(b1);
    free(b2);
    free(p1);
    free(p2);
    free(dir);
}

static void test_roundtrip_bf16(void) {
    roundtrip_half(DT_BF16);
}

static void test_roundtrip_f16(void) {
    roundtrip_half(DT_F16);
}

static void test_header_padding(void) {
    // whatever the header's natural length, it is padded with spaces to a multiple of 8
    char *dir = test_tmpdir();
    char *p = path_join(dir, "pad.safetensors");
    float v[1] = {2.0f};
    for (int len = 1; len <= 8; len++) {
        char name[16] = "xxxxxxxx";
        name[len] = 0;
        StWriteTensor t[1] = {{.name = name, .ndim = 1, .shape = {1}, .data = v}};
        CU_ASSERT_EQUAL_FATAL(st_write(p, t, 1, DT_F32), 0);
        size_t n;
        char *raw = read_bytes(p, &n);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
        CU_ASSERT_EQUAL(hl % 8, 0);
        CU_ASSERT_EQUAL(n, 8 + hl + 4);
        free(raw);
        StFile f;
        CU_ASSERT_EQUAL(st_open(&f, p), 0);
        CU_ASSERT_PTR_NOT_NULL(st_find(&f, name));
        st_close(&f);
    }
    free(p);
    free(dir);
}

static void test_sharded_dir(void) {
    char *dir = test_tmpdir();
    char *s1 = path_join(dir, "model-00001-of-00002.safetensors");
    char *s2 = path_join(dir, "model-00002-of-00002.safetensors");
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    StWriteTensor t1[2] = {{.name = "model.a", .ndim = 2, .shape = {2, 2}, .data = a},
                           {.name = "model.b", .ndim = 1, .shape = {2}, .data = b}};
    StWriteTensor t2[1] = {{.name = "lm_head.c", .ndim = 1, .shape = {3}, .data = c}};
    CU_ASSERT_EQUAL_FATAL(st_write(s1, t1, 2, DT_F32), 0);
    CU_ASSERT_EQUAL_FATAL(st_write(s2, t2, 1, DT_BF16), 0);
    const char *index = "{\"metadata\": {\"total_size\": 30},\n \"weight_map\": {\n"
                        "  \"lm_head.c\": \"model-00002-of-00002.safetensors\",\n"
                        "  \"model.a\": \"model-00001-of-00002.safetensors\",\n"
                        "  \"model.b\": \"model-00001-of-00002.safetensors\"}}\n";
    char *ip = path_join(dir, "model.safetensors.index.json");
    test_write_file(ip, index, strlen(index));
    StCollection col;
    CU_ASSERT_EQUAL_FATAL(st_collection_open_dir(&col, dir), 0);
    CU_ASSERT_EQUAL(col.nfiles, 2);
    const char *file = NULL;
    const StTensor *t = st_collection_find(&col, "model.b", &file);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(file, s1);
    float out[4];
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out), 0);
    CU_ASSERT(out[0] == 5 && out[1] == 6);
    t = st_collection_find(&col, "lm_head.c", &file);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(file, s2);
    CU_ASSERT_EQUAL(t->dtype, DT_BF16);
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out), 0);
    CU_ASSERT(out[0] == 7 && out[1] == 8 && out[2] == 9);
    CU_ASSERT_PTR_NOT_NULL(st_collection_find(&col, "model.a", NULL));
    CU_ASSERT_PTR_NULL(st_collection_find(&col, "model.zzz", &file));
    st_collection_close(&col);
    CU_ASSERT_EQUAL(col.nfiles, 0);
    free(s1);
    free(s2);
    free(ip);
    free(dir);
}

static void test_single_file_dir(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "model.safetensors");
    float a[2] = {1, 2};
    StWriteTensor t[1] = {{.name = "x", .ndim = 1, .shape = {2}, .data = a}};
    CU_ASSERT_EQUAL_FATAL(st_write(p, t, 1, DT_F16), 0);
    StCollection col;
    CU_ASSERT_EQUAL_FATAL(st_collection_open_dir(&col, dir), 0);
    CU_ASSERT_EQUAL(col.nfiles, 1);
    const char *file = NULL;
    CU_ASSERT_PTR_NOT_NULL(st_collection_find(&col, "x", &file));
    CU_ASSERT_STRING_EQUAL(file, p);
    st_collection_close(&col);
    free(p);
    free(dir);
}

static void test_dir_without_weights(void) {
    char *dir = test_tmpdir();
    StCollection col;
    CU_ASSERT_EQUAL(st_collection_open_dir(&col, dir), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "model.safetensors"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "Hugging Face model folder"));
    free(dir);
}

static void test_missing_index_shard(void) {
    char *dir = test_tmpdir();
    char *s1 = path_join(dir, "model-00001-of-00002.safetensors");
    char *s2 = path_join(dir, "model-00002-of-00002.safetensors");
    float a[2] = {1, 2};
    StWriteTensor t1[1] = {{.name = "model.a", .ndim = 1, .shape = {2}, .data = a}};
    CU_ASSERT_EQUAL_FATAL(st_write(s1, t1, 1, DT_F32), 0);
    const char *index = "{\"weight_map\": {\"model.a\": \"model-00001-of-00002.safetensors\","
                        " \"model.b\": \"model-00002-of-00002.safetensors\"}}";
    char *ip = path_join(dir, "model.safetensors.index.json");
    test_write_file(ip, index, strlen(index));
    StCollection col;
    CU_ASSERT_EQUAL(st_collection_open_dir(&col, dir), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), s2));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "cannot open"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "model.safetensors.index.json"));
    CU_ASSERT_EQUAL(col.nfiles, 0);
    free(s1);
    free(s2);
    free(ip);
    free(dir);
}

static void test_index_tensor_not_in_shard(void) {
    char *dir = test_tmpdir();
    char *s1 = path_join(dir, "shard.safetensors");
    float a[2] = {1, 2};
    StWriteTensor t1[1] = {{.name = "model.a", .ndim = 1, .shape = {2}, .data = a}};
    CU_ASSERT_EQUAL_FATAL(st_write(s1, t1, 1, DT_F32), 0);
    const char *index = "{\"weight_map\": {\"model.a\": \"shard.safetensors\","
                        " \"model.ghost\": \"shard.safetensors\"}}";
    char *ip = path_join(dir, "model.safetensors.index.json");
    test_write_file(ip, index, strlen(index));
    StCollection col;
    CU_ASSERT_EQUAL(st_collection_open_dir(&col, dir), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), s1));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "'model.ghost'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "does not hold"));
    free(s1);
    free(ip);
    free(dir);
}

// An index from an untrusted model folder cannot make gemc open files outside that folder.
static void test_index_names_outside_folder(void) {
    char *dir = test_tmpdir();
    char *ip = path_join(dir, "model.safetensors.index.json");
    const char *bad[] = {"../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char index[256];
        snprintf(index, sizeof index, "{\"weight_map\": {\"model.a\": \"%s\"}}", bad[i]);
        test_write_file(ip, index, strlen(index));
        StCollection col;
        CU_ASSERT_EQUAL(st_collection_open_dir(&col, dir), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "which is not a file of the model folder"));
        CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), bad[i]));
    }
    free(ip);
    free(dir);
}

static void test_write_failures_leave_nothing(void) {
    char *dir = test_tmpdir();
    char *sub = path_join(dir, "no/such/dir");
    char *p = path_join(sub, "x.safetensors");
    float a[2] = {1, 2};
    StWriteTensor t[1] = {{.name = "x", .ndim = 1, .shape = {2}, .data = a}};
    CU_ASSERT_EQUAL(st_write(p, t, 1, DT_F32), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), p));
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 0);
    // a dtype that cannot hold weights: refused before anything is created
    char *q = path_join(dir, "y.safetensors");
    CU_ASSERT_EQUAL(st_write(q, t, 1, DT_I32), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "I32"));
    // duplicate names: refused
    StWriteTensor dup[2] = {t[0], t[0]};
    CU_ASSERT_EQUAL(st_write(q, dup, 2, DT_F32), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "twice"));
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 0);
    free(q);
    free(p);
    free(sub);
    free(dir);
}

// ---------------------------------------------------------------------------------------------
// Broken files

static void test_missing_file(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "nope.safetensors");
    expect_open_fails(p, "No such file");
    free(p);
    free(dir);
}

static void test_truncated_below_8(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "short.safetensors");
    test_write_file(p, "\x10\x00\x00", 3);
    expect_open_fails(p, "truncated");
    test_write_file(p, "", 0);
    expect_open_fails(p, "truncated");
    free(p);
    free(dir);
}

static void test_header_beyond_eof(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "cut.safetensors");
    uint8_t buf[8 + 16] = {0xe8, 0x03}; // 1000-byte header in a 24-byte file
    memcpy(buf + 8, "{\"a\":{\"dtype\":\"F", 16);
    test_write_file(p, buf, sizeof buf);
    expect_open_fails(p, "beyond the end of the file");
    free(p);
    free(dir);
}

static void test_absurd_header_length(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "huge.safetensors");
    uint8_t buf[16] = {0, 0, 0, 0, 0, 0x10, 0, 0, '{', '}'}; // 2^44
    test_write_file(p, buf, sizeof buf);
    expect_open_fails(p, "absurd");
    free(p);
    free(dir);
}

static void test_header_not_json(void) {
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", ", "not valid JSON");
    expect_header_fails("{} trailing", "not valid JSON");
    expect_header_fails("", "not valid JSON");
}

static void test_header_not_object(void) {
    expect_header_fails("[1, 2, 3]", "not a JSON object");
    expect_header_fails("{\"a\": 5}", "'a' is not an object");
}

static void test_entry_missing_fields(void) {
    expect_header_fails("{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", "no 'dtype'");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", "no 'shape'");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", "no 'data_offsets'");
}

static void test_entry_wrong_types(void) {
    expect_header_fails("{\"a\": {\"dtype\": 32, \"shape\": [2], \"data_offsets\": [0, 8]}}",
                        "'dtype' must be a string");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": \"2\", \"data_offsets\": [0, 8]}}",
                        "'shape' must be an array");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": 8}}",
                        "two non-negative integers");
}

static void test_unknown_dtype(void) {
    expect_header_fails("{\"a\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                        "unknown dtype 'F33'");
    expect_header_fails("{\"a\": {\"dtype\": \"f32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                        "unknown dtype 'f32'");
}

static void test_known_non_float_dtype(void) {
    // an I32 tensor is a valid file; only the float conversion refuses it
    char *dir = test_tmpdir();
    char *p = path_join(dir, "ints.safetensors");
    int32_t data[3] = {1, 2, 3};
    write_st_raw(p, "{\"ids\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [0, 12]}}",
                 data, sizeof data);
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, p), 0);
    const StTensor *t = st_find(&f, "ids");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->dtype, DT_I32);
    float out[3];
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "I32"));
    st_close(&f);
    // but it is validated like any other: 3 x I32 is 12 bytes, not 8
    write_st_raw(p, "{\"ids\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
                 data, sizeof data);
    expect_open_fails(p, "needs 12 bytes");
    free(p);
    free(dir);
}

static void test_bad_shapes(void) {
    expect_header_fails(
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1, 2], \"data_offsets\": [0, 8]}}",
        "shape entry 0 is not a non-negative integer");
    expect_header_fails(
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 1.5], \"data_offsets\": [0, 12]}}",
        "shape entry 1 is not a non-negative integer");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                        "\"data_offsets\": [0, 4]}}",
                        "9 dimensions");
    // element count overflow
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776], "
                        "\"data_offsets\": [0, 4]}}",
                        "too large");
}

static void test_bad_offsets(void) {
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}",
                        "two non-negative integers");
    expect_header_fails(
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [\"0\", 8]}}",
        "two non-negative integers");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
                        "two non-negative integers");
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [16, 8]}}",
                        "begin after their end");
}

static void test_offsets_outside_data(void) {
    // 64 bytes of data; the tensor claims bytes [32, 96): a truncated file
    expect_header_fails(
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [16], \"data_offsets\": [32, 96]}}",
        "beyond the end of the data block");
}

static void test_offsets_size_mismatch(void) {
    expect_header_fails(
        "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
        "span 24 bytes but dtype BF16 shape [2, 3] needs 12 bytes");
}

static void test_overlapping_offsets(void) {
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                        " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
                        "overlap");
    // identical ranges overlap too; an empty tensor overlaps nothing
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                        " \"b\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [0, 16]}}",
                        "overlap");
    char *dir = test_tmpdir();
    char *p = path_join(dir, "ok.safetensors");
    uint8_t data[16] = {0};
    write_st_raw(p,
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                 " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [8, 8]}}",
                 data, sizeof data);
    StFile f;
    CU_ASSERT_EQUAL(st_open(&f, p), 0);
    st_close(&f);
    free(p);
    free(dir);
}

static void test_duplicate_names(void) {
    expect_header_fails("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                        " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                        "appears twice");
}

static void test_metadata(void) {
    char *dir = test_tmpdir();
    char *p = path_join(dir, "meta.safetensors");
    float data[2] = {1.5f, -1.5f};
    write_st_raw(p,
                 "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"x\"},"
                 " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                 data, sizeof data);
    StFile f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, p), 0);
    CU_ASSERT_EQUAL(f.n, 1);
    CU_ASSERT_PTR_NULL(st_find(&f, "__metadata__"));
    const StTensor *t = st_find(&f, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    float out[2];
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out), 0);
    CU_ASSERT(out[0] == 1.5f && out[1] == -1.5f);
    st_close(&f);
    expect_header_fails("{\"__metadata__\": {\"n\": 3}}",
                        "'__metadata__' entry 'n' is not a string");
    free(p);
    free(dir);
}

void register_safetensors_tests(void) {
    static const TestCase tests[] = {
        {"F32 round trip, bit-identical, layout", test_roundtrip_f32},
        {"header padded to a multiple of 8", test_header_padding},
        {"BF16 write-read-write is byte-identical", test_roundtrip_bf16},
        {"F16 write-read-write is byte-identical", test_roundtrip_f16},
        {"sharded folder via index.json", test_sharded_dir},
        {"index.json naming a file outside the folder: refused", test_index_names_outside_folder},
        {"single-file folder", test_single_file_dir},
        {"folder without weights", test_dir_without_weights},
        {"index lists a missing shard", test_missing_index_shard},
        {"index lists a tensor its shard lacks", test_index_tensor_not_in_shard},
        {"failed writes leave no file", test_write_failures_leave_nothing},
        {"missing file", test_missing_file},
        {"truncated below 8 bytes", test_truncated_below_8},
        {"header length beyond end of file", test_header_beyond_eof},
        {"absurd header length", test_absurd_header_length},
        {"header JSON does not parse", test_header_not_json},
        {"header not an object", test_header_not_object},
        {"entry missing dtype/shape/data_offsets", test_entry_missing_fields},
        {"entry fields of wrong JSON type", test_entry_wrong_types},
        {"unknown dtype", test_unknown_dtype},
        {"known non-float dtype opens, conversion refuses", test_known_non_float_dtype},
        {"negative, fractional, too many, overflowing dims", test_bad_shapes},
        {"malformed data_offsets", test_bad_offsets},
        {"data offsets outside the data block", test_offsets_outside_data},
        {"data offsets size mismatch", test_offsets_size_mismatch},
        {"overlapping data offsets", test_overlapping_offsets},
        {"duplicate tensor names", test_duplicate_names},
        {"__metadata__ skipped and checked", test_metadata},
        {NULL, NULL},
    };
    add_suite("safetensors", tests);
}
