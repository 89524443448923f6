// Layer kernels of the CUDA backend (layers.cuh): embedding, rmsnorm, rope, swiglu, bias
// gradient, casts, AdamW, gradient norm, residual add.
#include <cstdint>

#include "model/cuda/layers.cuh"

#ifdef GEMC_CUDA_EMU
#define UNROLL // (g++ warns about pragmas it does not know)
#else
#define UNROLL _Pragma("unroll")
#endif

// ---- vector access ---------------------------------------------------------------------------

// 8 bf16 = 16 bytes: one 128-bit load or store.
struct alignas(16) bf16x8 {
    bf16 v[8];
};

static bool aligned16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

// W consecutive values at p into fp32 registers. W a multiple of 4 (floats) or 8 (bf16): 16-byte
// accesses, p must then be 16-byte aligned; any other W: plain loads.
template <int W> __device__ __forceinline__ void load_vec(float (&r)[W], const float *p) {
    if constexpr (W % 4 == 0) {
        UNROLL for (int k = 0; k < W; k += 4) {
            const float4 q = *reinterpret_cast<const float4 *>(p + k);
            r[k] = q.x, r[k + 1] = q.y, r[k + 2] = q.z, r[k + 3] = q.w;
        }
    } else {
        UNROLL for (int k = 0; k < W; k++) r[k] = p[k];
    }
}
template <int W> __device__ __forceinline__ void load_vec(float (&r)[W], const bf16 *p) {
    if constexpr (W % 8 == 0) {
        UNROLL for (int k = 0; k < W; k += 8) {
            const bf16x8 q = *reinterpret_cast<const bf16x8 *>(p + k);
            UNROLL for (int u = 0; u < 8; u++) r[k + u] = bf2f(q.v[u]);
        }
    } else if constexpr (W == 2) {
        const __nv_bfloat162 q = *reinterpret_cast<const __nv_bfloat162 *>(p); // 4-byte aligned
        r[0] = bf2f(q.x), r[1] = bf2f(q.y);
    } else {
        UNROLL for (int k = 0; k < W; k++) r[k] = bf2f(p[k]);
    }
}
template <int W> __device__ __forceinline__ void store_vec(float *p, const float (&r)[W]) {
    if constexpr (W % 4 == 0) {
        UNROLL for (int k = 0; k < W; k += 4) {
            *reinterpret_cast<float4 *>(p + k) = make_float4(r[k], r[k + 1], r[k + 2], r[k + 3]);
        }
    } else {
        UNROLL for (int k = 0; k < W; k++) p[k] = r[k];
    }
}
template <int W> __device__ __forceinline__ void store_vec(bf16 *p, const float (&r)[W]) {
    if constexpr (W % 8 == 0) {
        UNROLL for (int k = 0; k < W; k += 8) {
            bf16x8 q;
            UNROLL for (int u = 0; u < 8; u++) q.v[u] = f2bf(r[k + u]);
            *reinterpret_cast<bf16x8 *>(p + k) = q;
        }
    } else {
        UNROLL for (int k = 0; k < W; k++) p[k] = f2bf(r[k]);
    }
}

// ---- elementwise kernels -----------------------------------------------------------------------
//
// Grid-stride over vectors of W elements (W = 8 when every pointer is 16-byte aligned, else 1),
// then the last n % W elements one per thread.

#define EW_THREADS    256
#define EW_MAX_BLOCKS 4096 // enough to fill an H100 several times; the loops cover the rest
#define VW            8    // elements per vector access (16 bytes of bf16, 2 x 16 of fp32)

__device__ __forceinline__ size_t thread_index() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t thread_count() {
    return (size_t)gridDim.x * blockDim.x;
}
#define FOR_VECTORS(i, n, W)                                                                       \
    for (size_t i = thread_index() * (W); i + (W) <= (n); i += thread_count() * (W))
#define FOR_TAIL(i, n, W)                                                                          \
    for (size_t i = (n) / (W) * (W) + thread_index(); i < (n); i += thread_count())

