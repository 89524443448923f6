// Attention kernels (attention.cuh): flash-style training forward and backward over a packed
// batch (the KV-cache decode step is attention_decode.cu).
//
// Training kernels cut the packed rows [0, N) into tiles of 64 rows, ignoring sequence ends: a
// tile that holds the end of one sequence and the start of the next reads the keys of both (a
// contiguous range of the packed rows) and masks by each row's sequence start, found by a binary
// search of offsets. So the launch needs only N and B, no list of work items, and a batch of
// many short prompts wastes no blocks.
//
// Tensor-core path (D a multiple of 16, D <= 128): a block of 4 warps owns 64 rows (16 per
// warp). QK^T and PV (and the backward's products) are wmma 16x16x16 bf16 tiles with fp32
// accumulators. The masking and the softmax never touch fragment elements by position (the
// layout of a fragment is the hardware's business): score tiles are stored to shared memory,
// worked on there, and the probabilities reloaded as bf16 A tiles. The running output of the
// forward lives in shared memory too (fp32), so each key tile can rescale its rows by the
// online-softmax correction before the PV product is accumulated onto it.
//
// The backward is deterministic and WRITES its outputs: pass 1 parks Di = rowsum(dout * out)
// in dq; pass 2 gives dk, dv by blocks of 64 keys, looping over the query heads of the kv head
// and the query tiles that see the keys; pass 3 gives dq by blocks of 64 query rows. Both
// passes recompute the probabilities from lse (7 tile products instead of the 5 of a backward
// that adds dq with atomics, but no atomics and no scratch).
//
// Scores are kept in base 2: s2 = (q . k) * scale * log2(e), so exp2f gives the softmax.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "model/cuda/attention.cuh"
#include "model/cuda/cuda_mma.cuh"

extern "C" {
#include "base/common.h"
}

#define ATT_BQ      64  // query rows per tile
#define ATT_BK      64  // keys per tile
#define ATT_WARPS   4   // warps per 64-row tile (16 rows each)
#define ATT_THREADS 128 // ATT_WARPS * 32
#define ATT_MAXD    256 // largest head_dim (the plain kernels: 8 dimensions per lane)

static const float LOG2E = 1.4426950408889634f;
static const float LN2 = 0.6931471805599453f;

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBT; // transposed
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Calls f(std::integral_constant<int, D>()) when D is a head size the tensor-core kernels are
// instantiated for (16, 32, ..., 128) and returns true; false for any other D (plain kernels).
template <class F> static bool with_mma_head_dim(int D, const F &f) {
    switch (D) {
    case 16:
        f(std::integral_constant<int, 16>());
        return true;
    case 32:
        f(std::integral_constant<int, 32>());
        return true;
    case 48:
        f(std::integral_constant<int, 48>());
        return true;
    case 64:
        f(std::integral_constant<int, 64>());
        return true;
    case 80:
        f(std::integral_constant<int, 80>());
        return true;
    case 96:
        f(std::integral_constant<int, 96>());
        return true;
    case 112:
        f(std::integral_constant<int, 112>());
        return true;
    case 128:
        f(std::integral_constant<int, 128>());
        return true;
    default:
        return false;
    }
}

// One warp: dst [16, 16] (fp32, row stride lds) = a [16, D] b [16, D]^T, a and b bf16 rows of
// stride ldb in shared memory. The scores S = Q K^T and their gradients dP = dout V^T of the
// backward, in either orientation.
template <int D>
__device__ __forceinline__ void tile_abt(float *dst, int lds, const bf16 *a, const bf16 *b,
                                         int ldb) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        FragA af;
        FragBT bf;
        wmma::load_matrix_sync(af, a + 16 * kk, ldb);
        wmma::load_matrix_sync(bf, b + 16 * kk, ldb);
        wmma::mma_sync(acc, af, bf, acc);
    }
    wmma::store_matrix_sync(dst, acc, lds, wmma::mem_row_major);
}

// ---- helpers ---------------------------------------------------------------------------------

// The sequence [*s0, *s1) holding row i (0 <= i < offsets[B]): the largest b with
// offsets[b] <= i, so empty sequences are skipped.
__device__ __forceinline__ void seq_bounds(const int *offsets, int B, int i, int *s0, int *s1) {
    int lo = 0, hi = B - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    *s0 = offsets[lo];
    *s1 = offsets[lo + 1];
}
__device__ __forceinline__ int seq_start(const int *offsets, int B, int i) {
    int s0, s1;
    seq_bounds(offsets, B, i, &s0, &s1);
    return s0;
}

// Row i (its sequence starting at st) sees key j.
__device__ __forceinline__ bool att_sees(int i, int j, int st, int window) {
    return j >= st && j <= i && (window <= 0 || j > i - window);
}

// 1 when no row in [r0, r1] (whose sequences start at st0 or later) sees any key in [c0, c1]:
// the 16x16 products of such a block are skipped (its probabilities are zero anyway).
__device__ __forceinline__ bool att_block_masked(int r0, int r1, int st0, int c0, int c1,
                                                 int window) {
    return r0 > r1 || c0 > c1 || c0 > r1 || c1 < st0 || (window > 0 && c1 <= r0 - window);
}

// dst[r][0 .. D) (row stride ld) = src[r * lds + 0 .. D) for r < n, zeros for n <= r < rows, by
// threads t = 0 .. nt-1. Zeros matter: a masked probability times a garbage (NaN) value is NaN.
template <int D>
__device__ __forceinline__ void load_tile(bf16 *dst, int ld, const bf16 *src, size_t lds, int n,
                                          int rows, int t, int nt) {
    constexpr int C = D / 8; // 16-byte chunks per row
    for (int idx = t; idx < rows * C; idx += nt) {
        const int r = idx / C, c = (idx % C) * 8;
        if (r < n)
            copy16(dst + r * ld + c, src + (size_t)r * lds + c);
        else
            zero16(dst + r * ld + c);
    }
}

