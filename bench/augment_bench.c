/* bench_augment: what one view costs on one core, per augmentation op and
   for whole recipes, plus the loader's per-image work (decode + 2 views).

   cc -std=gnu11 -O3 -march=native -pthread -DSSL_TURBOJPEG -I. -o build/augment_bench \
      bench/augment_bench.c -lm -lturbojpeg
   build/augment_bench [image.jpg]     (default: a synthetic 500x375 JPEG, q 90)

   Each figure is the best of 5 rounds (the machine is shared), each round
   the mean over enough repetitions to take ~0.1 s. */
#define SSL_IMPLEMENTATION
#include "ssl.h"
#include <stdlib.h>
#include <string.h>

#define RES 224

typedef void (*bench_fn)(void *ctx, int i);

static double best_of(bench_fn fn, void *ctx) {
    int reps = 1;
    double t0 = ssl_now();
    fn(ctx, 0);
    double one = ssl_now() - t0;
    reps = one > 0 ? (int)(0.1 / one) : 1000;
    if (reps < 3) reps = 3;
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        t0 = ssl_now();
        for (int i = 0; i < reps; i++) fn(ctx, i + 1);
        double t = (ssl_now() - t0) / reps;
        if (t < best) best = t;
    }
    return best;
}

/* ---- ssl_augment_apply on a 224x224 view ---- */
typedef struct {
    ssl_aug_params p[64]; /* cycled, for recipes; one entry for single ops */
    int np;
    const float *src;
    float *img;
    ssl_buf scratch;
    int ex; /* use ssl_augment_apply_ex with scale + normalize */
    const ssl_view_recipe *rc;
} apply_ctx;

static void run_apply(void *c_, int i) {
    apply_ctx *c = (apply_ctx *)c_;
    memcpy(c->img, c->src, sizeof(float) * RES * RES * 3);
    const ssl_aug_params *p = &c->p[i % c->np];
    if (c->ex) ssl_augment_apply_ex(p, c->img, RES, RES, 1.0f, c->rc->mean, c->rc->std, &c->scratch);
    else ssl_augment_apply(p, c->img, RES, RES, &c->scratch);
}
static void run_copy(void *c_, int i) {
    apply_ctx *c = (apply_ctx *)c_;
    memcpy(c->img, c->src, sizeof(float) * RES * RES * 3);
}
static void run_normalize(void *c_, int i) {
    apply_ctx *c = (apply_ctx *)c_;
    memcpy(c->img, c->src, sizeof(float) * RES * RES * 3);
    ssl_normalize(c->img, RES, RES, c->rc->mean, c->rc->std);
}

/* ---- the loader's per-image work ---- */
typedef struct {
    const uint8_t *jpg;
    size_t jpg_n;
    ssl_buf dec, rs, tmp;
    float *views[2];
    const ssl_view_recipe *rc;
    int w, h;
    int what; /* 0 decode only, 1 decode + 2 crops, 2 decode + 2 full views */
} image_ctx;

static void run_image(void *c_, int i) {
    image_ctx *c = (image_ctx *)c_;
    int w, h, ch;
    if (ssl_decode(c->jpg, c->jpg_n, 3, &c->dec, &w, &h, &ch) != 0) {
        fprintf(stderr, "decode: %s\n", ssl_last_error());
        exit(1);
    }
    if (c->what == 0) return;
    for (int v = 0; v < 2; v++) {
        ssl_aug_params p = ssl_view_draw(&c->rc[v], w, h, 1, 0, (uint32_t)i, (uint32_t)v);
        ssl_resample((const uint8_t *)c->dec.p, w, h, 3, p.crop_x, p.crop_y, p.crop_w, p.crop_h, NULL, c->views[v], RES,
                     RES, SSL_FILTER_BILINEAR, &c->rs);
        if (c->what == 2)
            ssl_augment_apply_ex(&p, c->views[v], RES, RES, 255.0f, c->rc[v].mean, c->rc[v].std, &c->tmp);
    }
}

