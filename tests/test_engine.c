/* Tests of sections 7 (tensors, GEMM, layers) and 9 (losses):
   - finite-difference gradient checks of every layer and loss;
   - PyTorch fixtures (tests/fixtures/engine.sslt, made by
     tests/gen_engine_fixtures.py): forward values and gradients;
   - bad shapes, GPU tensors in a CPU-only build, mixed devices.
   ENGINE_VERBOSE=1 prints every measured error. */

#include "test.h"

static int verbose(void) { return getenv("ENGINE_VERBOSE") != NULL; }

static float *falloc(int64_t n) { return (float *)ssl_calloc(sizeof(float) * (size_t)(n > 0 ? n : 1), "test"); }

/* n standard normals * scale, from stream `stream` (deterministic). */
static float *randn(int64_t n, uint32_t stream, float scale) {
    float *p = falloc(n);
    ssl_rng r = ssl_rng_make(777, 0, stream, 0, SSL_RNG_INIT);
    for (int64_t i = 0; i < n; i++) p[i] = scale * ssl_rng_normal(&r);
    return p;
}

/* max |a - ref| / max |ref|: the error relative to the tensor's scale. */
static double rel_err(const float *a, const float *ref, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= e)) e = d; /* NaN propagates */
        if (fabs(ref[i]) > s) s = fabs(ref[i]);
    }
    return e / (s > 0 ? s : 1.0);
}

/* ENGINE_VERBOSE also prints each expected error message. */
#undef CHECK_ERR
#define CHECK_ERR(expr, needle)                                                                          \
    do {                                                                                                 \
        int r_ = (expr);                                                                                 \
        if (verbose()) printf("    error: %s\n", r_ ? ssl_last_error() : "(none)");                      \
        if (r_ == 0) test_fail(__FILE__, __LINE__, "%s succeeded, expected an error with '%s'", #expr, needle); \
        else if (!strstr(ssl_last_error(), needle))                                                      \
            test_fail(__FILE__, __LINE__, "%s: error '%s' does not mention '%s'", #expr, ssl_last_error(), needle); \
    } while (0)

#define CHECK_CLOSE(what, a, ref, n, tol)                                                                         \
    do {                                                                                                          \
        double e_ = rel_err(a, ref, n);                                                                           \
        if (verbose()) printf("    %-36s max err %.2e (tol %.0e)\n", what, e_, (double)(tol));                   \
        CHECK(e_ <= (tol), "%s: max error %.3g relative to max |ref| exceeds %.3g", what, e_, (double)(tol)); \
    } while (0)

/* ---- finite differences -------------------------------------------------
   The objective is evaluated by the float32 forward and accumulated in
   double (sum(out * r) for a layer, the loss itself for a loss); the central
   difference (f(p+h) - f(p-h)) / 2h is taken in double. Checked on up to
   `samples` coordinates spread over the tensor: |fd - analytic| <= tol *
   max |analytic|. */
typedef double (*objective_fn)(void *ctx);

static void gradcheck(const char *what, float *p, int64_t n, const float *an, objective_fn f, void *ctx, double h,
                      double tol) {
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fabs(an[i]) > scale ? fabs(an[i]) : scale;
    if (scale == 0) scale = 1;
    int samples = 40;
    int64_t step = n / samples > 0 ? n / samples : 1;
    for (int64_t i = (n > 1 ? 1 : 0); i < n; i += step) {
        float keep = p[i];
        p[i] = (float)(keep + h);
        double up = f(ctx);
        p[i] = (float)(keep - h);
        double down = f(ctx);
        p[i] = keep;
        double fd = (up - down) / ((double)(float)(keep + h) - (double)(float)(keep - h));
        double e = fabs(fd - an[i]) / scale;
        if (!(e <= worst)) worst = e;
        if (!(e <= tol)) test_fail(__FILE__, __LINE__, "%s[%lld]: finite difference %.6g, analytic %.6g (max |grad| %.3g)",
                                   what, (long long)i, fd, an[i], scale);
    }
    f(ctx); /* leave the outputs of the unperturbed point */
    if (verbose()) printf("    %-36s fd err %.2e (tol %.0e, h %.0e)\n", what, worst, tol, h);
}

static double weighted_sum(const float *y, const float *r, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)y[i] * r[i];
    return s;
}

/* ---- GEMM ---------------------------------------------------------------- */
TEST(engine_gemm_loops_match_blas_and_double) {
    int M = 13, N = 7, K = 11;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
            float *A = randn((ta ? K : M) * lda, 1, 1), *B = randn((tb ? N : K) * ldb, 2, 1);
            float *C0 = randn(M * ldc, 3, 1), *C1 = falloc(M * ldc), *C2 = falloc(M * ldc), *ref = falloc(M * ldc);
            memcpy(C1, C0, sizeof(float) * M * ldc);
            memcpy(C2, C0, sizeof(float) * M * ldc);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                    ref[i * ldc + j] = (float)(0.7 * s + 0.3 * C0[i * ldc + j]);
                }
            ssl_gemm_loops(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, C1, ldc);
            ssl_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, C2, ldc);
            double e1 = 0, e2 = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    e1 = fmax(e1, fabs(C1[i * ldc + j] - ref[i * ldc + j]));
                    e2 = fmax(e2, fabs(C2[i * ldc + j] - ref[i * ldc + j]));
                }
            CHECK(e1 < 1e-5 && e2 < 1e-5, "ta %d tb %d: loops err %g, ssl_gemm err %g", ta, tb, e1, e2);
            /* beta = 0 ignores C, NaN included */
            for (int i = 0; i < M * ldc; i++) C1[i] = NAN;
            ssl_gemm_loops(ta, tb, M, N, K, 1, A, lda, B, ldb, 0, C1, ldc);
            CHECK(!isnan(C1[0]) && !isnan(C1[(M - 1) * ldc + N - 1]), "beta 0 kept a NaN");
            free(A); free(B); free(C0); free(C1); free(C2); free(ref);
        }
}

/* ---- conv ---------------------------------------------------------------- */
typedef struct {
    ssl_tensor x, w, b, y;
    int stride, pad, has_bias;
    float *r;
    ssl_buf scratch;
} conv_case;

static double conv_objective(void *ctx) {
    conv_case *c = (conv_case *)ctx;
    SSL_ASSERT(ssl_conv2d_forward(&c->x, &c->w, c->has_bias ? &c->b : NULL, c->stride, c->pad, &c->y, &c->scratch) == 0,
               "%s", ssl_last_error());
    return weighted_sum(c->y.data, c->r, ssl_tensor_numel(&c->y));
}

static void conv_case_make(conv_case *c, int n, int h, int w, int ci, int co, int kh, int kw, int stride, int pad,
                           int bias, uint32_t seed) {
    memset(c, 0, sizeof *c);
    int oh = ssl_conv_out_size(h, kh, stride, pad), ow = ssl_conv_out_size(w, kw, stride, pad);
    c->x = ssl_tensor_nhwc(randn((int64_t)n * h * w * ci, seed, 1), n, h, w, ci);
    c->w = ssl_tensor_nhwc(randn((int64_t)co * kh * kw * ci, seed + 1, 0.3f), co, kh, kw, ci);
    c->b = ssl_tensor_vec(randn(co, seed + 2, 1), co);
    c->y = ssl_tensor_nhwc(falloc((int64_t)n * oh * ow * co), n, oh, ow, co);
    c->r = randn(ssl_tensor_numel(&c->y), seed + 3, 1);
    c->stride = stride;
    c->pad = pad;
    c->has_bias = bias;
}
static void conv_case_free(conv_case *c) {
    free(c->x.data); free(c->w.data); free(c->b.data); free(c->y.data); free(c->r);
    ssl_buf_free(&c->scratch);
}

