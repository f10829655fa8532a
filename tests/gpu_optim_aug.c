/* Section 10's optimizers over a device parameter table, and the loader's
   GPU augmentation, against the CPU reference (see gpu_common.h). */
#include "gpu_common.h"

/* A small table: a conv weight (decayed, LARS-adapted), a linear weight, a
   bias, BN gamma/beta, a buffer (never updated). */
static void make_table(ssl_param_table *t) {
    memset(t, 0, sizeof *t);
    int64_t s1[4] = {5, 3, 3, 7}, s2[2] = {11, 13}, s3[1] = {11}, s4[1] = {5};
    ssl_params_add(t, "conv1.weight", SSL_PARAM_WEIGHT, 4, s1);
    ssl_params_add(t, "bn1.weight", SSL_PARAM_BN_WEIGHT, 1, s4);
    ssl_params_add(t, "bn1.bias", SSL_PARAM_BN_BIAS, 1, s4);
    ssl_params_add(t, "bn1.running_mean", SSL_PARAM_BUFFER, 1, s4);
    ssl_params_add(t, "fc.weight", SSL_PARAM_WEIGHT, 2, s2);
    ssl_params_add(t, "fc.bias", SSL_PARAM_BIAS, 1, s3);
    ssl_params_alloc(t);
    ssl_rng r = ssl_rng_make(99, 0, 0, 0, 0);
    for (int64_t i = 0; i < t->total; i++) t->data[i] = ssl_rng_range(&r, -1, 1);
}

static void optim_case(int gpu, int kind) {
    ssl_param_table t;
    make_table(&t);
    size_t bytes = sizeof(float) * (size_t)t.total;
    ssl_param_table dt = t; /* same table, values on the mode's side */
    dt.dev = SSL_DEV_CUDA;
    dt.data = g_alloc(gpu, (size_t)t.total);
    dt.grad = g_alloc(gpu, (size_t)t.total);
    g_up(gpu, dt.data, t.data, bytes);
    ssl_optim_config c = {0};
    c.kind = kind, c.momentum = 0.9, c.weight_decay = 1e-2, c.eta = 0.001, c.beta1 = 0.9, c.beta2 = 0.999, c.eps = 1e-8;
    ssl_optimizer o, dgo;
    ssl_optim_init(&o, &c, &t);
    ssl_optim_init(&dgo, &c, &dt); /* on the table's device */
    CHECK_EQ(dgo.dev, SSL_DEV_CUDA);
    ssl_rng r = ssl_rng_make(123, (uint32_t)kind, 0, 0, 0);
    float *got = (float *)ssl_malloc(bytes, "params back");
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < t.n; i++) /* buffers keep a zero gradient */
            for (int64_t k = 0; k < t.p[i].numel; k++)
                t.grad[t.p[i].offset + k] = t.p[i].kind == SSL_PARAM_BUFFER ? 0.0f : ssl_rng_range(&r, -1, 1);
        g_up(gpu, dt.grad, t.grad, bytes);
        double lr = 0.1 * (step + 1);
        ssl_optim_step(&o, &t, lr);
        CHECK_OK(ssl_optim_step(&dgo, &dt, lr));
        g_down(gpu, got, dt.data, bytes);
        char what[64];
        snprintf(what, sizeof what, "%s step %d weights", ssl_optim_name(kind), step + 1);
        /* the same per-element update; LARS norms summed per chunk */
        G_CLOSE(what, got, t.data, t.total, G_TOL(gpu, 1e-7, 1e-6), G_TOL(gpu, 1e-6, 1e-5));
        g_down(gpu, got, dgo.m, bytes);
        snprintf(what, sizeof what, "%s step %d momentum", ssl_optim_name(kind), step + 1);
        G_CLOSE(what, got, o.m, t.total, G_TOL(gpu, 1e-7, 1e-6), G_TOL(gpu, 1e-6, 1e-5));
    }
    CHECK_EQ(dgo.step, 3);
    /* an optimizer made for the host table refuses the device table, and the other way round */
    CHECK_ERR(ssl_optim_step(&o, &dt, 0.1), "state is on the CPU and the parameters on the GPU");
    CHECK_ERR(ssl_optim_step(&dgo, &t, 0.1), "state is on the GPU and the parameters on the CPU");
    CHECK_EQ(dgo.step, 3);
    free(got);
    ssl_optim_free(&o);
    ssl_optim_free(&dgo);
    g_free(gpu, dt.data);
    g_free(gpu, dt.grad);
    ssl_params_free(&t);
}