// ---- forward, tensor cores -------------------------------------------------------------------

// Dynamic shared memory of att_fwd_mma, byte offsets (every region 32-byte aligned, as wmma
// pointers must be). Row strides are padded by 16 bytes against bank conflicts.
template <int D> struct FwdSmem {
    static const int LDB = D + 8;                 // bf16 [., D] tiles
    static const int LDS = ATT_BK + 4;            // fp32 scores [16, BK] per warp
    static const int LDP = ATT_BK + 8;            // bf16 probabilities [16, BK] per warp
    static const int LDO = D + 4;                 // fp32 output rows
    static const size_t Q = 0;                    // bf16 [BQ, LDB]
    static const size_t K = Q + 2 * ATT_BQ * LDB; // bf16 [BK, LDB]
    static const size_t V = K + 2 * ATT_BK * LDB; // bf16 [BK, LDB]
    static const size_t S = V + 2 * ATT_BK * LDB; // fp32 [BQ, LDS]
    static const size_t P = S + 4 * ATT_BQ * LDS; // bf16 [BQ, LDP]
    static const size_t O = P + 2 * ATT_BQ * LDP; // fp32 [BQ, LDO]
    static const size_t M = O + 4 * ATT_BQ * LDO; // fp32 [3, BQ]: max, sum, alpha
    static const size_t BYTES = M + 4 * 3 * ATT_BQ;
};

