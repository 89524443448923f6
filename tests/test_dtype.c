// dtype names and the fp32 <-> bf16/f16 conversions.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "tests.h"

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t to_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static void test_bf16_exact_and_rounding(void) {
    CU_ASSERT_EQUAL(f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(f32_to_bf16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(bf16_to_f32(0x3f80), 1.0f);
    // 1 + 2^-8 lies exactly between 0x3f80 and 0x3f81: ties go to the even one
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
    // 1 + 3 * 2^-8 lies between 0x3f81 and 0x3f82: even is 0x3f82
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    // just above and below a tie
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
    // rounding carries into the exponent
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x3fffffffu)), 0x4000);
    // every bf16 value converts to fp32 and back unchanged
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_bf16(f) != h) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_bf16_special(void) {
    CU_ASSERT_EQUAL(f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(f32_to_bf16(-INFINITY), 0xff80);
    CU_ASSERT_EQUAL(f32_to_bf16(-0.0f), 0x8000);
    CU_ASSERT(signbit(bf16_to_f32(0x8000)) && bf16_to_f32(0x8000) == 0.0f);
    // the largest float rounds up to Inf
    CU_ASSERT_EQUAL(f32_to_bf16(FLT_MAX), 0x7f80);
    // NaN stays NaN, also a NaN whose payload is only in the dropped low bits
    CU_ASSERT(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CU_ASSERT(isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));
    CU_ASSERT(isnan(bf16_to_f32(f32_to_bf16(from_bits(0xff800001u)))));
    CU_ASSERT(signbit(bf16_to_f32(f32_to_bf16(from_bits(0xffc00000u)))));
    // fp32 subnormals keep their top bits
    CU_ASSERT_EQUAL(f32_to_bf16(from_bits(0x00010000u)), 0x0001);
}

static void test_f16_normal_and_rounding(void) {
    CU_ASSERT_EQUAL(f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(f32_to_f16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(f32_to_f16(0.5f), 0x3800);
    CU_ASSERT_EQUAL(f16_to_f32(0x3c00), 1.0f);
    CU_ASSERT_EQUAL(f16_to_f32(0x3555), 0.333251953125f);
    // 1 + 2^-11 is the tie between 0x3c00 and 0x3c01: even wins
    CU_ASSERT_EQUAL(f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    // 1 + 3 * 2^-11 is the tie between 0x3c01 and 0x3c02
    CU_ASSERT_EQUAL(f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    CU_ASSERT_EQUAL(f32_to_f16(nextafterf(1.0f + ldexpf(1.0f, -11), 2.0f)), 0x3c01);
    // largest finite f16, and the values around the overflow threshold
    CU_ASSERT_EQUAL(f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(f16_to_f32(0x7bff), 65504.0f);
    CU_ASSERT_EQUAL(f32_to_f16(65519.0f), 0x7bff);
    CU_ASSERT_EQUAL(f32_to_f16(65520.0f), 0x7c00); // the tie rounds to even: Inf
    CU_ASSERT_EQUAL(f32_to_f16(1e6f), 0x7c00);
    CU_ASSERT_EQUAL(f32_to_f16(-1e6f), 0xfc00);
    CU_ASSERT_EQUAL(f32_to_f16(FLT_MAX), 0x7c00);
}

static void test_f16_subnormal(void) {
    const float tiny = ldexpf(1.0f, -24); // smallest f16 subnormal
    CU_ASSERT_EQUAL(f32_to_f16(tiny), 0x0001);
    CU_ASSERT_EQUAL(f16_to_f32(0x0001), tiny);
    CU_ASSERT_EQUAL(f16_to_f32(0x03ff), 1023 * tiny);
    CU_ASSERT_EQUAL(f16_to_f32(0x8001), -tiny);
    CU_ASSERT_EQUAL(f32_to_f16(1023 * tiny), 0x03ff);
    CU_ASSERT_EQUAL(f32_to_f16(ldexpf(1.0f, -14)), 0x0400); // smallest normal
    // ties among subnormals go to even
    CU_ASSERT_EQUAL(f32_to_f16(0.5f * tiny), 0x0000);
    CU_ASSERT_EQUAL(f32_to_f16(1.5f * tiny), 0x0002);
    CU_ASSERT_EQUAL(f32_to_f16(2.5f * tiny), 0x0002);
    CU_ASSERT_EQUAL(f32_to_f16(nextafterf(0.5f * tiny, 1.0f)), 0x0001);
    // the tie between the largest subnormal and the smallest normal
    CU_ASSERT_EQUAL(f32_to_f16(1023.5f * tiny), 0x0400);
    // far below: signed zero
    CU_ASSERT_EQUAL(f32_to_f16(1e-10f), 0x0000);
    CU_ASSERT_EQUAL(f32_to_f16(-1e-10f), 0x8000);
    CU_ASSERT_EQUAL(f32_to_f16(from_bits(0x00000001u)), 0x0000);
}

static void test_f16_special_and_exhaustive(void) {
    CU_ASSERT_EQUAL(f32_to_f16(INFINITY), 0x7c00);
    CU_ASSERT_EQUAL(f32_to_f16(-INFINITY), 0xfc00);
    CU_ASSERT(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
    CU_ASSERT(isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
    CU_ASSERT_EQUAL(f32_to_f16(-0.0f), 0x8000);
    CU_ASSERT(signbit(f16_to_f32(0x8000)) && f16_to_f32(0x8000) == 0.0f);
    CU_ASSERT(isnan(f16_to_f32(f32_to_f16(NAN))));
    CU_ASSERT(isnan(f16_to_f32(f32_to_f16(from_bits(0x7f800001u))))); // low-bit payload
    CU_ASSERT(isnan(f16_to_f32(0x7e00)));
    CU_ASSERT(isnan(f16_to_f32(0x7c01)));
    // every f16 value: f16 -> f32 is exact (checked against ldexp) and converts back unchanged
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float f = f16_to_f32((uint16_t)h);
        if (e == 0x1f) {
            if (m ? !isnan(f) : !isinf(f)) bad++;
            continue;
        }
        double want = e ? ldexp(1.0 + m / 1024.0, (int)e - 15) : ldexp((double)m, -24);
        if (h & 0x8000) want = -want;
        if ((double)f != want || f32_to_f16(f) != h) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_dtype_names(void) {
    const DType all[] = {DT_F32, DT_BF16, DT_F16, DT_F64, DT_I64,  DT_I32,     DT_I16,    DT_I8,
                         DT_U64, DT_U32,  DT_U16, DT_U8,  DT_BOOL, DT_F8_E4M3, DT_F8_E5M2};
    const char *names[] = {"F32", "BF16", "F16", "F64", "I64",  "I32",     "I16",    "I8",
                           "U64", "U32",  "U16", "U8",  "BOOL", "F8_E4M3", "F8_E5M2"};
    const size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 8, 4, 2, 1, 1, 1, 1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CU_ASSERT_EQUAL(dtype_from_name(names[i]), all[i]);
        CU_ASSERT_STRING_EQUAL(dtype_name(all[i]), names[i]);
        CU_ASSERT_EQUAL(dtype_from_name(dtype_name(all[i])), all[i]);
        CU_ASSERT_EQUAL(dtype_size(all[i]), sizes[i]);
        CU_ASSERT_EQUAL(dtype_is_float_weight(all[i]), i < 3);
    }
    CU_ASSERT_EQUAL(dtype_from_name("F33"), DT_INVALID);
    CU_ASSERT_EQUAL(dtype_from_name("f32"), DT_INVALID); // the format's names are upper case
    CU_ASSERT_EQUAL(dtype_from_name(""), DT_INVALID);
    CU_ASSERT_EQUAL(dtype_size(DT_INVALID), 0);
    CU_ASSERT_STRING_EQUAL(dtype_torch_name(DT_F32), "float32");
    CU_ASSERT_STRING_EQUAL(dtype_torch_name(DT_BF16), "bfloat16");
    CU_ASSERT_STRING_EQUAL(dtype_torch_name(DT_F16), "float16");
    const char *user[] = {"f32", "fp32", "float32", "bf16", "bfloat16", "f16", "fp16", "float16"};
    const DType user_t[] = {DT_F32, DT_F32, DT_F32, DT_BF16, DT_BF16, DT_F16, DT_F16, DT_F16};
    for (int i = 0; i < 8; i++) CU_ASSERT_EQUAL(dtype_from_user_name(user[i]), user_t[i]);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(dtype_from_user_name(dtype_torch_name(all[i])), all[i]);
    CU_ASSERT_EQUAL(dtype_from_user_name("int8"), DT_INVALID);
    CU_ASSERT_EQUAL(dtype_from_user_name("fp8"), DT_INVALID);
}

static void test_buffer_conversions(void) {
    // byte layout is little-endian
    const float one = 1.0f;
    uint8_t b[4];
    dtype_from_f32(DT_F32, &one, b, 1);
    CU_ASSERT(b[0] == 0x00 && b[1] == 0x00 && b[2] == 0x80 && b[3] == 0x3f);
    dtype_from_f32(DT_BF16, &one, b, 1);
    CU_ASSERT(b[0] == 0x80 && b[1] == 0x3f);
    dtype_from_f32(DT_F16, &one, b, 1);
    CU_ASSERT(b[0] == 0x00 && b[1] == 0x3c);
    // a buffer large enough for the threaded path agrees with the scalar conversions
    const size_t n = 200003;
    float *src = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
    uint8_t *buf = malloc(n * 4);
    for (size_t i = 0; i < n; i++) src[i] = from_bits((uint32_t)(i * 2654435761u));
    const DType ts[] = {DT_F32, DT_BF16, DT_F16};
    for (int k = 0; k < 3; k++) {
        dtype_from_f32(ts[k], src, buf, n);
        dtype_to_f32(ts[k], buf, back, n);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = ts[k] == DT_F32    ? src[i]
                         : ts[k] == DT_BF16 ? bf16_to_f32(f32_to_bf16(src[i]))
                                            : f16_to_f32(f32_to_f16(src[i]));
            if (isnan(want) ? !isnan(back[i]) : to_bits(want) != to_bits(back[i])) bad++;
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(src);
    free(back);
    free(buf);
}

void register_dtype_tests(void) {
    static const TestCase tests[] = {
        {"bf16 exact values and round-to-nearest-even", test_bf16_exact_and_rounding},
        {"bf16 NaN, Inf, -0, overflow", test_bf16_special},
        {"f16 normals, ties, max and overflow", test_f16_normal_and_rounding},
        {"f16 subnormals", test_f16_subnormal},
        {"f16 NaN, Inf, -0 and every value", test_f16_special_and_exhaustive},
        {"dtype names, sizes, user spellings", test_dtype_names},
        {"buffer conversions, little-endian", test_buffer_conversions},
        {NULL, NULL},
    };
    add_suite("dtype", tests);
}
