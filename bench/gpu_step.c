/* gpu_step.c - one training step on the GPU, timed: the data (uint8 crops
   from pinned host memory, the colour ops, flip and normalize by
   ssl_cuda_augment_u8), then ssl_train_step (both views forward, the loss,
   backward, the online probe, the optimizer), as ./train device=cuda runs
   it. bench/gpu_step_torch.py runs the same step in PyTorch; bench/gpu_report.sh
   runs both on one GPU and writes the table.

     build/gpu_step depth=50 res=224 bs=256 precision=bf16 steps=20
     build/gpu_step depth=18 stem=cifar res=32 bs=512 precision=bf16

   split=1 (default) waits for the GPU at each phase's end, so the phases
   are device times that add up to the step (those waits cost a little);
   split=0 waits only where the step must (the loss, the probe's top-1) and
   gives the plain throughput. emulate=1 runs the same code on the host
   (ssl.cu's emulation; tiny sizes only) to check the program itself.
   The JSON line follows the summary; profile=1 adds the time per kind of
   work and per GEMM shape after it (the profile's events do not change the
   step's synchronisation). */
#define SSL_IMPLEMENTATION
#include "ssl.h"

typedef struct {
    char method[SSL_STR], precision[SSL_STR], stem[SSL_STR], projector[SSL_STR], recipe[SSL_STR], conv[SSL_STR],
        keep_cols[SSL_STR];
    int64_t depth, bs, res, steps, warmup, split, emulate, classes, seed, profile;
    double width, peak_gbs;
} bench_cfg;
static const ssl_opt OPTS[] = {
    SSL_OPT_C(bench_cfg, method, "simclr", "simclr|vicreg|barlow|byol", "the loss"),
    SSL_OPT_C(bench_cfg, precision, "bf16", "bf16|fp32", "bf16: activations and GEMM operands"),
    SSL_OPT_C(bench_cfg, stem, "imagenet", "imagenet|cifar", "ResNet stem"),
    SSL_OPT_C(bench_cfg, conv, "gemm", "gemm|cudnn", "convolutions: im2col + cuBLAS, or cuDNN (a CUDNN=1 build)"),
    SSL_OPT_C(bench_cfg, keep_cols, "auto", "auto|yes|no", "keep the convolutions' im2col columns for the backward (auto: when they fit)"),
    SSL_OPT_S(bench_cfg, projector, "2048-2048-128", "projector widths"),
    SSL_OPT_S(bench_cfg, recipe, "simclr", "view recipe (ssl_view_preset)"),
    SSL_OPT_I(bench_cfg, depth, "50", 18, 50, "ResNet depth (18, 34, 50)"),
    SSL_OPT_I(bench_cfg, bs, "256", 2, 1 << 16, "images per step (each gives two views)"),
    SSL_OPT_I(bench_cfg, res, "224", 8, 1024, "view resolution"),
    SSL_OPT_I(bench_cfg, steps, "20", 1, 100000, "timed steps"),
    SSL_OPT_I(bench_cfg, warmup, "3", 1, 1000, "untimed steps first (planning, cuBLAS heuristics)"),
    SSL_OPT_I(bench_cfg, split, "1", 0, 1, "1: per-phase device times; 0: throughput only"),
    SSL_OPT_I(bench_cfg, emulate, "0", 0, 1, "run ssl.cu's emulation on the host (tiny sizes)"),
    SSL_OPT_I(bench_cfg, classes, "1000", 0, 100000, "online probe classes (0 = no probe)"),
    SSL_OPT_I(bench_cfg, seed, "0", 0, 1LL << 62, "seed"),
    SSL_OPT_F(bench_cfg, width, "1", 0.01, 8, "ResNet width multiplier"),
    SSL_OPT_I(bench_cfg, profile, "0", 0, 1, "1: time per kind of work and per GEMM shape (CUDA events)"),
    SSL_OPT_F(bench_cfg, peak_gbs, "0", 0, 1e5, "the GPU's memory bandwidth in GB/s for the profile's % column (0: the device's own, from its memory clock and bus width; 3350 in emulation)"),
};
#define NOPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