static int ew_blocks(size_t n, int w) {
    const size_t b = (n / w + EW_THREADS - 1) / EW_THREADS;
    return b < 1 ? 1 : b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : (int)b;
}

// ---- embedding -----------------------------------------------------------------------------

// One block per row: a row is a contiguous copy, widened to fp32.
template <int W>
__global__ void embedding_forward_kernel(float *out, const int *tokens, const bf16 *wte, int C) {
    const int t = tokens[blockIdx.x];
    float *dst = out + (size_t)blockIdx.x * C;
    if (t < 0) { // another tensor-parallel rank's row: zeros, for the group's sum
        for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = 0.0f;
        return;
    }
    const bf16 *src = wte + (size_t)t * C;
    for (int c = threadIdx.x * W; c < C; c += blockDim.x * W) {
        float v[W];
        load_vec<W>(v, src + c);
        store_vec<W>(dst + c, v);
    }
}

void embedding_forward(float *out, const int *tokens, const bf16 *wte, int N, int C,
                       cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    if (C % VW == 0 && aligned16(out) && aligned16(wte)) {
        LAUNCH(N, 128, 0, stream, embedding_forward_kernel<VW>)(out, tokens, wte, C);
    } else {
        LAUNCH(N, 128, 0, stream, embedding_forward_kernel<1>)(out, tokens, wte, C);
    }
    cudaCheckLaunch();
}

// One block per row of dout, added into its token's row. Tokens repeat (and their rows are
// far apart in the batch), so the adds are atomics: an ordered deterministic sum would serialize
// each column over the whole batch.
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *tokens,
                                          int C) {
    const int t = tokens[blockIdx.x];
    if (t < 0) return; // a row another tensor-parallel rank holds
    float *dst = dwte + (size_t)t * C;
    const float *src = dout + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dst + c, src[c]);
}

void embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C,
                        cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    LAUNCH(N, 256, 0, stream, embedding_backward_kernel)(dwte, dout, tokens, C);
    cudaCheckLaunch();
}

// ---- rmsnorm -------------------------------------------------------------------------------

#define RMS_THREADS 256 // 8 warps, one row each

// One warp per row: the sum of squares in each lane's registers, then the warp's sum; the row
// is read twice (the second time mostly from L1).
template <int W>
__global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const float *inp, const bf16 *w,
                                       int N, int C, float eps) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return; // the whole warp leaves: no shuffle is left half-done
    const float *x = inp + (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W];
        load_vec<W>(v, x + c);
        UNROLL for (int k = 0; k < W; k++) ss += v[k] * v[k];
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    bf16 *y = out + (size_t)row * C;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W], wv[W];
        load_vec<W>(v, x + c);
        load_vec<W>(wv, w + c);
        UNROLL for (int k = 0; k < W; k++) v[k] = wv[k] * (v[k] * r); // transformers' order
        store_vec<W>(y + c, v);
    }
    if (lane == 0) rstd[row] = r;
}

void rmsnorm_forward(bf16 *out, float *rstd, const float *inp, const bf16 *w, int N, int C,
                     float eps, cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    const int blocks = ceil_div(N, RMS_THREADS / 32);
    if (C % VW == 0 && aligned16(out) && aligned16(inp) && aligned16(w)) {
        LAUNCH(blocks, RMS_THREADS, 0, stream, rmsnorm_forward_kernel<VW>)
        (out, rstd, inp, w, N, C, eps);
    } else {
        LAUNCH(blocks, RMS_THREADS, 0, stream, rmsnorm_forward_kernel<1>)
        (out, rstd, inp, w, N, C, eps);
    }
    cudaCheckLaunch();
}