TEST(engine_conv_gradcheck) {
    /* n h w ci co kh kw stride pad bias */
    static const int cases[][10] = {
        {2, 5, 6, 3, 4, 3, 3, 1, 1, 0}, /* 3x3 same padding, odd sizes */
        {1, 7, 5, 2, 3, 3, 3, 2, 1, 1}, /* 3x3 stride 2 */
        {2, 6, 5, 4, 3, 1, 1, 2, 0, 0}, /* 1x1 stride-2 downsample */
        {2, 4, 3, 3, 5, 1, 1, 1, 0, 1}, /* 1x1 stride 1: the direct GEMM */
        {1, 9, 8, 3, 2, 7, 7, 2, 3, 0}, /* the 7x7 stem */
        {1, 5, 7, 2, 3, 2, 3, 1, 0, 1}, /* non-square kernel */
        {1, 7, 7, 2, 2, 3, 3, 3, 0, 0}, /* stride 3: some pixels unused */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int *k = cases[t];
        conv_case c;
        conv_case_make(&c, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], 100 + 10 * (uint32_t)t);
        conv_objective(&c);
        ssl_tensor dy = c.y, dx = c.x, dw = c.w, db = c.b;
        dy.data = c.r;
        dx.data = randn(ssl_tensor_numel(&c.x), 9, 1); /* written: garbage must not survive */
        dw.data = falloc(ssl_tensor_numel(&c.w));      /* accumulated: start at zero */
        db.data = falloc(k[4]);
        CHECK_OK(ssl_conv2d_backward(&c.x, &c.w, &dy, c.stride, c.pad, &dx, &dw, c.has_bias ? &db : NULL, &c.scratch));
        char name[64];
        /* conv is linear in each argument: no truncation error, h can be large */
        snprintf(name, sizeof name, "conv case %zu dx", t);
        gradcheck(name, c.x.data, ssl_tensor_numel(&c.x), dx.data, conv_objective, &c, 1e-1, 1e-4);
        snprintf(name, sizeof name, "conv case %zu dw", t);
        gradcheck(name, c.w.data, ssl_tensor_numel(&c.w), dw.data, conv_objective, &c, 1e-1, 1e-4);
        if (c.has_bias) {
            snprintf(name, sizeof name, "conv case %zu db", t);
            gradcheck(name, c.b.data, k[4], db.data, conv_objective, &c, 1e-1, 1e-4);
        }
        /* parameter gradients accumulate: a second backward doubles them */
        float *dw1 = falloc(ssl_tensor_numel(&c.w));
        memcpy(dw1, dw.data, sizeof(float) * (size_t)ssl_tensor_numel(&c.w));
        CHECK_OK(ssl_conv2d_backward(&c.x, &c.w, &dy, c.stride, c.pad, NULL, &dw, NULL, &c.scratch));
        for (int64_t i = 0; i < ssl_tensor_numel(&c.w); i++) dw1[i] *= 2;
        CHECK_CLOSE("conv dw accumulates", dw.data, dw1, ssl_tensor_numel(&c.w), 1e-6);
        free(dw1); free(dx.data); free(dw.data); free(db.data);
        conv_case_free(&c);
    }
}

/* A conv with several im2col blocks against direct loops in double. */
TEST(engine_conv_blocked_matches_direct_loops) {
    int n = 2, h = 48, w = 48, ci = 64, co = 16, kk = 3, s = 1, p = 1;
    conv_case c;
    conv_case_make(&c, n, h, w, ci, co, kk, kk, s, p, 1, 500);
    int64_t rows = (int64_t)n * h * w, kdim = (int64_t)kk * kk * ci;
    CHECK(rows * kdim * 4 > (int64_t)SSL_IM2COL_BYTES, "the case should need more than one im2col block");
    conv_objective(&c);
    ssl_tensor dy = c.y, dx = c.x, dw = c.w, db = c.b;
    dy.data = c.r;
    dx.data = falloc(ssl_tensor_numel(&c.x));
    dw.data = falloc(ssl_tensor_numel(&c.w));
    db.data = falloc(co);
    CHECK_OK(ssl_conv2d_backward(&c.x, &c.w, &dy, s, p, &dx, &dw, &db, &c.scratch));
    float *y = falloc(ssl_tensor_numel(&c.y)), *rdx = falloc(ssl_tensor_numel(&c.x)), *rdw = falloc(ssl_tensor_numel(&c.w));
    double *ddx = (double *)ssl_calloc(sizeof(double) * (size_t)ssl_tensor_numel(&c.x), "t");
    double *ddw = (double *)ssl_calloc(sizeof(double) * (size_t)ssl_tensor_numel(&c.w), "t");
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++)
                for (int o = 0; o < co; o++) {
                    int64_t yi = (((int64_t)b * h + oy) * w + ox) * co + o;
                    double acc = c.b.data[o], g = c.r[yi];
                    for (int ky = 0; ky < kk; ky++)
                        for (int kx = 0; kx < kk; kx++) {
                            int iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            for (int i = 0; i < ci; i++) {
                                int64_t xi = (((int64_t)b * h + iy) * w + ix) * ci + i, wi = (((int64_t)o * kk + ky) * kk + kx) * ci + i;
                                acc += (double)c.x.data[xi] * c.w.data[wi];
                                ddx[xi] += g * c.w.data[wi];
                                ddw[wi] += g * c.x.data[xi];
                            }
                        }
                    y[yi] = (float)acc;
                }
    for (int64_t i = 0; i < ssl_tensor_numel(&c.x); i++) rdx[i] = (float)ddx[i];
    for (int64_t i = 0; i < ssl_tensor_numel(&c.w); i++) rdw[i] = (float)ddw[i];
    CHECK_CLOSE("blocked conv y", c.y.data, y, ssl_tensor_numel(&c.y), 1e-5);
    CHECK_CLOSE("blocked conv dx", dx.data, rdx, ssl_tensor_numel(&c.x), 1e-5);
    CHECK_CLOSE("blocked conv dw", dw.data, rdw, ssl_tensor_numel(&c.w), 1e-5);
    free(y); free(rdx); free(rdw); free(ddx); free(ddw);
    free(dx.data); free(dw.data); free(db.data);
    conv_case_free(&c);
}

TEST(engine_conv_weight_permutation) {
    int o = 3, i = 4, kh = 2, kw = 5, n = o * i * kh * kw;
    float *t = randn(n, 40, 1), *ours = falloc(n), *back = falloc(n);
    ssl_conv_weight_from_torch(t, ours, o, i, kh, kw);
    /* torch w[2][3][1][4] is ours [2][1][4][3] */
    CHECK(ours[((2 * kh + 1) * kw + 4) * i + 3] == t[((2 * i + 3) * kh + 1) * kw + 4], "wrong permutation");
    ssl_conv_weight_to_torch(ours, back, o, i, kh, kw);
    CHECK(memcmp(t, back, sizeof(float) * n) == 0, "to_torch(from_torch(w)) != w");
    free(t); free(ours); free(back);
}

/* ---- batch norm ---------------------------------------------------------- */
typedef struct {
    ssl_batchnorm bn;
    int training;
    ssl_tensor x, y, mean, invstd;
    float *r;
} bn_case;

static double bn_objective(void *ctx) {
    bn_case *c = (bn_case *)ctx;
    SSL_ASSERT(ssl_batchnorm_forward(&c->bn, c->training, &c->x, &c->y, &c->mean, &c->invstd) == 0, "%s", ssl_last_error());
    return weighted_sum(c->y.data, c->r, ssl_tensor_numel(&c->y));
}

static void bn_gradcheck(ssl_tensor x, int training, uint32_t seed) {
    bn_case c;
    int64_t ch = ssl_tensor_cols(&x), n = ssl_tensor_numel(&x);
    c.bn = ssl_batchnorm_default();
    c.bn.weight = ssl_tensor_vec(randn(ch, seed, 0.5f), ch);
    c.bn.bias = ssl_tensor_vec(randn(ch, seed + 1, 1), ch);
    c.bn.running_mean = ssl_tensor_vec(randn(ch, seed + 2, 0.1f), ch);
    c.bn.running_var = ssl_tensor_vec(falloc(ch), ch);
    for (int64_t i = 0; i < ch; i++) c.bn.running_var.data[i] = 0.8f + 0.1f * (float)i;
    c.training = training;
    c.x = x;
    c.y = x;
    c.y.data = falloc(n);
    c.mean = ssl_tensor_vec(falloc(ch), ch);
    c.invstd = ssl_tensor_vec(falloc(ch), ch);
    c.r = randn(n, seed + 3, 1);
    bn_objective(&c);
    ssl_tensor dy = x, dx = x, dwt = c.bn.weight, dbs = c.bn.bias;
    dy.data = c.r;
    dx.data = randn(n, seed + 4, 1);
    dwt.data = falloc(ch);
    dbs.data = falloc(ch);
    CHECK_OK(ssl_batchnorm_backward(&c.bn, training, &c.x, &dy, &c.mean, &c.invstd, &dx, &dwt, &dbs));
    char name[64];
    const char *mode = training ? "train" : "eval";
    /* smooth but nonlinear in x (through the batch statistics): h 1e-2
       keeps the float32 rounding of the objective small against 2h, the
       h^2 truncation error stays under 1e-4 */
    snprintf(name, sizeof name, "bn %s %dd dx", mode, x.ndim == 4 ? 2 : 1);
    gradcheck(name, c.x.data, n, dx.data, bn_objective, &c, 1e-2, 5e-4);
    snprintf(name, sizeof name, "bn %s %dd dweight", mode, x.ndim == 4 ? 2 : 1);
    gradcheck(name, c.bn.weight.data, ch, dwt.data, bn_objective, &c, 1e-2, 1e-4);
    snprintf(name, sizeof name, "bn %s %dd dbias", mode, x.ndim == 4 ? 2 : 1);
    gradcheck(name, c.bn.bias.data, ch, dbs.data, bn_objective, &c, 1e-2, 1e-4);
    free(c.bn.weight.data); free(c.bn.bias.data); free(c.bn.running_mean.data); free(c.bn.running_var.data);
    free(c.y.data); free(c.mean.data); free(c.invstd.data); free(c.r); free(dx.data); free(dwt.data); free(dbs.data);
}

