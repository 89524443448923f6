// Checks for every CUDA and cuBLASLt call and every kernel launch: a failure names the call
// site and the error, then exits with status 1.
#ifndef GEMC_CUDA_COMMON_CUH
#define GEMC_CUDA_COMMON_CUH

#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

inline void cuda_check(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        std::fprintf(stderr, "gemc: error: CUDA failed at %s:%d: %s (%s)\n", file, line,
                     cudaGetErrorString(err), cudaGetErrorName(err));
        std::exit(1);
    }
}
#define cudaCheck(call) cuda_check((call), __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at the launch site.
#define cudaCheckLaunch() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

#endif
