// Device discovery for the CUDA backend (gpu.h).
#ifndef GEMC_CUDA_EMU
#include <dlfcn.h>
#endif

#include "model/cuda/cuda_common.cuh"
#include "model/gpu.h"

// The runtime needs the driver's libcuda.so.1. Without it there is no device, and asking the
// runtime anyway would only leave its half-made state behind (allocations it never frees, which
// a sanitizer build reports as leaks at exit).
static bool driver_present() {
#ifdef GEMC_CUDA_EMU
    return true;
#else
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h) dlclose(h);
    return h != nullptr;
#endif
}

extern "C" int gpu_device_count(void) {
    if (!driver_present()) return 0;
    int n = 0;
    // no driver or no device is a normal condition on CPU machines, not an error
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int gpu_describe(int index, char *buf, size_t n) {
    if (index < 0 || index >= gpu_device_count()) return -1;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, index));
    std::snprintf(buf, n, "%s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                  (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

extern "C" const char *gpu_unavailable(void) {
    static char why[256];
    if (!driver_present()) {
        std::snprintf(why, sizeof why,
                      "no CUDA device: the NVIDIA driver (libcuda.so.1) is not installed (HINT: "
                      "install the driver, or set run.device=cpu)");
        return why;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    (void)cudaGetLastError();
    if (e != cudaSuccess)
        std::snprintf(why, sizeof why,
                      "no CUDA device: %s (HINT: check nvidia-smi and CUDA_VISIBLE_DEVICES, or "
                      "set run.device=cpu)",
                      cudaGetErrorString(e));
    else if (n == 0)
        std::snprintf(why, sizeof why,
                      "no CUDA device is visible (HINT: check nvidia-smi and "
                      "CUDA_VISIBLE_DEVICES, or set run.device=cpu)");
    else
        std::snprintf(why, sizeof why, "%d CUDA device(s) present", n);
    return why;
}

extern "C" int gpu_device_uuid(int index, char *buf, size_t n) {
    if (index < 0 || index >= gpu_device_count()) return -1;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, index));
    const unsigned char *u = (const unsigned char *)prop.uuid.bytes;
    int at = std::snprintf(buf, n, "GPU-");
    for (int i = 0; i < 16 && at > 0 && (size_t)at < n; i++)
        at += std::snprintf(buf + at, n - at, "%02x", u[i]);
    return 0;
}
