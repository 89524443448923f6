// The row maps of the shared-prefix attention (prefix.cuh): a block per row, its threads over
// the row's elements.
#include "model/cuda/prefix.cuh"

namespace {

const int ROW_THREADS = 32; // one warp a row: the rows are short (a few heads)

__device__ __forceinline__ bf16 zero_like(bf16) {
    return f2bf(0.0f);
}
__device__ __forceinline__ float zero_like(float) {
    return 0.0f;
}

template <class T>
__global__ void gather_rows_kernel(T *dst, const T *src, const int *map, int width) {
    const int e = blockIdx.x, from = map[e];
    T *d = dst + (size_t)e * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x)
        d[c] = from >= 0 ? src[(size_t)from * width + c] : zero_like(T());
}

__global__ void sum_rows_kernel(float *dst, const float *src, const int *start, const int *list,
                                int width) {
    const int i = blockIdx.x, t0 = start[i], t1 = start[i + 1];
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        float acc = 0.0f;
        for (int t = t0; t < t1; t++) acc += src[(size_t)list[t] * width + c];
        dst[(size_t)i * width + c] = acc;
    }
}

template <class T>
void gather(T *dst, const T *src, const int *map, int rows, int width, cudaStream_t stream) {
    if (rows <= 0 || width <= 0) return;
    LAUNCH(rows, ROW_THREADS, 0, stream, gather_rows_kernel<T>)(dst, src, map, width);
    cudaCheckLaunch();
}

} // namespace

void gather_rows(bf16 *dst, const bf16 *src, const int *map, int rows, int width,
                 cudaStream_t stream) {
    gather(dst, src, map, rows, width, stream);
}

void gather_rows(float *dst, const float *src, const int *map, int rows, int width,
                 cudaStream_t stream) {
    gather(dst, src, map, rows, width, stream);
}

void sum_rows(float *dst, const float *src, const int *start, const int *list, int rows, int width,
              cudaStream_t stream) {
    if (rows <= 0 || width <= 0) return;
    LAUNCH(rows, ROW_THREADS, 0, stream, sum_rows_kernel)(dst, src, start, list, width);
    cudaCheckLaunch();
}
