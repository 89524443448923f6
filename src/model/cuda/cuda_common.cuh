// What every CUDA source of gemc includes: the runtime (or, under GEMC_CUDA_EMU, the CPU
// emulator of tests/cuda/emu/ that runs the same kernels on the host for the tests), the check
// macros that name the file and line of a failed call, the launch macro, bf16 conversions and
// the warp and block reductions.
//
// Conventions of the kernels (src/model/cuda/*.cu):
//   - Tensors are row-major and contiguous; shapes are in the comments, as in src/cpu/.
//   - Weights and activations are bf16; parameter gradients, master weights, AdamW moments,
//     the residual stream and its gradient, norms' rstd and every logsumexp are fp32.
//     Every sum is accumulated in fp32.
//   - Backward kernels ADD into gradients (+=) unless their comment says WRITES, as on the CPU.
//   - Kernels are launched with LAUNCH(grid, block, smem, stream, kernel)(args...) and checked
//     with cudaCheckLaunch() right after, so a bad launch names its own line.
#ifndef GEMC_CUDA_COMMON_CUH
#define GEMC_CUDA_COMMON_CUH

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef GEMC_CUDA_EMU
#include "cuda/emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

typedef __nv_bfloat16 bf16;

inline void cuda_check(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        std::fprintf(stderr, "gemc: error: CUDA failed at %s:%d: %s (%s)\n", file, line,
                     cudaGetErrorString(err), cudaGetErrorName(err));
        std::exit(1);
    }
}
#define cudaCheck(call) cuda_check((call), __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at the launch site.
#define cudaCheckLaunch() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

// kernel<<<grid, block, smem, stream>>>, written so the emulator can run it too; the kernel is
// last so a template kernel's commas need no parentheses.
#ifdef GEMC_CUDA_EMU
#define LAUNCH(grid, block, smem, stream, ...) emu::Launch(grid, block, smem, stream, __VA_ARGS__)
#define DYNAMIC_SHARED(T, name)                T *name = (T *)emu::dynamic_shared()
#else
#define LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define DYNAMIC_SHARED(T, name)                extern __shared__ T name[]
#endif

static inline int ceil_div(long a, long b) {
    return (int)((a + b - 1) / b);
}

__device__ __forceinline__ float bf2f(bf16 x) {
    return __bfloat162float(x);
}
__device__ __forceinline__ bf16 f2bf(float x) {
    return __float2bfloat16(x); // round to nearest even
}

// ---- reductions: every lane (warp) or thread (block) gets the result ----------------------

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread of the block must
// call it. The order of additions is fixed by the block shape: same inputs, same bits.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads(); // part may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : 0.0f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : -INFINITY;
    return warp_max(v);
}

// ---- small helpers of the kernels ----------------------------------------------------------

__device__ __forceinline__ int imin(int a, int b) {
    return a < b ? a : b;
}
__device__ __forceinline__ int imax(int a, int b) {
    return a > b ? a : b;
}

// 16 bytes (8 bf16), both pointers 16-byte aligned.
__device__ __forceinline__ void copy16(void *dst, const void *src) {
#ifdef GEMC_CUDA_EMU
    std::memcpy(dst, src, 16);
#else
    *(int4 *)dst = *(const int4 *)src;
#endif
}
__device__ __forceinline__ void zero16(void *dst) {
#ifdef GEMC_CUDA_EMU
    std::memset(dst, 0, 16);
#else
    *(int4 *)dst = make_int4(0, 0, 0, 0);
#endif
}

// 16 bytes from a 16-byte aligned src to a 4-byte aligned dst (a padded shared-memory row).
__device__ __forceinline__ void copy16_words(void *dst, const void *src) {
#ifdef GEMC_CUDA_EMU
    std::memcpy(dst, src, 16);
#else
    const int4 x = *(const int4 *)src;
    int *d = (int *)dst;
    d[0] = x.x, d[1] = x.y, d[2] = x.z, d[3] = x.w;
#endif
}

#endif
