// Layer kernels of the CUDA backend other than the GEMMs, attention and the head: embedding,
// rmsnorm, rope, swiglu, bias gradient, casts, AdamW, the gradient norm and the residual add.
// Each launcher runs on `stream` and checks its launches; none allocates or synchronizes.
//
// They compute what the CPU kernels of src/model/cpu/kernels.inc (and AdamW of
// src/model/optimizer.c) compute, with bf16 weights and activations, an fp32 residual stream and
// fp32 gradients, and every sum in fp32. Backward kernels ADD into their outputs unless the comment
// says WRITES. Every reduction is in a fixed order (no float atomics; embedding_backward excepted),
// so the same inputs give the same bits on every run.
//
// Memory-bound kernels use 16-byte loads and stores where every pointer is 16-byte aligned (and,
// for the row kernels, C is a multiple of 8), and plain loads otherwise: any size and any
// offset are correct, the aligned ones are faster.
#ifndef GEMC_CUDA_LAYERS_CUH
#define GEMC_CUDA_LAYERS_CUH

#include <cstddef>

#include "model/cuda/cuda_common.cuh"

// ---- embedding -----------------------------------------------------------------------------

// out[i] = wte[tokens[i]] (WRITES). out [N, C] fp32, tokens [N], wte [V, C]. A token of -1
// writes a row of zeros and adds nothing in the backward: the vocab-parallel embedding passes
// -1 for the tokens whose rows another tensor-parallel rank holds.
void embedding_forward(float *out, const int *tokens, const bf16 *wte, int N, int C,
                       cudaStream_t stream);
// dwte[tokens[i]] += dout[i]. dwte [V, C], dout [N, C]. Float atomics: when a token occurs twice
// the order of its two additions (and so the last bit) may differ between runs.
void embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C,
                        cudaStream_t stream);

// ---- rmsnorm -------------------------------------------------------------------------------

// out = w * (inp * rstd), rstd = 1 / sqrt(mean(inp^2) + eps) per row (WRITES out and rstd).
// out [N, C] bf16, rstd [N], inp [N, C] fp32, w [C].
void rmsnorm_forward(bf16 *out, float *rstd, const float *inp, const bf16 *w, int N, int C,
                     float eps, cudaStream_t stream);
// Floats of the scratch rmsnorm_backward needs for these N, C (its per-block partial sums of dw).
size_t rmsnorm_backward_scratch(int N, int C);
// dinp += d(out)/d(inp) dout, dw += sum over rows of dout * inp * rstd.
// dinp, dout, inp [N, C]; dw [C]; w [C]; rstd [N] (of the forward); scratch
// [rmsnorm_backward_scratch(N, C)] floats (overwritten). dw is summed per block of rows into
// scratch, then the blocks' sums are added in order: deterministic.
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const bf16 *w,
                      const float *rstd, int N, int C, float *scratch, cudaStream_t stream);

// ---- rope ----------------------------------------------------------------------------------

// Rotate-half rope of each head vector of x [N, H*D] in place, by the angle pos[i] * inv_freq[j]
// computed in fp32 (as transformers does): for j < D/2,
//   x[j] = x[j] cos - x[j+D/2] sin,  x[j+D/2] = x[j+D/2] cos + x[j] sin.
// pos [N], inv_freq [D/2].
void rope_forward(bf16 *x, const int *pos, const float *inv_freq, int N, int H, int D,
                  cudaStream_t stream);
// WRITES dx [N, H*D] bf16, the transpose rotation of dy [N, H*D] fp32.
void rope_backward(bf16 *dx, const float *dy, const int *pos, const float *inv_freq, int N, int H,
                   int D, cudaStream_t stream);

// ---- swiglu --------------------------------------------------------------------------------

// out = silu(gate) * up, silu(z) = z / (1 + exp(-z)). All [n].
void swiglu_forward(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, cudaStream_t stream);
// WRITES dgate and dup (all [n]).
void swiglu_backward(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                     size_t n, cudaStream_t stream);

// ---- matmul bias ---------------------------------------------------------------------------

// dbias [OC] += column sums of dout [N, OC], each column summed in a fixed order. One pass, one
// block per 64 columns: fine for small N.
void bias_backward(float *dbias, const bf16 *dout, int N, int OC, cudaStream_t stream);
// Floats of the scratch the second form needs for these N, OC.
size_t bias_backward_scratch(int N, int OC);
// The same sums, also over chunks of rows (more blocks for large N): per-chunk sums into scratch
// [bias_backward_scratch(N, OC)] (overwritten), then added in order. Deterministic; its bits
// may differ from the first form's (another order of additions).
void bias_backward(float *dbias, const bf16 *dout, int N, int OC, float *scratch,
                   cudaStream_t stream);

// ---- elementwise ---------------------------------------------------------------------------

// out = in (rounded to nearest even), out = in widened. All [n].
void cast_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t stream);
void cast_bf16_to_f32(float *out, const bf16 *in, size_t n, cudaStream_t stream);

// out = a + b (all [n] fp32; out may be a or b).
void add_f32(float *out, const float *a, const float *b, size_t n, cudaStream_t stream);

// ---- optimizer -----------------------------------------------------------------------------

// torch's AdamW on one block of the slab, the same IEEE operations in the same order as
// adamw_block of src/model/optimizer.c (the same bits as the CPU), then params = bf16(master).
// master, grads, m, v [n] fp32; params [n] bf16. The scalars are model_adamw_step's.
void adamw_update(float *master, bf16 *params, const float *grads, float *m, float *v, size_t n,
                  float decay_mul, float w1, float b2, float w2, float bc2_sqrt, float eps,
                  float neg_step, cudaStream_t stream);

// Floats of the scratch sum_squares needs for n.
size_t sum_squares_scratch(size_t n);
// *out = sum of g[i]^2 (WRITES one float on the device), fp32, summed per block into scratch
// [sum_squares_scratch(n)] then the blocks' sums added in order: deterministic.
void sum_squares(float *out, const float *g, size_t n, float *scratch, cudaStream_t stream);

// g *= s. g [n].
void scale_f32(float *g, size_t n, float s, cudaStream_t stream);
// Gradient clipping without a round trip to the host, as model_clip_grad_norm: norm =
// sqrt(*sumsq) (sumsq on the device, from sum_squares), coef = max_norm / (norm + 1e-6), and
// g *= coef only when coef < 1.
void clip_scale_f32(float *g, size_t n, const float *sumsq, float max_norm, cudaStream_t stream);

#endif