// The backward, y = w * n, n = x r, r = (mean(x^2) + eps)^(-1/2):
//   dx += r (dy w) - r^3 x sum(dy w x) / C;  dw += sum over rows of dy n.
// Stage 1: block b's warps take rows b*nw + warp, then every gridDim.x*nw rows. A warp does its
// rows' dx and sums their dw terms into its own shared row [C] (no two warps add to one
// address, so no atomics); the block then adds its warps' rows in order into scratch[b, :].
// Stage 2 adds scratch's rows in order into dw. The grid depends only on N and C: the same
// shape always sums in the same order.
#define RMS_BWD_MAX_BLOCKS    256 // stage 2 then reads at most 256 partial rows
#define RMS_BWD_ROWS_PER_WARP 2   // at least, so each partial row sums a few rows
#define RMS_BWD_SMEM          (48 * 1024)

static int rms_bwd_warps(int C) {
    int nw = 8;
    while (nw > 1 && (size_t)nw * C * sizeof(float) > RMS_BWD_SMEM) nw /= 2;
    return nw;
}

static int rms_bwd_blocks(int N, int C) {
    const int b = ceil_div(N, (long)rms_bwd_warps(C) * RMS_BWD_ROWS_PER_WARP);
    return b < 1 ? 1 : b > RMS_BWD_MAX_BLOCKS ? RMS_BWD_MAX_BLOCKS : b;
}

size_t rmsnorm_backward_scratch(int N, int C) {
    return C > 0 ? (size_t)rms_bwd_blocks(N, C) * C : 0;
}

