// The log-prob/entropy head (head.cuh): head_forward and head_backward.
//
// head_forward gives each row of logits (151,936 for Qwen2.5) to one block; the kernels read
// float4s where the rows are 16-byte aligned (V % 4 == 0). The softmax sums are online
// (softmax.cuh): the max, the sums and the entropy take one pass over the row. Every reduction
// has a fixed order: the same inputs give the same bits.
#include "model/cuda/head.cuh"

#include <climits>
#include <cstdint>
#include <cstring>

#include "model/cuda/softmax.cuh"

#define HEAD_THREADS     512 // head_forward: a block per row
#define BACKWARD_THREADS 256 // head_backward: 4 logits per thread, a 2D grid of tiles

// ---- head_forward --------------------------------------------------------------------------

// The online sums of row z [V] over the block (the part of the shared memory of HEAD_THREADS / 32
// states): the state is the whole row's in thread 0, and only there.
template <bool VEC>
__device__ __forceinline__ Soft block_row_soft(const float *z, int V, Soft *part) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    Soft s = {-INFINITY, 0.0f, 0.0f, 0.0f};
    if (VEC) {
        const float4 *z4 = (const float4 *)z;
#pragma unroll 4
        for (int k = threadIdx.x; k < V / 4; k += blockDim.x) {
            const float4 v = z4[k];
            const float mx = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
            if (mx > s.m) soft_rebase<true>(s, mx); // one rescale for the four
            soft_add<true>(s, v.x);
            soft_add<true>(s, v.y);
            soft_add<true>(s, v.z);
            soft_add<true>(s, v.w);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            const float x = z[i];
            if (x > s.m) soft_rebase<true>(s, x);
            soft_add<true>(s, x);
        }
    }
    s = warp_soft<true>(s);
    if (lane == 0) part[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < (int)blockDim.x / 32; w++) s = soft_merge<true>(s, part[w]);
    return s;
}

// grid N, block HEAD_THREADS. logits [N, V]; logprob, entropy (may be NULL), lse [N].
template <bool VEC>
__global__ void __launch_bounds__(HEAD_THREADS)
    head_forward_kernel(float *logprob, float *entropy, float *lse, const float *logits,
                        const int *targets, int V) {
    __shared__ Soft part[32];
    const int row = blockIdx.x;
    const float *z = logits + (size_t)row * V;
    const Soft s = block_row_soft<VEC>(z, V, part);
    if (threadIdx.x != 0) return;
    const float lnS = logf(s.S), l = s.m + lnS;
    lse[row] = l;
    if (entropy) entropy[row] = lnS - s.T / s.S;
    if (logprob) logprob[row] = targets[row] >= 0 ? z[targets[row]] - l : 0.0f;
}

// grid N, block HEAD_THREADS: this rank's {m, S, T, z[target]} of each row into stat [N, 4]
// (z[target] 0 when the target is not in [0, V)) and m into mx [N].
template <bool VEC>
__global__ void __launch_bounds__(HEAD_THREADS)
    head_vp_partial_kernel(float *mx, float *stat, const float *logits, const int *targets, int V) {
    __shared__ Soft part[32];
    const int row = blockIdx.x;
    const float *z = logits + (size_t)row * V;
    const Soft s = block_row_soft<VEC>(z, V, part);
    if (threadIdx.x != 0) return;
    const int t = targets[row];
    float *st = stat + (size_t)row * 4;
    st[0] = s.m, st[1] = s.S, st[2] = s.T, st[3] = t >= 0 && t < V ? z[t] : 0.0f;
    mx[row] = s.m;
}

// One thread per row: the state rebased onto the group's max (soft_rebase), into sums [N, 3].
__global__ void head_vp_rebase_kernel(float *sums, const float *stat, const float *mx, int N) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const float *st = stat + (size_t)row * 4;
    Soft s = {st[0], st[1], st[2], 0.0f};
    soft_rebase<true>(s, mx[row]);
    sums[(size_t)row * 3 + 0] = s.S;
    sums[(size_t)row * 3 + 1] = s.T;
    sums[(size_t)row * 3 + 2] = st[3];
}

// One thread per row: lse, entropy and log-prob from the group's max and sums, as head_forward.
__global__ void head_vp_finish_kernel(float *logprob, float *entropy, float *lse, const float *mx,
                                      const float *sums, const int *targets, int N) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const float S = sums[(size_t)row * 3], T = sums[(size_t)row * 3 + 1];
    const float lnS = logf(S), l = mx[row] + lnS;
    lse[row] = l;
    if (entropy) entropy[row] = lnS - T / S;
    if (logprob) logprob[row] = targets[row] >= 0 ? sums[(size_t)row * 3 + 2] - l : 0.0f;
}

