/* Augment (ssl.h section 5): every op against torchvision's outputs in
   tests/fixtures/augment.sslt (made by tests/gen_augment_fixtures.py), the
   RandomResizedCrop sampler's statistics, exact properties, determinism,
   presets. Run from the repository root. */
#include "test.h"

/* ---- fixture helpers ---------------------------------------------------- */

static ssl_tfile fx;
static int fx_state; /* 0 unread, 1 good, -1 failed */

static const ssl_tfile *fixture(void) {
    if (fx_state == 0) {
        const char *path = getenv("SSL_AUGMENT_FIXTURE");
        if (!path) path = "tests/fixtures/augment.sslt";
        fx_state = ssl_tfile_read(path, &fx) == 0 ? 1 : -1;
        if (fx_state < 0) test_fail(__FILE__, __LINE__, "fixture: %s", ssl_last_error());
    }
    return fx_state > 0 ? &fx : NULL;
}

/* in/<i> as float in [0,1] through torchvision's ToDtype map (lut/u8_to_f32) */
static float *fixture_input(const ssl_tfile *f, int i, int *w, int *h) {
    char name[64];
    snprintf(name, sizeof name, "in/%d", i);
    const ssl_tentry *e = ssl_tfile_find(f, name), *lut = ssl_tfile_find(f, "lut/u8_to_f32");
    if (!e || !lut || e->dtype != SSL_U8 || e->ndim != 3 || e->dims[2] != 3) return NULL;
    *h = (int)e->dims[0], *w = (int)e->dims[1];
    size_t n = (size_t)*w * *h * 3;
    float *x = malloc(sizeof(float) * n);
    float map[256]; /* SSLT data is not aligned: copy before reading floats */
    memcpy(map, lut->data, sizeof map);
    for (size_t k = 0; k < n; k++) x[k] = map[((const uint8_t *)e->data)[k]];
    return x;
}

typedef struct {
    double fmax, fsum, umax, usum; /* float abs diff; diff after rounding to uint8 (in uint8 steps) */
    int64_t n;
    int outputs;
} diffstat;

static int u8_of(float x) { /* torchvision's to uint8: clamp(x * 255).round() ... we use round-half-even */
    double v = nearbyint((double)x * 255.0);
    return v < 0 ? 0 : v > 255 ? 255 : (int)v;
}

static void diff_add(diffstat *d, const float *got, const float *want, size_t n) {
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)got[k] - want[k]);
        double u = abs(u8_of(got[k]) - u8_of(want[k]));
        if (!(e <= d->fmax)) d->fmax = e; /* NaN becomes the max */
        if (u > d->umax) d->umax = u;
        d->fsum += e;
        d->usum += u;
    }
    d->n += (int64_t)n;
    d->outputs++;
}

static void diff_report(const char *op, const diffstat *d) {
    printf("    %-12s %3d outputs  float max %.3g mean %.3g | uint8 max %g mean %.5f (steps of 1/255)\n", op,
           d->outputs, d->fmax, d->n ? d->fsum / d->n : 0.0, d->umax, d->n ? d->usum / d->n : 0.0);
}

/* Parses "<prefix>/.../<i>" entries; calls fn for each with the params. */
typedef void (*fixture_fn)(const ssl_tfile *f, const ssl_tentry *want, const float *par, int npar, const float *in,
                           int w, int h, diffstat *d);

static void for_fixture(const char *prefix, fixture_fn fn, diffstat *d) {
    const ssl_tfile *f = fixture();
    if (!f) return;
    size_t pl = strlen(prefix);
    for (int k = 0; k < f->count; k++) {
        const ssl_tentry *e = &f->entries[k];
        if (strncmp(e->name, prefix, pl) || e->name[pl] != '/') continue;
        const char *slash = strrchr(e->name, '/');
        int i = atoi(slash + 1), w, h;
        char pname[256];
        snprintf(pname, sizeof pname, "p/%s", e->name);
        const ssl_tentry *pe = ssl_tfile_find(f, pname);
        float *in = fixture_input(f, i, &w, &h);
        CHECK(in && pe, "fixture %s: missing input or params", e->name);
        if (!in || !pe) { free(in); continue; }
        /* aligned copies of the output and the params (SSLT data is packed) */
        ssl_tentry want = *e;
        void *data = malloc(e->nbytes + 1), *par = malloc(pe->nbytes + 4);
        memcpy(data, e->data, e->nbytes);
        memcpy(par, pe->data, pe->nbytes);
        want.data = data;
        fn(f, &want, (const float *)par, (int)ssl_tentry_numel(pe), in, w, h, d);
        free(in), free(data), free(par);
    }
    CHECK(d->outputs > 0, "no fixture entries under %s/", prefix);
}

/* Applies params to a copy of in, compares with want (float HWC). */
static void apply_and_compare(const ssl_aug_params *p, const ssl_tentry *want, const float *in, int w, int h,
                              diffstat *d) {
    CHECK(want->dtype == SSL_F32 && want->dims[0] == h && want->dims[1] == w && want->dims[2] == 3, "%s: shape",
          want->name);
    size_t n = (size_t)w * h * 3;
    float *x = malloc(sizeof(float) * n);
    memcpy(x, in, sizeof(float) * n);
    ssl_buf scratch = {0};
    ssl_augment_apply(p, x, w, h, &scratch);
    diff_add(d, x, (const float *)want->data, n);
    ssl_buf_free(&scratch);
    free(x);
}