int main(int argc, char **argv) {
    bench_cfg c;
    ssl_config_defaults(OPTS, NOPTS, &c);
    if (ssl_config_parse(OPTS, NOPTS, &c, argc - 1, argv + 1, NULL, 0, NULL)) {
        fprintf(stderr, "gpu_step: %s\n", ssl_last_error());
        return 1;
    }
    if (c.emulate) ssl_cuda_set_emulation(1);
    else if (ssl_cuda_device_count() < 1) {
        fprintf(stderr, "gpu_step: no CUDA device is visible (emulate=1 runs the code on the host)\n");
        return 1;
    }
    ssl_cuda_set_precision(!strcmp(c.precision, "bf16"));
    if (ssl_cuda_set_conv(c.conv)) {
        fprintf(stderr, "gpu_step: %s\n", ssl_last_error());
        return 1;
    }
    if (!strcmp(c.keep_cols, "yes") && strcmp(c.conv, "gemm")) { /* as ./train: kept columns are the GEMM path's */
        fprintf(stderr, "gpu_step: keep_cols=yes sends every convolution that needs im2col to the GEMM path: conv=%s "
                        "would be the GEMM path in name only; use keep_cols=auto or no\n", c.conv);
        return 1;
    }
    char csuf[SSL_STR + 32] = ""; /* "+cudnn": the JSON's impl names the engine */
    if (strcmp(c.conv, "gemm")) snprintf(csuf, sizeof csuf, "+%s", c.conv);
    char dev[256] = "emulation on the host";
    if (!c.emulate) ssl_cuda_describe(0, dev, sizeof dev);

    ssl_model_config mc = ssl_model_config_default();
    mc.depth = (int)c.depth, mc.cifar_stem = !strcmp(c.stem, "cifar"), mc.width = c.width, mc.seed = (uint64_t)c.seed;
    snprintf(mc.projector, sizeof mc.projector, "%.255s", c.projector);
    int method = ssl_method_parse(c.method);
    if (method == SSL_METHOD_BYOL) {
        const char *last = strrchr(c.projector, '-');
        snprintf(mc.predictor, sizeof mc.predictor, "4096-%.32s", last ? last + 1 : c.projector);
    }
    ssl_train_config tc = ssl_train_config_default(method);
    tc.lr = 1.0, tc.total_steps = 100000, tc.warmup_steps = 10, tc.probe_classes = (int)c.classes;
    tc.device = SSL_DEV_CUDA, tc.sync_phases = (int)c.split;
    ssl_trainer t;
    if (ssl_trainer_init(&t, &mc, &tc)) { fprintf(stderr, "gpu_step: %s\n", ssl_last_error()); return 1; }
    t.online.keep_cols = !strcmp(c.keep_cols, "yes") ? 1 : !strcmp(c.keep_cols, "no") ? 0 : -1;

    /* the loader's output: two views of uint8 crops in pinned memory, and
       their augmentation parameters (drawn per step, outside the timing, as
       the loader's threads do) */
    int n = (int)c.bs, r = (int)c.res;
    size_t px = (size_t)n * r * r * 3;
    uint8_t *u8[2];
    float *views[2];
    ssl_aug_params *params[2];
    ssl_view_recipe rec[2];
    ssl_rng g = ssl_rng_make((uint64_t)c.seed, 1, 0, 0, 0);
    for (int v = 0; v < 2; v++) {
        if (ssl_view_preset(c.recipe, v, r, &rec[v])) { fprintf(stderr, "gpu_step: %s\n", ssl_last_error()); return 1; }
        u8[v] = (uint8_t *)ssl_cuda_host_alloc(px, "uint8 crops");
        for (size_t i = 0; i < px; i++) u8[v][i] = (uint8_t)(ssl_rng_u32(&g) >> 24);
        views[v] = (float *)ssl_cuda_malloc(sizeof(float) * px, "augmented views");
        params[v] = (ssl_aug_params *)ssl_malloc(sizeof(ssl_aug_params) * (size_t)n, "augmentation parameters");
    }
    uint32_t *labels = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (size_t)n, "labels");
    for (int i = 0; i < n; i++) labels[i] = c.classes ? (uint32_t)(i % c.classes) : 0;

    double sum[6] = {0}, best = 1e30, tstart = 0, blocked0 = 0;
    float loss = 0;
    for (int64_t s = 0; s < c.warmup + c.steps; s++) {
        if (s == c.warmup) {
            ssl_cuda_sync(), tstart = ssl_now(), blocked0 = ssl_cuda_blocked_s();
            if (c.profile) ssl_cuda_profile(1);
        }
        for (int v = 0; v < 2; v++)
            for (int i = 0; i < n; i++) params[v][i] = ssl_view_draw(&rec[v], r, r, (uint64_t)c.seed, (uint32_t)s, (uint32_t)i, (uint32_t)v);
        if (c.split) ssl_cuda_sync();
        double t0 = ssl_now();
        for (int v = 0; v < 2; v++)
            if (ssl_cuda_augment_u8(u8[v], params[v], n, r, r, 255.0f, rec[v].mean, rec[v].std, views[v])) {
                fprintf(stderr, "gpu_step: %s\n", ssl_last_error());
                return 1;
            }
        if (c.split) ssl_cuda_sync();
        double t1 = ssl_now();
        ssl_step_stats st;
        if (ssl_train_step(&t, views[0], views[1], labels, n, r, r, &st)) {
            fprintf(stderr, "gpu_step: %s\n", ssl_last_error());
            return 1;
        }
        if (c.split) ssl_cuda_sync();
        double t2 = ssl_now();
        loss = st.loss;
        if (s < c.warmup) continue;
        double d[6] = {t1 - t0, st.t_forward, st.t_loss, st.t_backward, st.t_optim, t2 - t0};
        for (int i = 0; i < 6; i++) sum[i] += d[i];
        if (d[5] < best) best = d[5];
    }
    /* the host's own time a step: issuing it (launches, host math), its
       wall time less the time it was blocked on the device; near the
       step's time, the GPU waits for the host (launch-bound). Taken before
       the profile stops (which waits for its events). */
    double host = (ssl_now() - tstart - (ssl_cuda_blocked_s() - blocked0)) / (double)c.steps;
    if (c.profile) ssl_cuda_profile(0); /* before the final wait, which is the benchmark's, not the step's */
    ssl_cuda_sync();
    /* throughput: first timed step to the device's last operation (split=0
       lets the host run ahead of the GPU, so per-step sums would not be) */
    double k = (double)c.steps, step = (ssl_now() - tstart) / k;
    printf("ssl.h%s %s resnet%lld %s-stem %dx%d width %g, 2 views x %d, %s, %s, split=%lld: step %.2f ms (best %.2f)",
           csuf, c.method, (long long)c.depth, c.stem, r, r, c.width, n, c.precision, dev, (long long)c.split, 1e3 * step, 1e3 * best);
    if (c.split)
        printf(" = data %.2f + forward %.2f + loss %.2f + backward %.2f + probe/optimizer %.2f", 1e3 * sum[0] / k,
               1e3 * sum[1] / k, 1e3 * sum[2] / k, 1e3 * sum[3] / k, 1e3 * sum[4] / k);
    printf("  -> %.0f images/s (%.0f views/s); last loss %.4f\n", n / step, 2 * n / step, loss);
    printf("host: %.2f ms a step issuing it (%.0f%% of the step; the rest blocked on the device)\n", 1e3 * host, 100 * host / step);
    double act_gb = (double)t.online.slots * t.online.slot_bytes / 1e9, cols_gb = (double)t.online.slots * t.online.cols_bytes / 1e9;
    printf("activations %.2f GB for the two views; im2col columns %s (%.2f GB)\n", act_gb,
           t.online.planned_cols ? "kept from the forward" : "rebuilt in the backward", cols_gb);
    printf("{\"impl\": \"ssl.h%s\", \"method\": \"%s\", \"depth\": %lld, \"stem\": \"%s\", \"res\": %d, \"bs\": %d, \"precision\": \"%s\", "
           "\"split\": %lld, \"step_ms\": %.3f, \"best_ms\": %.3f, \"data_ms\": %.3f, \"forward_ms\": %.3f, \"loss_ms\": %.3f, "
           "\"backward_ms\": %.3f, \"optim_ms\": %.3f, \"images_per_s\": %.1f, \"loss\": %.5f, \"keep_cols\": %d, \"act_gb\": %.3f, \"plan_gb\": %.3f, \"host_ms\": %.3f, \"recipe\": \"%s\"}\n",
           csuf, c.method, (long long)c.depth, c.stem, r, n, c.precision, (long long)c.split,
           1e3 * step, 1e3 * best,
           1e3 * sum[0] / k, 1e3 * sum[1] / k, 1e3 * sum[2] / k, 1e3 * sum[3] / k, 1e3 * sum[4] / k, n / step, loss,
           t.online.planned_cols, act_gb, act_gb + 3.0 * t.online.grad_bytes / 1e9, 1e3 * host, c.recipe);
    if (c.profile) {
        printf("\nprofile of the %lld timed steps (times per step; GB/s counts the least traffic each op needs):\n\n",
               (long long)c.steps);
        double peak = c.peak_gbs > 0 ? c.peak_gbs : ssl_cuda_peak_gbs(0);
        ssl_cuda_profile_report(stdout, (int)c.steps, peak > 0 ? peak : 3350);
    }
    for (int v = 0; v < 2; v++) {
        ssl_cuda_host_free(u8[v]);
        ssl_cuda_free(views[v]);
        free(params[v]);
    }
    free(labels);
    ssl_trainer_free(&t);
    return 0;
}
