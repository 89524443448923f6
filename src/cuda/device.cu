// Device discovery for the CUDA backend.
#include "cuda_common.cuh"
#include "cuda_device.h"

extern "C" int gemc_cuda_device_count(void) {
    int n = 0;
    // no driver or no device is a normal condition on CPU machines, not an error
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int gemc_cuda_device_describe(int index, char *buf, size_t n) {
    if (index < 0 || index >= gemc_cuda_device_count()) return -1;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, index));
    std::snprintf(buf, n, "%s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                  (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}
