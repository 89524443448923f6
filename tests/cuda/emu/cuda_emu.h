// A CPU emulator of the part of CUDA that gemc's kernels use, so that the kernels and the
// whole GPU model run, and are tested against the CPU backend, on machines without a GPU
// (build/test_cuda_emu, `make test`).
//
// Each launch runs its blocks one after another. The threads of a block are fibers (ucontext)
// on one OS thread: a thread runs until it reaches __syncthreads() or a warp operation, and the
// scheduler releases a barrier once every thread of the block (or warp) that has not returned
// has reached it, as the hardware does. A barrier that can never be released (threads of one
// warp at different barriers, a shuffle some lanes skip) stops the program with a message
// instead of hanging, and bad launch configurations give the error the runtime would. Memory is
// host memory; streams and events are synchronous. bf16 is round-to-nearest-even, as the
// hardware converts. GEMC_EMU_ORDER=reverse runs the threads between barriers in the opposite
// order: a kernel whose results change with it has a race.
//
// Only compiled with -DGEMC_CUDA_EMU (C++17, any host compiler); never part of ./gemc.
#ifndef GEMC_CUDA_EMU_H
#define GEMC_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__   static // blocks run one at a time, so one copy serves the running block
#define __constant__ static
#define __restrict__ __restrict

// ---- built-in vector types and indices -----------------------------------------------------

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct int2 {
    int x, y;
};
struct int4 {
    int x, y, z, w;
};
static inline float2 make_float2(float x, float y) {
    return {x, y};
}
static inline float4 make_float4(float x, float y, float z, float w) {
    return {x, y, z, w};
}

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
static const int warpSize = 32;

// ---- the runtime API subset ------------------------------------------------------------------

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice,
    cudaMemcpyDefault
} cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraph_st *cudaGraphExec_t; // the emulator instantiates a graph as itself
typedef enum {
    cudaStreamCaptureModeGlobal,
    cudaStreamCaptureModeThreadLocal,
    cudaStreamCaptureModeRelaxed
} cudaStreamCaptureMode;

struct cudaUUID_t {
    char bytes[16];
};
struct cudaDeviceProp {
    char name[256];
    cudaUUID_t uuid;
    size_t totalGlobalMem;
    size_t sharedMemPerBlock, sharedMemPerBlockOptin;
    int major, minor, multiProcessorCount, maxThreadsPerBlock;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
template <class F> cudaError_t cudaFuncSetAttribute(F *, cudaFuncAttribute, int value);
// Graphs: between begin and end capture, launches (and emulated GEMMs) are recorded instead of
// run, and a launch of the graph runs them in order.
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ---- bf16 ------------------------------------------------------------------------------------

struct __nv_bfloat16 {
    unsigned short __x;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.__x = (unsigned short)((u >> 16) | 0x40); // NaN stays a (quiet) NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even
        r.__x = (unsigned short)(u >> 16);
    }
    return r;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    return __float2bfloat16(f);
}
static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.__x << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return {__float2bfloat16(a), __float2bfloat16(b)};
}
static inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return {__bfloat162float(h.x), __bfloat162float(h.y)};
}

// ---- device intrinsics -----------------------------------------------------------------------
// (glibc itself declares __expf, __logf, sincosf and __sincosf, the same functions)

static inline float rsqrtf(float x) {
    return 1.0f / sqrtf(x);
}
static inline float __fdividef(float a, float b) {
    return a / b;
}
static inline float __saturatef(float x) {
    return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}
template <class T> static inline T __ldg(const T *p) {
    return *p;
}
// one fiber runs at a time, so plain read-modify-writes are atomic
template <class T> static inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
static inline int atomicMax(int *p, int v) {
    int old = *p;
    if (v > old) *p = v;
    return old;
}
static inline unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v) {
    unsigned old = *p;
    if (old == cmp) *p = v;
    return old;
}
static inline int atomicCAS(int *p, int cmp, int v) {
    int old = *p;
    if (old == cmp) *p = v;
    return old;
}
static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp,
                                           unsigned long long v) {
    unsigned long long old = *p;
    if (old == cmp) *p = v;
    return old;
}
static inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
static inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
static inline unsigned __float_as_uint(float f) {
    unsigned i;
    std::memcpy(&i, &f, 4);
    return i;
}
static inline float __uint_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