template <int W>
__global__ void rmsnorm_backward_kernel(float *dinp, float *scratch, const float *dout,
                                        const float *inp, const bf16 *w, const float *rstd, int N,
                                        int C) {
    DYNAMIC_SHARED(float, acc); // [nw, C] each warp's dw sums
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    float *mine = acc + (size_t)warp * C;
    // each lane only ever touches its own columns of its warp's row until the __syncthreads
    for (int c = lane * W; c < C; c += 32 * W) {
        UNROLL for (int k = 0; k < W; k++) mine[c + k] = 0.0f;
    }
    for (int row = blockIdx.x * nw + warp; row < N; row += gridDim.x * nw) {
        const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float *dx = dinp + (size_t)row * C;
        const float r = rstd[row];
        float s = 0.0f;
        for (int c = lane * W; c < C; c += 32 * W) {
            float xv[W], dyv[W], wv[W], a[W];
            load_vec<W>(xv, x + c);
            load_vec<W>(dyv, dy + c);
            load_vec<W>(wv, w + c);
            load_vec<W>(a, mine + c);
            UNROLL for (int k = 0; k < W; k++) {
                s += (dyv[k] * wv[k]) * xv[k];
                a[k] += dyv[k] * (xv[k] * r);
            }
            store_vec<W>(mine + c, a);
        }
        s = warp_sum(s);
        const float coef = r * r * r * s / (float)C;
        for (int c = lane * W; c < C; c += 32 * W) {
            float xv[W], dyv[W], wv[W], d[W];
            load_vec<W>(xv, x + c);
            load_vec<W>(dyv, dy + c);
            load_vec<W>(wv, w + c);
            load_vec<W>(d, dx + c);
            UNROLL for (int k = 0; k < W; k++) d[k] += r * (dyv[k] * wv[k]) - coef * xv[k];
            store_vec<W>(dx + c, d);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float t = 0.0f;
        for (int u = 0; u < nw; u++) t += acc[(size_t)u * C + c];
        scratch[(size_t)blockIdx.x * C + c] = t;
    }
}

// dst[c] += sum over r of part[r, c], r in order. part [rows, C].
__global__ void add_column_sums_kernel(float *dst, const float *part, int rows, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float t = 0.0f;
    for (int r = 0; r < rows; r++) t += part[(size_t)r * C + c];
    dst[c] += t;
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const bf16 *w,
                      const float *rstd, int N, int C, float *scratch, cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    const int nw = rms_bwd_warps(C), blocks = rms_bwd_blocks(N, C);
    const size_t smem = (size_t)nw * C * sizeof(float);
    const bool vec =
        C % VW == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(w);
    if (smem > RMS_BWD_SMEM) { // one warp's row beyond the default: C > 12288
        cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<VW>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<1>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    if (vec) {
        LAUNCH(blocks, nw * 32, smem, stream, rmsnorm_backward_kernel<VW>)
        (dinp, scratch, dout, inp, w, rstd, N, C);
    } else {
        LAUNCH(blocks, nw * 32, smem, stream, rmsnorm_backward_kernel<1>)
        (dinp, scratch, dout, inp, w, rstd, N, C);
    }
    cudaCheckLaunch();
    LAUNCH(ceil_div(C, 256), 256, 0, stream, add_column_sums_kernel)(dw, scratch, blocks, C);
    cudaCheckLaunch();
}

// ---- rope ----------------------------------------------------------------------------------

// One thread per (row i, pair j): one sincos of the fp32 angle, applied to the pair (j, j+D/2)
// of every head of the row. Consecutive threads take consecutive j (coalesced per head).
// sincosf, not __sincosf: positions reach thousands of radians, where the fast one is wrong.
__global__ void rope_forward_kernel(bf16 *x, const int *pos, const float *inv_freq, int N, int H,
                                    int D) {
    const int half = D / 2;
    const size_t idx = thread_index();
    if (idx >= (size_t)N * half) return;
    const int i = (int)(idx / half), j = (int)(idx % half);
    float sn, cs;
    sincosf(inv_freq[j] * (float)pos[i], &sn, &cs);
    for (int h = 0; h < H; h++) {
        bf16 *xh = x + ((size_t)i * H + h) * D;
        const float x1 = bf2f(xh[j]), x2 = bf2f(xh[j + half]);
        xh[j] = f2bf(x1 * cs - x2 * sn);
        xh[j + half] = f2bf(x2 * cs + x1 * sn);
    }
}

__global__ void rope_backward_kernel(bf16 *dx, const float *dy, const int *pos,
                                     const float *inv_freq, int N, int H, int D) {
    const int half = D / 2;
    const size_t idx = thread_index();
    if (idx >= (size_t)N * half) return;
    const int i = (int)(idx / half), j = (int)(idx % half);
    float sn, cs;
    sincosf(inv_freq[j] * (float)pos[i], &sn, &cs);
    for (int h = 0; h < H; h++) {
        const size_t o = ((size_t)i * H + h) * D;
        const float d1 = dy[o + j], d2 = dy[o + j + half];
        dx[o + j] = f2bf(d1 * cs + d2 * sn);
        dx[o + j + half] = f2bf(d2 * cs - d1 * sn);
    }
}

void rope_forward(bf16 *x, const int *pos, const float *inv_freq, int N, int H, int D,
                  cudaStream_t stream) {
    if (N <= 0 || H <= 0 || D < 2) return;
    LAUNCH(ceil_div((long)N * (D / 2), 256), 256, 0, stream, rope_forward_kernel)
    (x, pos, inv_freq, N, H, D);
    cudaCheckLaunch();
}

void rope_backward(bf16 *dx, const float *dy, const int *pos, const float *inv_freq, int N, int H,
                   int D, cudaStream_t stream) {
    if (N <= 0 || H <= 0 || D < 2) return;
    LAUNCH(ceil_div((long)N * (D / 2), 256), 256, 0, stream, rope_backward_kernel)
    (dx, dy, pos, inv_freq, N, H, D);
    cudaCheckLaunch();
}

// ---- swiglu --------------------------------------------------------------------------------

// W elements at i. expf, not __expf: the same function as the CPU to a few ulps.
template <int W>
__device__ __forceinline__ void swiglu_forward_at(bf16 *out, const bf16 *gate, const bf16 *up,
                                                  size_t i) {
    float g[W], u[W];
    load_vec<W>(g, gate + i);
    load_vec<W>(u, up + i);
    UNROLL for (int k = 0; k < W; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store_vec<W>(out + i, g);
}

template <int W>
__global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n) {
    FOR_VECTORS(i, n, W) swiglu_forward_at<W>(out, gate, up, i);
    FOR_TAIL(i, n, W) swiglu_forward_at<1>(out, gate, up, i);
}

template <int W>
__device__ __forceinline__ void swiglu_backward_at(bf16 *dgate, bf16 *dup, const bf16 *dout,
                                                   const bf16 *gate, const bf16 *up, size_t i) {
    float d[W], g[W], u[W], dg[W], du[W];
    load_vec<W>(d, dout + i);
    load_vec<W>(g, gate + i);
    load_vec<W>(u, up + i);
    UNROLL for (int k = 0; k < W; k++) {
        const float sig = 1.0f / (1.0f + expf(-g[k]));
        dg[k] = d[k] * u[k] * (sig * (1.0f + g[k] * (1.0f - sig)));
        du[k] = d[k] * (g[k] * sig);
    }
    store_vec<W>(dgate + i, dg);
    store_vec<W>(dup + i, du);
}

template <int W>
__global__ void swiglu_backward_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                                       const bf16 *up, size_t n) {
    FOR_VECTORS(i, n, W) swiglu_backward_at<W>(dgate, dup, dout, gate, up, i);
    FOR_TAIL(i, n, W) swiglu_backward_at<1>(dgate, dup, dout, gate, up, i);
}

void swiglu_forward(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(out) && aligned16(gate) && aligned16(up)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, swiglu_forward_kernel<VW>)
        (out, gate, up, n);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, swiglu_forward_kernel<1>)(out, gate, up, n);
    }
    cudaCheckLaunch();
}