static void fx_hflip(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w, int h,
                     diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    p.flip = 1;
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_gray(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w, int h,
                    diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    p.gray = 1;
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_jitter1(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w,
                       int h, diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    p.jitter = 1;
    if (!strncmp(e->name, "brightness/", 11)) p.brightness = par[0];
    if (!strncmp(e->name, "contrast/", 9)) p.contrast = par[0];
    if (!strncmp(e->name, "saturation/", 11)) p.saturation = par[0];
    if (!strncmp(e->name, "hue/", 4)) p.hue = par[0];
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_jitter(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w,
                      int h, diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    CHECK_EQ(np, 8);
    p.jitter = 1;
    p.brightness = par[0], p.contrast = par[1], p.saturation = par[2], p.hue = par[3];
    for (int k = 0; k < 4; k++) p.order[k] = (uint8_t)par[4 + k];
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_solarize(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w,
                        int h, diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    p.solarize = 1, p.solarize_threshold = par[0];
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_blur(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w, int h,
                    diffstat *d) {
    ssl_aug_params p = ssl_aug_identity();
    p.blur_sigma = par[1];
    float k[SSL_BLUR_MAX_RADIUS + 1];
    CHECK_EQ(2 * ssl_blur_kernel(par[1], w, h, k) + 1, (int)par[0]); /* same kernel size rule */
    apply_and_compare(&p, e, in, w, h, d);
}
static void fx_normalize(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w,
                         int h, diffstat *d) {
    size_t n = (size_t)w * h * 3;
    float *x = malloc(sizeof(float) * n);
    memcpy(x, in, sizeof(float) * n);
    ssl_normalize(x, w, h, par, par + 3);
    diff_add(d, x, (const float *)e->data, n);
    free(x);
}
/* crop/<t>_<l>_<h>_<w>_<oh>_<ow>: ssl_resample from the uint8 input, either
   given the box (crop_first 0) or given the box's pixels cut out first
   (crop_first 1, what torchvision's resized_crop does). */
static int crop_first;
static void fx_crop(const ssl_tfile *f, const ssl_tentry *e, const float *par, int np, const float *in, int w, int h,
                    diffstat *d) {
    char name[64];
    snprintf(name, sizeof name, "in/%s", strrchr(e->name, '/') + 1);
    const ssl_tentry *src = ssl_tfile_find(f, name);
    int oh = (int)par[4], ow = (int)par[5];
    int top = (int)par[0], left = (int)par[1], bh = (int)par[2], bw = (int)par[3];
    uint8_t *cut = NULL;
    float cut_box[4] = {0, 0, (float)bh, (float)bw};
    if (crop_first) {
        cut = malloc((size_t)bw * bh * 3);
        for (int y = 0; y < bh; y++)
            memcpy(cut + (size_t)y * bw * 3, (const uint8_t *)src->data + ((size_t)(top + y) * w + left) * 3,
                   (size_t)bw * 3);
        par = cut_box;
        w = bw, h = bh;
    }
    const uint8_t *px = crop_first ? cut : (const uint8_t *)src->data;
    size_t n = (size_t)ow * oh * 3;
    CHECK(e->dims[0] == oh && e->dims[1] == ow, "%s: shape", e->name);
    ssl_buf scratch = {0};
    if (e->dtype == SSL_U8) {
        uint8_t *o = malloc(n);
        ssl_resample(px, w, h, 3, par[1], par[0], par[3], par[2], o, NULL, ow, oh, SSL_FILTER_BILINEAR,
                     &scratch);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        for (size_t k = 0; k < n; k++) a[k] = o[k] / 255.0f, b[k] = ((const uint8_t *)e->data)[k] / 255.0f;
        diff_add(d, a, b, n);
        free(o), free(a), free(b);
    } else {
        float *o = malloc(sizeof(float) * n);
        ssl_resample(px, w, h, 3, par[1], par[0], par[3], par[2], NULL, o, ow, oh, SSL_FILTER_BILINEAR,
                     &scratch);
        for (size_t k = 0; k < n; k++) o[k] /= 255.0f; /* [0,255] -> [0,1] as ToDtype does (it divides) */
        diff_add(d, o, (const float *)e->data, n);
        free(o);
    }
    ssl_buf_free(&scratch);
    free(cut);
}

/* One row of the table per op; each op's float max error must be below
   fmax_tol, and the mean difference after rounding to uint8 below 1/255
   (that is, < 1 step; it is ~0 for every op). */
static void check_op(const char *prefix, fixture_fn fn, double fmax_tol, double umax_tol) {
    diffstat d = {0};
    for_fixture(prefix, fn, &d);
    diff_report(prefix, &d);
    CHECK(d.fmax <= fmax_tol, "%s: float max error %.3g over %.3g", prefix, d.fmax, fmax_tol);
    CHECK(d.n && d.usum / d.n < 1.0, "%s: mean uint8 difference %.4f", prefix, d.n ? d.usum / d.n : -1.0);
    CHECK(d.umax <= umax_tol, "%s: max uint8 difference %g over %g", prefix, d.umax, umax_tol);
}

/* Tolerances: the measured errors (see the printed table) with margin.
   Exact ops (flip, solarize, brightness, normalize) must be exact or 1 ulp;
   the rest are float-rounding apart from torchvision (different sum order
   or FMA use), ~1e-7. uint8 max 1 allows a value on a rounding edge. */
TEST(augment_vs_torchvision_flip_gray_solarize_normalize) {
    check_op("hflip", fx_hflip, 0, 0);
    check_op("gray", fx_gray, 2e-7, 1);
    check_op("solarize", fx_solarize, 0, 0);
    check_op("normalize", fx_normalize, 5e-7, 1);
}
TEST(augment_vs_torchvision_jitter) {
    check_op("brightness", fx_jitter1, 0, 0);
    check_op("contrast", fx_jitter1, 5e-7, 1);
    check_op("saturation", fx_jitter1, 5e-7, 1);
    check_op("hue", fx_jitter1, 2e-6, 1);
    check_op("jitter", fx_jitter, 2e-6, 1);
}
TEST(augment_vs_torchvision_blur) { check_op("blur", fx_blur, 1e-6, 1); }
/* torchvision's resized_crop cuts the box out, then resizes: filter taps
   never reach past the box. ssl_resample must do the same when given a box
   (reading the pixels around it, as PIL's resize(box=) does, was off by up
   to 0.16 in the outer rows and columns of these crops). The first test is
   the box path as the loader calls it; the second cuts the box out first,
   so a failure of the first alone points at the box handling. */
TEST(resample_box_vs_torchvision_crop) {
    crop_first = 0;
    check_op("crop", fx_crop, 2e-6, 1);
    check_op("crop_u8", fx_crop, 1.0 / 255 + 1e-6, 1); /* torch's uint8 path is fixed-point: within +-1 */
}
TEST(resample_cut_vs_torchvision_crop) {
    crop_first = 1;
    check_op("crop", fx_crop, 2e-6, 1);
    check_op("crop_u8", fx_crop, 1.0 / 255 + 1e-6, 1);
    crop_first = 0;
}

/* ---- RandomResizedCrop sampler ------------------------------------------ */

typedef struct {
    int n, fallbacks, out_of_bounds, bad_box;
    double area_sum, logratio_sum;
} rrc_stats;

static rrc_stats rrc_run(int W, int H, float smin, float smax, float rmin, float rmax, int n, uint64_t seed) {
    rrc_stats s = {0};
    for (int i = 0; i < n; i++) {
        ssl_rng r = ssl_rng_make(seed, 0, (uint32_t)i, 0, SSL_RNG_CROP);
        float b[4];
        int fb = ssl_rrc_sample(&r, W, H, smin, smax, rmin, rmax, b);
        if (b[0] != floorf(b[0]) || b[1] != floorf(b[1]) || b[2] != floorf(b[2]) || b[3] != floorf(b[3]) ||
            b[0] < 0 || b[1] < 0 || b[2] < 1 || b[3] < 1 || b[0] + b[2] > W || b[1] + b[3] > H)
            s.bad_box++;
        s.n++;
        if (fb) { s.fallbacks++; continue; }
        double area = (double)b[2] * b[3] / ((double)W * H), lr = log((double)b[2] / b[3]);
        /* w and h are rounded to integers: allow their rounding (+-0.5 px each) */
        double ta = (b[2] + 0.5) * (b[3] + 0.5) / ((double)W * H), tb = (b[2] - 0.5) * (b[3] - 0.5) / ((double)W * H);
        double la = log((b[2] + 0.5) / (b[3] - 0.5)), lb = log((b[2] - 0.5) / (b[3] + 0.5));
        if (ta < smin || tb > smax || la < log(rmin) || lb > log(rmax)) s.out_of_bounds++;
        s.area_sum += area;
        s.logratio_sum += lr;
    }
    return s;
}

TEST(rrc_bounds_and_means) {
    /* (0.08, 1) with ratio (1, 1) on a square: nothing is ever rejected, so the
       mean area fraction is the uniform's, (0.08 + 1) / 2 = 0.54. 200k draws:
       standard error 0.27/sqrt(2e5) = 6e-4; tolerance 3e-3 (5 SE, plus the
       integer rounding of w, h on a 1000-pixel side, < 1e-3). */
    rrc_stats s = rrc_run(1000, 1000, 0.08f, 1.0f, 1.0f, 1.0f, 200000, 1);
    printf("    square, ratio 1:   mean area %.4f (analytic 0.54), fallbacks %d, out of bounds %d\n",
           s.area_sum / (s.n - s.fallbacks), s.fallbacks, s.out_of_bounds);
    CHECK_NEAR(s.area_sum / (s.n - s.fallbacks), 0.54, 3e-3);
    CHECK_EQ(s.fallbacks, 0);
    CHECK_EQ(s.out_of_bounds, 0);
    CHECK_EQ(s.bad_box, 0);

    /* (0.08, 1) (3/4, 4/3) on a square: before rejection the mean is 0.54; an
       attempt fits iff s <= exp(-|log r|), so the accepted mean is
       E[s | s <= e^-|t|] with t uniform on [0, L], L = log(4/3):
       int (e^-2t - .08^2)/2 dt / int (e^-t - .08) dt (computed below). */
    double L = log(4.0 / 3.0), num = 0, den = 0;
    for (int k = 0; k < 100000; k++) {
        double t = (k + 0.5) / 100000 * L;
        num += (exp(-2 * t) - 0.0064) / 2, den += exp(-t) - 0.08;
    }
    double want = num / den;
    s = rrc_run(1000, 1000, 0.08f, 1.0f, 3.0f / 4, 4.0f / 3, 200000, 2);
    double mlr = s.logratio_sum / (s.n - s.fallbacks);
    printf("    square, 3/4..4/3:  mean area %.4f (analytic after rejection %.4f, before 0.54), mean log-ratio "
           "%.4f, fallbacks %d/%d, out of bounds %d\n",
           s.area_sum / (s.n - s.fallbacks), want, mlr, s.fallbacks, s.n, s.out_of_bounds);
    CHECK_NEAR(s.area_sum / (s.n - s.fallbacks), want, 3e-3);
    CHECK_NEAR(mlr, 0.0, 3e-3); /* symmetric bounds: SE 0.17/sqrt(2e5) = 4e-4 */
    CHECK(s.fallbacks < 20, "fallbacks %d: each needs 10 failures of p ~ 0.46", s.fallbacks); /* P = 4e-4 */
    CHECK_EQ(s.out_of_bounds, 0);
    CHECK_EQ(s.bad_box, 0);

    /* a narrower scale range on a non-square image */
    s = rrc_run(640, 480, 0.25f, 0.6f, 0.5f, 2.0f, 50000, 3);
    CHECK_EQ(s.out_of_bounds, 0);
    CHECK_EQ(s.bad_box, 0);
}

TEST(rrc_fallback) {
    /* 1000x10 with (0.08,1) (3/4,4/3): the smallest area is 800 px and the widest
       ratio 4/3, so h >= sqrt(800 / (4/3)) = 24.5 > 10: no attempt fits. The
       fallback clamps the ratio to 4/3: h = 10, w = round(13.33) = 13,
       centred: x = (1000 - 13) / 2 = 493. */
    for (int i = 0; i < 100; i++) {
        ssl_rng r = ssl_rng_make(9, 0, (uint32_t)i, 0, SSL_RNG_CROP);
        float b[4];
        CHECK_EQ(ssl_rrc_sample(&r, 1000, 10, 0.08f, 1.0f, 3.0f / 4, 4.0f / 3, b), 1);
        CHECK(b[0] == 493 && b[1] == 0 && b[2] == 13 && b[3] == 10, "box %g %g %g %g", b[0], b[1], b[2], b[3]);
    }
    /* the tall one: w = 10, h = round(10 / (3/4)) = 13, y = (1000 - 13) / 2 = 493 */
    ssl_rng r = ssl_rng_make(9, 0, 0, 0, SSL_RNG_CROP);
    float b[4];
    CHECK_EQ(ssl_rrc_sample(&r, 10, 1000, 0.08f, 1.0f, 3.0f / 4, 4.0f / 3, b), 1);
    CHECK(b[0] == 0 && b[1] == 493 && b[2] == 10 && b[3] == 13, "box %g %g %g %g", b[0], b[1], b[2], b[3]);
    /* ratio within bounds but no attempt can fit (scale > 1 of the area): whole image */
    r = ssl_rng_make(9, 0, 0, 0, SSL_RNG_CROP);
    CHECK_EQ(ssl_rrc_sample(&r, 300, 200, 1.5f, 2.0f, 1.0f, 2.0f, b), 1);
    CHECK(b[0] == 0 && b[1] == 0 && b[2] == 300 && b[3] == 200, "box %g %g %g %g", b[0], b[1], b[2], b[3]);
    /* ratio 0,0 = the image's own, scale 1,1: always the whole image, no fallback */
    for (int i = 0; i < 50; i++) {
        r = ssl_rng_make(9, 0, (uint32_t)i, 0, SSL_RNG_CROP);
        CHECK_EQ(ssl_rrc_sample(&r, 500, 333, 1.0f, 1.0f, 0.0f, 0.0f, b), 0);
        CHECK(b[0] == 0 && b[1] == 0 && b[2] == 500 && b[3] == 333, "box %g %g %g %g", b[0], b[1], b[2], b[3]);
    }
}

/* ---- exact properties ---------------------------------------------------- */

static float *test_image(int w, int h, uint32_t seed) { /* smooth blobs plus noise, in [0, 1] */
    float *x = malloc(sizeof(float) * w * h * 3);
    ssl_rng r = ssl_rng_make(seed, 0, 0, 0, 0);
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w; i++)
            for (int c = 0; c < 3; c++) {
                float v = 0.5f + 0.3f * sinf(0.07f * i * (c + 1) + 0.05f * y) * cosf(0.03f * y * (3 - c));
                v += 0.2f * (ssl_rng_uniform(&r) - 0.5f);
                x[((size_t)y * w + i) * 3 + c] = ssl_px_clamp01(v);
            }
    return x;
}

TEST(augment_exact_properties) {
    int w = 37, h = 29; /* odd sizes: chunk and vector tails */
    size_t n = (size_t)w * h * 3;
    float *x = test_image(w, h, 5), *y = malloc(sizeof(float) * n);
    ssl_buf sc = {0};
    ssl_aug_params p;

    /* flip: mirrored columns, exactly; twice = identity */
    p = ssl_aug_identity(), p.flip = 1;
    memcpy(y, x, sizeof(float) * n);
    ssl_augment_apply(&p, y, w, h, &sc);
    int ok = 1;
    for (int r = 0; r < h; r++)
        for (int i = 0; i < w; i++)
            for (int c = 0; c < 3; c++) ok &= y[((size_t)r * w + i) * 3 + c] == x[((size_t)r * w + w - 1 - i) * 3 + c];
    CHECK(ok, "flip is not an exact mirror");
    ssl_augment_apply(&p, y, w, h, &sc);
    CHECK(!memcmp(x, y, sizeof(float) * n), "flip twice is not the identity");

    /* grayscale: R == G == B == the luma formula, exactly */
    p = ssl_aug_identity(), p.gray = 1;
    memcpy(y, x, sizeof(float) * n);
    ssl_augment_apply(&p, y, w, h, &sc);
    ok = 1;
    for (size_t i = 0; i < n; i += 3)
        ok &= y[i] == y[i + 1] && y[i] == y[i + 2] && y[i] == ssl_px_gray(x[i], x[i + 1], x[i + 2]);
    CHECK(ok, "gray is not R = G = B = luma");

    /* solarize: x >= t -> 1 - x, else x, exactly */
    p = ssl_aug_identity(), p.solarize = 1, p.solarize_threshold = 0.6f;
    memcpy(y, x, sizeof(float) * n);
    ssl_augment_apply(&p, y, w, h, &sc);
    ok = 1;
    for (size_t i = 0; i < n; i++) ok &= y[i] == (x[i] >= 0.6f ? 1.0f - x[i] : x[i]);
    CHECK(ok, "solarize is not exact");

    /* normalize: (x - mean) / std, exactly, including a tail that is not a whole period */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    memcpy(y, x, sizeof(float) * n);
    ssl_normalize(y, w, h, mean, sd);
    ok = 1;
    for (size_t i = 0; i < n; i++) ok &= y[i] == (x[i] - mean[i % 3]) / sd[i % 3];
    CHECK(ok, "normalize is not exact");

    /* jitter with zero strengths is the identity: drawn through ssl_view_draw */
    ssl_view_recipe rc;
    CHECK_OK(ssl_view_preset("simclr", 0, 32, &rc));
    rc.jitter_p = 1, rc.brightness = rc.contrast = rc.saturation = rc.hue = 0;
    rc.gray_p = rc.blur_p = rc.flip_p = 0;
    for (int s = 0; s < 20; s++) {
        p = ssl_view_draw(&rc, 100, 100, 1, 0, (uint32_t)s, 0);
        CHECK(p.jitter && p.brightness == 1 && p.contrast == 1 && p.saturation == 1 && p.hue == 0, "zero strength");
        memcpy(y, x, sizeof(float) * n);
        ssl_augment_apply(&p, y, w, h, &sc);
        CHECK(!memcmp(x, y, sizeof(float) * n), "zero-strength jitter changed the image");
    }
    /* hue by a full turn's worth of nothing: shift 0 through the HSV round trip stays within 2 ulp-ish */
    double hmax = 0;
    for (size_t i = 0; i < n; i += 3) {
        float r = x[i], g = x[i + 1], b = x[i + 2];
        ssl_px_hue(&r, &g, &b, 0.0f);
        hmax = fmax(hmax, fmax(fabs(r - x[i]), fmax(fabs(g - x[i + 1]), fabs(b - x[i + 2]))));
    }
    CHECK(hmax < 1e-6, "HSV round trip error %g", hmax);
    ssl_buf_free(&sc);
    free(x), free(y);
}

/* Direct 2D reference blur (reflect padding, the clipped radius). */
static void blur_reference(const float *x, float *y, int w, int h, float sigma) {
    float k[SSL_BLUR_MAX_RADIUS + 1];
    int rad = ssl_blur_kernel(sigma, w, h, k);
    for (int r = 0; r < h; r++)
        for (int i = 0; i < w; i++)
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int a = -rad; a <= rad; a++)
                    for (int b = -rad; b <= rad; b++)
                        acc += (double)k[abs(a)] * k[abs(b)] *
                               x[((size_t)ssl__reflect(r + a, h) * w + ssl__reflect(i + b, w)) * 3 + c];
                y[((size_t)r * w + i) * 3 + c] = (float)acc;
            }
}

TEST(blur_properties) {
    ssl_buf sc = {0};
    /* a constant image comes out exactly, for any sigma and size */
    int sizes[][2] = {{37, 29}, {224, 224}, {1, 9}, {2, 2}, {5, 1}, {3, 40}};
    float sigmas[] = {0.1f, 0.7f, 2.0f, 5.0f};
    for (int s = 0; s < 6; s++)
        for (int g = 0; g < 4; g++) {
            int w = sizes[s][0], h = sizes[s][1];
            size_t n = (size_t)w * h * 3;
            float *x = malloc(sizeof(float) * n);
            for (size_t i = 0; i < n; i++) x[i] = (i % 3 == 0) ? 0.3f : (i % 3 == 1) ? 0.77f : 0.123456f;
            ssl_aug_params p = ssl_aug_identity();
            p.blur_sigma = sigmas[g];
            ssl_augment_apply(&p, x, w, h, &sc);
            int ok = 1;
            for (size_t i = 0; i < n; i++) ok &= x[i] == ((i % 3 == 0) ? 0.3f : (i % 3 == 1) ? 0.77f : 0.123456f);
            CHECK(ok, "constant %dx%d sigma %g changed", w, h, sigmas[g]);
            free(x);
        }
    /* against a direct 2D convolution in double, small and clipped sizes too */
    double emax = 0;
    for (int s = 0; s < 6; s++)
        for (int g = 0; g < 4; g++) {
            int w = sizes[s][0], h = sizes[s][1];
            if (w * h > 2000) continue;
            size_t n = (size_t)w * h * 3;
            float *x = test_image(w, h, 7), *ref = malloc(sizeof(float) * n);
            blur_reference(x, ref, w, h, sigmas[g]);
            ssl_aug_params p = ssl_aug_identity();
            p.blur_sigma = sigmas[g];
            ssl_augment_apply(&p, x, w, h, &sc);
            for (size_t i = 0; i < n; i++) emax = fmax(emax, fabs(x[i] - ref[i]));
            free(x), free(ref);
        }
    printf("    blur vs direct 2D reflect convolution: max error %.3g\n", emax);
    CHECK(emax < 1e-6, "separable blur off the 2D reference by %g", emax);
    /* the mean: reflect padding moves mass only near the edges, by at most
       ~(edge band / side) x (edge contrast). With sigma 2 on 224x224 the
       test image's mean moves by ~3e-6 and a horizontal ramp x^2 (the worst
       kind: reflect pulls both ends inward, asymmetrically) by ~3e-5;
       tolerance 1e-4 for both. */
    int w = 224, h = 224;
    size_t n = (size_t)w * h * 3;
    float *x = test_image(w, h, 11);
    double m0 = 0, m1 = 0;
    for (size_t i = 0; i < n; i++) m0 += x[i];
    ssl_aug_params p = ssl_aug_identity();
    p.blur_sigma = 2.0f;
    ssl_augment_apply(&p, x, w, h, &sc);
    for (size_t i = 0; i < n; i++) m1 += x[i];
    printf("    blur sigma 2 on 224x224: mean %.7f -> %.7f\n", m0 / n, m1 / n);
    CHECK_NEAR(m1 / n, m0 / n, 1e-4);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i / 3) % w) / (w - 1) * (float)((i / 3) % w) / (w - 1);
    m0 = m1 = 0;
    for (size_t i = 0; i < n; i++) m0 += x[i];
    ssl_augment_apply(&p, x, w, h, &sc);
    for (size_t i = 0; i < n; i++) m1 += x[i];
    printf("    blur sigma 2 on a 224x224 ramp x^2: mean %.7f -> %.7f\n", m0 / n, m1 / n);
    CHECK_NEAR(m1 / n, m0 / n, 1e-4);
    free(x);
    ssl_buf_free(&sc);
}