TEST(engine_bn_gradcheck) {
    float *x2 = randn(3 * 4 * 5 * 6, 60, 2), *x1 = randn(10 * 7, 61, 2);
    for (int i = 0; i < 3 * 4 * 5 * 6; i++) x2[i] += 0.5f;
    bn_gradcheck(ssl_tensor_nhwc(x2, 3, 4, 5, 6), 1, 200);
    bn_gradcheck(ssl_tensor_mat(x1, 10, 7), 1, 210);
    bn_gradcheck(ssl_tensor_nhwc(x2, 3, 4, 5, 6), 0, 220);
    free(x2); free(x1);
}

/* The blocked, threaded statistics against a plain double loop, on a
   tensor big enough to start threads. */
TEST(engine_bn_large_batch_statistics) {
    int64_t rows = 64 * 32 * 32, ch = 16, n = rows * ch;
    float *x = randn(n, 70, 3);
    for (int64_t i = 0; i < n; i++) x[i] += 10.0f; /* a large mean: E[x^2] - mean^2 would lose digits */
    ssl_batchnorm bn = ssl_batchnorm_default();
    ssl_tensor tx = ssl_tensor_nhwc(x, 64, 32, 32, ch), ty = tx, mean = ssl_tensor_vec(falloc(ch), ch),
               invstd = ssl_tensor_vec(falloc(ch), ch);
    ty.data = falloc(n);
    CHECK_OK(ssl_batchnorm_forward(&bn, 1, &tx, &ty, &mean, &invstd));
    float rm[16], ri[16];
    for (int64_t c = 0; c < ch; c++) {
        double s = 0, ss = 0;
        for (int64_t r = 0; r < rows; r++) s += x[r * ch + c];
        double m = s / rows;
        for (int64_t r = 0; r < rows; r++) ss += (x[r * ch + c] - m) * (x[r * ch + c] - m);
        rm[c] = (float)m;
        ri[c] = (float)(1 / sqrt(ss / rows + 1e-5));
    }
    CHECK_CLOSE("bn large mean", mean.data, rm, ch, 1e-6);
    CHECK_CLOSE("bn large invstd", invstd.data, ri, ch, 1e-6);
    free(x); free(ty.data); free(mean.data); free(invstd.data);
}

/* The fused batch norm (+ residual + ReLU in the output pass, the ReLU's
   mask in the backward's reads) gives the separate ops' bits, big enough to
   run threaded, train and eval, with and without the residual. */
TEST(engine_bn_fused_add_relu_same_bits) {
    int64_t rows = 16 * 20 * 20, ch = 12, n = rows * ch;
    for (int mode = 0; mode < 4; mode++) {
        int training = mode & 1, with_res = mode >> 1;
        float *x = randn(n, 80, 2), *res = randn(n, 81, 1), *dy = randn(n, 82, 1);
        ssl_batchnorm bn[2];
        float *p = randn(8 * ch, 83, 1);
        for (int k = 0; k < 2; k++) {
            bn[k] = ssl_batchnorm_default();
            bn[k].weight = ssl_tensor_vec(falloc(ch), ch), bn[k].bias = ssl_tensor_vec(falloc(ch), ch);
            bn[k].running_mean = ssl_tensor_vec(falloc(ch), ch), bn[k].running_var = ssl_tensor_vec(falloc(ch), ch);
            for (int64_t i = 0; i < ch; i++) {
                bn[k].weight.data[i] = 1 + 0.3f * p[i], bn[k].bias.data[i] = p[ch + i];
                bn[k].running_mean.data[i] = p[2 * ch + i], bn[k].running_var.data[i] = 1 + 0.5f * fabsf(p[3 * ch + i]);
            }
        }
        ssl_tensor tx = ssl_tensor_nhwc(x, 16, 20, 20, ch), tr = tx, tdy = tx, y[2], dx[2], mean[2], inv[2], dw[2], db[2];
        tr.data = res, tdy.data = dy;
        for (int k = 0; k < 2; k++) {
            y[k] = dx[k] = tx;
            y[k].data = falloc(n), dx[k].data = falloc(n);
            mean[k] = ssl_tensor_vec(falloc(ch), ch), inv[k] = ssl_tensor_vec(falloc(ch), ch);
            dw[k] = ssl_tensor_vec(falloc(ch), ch), db[k] = ssl_tensor_vec(falloc(ch), ch);
        }
        /* separate: BN, add, ReLU; ReLU backward into a copy of dy, BN backward */
        CHECK_OK(ssl_batchnorm_forward(&bn[0], training, &tx, &y[0], &mean[0], &inv[0]));
        if (with_res) CHECK_OK(ssl_add(&y[0], &tr, &y[0]));
        CHECK_OK(ssl_relu_forward(&y[0], &y[0]));
        ssl_tensor dym = tdy;
        dym.data = falloc(n);
        CHECK_OK(ssl_relu_backward(&y[0], &tdy, &dym));
        CHECK_OK(ssl_batchnorm_backward(&bn[0], training, &tx, &dym, &mean[0], &inv[0], &dx[0], &dw[0], &db[0]));
        /* fused */
        CHECK_OK(ssl_batchnorm_forward_act(&bn[1], training, &tx, with_res ? &tr : NULL, 1, &y[1], &mean[1], &inv[1]));
        CHECK_OK(ssl_batchnorm_backward_act(&bn[1], training, &tx, &y[1], &tdy, &mean[1], &inv[1], &dx[1], &dw[1], &db[1]));
        /* the masked dy stored by the input-gradient pass (into a copy of dy,
           in place): the ReLU backward's bits, and dx unchanged */
        {
            ssl_tensor dyr = tdy, dx2 = tdy, dw2 = ssl_tensor_vec(falloc(ch), ch);
            dyr.data = falloc(n), dx2.data = falloc(n);
            memcpy(dyr.data, dy, sizeof(float) * (size_t)n);
            CHECK_OK(ssl_batchnorm_backward_ex(&bn[1], training, &tx, &y[1], &dyr, &mean[1], &inv[1], &dx2, &dw2, NULL, &dyr));
            CHECK(memcmp(dyr.data, dym.data, sizeof(float) * (size_t)n) == 0, "dy_relu in place differs from the ReLU backward");
            CHECK(memcmp(dx2.data, dx[1].data, sizeof(float) * (size_t)n) == 0, "dx differs when dy_relu is stored");
            CHECK(ssl_batchnorm_backward_ex(&bn[1], training, &tx, NULL, &tdy, &mean[1], &inv[1], &dx2, NULL, NULL, &dyr) != 0,
                  "dy_relu taken without a ReLU");
            CHECK(ssl_batchnorm_backward_ex(&bn[1], training, &tx, &y[1], &tdy, &mean[1], &inv[1], NULL, NULL, NULL, &dyr) != 0,
                  "dy_relu taken without dx");
            CHECK(ssl_batchnorm_backward_ex(&bn[1], training, &tx, &y[1], &tdy, &mean[1], &inv[1], &dx2, NULL, NULL, &dx2) != 0,
                  "dy_relu taken as dx");
            free(dyr.data), free(dx2.data), free(dw2.data);
        }
        const char *what[6] = {"y", "dx", "dweight", "dbias", "running_mean", "running_var"};
        const float *a[6] = {y[0].data, dx[0].data, dw[0].data, db[0].data, bn[0].running_mean.data, bn[0].running_var.data};
        const float *b[6] = {y[1].data, dx[1].data, dw[1].data, db[1].data, bn[1].running_mean.data, bn[1].running_var.data};
        int64_t len[6] = {n, n, ch, ch, ch, ch};
        for (int k = 0; k < 6; k++)
            CHECK(memcmp(a[k], b[k], sizeof(float) * (size_t)len[k]) == 0, "%s (%s, %s): fused and separate differ",
                  what[k], training ? "train" : "eval", with_res ? "residual" : "no residual");
        for (int k = 0; k < 2; k++) {
            free(y[k].data), free(dx[k].data), free(mean[k].data), free(inv[k].data), free(dw[k].data), free(db[k].data);
            free(bn[k].weight.data), free(bn[k].bias.data), free(bn[k].running_mean.data), free(bn[k].running_var.data);
        }
        free(x), free(res), free(dy), free(p), free(dym.data);
    }
}

