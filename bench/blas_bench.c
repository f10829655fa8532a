/* blas_bench - sgemm through ssl.h's ssl_gemm at the shapes of the demo
   network's convolutions (ResNet-18 at width 0.25 on 28x28 images, a batch
   of 32: im2col rows x output channels x 9 input channels), one thread,
   best of 7. Run it as it is and with OPENBLAS_CORETYPE=Prescott (what
   OpenBLAS falls back to on a CPU model it does not know) to see what the
   kernels' choice costs:

       make build/blas_bench && build/blas_bench && OPENBLAS_CORETYPE=Prescott build/blas_bench
*/
#define SSL_IMPLEMENTATION
#include "ssl.h"

int main(void) {
#ifdef SSL_OPENBLAS
    openblas_set_num_threads(1);
#endif
    static const int shapes[][3] = {{25088, 16, 144}, {25088, 32, 288}, {6272, 64, 576}, {1568, 128, 1152}, {256, 256, 256}};
    printf("kernels: %s\n", *ssl_blas_kernels() ? ssl_blas_kernels() : "plain loops (no OpenBLAS)");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = ssl_malloc(sizeof(float) * (size_t)M * K, "A"), *b = ssl_malloc(sizeof(float) * (size_t)K * N, "B");
        float *c = ssl_malloc(sizeof(float) * (size_t)M * N, "C");
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = 1.0f / (float)(i % 7 + 1);
        for (size_t i = 0; i < (size_t)K * N; i++) b[i] = 1.0f / (float)(i % 5 + 1);
        double best = 1e30;
        for (int r = 0; r < 7; r++) {
            double t0 = ssl_now();
            ssl_gemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double t = ssl_now() - t0;
            if (t < best) best = t;
        }
        printf("M=%-6d N=%-4d K=%-5d %6.1f GFLOP/s\n", M, N, K, 2.0 * M * N * K / best / 1e9);
        free(a), free(b), free(c);
    }
    return 0;
}
