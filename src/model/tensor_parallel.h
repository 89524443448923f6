// Megatron-style tensor parallelism of the Llama-family model over tp ranks.
//
// Each rank of a tp group holds a partition of every weight and runs the model on the whole batch:
//   column-parallel (output rows split): q, k, v (with their biases), gate, up
//       each rank owns num_heads/tp query heads, num_kv_heads/tp kv heads, intermediate/tp rows
//   row-parallel (input columns split): o, down; their outputs are partial sums
//   vocab-parallel: the embedding and the LM head own a contiguous range of vocabulary rows
//   replicated: the three RMSNorm weights and o's bias (identical on every rank)
//
// A partition is itself a model of a smaller config (tp_local_config): its parameter slab has the
// ParamLayout of that config, so the CPU kernels run on it unchanged. The collectives the model
// needs are the two Megatron operators, named for what they do:
//   reduce_from_tp  (g): forward allreduce SUM of a row-parallel output, backward identity
//   copy_to_tp      (f): forward identity, backward allreduce SUM of the input gradient
// two of each per layer, plus the vocab-parallel embedding (one SUM) and the vocab-parallel
// log-prob and entropy of the head (one MAX and one SUM per token, never a gather of the
// vocabulary).
#ifndef GEMC_TENSOR_PARALLEL_H
#define GEMC_TENSOR_PARALLEL_H

#include <stddef.h>

#include "model/model_config.h"

// The tp group a model partition belongs to; the collectives act in place on host fp32 buffers and
// are called by every rank of the group in the same order.
typedef struct TensorParallel {
    int rank, size;
    int vocab_start; // first vocabulary row of this rank's embedding and head partition
    int vocab_full;  // the full model's vocab_size
    void (*allreduce_sum)(void *ctx, float *buf, size_t n);
    void (*allreduce_max)(void *ctx, float *buf, size_t n);
    void *ctx;
    // 0: the hooks take host buffers (MPI). 1: device buffers (NCCL between the group's GPUs); a
    // GPU partition then hands them its device memory without a copy through the host.
    int device_buffers;
} TensorParallel;

// The config of rank `rank`'s partition of `full` split over `size` ranks: num_heads, num_kv_heads
// and intermediate_size divided by size, vocab_size the rank's range [*vocab_start, + vocab_size)
// (rows split as evenly as possible, the first ranks taking one more). Returns 0, or -1 with an
// error naming what does not divide (num_kv_heads 2 over pipeline.tp 4) and the fix.
int tp_local_config(const ModelConfig *full, int rank, int size, ModelConfig *local,
                    int *vocab_start);

// Copies rank `rank`'s partition out of a full parameter slab (layout of `full`) into a local slab
// (layout of tp_local_config), tensor by tensor.
void tp_partition_from_full(const ModelConfig *full, int rank, int size, const float *full_params,
                            float *local_params);
// The reverse: writes rank `rank`'s partition into its place in a full slab (replicated tensors are
// copied too; every rank holds the same values).
void tp_partition_to_full(const ModelConfig *full, int rank, int size, const float *local_params,
                          float *full_params);

// The same for the local elements [lo, hi) of the partition only, held in chunk [hi - lo]: a
// gather that streams a partition in buckets writes each bucket where it goes.
void tp_partition_range_to_full(const ModelConfig *full, int rank, int size, const float *chunk,
                                size_t lo, size_t hi, float *full_params);

// The share of a local slab that counts once in a global sum over the tp group (for the
// gradient norm): 1 for partitioned tensors, and for replicated ones 1 on rank 0 and 0 elsewhere.
// Fills mask [local layout.total] with 0/1 bytes.
void tp_norm_mask(const ModelConfig *full, int rank, int size, unsigned char *mask);
// The same per tensor kind: 1 when rank's partition of kind k counts in the group's norm.
int tp_kind_counts(ParamKind k, int rank);

#endif
