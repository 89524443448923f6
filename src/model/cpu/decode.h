// The KV-cache decode path of the CPU backend (fp32): the forward the sampler runs.
//
// A DecodeState serves B prompts and `rows` candidate slots; slot s continues prompt
// slot_prompt[s]. The prefill runs every prompt through the model once and keeps each layer's
// keys (after rope) and values of every prompt position, stored once however many slots
// continue the prompt. A decode step then feeds one new token to each of a set of slots: its
// key and value go into the slot's own cache, and its queries attend over the prompt's keys
// followed by the slot's own, so the k candidates of a prompt never copy its prefill.
//
// Everything here follows the model's config: grouped-query attention, q/k/v and o biases,
// tied or untied head, sliding window, head_dim != hidden / heads. The results do not depend
// on the number of OpenMP threads; a decode step's bits may depend on how many slots it feeds
// (see gemm_rows in decode.c), which the sampler derives deterministically from its request.
#ifndef GEMC_CPU_DECODE_H
#define GEMC_CPU_DECODE_H

#include "model/cpu/gemm.h"
#include "model/model.h"

typedef struct {
    // shape, from the model's config
    int L, C, I, Hq, Hkv, D, V, window;
    int B, Np;        // prompts, prompt tokens in all
    int rows;         // slots
    int gen_cap;      // tokens one slot's cache holds
    int act_rows;     // rows of the activation buffers: max(largest prefill chunk, rows)
    int span;         // most keys one decode query sees
    int *prompt_off;  // [B+1] prompt b is rows prompt_off[b] .. prompt_off[b+1] of pk, pv
    int *slot_prompt; // [rows]
    int *slot_len;    // [rows] tokens in the slot's own cache
    int *pos;         // [act_rows] position of each activation row in its sequence
    int *chunk_off;   // [B+1] scratch: one prefill chunk's offsets, relative to its first row
    float *slab;      // every float buffer below points into it
    float *pk, *pv;   // [L, Np, Hkv*D] the prompts' keys (after rope) and values
    float *gk, *gv;   // [L, rows, gen_cap, Hkv*D] each slot's own keys and values
    float *x;         // [act_rows, C] residual stream
    float *ln;        // [act_rows, C] a norm's output
    float *rstd;      // [act_rows]
    float *q;         // [act_rows, Hq*D] queries after rope
    float *kn, *vn;   // [rows, Hkv*D] a decode step's new keys and values
    float *att;       // [act_rows, Hq*D] attention output
    float *lse;       // [act_rows, Hq] the prefill attention's logsumexp (not used after)
    float *branch;    // [act_rows, C] attention or MLP branch output
    float *gate, *up; // [act_rows, I]; gate becomes silu(gate) * up in place
    float *cosv;      // [act_rows, D/2] rope table of the current rows
    float *sinv;      // [act_rows, D/2]
    float *scores;    // [rows * Hq, span] a decode step's attention weights, one row per task
    // [L * 7 + 1] the matrices packed for gemm_f32_packed: q, k, v, o, gate, up, down of each
    // layer, then the head
    GemmPackedWeight *w;
    float *w_mem; // what they point into
    int w_arena;  // w_mem is the process's kept arena (decode.c), not the state's own
} DecodeState;

// Allocates the caches and buffers for the prompts of `prompts` (packed, every token checked
// against the vocabulary by the caller) and `rows` slots, slot s continuing prompt
// slot_prompt[s] and holding up to gen_cap tokens (a prompt's length plus gen_cap must fit the
// model's context). Then runs the prefill: logits [B, V] gets the next-token logits of each
// prompt's last position.
void decode_prefill(DecodeState *d, const Model *m, const PackedBatch *prompts, int rows,
                    const int *slot_prompt, int gen_cap, float *logits);

// Feeds tokens[r] to slot slots[r] for r < n (distinct slots, each with room in its cache):
// the token sits at position (prompt length + tokens already in the slot). logits [n, V] gets
// the next-token logits of each.
void decode_step(DecodeState *d, const Model *m, int n, const int *slots, const int *tokens,
                 float *logits);

void decode_free(DecodeState *d);

#endif