/* ---- relu, pools, linear, add -------------------------------------------- */
typedef struct {
    int kind; /* 0 relu, 1 maxpool, 2 avgpool, 3 linear, 4 add */
    ssl_tensor x, x2, w, b, y;
    int k, stride, pad;
    float *r;
} simple_case;

static double simple_objective(void *ctx) {
    simple_case *c = (simple_case *)ctx;
    int rc = c->kind == 0   ? ssl_relu_forward(&c->x, &c->y)
             : c->kind == 1 ? ssl_maxpool2d_forward(&c->x, c->k, c->stride, c->pad, &c->y)
             : c->kind == 2 ? ssl_avgpool_forward(&c->x, &c->y)
             : c->kind == 3 ? ssl_linear_forward(&c->x, &c->w, &c->b, &c->y)
                            : ssl_add(&c->x, &c->x2, &c->y);
    SSL_ASSERT(rc == 0, "%s", ssl_last_error());
    return weighted_sum(c->y.data, c->r, ssl_tensor_numel(&c->y));
}

/* x with every |value| >= 0.25 so that no kink lies within a step. */
static float *away_from_zero(int64_t n, uint32_t seed) {
    float *x = randn(n, seed, 1);
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.25f) x[i] = x[i] < 0 ? x[i] - 0.25f : x[i] + 0.25f;
    return x;
}

TEST(engine_relu_gradcheck) {
    simple_case c = {0};
    c.x = ssl_tensor_nhwc(away_from_zero(2 * 3 * 4 * 5, 80), 2, 3, 4, 5);
    c.y = c.x;
    c.y.data = falloc(120);
    c.r = randn(120, 81, 1);
    simple_objective(&c);
    ssl_tensor dy = c.y, dx = c.x;
    dy.data = c.r;
    dx.data = falloc(120);
    CHECK_OK(ssl_relu_backward(&c.y, &dy, &dx));
    gradcheck("relu dx", c.x.data, 120, dx.data, simple_objective, &c, 1e-1, 1e-5);
    /* in place: forward x -> x, backward dy -> dy */
    float *copy = falloc(120), *g = falloc(120);
    memcpy(copy, c.x.data, sizeof(float) * 120);
    memcpy(g, c.r, sizeof(float) * 120);
    ssl_tensor t = c.x, tg = dy;
    t.data = copy;
    tg.data = g;
    CHECK_OK(ssl_relu_forward(&t, &t));
    CHECK_OK(ssl_relu_backward(&t, &tg, &tg));
    CHECK(memcmp(g, dx.data, sizeof(float) * 120) == 0, "in-place relu differs");
    free(c.x.data); free(c.y.data); free(c.r); free(dx.data); free(copy); free(g);
}