void swiglu_backward(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                     size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, swiglu_backward_kernel<VW>)
        (dgate, dup, dout, gate, up, n);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, swiglu_backward_kernel<1>)
        (dgate, dup, dout, gate, up, n);
    }
    cudaCheckLaunch();
}

// ---- matmul bias ---------------------------------------------------------------------------

// Block (x, y) owns 32*W columns and the rows of chunk y; its BIAS_SLOTS warps take every
// BIAS_SLOTS-th row of the chunk, lane l summing its W columns (a warp reads 32*W contiguous
// values of a row), then warp 0 adds the slots' sums in order into dst[y, :] (+= when add, else
// =). Without scratch there is one chunk, added straight into dbias; with scratch the chunks'
// sums go there and are added in order into dbias (more blocks, for large N). No atomics.
#define BIAS_SLOTS      16
#define BIAS_CHUNK_ROWS 256 // rows per chunk at least
#define BIAS_MAX_CHUNKS 64

template <int W>
__global__ void bias_backward_kernel(float *dst, const bf16 *dout, int N, int OC, int chunk_rows,
                                     int add) {
    __shared__ float part[BIAS_SLOTS][32 * W];
    const int lane = threadIdx.x % 32, slot = threadIdx.x / 32;
    const int c = (blockIdx.x * 32 + lane) * W;
    const int i0 = blockIdx.y * chunk_rows, i1 = N - i0 < chunk_rows ? N : i0 + chunk_rows;
    float acc[W];
    UNROLL for (int k = 0; k < W; k++) acc[k] = 0.0f;
    if (c < OC) {
        for (int i = i0 + slot; i < i1; i += BIAS_SLOTS) {
            float v[W];
            load_vec<W>(v, dout + (size_t)i * OC + c);
            UNROLL for (int k = 0; k < W; k++) acc[k] += v[k];
        }
    }
    UNROLL for (int k = 0; k < W; k++) part[slot][lane * W + k] = acc[k];
    __syncthreads();
    if (slot == 0 && c < OC) {
        float *d = dst + (size_t)blockIdx.y * OC + c;
        UNROLL for (int k = 0; k < W; k++) {
            float s = 0.0f;
            for (int t = 0; t < BIAS_SLOTS; t++) s += part[t][lane * W + k];
            d[k] = add ? d[k] + s : s;
        }
    }
}

static int bias_chunks(int N) {
    const int b = ceil_div(N, BIAS_CHUNK_ROWS);
    return b < 1 ? 1 : b > BIAS_MAX_CHUNKS ? BIAS_MAX_CHUNKS : b;
}