/* The fused pass equals applying the ops one at a time, in the documented
   order (flip, jitter in order, gray, blur, solarize, noise). */
TEST(augment_fused_equals_sequential) {
    int w = 53, h = 41;
    size_t n = (size_t)w * h * 3;
    ssl_buf sc = {0};
    ssl_view_recipe rc;
    CHECK_OK(ssl_view_preset("byol", 1, w, &rc));
    rc.jitter_p = 1, rc.solarize_p = 0.5f, rc.blur_p = 0.5f, rc.gray_p = 0.3f, rc.noise_p = 0.5f, rc.noise_std = 0.1f;
    double emax = 0;
    for (int s = 0; s < 40; s++) {
        ssl_aug_params p = ssl_view_draw(&rc, 300, 200, 77, 1, (uint32_t)s, 1);
        float *a = test_image(w, h, (uint32_t)s), *b = malloc(sizeof(float) * n);
        memcpy(b, a, sizeof(float) * n);
        ssl_augment_apply(&p, a, w, h, &sc);
        ssl_aug_params q = ssl_aug_identity();
        q.flip = p.flip;
        ssl_augment_apply(&q, b, w, h, &sc);
        for (int k = 0; k < 4; k++) {
            q = ssl_aug_identity(), q.jitter = 1;
            int o = p.order[k];
            if (o == 0) q.brightness = p.brightness;
            if (o == 1) q.contrast = p.contrast;
            if (o == 2) q.saturation = p.saturation;
            if (o == 3) q.hue = p.hue;
            ssl_augment_apply(&q, b, w, h, &sc);
        }
        q = ssl_aug_identity(), q.gray = p.gray;
        ssl_augment_apply(&q, b, w, h, &sc);
        q = ssl_aug_identity(), q.blur_sigma = p.blur_sigma;
        ssl_augment_apply(&q, b, w, h, &sc);
        q = ssl_aug_identity(), q.solarize = p.solarize, q.solarize_threshold = p.solarize_threshold;
        ssl_augment_apply(&q, b, w, h, &sc);
        q = ssl_aug_identity(), q.noise_std = p.noise_std, q.noise_seed = p.noise_seed;
        ssl_augment_apply(&q, b, w, h, &sc);
        for (size_t i = 0; i < n; i++) emax = fmax(emax, fabs(a[i] - b[i]));
        free(a), free(b);
    }
    CHECK(emax == 0, "fused differs from sequential by %g", emax);
    ssl_buf_free(&sc);
}

