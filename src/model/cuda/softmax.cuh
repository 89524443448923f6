// The online softmax sums that the head (head.cu) and the sampler (sample.cu) share: a thread
// keeps m (its largest logit so far), S = sum e^(z-m) and T = sum e^(z-m)(z-m) and rescales them
// when m grows, so the max, the sums and the entropy take one pass over the row; states of
// disjoint sets merge the same way (warp shuffles, then the warps in order). Every merge has a
// fixed order: the same inputs give the same bits.
#ifndef GEMC_CUDA_SOFTMAX_CUH
#define GEMC_CUDA_SOFTMAX_CUH

#include "model/cuda/cuda_common.cuh"

// ---- online softmax sums -----------------------------------------------------------------

// The sums of a set of logits relative to its largest, m: S = sum e^(z-m), T = sum e^(z-m)(z-m).
// The empty set is {-inf, 0, 0}. (ENT == false: T is not kept.)
struct Soft {
    float m, S, T;
    float pad_; // (8-byte multiple: shfl_xor_struct)
};

// Rebases s onto m_new >= s.m: with d = s.m - m_new, e^(z-m_new) = e^d e^(z-m) and
// z - m_new = (z - m) + d, so S' = e^d S and T' = e^d (T + d S).
template <bool ENT> __device__ __forceinline__ void soft_rebase(Soft &s, float m_new) {
    if (s.S > 0) { // (the empty set has d = -inf, and nothing to rescale)
        const float d = s.m - m_new, c = expf(d);
        if (ENT) s.T = c * (s.T + d * s.S);
        s.S *= c;
    }
    s.m = m_new;
}

// Adds a logit z <= s.m.
template <bool ENT> __device__ __forceinline__ void soft_add(Soft &s, float z) {
    const float d = z - s.m, e = expf(d);
    s.S += e;
    if (ENT) s.T += e > 0 ? e * d : 0.0f; // a logit of -inf adds 0, not 0 * -inf
}

// The sums of the union of two disjoint sets. Symmetric to the bit, so both lanes of a
// butterfly step hold the same state.
template <bool ENT> __device__ __forceinline__ Soft soft_merge(Soft a, Soft b) {
    const float m = fmaxf(a.m, b.m);
    soft_rebase<ENT>(a, m);
    soft_rebase<ENT>(b, m);
    return Soft{m, a.S + b.S, a.T + b.T, 0.0f};
}

// __shfl_xor_sync of a struct of 4-byte fields, 8 bytes at a time (a 64-bit shuffle costs the
// hardware two, but the emulator one barrier).
template <class T> __device__ __forceinline__ T shfl_xor_struct(const T &v, int o) {
    static_assert(sizeof(T) % 8 == 0, "pad the struct to a multiple of 8 bytes");
    unsigned long long w[sizeof(T) / 8];
    memcpy(w, &v, sizeof(T));
    for (int k = 0; k < (int)(sizeof(T) / 8); k++) w[k] = __shfl_xor_sync(0xffffffffu, w[k], o);
    T r;
    memcpy(&r, w, sizeof(T));
    return r;
}

template <bool ENT> __device__ __forceinline__ Soft warp_soft(Soft s) {
    for (int o = 16; o > 0; o >>= 1) s = soft_merge<ENT>(s, shfl_xor_struct(s, o));
    return s;
}

#endif