// ---- barriers, shuffles and launches (cuda_emu.cc) -------------------------------------------

namespace emu {
void sync_block();                   // __syncthreads()
void sync_warp();                    // __syncwarp() and both halves of every warp operation
uint64_t *exchange();                // the current warp's 32 exchange words
int lane();                          // threadIdx.x % 32 of the running thread
void *dynamic_shared();              // the launch's dynamic shared memory
int sync_block_count(int predicate); // __syncthreads_count
void fail(const char *what);         // prints "gemc: error: CUDA emulator: what", exits 1

template <class T> T shfl_from(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t *x = exchange();
    uint64_t w = 0;
    std::memcpy(&w, &v, sizeof(T));
    x[lane()] = w;
    sync_warp();
    T r;
    std::memcpy(&r, &x[src & 31], sizeof(T));
    sync_warp(); // nobody overwrites the words before everyone has read them
    return r;
}

// Runs fn on every thread of every block of the launch; records a launch error instead when the
// configuration is one the hardware refuses.
void run_launch(dim3 grid, dim3 block, size_t smem, const void *kernel,
                const std::function<void()> &fn);

// During a stream capture: records work for the graph (fn keeps copies of what it needs).
bool capturing();
void capture(std::function<void()> fn);

template <class K> struct Launcher {
    dim3 grid, block;
    size_t smem;
    K *kernel;
    template <class... A> void operator()(A &&...args) const {
        if (capturing()) {
            // the arguments by value, as a graph node keeps them
            const dim3 g = grid, b = block;
            const size_t sm = smem;
            K *k = kernel;
            capture([=]() {
                std::function<void()> fn = [&]() { k(args...); };
                run_launch(g, b, sm, (const void *)k, fn);
            });
            return;
        }
        std::function<void()> fn = [&]() { kernel(args...); };
        run_launch(grid, block, smem, (const void *)kernel, fn);
    }
};
template <class K> Launcher<K> Launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, K *kernel) {
    return Launcher<K>{grid, block, smem, kernel};
}
void set_max_dynamic_shared(const void *kernel, int bytes);
} // namespace emu

template <class F> cudaError_t cudaFuncSetAttribute(F *f, cudaFuncAttribute, int value) {
    emu::set_max_dynamic_shared((const void *)f, value);
    return cudaSuccess;
}

static inline void __syncthreads() {
    emu::sync_block();
}
static inline int __syncthreads_count(int p) {
    return emu::sync_block_count(p);
}
static inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::sync_warp();
}
template <class T> static inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    return emu::shfl_from(v, (emu::lane() & ~(width - 1)) + (src % width));
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    const int l = emu::lane(), src = l ^ mask;
    return emu::shfl_from(v, (src & ~(width - 1)) == (l & ~(width - 1)) ? src : l);
}
template <class T> static inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
    const int l = emu::lane(), src = l + (int)d;
    return emu::shfl_from(v, (src & ~(width - 1)) == (l & ~(width - 1)) ? src : l);
}
template <class T> static inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
    const int l = emu::lane(), src = l - (int)d;
    return emu::shfl_from(v, src >= (l & ~(width - 1)) ? src : l);
}
static inline unsigned __ballot_sync(unsigned, int p) {
    uint64_t *x = emu::exchange();
    x[emu::lane()] = p ? 1 : 0;
    emu::sync_warp();
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= (x[i] == 1 ? 1u : 0u) << i;
    emu::sync_warp();
    return r;
}
static inline int __any_sync(unsigned m, int p) {
    return __ballot_sync(m, p) != 0;
}
static inline int __all_sync(unsigned m, int p) {
    return __ballot_sync(m, !p) == 0;
}
static inline unsigned __activemask() {
    return 0xffffffffu;
}

#endif