GPU_TEST(optimizers_three_steps) {
    optim_case(gpu, SSL_OPTIM_SGD);
    optim_case(gpu, SSL_OPTIM_LARS);
    optim_case(gpu, SSL_OPTIM_ADAMW);
}

/* ---- augmentation ---- */
static ssl_aug_params hand_params(int which, int w, int h) {
    ssl_aug_params p = ssl_aug_identity();
    switch (which) {
    case 0: break; /* identity: scale and normalize only */
    case 1:        /* everything, contrast in the middle of the order */
        p.flip = 1, p.jitter = 1, p.brightness = 1.3f, p.contrast = 0.7f, p.saturation = 1.4f, p.hue = 0.08f;
        p.order[0] = 3, p.order[1] = 0, p.order[2] = 1, p.order[3] = 2;
        p.gray = 0, p.blur_sigma = 1.3f, p.solarize = 1, p.solarize_threshold = 0.5f;
        p.noise_std = 0.1f, p.noise_seed = 0x1234567890abcdefull;
        break;
    case 2: /* contrast first, then gray, blur radius clipped by the small image */
        p.jitter = 1, p.brightness = 0.8f, p.contrast = 1.5f, p.saturation = 1.0f, p.hue = -0.2f;
        p.order[0] = 1, p.order[1] = 2, p.order[2] = 0, p.order[3] = 3;
        p.gray = 1, p.blur_sigma = 10.0f;
        break;
    case 3: /* flip, solarize and noise only: the CPU's in-place path */
        p.flip = 1, p.solarize = 1, p.solarize_threshold = 0.3f, p.noise_std = 0.2f, p.noise_seed = 77;
        break;
    default: /* contrast last */
        p.jitter = 1, p.brightness = 1.1f, p.contrast = 0.5f, p.saturation = 0.6f, p.hue = 0.3f;
        p.order[0] = 0, p.order[1] = 2, p.order[2] = 3, p.order[3] = 1;
        break;
    }
    (void)w, (void)h;
    return p;
}

static const float AUG_MEAN[3] = {0.485f, 0.456f, 0.406f}, AUG_STD[3] = {0.229f, 0.224f, 0.225f};
/* the CPU path's views of n uint8 crops (free it) */
static float *aug_want(const uint8_t *u8, const ssl_aug_params *prm, int n, int w, int h, int norm) {
    size_t px = (size_t)w * h * 3;
    float *want = (float *)ssl_malloc(sizeof(float) * n * px, "cpu views");
    ssl_buf scratch = {0};
    for (int s = 0; s < n; s++) {
        float *img = want + s * px;
        for (size_t i = 0; i < px; i++) img[i] = (float)u8[s * px + i];
        ssl_augment_apply_ex(&prm[s], img, w, h, 255.0f, norm ? AUG_MEAN : NULL, norm ? AUG_STD : NULL, &scratch);
    }
    ssl_buf_free(&scratch);
    return want;
}
static uint8_t *aug_crops(int gpu, size_t bytes, uint64_t seed) {
    uint8_t *u8 = gpu ? (uint8_t *)ssl_cuda_host_alloc(bytes, "test crops") : (uint8_t *)ssl_malloc(bytes, "test crops");
    ssl_rng r = ssl_rng_make(seed, 0, 0, 0, 0);
    for (size_t i = 0; i < bytes; i++) u8[i] = (uint8_t)ssl_rng_below(&r, 256);
    return u8;
}
static void aug_crops_free(int gpu, uint8_t *u8) {
    if (gpu) ssl_cuda_host_free(u8);
    else free(u8);
}
/* ssl_cuda_augment_u8 of u8 against `want`; returns the max |diff| */
static double aug_check(int gpu, const char *name, const uint8_t *u8, const float *want, int n, int w, int h,
                        const ssl_aug_params *prm, int norm) {
    size_t px = (size_t)w * h * 3;
    float *dout = g_alloc(gpu, n * px);
    CHECK_OK(ssl_cuda_augment_u8(u8, prm, n, w, h, 255.0f, norm ? AUG_MEAN : NULL, norm ? AUG_STD : NULL, dout));
    float *got = (float *)ssl_malloc(sizeof(float) * n * px, "gpu views");
    g_down(gpu, got, dout, sizeof(float) * n * px);
    /* The same SSL_HD pixel functions; the float results may differ by FMA
       contraction (host -march=native vs nvcc) and blur/hue rounding:
       max |diff| 1e-4 on normalized values (range about -2.2..2.7). */
    double e = G_CLOSE(name, got, want, (int64_t)(n * px), 1e-4, 0);
    free(got);
    g_free(gpu, dout);
    return e;
}

