/* Instance-SimCLR (FFCV-SSL paper, section 3.4): the loss and its
   gradients against PyTorch (tests/gen_instance_fixtures.py) and finite
   differences, its views against their definitions (the positives the
   whole image with Gaussian noise only, the negative a patch of the same
   image), and ./train negatives=patch running. */
#include "test.h"

#include <sys/stat.h>

#define FIXTURE "tests/fixtures/instance_simclr.sslt"

static float *entry(const ssl_tfile *f, const char *name, int64_t numel) {
    const ssl_tentry *e = ssl_tfile_find(f, name);
    if (!e || e->dtype != SSL_F32 || ssl_tentry_numel(e) != numel) {
        test_fail(__FILE__, __LINE__, "fixture %s missing or not float32[%lld]", name, (long long)numel);
        return NULL;
    }
    float *p = malloc(e->nbytes);
    memcpy(p, e->data, e->nbytes);
    return p;
}

/* max |a - b| over n, relative to max |b| */
static double rel_err(const float *a, const float *b, int n) {
    double e = 0, m = 1e-30;
    for (int i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > e) e = fabs(a[i] - b[i]);
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / m;
}

TEST(instance_simclr_loss_matches_pytorch) {
    ssl_tfile f;
    CHECK_OK(ssl_tfile_read(FIXTURE, &f));
    if (!f.bytes) return;
    const int n = 8, d = 16;
    float *z1 = entry(&f, "instance_simclr/z1", n * d), *z2 = entry(&f, "instance_simclr/z2", n * d),
          *zp = entry(&f, "instance_simclr/zp", n * d), *tau = entry(&f, "instance_simclr/tau", 1),
          *want = entry(&f, "instance_simclr/loss", 1), *w1 = entry(&f, "instance_simclr/dz1", n * d),
          *w2 = entry(&f, "instance_simclr/dz2", n * d), *wp = entry(&f, "instance_simclr/dzp", n * d);
    if (z1 && z2 && zp && tau && want && w1 && w2 && wp) {
        float g1[8 * 16], g2[8 * 16], gp[8 * 16], loss;
        ssl_tensor a = ssl_tensor_mat(z1, n, d), b = ssl_tensor_mat(z2, n, d), p = ssl_tensor_mat(zp, n, d);
        ssl_tensor ta = ssl_tensor_mat(g1, n, d), tb = ssl_tensor_mat(g2, n, d), tp = ssl_tensor_mat(gp, n, d);
        ssl_buf scratch = {0};
        CHECK_OK(ssl_simclr_patch_loss(&a, &b, &p, tau[0], &loss, &ta, &tb, &tp, &scratch));
        double e1 = rel_err(g1, w1, n * d), e2 = rel_err(g2, w2, n * d), ep = rel_err(gp, wp, n * d);
        printf("    loss %.7f (torch %.7f); gradient errors %.1e %.1e %.1e of their max\n", loss, want[0], e1, e2, ep);
        CHECK(fabs(loss - want[0]) <= 1e-5 * fabs(want[0]), "loss %.8f, torch %.8f", loss, want[0]);
        CHECK(e1 <= 1e-5 && e2 <= 1e-5 && ep <= 1e-5, "gradients vs torch: %.2e %.2e %.2e", e1, e2, ep);
        ssl_buf_free(&scratch);
    }
    free(z1), free(z2), free(zp), free(tau), free(want), free(w1), free(w2), free(wp);
    ssl_tfile_free(&f);
}

/* central differences in double of the float loss, h = 3e-2 as for the
   other losses (test_engine.c): within 2e-3 of max |grad| */