size_t bias_backward_scratch(int N, int OC) {
    return OC > 0 ? (size_t)bias_chunks(N) * OC : 0;
}

static void bias_backward_launch(float *dst, const bf16 *dout, int N, int OC, int chunks, int add,
                                 cudaStream_t stream) {
    const int chunk_rows = ceil_div(N, chunks);
    if (OC % 2 == 0 && ((uintptr_t)dout & 3u) == 0) { // bf16 pairs: 4-byte loads
        LAUNCH(dim3(ceil_div(OC, 64), chunks), 32 * BIAS_SLOTS, 0, stream, bias_backward_kernel<2>)
        (dst, dout, N, OC, chunk_rows, add);
    } else {
        LAUNCH(dim3(ceil_div(OC, 32), chunks), 32 * BIAS_SLOTS, 0, stream, bias_backward_kernel<1>)
        (dst, dout, N, OC, chunk_rows, add);
    }
    cudaCheckLaunch();
}

void bias_backward(float *dbias, const bf16 *dout, int N, int OC, cudaStream_t stream) {
    if (N <= 0 || OC <= 0) return;
    bias_backward_launch(dbias, dout, N, OC, 1, 1, stream);
}

void bias_backward(float *dbias, const bf16 *dout, int N, int OC, float *scratch,
                   cudaStream_t stream) {
    if (N <= 0 || OC <= 0) return;
    const int chunks = bias_chunks(N);
    bias_backward_launch(scratch, dout, N, OC, chunks, 0, stream);
    LAUNCH(ceil_div(OC, 256), 256, 0, stream, add_column_sums_kernel)(dbias, scratch, chunks, OC);
    cudaCheckLaunch();
}

// ---- casts and the residual add --------------------------------------------------------------

template <int W> __device__ __forceinline__ void cast_at(bf16 *out, const float *in, size_t i) {
    float v[W];
    load_vec<W>(v, in + i);
    store_vec<W>(out + i, v);
}
template <int W> __device__ __forceinline__ void cast_at(float *out, const bf16 *in, size_t i) {
    float v[W];
    load_vec<W>(v, in + i);
    store_vec<W>(out + i, v);
}

template <int W, class TO, class TI> __global__ void cast_kernel(TO *out, const TI *in, size_t n) {
    FOR_VECTORS(i, n, W) cast_at<W>(out, in, i);
    FOR_TAIL(i, n, W) cast_at<1>(out, in, i);
}

template <class TO, class TI>
static void cast(TO *out, const TI *in, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(out) && aligned16(in)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, cast_kernel<VW, TO, TI>)(out, in, n);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, cast_kernel<1, TO, TI>)(out, in, n);
    }
    cudaCheckLaunch();
}

void cast_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t stream) {
    cast(out, in, n, stream);
}
void cast_bf16_to_f32(float *out, const bf16 *in, size_t n, cudaStream_t stream) {
    cast(out, in, n, stream);
}

// out may be a or b: each element is read before it is written, by the same thread.
template <int W>
__device__ __forceinline__ void add_at(float *out, const float *a, const float *b, size_t i) {
    float x[W], y[W];
    load_vec<W>(x, a + i);
    load_vec<W>(y, b + i);
    UNROLL for (int k = 0; k < W; k++) x[k] += y[k];
    store_vec<W>(out + i, x);
}

template <int W> __global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    FOR_VECTORS(i, n, W) add_at<W>(out, a, b, i);
    FOR_TAIL(i, n, W) add_at<1>(out, a, b, i);
}

void add_f32(float *out, const float *a, const float *b, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(out) && aligned16(a) && aligned16(b)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, add_kernel<VW>)(out, a, b, n);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, add_kernel<1>)(out, a, b, n);
    }
    cudaCheckLaunch();
}

// ---- AdamW ---------------------------------------------------------------------------------