static void aug_case(int gpu, const char *name, int n, int w, int h, const ssl_aug_params *prm, int norm) {
    size_t px = (size_t)w * h * 3;
    uint8_t *u8 = aug_crops(gpu, n * px, 2024);
    float *want = aug_want(u8, prm, n, w, h, norm);
    double e = aug_check(gpu, name, u8, want, n, w, h, prm, norm);
    printf("    %s: max |%s - cpu| = %.3g\n", name, gpu ? "gpu" : "emu", e);
    free(want);
    aug_crops_free(gpu, u8);
}

GPU_TEST(augment_matches_cpu) {
    int w = 23, h = 17;
    ssl_aug_params hp[5];
    for (int i = 0; i < 5; i++) hp[i] = hand_params(i, w, h);
    aug_case(gpu, "augment hand-made params, normalized", 5, w, h, hp, 1);
    aug_case(gpu, "augment hand-made params, [0,1]", 5, w, h, hp, 0);
    /* the presets' draws: every op at its real probability */
    const char *presets[3] = {"simclr", "byol", "noise"};
    for (int k = 0; k < 3; k++) {
        enum { N = 24 };
        ssl_aug_params pp[N];
        for (int s = 0; s < N; s++) {
            ssl_view_recipe rc;
            CHECK_OK(ssl_view_preset(presets[k], s & 1, 32, &rc));
            pp[s] = ssl_view_draw(&rc, 40, 36, 5, 1, (uint32_t)s, (uint32_t)(s & 1));
        }
        char name[64];
        snprintf(name, sizeof name, "augment preset %s", presets[k]);
        aug_case(gpu, name, N, 32, 32, pp, 1);
    }
    /* bigger than one 1024-pixel chunk, odd size: the contrast mean's chunking */
    ssl_aug_params big[3] = {hand_params(1, 77, 45), hand_params(2, 77, 45), hand_params(4, 77, 45)};
    aug_case(gpu, "augment 77x45", 3, 77, 45, big, 1);
}

/* Prefetched crops (the copy stream) give the same views as crops copied
   on the spot, in any order, with more buffers in flight than staging
   slots; a buffer refilled after its augmentation returned is copied again
   (no stale device copy), and so is one whose prefetch was forgotten. */
GPU_TEST(augment_prefetch_and_reuse) {
    enum { B = 6, N = 5, W = 29, H = 19 };
    size_t px = (size_t)W * H * 3, bytes = N * px;
    ssl_aug_params prm[N];
    for (int i = 0; i < N; i++) prm[i] = hand_params(i, W, H);
    uint8_t *u8[B];
    float *want[B];
    for (int b = 0; b < B; b++) {
        u8[b] = aug_crops(gpu, bytes, 100 + (uint64_t)b);
        want[b] = aug_want(u8[b], prm, N, W, H, 1);
    }
    /* two batches ahead, used in reverse order */
    CHECK_OK(ssl_cuda_prefetch_u8(u8[0], bytes));
    CHECK_OK(ssl_cuda_prefetch_u8(u8[1], bytes));
    aug_check(gpu, "prefetched batch 1", u8[1], want[1], N, W, H, prm, 1);
    aug_check(gpu, "prefetched batch 0", u8[0], want[0], N, W, H, prm, 1);
    /* six in flight, four staging slots: the evicted ones are copied again */
    for (int b = 0; b < B; b++) CHECK_OK(ssl_cuda_prefetch_u8(u8[b], bytes));
    for (int b = 0; b < B; b++) aug_check(gpu, "six prefetched", u8[b], want[b], N, W, H, prm, 1);
    /* the loader refills a buffer after its augmentation: new contents */
    memcpy(u8[0], u8[2], bytes);
    aug_check(gpu, "buffer refilled after use", u8[0], want[2], N, W, H, prm, 1);
    /* refilled right after its own augmentation, nothing in between */
    CHECK_OK(ssl_cuda_prefetch_u8(u8[4], bytes));
    aug_check(gpu, "prefetched once more", u8[4], want[4], N, W, H, prm, 1);
    memcpy(u8[4], u8[5], bytes);
    aug_check(gpu, "refilled at once after use", u8[4], want[5], N, W, H, prm, 1);
    /* a prefetch forgotten, the buffer refilled: new contents */
    CHECK_OK(ssl_cuda_prefetch_u8(u8[1], bytes));
    CHECK_OK(ssl_cuda_prefetch_u8(NULL, 0));
    memcpy(u8[1], u8[3], bytes);
    aug_check(gpu, "prefetch forgotten, buffer refilled", u8[1], want[3], N, W, H, prm, 1);
    for (int b = 0; b < B; b++) {
        free(want[b]);
        aug_crops_free(gpu, u8[b]);
    }
}
