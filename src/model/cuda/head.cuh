// The log-prob/entropy head and the sampler's fused softmax-entropy-sample step on the GPU.
// Logits are fp32 (the head GEMM writes fp32); one block works on one row of the vocabulary.
//
// - head_forward (head.cu), as head_forward_f32 (src/model/cpu/kernels.inc): lse, entropy and
//   the log-prob of the targets;
// - head_backward (head.cu), as head_backward_f32: WRITES bf16 dlogits;
// - sample_rows (sample.cu), as sample_token_limited (src/model/sampler.c): one draw per row.
//
// All launchers are asynchronous on `stream` and need no scratch memory.
#ifndef GEMC_CUDA_HEAD_CUH
#define GEMC_CUDA_HEAD_CUH

#include "model/cuda/cuda_common.cuh"

// One pass over each row of logits [N, V]: m = max z, S = sum e^(z-m), T = sum e^(z-m)(z-m)
// (online: when the max grows the sums are rescaled), in fp32. Writes, per row,
//   lse [N] = m + ln S, entropy [N] = ln S - T/S, logprob [N] = z[target] - lse (0 where
//   targets[i] < 0).
// logprob and entropy may be NULL; targets may be NULL when logprob is.
void head_forward(float *logprob, float *entropy, float *lse, const float *logits,
                  const int *targets, int N, int V, cudaStream_t stream);

// The vocab-parallel head (a tensor-parallel rank holds V of the vocabulary's rows), in three
// steps around the group's two collectives, as the CPU's head_max_vp/head_sums_vp/head_finish_vp:
//   head_vp_partial: this rank's online sums of each row, stat [N, 4] = {m, S, T, z[t]} with
//     t = targets_local[i] (z[t] = 0 when t is not in [0, V)), and mx [N] = m;
//   (the group's MAX of mx)
//   head_vp_rebase: the sums rebased onto the group's max, sums [N, 3] = {S, T, z[t]};
//   (the group's SUM of sums)
//   head_vp_finish: lse, entropy and logprob as head_forward writes them (logprob 0 where the
//     global targets[i] < 0; logprob and entropy may be NULL).
void head_vp_partial(float *mx, float *stat, const float *logits, const int *targets_local, int N,
                     int V, cudaStream_t stream);
void head_vp_rebase(float *sums, const float *stat, const float *mx, int N, cudaStream_t stream);
void head_vp_finish(float *logprob, float *entropy, float *lse, const float *mx, const float *sums,
                    const int *targets, int N, cudaStream_t stream);

// WRITES dlogits [N, V] (bf16):
//   dlogprob[i] (onehot(target) - p) + dentropy[i] (-p (ln p + entropy[i])),  p = e^(z - lse),
// rows with targets[i] < 0 take no logprob term. dentropy may be NULL (no entropy term; entropy
// may then be NULL too); dlogprob may be NULL (no logprob term). Same arguments as the CPU's
// head_backward_f32, with the gradient in bf16. A vocab-parallel rank passes its local targets:
// -1 at a sequence's end, and V (no one-hot, the softmax term only) for a target another rank
// holds.
void head_backward(bf16 *dlogits, const float *logits, const float *lse, const float *entropy,
                   const int *targets, const float *dlogprob, const float *dentropy, int N, int V,
                   cudaStream_t stream);

// What sample_rows writes: device arrays [n], one entry per row (the fields of TokenDraw,
// src/model/sampler.h, as a struct of arrays).
struct SampleOut {
    int *token;
    float *logp_sample;    // ln q(token), q the temperature/top-k/top-p distribution
    float *logp_raw;       // ln p(token), p = softmax of the raw logits over all V ids
    float *entropy_sample; // H(q), nats (0 when greedy, or when with_entropy is 0)
    float *entropy_raw;    // H(p), nats (0 when with_entropy is 0)
    float *certainty;      // KL(uniform || p) = ln S - mean(z - m) - ln V over all V ids, nats,
                           // at least 0 (self-certainty; 0 when with_entropy is 0)
    float *logp_old;       // ln p_T(token), softmax(z / T) over the drawable ids with nothing cut
                           // (logp_raw at T = 1 or greedy): the learner's ratio
};

// Draw r (r < n) draws from row r of logits [n, V] with the uniform u[r] in [0, 1) (device
// array [n]), as sample_token_limited does (up to fp32 rounding): ids >= n_draw are never drawn
// (n_draw <= 0 or > V means V) while the raw log-prob and entropy are over all V ids;
// temperature == 0 or top_k == 1 is greedy (the largest logit among ids < n_draw, lowest id on
// ties); top_k (0 = off) and top_p (1 = off) keep the best tokens ranked by logit, ties by lower
// id, and the inverse CDF then walks the kept tokens best first (ids in increasing order when
// neither cuts). with_entropy == 0 skips the entropy and self-certainty sums (both entropies
// and the certainty are written as 0). Every mode, greedy included, writes every field.
// Needs V <= SAMPLE_MAX_V.
#define SAMPLE_MAX_V 4000000
void sample_rows(const SampleOut &out, const float *logits, const float *u, int n, int V,
                 int n_draw, float temperature, int top_k, float top_p, int with_entropy,
                 cudaStream_t stream);

#endif
