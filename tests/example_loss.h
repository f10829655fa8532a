/* The README's example of a loss of one's own ("Edit a loss"): SimCLR
   plus a weighted alignment term (the mean squared distance between the
   two views' embeddings), written on ssl.h's public functions
   only, so it runs wherever the tensors are, CPU or GPU. Tested as the
   README shows it: gradients by finite differences (test_engine.c), the
   device against the CPU (gpu_ops.c). */
static int my_loss(const ssl_tensor *z1, const ssl_tensor *z2, float tau, float align, float *loss, ssl_tensor *dz1,
                   ssl_tensor *dz2, ssl_buf *scratch) {
    float contrast, dist;
    if (ssl_simclr_loss(z1, z2, tau, &contrast, dz1, dz2, scratch)) return -1; /* sets dz1, dz2 */
    if (ssl_mse(z1, z2, align, &dist, dz1, dz2)) return -1;                     /* adds its gradients */
    *loss = contrast + dist;
    return 0;
}
