// The emulator's nvcuda::wmma (bf16 16x16x16 tiles, fp32 accumulators), included through
// cuda_mma.cuh. A fragment holds its whole tile in every thread (num_elements is 256 here, 8 or
// 16 on the hardware), so code that applies an element-wise operation to x[0 .. num_elements)
// works on both; code that assumes which elements a lane holds does not, and gemc has none.
// Every operation is warp-collective, as on the hardware: all 32 lanes must reach it.
#ifndef GEMC_MMA_EMU_H
#define GEMC_MMA_EMU_H

#include "cuda_emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static const int num_elements = 256;
    T x[256]; // element (r, c) of the 16x16 tile at x[r * 16 + c]
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, T v) {
    emu::sync_warp();
    for (int i = 0; i < 256; i++) f.x[i] = v;
}
template <int M, int N, int K>
inline void fill_fragment(fragment<accumulator, M, N, K, float> &f, float v) {
    emu::sync_warp();
    for (int i = 0; i < 256; i++) f.x[i] = v;
}

// A and B tiles: element (r, c) at p[r * ldm + c] (row_major) or p[c * ldm + r] (col_major).
template <class Use, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout> &f,
                             const __nv_bfloat16 *p, unsigned ldm) {
    emu::sync_warp();
    const bool col = std::is_same<Layout, col_major>::value;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = col ? p[c * ldm + r] : p[r * ldm + c];
    emu::sync_warp();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t l) {
    emu::sync_warp();
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.x[r * 16 + c] = l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
    emu::sync_warp();
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t l) {
    emu::sync_warp();
    if (emu::lane() == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++)
                (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * 16 + c];
    emu::sync_warp();
}

// d = a b + c, products and sums in fp32 (the tensor cores accumulate in fp32 too, in an order
// of their own: results agree to rounding, not to the bit).
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
    emu::sync_warp();
    float out[256];
    for (int r = 0; r < 16; r++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[r * 16 + j];
            for (int k = 0; k < 16; k++)
                s += __bfloat162float(a.x[r * 16 + k]) * __bfloat162float(b.x[k * 16 + j]);
            out[r * 16 + j] = s;
        }
    for (int i = 0; i < 256; i++) d.x[i] = out[i];
    emu::sync_warp();
}

} // namespace wmma
} // namespace nvcuda

#endif
