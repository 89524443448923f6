// Element types of safetensors files and the fp32 <-> bf16/f16 conversions.
#include "model/dtype.h"

#include <string.h>
#include <strings.h>

static const struct {
    DType t;
    const char *name;  // safetensors spelling
    const char *torch; // torch dtype name
    size_t size;
} dtype_table[] = {
    {DT_F32, "F32", "float32", 4},
    {DT_BF16, "BF16", "bfloat16", 2},
    {DT_F16, "F16", "float16", 2},
    {DT_F64, "F64", "float64", 8},
    {DT_I64, "I64", "int64", 8},
    {DT_I32, "I32", "int32", 4},
    {DT_I16, "I16", "int16", 2},
    {DT_I8, "I8", "int8", 1},
    {DT_U64, "U64", "uint64", 8},
    {DT_U32, "U32", "uint32", 4},
    {DT_U16, "U16", "uint16", 2},
    {DT_U8, "U8", "uint8", 1},
    {DT_BOOL, "BOOL", "bool", 1},
    {DT_F8_E4M3, "F8_E4M3", "float8_e4m3fn", 1},
    {DT_F8_E5M2, "F8_E5M2", "float8_e5m2", 1},
};
#define NUM_DTYPES ((int)(sizeof dtype_table / sizeof dtype_table[0]))

DType dtype_from_name(const char *name) {
    if (!name) return DT_INVALID;
    for (int i = 0; i < NUM_DTYPES; i++)
        if (strcmp(name, dtype_table[i].name) == 0) return dtype_table[i].t;
    return DT_INVALID;
}

DType dtype_from_user_name(const char *name) {
    static const struct {
        const char *name;
        DType t;
    } user[] = {
        {"f32", DT_F32},       {"fp32", DT_F32}, {"float32", DT_F32}, {"bf16", DT_BF16},
        {"bfloat16", DT_BF16}, {"f16", DT_F16},  {"fp16", DT_F16},    {"float16", DT_F16},
    };
    if (!name) return DT_INVALID;
    for (size_t i = 0; i < sizeof user / sizeof user[0]; i++)
        if (strcasecmp(name, user[i].name) == 0) return user[i].t;
    return DT_INVALID;
}

const char *dtype_name(DType t) {
    for (int i = 0; i < NUM_DTYPES; i++)
        if (dtype_table[i].t == t) return dtype_table[i].name;
    return "UNKNOWN";
}

const char *dtype_torch_name(DType t) {
    for (int i = 0; i < NUM_DTYPES; i++)
        if (dtype_table[i].t == t) return dtype_table[i].torch;
    return "unknown";
}

size_t dtype_size(DType t) {
    for (int i = 0; i < NUM_DTYPES; i++)
        if (dtype_table[i].t == t) return dtype_table[i].size;
    return 0;
}

int dtype_is_float_weight(DType t) {
    return t == DT_F32 || t == DT_BF16 || t == DT_F16;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        // NaN: keep sign and the top payload bits, force it quiet so it cannot become Inf
        return (uint16_t)((u >> 16) | 0x0040u);
    }
    // round to nearest even; a carry into the exponent gives Inf on overflow, as it should
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t mant = u & 0x7fffffu;
    if (exp == 0xff) {
        if (mant == 0) return sign | 0x7c00u;             // Inf
        return (uint16_t)(sign | 0x7e00u | (mant >> 13)); // NaN, quiet
    }
    int e = (int)exp - 127 + 15;        // f16 biased exponent
    if (e >= 31) return sign | 0x7c00u; // overflow
    if (e <= 0) {
        // f16 subnormal (or zero): value = m * 2^-24 with m = mant24 * 2^(e - 14)
        if (e < -10) return sign; // below half the smallest subnormal: +-0
        uint32_t m24 = mant | 0x800000u;
        int shift = 14 - e; // 14 .. 24
        uint32_t r = m24 >> shift;
        uint32_t rem = m24 & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++; // may carry into the smallest normal
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++; // carry may reach Inf: correct
    return (uint16_t)(sign | r);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); // Inf or NaN
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        // subnormal: normalise
        int e = -14;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        mant &= 0x3ffu;
        return bits_f32(sign | (uint32_t)(e + 127) << 23 | (mant << 13));
    }
    return bits_f32(sign | (exp - 15 + 127) << 23 | (mant << 13));
}

void dtype_to_f32(DType t, const void *src, float *dst, size_t n) {
    const uint8_t *b = src;
    long long nn = (long long)n;
    switch (t) {
    case DT_F32:
#pragma omp parallel for if (nn > (1 << 16)) schedule(static)
        for (long long i = 0; i < nn; i++) {
            const uint8_t *p = b + 4 * i;
            uint32_t u =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            dst[i] = bits_f32(u);
        }
        break;
    case DT_BF16:
#pragma omp parallel for if (nn > (1 << 16)) schedule(static)
        for (long long i = 0; i < nn; i++) {
            const uint8_t *p = b + 2 * i;
            dst[i] = bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        }
        break;
    case DT_F16:
#pragma omp parallel for if (nn > (1 << 16)) schedule(static)
        for (long long i = 0; i < nn; i++) {
            const uint8_t *p = b + 2 * i;
            dst[i] = f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        }
        break;
    default:
        break; // callers check dtype_is_float_weight
    }
}

void dtype_from_f32(DType t, const float *src, void *dst, size_t n) {
    uint8_t *b = dst;
    long long nn = (long long)n;
    switch (t) {
    case DT_F32:
#pragma omp parallel for if (nn > (1 << 16)) schedule(static)
        for (long long i = 0; i < nn; i++) {
            uint32_t u = f32_bits(src[i]);
            uint8_t *p = b + 4 * i;
            p[0] = (uint8_t)u;
            p[1] = (uint8_t)(u >> 8);
            p[2] = (uint8_t)(u >> 16);
            p[3] = (uint8_t)(u >> 24);
        }
        break;
    case DT_BF16:
    case DT_F16:
#pragma omp parallel for if (nn > (1 << 16)) schedule(static)
        for (long long i = 0; i < nn; i++) {
            uint16_t h = t == DT_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
            uint8_t *p = b + 2 * i;
            p[0] = (uint8_t)h;
            p[1] = (uint8_t)(h >> 8);
        }
        break;
    default:
        break; // callers check dtype_is_float_weight
    }
}