TEST(apply_ex_equals_parts) {
    /* scale by 1/255, augment, normalize: fused = one after another, bit for bit */
    int sw = 120, sh = 90;
    uint8_t *src = malloc((size_t)sw * sh * 3);
    for (int i = 0; i < sw * sh * 3; i++) src[i] = (uint8_t)((i * 2654435761u) >> 24);
    ssl_view_recipe rc;
    CHECK_OK(ssl_view_preset("simclr", 0, 48, &rc));
    rc.jitter_p = 1, rc.blur_p = 0.5f, rc.solarize_p = 0.5f, rc.flip_p = 0.5f, rc.noise_p = 0.3f, rc.noise_std = 0.1f;
    ssl_buf sc = {0};
    size_t n = 48 * 48 * 3;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    double emax = 0;
    for (int s = 0; s < 32; s++) {
        if (s == 16) rc.jitter_p = rc.gray_p = rc.blur_p = 0; /* the in-place path */
        ssl_aug_params p = ssl_view_draw(&rc, sw, sh, 3, 0, (uint32_t)s, 0);
        ssl_resample(src, sw, sh, 3, p.crop_x, p.crop_y, p.crop_w, p.crop_h, NULL, a, 48, 48, SSL_FILTER_BILINEAR, &sc);
        memcpy(b, a, sizeof(float) * n);
        ssl_augment_apply_ex(&p, a, 48, 48, 255.0f, rc.mean, rc.std, &sc);
        for (size_t i = 0; i < n; i++) b[i] /= 255.0f;
        ssl_augment_apply(&p, b, 48, 48, &sc);
        ssl_normalize(b, 48, 48, rc.mean, rc.std);
        for (size_t i = 0; i < n; i++) emax = fmax(emax, fabs(a[i] - b[i]));
    }
    CHECK(emax == 0, "apply_ex differs from its parts by %g", emax);
    free(a), free(b), free(src);
    ssl_buf_free(&sc);
}

