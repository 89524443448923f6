// The GPU test suites (tests/cuda/) and what they share. The same sources build two runners:
// build/test_cuda on the device (nvcc) and build/test_cuda_emu under the CPU emulator
// (GEMC_CUDA_EMU). Shapes are small under the emulator and model-sized on the device.
#ifndef GEMC_CUDA_TESTS_H
#define GEMC_CUDA_TESTS_H

#include <cstdint>
#include <vector>

#include "model/cuda/cuda_common.cuh"

extern "C" {
#include "base/common.h"
#include "model/cpu/cpu_kernels.h"
#include "../tests.h"
}

void register_cuda_gemm_tests(void);      // test_gemm.cu: the row-major cuBLASLt wrapper
void register_cuda_layer_tests(void);     // test_layers.cu: norms, rope, swiglu, embedding, adamw
void register_cuda_attention_tests(void); // test_attention.cu: training and decode attention
void register_cuda_head_tests(void);      // test_head.cu: log-prob/entropy head and sampling
void register_cuda_model_tests(void);     // test_model.cu: the whole model and a SEGA run

#ifdef GEMC_CUDA_EMU
#define CUDA_TEST_BIG 0 // the emulator runs a thread at a time: small shapes
#else
#define CUDA_TEST_BIG 1
#endif

// Uniform values in [-scale, scale), deterministic from seed.
std::vector<float> rand_vec(size_t n, uint64_t seed, float scale = 1.0f);
// Rounds each value to the nearest bf16 (so the CPU reference sees the GPU's inputs).
void round_bf16(std::vector<float> &v);

// Device copies. to_dev_bf16 rounds to bf16; from_dev_bf16 widens back to float.
template <class T> T *dev_alloc(size_t n) {
    T *p = nullptr;
    cudaCheck(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(T)));
    return p;
}
template <class T> T *to_dev(const std::vector<T> &h) {
    T *p = dev_alloc<T>(h.size());
    cudaCheck(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <class T> std::vector<T> from_dev(const T *d, size_t n) {
    std::vector<T> h(n);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}
bf16 *to_dev_bf16(const std::vector<float> &h);
std::vector<float> from_dev_bf16(const bf16 *d, size_t n);

// max |got - want| / max(max |want|, 1e-30); infinite when got holds a NaN or an Inf where want
// is finite, so a NaN never passes. Prints the worst element when above tol.
double rel_err(const char *what, const std::vector<float> &got, const std::vector<float> &want,
               double tol);
#define CHECK_REL(what, got, want, tol) CU_ASSERT(rel_err(what, got, want, tol) <= (tol))

// Expected relative errors (issue text: fp32 about 1e-5, bf16 about 1e-2).
#define TOL_F32  2e-5
#define TOL_BF16 2e-2

#endif
