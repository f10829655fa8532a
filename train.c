/* train.c - ./train METHOD key=value ...: self-supervised pretraining.

   Not implemented yet: the engine (ResNets, the four losses, LARS/AdamW)
   is the next piece of work. Until then this program says so and exits
   non-zero, so no script mistakes it for a trainer. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
#ifdef SSL_CUDA
    int n = ssl_cuda_device_count();
    char d[256] = "none";
    if (n > 0) ssl_cuda_describe(0, d, sizeof d);
    fprintf(stderr, "train: built with CUDA; %d GPU(s) visible (%s)\n", n, d);
#endif
    fprintf(stderr, "train: the training engine is not implemented yet (ssl.h sections 7-11)\n");
    return 1;
}