// Grid (Hq, ceil(N / BQ)), ATT_THREADS threads: block (h, t) gives rows [64t, 64t+64) of head h.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS)
    att_fwd_mma(bf16 *out, float *lse, const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                const bf16 *__restrict__ v, const int *offsets, int B, int N, int Hq, int Hkv,
                int window, float sl2) {
    typedef FwdSmem<D> L;
    DYNAMIC_SHARED(float4, att_smem);
    char *sm = (char *)att_smem;
    bf16 *qs = (bf16 *)(sm + L::Q), *ks = (bf16 *)(sm + L::K), *vs = (bf16 *)(sm + L::V);
    float *ss = (float *)(sm + L::S), *os = (float *)(sm + L::O), *ms = (float *)(sm + L::M);
    bf16 *ps = (bf16 *)(sm + L::P);
    __shared__ int rstart[ATT_BQ]; // sequence start of each row

    const int h = blockIdx.x, q0 = blockIdx.y * ATT_BQ, nq = imin(ATT_BQ, N - q0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int Qd = Hq * D, KVd = Hkv * D, g = h / (Hq / Hkv);

    for (int r = threadIdx.x; r < ATT_BQ; r += blockDim.x)
        rstart[r] = r < nq ? seq_start(offsets, B, q0 + r) : N;
    load_tile<D>(qs, L::LDB, q + (size_t)q0 * Qd + (size_t)h * D, Qd, nq, ATT_BQ, threadIdx.x,
                 blockDim.x);
    for (int e = threadIdx.x; e < ATT_BQ * L::LDO; e += blockDim.x) os[e] = 0.0f;
    for (int r = threadIdx.x; r < ATT_BQ; r += blockDim.x) {
        ms[r] = -INFINITY;         // running max (base 2)
        ms[ATT_BQ + r] = 0.0f;     // running sum
        ms[2 * ATT_BQ + r] = 0.0f; // correction of the current tile
    }
    __syncthreads();

    // this warp's rows [rw0, rw1] (none when rw0 > rw1) and its buffers
    const int rw0 = q0 + 16 * warp, rw1 = imin(rw0 + 15, q0 + nq - 1);
    const bool active = rw0 <= rw1;
    const int wst = active ? rstart[16 * warp] : N; // smallest sequence start of its rows
    float *S = ss + 16 * warp * L::LDS, *O = os + 16 * warp * L::LDO;
    bf16 *P = ps + 16 * warp * L::LDP;
    float *wmax = ms + 16 * warp, *wsum = ms + ATT_BQ + 16 * warp,
          *walpha = ms + 2 * ATT_BQ + 16 * warp;

    FragA qf[D / 16];
    if (active) {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            wmma::load_matrix_sync(qf[kk], qs + 16 * warp * L::LDB + 16 * kk, L::LDB);
    }

    // keys of the tile: from the first key row q0 sees to the last row (later rows start later)
    const int klo = imax(rstart[0], window > 0 ? q0 - window + 1 : 0), khi = q0 + nq;
    for (int kt = klo; kt < khi; kt += ATT_BK) {
        const int nk = imin(ATT_BK, khi - kt);
        __syncthreads(); // every warp is done with the previous tile
        load_tile<D>(ks, L::LDB, k + (size_t)kt * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                     blockDim.x);
        load_tile<D>(vs, L::LDB, v + (size_t)kt * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                     blockDim.x);
        __syncthreads();
        if (!active) continue; // (warp-uniform)

            // S [16, BK] = Q_w K^T, skipping blocks this warp's rows cannot see
#pragma unroll
        for (int c = 0; c < ATT_BK / 16; c++) {
            const int c0 = kt + 16 * c, c1 = imin(c0 + 15, kt + nk - 1);
            if (att_block_masked(rw0, rw1, wst, c0, c1, window)) continue;
            FragC acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                FragBT kf;
                wmma::load_matrix_sync(kf, ks + 16 * c * L::LDB + 16 * kk, L::LDB);
                wmma::mma_sync(acc, qf[kk], kf, acc);
            }
            wmma::store_matrix_sync(S + 16 * c, acc, L::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax: lanes 2r and 2r+1 share row r, each every other column
        {
            const int r = lane / 2, half = lane % 2, i = rw0 + r, st = rstart[16 * warp + r];
            const bool row_ok = i <= rw1;
            float mx = -INFINITY;
            for (int cc = 0; cc < ATT_BK / 2; cc++) {
                const int c = 2 * cc + half; // interleaved: fewer bank conflicts
                if (row_ok && c < nk && att_sees(i, kt + c, st, window))
                    mx = fmaxf(mx, S[r * L::LDS + c] * sl2);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float m_old = wmax[r], m_new = fmaxf(m_old, mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; // no key seen yet: no NaN
            float sum = 0.0f;
            for (int cc = 0; cc < ATT_BK / 2; cc++) {
                const int c = 2 * cc + half;
                float p = 0.0f;
                if (row_ok && c < nk && att_sees(i, kt + c, st, window))
                    p = exp2f(S[r * L::LDS + c] * sl2 - m_use);
                P[r * L::LDP + c] = f2bf(p);
                sum += p; // fp32, as lse must be for the backward
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float alpha = exp2f(m_old - m_use);
            __syncwarp(); // both lanes of the row have read wmax[r]
            if (half == 0) {
                wmax[r] = m_new;
                wsum[r] = wsum[r] * alpha + sum;
                walpha[r] = alpha;
            }
        }
        __syncwarp();
        for (int e = lane; e < 16 * D; e += 32) O[(e / D) * L::LDO + e % D] *= walpha[e / D];
        __syncwarp();

        // O_w [16, D] += P_w V
        FragA pf[ATT_BK / 16];
#pragma unroll
        for (int kk = 0; kk < ATT_BK / 16; kk++)
            wmma::load_matrix_sync(pf[kk], P + 16 * kk, L::LDP);
#pragma unroll
        for (int dc = 0; dc < D / 16; dc++) {
            FragC acc;
            wmma::load_matrix_sync(acc, O + 16 * dc, L::LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < ATT_BK / 16; kk++) {
                const int c0 = kt + 16 * kk, c1 = imin(c0 + 15, kt + nk - 1);
                if (att_block_masked(rw0, rw1, wst, c0, c1, window)) continue;
                FragB vf;
                wmma::load_matrix_sync(vf, vs + 16 * kk * L::LDB + 16 * dc, L::LDB);
                wmma::mma_sync(acc, pf[kk], vf, acc);
            }
            wmma::store_matrix_sync(O + 16 * dc, acc, L::LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }

    if (!active) return;
    for (int e = lane; e < 16 * D; e += 32) {
        const int r = e / D, d = e % D, i = rw0 + r;
        if (i <= rw1) out[(size_t)i * Qd + (size_t)h * D + d] = f2bf(O[r * L::LDO + d] / wsum[r]);
    }
    if (lane < 16 && rw0 + lane <= rw1)
        lse[(size_t)(rw0 + lane) * Hq + h] = (wmax[lane] + log2f(wsum[lane])) * LN2;
}

// ---- forward, any head_dim -------------------------------------------------------------------

// One warp per (row, head), lanes over the dimensions (d = lane + 32 t): the reference-like
// kernel for head dims the tensor-core path does not take (the tiny test configs' D = 4).
// Grid ceil(N * Hq / 4), ATT_THREADS threads.
__global__ void __launch_bounds__(ATT_THREADS)
    att_fwd_simple(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                   const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                   float sl2) {
    const int w = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * Hq) return; // whole warps
    const int i = w / Hq, h = w % Hq, g = h / (Hq / Hkv), Qd = Hq * D, KVd = Hkv * D;
    const int st = seq_start(offsets, B, i), j0 = window > 0 ? imax(st, i - window + 1) : st;
    const bf16 *qi = q + (size_t)i * Qd + (size_t)h * D;
    float qv[ATT_MAXD / 32], o[ATT_MAXD / 32];
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++) {
        const int d = lane + 32 * t;
        qv[t] = d < D ? bf2f(qi[d]) * sl2 : 0.0f;
        o[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = j0; j <= i; j++) {
        const bf16 *kj = k + (size_t)j * KVd + (size_t)g * D, *vj = v + (size_t)j * KVd + g * D;
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAXD / 32; t++)
            if (lane + 32 * t < D) s += qv[t] * bf2f(kj[lane + 32 * t]);
        s = warp_sum(s);
        const float m_new = fmaxf(m, s), alpha = exp2f(m - m_new);
        const float p = exp2f(s - m_new);
        l = l * alpha + p;
#pragma unroll
        for (int t = 0; t < ATT_MAXD / 32; t++)
            if (lane + 32 * t < D) o[t] = o[t] * alpha + p * bf2f(vj[lane + 32 * t]);
        m = m_new;
    }
    bf16 *oi = out + (size_t)i * Qd + (size_t)h * D;
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++)
        if (lane + 32 * t < D) oi[lane + 32 * t] = f2bf(o[t] / l);
    if (lane == 0) lse[(size_t)i * Hq + h] = (m + log2f(l)) * LN2;
}

// ---- backward: Di ----------------------------------------------------------------------------

// dq[i, h*D] = Di(i, h) = dout_i . out_i for head h: one warp per (row, head). The dq pass reads
// its rows' Di back before it overwrites them; the dk/dv pass reads them in between.
__global__ void __launch_bounds__(ATT_THREADS)
    att_bwd_di(float *dq, const bf16 *dout, const bf16 *out, int N, int Hq, int D) {
    const int w = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * Hq) return;
    const size_t o = (size_t)w * D; // = i * Hq*D + h*D
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += bf2f(dout[o + d]) * bf2f(out[o + d]);
    s = warp_sum(s);
    if (lane == 0) dq[o] = s;
}

// ---- backward, tensor cores: dk and dv -------------------------------------------------------

// Shared memory of att_bwd_dkdv_mma with G groups of 4 warps (byte offsets). The groups share
// the key tile and take the query heads of the kv head in turn (head g*rep + G*t + group).
template <int D, int G> struct DkvSmem {
    static const int LDB = D + 8;                       // bf16 [., D] tiles
    static const int LDS = ATT_BQ + 4;                  // fp32 [16 keys, BQ rows] per warp
    static const int LDP = ATT_BQ + 8;                  // bf16 [16 keys, BQ rows] per warp
    static const size_t K = 0;                          // bf16 [BK, LDB]
    static const size_t V = K + 2 * ATT_BK * LDB;       // bf16 [BK, LDB]
    static const size_t GRP = V + 2 * ATT_BK * LDB;     // per group:
    static const size_t GQ = 0, GDO = 2 * ATT_BQ * LDB; //   bf16 q, dout tiles
    static const size_t GL = GDO + 2 * ATT_BQ * LDB;    //   fp32 lse (base 2)
    static const size_t GD = GL + 4 * ATT_BQ;           //   fp32 Di
    static const size_t GRP_BYTES = GD + 4 * ATT_BQ;
    static const size_t W = GRP + G * GRP_BYTES;                   // per warp fp32 [2, 16, LDS]
    static const size_t WP = W + (size_t)4 * G * 4 * 2 * 16 * LDS; // per warp bf16 [2, 16, LDP]
    static const size_t BYTES = WP + (size_t)4 * G * 2 * 2 * 16 * LDP;
};

// The end of att_bwd_dkdv_mma for one of dk, dv: the groups' sums added in group order, staged
// in the warps' score buffers (16 * (D + 4) <= 2 * 16 * lds floats each, at wbuf) and written
// for the warp's keys [kw0, kw1]. Every thread of the block calls it (block barriers).
template <int D, int G>
__device__ __forceinline__ void dkdv_store(float *dst, FragC (&acc)[D / 16], char *wbuf, int lds,
                                           int kw0, int kw1, int KVd, int g) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = warp / ATT_WARPS,
              kw = warp % ATT_WARPS, LDO = D + 4;
    float *mine = (float *)wbuf + (size_t)warp * 2 * 16 * lds;
    __syncthreads(); // the score buffers are free (and a previous staging is read)
    if (grp > 0) {
#pragma unroll
        for (int dc = 0; dc < D / 16; dc++)
            wmma::store_matrix_sync(mine + 16 * dc, acc[dc], LDO, wmma::mem_row_major);
    }
    __syncthreads();
    if (grp != 0) return; // (no barrier follows)
    for (int o = 1; o < G; o++) {
        const float *other = (float *)wbuf + (size_t)(o * ATT_WARPS + kw) * 2 * 16 * lds;
#pragma unroll
        for (int dc = 0; dc < D / 16; dc++) {
            FragC t;
            wmma::load_matrix_sync(t, other + 16 * dc, LDO, wmma::mem_row_major);
            for (int x = 0; x < t.num_elements; x++) acc[dc].x[x] += t.x[x];
        }
    }
#pragma unroll
    for (int dc = 0; dc < D / 16; dc++)
        wmma::store_matrix_sync(mine + 16 * dc, acc[dc], LDO, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 16 * D; e += 32) {
        const int r = e / D, d = e % D;
        if (kw0 + r <= kw1) dst[(size_t)(kw0 + r) * KVd + (size_t)g * D + d] = mine[r * LDO + d];
    }
}

// Grid (Hkv, ceil(N / BK)), 128 G threads: block (g, t) gives dk, dv of keys [64t, 64t+64) of
// kv head g. Warp (group, kw) owns keys 16 kw .. 16 kw + 15 of the tile; at the end the groups'
// sums are added in group order (deterministic).
template <int D, int G>
__global__ void __launch_bounds__(ATT_THREADS *G)
    att_bwd_dkdv_mma(float *dk, float *dv, const float *dq_di, const bf16 *__restrict__ dout,
                     const float *__restrict__ lse, const bf16 *__restrict__ q,
                     const bf16 *__restrict__ k, const bf16 *__restrict__ v, const int *offsets,
                     int B, int N, int Hq, int Hkv, int window, float sl2, float scale) {
    typedef DkvSmem<D, G> L;
    DYNAMIC_SHARED(float4, att_smem);
    char *sm = (char *)att_smem;
    __shared__ int rstart[ATT_BQ];

    const int g = blockIdx.x, j0 = blockIdx.y * ATT_BK, nk = imin(ATT_BK, N - j0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = warp / ATT_WARPS,
              kw = warp % ATT_WARPS, gt = threadIdx.x % ATT_THREADS;
    const int Qd = Hq * D, KVd = Hkv * D, rep = Hq / Hkv;
    bf16 *ks = (bf16 *)(sm + L::K), *vs = (bf16 *)(sm + L::V);
    char *gm = sm + L::GRP + grp * L::GRP_BYTES;
    bf16 *qs = (bf16 *)(gm + L::GQ), *dos = (bf16 *)(gm + L::GDO);
    float *lse2 = (float *)(gm + L::GL), *di = (float *)(gm + L::GD);
    float *St = (float *)(sm + L::W) + (size_t)warp * 2 * 16 * L::LDS, *dPt = St + 16 * L::LDS;
    bf16 *Pt = (bf16 *)(sm + L::WP) + (size_t)warp * 2 * 16 * L::LDP, *dSt = Pt + 16 * L::LDP;

    load_tile<D>(ks, L::LDB, k + (size_t)j0 * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                 blockDim.x);
    load_tile<D>(vs, L::LDB, v + (size_t)j0 * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                 blockDim.x);
    // this warp's keys [kw0, kw1]; the rows that see a key of the tile: [j0, iend)
    const int kw0 = j0 + 16 * kw, kw1 = imin(kw0 + 15, j0 + nk - 1);
    const bool kactive = kw0 <= kw1;
    int iend, s0;
    seq_bounds(offsets, B, j0 + nk - 1, &s0, &iend);
    if (window > 0) iend = imin(iend, j0 + nk - 1 + window);

    FragC dka[D / 16], dva[D / 16];
#pragma unroll
    for (int dc = 0; dc < D / 16; dc++) {
        wmma::fill_fragment(dka[dc], 0.0f);
        wmma::fill_fragment(dva[dc], 0.0f);
    }

    for (int hb = 0; hb < rep; hb += G) {
        const int hr = hb + grp, h = g * rep + hr; // this group's head (none when hr >= rep)
        const bool hactive = hr < rep;
        for (int qi = j0; qi < iend; qi += ATT_BQ) {
            const int nq = imin(ATT_BQ, iend - qi);
            __syncthreads(); // every warp is done with the previous tiles
            if (threadIdx.x < ATT_BQ) {
                const int r = threadIdx.x;
                rstart[r] = r < nq ? seq_start(offsets, B, qi + r) : N;
            }
            if (hactive) {
                load_tile<D>(qs, L::LDB, q + (size_t)qi * Qd + (size_t)h * D, Qd, nq, ATT_BQ, gt,
                             ATT_THREADS);
                load_tile<D>(dos, L::LDB, dout + (size_t)qi * Qd + (size_t)h * D, Qd, nq, ATT_BQ,
                             gt, ATT_THREADS);
                if (gt < ATT_BQ) {
                    const size_t i = (size_t)qi + gt;
                    lse2[gt] = gt < nq ? lse[i * Hq + h] * LOG2E : 0.0f;
                    di[gt] = gt < nq ? dq_di[i * Qd + (size_t)h * D] : 0.0f;
                }
            }
            __syncthreads();
            if (!hactive || !kactive) continue; // (warp-uniform)

                // S^T [16 keys, BQ] = K_w Q^T and dP^T = V_w dout^T
#pragma unroll
            for (int c = 0; c < ATT_BQ / 16; c++) {
                const int r0 = qi + 16 * c, r1 = imin(r0 + 15, qi + nq - 1);
                if (att_block_masked(r0, r1, r0 <= r1 ? rstart[16 * c] : N, kw0, kw1, window))
                    continue;
                tile_abt<D>(St + 16 * c, L::LDS, ks + 16 * kw * L::LDB, qs + 16 * c * L::LDB,
                            L::LDB);
                tile_abt<D>(dPt + 16 * c, L::LDS, vs + 16 * kw * L::LDB, dos + 16 * c * L::LDB,
                            L::LDB);
            }
            __syncwarp();
            // P^T = exp2(S^T sl2 - lse2), dS^T = scale P^T (dP^T - Di), zero where masked
            for (int e = lane; e < 16 * ATT_BQ; e += 32) {
                const int r = e / ATT_BQ, c = e % ATT_BQ, j = kw0 + r, i = qi + c;
                float p = 0.0f, ds = 0.0f;
                if (j <= kw1 && c < nq && att_sees(i, j, rstart[c], window)) {
                    p = exp2f(St[r * L::LDS + c] * sl2 - lse2[c]);
                    ds = scale * p * (dPt[r * L::LDS + c] - di[c]);
                }
                Pt[r * L::LDP + c] = f2bf(p);
                dSt[r * L::LDP + c] = f2bf(ds);
            }
            __syncwarp();
            // dV_w += P^T dout, dK_w += dS^T Q
#pragma unroll
            for (int kk = 0; kk < ATT_BQ / 16; kk++) {
                const int r0 = qi + 16 * kk, r1 = imin(r0 + 15, qi + nq - 1);
                if (att_block_masked(r0, r1, r0 <= r1 ? rstart[16 * kk] : N, kw0, kw1, window))
                    continue;
                FragA pa, sa;
                wmma::load_matrix_sync(pa, Pt + 16 * kk, L::LDP);
                wmma::load_matrix_sync(sa, dSt + 16 * kk, L::LDP);
#pragma unroll
                for (int dc = 0; dc < D / 16; dc++) {
                    FragB bf;
                    wmma::load_matrix_sync(bf, dos + 16 * kk * L::LDB + 16 * dc, L::LDB);
                    wmma::mma_sync(dva[dc], pa, bf, dva[dc]);
                    wmma::load_matrix_sync(bf, qs + 16 * kk * L::LDB + 16 * dc, L::LDB);
                    wmma::mma_sync(dka[dc], sa, bf, dka[dc]);
                }
            }
        }
    }

    dkdv_store<D, G>(dk, dka, sm + L::W, L::LDS, kw0, kw1, KVd, g);
    dkdv_store<D, G>(dv, dva, sm + L::W, L::LDS, kw0, kw1, KVd, g);
}

// ---- backward, tensor cores: dq --------------------------------------------------------------

template <int D> struct DqSmem {
    static const int LDB = D + 8;                  // bf16 [., D] tiles
    static const int LDS = ATT_BK + 4;             // fp32 [16 rows, BK keys] per warp
    static const int LDP = ATT_BK + 8;             // bf16 [16 rows, BK keys] per warp
    static const size_t Q = 0;                     // bf16 [BQ, LDB]
    static const size_t DO = Q + 2 * ATT_BQ * LDB; // bf16 [BQ, LDB]
    static const size_t K = DO + 2 * ATT_BQ * LDB; // bf16 [BK, LDB]
    static const size_t V = K + 2 * ATT_BK * LDB;  // bf16 [BK, LDB]
    static const size_t W = V + 2 * ATT_BK * LDB;  // fp32 [4, 2, 16, LDS]
    static const size_t WP = W + (size_t)4 * ATT_WARPS * 2 * 16 * LDS; // bf16 [4, 16, LDP]
    static const size_t R = WP + (size_t)2 * ATT_WARPS * 16 * LDP;     // fp32 [2, BQ]
    static const size_t BYTES = R + 4 * 2 * ATT_BQ;
};

// Grid (Hq, ceil(N / BQ)), ATT_THREADS threads: block (h, t) WRITES dq of rows [64t, 64t+64)
// of head h, after reading their Di from dq.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS)
    att_bwd_dq_mma(float *dq, const bf16 *__restrict__ dout, const float *__restrict__ lse,
                   const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                   const bf16 *__restrict__ v, const int *offsets, int B, int N, int Hq, int Hkv,
                   int window, float sl2, float scale) {
    typedef DqSmem<D> L;
    DYNAMIC_SHARED(float4, att_smem);
    char *sm = (char *)att_smem;
    bf16 *qs = (bf16 *)(sm + L::Q), *dos = (bf16 *)(sm + L::DO), *ks = (bf16 *)(sm + L::K),
         *vs = (bf16 *)(sm + L::V);
    float *lse2 = (float *)(sm + L::R), *di = lse2 + ATT_BQ;
    __shared__ int rstart[ATT_BQ];

    const int h = blockIdx.x, q0 = blockIdx.y * ATT_BQ, nq = imin(ATT_BQ, N - q0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int Qd = Hq * D, KVd = Hkv * D, g = h / (Hq / Hkv);
    float *S = (float *)(sm + L::W) + (size_t)warp * 2 * 16 * L::LDS, *dP = S + 16 * L::LDS;
    bf16 *dS = (bf16 *)(sm + L::WP) + (size_t)warp * 16 * L::LDP;

    for (int r = threadIdx.x; r < ATT_BQ; r += blockDim.x) {
        const size_t i = (size_t)q0 + r;
        rstart[r] = r < nq ? seq_start(offsets, B, q0 + r) : N;
        lse2[r] = r < nq ? lse[i * Hq + h] * LOG2E : 0.0f;
        di[r] = r < nq ? dq[i * Qd + (size_t)h * D] : 0.0f;
    }
    load_tile<D>(qs, L::LDB, q + (size_t)q0 * Qd + (size_t)h * D, Qd, nq, ATT_BQ, threadIdx.x,
                 blockDim.x);
    load_tile<D>(dos, L::LDB, dout + (size_t)q0 * Qd + (size_t)h * D, Qd, nq, ATT_BQ, threadIdx.x,
                 blockDim.x);
    __syncthreads();

    const int rw0 = q0 + 16 * warp, rw1 = imin(rw0 + 15, q0 + nq - 1);
    const bool active = rw0 <= rw1;
    const int wst = active ? rstart[16 * warp] : N;
    FragC dqa[D / 16];
#pragma unroll
    for (int dc = 0; dc < D / 16; dc++) wmma::fill_fragment(dqa[dc], 0.0f);

    const int klo = imax(rstart[0], window > 0 ? q0 - window + 1 : 0), khi = q0 + nq;
    for (int kt = klo; kt < khi; kt += ATT_BK) {
        const int nk = imin(ATT_BK, khi - kt);
        __syncthreads();
        load_tile<D>(ks, L::LDB, k + (size_t)kt * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                     blockDim.x);
        load_tile<D>(vs, L::LDB, v + (size_t)kt * KVd + (size_t)g * D, KVd, nk, ATT_BK, threadIdx.x,
                     blockDim.x);
        __syncthreads();
        if (!active) continue;

            // S = Q_w K^T, dP = dout_w V^T
#pragma unroll
        for (int c = 0; c < ATT_BK / 16; c++) {
            const int c0 = kt + 16 * c, c1 = imin(c0 + 15, kt + nk - 1);
            if (att_block_masked(rw0, rw1, wst, c0, c1, window)) continue;
            tile_abt<D>(S + 16 * c, L::LDS, qs + 16 * warp * L::LDB, ks + 16 * c * L::LDB, L::LDB);
            tile_abt<D>(dP + 16 * c, L::LDS, dos + 16 * warp * L::LDB, vs + 16 * c * L::LDB,
                        L::LDB);
        }
        __syncwarp();
        for (int e = lane; e < 16 * ATT_BK; e += 32) {
            const int r = e / ATT_BK, c = e % ATT_BK, i = rw0 + r, j = kt + c;
            float ds = 0.0f;
            if (i <= rw1 && c < nk && att_sees(i, j, rstart[16 * warp + r], window)) {
                const float p = exp2f(S[r * L::LDS + c] * sl2 - lse2[16 * warp + r]);
                ds = scale * p * (dP[r * L::LDS + c] - di[16 * warp + r]);
            }
            dS[r * L::LDP + c] = f2bf(ds);
        }
        __syncwarp();
        // dQ_w += dS K
#pragma unroll
        for (int kk = 0; kk < ATT_BK / 16; kk++) {
            const int c0 = kt + 16 * kk, c1 = imin(c0 + 15, kt + nk - 1);
            if (att_block_masked(rw0, rw1, wst, c0, c1, window)) continue;
            FragA sa;
            wmma::load_matrix_sync(sa, dS + 16 * kk, L::LDP);
#pragma unroll
            for (int dc = 0; dc < D / 16; dc++) {
                FragB bf;
                wmma::load_matrix_sync(bf, ks + 16 * kk * L::LDB + 16 * dc, L::LDB);
                wmma::mma_sync(dqa[dc], sa, bf, dqa[dc]);
            }
        }
    }

    if (!active) return;
    // staged in this warp's own score buffers (16 * (D + 4) <= 2 * 16 * LDS floats)
    const int LDO = D + 4;
#pragma unroll
    for (int dc = 0; dc < D / 16; dc++)
        wmma::store_matrix_sync(S + 16 * dc, dqa[dc], LDO, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 16 * D; e += 32) {
        const int r = e / D, d = e % D, i = rw0 + r;
        if (i <= rw1) dq[(size_t)i * Qd + (size_t)h * D + d] = S[r * LDO + d];
    }
}

// ---- backward, any head_dim ------------------------------------------------------------------

// dk, dv of (key j, kv head g), one warp each, lanes over the dimensions: the rows i of j's
// sequence with j <= i < j + W, over the group's query heads in order. Grid ceil(N*Hkv / 4).
__global__ void __launch_bounds__(ATT_THREADS)
    att_bwd_dkdv_simple(float *dk, float *dv, const float *dq_di, const bf16 *dout,
                        const float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                        const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                        float sl2, float scale) {
    const int w = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * Hkv) return;
    const int j = w / Hkv, g = w % Hkv, rep = Hq / Hkv, Qd = Hq * D, KVd = Hkv * D;
    int s0, iend;
    seq_bounds(offsets, B, j, &s0, &iend);
    if (window > 0) iend = imin(iend, j + window);
    float kv_[ATT_MAXD / 32], vv[ATT_MAXD / 32], dka[ATT_MAXD / 32], dva[ATT_MAXD / 32];
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++) {
        const int d = lane + 32 * t;
        kv_[t] = d < D ? bf2f(k[(size_t)j * KVd + (size_t)g * D + d]) : 0.0f;
        vv[t] = d < D ? bf2f(v[(size_t)j * KVd + (size_t)g * D + d]) : 0.0f;
        dka[t] = dva[t] = 0.0f;
    }
    for (int h = g * rep; h < (g + 1) * rep; h++) {
        for (int i = j; i < iend; i++) {
            const size_t o = (size_t)i * Qd + (size_t)h * D;
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int t = 0; t < ATT_MAXD / 32; t++)
                if (lane + 32 * t < D) {
                    s += bf2f(q[o + lane + 32 * t]) * kv_[t];
                    dp += bf2f(dout[o + lane + 32 * t]) * vv[t];
                }
            s = warp_sum(s);
            dp = warp_sum(dp);
            const float p = exp2f(s * sl2 - lse[(size_t)i * Hq + h] * LOG2E);
            const float ds = scale * p * (dp - dq_di[o]);
#pragma unroll
            for (int t = 0; t < ATT_MAXD / 32; t++)
                if (lane + 32 * t < D) {
                    dva[t] += p * bf2f(dout[o + lane + 32 * t]);
                    dka[t] += ds * bf2f(q[o + lane + 32 * t]);
                }
        }
    }
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++)
        if (lane + 32 * t < D) {
            dk[(size_t)j * KVd + (size_t)g * D + lane + 32 * t] = dka[t];
            dv[(size_t)j * KVd + (size_t)g * D + lane + 32 * t] = dva[t];
        }
}