TEST(instance_simclr_loss_gradcheck) {
    const int n = 6, d = 10;
    float z[3][6 * 10], g[3][6 * 10], loss;
    ssl_rng r = ssl_rng_make(7, 0, 0, 0, 0);
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < n * d; i++) z[v][i] = ssl_rng_range(&r, -1, 1) + (v == 1 ? 0.8f * z[0][i] : 0.0f);
    ssl_tensor t[3], dt[3];
    for (int v = 0; v < 3; v++) t[v] = ssl_tensor_mat(z[v], n, d), dt[v] = ssl_tensor_mat(g[v], n, d);
    ssl_buf scratch = {0};
    CHECK_OK(ssl_simclr_patch_loss(&t[0], &t[1], &t[2], 0.2f, &loss, &dt[0], &dt[1], &dt[2], &scratch));
    const double h = 3e-2;
    for (int v = 0; v < 3; v++) {
        double worst = 0, gmax = 1e-30;
        for (int i = 0; i < n * d; i++) {
            float keep = z[v][i], lp, lm;
            z[v][i] = keep + (float)h;
            CHECK_OK(ssl_simclr_patch_loss(&t[0], &t[1], &t[2], 0.2f, &lp, NULL, NULL, NULL, &scratch));
            z[v][i] = keep - (float)h;
            CHECK_OK(ssl_simclr_patch_loss(&t[0], &t[1], &t[2], 0.2f, &lm, NULL, NULL, NULL, &scratch));
            z[v][i] = keep;
            double fd = ((double)lp - lm) / (2 * h);
            if (fabs(fd - g[v][i]) > worst) worst = fabs(fd - g[v][i]);
            if (fabs(g[v][i]) > gmax) gmax = fabs(g[v][i]);
        }
        printf("    d/d%s: finite differences within %.1e of max |grad| %.3f\n", v == 0 ? "z1" : v == 1 ? "z2" : "zp", worst / gmax, gmax);
        CHECK(worst <= 2e-3 * gmax, "view %d: finite differences off by %.2e (max |grad| %.3e)", v, worst, gmax);
    }
    /* the definition: a patch identical to each view's positive makes
       each row's two logits equal: the loss is ln 2 */
    CHECK_OK(ssl_simclr_patch_loss(&t[0], &t[0], &t[0], 0.2f, &loss, NULL, NULL, NULL, &scratch));
    CHECK(fabs(loss - logf(2.0f)) < 1e-6, "loss %.7f with the patch equal to the positive (want ln 2)", loss);
    CHECK_ERR(ssl_simclr_patch_loss(&t[0], &t[1], &t[2], 0.0f, &loss, NULL, NULL, NULL, &scratch), "temperature");
    ssl_tensor small = ssl_tensor_mat(z[2], n - 1, d);
    CHECK_ERR(ssl_simclr_patch_loss(&t[0], &t[1], &small, 0.2f, &loss, NULL, NULL, NULL, &scratch), "zp");
    ssl_buf_free(&scratch);
}

/* Other images' embeddings never enter a row: the loss of a batch is the
   mean of the losses of its images taken one at a time. */
TEST(instance_simclr_rows_see_only_their_own_patch) {
    const int n = 5, d = 7;
    float z[3][5 * 7], batch, one, sum = 0;
    ssl_rng r = ssl_rng_make(11, 0, 0, 0, 0);
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < n * d; i++) z[v][i] = ssl_rng_range(&r, -1, 1);
    ssl_tensor t[3];
    for (int v = 0; v < 3; v++) t[v] = ssl_tensor_mat(z[v], n, d);
    ssl_buf scratch = {0};
    CHECK_OK(ssl_simclr_patch_loss(&t[0], &t[1], &t[2], 0.3f, &batch, NULL, NULL, NULL, &scratch));
    for (int i = 0; i < n; i++) {
        ssl_tensor a = ssl_tensor_mat(z[0] + i * d, 1, d), b = ssl_tensor_mat(z[1] + i * d, 1, d), p = ssl_tensor_mat(z[2] + i * d, 1, d);
        CHECK_OK(ssl_simclr_patch_loss(&a, &b, &p, 0.3f, &one, NULL, NULL, NULL, &scratch));
        sum += one;
    }
    printf("    batch of %d: %.7f, mean of one-image losses %.7f\n", n, batch, sum / n);
    CHECK(fabs(batch - sum / n) <= 1e-6 * fabs(batch) + 1e-7, "batch loss %.8f vs mean of singles %.8f", batch, sum / n);
    ssl_buf_free(&scratch);
}

/* The positives: the "noise" preset, the whole image (box = the image) with
   Gaussian noise (std 0.1) and nothing else. The negative: a patch of area
   fraction `scale` in the image's own ratio, at a random place, nothing
   else; resized to the view size. */