TEST(noise_statistics) {
    /* on a 0.5 image with std 0.1, clamping never bites (5 sigma): the noise
       is x - 0.5; z = noise / 0.1. 150528 values: mean of z within 0.015 (6 SE of
       2.6e-3), std within 1% (5 SE), kurtosis 3 within 0.1 (8 SE) */
    int w = 224, h = 224;
    size_t n = (size_t)w * h * 3;
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = 0.5f;
    ssl_aug_params p = ssl_aug_identity();
    p.noise_std = 0.1f, p.noise_seed = 0x1234567890abcdefull;
    ssl_buf sc = {0};
    ssl_augment_apply(&p, x, w, h, &sc);
    double s1 = 0, s2 = 0, s4 = 0, c01 = 0;
    for (size_t i = 0; i < n; i++) {
        double z = (x[i] - 0.5) / 0.1;
        s1 += z, s2 += z * z, s4 += z * z * z * z;
        if (i % 3 == 0) c01 += z * (x[i + 1] - 0.5) / 0.1;
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    printf("    noise: mean %.4f std %.4f kurtosis %.3f corr(r,g) %.4f\n", mean, sqrt(var), s4 / n / (var * var),
           c01 / (n / 3));
    CHECK_NEAR(mean, 0, 0.015);
    CHECK_NEAR(sqrt(var), 1.0, 0.01);
    CHECK_NEAR(s4 / n / (var * var), 3.0, 0.1);
    CHECK_NEAR(c01 / (n / 3), 0.0, 0.02);
    /* the fast log and sincos against libm */
    double el = 0, es = 0;
    for (int i = 1; i <= 1 << 16; i++) {
        float u = (float)i / (1 << 16);
        float s, c;
        el = fmax(el, fabs(ssl__log(u) - log(u)));
        ssl__sincos2pi(u - 1.0f / (1 << 17), &s, &c);
        es = fmax(es, fmax(fabs(s - sin(6.283185307179586 * (u - 1.0 / (1 << 17)))),
                           fabs(c - cos(6.283185307179586 * (u - 1.0 / (1 << 17))))));
    }
    printf("    fast log max error %.3g, sincos max error %.3g\n", el, es);
    CHECK(el < 1e-6 && es < 1e-6, "log %g sincos %g", el, es);
    /* same seed, same noise; another seed, another */
    float *y = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) y[i] = 0.5f;
    ssl_augment_apply(&p, y, w, h, &sc);
    CHECK(!memcmp(x, y, sizeof(float) * n), "noise is not deterministic");
    for (size_t i = 0; i < n; i++) y[i] = 0.5f;
    p.noise_seed++;
    ssl_augment_apply(&p, y, w, h, &sc);
    CHECK(memcmp(x, y, sizeof(float) * n) != 0, "noise ignores its seed");
    free(x), free(y);
    ssl_buf_free(&sc);
}