// IEEE operations that nvcc may not fuse into FMAs (it contracts a + b * c by default), so each
// rounds exactly as the CPU's -ffp-contract=off build does. The emulator is compiled with
// -ffp-contract=off itself.
#ifdef GEMC_CUDA_EMU
__device__ __forceinline__ float add_rn(float a, float b) {
    return a + b;
}
__device__ __forceinline__ float sub_rn(float a, float b) {
    return a - b;
}
__device__ __forceinline__ float mul_rn(float a, float b) {
    return a * b;
}
__device__ __forceinline__ float div_rn(float a, float b) {
    return a / b;
}
__device__ __forceinline__ float sqrt_rn(float a) {
    return sqrtf(a);
}
#else
__device__ __forceinline__ float add_rn(float a, float b) {
    return __fadd_rn(a, b);
}
__device__ __forceinline__ float sub_rn(float a, float b) {
    return __fsub_rn(a, b);
}
__device__ __forceinline__ float mul_rn(float a, float b) {
    return __fmul_rn(a, b);
}
__device__ __forceinline__ float div_rn(float a, float b) {
    return __fdiv_rn(a, b);
}
__device__ __forceinline__ float sqrt_rn(float a) {
    return __fsqrt_rn(a);
}
#endif

struct AdamWScalars {
    float decay_mul, w1, b2, w2, bc2_sqrt, eps, neg_step;
};

template <int W>
__device__ __forceinline__ void adamw_at(float *master, bf16 *params, const float *grads, float *m,
                                         float *v, size_t i, const AdamWScalars &s) {
    float p[W], g[W], mo[W], vo[W];
    load_vec<W>(p, master + i);
    load_vec<W>(g, grads + i);
    load_vec<W>(mo, m + i);
    load_vec<W>(vo, v + i);
    UNROLL for (int k = 0; k < W; k++) {
        const float pi = mul_rn(p[k], s.decay_mul); // param.mul_(1 - lr * weight_decay)
        // exp_avg.lerp_(grad, 1 - beta1), with torch's two forms of lerp
        const float d = sub_rn(g[k], mo[k]);
        const float mi = s.w1 < 0.5f ? add_rn(mo[k], mul_rn(s.w1, d))
                                     : sub_rn(g[k], mul_rn(d, sub_rn(1.0f, s.w1)));
        float vi = mul_rn(vo[k], s.b2);                    // exp_avg_sq.mul_(beta2)
        vi = add_rn(vi, mul_rn(mul_rn(s.w2, g[k]), g[k])); //   .addcmul_(grad, grad, 1 - b2)
        const float denom = add_rn(div_rn(sqrt_rn(vi), s.bc2_sqrt), s.eps);
        p[k] = add_rn(pi, div_rn(mul_rn(s.neg_step, mi), denom)); // param.addcdiv_(m, denom, -step)
        mo[k] = mi;
        vo[k] = vi;
    }
    store_vec<W>(master + i, p);
    store_vec<W>(params + i, p);
    store_vec<W>(m + i, mo);
    store_vec<W>(v + i, vo);
}

template <int W>
__global__ void adamw_kernel(float *master, bf16 *params, const float *grads, float *m, float *v,
                             size_t n, AdamWScalars s) {
    FOR_VECTORS(i, n, W) adamw_at<W>(master, params, grads, m, v, i, s);
    FOR_TAIL(i, n, W) adamw_at<1>(master, params, grads, m, v, i, s);
}

void adamw_update(float *master, bf16 *params, const float *grads, float *m, float *v, size_t n,
                  float decay_mul, float w1, float b2, float w2, float bc2_sqrt, float eps,
                  float neg_step, cudaStream_t stream) {
    if (n == 0) return;
    const AdamWScalars s = {decay_mul, w1, b2, w2, bc2_sqrt, eps, neg_step};
    if (aligned16(master) && aligned16(params) && aligned16(grads) && aligned16(m) &&
        aligned16(v)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, adamw_kernel<VW>)
        (master, params, grads, m, v, n, s);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, adamw_kernel<1>)
        (master, params, grads, m, v, n, s);
    }
    cudaCheckLaunch();
}

