// Tensor-core tiles (nvcuda::wmma, bf16 16x16x16 with fp32 accumulators) for the kernels that
// use them, real or emulated (tests/cuda/emu/mma_emu.h).
#ifndef GEMC_CUDA_MMA_CUH
#define GEMC_CUDA_MMA_CUH

#include "model/cuda/cuda_common.cuh"

#ifdef GEMC_CUDA_EMU
#include <type_traits>

#include "cuda/emu/mma_emu.h"
#else
#include <mma.h>
#endif

namespace wmma = nvcuda::wmma;

#endif
