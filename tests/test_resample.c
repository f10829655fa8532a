/* The loader's fast resampler (fixed point, AVX2) against the exact one:
   random images, boxes (fractional, touching edges, whole image), output
   sizes (1x1 to 260x260), channel counts, up to 8x shrinking and 11x
   enlarging. uint8 within 1 everywhere and mean |diff| < 0.1; float within
   0.02 in 0..255 units, at gain 1 and at gain 1/255. */
#include "test.h"

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static double urand(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }

static double g_fmax, g_umean;
static int g_umax, g_bad;

static void one(const uint8_t *img, int sw, int sh, int c, double bx, double by, double bw, double bh, int dw, int dh, int filter) {
    size_t n = (size_t)dw * dh * c;
    uint8_t *ru = malloc(n), *fu = malloc(n);
    float *rf = malloc(4 * n), *ff = malloc(4 * n), *rg = malloc(4 * n), *fg = malloc(4 * n);
    ssl_buf s1 = {0, 0}, s2 = {0, 0};
    ssl_resample(img, sw, sh, c, bx, by, bw, bh, ru, NULL, dw, dh, (ssl_filter)filter, &s1);
    ssl_resample(img, sw, sh, c, bx, by, bw, bh, NULL, rf, dw, dh, (ssl_filter)filter, &s1);
    ssl__resample_gain(img, sw, sh, c, bx, by, bw, bh, NULL, rg, dw, dh, (ssl_filter)filter, 1.0f / 255, &s1);
    ssl__resample_fast(img, sw, sh, c, bx, by, bw, bh, fu, NULL, dw, dh, (ssl_filter)filter, 1.0f, &s2);
    ssl__resample_fast(img, sw, sh, c, bx, by, bw, bh, NULL, ff, dw, dh, (ssl_filter)filter, 1.0f, &s2);
    ssl__resample_fast(img, sw, sh, c, bx, by, bw, bh, NULL, fg, dw, dh, (ssl_filter)filter, 1.0f / 255, &s2);
    double fmax = 0, usum = 0;
    int umax = 0;
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)ff[k] - rf[k]), g = fabs((double)fg[k] - rg[k]) * 255;
        if (!(e <= fmax)) fmax = e;
        if (!(g <= fmax)) fmax = g;
        int u = abs((int)fu[k] - (int)ru[k]);
        if (u > umax) umax = u;
        usum += u;
    }
    if (fmax > g_fmax) g_fmax = fmax;
    if (umax > g_umax) g_umax = umax;
    if (n >= 64 && usum / n > g_umean) g_umean = usum / n;
    if (!(fmax <= 0.02) || umax > 1 || (n >= 64 && usum / n >= 0.1)) {
        if (g_bad++ < 5)
            test_fail(__FILE__, __LINE__, "%dx%dx%d box (%.3f %.3f %.3f %.3f) -> %dx%d filter %d: float %.4g, u8 max %d mean %.4f",
                      sw, sh, c, bx, by, bw, bh, dw, dh, filter, fmax, umax, usum / n);
    }
    ssl_buf_free(&s1);
    ssl_buf_free(&s2);
    free(ru); free(fu); free(rf); free(ff); free(rg); free(fg);
}

static uint8_t *rand_img(int w, int h, int c, int smooth) {
    uint8_t *p = malloc((size_t)w * h * c);
    for (size_t k = 0; k < (size_t)w * h * c; k++) p[k] = (uint8_t)rnd();
    if (smooth)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++) p[((size_t)y * w + x) * c + ch] = (uint8_t)((x * 3 + y * 5 + ch * 40 + (p[((size_t)y * w + x) * c + ch] & 15)) & 255);
    return p;
}

