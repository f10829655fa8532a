/* cpu_step_bench.c - CPU time of one SimCLR training step of ResNet-18
   (CIFAR stem, 32x32, 2 views, projector 2048-2048-128, LARS), split into
   forward, loss, backward and optimizer (+ online probe), as
   ssl_train_step measures them. bench/cpu_step_torch.py does the same step
   in PyTorch on the same CPU and threads.

     cc -O3 -march=native ... -I. bench/cpu_step_bench.c -o build/cpu_step_bench ...
     build/cpu_step_bench bs=256 steps=3 threads=2 width=1 */
#define SSL_IMPLEMENTATION
#include "ssl.h"

typedef struct { int64_t bs, steps, threads, res, keep_cols; double width; } bench_cfg;
static const ssl_opt OPTS[] = {
    SSL_OPT_I(bench_cfg, bs, "256", 2, 1 << 16, "batch size (each image gives two views)"),
    SSL_OPT_I(bench_cfg, steps, "3", 1, 1000, "timed steps (after one untimed warm-up step)"),
    SSL_OPT_I(bench_cfg, threads, "0", 0, 1024, "BLAS threads (0 = all cores)"),
    SSL_OPT_I(bench_cfg, res, "32", 8, 1024, "resolution"),
    SSL_OPT_F(bench_cfg, width, "1", 0.01, 8, "ResNet width multiplier"),
    SSL_OPT_I(bench_cfg, keep_cols, "0", 0, 1, "keep the convolutions' im2col columns for the backward (the model's keep_cols)"),
};
#define NOPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

int main(int argc, char **argv) {
    bench_cfg c;
    ssl_config_defaults(OPTS, NOPTS, &c);
    if (ssl_config_parse(OPTS, NOPTS, &c, argc - 1, argv + 1, NULL, 0, NULL)) {
        fprintf(stderr, "cpu_step_bench: %s\n", ssl_last_error());
        return 1;
    }
#ifdef SSL_OPENBLAS
    if (c.threads) openblas_set_num_threads((int)c.threads);
#endif
    ssl_model_config mc = ssl_model_config_default();
    mc.cifar_stem = 1;
    mc.width = c.width;
    snprintf(mc.projector, sizeof mc.projector, "2048-2048-128");
    ssl_train_config tc = ssl_train_config_default(SSL_METHOD_SIMCLR);
    tc.lr = 1.0, tc.total_steps = 1000, tc.probe_classes = 10;
    ssl_trainer t;
    if (ssl_trainer_init(&t, &mc, &tc)) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
    t.online.keep_cols = (int)c.keep_cols;
    int n = (int)c.bs, r = (int)c.res;
    size_t px = (size_t)n * r * r * 3;
    float *v1 = malloc(px * sizeof(float)), *v2 = malloc(px * sizeof(float));
    uint32_t *labels = malloc(sizeof(uint32_t) * n);
    ssl_rng g = ssl_rng_make(1, 0, 0, 0, 0);
    for (size_t i = 0; i < px; i++) v1[i] = ssl_rng_normal(&g), v2[i] = ssl_rng_normal(&g);
    for (int i = 0; i < n; i++) labels[i] = i % 10;
    double sum[5] = {0};
    for (int s = 0; s <= c.steps; s++) {
        ssl_step_stats st;
        double t0 = ssl_now();
        if (ssl_train_step(&t, v1, v2, labels, n, r, r, &st)) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
        double total = ssl_now() - t0;
        if (s == 0) continue; /* warm-up: planning, first touches */
        sum[0] += st.t_forward, sum[1] += st.t_loss, sum[2] += st.t_backward, sum[3] += st.t_optim, sum[4] += total;
    }
    double k = (double)c.steps;
    printf("ssl.h  OpenBLAS kernels %s\n", ssl_blas_kernels());
    printf("ssl.h  resnet18 cifar-stem %dx%d width %g, 2 views x %d, threads %lld: step %.3f s = forward %.3f + loss %.4f + "
           "backward %.3f + optimizer %.4f  (%.1f img/s)\n",
           r, r, c.width, n, (long long)c.threads, sum[4] / k, sum[0] / k, sum[1] / k, sum[2] / k, sum[3] / k, n / (sum[4] / k));
    ssl_trainer_free(&t);
    free(v1); free(v2); free(labels);
    return 0;
}
