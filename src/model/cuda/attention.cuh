// Attention of the CUDA backend: the training forward and backward over a packed batch
// (flash-style, tensor cores where head_dim is a multiple of 16) and the KV-cache decode step
// of the sampler. The CPU references are attention_forward / attention_backward
// (src/model/cpu/kernels.inc) and decode_attention (src/model/cpu/decode.c).
//
// Semantics, as on the CPU: causal grouped-query attention within each packed sequence; query
// head h reads kv head h / (Hq / Hkv); scores scaled by 1/sqrt(D); with window W > 0 row i sees
// key j iff i-W < j <= i. Every launcher takes a trailing stream and checks its launches.
//
// What the caller supplies:
//   - offsets: DEVICE int [B+1], offsets[0] = 0, non-decreasing, offsets[B] = N (empty
//     sequences are fine). No other index array and no scratch: the kernels find each row's
//     sequence by a binary search of offsets, and tiles of rows may cross sequence ends.
//   - q, k, v, out, dout: 16-byte aligned (any cudaMalloc'd buffer, or a row or layer slice of
//     one) when D is a multiple of 16; Hq a multiple of Hkv; D <= 256 (tensor cores for
//     D in {16, 32, ..., 128}, a plain kernel for any other D).
#ifndef GEMC_CUDA_ATTENTION_CUH
#define GEMC_CUDA_ATTENTION_CUH

#include <cstddef>

#include "model/cuda/cuda_common.cuh"

// ---- training ------------------------------------------------------------------------------

// out [N, Hq*D] bf16, lse [N, Hq] fp32 (natural-log logsumexp of each row's scaled scores, kept
// for the backward); q [N, Hq*D] (after rope), k, v [N, Hkv*D]. WRITES out and lse.
void attention_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                       const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                       cudaStream_t stream);

// dq [N, Hq*D], dk, dv [N, Hkv*D], all fp32, are WRITTEN (not added to); the kernels zero
// nothing beforehand and need no zeroed input. dq doubles as scratch: Di = rowsum(dout * out)
// of (row i, head h) is parked in dq[i, h*D] before the dq pass overwrites it, so dq must not
// alias any input. dout, out [N, Hq*D] bf16; lse from attention_forward; q, k, v as there.
// Deterministic: the same inputs give the same bits (no atomics; the query heads that share a
// kv head are summed into dk, dv in a fixed order).
void attention_backward(float *dq, float *dk, float *dv, const bf16 *dout, const bf16 *out,
                        const float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                        const int *offsets, int B, int N, int Hq, int Hkv, int D, int window,
                        cudaStream_t stream);

// ---- KV-cache decode -------------------------------------------------------------------------
//
// Layout, as in the CPU DecodeState (src/model/cpu/decode.h), one layer at a time:
//   pk, pv [Np, Hkv*D]: the prompts' keys (after rope) and values, prompts packed, prompt b at
//       rows prompt_off[b] .. prompt_off[b+1]. The prefill runs the prompts through
//       attention_forward as a packed batch (offsets = prompt_off), so its k and v buffers of
//       the layer ARE pk and pv: keep one [L, Np, Hkv*D] buffer per tensor and hand
//       attention_forward the layer's slice; nothing is copied.
//   gk, gv [rows, gen_cap, Hkv*D]: each slot's own keys and values (the layer's slice of
//       [L, rows, gen_cap, Hkv*D]).
//   pk, pv, gk, gv are 16-byte aligned when D is a multiple of 8 (layer slices of cudaMalloc'd
//       buffers are).
//   slot_prompt [rows], slot_len [rows] (device): slot s continues prompt slot_prompt[s] and
//       holds slot_len[s] tokens of its own BEFORE the current step, as on the CPU.
// A decode step feeding one token to each of slots[0 .. n) (distinct) runs, in every layer,
// kv_append then decode_attention with the same slot_len; after the last layer, kv_advance.

// gk[slots[r], slot_len[slots[r]]] = kn[r] and the same for gv, vn, for r < n. kn, vn [n, KV]
// with KV = Hkv*D. The caller guarantees slot_len[s] < gen_cap.
void kv_append(bf16 *gk, bf16 *gv, const bf16 *kn, const bf16 *vn, const int *slots,
               const int *slot_len, int n, int gen_cap, int KV, cudaStream_t stream);

// slot_len[slots[r]] += 1 for r < n: the end of a decode step.
void kv_advance(int *slot_len, const int *slots, int n, cudaStream_t stream);

// Floats of scratch decode_attention may use for up to n queries (split key ranges).
size_t decode_attention_scratch_floats(int n, int Hq, int D);

// out [n, Hq*D] bf16 (WRITES); q [n, Hq*D] after rope. The query of slot s = slots[r] sits at
// position plen + slot_len[s] (plen = its prompt's length) and attends over its prompt's keys
// 0 .. plen-1, then its own keys 0 .. slot_len[s] (the one kv_append just wrote included),
// those within the window when window > 0. max_keys: a host-side bound on the keys one query
// sees (e.g. the longest prompt + gen_cap, or window when smaller), used only to choose how
// many blocks share a query's keys. scratch: decode_attention_scratch_floats(n, Hq, D) floats
// of device memory, or NULL (then one block per (query, kv head) takes all its keys).
// One block per (query, kv head, key split) serves all the query heads of the kv head, so each
// key is read once per slot; deterministic for given n, max_keys and scratch.
void decode_attention(bf16 *out, const bf16 *q, const bf16 *pk, const bf16 *pv,
                      const int *prompt_off, const bf16 *gk, const bf16 *gv, const int *slots,
                      const int *slot_prompt, const int *slot_len, int n, int gen_cap, int Hq,
                      int Hkv, int D, int window, int max_keys, float *scratch,
                      cudaStream_t stream);

#endif
