// The KV-cache decode step of the sampler (attention.cuh): kv_append and kv_advance keep each
// slot's cache, decode_attention attends one new query row per sequence over its cache. The CPU
// reference is decode_attention (src/model/cpu/decode.c). Every reduction has a fixed order: the
// same inputs give the same bits.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "model/cuda/attention.cuh"

extern "C" {
#include "base/common.h"
}

#define ATT_THREADS 128 // 4 warps a block, as the training kernels

// ---- KV-cache decode -------------------------------------------------------------------------

#define DEC_KC        64 // keys per chunk in shared memory
#define DEC_MAX_SPLIT 16 // most blocks sharing one query's keys

// One block per r: the new key and value of slot slots[r] into its cache.
__global__ void kv_append_kernel(bf16 *gk, bf16 *gv, const bf16 *kn, const bf16 *vn,
                                 const int *slots, const int *slot_len, int gen_cap, int KV) {
    const int r = blockIdx.x, s = slots[r];
    const size_t at = ((size_t)s * gen_cap + slot_len[s]) * KV;
    for (int e = threadIdx.x; e < KV; e += blockDim.x) {
        gk[at + e] = kn[(size_t)r * KV + e];
        gv[at + e] = vn[(size_t)r * KV + e];
    }
}

__global__ void kv_advance_kernel(int *slot_len, const int *slots, int n) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < n) slot_len[slots[r]] += 1;
}

void kv_append(bf16 *gk, bf16 *gv, const bf16 *kn, const bf16 *vn, const int *slots,
               const int *slot_len, int n, int gen_cap, int KV, cudaStream_t stream) {
    if (n <= 0) return;
    LAUNCH(n, 128, 0, stream, kv_append_kernel)(gk, gv, kn, vn, slots, slot_len, gen_cap, KV);
    cudaCheckLaunch();
}

void kv_advance(int *slot_len, const int *slots, int n, cudaStream_t stream) {
    if (n <= 0) return;
    LAUNCH(ceil_div(n, 128), 128, 0, stream, kv_advance_kernel)(slot_len, slots, n);
    cudaCheckLaunch();
}