static uint8_t *synthetic_jpeg(int w, int h, size_t *n) {
    uint8_t *px = malloc((size_t)w * h * 3);
    ssl_rng r = ssl_rng_make(3, 0, 0, 0, 0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                float v = 128 + 90 * sinf(0.031f * x * (c + 1) + 0.017f * y) * cosf(0.023f * y * (3 - c) + 0.004f * x);
                v += 40 * (ssl_rng_uniform(&r) - 0.5f);
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    ssl_buf out = {0};
    if (ssl_encode_jpeg(px, w, h, 3, 90, &out, n) != 0) {
        fprintf(stderr, "encode: %s\n", ssl_last_error());
        exit(1);
    }
    free(px);
    return out.p;
}

int main(int argc, char **argv) {
    size_t jn = 0;
    uint8_t *jpg = NULL;
    const char *what = "synthetic 500x375 JPEG q90";
    if (argc > 1) {
        if (ssl_read_file(argv[1], &jpg, &jn) != 0) {
            fprintf(stderr, "%s\n", ssl_last_error());
            return 1;
        }
        what = argv[1];
    } else {
        jpg = synthetic_jpeg(500, 375, &jn);
    }
    int sw, sh, sc;
    ssl_buf dec = {0};
    if (ssl_decode(jpg, jn, 3, &dec, &sw, &sh, &sc) != 0) {
        fprintf(stderr, "decode: %s\n", ssl_last_error());
        return 1;
    }

    /* a 224x224 view in [0,1]: the centre crop of the image */
    float *src = malloc(sizeof(float) * RES * RES * 3), *img = malloc(sizeof(float) * RES * RES * 3);
    ssl_buf rs = {0};
    int side = sw < sh ? sw : sh;
    ssl_resample((const uint8_t *)dec.p, sw, sh, 3, (sw - side) / 2, (sh - side) / 2, side, side, NULL, src, RES, RES,
                 SSL_FILTER_BILINEAR, &rs);
    for (int i = 0; i < RES * RES * 3; i++) src[i] /= 255.0f;

    ssl_view_recipe rc[2];
    ssl_view_preset("simclr", 0, RES, &rc[0]);
    ssl_view_preset("simclr", 1, RES, &rc[1]);
    apply_ctx ac = {0};
    ac.src = src, ac.img = img, ac.rc = &rc[0];
    printf("bench_augment: %s (%dx%d), views %dx%d, one thread\n", what, sw, sh, RES, RES);
    double copy = best_of(run_copy, &ac);
    printf("  (the bench's memcpy of the view before each call: %.1f us, subtracted below)\n", copy * 1e6);

    struct { const char *name; ssl_aug_params p; } ops[16];
    int nops = 0;
#define OP(label, ...) do { ssl_aug_params q = ssl_aug_identity(); __VA_ARGS__; ops[nops].name = label; ops[nops++].p = q; } while (0)
    OP("flip", q.flip = 1);
    OP("brightness 1.3", q.jitter = 1, q.brightness = 1.3f);
    OP("contrast 0.7", q.jitter = 1, q.contrast = 0.7f);
    OP("saturation 1.5", q.jitter = 1, q.saturation = 1.5f);
    OP("hue 0.08", q.jitter = 1, q.hue = 0.08f);
    OP("jitter b,c,s,h", q.jitter = 1, q.brightness = 1.3f, q.contrast = 0.7f, q.saturation = 1.5f, q.hue = 0.08f);
    OP("gray", q.gray = 1);
    OP("blur sigma 1.05", q.blur_sigma = 1.05f);
    OP("blur sigma 2.0", q.blur_sigma = 2.0f);
    OP("solarize", q.solarize = 1);
    OP("noise 0.1", q.noise_std = 0.1f, q.noise_seed = 99);
    OP("jitter+blur 2.0", q.jitter = 1, q.brightness = 1.3f, q.contrast = 0.7f, q.saturation = 1.5f, q.hue = 0.08f,
       q.blur_sigma = 2.0f);
    OP("jitter+gray+blur 2", q.jitter = 1, q.brightness = 1.3f, q.contrast = 0.7f, q.saturation = 1.5f, q.hue = 0.08f,
       q.gray = 1, q.blur_sigma = 2.0f);
#undef OP
    printf("  %-34s %8s\n", "ssl_augment_apply, one op", "us/view");
    for (int k = 0; k < nops; k++) {
        ac.p[0] = ops[k].p, ac.np = 1, ac.ex = 0;
        printf("  %-34s %8.1f\n", ops[k].name, (best_of(run_apply, &ac) - copy) * 1e6);
    }
    printf("  %-34s %8.1f\n", "ssl_normalize", (best_of(run_normalize, &ac) - copy) * 1e6);

    /* recipes: the average over 64 drawn views (their real mix of ops) */
    const char *presets[] = {"simclr", "byol", "crop_gray", "noise"};
    printf("  %-34s %8s\n", "recipe, mean of 64 drawn views", "us/view");
    for (int k = 0; k < 4; k++) {
        ssl_view_recipe r;
        ssl_view_preset(presets[k], 0, RES, &r);
        for (int i = 0; i < 64; i++) ac.p[i] = ssl_view_draw(&r, sw, sh, 7, 0, (uint32_t)i, 0);
        ac.np = 64, ac.rc = &r;
        ac.ex = 0;
        double t = best_of(run_apply, &ac) - copy;
        ac.ex = 1;
        double tx = best_of(run_apply, &ac) - copy;
        printf("  %-34s %8.1f   (+ normalize fused, _ex: %.1f)\n", presets[k], t * 1e6, tx * 1e6);
    }
    ac.rc = &rc[0];

    /* the loader's work per image, simclr, 2 views */
    image_ctx ic = {0};
    ic.jpg = jpg, ic.jpg_n = jn, ic.rc = rc;
    ic.views[0] = malloc(sizeof(float) * RES * RES * 3);
    ic.views[1] = malloc(sizeof(float) * RES * RES * 3);
    double td, tc, tf;
    ic.what = 0, td = best_of(run_image, &ic);
    ic.what = 1, tc = best_of(run_image, &ic);
    ic.what = 2, tf = best_of(run_image, &ic);
    printf("  per image, simclr, 2 views of %d:\n", RES);
    printf("    decode                         %8.3f ms\n", td * 1e3);
    printf("    + draw + crop/resize x2        %8.3f ms\n", tc * 1e3);
    printf("    + augment + normalize x2       %8.3f ms   => %.0f images/s on one core\n", tf * 1e3, 1.0 / tf);
    free(src), free(img), free(ic.views[0]), free(ic.views[1]), free(jpg);
    ssl_buf_free(&dec), ssl_buf_free(&rs), ssl_buf_free(&ac.scratch);
    ssl_buf_free(&ic.dec), ssl_buf_free(&ic.rs), ssl_buf_free(&ic.tmp);
    return 0;
}