/* ---- drawing ------------------------------------------------------------- */

TEST(view_draw_determinism_and_rates) {
    ssl_view_recipe rc;
    CHECK_OK(ssl_view_preset("byol", 1, 224, &rc));
    ssl_aug_params a = ssl_view_draw(&rc, 500, 375, 42, 3, 1000, 1), b = ssl_view_draw(&rc, 500, 375, 42, 3, 1000, 1);
    CHECK(!memcmp(&a, &b, sizeof a), "same key, different params");
    int differ = 0;
    for (uint32_t s = 0; s < 20; s++) {
        a = ssl_view_draw(&rc, 500, 375, 42, 3, s, 1), b = ssl_view_draw(&rc, 500, 375, 42, 4, s, 1);
        differ += memcmp(&a, &b, sizeof a) != 0;
    }
    CHECK_EQ(differ, 20); /* the crop alone differs with near certainty */
    a = ssl_view_draw(&rc, 500, 375, 42, 3, 7, 0), b = ssl_view_draw(&rc, 500, 375, 42, 3, 7, 1);
    CHECK(a.crop_x != b.crop_x || a.crop_y != b.crop_y || a.crop_w != b.crop_w, "views share a crop");

    /* rates over 20k draws: SE of a rate <= 0.0035; tolerance 0.015 */
    CHECK_OK(ssl_view_preset("simclr", 0, 224, &rc));
    int N = 20000, flip = 0, jit = 0, gray = 0, blur = 0, sol = 0, perm[24] = {0}, range_ok = 1;
    double sig = 0;
    for (int s = 0; s < N; s++) {
        ssl_aug_params p = ssl_view_draw(&rc, 500, 375, 5, 0, (uint32_t)s, 0);
        flip += p.flip, gray += p.gray, sol += p.solarize, blur += p.blur_sigma > 0;
        if (p.blur_sigma > 0) {
            sig += p.blur_sigma;
            range_ok &= p.blur_sigma >= 0.1f && p.blur_sigma <= 2.0f;
        }
        if (p.jitter) {
            jit++;
            range_ok &= p.brightness >= 0.6f && p.brightness <= 1.4f && p.contrast >= 0.6f && p.contrast <= 1.4f &&
                        p.saturation >= 0.8f && p.saturation <= 1.2f && p.hue >= -0.1f && p.hue <= 0.1f;
            int seen = 0, code = 0, avail[4] = {0, 1, 2, 3}, left = 4;
            for (int k = 0; k < 4; k++) seen |= 1 << p.order[k];
            range_ok &= seen == 15;
            for (int k = 0; k < 4; k++) { /* Lehmer code of the permutation */
                int j = 0;
                while (avail[j] != p.order[k]) j++;
                code = code * left + j;
                for (; j < left - 1; j++) avail[j] = avail[j + 1];
                left--;
            }
            perm[code]++;
        }
    }
    CHECK(range_ok, "a drawn value fell outside its range");
    CHECK_NEAR((double)flip / N, 0.5, 0.015);
    CHECK_NEAR((double)jit / N, 0.8, 0.015);
    CHECK_NEAR((double)gray / N, 0.2, 0.015);
    CHECK_NEAR((double)blur / N, 0.5, 0.015);
    CHECK_EQ(sol, 0);
    CHECK_NEAR(sig / blur, 1.05, 0.02);
    int pmin = N, pmax = 0;
    for (int k = 0; k < 24; k++) pmin = perm[k] < pmin ? perm[k] : pmin, pmax = perm[k] > pmax ? perm[k] : pmax;
    /* 16000 jittered / 24 = 667 each, SE 25: all within 667 +- 120 */
    CHECK(pmin > 547 && pmax < 787, "order permutations not uniform: min %d max %d", pmin, pmax);
}