// Grid (n, Hkv, splits), ATT_THREADS threads. Block (r, g, sp) takes the sp-th of `splits` equal
// parts of the keys of query r and serves the rep = Hq/Hkv query heads of kv head g: a chunk of
// DEC_KC keys and values is staged in shared memory, every (head, key) score computed, the
// online softmax of each head updated by one warp, then every (head, dim) output by one thread.
// splits == 1: WRITES out. Otherwise part[(r*Hq + h) * splits + sp] = {o[0 .. D), max, sum},
// o unnormalized, max in base 2, for decode_combine.
__global__ void __launch_bounds__(ATT_THREADS)
    decode_kernel(bf16 *out, float *part, const bf16 *q, const bf16 *pk, const bf16 *pv,
                  const int *prompt_off, const bf16 *gk, const bf16 *gv, const int *slots,
                  const int *slot_prompt, const int *slot_len, int gen_cap, int Hq, int Hkv, int D,
                  int window, float sl2) {
    const int r = blockIdx.x, g = blockIdx.y, sp = blockIdx.z, splits = gridDim.z;
    const int rep = Hq / Hkv, Qd = Hq * D, KVd = Hkv * D, LDK = D + 2; // odd words: no conflicts
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, nwarps = blockDim.x / 32;
    DYNAMIC_SHARED(float4, att_smem);
    float *qs = (float *)att_smem; // [rep, D] queries, pre-scaled
    float *os = qs + rep * D;      // [rep, D] running outputs
    float *sc = os + rep * D;      // [rep, KC] scores, then weights
    float *mx = sc + rep * DEC_KC; // [rep] running max (base 2)
    float *sm = mx + rep;          // [rep] running sum
    float *al = sm + rep;          // [rep] correction of the current chunk
    bf16 *ks = (bf16 *)(al + rep); // [KC, LDK]
    bf16 *vs = ks + DEC_KC * LDK;  // [KC, LDK]

    const int s = slots[r], p = slot_prompt[s], pbeg = prompt_off[p];
    const int plen = prompt_off[p + 1] - pbeg, pos = plen + slot_len[s];
    // keys 0 .. pos of the sequence prompt + own; key t < plen is prompt row pbeg + t, key
    // t >= plen is the slot's own row t - plen
    const int first = window > 0 ? imax(0, pos - window + 1) : 0, nkeys = pos - first + 1;
    const int per = (nkeys + splits - 1) / splits;
    const int kb = first + sp * per, ke = imin(pos + 1, kb + per);

    for (int e = tid; e < rep * D; e += blockDim.x) {
        qs[e] = bf2f(q[(size_t)r * Qd + (size_t)g * rep * D + e]) * sl2;
        os[e] = 0.0f;
    }
    for (int e = tid; e < rep; e += blockDim.x) mx[e] = -INFINITY, sm[e] = 0.0f, al[e] = 0.0f;

    for (int c0 = kb; c0 < ke; c0 += DEC_KC) {
        const int nk = imin(DEC_KC, ke - c0);
        __syncthreads(); // the previous chunk is consumed (and the setup done)
        // chunk of 8 dims (16 bytes) per thread when D allows, else one dim
        const int w = D % 8 == 0 ? 8 : 1, nw = D / w;
        for (int e = tid; e < DEC_KC * nw; e += blockDim.x) {
            const int j = e / nw, d = (e % nw) * w, t = c0 + j;
            bf16 *kd = ks + j * LDK + d, *vd = vs + j * LDK + d;
            if (j < nk) {
                const size_t at = (t < plen ? (size_t)(pbeg + t) * KVd
                                            : ((size_t)s * gen_cap + (t - plen)) * KVd) +
                                  (size_t)g * D + d;
                const bf16 *kp = (t < plen ? pk : gk) + at, *vp = (t < plen ? pv : gv) + at;
                if (w == 8) {
                    copy16_words(kd, kp);
                    copy16_words(vd, vp);
                } else {
                    *kd = *kp;
                    *vd = *vp;
                }
            } else {
                for (int x = 0; x < w; x++) kd[x] = vd[x] = f2bf(0.0f);
            }
        }
        __syncthreads();
        for (int e = tid; e < rep * DEC_KC; e += blockDim.x) {
            const int hh = e / DEC_KC, j = e % DEC_KC;
            float a = -INFINITY;
            if (j < nk) {
                a = 0.0f;
                for (int d = 0; d < D; d++) a += qs[hh * D + d] * bf2f(ks[j * LDK + d]);
            }
            sc[e] = a;
        }
        __syncthreads();
        for (int hh = warp; hh < rep; hh += nwarps) {
            float *w = sc + hh * DEC_KC;
            float m = -INFINITY;
            for (int j = lane; j < DEC_KC; j += 32) m = fmaxf(m, w[j]);
            m = warp_max(m);
            const float m_old = mx[hh], m_new = fmaxf(m_old, m); // finite: nk >= 1
            float sum = 0.0f;
            for (int j = lane; j < DEC_KC; j += 32) {
                const float pj = exp2f(w[j] - m_new); // 0 past nk
                w[j] = pj;
                sum += pj;
            }
            sum = warp_sum(sum); // (every lane has read mx[hh] by now)
            if (lane == 0) {
                const float a = exp2f(m_old - m_new);
                mx[hh] = m_new;
                sm[hh] = sm[hh] * a + sum;
                al[hh] = a;
            }
        }
        __syncthreads();
        for (int e = tid; e < rep * D; e += blockDim.x) {
            const int hh = e / D, d = e % D;
            const float *w = sc + hh * DEC_KC;
            float a = os[e] * al[hh];
            for (int j = 0; j < nk; j++) a += w[j] * bf2f(vs[j * LDK + d]);
            os[e] = a;
        }
    }
    __syncthreads();
    for (int e = tid; e < rep * D; e += blockDim.x) {
        const int hh = e / D, d = e % D, h = g * rep + hh;
        if (splits == 1) {
            out[(size_t)r * Qd + (size_t)h * D + d] = f2bf(os[e] / sm[hh]);
        } else {
            float *pp = part + ((size_t)(r * Hq + h) * splits + sp) * (D + 2);
            pp[d] = os[e];
            if (d == 0) pp[D] = mx[hh], pp[D + 1] = sm[hh];
        }
    }
}