TEST(fast_resampler_matches_the_exact_one) {
    g_fmax = g_umean = 0;
    g_umax = g_bad = 0;
    int cases = 0;
    for (int it = 0; it < 600; it++) {
        int c = (rnd() & 1) ? 3 : 1;
        if (it % 50 == 7) c = 4;
        if (it % 50 == 9) c = 2;
        int sw = 1 + (int)(rnd() % 300), sh = 1 + (int)(rnd() % 300);
        if (it % 3 == 0) sw = sh = 224;
        uint8_t *img = rand_img(sw, sh, c, (int)(rnd() & 1));
        double bw, bh, bx, by;
        int mode = (int)(rnd() % 5);
        if (mode == 0) { bw = 1 + (sw - 1) * urand(); bh = 1 + (sh - 1) * urand(); }
        else { bw = 1 + (int)(rnd() % sw); bh = 1 + (int)(rnd() % sh); }
        bx = (sw - bw) * urand();
        by = (sh - bh) * urand();
        if (mode != 0) { bx = floor(bx); by = floor(by); }
        if (mode == 2) { bx = 0; by = sh - bh; }
        if (mode == 3) { bx = sw - bw; by = 0; }
        if (mode == 4 && (rnd() & 1)) { bx = 0; by = 0; bw = sw; bh = sh; }
        int dw, dh, om = (int)(rnd() % 6);
        if (om == 0) dw = dh = 1;
        else if (om == 1) { dw = 3; dh = 2; }
        else if (om == 2) dw = dh = 224;
        else { dw = 1 + (int)(rnd() % 260); dh = 1 + (int)(rnd() % 260); }
        if (bw / dw > 8) dw = (int)ceil(bw / 8);
        if (bh / dh > 8) dh = (int)ceil(bh / 8);
        one(img, sw, sh, c, bx, by, bw, bh, dw, dh, it % 10 == 5 ? SSL_FILTER_BOX : SSL_FILTER_BILINEAR);
        cases++;
        free(img);
    }
    for (int c = 1; c <= 3; c += 2) {
        uint8_t *img = rand_img(900, 900, c, 1);
        one(img, 900, 900, c, 0, 0, 896, 896, 112, 112, SSL_FILTER_BILINEAR);        /* 8x */
        one(img, 900, 900, c, 3.3, 7.7, 850.5, 600.25, 224, 224, SSL_FILTER_BILINEAR); /* 3.8x, 2.7x */
        one(img, 900, 900, c, 100.5, 100.25, 20, 15, 224, 224, SSL_FILTER_BILINEAR);  /* 11x up */
        one(img, 900, 900, c, 890, 890, 10, 10, 224, 224, SSL_FILTER_BILINEAR);       /* corner */
        cases += 4;
        free(img);
    }
    printf("    %d cases: float max |diff| %.4g (0..255 units), uint8 max %d, worst uint8 mean %.4f\n", cases, g_fmax, g_umax, g_umean);
}

/* ssl__resample_post: the uint8 result of ssl__resample_fast, mirrored, then
   scale / solarize / normalize in float, bit for bit, at odd widths (the
   scalar tail), with and without non-temporal stores. */
TEST(fused_float_pass_is_the_uint8_crop_finished) {
    int cases = 0, skipped = 0, exact = 0;
    for (int it = 0; it < 200; it++) {
        int sw = 8 + (int)(rnd() % 200), sh = 8 + (int)(rnd() % 200);
        uint8_t *img = rand_img(sw, sh, 3, (int)(rnd() & 1));
        double bw = 2 + (sw - 2) * urand(), bh = 2 + (sh - 2) * urand();
        double bx = (sw - bw) * urand(), by = (sh - bh) * urand();
        int dw = 1 + (int)(rnd() % 120), dh = 1 + (int)(rnd() % 120), flip = (int)(rnd() & 1);
        if (it % 4 == 0) dw = dh = 64;
        ssl__rs_post post = {255.0f, it % 3 ? 0.5f : INFINITY, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
        if (it % 5 == 0) for (int c = 0; c < 3; c++) post.mean[c] = 0, post.std[c] = 1;
        if (it % 7 == 3) post.std[1] = 0.3f + 0.001f * it; /* other stds: the division or its FMA form */
        ssl__rs_post_init(&post);
        if (it % 6 == 0) post.exact = 0; /* the divisions themselves */
        exact += post.exact;
        size_t n = (size_t)dw * dh * 3;
        uint8_t *u = malloc(n);
        float *f = aligned_alloc(64, (n * 4 + 63) & ~(size_t)63);
        ssl_buf s = {0, 0};
        if (ssl__resample_post(img, sw, sh, 0, 0, bx, by, bw, bh, f, dw, dh, flip, &post, it & 1, &s) != 0) {
            skipped++;
        } else {
            ssl__resample_fast(img, sw, sh, 3, bx, by, bw, bh, u, NULL, dw, dh, SSL_FILTER_BILINEAR, 1.0f, &s);
            int bad = 0;
            for (int y = 0; y < dh; y++)
                for (int x = 0; x < dw; x++)
                    for (int c = 0; c < 3; c++) {
                        int sx = flip ? dw - 1 - x : x;
                        float v = u[((size_t)y * dw + sx) * 3 + c] / post.range;
                        v = v >= post.threshold ? 1.0f - v : v;
                        v = (v - post.mean[c]) / post.std[c];
                        bad += memcmp(&v, &f[((size_t)y * dw + x) * 3 + c], 4) != 0;
                    }
            CHECK(bad == 0, "%dx%d box (%.2f %.2f %.2f %.2f) -> %dx%d flip %d: %d values differ", sw, sh, bx, by, bw, bh, dw, dh, flip, bad);
            cases++;
        }
        ssl_buf_free(&s);
        free(u);
        free(f);
        free(img);
    }
    printf("    %d cases bit-exact (%d with the divisions as multiply + FMA, the rest dividing), %d left to the two-pass path (taps too wide)\n", cases, exact, skipped);
    CHECK(cases > 150);
}
