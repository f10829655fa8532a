/* probe.c - ./probe: linear, MLP and kNN evaluation of a checkpoint, and
   export to PyTorch.

   Not implemented yet: it needs checkpoints from ./train. Until then this
   program says so and exits non-zero. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "probe: not implemented yet (needs the training engine and its checkpoints)\n");
    return 1;
}