TEST(instance_simclr_views_are_their_definitions) {
    ssl_view_recipe pos, neg;
    CHECK_OK(ssl_view_preset("noise", 0, 16, &pos));
    CHECK_OK(ssl_view_patch(16, 0.09f, &neg));
    CHECK(neg.out_w == 16 && neg.out_h == 16, "patch resized to %dx%d", neg.out_w, neg.out_h);
    const int W = 40, H = 30;
    int moved = 0;
    float x0 = -1, y0 = -1;
    for (uint32_t s = 0; s < 50; s++) {
        for (uint32_t v = 0; v < 2; v++) {
            ssl_aug_params p = ssl_view_draw(&pos, W, H, 3, 0, s, v);
            CHECK(p.crop_x == 0 && p.crop_y == 0 && p.crop_w == W && p.crop_h == H, "positive view cropped: %g %g %g %g", p.crop_x,
                  p.crop_y, p.crop_w, p.crop_h);
            CHECK(!p.flip && !p.jitter && !p.gray && p.blur_sigma == 0 && !p.solarize && fabsf(p.noise_std - 0.1f) < 1e-7,
                  "positive view: flip %d jitter %d gray %d blur %g solarize %d noise %g", p.flip, p.jitter, p.gray, p.blur_sigma,
                  p.solarize, p.noise_std);
        }
        ssl_aug_params q = ssl_view_draw(&neg, W, H, 3, 0, s, 2);
        /* sqrt(0.09) = 0.3 of each side: 12 x 9 */
        CHECK(q.crop_w == 12 && q.crop_h == 9, "patch %gx%g of a %dx%d image (want 12x9)", q.crop_w, q.crop_h, W, H);
        CHECK(q.crop_x >= 0 && q.crop_y >= 0 && q.crop_x + q.crop_w <= W && q.crop_y + q.crop_h <= H, "patch outside the image");
        CHECK(!q.flip && !q.jitter && !q.gray && q.blur_sigma == 0 && !q.solarize && q.noise_std == 0, "the patch is augmented");
        if (s == 0) x0 = q.crop_x, y0 = q.crop_y;
        else moved |= q.crop_x != x0 || q.crop_y != y0;
    }
    CHECK(moved, "the patch is always at the same place");
    CHECK_ERR(ssl_view_patch(16, 0.0f, &neg), "scale");
    CHECK_ERR(ssl_view_patch(16, 1.5f, &neg), "scale");
}

/* the first "loss" of a run's log.jsonl (-1: none) */
static double first_loss(const char *dir) {
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    uint8_t *b;
    size_t n;
    if (ssl_read_file(path, &b, &n) != 0) return -1;
    const char *l = strstr((char *)b, "\"loss\": ");
    double v = l ? atof(l + 8) : -1;
    free(b);
    return v;
}

/* ./train simclr negatives=patch: three views through the model, the loss
   starts near ln 2 (two candidates a row) and the run ends with a
   checkpoint; negatives=patch with another method or views is refused. */
TEST(instance_simclr_trains) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *dir = test_tmp("run_instance");
    char *out, pack[SSL_STR];
    snprintf(pack, sizeof pack, "%s", test_fmnist_pack("instance128.ssl", 128));
    if (test_failures()) return;
    int rc = test_runf(&out, NULL, "rm -rf %s && %s simclr negatives=patch patch_scale=0.1 data=%s width=0.0625 res=16 bs=32 "
                       "projector=32-16 threads=1 loader_threads=1 log_every=1 device=cpu epochs=1 out=%s",
                       dir, t, pack, dir);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "Instance-SimCLR");
    free(out);
    double first = first_loss(dir);
    printf("    first loss %.4f (ln 2 = 0.6931)\n", first);
    CHECK(first > 0.3 && first < 1.2, "first loss %.4f, want near ln 2", first);
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/ckpt.sslt", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0, "no checkpoint");
    /* the device path (three views augmented and stepped on the device),
       emulated without a GPU: the first loss is the CPU's */
    const char *dg = test_tmp("run_instance_cuda");
    rc = test_runf(&out, NULL, "rm -rf %s && SSL_CUDA_EMULATE=2 %s simclr negatives=patch patch_scale=0.1 data=%s width=0.0625 "
                   "res=16 bs=32 projector=32-16 threads=1 loader_threads=1 log_every=1 device=cuda precision=fp32 max_steps=1 out=%s",
                   dg, t, pack, dg);
    if (rc != 0 && strstr(out, "built without CUDA")) printf("    ./train was built without CUDA: the device path not run\n");
    else {
        CHECK(rc == 0, "device=cuda: exit %d: %s", rc, out);
        double lg = first_loss(dg), lc = first_loss(dir);
        printf("    first loss: device=cuda (emulated) %.7f, cpu %.7f\n", lg, lc);
        CHECK(fabs(lg - lc) <= 1e-4 * fabs(lc), "device loss %.7f vs cpu %.7f", lg, lc);
    }
    free(out);
    rc = test_runf(&out, NULL, "%s vicreg negatives=patch data=%s out=%s", t, pack, dir);
    CHECK(rc != 0 && strstr(out, "negatives=patch"), "vicreg negatives=patch: %s", out);
    free(out);
    rc = test_runf(&out, NULL, "%s simclr negatives=patch views=simclr data=%s out=%s", t, pack, dir);
    CHECK(rc != 0 && strstr(out, "views=noise"), "negatives=patch views=simclr: %s", out);
    free(out);
}
