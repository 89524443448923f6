// The runner of the GPU tests: build/test_cuda on the device, build/test_cuda_emu under the CPU
// emulator. Without a device every test is skipped with one line saying why.
#include <cstdio>

#include <CUnit/Basic.h>

#include "cuda_tests.h"

extern "C" {
#include "model/gpu.h"
}

int main(int argc, char **argv) {
#ifndef GEMC_CUDA_EMU
    if (gpu_device_count() == 0) {
        std::printf("GPU tests skipped: %s\n", gpu_unavailable());
        return 0;
    }
#endif
    char dev[256];
    if (gpu_describe(0, dev, sizeof dev) == 0) std::printf("GPU tests on %s\n", dev);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    register_cuda_gemm_tests();
    register_cuda_layer_tests();
    register_cuda_attention_tests();
    register_cuda_head_tests();
    register_cuda_model_tests();
    return test_run_suites(argc, argv);
}