TEST(engine_maxpool_gradcheck) {
    /* h w c k stride pad */
    static const int cases[][6] = {{9, 7, 3, 3, 2, 1}, {6, 5, 2, 2, 2, 0}, {5, 6, 2, 3, 1, 1}, {8, 8, 1, 3, 3, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int *k = cases[t];
        int n = 2, h = k[0], w = k[1], ch = k[2];
        int oh = ssl_conv_out_size(h, k[3], k[4], k[5]), ow = ssl_conv_out_size(w, k[3], k[4], k[5]);
        int64_t nx = (int64_t)n * h * w * ch, ny = (int64_t)n * oh * ow * ch;
        simple_case c = {1};
        c.k = k[3]; c.stride = k[4]; c.pad = k[5];
        /* distinct values 0.5 apart in random order: no tie within a step */
        c.x = ssl_tensor_nhwc(falloc(nx), n, h, w, ch);
        ssl_rng r = ssl_rng_make(5, 0, (uint32_t)t, 0, SSL_RNG_INIT);
        for (int64_t i = 0; i < nx; i++) c.x.data[i] = 0.5f * (float)(i - nx / 2);
        for (int64_t i = nx - 1; i > 0; i--) {
            int64_t j = ssl_rng_below(&r, (uint32_t)(i + 1));
            float tmp = c.x.data[i]; c.x.data[i] = c.x.data[j]; c.x.data[j] = tmp;
        }
        c.y = ssl_tensor_nhwc(falloc(ny), n, oh, ow, ch);
        c.r = randn(ny, 90 + (uint32_t)t, 1);
        simple_objective(&c);
        ssl_tensor dy = c.y, dx = c.x;
        dy.data = c.r;
        dx.data = randn(nx, 3, 1);
        CHECK_OK(ssl_maxpool2d_backward(&c.x, &dy, c.k, c.stride, c.pad, &dx));
        char name[64];
        snprintf(name, sizeof name, "maxpool case %zu dx", t);
        gradcheck(name, c.x.data, nx, dx.data, simple_objective, &c, 1e-1, 1e-5);
        free(c.x.data); free(c.y.data); free(c.r); free(dx.data);
    }
}

TEST(engine_maxpool_ties_go_to_the_first) {
    float x[2 * 2] = {1, 1, 1, 1}, y[1], g[1] = {5}, dx[4];
    ssl_tensor tx = ssl_tensor_nhwc(x, 1, 2, 2, 1), ty = ssl_tensor_nhwc(y, 1, 1, 1, 1), tg = ty, tdx = tx;
    tg.data = g;
    tdx.data = dx;
    CHECK_OK(ssl_maxpool2d_forward(&tx, 2, 2, 0, &ty));
    CHECK_OK(ssl_maxpool2d_backward(&tx, &tg, 2, 2, 0, &tdx));
    CHECK(dx[0] == 5 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0, "dx = %g %g %g %g", dx[0], dx[1], dx[2], dx[3]);
    /* a NaN wins and keeps winning, as in torch */
    x[1] = NAN;
    x[2] = 3;
    CHECK_OK(ssl_maxpool2d_forward(&tx, 2, 2, 0, &ty));
    CHECK_OK(ssl_maxpool2d_backward(&tx, &tg, 2, 2, 0, &tdx));
    CHECK(isnan(y[0]) && dx[1] == 5 && dx[2] == 0, "y %g, dx = %g %g %g %g", y[0], dx[0], dx[1], dx[2], dx[3]);
}

TEST(engine_avgpool_gradcheck) {
    simple_case c = {2};
    c.x = ssl_tensor_nhwc(randn(2 * 3 * 5 * 4, 100, 1), 2, 3, 5, 4);
    c.y = ssl_tensor_mat(falloc(8), 2, 4);
    c.r = randn(8, 101, 1);
    simple_objective(&c);
    ssl_tensor dy = c.y, dx = c.x;
    dy.data = c.r;
    dx.data = falloc(120);
    CHECK_OK(ssl_avgpool_backward(&dy, &dx));
    gradcheck("avgpool dx", c.x.data, 120, dx.data, simple_objective, &c, 1e-1, 1e-5);
    free(c.x.data); free(c.y.data); free(c.r); free(dx.data);
}

TEST(engine_linear_gradcheck) {
    simple_case c = {3};
    int rows = 6, in = 9, out = 5;
    c.x = ssl_tensor_nhwc(randn(rows * in, 110, 1), 2, 3, 1, in); /* any tensor with last dim `in` */
    c.w = ssl_tensor_mat(randn(out * in, 111, 0.3f), out, in);
    c.b = ssl_tensor_vec(randn(out, 112, 1), out);
    c.y = ssl_tensor_mat(falloc(rows * out), rows, out);
    c.r = randn(rows * out, 113, 1);
    simple_objective(&c);
    ssl_tensor dy = c.y, dx = c.x, dw = c.w, db = c.b;
    dy.data = c.r;
    dx.data = randn(rows * in, 4, 1);
    dw.data = falloc(out * in);
    db.data = falloc(out);
    CHECK_OK(ssl_linear_backward(&c.x, &c.w, &dy, &dx, &dw, &db));
    gradcheck("linear dx", c.x.data, rows * in, dx.data, simple_objective, &c, 1e-1, 1e-5);
    gradcheck("linear dw", c.w.data, out * in, dw.data, simple_objective, &c, 1e-1, 1e-5);
    gradcheck("linear db", c.b.data, out, db.data, simple_objective, &c, 1e-1, 1e-5);
    free(c.x.data); free(c.w.data); free(c.b.data); free(c.y.data); free(c.r);
    free(dx.data); free(dw.data); free(db.data);
}

TEST(engine_add_gradcheck) {
    simple_case c = {4};
    c.x = ssl_tensor_nhwc(randn(60, 120, 1), 3, 4, 5, 1);
    c.x2 = ssl_tensor_nhwc(randn(60, 121, 1), 3, 4, 5, 1);
    c.y = c.x;
    c.y.data = falloc(60);
    c.r = randn(60, 122, 1);
    simple_objective(&c);
    ssl_tensor dy = c.y, da = c.x, db = c.x;
    dy.data = c.r;
    da.data = falloc(60);
    db.data = falloc(60);
    CHECK_OK(ssl_add_backward(&dy, &da, &db));
    gradcheck("add da", c.x.data, 60, da.data, simple_objective, &c, 1e-1, 1e-5);
    gradcheck("add db", c.x2.data, 60, db.data, simple_objective, &c, 1e-1, 1e-5);
    free(c.x.data); free(c.x2.data); free(c.y.data); free(c.r); free(da.data); free(db.data);
}

/* ---- losses ---------------------------------------------------------------- */
#include "example_loss.h"
typedef struct {
    int kind; /* 0 simclr, 1 vicreg, 2 barlow, 3 byol, 4 the README's my_loss */
    ssl_tensor a, b, c, d; /* z1 z2 (byol: p1 p2 z1 z2) */
    ssl_buf scratch;
} loss_case;

static int loss_eval(loss_case *c, float *loss, ssl_tensor *g1, ssl_tensor *g2) {
    switch (c->kind) {
    case 0: return ssl_simclr_loss(&c->a, &c->b, 0.2f, loss, g1, g2, &c->scratch);
    case 1: return ssl_vicreg_loss(&c->a, &c->b, SSL_VICREG_SIM, SSL_VICREG_STD, SSL_VICREG_COV, loss, g1, g2, &c->scratch);
    case 2: return ssl_barlow_loss(&c->a, &c->b, SSL_BARLOW_LAMBD, loss, g1, g2, &c->scratch);
    case 4: return my_loss(&c->a, &c->b, 0.2f, 0.5f, loss, g1, g2, &c->scratch);
    default: return ssl_byol_loss(&c->a, &c->b, &c->c, &c->d, loss, g1, g2, &c->scratch);
    }
}
static double loss_objective(void *ctx) {
    float l;
    SSL_ASSERT(loss_eval((loss_case *)ctx, &l, NULL, NULL) == 0, "%s", ssl_last_error());
    return l;
}

TEST(engine_loss_gradcheck) {
    static const char *names[] = {"simclr", "vicreg", "barlow", "byol", "my_loss (README)"};
    /* the loss is a float32 scalar: its rounding (~1e-7 |L|) divided by 2h
       dominates the error (it shrinks as h grows from 3e-3 to 3e-2), so h
       is 3e-2, where the h^2 truncation error is still below it.
       Tolerance: 2e-3 of max |grad| (measured: at most 2e-4). */
    const double h = 3e-2, tol = 2e-3;
    for (int kind = 0; kind < 5; kind++) {
        int n = 8, d = 16;
        loss_case c = {kind};
        float scale = kind == 1 ? 0.7f : 1.0f; /* VICReg: most stds under the hinge */
        c.a = ssl_tensor_mat(randn(n * d, 130 + kind, scale), n, d);
        c.b = ssl_tensor_mat(randn(n * d, 140 + kind, scale), n, d);
        c.c = ssl_tensor_mat(randn(n * d, 150 + kind, 1), n, d);
        c.d = ssl_tensor_mat(randn(n * d, 160 + kind, 1), n, d);
        for (int i = 0; i < n * d; i++) c.b.data[i] += 0.8f * c.a.data[i]; /* correlated views */
        ssl_tensor g1 = ssl_tensor_mat(randn(n * d, 1, 1), n, d), g2 = ssl_tensor_mat(randn(n * d, 2, 1), n, d);
        float loss;
        CHECK_OK(loss_eval(&c, &loss, &g1, &g2));
        char name[64];
        snprintf(name, sizeof name, "%s d/d%s", names[kind], kind == 3 ? "p1" : "z1");
        gradcheck(name, c.a.data, n * d, g1.data, loss_objective, &c, h, tol);
        snprintf(name, sizeof name, "%s d/d%s", names[kind], kind == 3 ? "p2" : "z2");
        gradcheck(name, c.b.data, n * d, g2.data, loss_objective, &c, h, tol);
        free(c.a.data); free(c.b.data); free(c.c.data); free(c.d.data); free(g1.data); free(g2.data);
        ssl_buf_free(&c.scratch);
    }
}

/* ---- PyTorch fixtures ------------------------------------------------------ */
#define FIXTURE "tests/fixtures/engine.sslt"
/* Tolerance against torch (max error relative to the tensor's max |value|):
   the fixture is float64 math on the same float32 inputs, so this bounds
   our float32 error. */
#define TORCH_TOL 1e-5

/* A malloc'd copy (the file's data may be unaligned) of a float32 entry,
   checking its element count. NULL (and a failed check) if absent. */
static float *fx(const ssl_tfile *f, const char *name, int64_t numel) {
    const ssl_tentry *e = ssl_tfile_find(f, name);
    if (!e || e->dtype != SSL_F32 || ssl_tentry_numel(e) != numel) {
        test_fail(__FILE__, __LINE__, "fixture %s missing or not float32[%lld]", name, (long long)numel);
        return NULL;
    }
    float *p = falloc(numel);
    memcpy(p, e->data, e->nbytes);
    return p;
}
static const ssl_tentry *fx_entry(const ssl_tfile *f, const char *name) {
    const ssl_tentry *e = ssl_tfile_find(f, name);
    if (!e) test_fail(__FILE__, __LINE__, "fixture %s missing", name);
    return e;
}
static int fx_int(const ssl_tfile *f, const char *name, int i) {
    const ssl_tentry *e = fx_entry(f, name);
    int32_t v;
    memcpy(&v, (const char *)e->data + 4 * i, 4);
    return v;
}

/* torch NCHW -> our NHWC (and back). */
static float *nchw_to_nhwc(const float *src, int64_t n, int64_t c, int64_t h, int64_t w) {
    float *dst = falloc(n * c * h * w);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < c; i++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++) dst[((b * h + y) * w + x) * c + i] = src[((b * c + i) * h + y) * w + x];
    return dst;
}
/* A fixture activation [N,C,H,W], as an NHWC tensor. */
static ssl_tensor fx_nhwc(const ssl_tfile *f, const char *name) {
    const ssl_tentry *e = fx_entry(f, name);
    if (!e || e->ndim != 4) return ssl_tensor_nhwc(falloc(1), 1, 1, 1, 1);
    int64_t n = e->dims[0], c = e->dims[1], h = e->dims[2], w = e->dims[3];
    float *raw = fx(f, name, n * c * h * w);
    ssl_tensor t = ssl_tensor_nhwc(nchw_to_nhwc(raw, n, c, h, w), n, h, w, c);
    free(raw);
    return t;
}

static int open_fixture(ssl_tfile *f) {
    if (ssl_tfile_read(FIXTURE, f) != 0) {
        test_fail(__FILE__, __LINE__, "%s: %s (run tests/gen_engine_fixtures.py)", FIXTURE, ssl_last_error());
        return -1;
    }
    return 0;
}

