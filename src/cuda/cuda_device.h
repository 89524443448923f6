/* The CUDA devices this process can see, callable from C. */
#ifndef GEMC_CUDA_DEVICE_H
#define GEMC_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or no device (never an error). */
int gemc_cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 79.2 GiB" for device `index` into buf. Returns 0, or -1 when
   the device does not exist. */
int gemc_cuda_device_describe(int index, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
