// Shared prefixes (PackedBatch.prefix) on the CUDA backend: the attention runs over an expanded
// batch, in which each sequence with a prefix carries a copy of its prefix's rows in front of
// its own; everything else (the projections, the MLP, the head: all per row) runs once on the
// packed rows. So a group's prompt goes through the GEMMs once, and the attention kernels stay
// those of a plain packed batch.
//
// The maps, built on the host from the batch (gpu_model.cu):
//   src [NE]   the packed row each expanded row takes its q, k, v (and out, lse) from;
//   dsrc [NE]  the packed row of the attention's output gradient, -1 for a copied prefix row
//              (its own output is not the model's: no gradient enters there);
//   own [N]    the expanded row that is packed row i's own (its prefix's copies aside);
//   sum_start [N+1], sum_list [NE]: the expanded rows of packed row i (its own first, then its
//              copies in batch order), whose key and value gradients add up to row i's.
#ifndef GEMC_CUDA_PREFIX_CUH
#define GEMC_CUDA_PREFIX_CUH

#include "model/cuda/cuda_common.cuh"

// dst[e] = map[e] >= 0 ? src[map[e]] : 0, rows of `width` elements, e < rows (WRITES).
void gather_rows(bf16 *dst, const bf16 *src, const int *map, int rows, int width,
                 cudaStream_t stream);
void gather_rows(float *dst, const float *src, const int *map, int rows, int width,
                 cudaStream_t stream);
// dst[i] = sum over t in [start[i], start[i+1]) in order of src[list[t]], rows of `width`
// floats, i < rows (WRITES): the same bits on every run.
void sum_rows(float *dst, const float *src, const int *start, const int *list, int rows, int width,
              cudaStream_t stream);

#endif