void head_vp_partial(float *mx, float *stat, const float *logits, const int *targets_local, int N,
                     int V, cudaStream_t stream) {
    if (N <= 0) return;
    if ((uintptr_t)logits % 16 == 0 && V % 4 == 0)
        LAUNCH(N, HEAD_THREADS, 0, stream, head_vp_partial_kernel<true>)
    (mx, stat, logits, targets_local, V);
    else LAUNCH(N, HEAD_THREADS, 0, stream, head_vp_partial_kernel<false>)(mx, stat, logits,
                                                                           targets_local, V);
    cudaCheckLaunch();
}

void head_vp_rebase(float *sums, const float *stat, const float *mx, int N, cudaStream_t stream) {
    if (N <= 0) return;
    LAUNCH(ceil_div(N, 128), 128, 0, stream, head_vp_rebase_kernel)(sums, stat, mx, N);
    cudaCheckLaunch();
}

void head_vp_finish(float *logprob, float *entropy, float *lse, const float *mx, const float *sums,
                    const int *targets, int N, cudaStream_t stream) {
    if (N <= 0) return;
    LAUNCH(ceil_div(N, 128), 128, 0, stream, head_vp_finish_kernel)
    (logprob, entropy, lse, mx, sums, targets, N);
    cudaCheckLaunch();
}

void head_forward(float *logprob, float *entropy, float *lse, const float *logits,
                  const int *targets, int N, int V, cudaStream_t stream) {
    if (N <= 0) return;
    if ((uintptr_t)logits % 16 == 0 && V % 4 == 0)
        LAUNCH(N, HEAD_THREADS, 0, stream, head_forward_kernel<true>)
    (logprob, entropy, lse, logits, targets, V);
    else LAUNCH(N, HEAD_THREADS, 0, stream, head_forward_kernel<false>)(logprob, entropy, lse,
                                                                        logits, targets, V);
    cudaCheckLaunch();
}

// ---- head_backward -------------------------------------------------------------------------

// grid (ceil(V / (4 * BACKWARD_THREADS)), min(N, 65535)), block BACKWARD_THREADS: each thread
// writes 4 consecutive logits' gradients of a row (rows beyond gridDim.y loop).
template <bool VEC, bool ENT>
__global__ void __launch_bounds__(BACKWARD_THREADS)
    head_backward_kernel(bf16 *dlogits, const float *logits, const float *lse, const float *entropy,
                         const int *targets, const float *dlogprob, const float *dentropy, int N,
                         int V) {
    const int i0 = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= V) return;
    for (int row = blockIdx.y; row < N; row += gridDim.y) {
        const float *z = logits + (size_t)row * V;
        bf16 *dz = dlogits + (size_t)row * V;
        const int tg = targets[row];
        const float l = lse[row], dlp = tg >= 0 && dlogprob ? dlogprob[row] : 0.0f;
        const float de = ENT ? dentropy[row] : 0.0f, H = ENT ? entropy[row] : 0.0f;
        // the CPU's arithmetic, rounded to bf16 at the end
        auto grad = [&](float x, int i) {
            const float lp = x - l, p = expf(lp);
            float g = -dlp * p;
            if (ENT) g -= de * (p * (lp + H));
            if (i == tg) g += dlp;
            return g;
        };
        if (VEC) {
            const float4 v = *(const float4 *)(z + i0);
            __nv_bfloat162 *d2 = (__nv_bfloat162 *)(dz + i0);
            d2[0] = __floats2bfloat162_rn(grad(v.x, i0), grad(v.y, i0 + 1));
            d2[1] = __floats2bfloat162_rn(grad(v.z, i0 + 2), grad(v.w, i0 + 3));
        } else {
            for (int i = i0; i < i0 + 4 && i < V; i++) dz[i] = f2bf(grad(z[i], i));
        }
    }
}

template <bool VEC>
static void launch_head_backward(bf16 *dlogits, const float *logits, const float *lse,
                                 const float *entropy, const int *targets, const float *dlogprob,
                                 const float *dentropy, int N, int V, cudaStream_t stream) {
    const dim3 grid(ceil_div(V, 4 * BACKWARD_THREADS), N < 65535 ? N : 65535);
    if (dentropy) LAUNCH(grid, BACKWARD_THREADS, 0, stream, head_backward_kernel<VEC, true>)
    (dlogits, logits, lse, entropy, targets, dlogprob, dentropy, N, V);
    else LAUNCH(grid, BACKWARD_THREADS, 0, stream, head_backward_kernel<VEC, false>)(
        dlogits, logits, lse, entropy, targets, dlogprob, dentropy, N, V);
    cudaCheckLaunch();
}

void head_backward(bf16 *dlogits, const float *logits, const float *lse, const float *entropy,
                   const int *targets, const float *dlogprob, const float *dentropy, int N, int V,
                   cudaStream_t stream) {
    if (N <= 0 || V <= 0) return;
    if ((uintptr_t)logits % 16 == 0 && (uintptr_t)dlogits % 8 == 0 && V % 4 == 0)
        launch_head_backward<true>(dlogits, logits, lse, entropy, targets, dlogprob, dentropy, N, V,
                                   stream);
    else
        launch_head_backward<false>(dlogits, logits, lse, entropy, targets, dlogprob, dentropy, N,
                                    V, stream);
}