// out[r, h] from the splits' partial sums: grid n, ATT_THREADS threads over (head, dim).
__global__ void __launch_bounds__(ATT_THREADS)
    decode_combine(bf16 *out, const float *part, int Hq, int D, int splits) {
    const int r = blockIdx.x;
    for (int e = threadIdx.x; e < Hq * D; e += blockDim.x) {
        const int h = e / D, d = e % D;
        const float *pp = part + (size_t)(r * Hq + h) * splits * (D + 2);
        float m = -INFINITY;
        for (int x = 0; x < splits; x++) m = fmaxf(m, pp[x * (D + 2) + D]);
        float o = 0.0f, l = 0.0f;
        for (int x = 0; x < splits; x++) {
            const float a = exp2f(pp[x * (D + 2) + D] - m); // 0 for an empty split
            o += a * pp[x * (D + 2) + d];
            l += a * pp[x * (D + 2) + D + 1];
        }
        out[(size_t)r * Hq * D + e] = f2bf(o / l);
    }
}

size_t decode_attention_scratch_floats(int n, int Hq, int D) {
    return (size_t)(n > 0 ? n : 1) * Hq * DEC_MAX_SPLIT * (D + 2);
}

static int sm_count(void) {
    static int count = 0;
    if (count == 0) {
        int dev = 0;
        cudaDeviceProp prop;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaGetDeviceProperties(&prop, dev));
        count = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    }
    return count;
}

void decode_attention(bf16 *out, const bf16 *q, const bf16 *pk, const bf16 *pv,
                      const int *prompt_off, const bf16 *gk, const bf16 *gv, const int *slots,
                      const int *slot_prompt, const int *slot_len, int n, int gen_cap, int Hq,
                      int Hkv, int D, int window, int max_keys, float *scratch,
                      cudaStream_t stream) {
    if (n <= 0) return;
    if (Hq <= 0 || Hkv <= 0 || Hq % Hkv != 0 || D <= 0)
        gemc_fatal("decode_attention: unsupported heads %d/%d or head_dim %d", Hq, Hkv, D);
    if (D % 8 == 0 &&
        ((uintptr_t)pk % 16 || (uintptr_t)pv % 16 || (uintptr_t)gk % 16 || (uintptr_t)gv % 16))
        gemc_fatal("decode_attention: a key or value cache is not 16-byte aligned");
    // split a query's keys while the blocks would not fill the device twice over, keeping at
    // least 256 keys per split (a split's fixed cost is a few of its chunks)
    int splits = 1;
    if (scratch)
        while (splits * 2 <= DEC_MAX_SPLIT && (long)n * Hkv * splits < 2L * sm_count() &&
               max_keys / (splits * 2) >= 256)
            splits *= 2;
    const int rep = Hq / Hkv;
    const size_t smem = sizeof(float) * ((size_t)2 * rep * D + (size_t)rep * DEC_KC + 3 * rep) +
                        sizeof(bf16) * 2 * DEC_KC * (D + 2);
    cudaCheck(cudaFuncSetAttribute(decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    const float sl2 = (float)(1.4426950408889634 / sqrt((double)D));
    dim3 grid(n, Hkv, splits);
    LAUNCH(grid, ATT_THREADS, smem, stream, decode_kernel)
    (out, scratch, q, pk, pv, prompt_off, gk, gv, slots, slot_prompt, slot_len, gen_cap, Hq, Hkv, D,
     window, sl2);
    cudaCheckLaunch();
    if (splits > 1) {
        LAUNCH(n, ATT_THREADS, 0, stream, decode_combine)(out, scratch, Hq, D, splits);
        cudaCheckLaunch();
    }
}