// dq of (row i, head h), one warp each: keys first_key(i) .. i. Grid ceil(N*Hq / 4).
__global__ void __launch_bounds__(ATT_THREADS)
    att_bwd_dq_simple(float *dq, const bf16 *dout, const float *lse, const bf16 *q, const bf16 *k,
                      const bf16 *v, const int *offsets, int B, int N, int Hq, int Hkv, int D,
                      int window, float sl2, float scale) {
    const int w = blockIdx.x * ATT_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * Hq) return;
    const int i = w / Hq, h = w % Hq, g = h / (Hq / Hkv), Qd = Hq * D, KVd = Hkv * D;
    const int st = seq_start(offsets, B, i), j0 = window > 0 ? imax(st, i - window + 1) : st;
    const size_t o = (size_t)i * Qd + (size_t)h * D;
    const float l2 = lse[(size_t)i * Hq + h] * LOG2E, Di = dq[o];
    float qv[ATT_MAXD / 32], dov[ATT_MAXD / 32], acc[ATT_MAXD / 32];
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++) {
        const int d = lane + 32 * t;
        qv[t] = d < D ? bf2f(q[o + d]) : 0.0f;
        dov[t] = d < D ? bf2f(dout[o + d]) : 0.0f;
        acc[t] = 0.0f;
    }
    for (int j = j0; j <= i; j++) {
        const size_t ko = (size_t)j * KVd + (size_t)g * D;
        float s = 0.0f, dp = 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAXD / 32; t++)
            if (lane + 32 * t < D) {
                s += qv[t] * bf2f(k[ko + lane + 32 * t]);
                dp += dov[t] * bf2f(v[ko + lane + 32 * t]);
            }
        s = warp_sum(s);
        dp = warp_sum(dp);
        const float ds = scale * exp2f(s * sl2 - l2) * (dp - Di);
