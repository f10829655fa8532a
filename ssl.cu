// ssl.cu - the CUDA backend of ssl.h.
//
// Kernels, cuBLAS(Lt) and NCCL glue behind the ssl_cuda_* functions that
// ssl.h declares. Per-element math comes from ssl.h's SSL_HD functions, so
// the GPU computes what the CPU reference computes.
//
// Build: nvcc -arch=sm_90 -c ssl.cu (the Makefile does this when it finds
// nvcc). Every CUDA call is checked; a failure stops with file, line and
// CUDA's own error string.
#define SSL_CUDA 1
#include "ssl.h"

#include <cuda_runtime.h>
#include <stdlib.h>

#define SSL_CUDA_CHECK(call)                                                              \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess)                                                            \
            ssl__cuda_die(__FILE__, __LINE__, #call, cudaGetErrorString(e_));             \
    } while (0)

static void ssl__cuda_die(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "ssl.cu: CUDA error at %s:%d: %s: %s\n", file, line, what, msg);
    abort();
}

extern "C" int ssl_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" int ssl_cuda_describe(int device, char *out, size_t cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return -1;
    snprintf(out, cap, "%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor, p.multiProcessorCount,
             p.totalGlobalMem / 1073741824.0);
    return 0;
}

__global__ void ssl__rng_uniform_kernel(uint64_t seed, uint32_t op, float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ssl_rng r = ssl_rng_make(seed, 0, (uint32_t)i, 0, op);
    out[i] = ssl_rng_uniform(&r);
}

extern "C" int ssl_cuda_rng_uniform(uint64_t seed, uint32_t op, float *out, int n) {
    float *d = NULL;
    SSL_CUDA_CHECK(cudaMalloc(&d, sizeof(float) * (size_t)n));
    ssl__rng_uniform_kernel<<<(n + 255) / 256, 256>>>(seed, op, d, n);
    SSL_CUDA_CHECK(cudaGetLastError());
    SSL_CUDA_CHECK(cudaMemcpy(out, d, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost));
    SSL_CUDA_CHECK(cudaFree(d));
    return 0;
}
