// Element types of safetensors files and their conversions to and from fp32.
#ifndef GEMC_DTYPE_H
#define GEMC_DTYPE_H

#include <stddef.h>
#include <stdint.h>

// Every dtype the safetensors format names. Only F32, BF16 and F16 hold weights here;
// the others are recognised so that the error can say "unsupported" rather than "unknown".
typedef enum {
    DT_F32,
    DT_BF16,
    DT_F16,
    DT_F64,
    DT_I64,
    DT_I32,
    DT_I16,
    DT_I8,
    DT_U64,
    DT_U32,
    DT_U16,
    DT_U8,
    DT_BOOL,
    DT_F8_E4M3,
    DT_F8_E5M2,
    DT_INVALID
} DType;

// "F32" -> DT_F32 ...; DT_INVALID for a name the safetensors format does not define.
DType dtype_from_name(const char *name);
// Accepts the command-line spellings too: "f32", "fp32", "float32", "bf16", "bfloat16", "f16",
// "fp16", "float16". DT_INVALID otherwise.
DType dtype_from_user_name(const char *name);
const char *dtype_name(DType t);       // "F32", "BF16", ... (safetensors spelling)
const char *dtype_torch_name(DType t); // "float32", "bfloat16", "float16" (config.json torch_dtype)
size_t dtype_size(DType t);            // bytes per element; 0 for DT_INVALID
int dtype_is_float_weight(DType t);    // F32, BF16 or F16

// Round-to-nearest-even conversions; NaN stays NaN, overflow becomes Inf.
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);

// Converts n little-endian elements of type t at src into fp32. t must be a float weight type.
void dtype_to_f32(DType t, const void *src, float *dst, size_t n);
// Converts n fp32 values into type t at dst (little-endian). t must be a float weight type.
void dtype_from_f32(DType t, const float *src, void *dst, size_t n);

#endif