#pragma unroll
        for (int t = 0; t < ATT_MAXD / 32; t++)
            if (lane + 32 * t < D) acc[t] += ds * bf2f(k[ko + lane + 32 * t]);
    }
    __syncwarp(); // every lane has read Di before lane 0 overwrites it
#pragma unroll
    for (int t = 0; t < ATT_MAXD / 32; t++)
        if (lane + 32 * t < D) dq[o + lane + 32 * t] = acc[t];
}

// ---- training launchers ----------------------------------------------------------------------

static void att_check(const char *what, const void *const *ptrs, int nptrs, int N, int Hq, int Hkv,
                      int D, bool mma) {
    if (Hq <= 0 || Hkv <= 0 || Hq % Hkv != 0 || D <= 0 || D > ATT_MAXD)
        gemc_fatal("%s: unsupported heads %d/%d or head_dim %d", what, Hq, Hkv, D);
    if ((long)ceil_div(N, ATT_BQ) > 65535)
        gemc_fatal("%s: %d rows are more than one launch can take", what, N);
    for (int p = 0; mma && p < nptrs; p++)
        if ((uintptr_t)ptrs[p] % 16 != 0)
            gemc_fatal("%s: a tensor is not 16-byte aligned (the tensor-core path needs it)", what);
}

template <int D>
static void fwd_mma(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                    const int *offsets, int B, int N, int Hq, int Hkv, int window, float sl2,
                    cudaStream_t stream) {
    const size_t smem = FwdSmem<D>::BYTES;
    cudaCheck(cudaFuncSetAttribute(att_fwd_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    dim3 grid(Hq, ceil_div(N, ATT_BQ));
    LAUNCH(grid, ATT_THREADS, smem, stream, att_fwd_mma<D>)
    (out, lse, q, k, v, offsets, B, N, Hq, Hkv, window, sl2);
    cudaCheckLaunch();
}

void attention_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                       const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                       cudaStream_t stream) {
    if (N <= 0 || B <= 0) return;
    const bool mma = D % 16 == 0 && D <= 128;
    const void *ptrs[] = {out, q, k, v};
    att_check("attention_forward", ptrs, 4, N, Hq, Hkv, D, mma);
    const float sl2 = (float)(1.4426950408889634 / sqrt((double)D));
    const bool done = mma && with_mma_head_dim(D, [&](auto d) {
                          fwd_mma<decltype(d)::value>(out, lse, q, k, v, offsets, B, N, Hq, Hkv,
                                                      window, sl2, stream);
                      });
    if (!done) {
        LAUNCH(ceil_div((long)N * Hq, ATT_WARPS), ATT_THREADS, 0, stream, att_fwd_simple)
        (out, lse, q, k, v, offsets, B, N, Hq, Hkv, D, window, sl2);
        cudaCheckLaunch();
    }
}

template <int D, int G>
static void bwd_dkdv_mma(float *dk, float *dv, const float *dq, const bf16 *dout, const float *lse,
                         const bf16 *q, const bf16 *k, const bf16 *v, const int *offsets, int B,
                         int N, int Hq, int Hkv, int window, float sl2, float scale,
                         cudaStream_t stream) {
    const size_t smem = DkvSmem<D, G>::BYTES;
    cudaCheck(cudaFuncSetAttribute(att_bwd_dkdv_mma<D, G>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(Hkv, ceil_div(N, ATT_BK));
    LAUNCH(grid, ATT_THREADS * G, smem, stream, att_bwd_dkdv_mma<D, G>)
    (dk, dv, dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, window, sl2, scale);
    cudaCheckLaunch();
}

template <int D>
static void bwd_mma(float *dq, float *dk, float *dv, const bf16 *dout, const float *lse,
                    const bf16 *q, const bf16 *k, const bf16 *v, const int *offsets, int B, int N,
                    int Hq, int Hkv, int window, float sl2, float scale, cudaStream_t stream) {
    static_assert(16 * (D + 4) <= 2 * 16 * (ATT_BK + 4), "staging does not fit");
    // two groups of warps share a key tile when two or more query heads read it: twice the
    // warps on the kv heads' few key tiles (the pass with the least parallelism)
    if (Hq / Hkv >= 2)
        bwd_dkdv_mma<D, 2>(dk, dv, dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, window, sl2,
                           scale, stream);
    else
        bwd_dkdv_mma<D, 1>(dk, dv, dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, window, sl2,
                           scale, stream);
    const size_t smem = DqSmem<D>::BYTES;
    cudaCheck(cudaFuncSetAttribute(att_bwd_dq_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    dim3 grid(Hq, ceil_div(N, ATT_BQ));
    LAUNCH(grid, ATT_THREADS, smem, stream, att_bwd_dq_mma<D>)
    (dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, window, sl2, scale);
    cudaCheckLaunch();
}

void attention_backward(float *dq, float *dk, float *dv, const bf16 *dout, const bf16 *out,
                        const float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                        const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                        cudaStream_t stream) {
    if (N <= 0 || B <= 0) return;
    const bool mma = D % 16 == 0 && D <= 128;
    const void *ptrs[] = {dout, q, k, v};
    att_check("attention_backward", ptrs, 4, N, Hq, Hkv, D, mma);
    const double scale = 1.0 / sqrt((double)D);
    const float sl2 = (float)(1.4426950408889634 * scale), sc = (float)scale;
    LAUNCH(ceil_div((long)N * Hq, ATT_WARPS), ATT_THREADS, 0, stream, att_bwd_di)
    (dq, dout, out, N, Hq, D);
    cudaCheckLaunch();
    const bool done = mma && with_mma_head_dim(D, [&](auto d) {
                          bwd_mma<decltype(d)::value>(dq, dk, dv, dout, lse, q, k, v, offsets, B, N,
                                                      Hq, Hkv, window, sl2, sc, stream);
                      });
    if (!done) {
        LAUNCH(ceil_div((long)N * Hkv, ATT_WARPS), ATT_THREADS, 0, stream, att_bwd_dkdv_simple)
        (dk, dv, dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, D, window, sl2, sc);
        cudaCheckLaunch();
        LAUNCH(ceil_div((long)N * Hq, ATT_WARPS), ATT_THREADS, 0, stream, att_bwd_dq_simple)
        (dq, dout, lse, q, k, v, offsets, B, N, Hq, Hkv, D, window, sl2, sc);
        cudaCheckLaunch();
    }
}
