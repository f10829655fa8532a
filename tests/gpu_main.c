/* The GPU suite: every CUDA path against the CPU reference. Built and run by
   `make test-gpu` on a machine with an NVIDIA GPU. */
#define SSL_IMPLEMENTATION
#define TEST_MAIN
#include "test.h"

TEST(gpu_is_visible) {
    int n = ssl_cuda_device_count();
    CHECK(n > 0, "no CUDA device visible");
    char d[256];
    if (n > 0 && ssl_cuda_describe(0, d, sizeof d) == 0) printf("    device 0: %s\n", d);
}

TEST(gpu_rng_matches_host) {
    /* the same Philox streams on both devices, bit for bit */
    enum { N = 100000 };
    static float dev[N];
    CHECK_OK(ssl_cuda_rng_uniform(1234567, SSL_RNG_CROP, dev, N));
    int diff = 0;
    for (int i = 0; i < N; i++) {
        ssl_rng r = ssl_rng_make(1234567, 0, (uint32_t)i, 0, SSL_RNG_CROP);
        if (ssl_rng_uniform(&r) != dev[i]) diff++;
    }
    CHECK_EQ(diff, 0);
}