TEST(engine_conv_matches_torch) {
    static const char *cases[] = {"3x3s1p1", "7x7s2p3", "1x1s2", "1x1s1b", "3x3s2p1b", "2x3s1p0"};
    ssl_tfile f;
    if (open_fixture(&f)) return;
    ssl_buf scratch = {0};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        char k[96], what[96];
#define NAME(s) (snprintf(k, sizeof k, "conv/%s/%s", cases[t], s), k)
        const ssl_tentry *we = fx_entry(&f, NAME("w"));
        if (!we) continue;
        int co = (int)we->dims[0], ci = (int)we->dims[1], kh = (int)we->dims[2], kw = (int)we->dims[3];
        int stride = fx_int(&f, NAME("cfg"), 0), pad = fx_int(&f, NAME("cfg"), 1), has_b = ssl_tfile_find(&f, NAME("b")) != NULL;
        float *w_torch = fx(&f, NAME("w"), (int64_t)co * ci * kh * kw);
        ssl_tensor x = fx_nhwc(&f, NAME("x")), g = fx_nhwc(&f, NAME("g")), yref = fx_nhwc(&f, NAME("y")),
                   dxref = fx_nhwc(&f, NAME("dx"));
        ssl_tensor w = ssl_tensor_nhwc(falloc((int64_t)co * kh * kw * ci), co, kh, kw, ci);
        ssl_conv_weight_from_torch(w_torch, w.data, co, ci, kh, kw);
        ssl_tensor b = ssl_tensor_vec(has_b ? fx(&f, NAME("b"), co) : falloc(co), co);
        ssl_tensor y = yref, dx = x, dw = w, db = b;
        y.data = falloc(ssl_tensor_numel(&yref));
        dx.data = falloc(ssl_tensor_numel(&x));
        dw.data = falloc(ssl_tensor_numel(&w));
        db.data = falloc(co);
        CHECK_OK(ssl_conv2d_forward(&x, &w, has_b ? &b : NULL, stride, pad, &y, &scratch));
        CHECK_OK(ssl_conv2d_backward(&x, &w, &g, stride, pad, &dx, &dw, has_b ? &db : NULL, &scratch));
        float *dw_torch = falloc(ssl_tensor_numel(&w)), *dwref = fx(&f, NAME("dw"), ssl_tensor_numel(&w));
        ssl_conv_weight_to_torch(dw.data, dw_torch, co, ci, kh, kw);
        snprintf(what, sizeof what, "torch conv %s y", cases[t]);
        CHECK_CLOSE(what, y.data, yref.data, ssl_tensor_numel(&y), TORCH_TOL);
        snprintf(what, sizeof what, "torch conv %s dx", cases[t]);
        CHECK_CLOSE(what, dx.data, dxref.data, ssl_tensor_numel(&x), TORCH_TOL);
        snprintf(what, sizeof what, "torch conv %s dw", cases[t]);
        CHECK_CLOSE(what, dw_torch, dwref, ssl_tensor_numel(&w), TORCH_TOL);
        if (has_b) {
            float *dbref = fx(&f, NAME("db"), co);
            snprintf(what, sizeof what, "torch conv %s db", cases[t]);
            CHECK_CLOSE(what, db.data, dbref, co, TORCH_TOL);
            free(dbref);
        }
#undef NAME
        free(w_torch); free(x.data); free(g.data); free(yref.data); free(dxref.data); free(w.data); free(b.data);
        free(y.data); free(dx.data); free(dw.data); free(db.data); free(dw_torch); free(dwref);
    }
    ssl_buf_free(&scratch);
    ssl_tfile_free(&f);
}

static void bn_against_torch(const ssl_tfile *f, const char *case_name) {
    char k[96], what[96];
#define NAME(s) (snprintf(k, sizeof k, "%s/%s", case_name, s), k)
    const ssl_tentry *xe = fx_entry(f, NAME("x"));
    if (!xe) return;
    ssl_tensor x, g, yref, dxref, yeref, dxeref;
    if (xe->ndim == 4) { /* BatchNorm2d: NCHW in the file */
        x = fx_nhwc(f, NAME("x")); g = fx_nhwc(f, NAME("g")); yref = fx_nhwc(f, NAME("y"));
        dxref = fx_nhwc(f, NAME("dx")); yeref = fx_nhwc(f, NAME("y_eval")); dxeref = fx_nhwc(f, NAME("dx_eval"));
    } else { /* BatchNorm1d: [N, C], our layout already */
        int64_t n = xe->dims[0], c = xe->dims[1];
        x = ssl_tensor_mat(fx(f, NAME("x"), n * c), n, c); g = ssl_tensor_mat(fx(f, NAME("g"), n * c), n, c);
        yref = ssl_tensor_mat(fx(f, NAME("y"), n * c), n, c); dxref = ssl_tensor_mat(fx(f, NAME("dx"), n * c), n, c);
        yeref = ssl_tensor_mat(fx(f, NAME("y_eval"), n * c), n, c);
        dxeref = ssl_tensor_mat(fx(f, NAME("dx_eval"), n * c), n, c);
    }
    int64_t c = ssl_tensor_cols(&x), n = ssl_tensor_numel(&x);
    ssl_batchnorm bn = ssl_batchnorm_default();
    bn.weight = ssl_tensor_vec(fx(f, NAME("weight"), c), c);
    bn.bias = ssl_tensor_vec(fx(f, NAME("bias"), c), c);
    bn.running_mean = ssl_tensor_vec(fx(f, NAME("rm0"), c), c);
    bn.running_var = ssl_tensor_vec(fx(f, NAME("rv0"), c), c);
    ssl_tensor y = x, dx = x, mean = ssl_tensor_vec(falloc(c), c), invstd = ssl_tensor_vec(falloc(c), c);
    ssl_tensor dwt = ssl_tensor_vec(falloc(c), c), dbs = ssl_tensor_vec(falloc(c), c);
    y.data = falloc(n);
    dx.data = falloc(n);
    CHECK_OK(ssl_batchnorm_forward(&bn, 1, &x, &y, &mean, &invstd));
    CHECK_OK(ssl_batchnorm_backward(&bn, 1, &x, &g, &mean, &invstd, &dx, &dwt, &dbs));
    float *ref = NULL;
    snprintf(what, sizeof what, "torch %s train y", case_name);
    CHECK_CLOSE(what, y.data, yref.data, n, TORCH_TOL);
    snprintf(what, sizeof what, "torch %s train dx", case_name);
    CHECK_CLOSE(what, dx.data, dxref.data, n, TORCH_TOL);
    snprintf(what, sizeof what, "torch %s dweight", case_name);
    ref = fx(f, NAME("dweight"), c); CHECK_CLOSE(what, dwt.data, ref, c, TORCH_TOL); free(ref);
    snprintf(what, sizeof what, "torch %s dbias", case_name);
    ref = fx(f, NAME("dbias"), c); CHECK_CLOSE(what, dbs.data, ref, c, TORCH_TOL); free(ref);
    snprintf(what, sizeof what, "torch %s running_mean", case_name);
    ref = fx(f, NAME("rm1"), c); CHECK_CLOSE(what, bn.running_mean.data, ref, c, TORCH_TOL); free(ref);
    snprintf(what, sizeof what, "torch %s running_var", case_name);
    ref = fx(f, NAME("rv1"), c); CHECK_CLOSE(what, bn.running_var.data, ref, c, TORCH_TOL); free(ref);
    /* eval with the updated running stats */
    CHECK_OK(ssl_batchnorm_forward(&bn, 0, &x, &y, &mean, &invstd));
    CHECK_OK(ssl_batchnorm_backward(&bn, 0, &x, &g, &mean, &invstd, &dx, NULL, NULL));
    snprintf(what, sizeof what, "torch %s eval y", case_name);
    CHECK_CLOSE(what, y.data, yeref.data, n, TORCH_TOL);
    snprintf(what, sizeof what, "torch %s eval dx", case_name);
    CHECK_CLOSE(what, dx.data, dxeref.data, n, TORCH_TOL);
#undef NAME
    free(x.data); free(g.data); free(yref.data); free(dxref.data); free(yeref.data); free(dxeref.data);
    free(bn.weight.data); free(bn.bias.data); free(bn.running_mean.data); free(bn.running_var.data);
    free(y.data); free(dx.data); free(mean.data); free(invstd.data); free(dwt.data); free(dbs.data);
}

TEST(engine_bn_matches_torch) {
    ssl_tfile f;
    if (open_fixture(&f)) return;
    bn_against_torch(&f, "bn2d");
    bn_against_torch(&f, "bn1d");
    ssl_tfile_free(&f);
}