TEST(view_presets) {
    const char *names[] = {"simclr", "byol", "crop_gray", "crop_flip", "noise"};
    for (int i = 0; i < 5; i++)
        for (int v = 0; v < 2; v++) {
            ssl_view_recipe r;
            CHECK_OK(ssl_view_preset(names[i], v, 224, &r));
            CHECK_OK(ssl_view_recipe_check(&r));
            CHECK(r.out_w == 224 && r.out_h == 224 && r.mean[0] == 0.485f && r.std[2] == 0.225f, "%s", names[i]);
        }
    ssl_view_recipe r0, r1;
    CHECK_OK(ssl_view_preset("simclr", 0, 224, &r0));
    CHECK(r0.scale_min == 0.08f && r0.scale_max == 1.0f && r0.flip_p == 0.5f && r0.jitter_p == 0.8f &&
              r0.brightness == 0.4f && r0.contrast == 0.4f && r0.saturation == 0.2f && r0.hue == 0.1f &&
              r0.gray_p == 0.2f && r0.blur_p == 0.5f && r0.blur_sigma_min == 0.1f && r0.blur_sigma_max == 2.0f &&
              r0.solarize_p == 0 && r0.noise_p == 0,
          "simclr recipe");
    CHECK_OK(ssl_view_preset("simclr", 1, 224, &r1));
    CHECK(!memcmp(&r0, &r1, sizeof r0), "simclr views must be alike");
    CHECK_OK(ssl_view_preset("byol", 0, 224, &r0));
    CHECK_OK(ssl_view_preset("byol", 1, 224, &r1));
    CHECK(r0.blur_p == 1.0f && r0.solarize_p == 0 && r1.blur_p == 0.1f && r1.solarize_p == 0.2f &&
              r0.jitter_p == 0.8f && r0.gray_p == 0.2f,
          "byol asymmetry");
    CHECK_OK(ssl_view_preset("crop_gray", 0, 224, &r0));
    CHECK(r0.gray_p == 0.2f && r0.jitter_p == 0 && r0.blur_p == 0 && r0.flip_p == 0.5f && r0.scale_min == 0.08f,
          "crop_gray");
    CHECK_OK(ssl_view_preset("crop_flip", 1, 224, &r0));
    CHECK(r0.gray_p == 0 && r0.jitter_p == 0 && r0.blur_p == 0 && r0.solarize_p == 0 && r0.noise_p == 0 &&
              r0.flip_p == 0.5f && r0.scale_min == 0.08f && r0.scale_max == 1.0f,
          "crop_flip: crop and flip, no colour op");
    CHECK_OK(ssl_view_preset("noise", 0, 224, &r0));
    CHECK(r0.noise_p == 1 && r0.noise_std == 0.1f && r0.jitter_p == 0 && r0.gray_p == 0 && r0.flip_p == 0, "noise");
    ssl_aug_params p = ssl_view_draw(&r0, 500, 375, 1, 0, 0, 0);
    CHECK(p.crop_x == 0 && p.crop_y == 0 && p.crop_w == 500 && p.crop_h == 375 && p.noise_std == 0.1f,
          "noise preset must not crop");
    CHECK_ERR(ssl_view_preset("simclrr", 0, 224, &r0), "unknown view preset 'simclrr' (valid: simclr, byol, crop_gray, crop_flip, noise)");
    CHECK_ERR(ssl_view_preset("simclr", 0, 0, &r0), "output size 0");
    r0.hue = 0.7f;
    CHECK_ERR(ssl_view_recipe_check(&r0), "hue = 0.7");
    CHECK_OK(ssl_view_preset("simclr", 0, 224, &r0));
    r0.gray_p = 1.5f;
    CHECK_ERR(ssl_view_recipe_check(&r0), "gray_p = 1.5");
}