// ---- gradient norm and scaling -----------------------------------------------------------------

// Stage 1: each block's threads sum squares over a grid-stride range, the block sums them into
// partial[block]; stage 2: one block adds the partials. The grid depends only on n.
#define SUMSQ_THREADS    512
#define SUMSQ_PER_THREAD 16 // at least, before the grid is capped
#define SUMSQ_MAX_BLOCKS 1024

static int sumsq_blocks(size_t n) {
    const size_t b = (n + (size_t)SUMSQ_THREADS * SUMSQ_PER_THREAD - 1) /
                     ((size_t)SUMSQ_THREADS * SUMSQ_PER_THREAD);
    return b < 1 ? 1 : b > SUMSQ_MAX_BLOCKS ? SUMSQ_MAX_BLOCKS : (int)b;
}

size_t sum_squares_scratch(size_t n) {
    return (size_t)sumsq_blocks(n);
}

template <int W> __global__ void sum_squares_kernel(float *partial, const float *g, size_t n) {
    float acc = 0.0f;
    FOR_VECTORS(i, n, W) {
        float v[W];
        load_vec<W>(v, g + i);
        UNROLL for (int k = 0; k < W; k++) acc += v[k] * v[k];
    }
    FOR_TAIL(i, n, W) acc += g[i] * g[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(float *out, const float *partial, int nparts) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) *out = acc;
}

void sum_squares(float *out, const float *g, size_t n, float *scratch, cudaStream_t stream) {
    const int blocks = sumsq_blocks(n);
    if (aligned16(g)) {
        LAUNCH(blocks, SUMSQ_THREADS, 0, stream, sum_squares_kernel<VW>)(scratch, g, n);
    } else {
        LAUNCH(blocks, SUMSQ_THREADS, 0, stream, sum_squares_kernel<1>)(scratch, g, n);
    }
    cudaCheckLaunch();
    LAUNCH(1, 1024, 0, stream, sum_partials_kernel)(out, scratch, blocks);
    cudaCheckLaunch();
}

template <int W> __device__ __forceinline__ void scale_at(float *g, size_t i, float s) {
    float v[W];
    load_vec<W>(v, g + i);
    UNROLL for (int k = 0; k < W; k++) v[k] *= s;
    store_vec<W>(g + i, v);
}

template <int W> __global__ void scale_kernel(float *g, size_t n, float s) {
    FOR_VECTORS(i, n, W) scale_at<W>(g, i, s);
    FOR_TAIL(i, n, W) scale_at<1>(g, i, s);
}

// The coefficient from the device's sum of squares, as model_clip_grad_norm computes it:
// sqrtf of a float is the float of its double sqrt, and IEEE division (nvcc's default).
template <int W>
__global__ void clip_scale_kernel(float *g, size_t n, const float *sumsq, float max_norm) {
    const float coef = max_norm / (sqrtf(*sumsq) + 1e-6f);
    if (!(coef < 1.0f)) return; // scaling by 1 changes nothing (and a NaN norm scales nothing)
    FOR_VECTORS(i, n, W) scale_at<W>(g, i, coef);
    FOR_TAIL(i, n, W) scale_at<1>(g, i, coef);
}

void scale_f32(float *g, size_t n, float s, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(g)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, scale_kernel<VW>)(g, n, s);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, scale_kernel<1>)(g, n, s);
    }
    cudaCheckLaunch();
}

void clip_scale_f32(float *g, size_t n, const float *sumsq, float max_norm, cudaStream_t stream) {
    if (n == 0) return;
    if (aligned16(g)) {
        LAUNCH(ew_blocks(n, VW), EW_THREADS, 0, stream, clip_scale_kernel<VW>)
        (g, n, sumsq, max_norm);
    } else {
        LAUNCH(ew_blocks(n, 1), EW_THREADS, 0, stream, clip_scale_kernel<1>)(g, n, sumsq, max_norm);
    }
    cudaCheckLaunch();
}