TEST(engine_relu_pool_linear_add_match_torch) {
    ssl_tfile f;
    if (open_fixture(&f)) return;
    { /* relu */
        ssl_tensor x = fx_nhwc(&f, "relu/x"), g = fx_nhwc(&f, "relu/g"), yref = fx_nhwc(&f, "relu/y"),
                   dxref = fx_nhwc(&f, "relu/dx"), y = x, dx = x;
        int64_t n = ssl_tensor_numel(&x);
        y.data = falloc(n);
        dx.data = falloc(n);
        CHECK_OK(ssl_relu_forward(&x, &y));
        CHECK_OK(ssl_relu_backward(&y, &g, &dx));
        CHECK_CLOSE("torch relu y", y.data, yref.data, n, TORCH_TOL);
        CHECK_CLOSE("torch relu dx", dx.data, dxref.data, n, TORCH_TOL);
        free(x.data); free(g.data); free(yref.data); free(dxref.data); free(y.data); free(dx.data);
    }
    static const char *pools[] = {"k3s2p1", "k2s2p0"};
    for (int t = 0; t < 2; t++) { /* max pool */
        char k[64], what[64];
#define NAME(s) (snprintf(k, sizeof k, "maxpool/%s/%s", pools[t], s), k)
        int kk = fx_int(&f, NAME("cfg"), 0), s = fx_int(&f, NAME("cfg"), 1), p = fx_int(&f, NAME("cfg"), 2);
        ssl_tensor x = fx_nhwc(&f, NAME("x")), g = fx_nhwc(&f, NAME("g")), yref = fx_nhwc(&f, NAME("y")),
                   dxref = fx_nhwc(&f, NAME("dx")), y = yref, dx = x;
#undef NAME
        y.data = falloc(ssl_tensor_numel(&yref));
        dx.data = falloc(ssl_tensor_numel(&x));
        CHECK_OK(ssl_maxpool2d_forward(&x, kk, s, p, &y));
        CHECK_OK(ssl_maxpool2d_backward(&x, &g, kk, s, p, &dx));
        snprintf(what, sizeof what, "torch maxpool %s y", pools[t]);
        CHECK_CLOSE(what, y.data, yref.data, ssl_tensor_numel(&y), TORCH_TOL);
        snprintf(what, sizeof what, "torch maxpool %s dx", pools[t]);
        CHECK_CLOSE(what, dx.data, dxref.data, ssl_tensor_numel(&x), TORCH_TOL);
        free(x.data); free(g.data); free(yref.data); free(dxref.data); free(y.data); free(dx.data);
    }
    { /* global average pool: y and g are [N, C] in both layouts */
        ssl_tensor x = fx_nhwc(&f, "avgpool/x"), dxref = fx_nhwc(&f, "avgpool/dx"), dx = x;
        int64_t n = x.dim[0], c = x.dim[3];
        ssl_tensor g = ssl_tensor_mat(fx(&f, "avgpool/g", n * c), n, c), yref = ssl_tensor_mat(fx(&f, "avgpool/y", n * c), n, c);
        ssl_tensor y = ssl_tensor_mat(falloc(n * c), n, c);
        dx.data = falloc(ssl_tensor_numel(&x));
        CHECK_OK(ssl_avgpool_forward(&x, &y));
        CHECK_OK(ssl_avgpool_backward(&g, &dx));
        CHECK_CLOSE("torch avgpool y", y.data, yref.data, n * c, TORCH_TOL);
        CHECK_CLOSE("torch avgpool dx", dx.data, dxref.data, ssl_tensor_numel(&x), TORCH_TOL);
        free(x.data); free(dxref.data); free(g.data); free(yref.data); free(y.data); free(dx.data);
    }
    { /* linear: torch's layouts are ours */
        const ssl_tentry *we = fx_entry(&f, "linear/w"), *xe = fx_entry(&f, "linear/x");
        int64_t out = we->dims[0], in = we->dims[1], rows = xe->dims[0];
        ssl_tensor x = ssl_tensor_mat(fx(&f, "linear/x", rows * in), rows, in), w = ssl_tensor_mat(fx(&f, "linear/w", out * in), out, in);
        ssl_tensor b = ssl_tensor_vec(fx(&f, "linear/b", out), out), g = ssl_tensor_mat(fx(&f, "linear/g", rows * out), rows, out);
        ssl_tensor y = ssl_tensor_mat(falloc(rows * out), rows, out), dx = x, dw = w, db = b;
        dx.data = falloc(rows * in);
        dw.data = falloc(out * in);
        db.data = falloc(out);
        CHECK_OK(ssl_linear_forward(&x, &w, &b, &y));
        CHECK_OK(ssl_linear_backward(&x, &w, &g, &dx, &dw, &db));
        float *r;
        r = fx(&f, "linear/y", rows * out); CHECK_CLOSE("torch linear y", y.data, r, rows * out, TORCH_TOL); free(r);
        r = fx(&f, "linear/dx", rows * in); CHECK_CLOSE("torch linear dx", dx.data, r, rows * in, TORCH_TOL); free(r);
        r = fx(&f, "linear/dw", out * in); CHECK_CLOSE("torch linear dw", dw.data, r, out * in, TORCH_TOL); free(r);
        r = fx(&f, "linear/db", out); CHECK_CLOSE("torch linear db", db.data, r, out, TORCH_TOL); free(r);
        free(x.data); free(w.data); free(b.data); free(g.data); free(y.data); free(dx.data); free(dw.data); free(db.data);
    }
    { /* add */
        ssl_tensor a = fx_nhwc(&f, "add/a"), b = fx_nhwc(&f, "add/b"), yref = fx_nhwc(&f, "add/y"), y = a;
        y.data = falloc(ssl_tensor_numel(&a));
        CHECK_OK(ssl_add(&a, &b, &y));
        CHECK_CLOSE("torch add y", y.data, yref.data, ssl_tensor_numel(&a), TORCH_TOL);
        free(a.data); free(b.data); free(yref.data); free(y.data);
    }
    ssl_tfile_free(&f);
}

TEST(engine_losses_match_torch) {
    static const char *names[] = {"simclr", "vicreg", "barlow", "byol"};
    ssl_tfile f;
    if (open_fixture(&f)) return;
    for (int kind = 0; kind < 4; kind++) {
        char k[64], what[64];
#define NAME(s) (snprintf(k, sizeof k, "%s/%s", names[kind], s), k)
        const ssl_tentry *e = fx_entry(&f, kind == 3 ? NAME("p1") : NAME("z1"));
        if (!e) continue;
        int64_t n = e->dims[0], d = e->dims[1];
        ssl_tensor a = ssl_tensor_mat(fx(&f, kind == 3 ? NAME("p1") : NAME("z1"), n * d), n, d);
        ssl_tensor b = ssl_tensor_mat(fx(&f, kind == 3 ? NAME("p2") : NAME("z2"), n * d), n, d);
        ssl_tensor c = ssl_tensor_mat(kind == 3 ? fx(&f, NAME("z1"), n * d) : falloc(1), n, d);
        ssl_tensor z = ssl_tensor_mat(kind == 3 ? fx(&f, NAME("z2"), n * d) : falloc(1), n, d);
        ssl_tensor g1 = ssl_tensor_mat(falloc(n * d), n, d), g2 = ssl_tensor_mat(falloc(n * d), n, d);
        for (int64_t i = 0; i < n * d; i++) g1.data[i] = g2.data[i] = NAN; /* written, not accumulated */
        float loss = 0, *p = NULL, *lref = fx(&f, NAME("loss"), 1);
        ssl_buf scratch = {0};
        if (kind == 0) {
            p = fx(&f, NAME("tau"), 1);
            CHECK_OK(ssl_simclr_loss(&a, &b, p[0], &loss, &g1, &g2, &scratch));
        } else if (kind == 1) {
            p = fx(&f, NAME("coef"), 3);
            CHECK_OK(ssl_vicreg_loss(&a, &b, p[0], p[1], p[2], &loss, &g1, &g2, &scratch));
        } else if (kind == 2) {
            p = fx(&f, NAME("lambd"), 1);
            CHECK_OK(ssl_barlow_loss(&a, &b, p[0], &loss, &g1, &g2, &scratch));
        } else {
            CHECK_OK(ssl_byol_loss(&a, &b, &c, &z, &loss, &g1, &g2, &scratch));
        }
        snprintf(what, sizeof what, "torch %s loss", names[kind]);
        CHECK_CLOSE(what, &loss, lref, 1, TORCH_TOL);
        float *r = fx(&f, kind == 3 ? NAME("dp1") : NAME("dz1"), n * d);
        snprintf(what, sizeof what, "torch %s grad 1", names[kind]);
        CHECK_CLOSE(what, g1.data, r, n * d, TORCH_TOL);
        free(r);
        r = fx(&f, kind == 3 ? NAME("dp2") : NAME("dz2"), n * d);
        snprintf(what, sizeof what, "torch %s grad 2", names[kind]);
        CHECK_CLOSE(what, g2.data, r, n * d, TORCH_TOL);
        free(r);
        /* the value alone (no gradients asked) is the same */
        float loss2 = 0;
        if (kind == 0) CHECK_OK(ssl_simclr_loss(&a, &b, p[0], &loss2, NULL, NULL, &scratch));
        if (kind == 1) CHECK_OK(ssl_vicreg_loss(&a, &b, p[0], p[1], p[2], &loss2, NULL, NULL, &scratch));
        if (kind == 2) CHECK_OK(ssl_barlow_loss(&a, &b, p[0], &loss2, NULL, NULL, &scratch));
        if (kind == 3) CHECK_OK(ssl_byol_loss(&a, &b, &c, &z, &loss2, NULL, NULL, &scratch));
        CHECK(loss2 == loss, "%s: loss without gradients %g != %g", names[kind], loss2, loss);
#undef NAME
        free(a.data); free(b.data); free(c.data); free(z.data); free(g1.data); free(g2.data); free(p); free(lref);
        ssl_buf_free(&scratch);
    }
    ssl_tfile_free(&f);
}

/* ---- bad input ------------------------------------------------------------- */
TEST(engine_shape_errors_name_the_shapes) {
    float buf[4096] = {0};
    ssl_buf scratch = {0};
    ssl_tensor x = ssl_tensor_mat(buf, 8, 16), w = ssl_tensor_mat(buf, 10, 12), y = ssl_tensor_mat(buf, 8, 10);
    CHECK_ERR(ssl_linear_forward(&x, &w, NULL, &y), "x [8,16], w [10,12]");
    ssl_tensor w2 = ssl_tensor_mat(buf, 10, 16), y2 = ssl_tensor_mat(buf, 8, 11);
    CHECK_ERR(ssl_linear_forward(&x, &w2, NULL, &y2), "[8,11] should be [8,10]");
    ssl_tensor cx = ssl_tensor_nhwc(buf, 2, 8, 8, 3), cw = ssl_tensor_nhwc(buf, 4, 3, 3, 5), cy = ssl_tensor_nhwc(buf, 2, 8, 8, 4);
    CHECK_ERR(ssl_conv2d_forward(&cx, &cw, NULL, 1, 1, &cy, &scratch), "x [2,8,8,3], w [4,3,3,5]");
    ssl_tensor cw3 = ssl_tensor_nhwc(buf, 4, 3, 3, 3), cy3 = ssl_tensor_nhwc(buf, 2, 8, 8, 4);
    CHECK_ERR(ssl_conv2d_forward(&cx, &cw3, NULL, 2, 1, &cy3, &scratch), "y [2,8,8,4] should be [2,4,4,4]");
    CHECK_ERR(ssl_maxpool2d_forward(&cx, 3, 2, 1, &cx), "should be [2,4,4,3]");
    CHECK_ERR(ssl_maxpool2d_forward(&cx, 3, 2, 2, &cx), "pad must be at most kernel/2");
    ssl_tensor z1 = ssl_tensor_mat(buf, 8, 16), z2 = ssl_tensor_mat(buf, 8, 15);
    float loss;
    CHECK_ERR(ssl_simclr_loss(&z1, &z2, 0.1f, &loss, NULL, NULL, &scratch), "z1 [8,16], z2 [8,15]");
    CHECK_ERR(ssl_vicreg_loss(&z1, &z2, 25, 25, 1, &loss, NULL, NULL, &scratch), "z1 [8,16], z2 [8,15]");
    CHECK_ERR(ssl_barlow_loss(&z1, &z2, 0.005f, &loss, NULL, NULL, &scratch), "z1 [8,16], z2 [8,15]");
    CHECK_ERR(ssl_byol_loss(&z1, &z1, &z1, &z2, &loss, NULL, NULL, &scratch), "p2 [8,16], z2 [8,15]");
    ssl_tensor one = ssl_tensor_mat(buf, 1, 16);
    CHECK_ERR(ssl_vicreg_loss(&one, &one, 25, 25, 1, &loss, NULL, NULL, &scratch), "at least 2 rows");
    CHECK_ERR(ssl_simclr_loss(&z1, &z1, 0.0f, &loss, NULL, NULL, &scratch), "temperature");
    ssl_batchnorm bn = ssl_batchnorm_default();
    ssl_tensor m5 = ssl_tensor_vec(buf, 5), m3 = ssl_tensor_vec(buf + 100, 3);
    bn.weight = m5;
    CHECK_ERR(ssl_batchnorm_forward(&bn, 1, &cx, &cx, &m3, &m3), "weight [5] should hold 3 values");
    bn = ssl_batchnorm_default();
    CHECK_ERR(ssl_batchnorm_forward(&bn, 0, &cx, &cx, &m3, &m3), "eval mode needs running_mean");
    ssl_tensor a = ssl_tensor_mat(buf, 3, 4), b = ssl_tensor_mat(buf, 4, 3);
    CHECK_ERR(ssl_add(&a, &b, &a), "a [3,4], b [4,3]");
    CHECK_ERR(ssl_matmul(0, 0, 1, &a, &a, 0, &a), "inner dimensions differ: A [3,4], B [3,4]");
    ssl_buf_free(&scratch);
}

TEST(engine_gpu_tensor_without_cuda) {
#ifndef SSL_CUDA
    float buf[512] = {0};
    ssl_buf scratch = {0};
    ssl_tensor x = ssl_tensor_on(ssl_tensor_nhwc(buf, 1, 4, 4, 2), SSL_DEV_CUDA), y = x;
    CHECK_ERR(ssl_relu_forward(&x, &y), "built without CUDA");
    ssl_tensor w = ssl_tensor_on(ssl_tensor_nhwc(buf, 3, 3, 3, 2), SSL_DEV_CUDA), cy = ssl_tensor_on(ssl_tensor_nhwc(buf, 1, 4, 4, 3), SSL_DEV_CUDA);
    CHECK_ERR(ssl_conv2d_forward(&x, &w, NULL, 1, 1, &cy, &scratch), "ssl_conv2d_forward: tensor is on the GPU but ssl.h was built without CUDA");
    ssl_tensor z = ssl_tensor_on(ssl_tensor_mat(buf, 4, 8), SSL_DEV_CUDA);
    float loss;
    CHECK_ERR(ssl_simclr_loss(&z, &z, 0.1f, &loss, NULL, NULL, &scratch), "built without CUDA");
    CHECK_ERR(ssl_vicreg_loss(&z, &z, 25, 25, 1, &loss, NULL, NULL, &scratch), "built without CUDA");
    CHECK_ERR(ssl_barlow_loss(&z, &z, 0.005f, &loss, NULL, NULL, &scratch), "built without CUDA");
    CHECK_ERR(ssl_byol_loss(&z, &z, &z, &z, &loss, NULL, NULL, &scratch), "built without CUDA");
    /* mixing devices is refused on any build */
    ssl_tensor cpu = ssl_tensor_nhwc(buf, 1, 4, 4, 2);
    CHECK_ERR(ssl_relu_forward(&cpu, &x), "different devices");
    /* the optimizer on a table marked as the GPU's */
    ssl_param_table t = {0};
    int64_t shape[1] = {8};
    ssl_params_add(&t, "fc.weight", SSL_PARAM_WEIGHT, 1, shape);
    ssl_params_alloc(&t);
    ssl_optim_config oc = {SSL_OPTIM_LARS, 0.9, 1e-4, 0.001, 0.9, 0.999, 1e-8};
    ssl_optimizer o;
    ssl_optim_init(&o, &oc, &t);
    t.dev = o.dev = SSL_DEV_CUDA;
    CHECK_ERR(ssl_optim_step(&o, &t, 0.1), "ssl_optim_step: tensor is on the GPU but ssl.h was built without CUDA");
    t.dev = o.dev = SSL_DEV_CPU;
    ssl_optim_free(&o);
    ssl_params_free(&t);
    ssl_buf_free(&scratch);
#endif
}
