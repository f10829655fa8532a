/* Section 7 ops and the losses of section 9: ssl.cu against the CPU
   reference on random inputs with odd shapes. See gpu_common.h for the two
   modes and the tolerance rule. */
#include "gpu_common.h"

/* kept against rebuilt im2col columns: the same GEMMs on the same values,
   so the same bits on the host and in emulation. On a GPU only close:
   cuBLAS picks its kernels by the operands' alignment too, and the kept
   columns sit at other offsets (seen on an H100 and an H200), so the sums
   may run in another order: within 2 bf16 ulps, or 1e-4 in fp32, of the
   largest value. */
static void same_cols(int gpu, int device_side, int bf16, const char *what, const float *a, const float *c, int64_t n) {
    if (!gpu || !device_side) {
        CHECK(memcmp(a, c, sizeof(float) * (size_t)n) == 0, "%s", what);
        return;
    }
    double big = 0;
    for (int64_t i = 0; i < n; i++) big = fmax(big, fabs(a[i]));
    G_CLOSE(what, c, a, n, (bf16 ? 2 * G_ULP : 1e-4) * big, bf16 ? 2 * G_ULP : 1e-4);
}

/* tolerances: emulation (same GEMM and math as the CPU, only sum splits and
   FMA contraction differ), GPU fp32 (cuBLAS and kernels sum in other orders) */
#define EW_A(g) G_TOL(g, 1e-7, 1e-6)   /* element-wise and row/column ops */
#define EW_R(g) G_TOL(g, 1e-6, 1e-5)
#define MM_A(g) G_TOL(g, 1e-6, 2e-5)   /* GEMM-based: K-term sums */
#define MM_R(g) G_TOL(g, 1e-5, 1e-4)

static void free_h(ssl_tensor *t) { free(t->data); t->data = NULL; }

TEST(emu_gemm_call_is_what_cublas_defines) {
    /* the arguments ssl.cu hands cuBLAS (swapped operands for row-major
       data), evaluated by cuBLAS's column-major definition, give ssl_gemm's
       row-major product: 2,000 random shapes, transposes and padded leading
       dimensions, padding columns untouched */
    double worst = ssl_cuda_gemm_selftest(2000, 77);
    CHECK(worst < 1e-5, "mapped GEMM differs from ssl_gemm: worst relative difference %.3g%s", worst,
          worst >= 1e30 ? " (a call cuBLAS would refuse)" : "");
}

GPU_TEST(matmul_all_transposes) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int b0 = 0; b0 < 2; b0++) {
                int M = 37, N = 29, K = 53;
                ssl_tensor A = ta ? g_rand(1, 2, K, M, 0, 0, -1, 1) : g_rand(1, 2, M, K, 0, 0, -1, 1);
                ssl_tensor B = tb ? g_rand(2, 2, N, K, 0, 0, -1, 1) : g_rand(2, 2, K, N, 0, 0, -1, 1);
                ssl_tensor C = g_rand(3, 2, M, N, 0, 0, -1, 1);
                float beta = b0 ? 0.0f : 0.3f;
                if (b0) for (int i = 0; i < M * N; i++) C.data[i] = NAN; /* beta 0 ignores C */
                ssl_tensor dA = g_tensor(gpu, &A), dB = g_tensor(gpu, &B), dC = g_tensor(gpu, &C);
                CHECK_OK(ssl_matmul(ta, tb, 0.7f, &A, &B, beta, &C));
                CHECK_OK(ssl_matmul(ta, tb, 0.7f, &dA, &dB, beta, &dC));
                G_CLOSE_T(gpu, "matmul", &dC, &C, MM_A(gpu), MM_R(gpu));
                g_release(gpu, &dA), g_release(gpu, &dB), g_release(gpu, &dC);
                free_h(&A), free_h(&B), free_h(&C);
            }
}

GPU_TEST(copy_fill_axpy_dot) {
    int64_t n = 100003;
    ssl_tensor x = g_rand(4, 1, n, 0, 0, 0, -2, 2), y = g_rand(5, 1, n, 0, 0, 0, -2, 2);
    ssl_tensor dx = g_tensor(gpu, &x), dy = g_tensor(gpu, &y);
    float d0, d1;
    CHECK_OK(ssl_dot(&x, &y, &d0));
    CHECK_OK(ssl_dot(&dx, &dy, &d1));
    CHECK_NEAR(d1, d0, 1e-6 * fabs(d0) + 1e-6); /* both in double: one float rounding apart at most */
    CHECK_OK(ssl_axpy(-0.37f, &x, &y));
    CHECK_OK(ssl_axpy(-0.37f, &dx, &dy));
    G_CLOSE_T(gpu, "axpy", &dy, &y, 1e-7, 1e-6);
    CHECK_OK(ssl_copy(&y, &x));
    CHECK_OK(ssl_copy(&dy, &dx));
    G_CLOSE_T(gpu, "copy", &dy, &y, 0, 0);
    CHECK_OK(ssl_fill(&y, 2.5f));
    CHECK_OK(ssl_fill(&dy, 2.5f));
    G_CLOSE_T(gpu, "fill", &dy, &y, 0, 0);
    ssl_tensor m = g_rand(6, 2, 37, 37, 0, 0, -1, 1), dm = g_tensor(gpu, &m);
    CHECK_OK(ssl_fill_diagonal(&m, -7.0f));
    CHECK_OK(ssl_fill_diagonal(&dm, -7.0f));
    G_CLOSE_T(gpu, "fill_diagonal", &dm, &m, 0, 0);
    g_release(gpu, &dx), g_release(gpu, &dy), g_release(gpu, &dm);
    free_h(&x), free_h(&y), free_h(&m);
}

GPU_TEST(l2_normalize_rows) {
    int64_t rows = 13, d = 37;
    ssl_tensor x = g_rand(7, 2, rows, d, 0, 0, -1, 1), y = g_rand(8, 2, rows, d, 0, 0, 0, 1);
    for (int j = 0; j < d; j++) x.data[3 * d + j] = 0.0f;          /* a zero row: the clamp */
    for (int j = 0; j < d; j++) x.data[5 * d + j] *= 1e-14f;       /* below the clamp */
    ssl_tensor nrm = g_rand(9, 1, rows, 0, 0, 0, 0, 1), g = g_rand(10, 2, rows, d, 0, 0, -1, 1);
    ssl_tensor dxg = g_rand(11, 2, rows, d, 0, 0, -1, 1); /* accumulated into */
    ssl_tensor dx = g_tensor(gpu, &x), dyv = g_tensor(gpu, &y), dn = g_tensor(gpu, &nrm), dg = g_tensor(gpu, &g),
               ddx = g_tensor(gpu, &dxg);
    CHECK_OK(ssl_l2_normalize_rows(&x, &y, &nrm));
    CHECK_OK(ssl_l2_normalize_rows(&dx, &dyv, &dn));
    G_CLOSE_T(gpu, "l2n y", &dyv, &y, EW_A(gpu), EW_R(gpu));
    G_CLOSE_T(gpu, "l2n norm", &dn, &nrm, 0, EW_R(gpu));
    CHECK_OK(ssl_l2_normalize_rows_backward(&y, &nrm, &g, &dxg));
    CHECK_OK(ssl_l2_normalize_rows_backward(&dyv, &dn, &dg, &ddx));
    /* the below-clamp row's gradient is dy / 1e-12: relative tolerance */
    G_CLOSE_T(gpu, "l2n dx", &ddx, &dxg, EW_A(gpu), EW_R(gpu));
    CHECK_OK(ssl_l2_normalize_rows(&dx, &dx, &dn)); /* in place */
    G_CLOSE_T(gpu, "l2n in place", &dx, &y, EW_A(gpu), EW_R(gpu));
    g_release(gpu, &dx), g_release(gpu, &dyv), g_release(gpu, &dn), g_release(gpu, &dg), g_release(gpu, &ddx);
    free_h(&x), free_h(&y), free_h(&nrm), free_h(&g), free_h(&dxg);
}

GPU_TEST(softmax_xent_rows) {
    int64_t rows = 14, c = 14;
    ssl_tensor l = g_rand(12, 2, rows, c, 0, 0, -5, 5), gl = g_rand(13, 2, rows, c, 0, 0, -1, 1);
    int32_t target[14];
    for (int r = 0; r < rows; r++) {
        l.data[r * c + r] = -INFINITY; /* SimCLR's masked self-similarity */
        target[r] = (r + 7) % 14;
    }
    ssl_tensor dl = g_tensor(gpu, &l), dgl = g_tensor(gpu, &gl);
    float l0, l1;
    CHECK_OK(ssl_softmax_xent_rows(&l, target, 1.0f / 14, &l0, &gl));
    CHECK_OK(ssl_softmax_xent_rows(&dl, target, 1.0f / 14, &l1, &dgl));
    CHECK_NEAR(l1, l0, 1e-6 * fabs(l0) + 1e-7);
    G_CLOSE_T(gpu, "xent dlogits", &dgl, &gl, EW_A(gpu), EW_R(gpu));
    CHECK_OK(ssl_softmax_xent_rows(&dl, target, 0.5f, &l1, NULL)); /* no gradient */
    CHECK_OK(ssl_softmax_xent_rows(&l, target, 0.5f, &l0, NULL));
    CHECK_NEAR(l1, l0, 1e-6 * fabs(l0) + 1e-7);
    g_release(gpu, &dl), g_release(gpu, &dgl);

    /* top-1 counted in the same pass (the online probe's accuracy): ties
       go to the first largest, a NaN is never the largest; the loss as
       without the count */
    for (int r = 0; r < rows; r++) target[r] = r % 3;
    l.data[0 * c + 0] = l.data[0 * c + 1] = 9;    /* tie at the target: counted */
    l.data[1 * c + 1] = l.data[1 * c + 5] = 9;    /* tie at the target again: counted */
    l.data[4 * c + 0] = l.data[4 * c + 1] = 9;    /* tie before the target: not */
    l.data[2 * c + 1] = NAN, l.data[2 * c + 2] = 8; /* NaN passed over: counted */
    l.data[3 * c + 0] = 20;                       /* clear winner at the target */
    int64_t want = 0;
    for (int r = 0; r < rows; r++) {
        int64_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (l.data[r * c + j] > l.data[r * c + best]) best = j;
        want += best == target[r];
    }
    CHECK(want >= 3, "the hand-made rows give %lld hits", (long long)want);
    dl = g_tensor(gpu, &l);
    int64_t hc = -1, dc = -1;
    float lh, ld, lp;
    CHECK_OK(ssl_softmax_xent_rows_top1(&l, target, 0.5f, &lh, NULL, &hc));
    CHECK_OK(ssl_softmax_xent_rows_top1(&dl, target, 0.5f, &ld, NULL, &dc));
    CHECK_OK(ssl_softmax_xent_rows(&l, target, 0.5f, &lp, NULL));
    CHECK(hc == want && dc == want, "top-1 hits: cpu %lld, device %lld, want %lld", (long long)hc, (long long)dc, (long long)want);
    CHECK(memcmp(&lh, &lp, sizeof lh) == 0, "the loss with the count %.9g, without %.9g", lh, lp); /* NaN here */
    CHECK((isnan(ld) && isnan(lh)) || fabs(ld - lh) <= 1e-6 * fabs(lh), "device loss %.9g vs cpu %.9g", ld, lh);
    g_release(gpu, &dl);
    free_h(&l), free_h(&gl);
}

GPU_TEST(center_mse_offdiag_diag) {
    ssl_tensor x = g_rand(14, 2, 19, 23, 0, 0, -3, 4), y = g_rand(15, 2, 19, 23, 0, 0, 0, 1);
    ssl_tensor dx = g_tensor(gpu, &x), dyv = g_tensor(gpu, &y);
    CHECK_OK(ssl_center_cols(&x, &y));
    CHECK_OK(ssl_center_cols(&dx, &dyv));
    G_CLOSE_T(gpu, "center_cols", &dyv, &y, EW_A(gpu), EW_R(gpu));
    CHECK_OK(ssl_center_cols(&dx, &dx)); /* in place */
    G_CLOSE_T(gpu, "center_cols in place", &dx, &y, EW_A(gpu), EW_R(gpu));

    ssl_tensor a = g_rand(16, 2, 17, 13, 0, 0, -1, 1), b = g_rand(17, 2, 17, 13, 0, 0, -1, 1);
    ssl_tensor ga = g_rand(18, 2, 17, 13, 0, 0, -1, 1), gb = g_rand(19, 2, 17, 13, 0, 0, -1, 1);
    ssl_tensor da = g_tensor(gpu, &a), db = g_tensor(gpu, &b), dga = g_tensor(gpu, &ga), dgb = g_tensor(gpu, &gb);
    float v0, v1;
    CHECK_OK(ssl_mse(&a, &b, 25.0f, &v0, &ga, &gb));
    CHECK_OK(ssl_mse(&da, &db, 25.0f, &v1, &dga, &dgb));
    CHECK_NEAR(v1, v0, 1e-6 * fabs(v0));
    G_CLOSE_T(gpu, "mse da", &dga, &ga, EW_A(gpu), EW_R(gpu));
    G_CLOSE_T(gpu, "mse db", &dgb, &gb, EW_A(gpu), EW_R(gpu));
    CHECK_OK(ssl_mse(&a, &b, 2.0f, &v0, &ga, NULL));
    CHECK_OK(ssl_mse(&da, &db, 2.0f, &v1, &dga, NULL));
    CHECK_NEAR(v1, v0, 1e-6 * fabs(v0));
    G_CLOSE_T(gpu, "mse da (db NULL)", &dga, &ga, EW_A(gpu), EW_R(gpu));

    int64_t d = 31;
    ssl_tensor m = g_rand(20, 2, d, d, 0, 0, -1, 1), gm = g_rand(21, 2, d, d, 0, 0, -1, 1);
    for (int i = 0; i < d; i++) m.data[i * d + i] = 2.0f * i / d; /* var in [0, 2): the hinge on both sides */
    ssl_tensor dm = g_tensor(gpu, &m), dgm = g_tensor(gpu, &gm);
    CHECK_OK(ssl_offdiag_sumsq(&m, 0.0051f, &v0, &gm));
    CHECK_OK(ssl_offdiag_sumsq(&dm, 0.0051f, &v1, &dgm));
    CHECK_NEAR(v1, v0, 1e-6 * fabs(v0));
    G_CLOSE_T(gpu, "offdiag dm", &dgm, &gm, EW_A(gpu), EW_R(gpu));
    for (int fn = 0; fn < 2; fn++) {
        CHECK_OK(ssl_diag_penalty(&m, (ssl_diag_fn)fn, 1e-4f, 0.7f, &v0, &gm));
        CHECK_OK(ssl_diag_penalty(&dm, (ssl_diag_fn)fn, 1e-4f, 0.7f, &v1, &dgm));
        CHECK_NEAR(v1, v0, 1e-6 * fabs(v0) + 1e-7);
        G_CLOSE_T(gpu, fn ? "diag std hinge dm" : "diag sq dev dm", &dgm, &gm, EW_A(gpu), EW_R(gpu));
    }
    ssl_tensor *ds[] = {&dx, &dyv, &da, &db, &dga, &dgb, &dm, &dgm};
    for (int i = 0; i < 8; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &y, &a, &b, &ga, &gb, &m, &gm};
    for (int i = 0; i < 8; i++) free_h(hs[i]);
}

TEST(emu_fastdiv_matches_division) {
    /* every divisor 1..4096, then random ones (powers of two among them)
       up to 2^31 - 1, each on 0, 1, d-1, d, d+1, 2^31-1, a random value
       and a random multiple of d */
    int64_t bad = ssl_cuda_fastdiv_selftest(200000, 5);
    CHECK(bad == 0, "%lld wrong quotients or remainders", (long long)bad);
}

/* conv: forward, then backward with dw/db accumulated onto random values.
   kind.bf16: bf16 activations (inputs rounded first so both sides hold the
   same values; y and dx held to one bf16 rounding, see gpu_bf16.c), the
   images fp32 with x_f32 (the stem), the weights a bf16 copy with w16;
   kind.dw_rtol: the weight gradient's tolerance where not fp32's. */
void g_conv_case(int gpu, const char *name, int n, int h, int w, int ci, int co, int k, int stride, int pad, int bias,
                 int with_dx, g_conv_kind kind) {
    int oh = ssl_conv_out_size(h, k, stride, pad), ow = ssl_conv_out_size(w, k, stride, pad);
    ssl_tensor x = g_rand(30, 4, n, h, w, ci, -1, 1), wt = g_rand(31, 4, co, k, k, ci, -0.5f, 0.5f);
    ssl_tensor b = bias ? g_rand(32, 1, co, 0, 0, 0, -1, 1) : ssl_tensor_vec(NULL, co);
    ssl_tensor y = g_rand(33, 4, n, oh, ow, co, 0, 1), gy = g_rand(34, 4, n, oh, ow, co, -1, 1);
    ssl_tensor gx = g_rand(35, 4, n, h, w, ci, 0, 1), gw = g_rand(36, 4, co, k, k, ci, -1, 1);
    ssl_tensor gb = bias ? g_rand(37, 1, co, 0, 0, 0, -1, 1) : ssl_tensor_vec(NULL, co);
    if (kind.bf16) x = round_h(x), wt = round_h(wt), gy = round_h(gy);
    ssl_tensor (*act)(int, const ssl_tensor *) = kind.bf16 ? b_tensor : g_tensor; /* the activations' copies */
    ssl_tensor dx = kind.bf16 && !kind.x_f32 ? b_tensor(gpu, &x) : g_tensor(gpu, &x),
               dw = kind.w16 ? b_tensor(gpu, &wt) : g_tensor(gpu, &wt), dbv = g_tensor(gpu, &b), dyv = act(gpu, &y),
               dgy = act(gpu, &gy), dgx = act(gpu, &gx), dgw = g_tensor(gpu, &gw), dgb = g_tensor(gpu, &gb);
    ssl_buf s0 = {0}, s1 = {0};
    char what[128];
#define CMP_ACT(label, d, h, a)                                                                                      \
    (snprintf(what, sizeof what, "%s %s", name, label),                                                            \
     kind.bf16 ? B_CLOSE_T(gpu, what, d, h, a, G_ULP) : G_CLOSE_T(gpu, what, d, h, MM_A(gpu), MM_R(gpu)))
    CHECK_OK(ssl_conv2d_forward(&x, &wt, bias ? &b : NULL, stride, pad, &y, &s0));
    CHECK_OK(ssl_conv2d_forward(&dx, &dw, bias ? &dbv : NULL, stride, pad, &dyv, &s1));
    CMP_ACT("forward", &dyv, &y, MM_A(gpu));
    CHECK_OK(ssl_conv2d_backward(&x, &wt, &gy, stride, pad, with_dx ? &gx : NULL, &gw, bias ? &gb : NULL, &s0));
    CHECK_OK(ssl_conv2d_backward(&dx, &dw, &dgy, stride, pad, with_dx ? &dgx : NULL, &dgw, bias ? &dgb : NULL, &s1));
    /* dw sums n * oh * ow products: cuBLAS's order and the CPU's differ by
       rounding that grows like the square root of that count (the blocked
       stem's 16,384 rows: 3.6e-5 on an H200 for a value of 0.094) */
    double rows = (double)n * oh * ow, dw_atol = MM_A(gpu) * fmax(1.0, sqrt(rows / 1024.0));
    /* a dw_rtol of its own (cuDNN's bf16 weight gradient, rounded to bf16
       before it is added): that rounding of the largest value too, as a
       value that cancels to near zero keeps its terms' absolute error */
    if (kind.dw_rtol > 0)
        for (int64_t i = 0; i < ssl_tensor_numel(&gw); i++) dw_atol = fmax(dw_atol, kind.dw_rtol * fabs(gw.data[i]));
    snprintf(what, sizeof what, "%s dw", name);
    G_CLOSE_T(gpu, what, &dgw, &gw, dw_atol, kind.dw_rtol > 0 ? kind.dw_rtol : MM_R(gpu));
    if (bias) {
        snprintf(what, sizeof what, "%s db", name);
        G_CLOSE_T(gpu, what, &dgb, &gb, MM_A(gpu), MM_R(gpu));
    }
    /* bf16: 1x1 stride 1 is one GEMM into dx, one rounding; otherwise col2im
       adds up to kh*kw bf16-stored GEMM outputs, each off by half an ulp:
       kh*kw/2 ulps of the largest gradient on top of the final rounding.
       Unchanged when skipped. */
    double big = 0;
    for (int64_t i = 0; i < ssl_tensor_numel(&gx); i++) big = fmax(big, fabs(gx.data[i]));
    CMP_ACT("dx", &dgx, &gx, !kind.bf16 || (k == 1 && stride == 1) ? MM_A(gpu) : k * k * 0.5 * G_ULP * big);
#undef CMP_ACT
    /* the columns kept from the forward for the backward: the same bits as
       rebuilding them, on the host and on the device (dw, db accumulated
       onto the same starting values again). Kept columns always take the
       GEMM path; on a GPU with the cudnn engine the runs
       above may not have, so the device's side is compared there only
       under gemm (the same cases' gpu_conv2d / gpu_bf16_conv2d run).
       Emulation has no cuDNN: always compared. */
    int gemm_engine = !gpu || !strcmp(ssl_cuda_conv(), "gemm");
    {
        int64_t rows = (int64_t)n * oh * ow, kc = (int64_t)k * k * ci;
        ssl_tensor hc = g_rand(38, 2, rows, kc, 0, 0, 0, 0), y2 = g_rand(33, 4, n, oh, ow, co, 0, 1);
        ssl_tensor gx2 = g_rand(35, 4, n, h, w, ci, 0, 1), gw2 = g_rand(36, 4, co, k, k, ci, -1, 1);
        ssl_tensor gb2 = bias ? g_rand(37, 1, co, 0, 0, 0, -1, 1) : ssl_tensor_vec(NULL, co);
        ssl_tensor dc = act(gpu, &hc), dy2 = act(gpu, &y2), dgx2 = act(gpu, &gx2), dgw2 = g_tensor(gpu, &gw2),
                   dgb2 = g_tensor(gpu, &gb2);
        CHECK_OK(ssl_conv2d_forward_cols(&x, &wt, bias ? &b : NULL, stride, pad, &y2, &s0, &hc));
        CHECK_OK(ssl_conv2d_backward_cols(&x, &wt, &gy, stride, pad, with_dx ? &gx2 : NULL, 0, &gw2, bias ? &gb2 : NULL, &s0, &hc));
        CHECK_OK(ssl_conv2d_forward_cols(&dx, &dw, bias ? &dbv : NULL, stride, pad, &dy2, &s1, &dc));
        CHECK_OK(ssl_conv2d_backward_cols(&dx, &dw, &dgy, stride, pad, with_dx ? &dgx2 : NULL, 0, &dgw2, bias ? &dgb2 : NULL,
                                          &s1, &dc));
        const ssl_tensor *pairs[][2] = {{&y, &y2}, {&gx, &gx2}, {&gw, &gw2}, {&gb, &gb2},
                                        {&dyv, &dy2}, {&dgx, &dgx2}, {&dgw, &dgw2}, {&dgb, &dgb2}};
        const char *names[] = {"y", "dx", "dw", "db"};
        for (int i = 0; i < 8; i++) {
            const ssl_tensor *a = pairs[i][0], *c = pairs[i][1];
            if (!a->data || (i % 4 == 1 && !with_dx) || (i >= 4 && !gemm_engine)) continue;
            int64_t len = ssl_tensor_numel(a);
            float *fa = i < 4 ? a->data : a->dtype == SSL_BF16 ? b_fetch(gpu, a) : g_fetch(gpu, a);
            float *fc = i < 4 ? c->data : c->dtype == SSL_BF16 ? b_fetch(gpu, c) : g_fetch(gpu, c);
            char what[160];
            snprintf(what, sizeof what, "%s: %s %s differs with kept columns", name, i < 4 ? "host" : "device", names[i % 4]);
            same_cols(gpu, i >= 4, a->dtype == SSL_BF16, what, fa, fc, len);
            if (i >= 4) free(fa), free(fc);
        }
        /* the columns one element off a 16-byte boundary on the device (x
           aligned): im2col's one-value path, the same bits */
        {
            int save = g_misalign;
            g_misalign = 3;
            ssl_tensor dcm = act(gpu, &hc);
            g_misalign = save;
            ssl_tensor gw3 = g_rand(36, 4, co, k, k, ci, -1, 1), dgw3 = g_tensor(gpu, &gw3), dy3 = act(gpu, &y2),
                       dgx3 = act(gpu, &gx2);
            CHECK_OK(ssl_conv2d_forward_cols(&dx, &dw, bias ? &dbv : NULL, stride, pad, &dy3, &s1, &dcm));
            CHECK_OK(ssl_conv2d_backward_cols(&dx, &dw, &dgy, stride, pad, with_dx ? &dgx3 : NULL, 0, &dgw3, NULL, &s1, &dcm));
            const ssl_tensor *mp[][2] = {{&dy2, &dy3}, {&dgx2, &dgx3}, {&dgw2, &dgw3}};
            for (int i = 0; i < 3; i++) {
                if (i == 1 && !with_dx) continue;
                int64_t len = ssl_tensor_numel(mp[i][0]);
                float *fa = mp[i][0]->dtype == SSL_BF16 ? b_fetch(gpu, mp[i][0]) : g_fetch(gpu, mp[i][0]);
                float *fc = mp[i][1]->dtype == SSL_BF16 ? b_fetch(gpu, mp[i][1]) : g_fetch(gpu, mp[i][1]);
                char what[160];
                snprintf(what, sizeof what, "%s: device %s differs with misaligned kept columns", name, names[i]);
                same_cols(gpu, 1, mp[i][0]->dtype == SSL_BF16, what, fa, fc, len);
                free(fa), free(fc);
            }
            g_release(gpu, &dcm), g_release(gpu, &dgw3), g_release(gpu, &dy3), g_release(gpu, &dgx3), free_h(&gw3);
        }
        /* too few columns, or of another type, are refused by name */
        ssl_tensor small = hc;
        small.dim[0] = rows - 1;
        CHECK(ssl_conv2d_forward_cols(&x, &wt, bias ? &b : NULL, stride, pad, &y2, &s0, &small) != 0 &&
                  strstr(ssl_last_error(), "cols"), "%s: a short cols taken", name);
        ssl_tensor other = ssl_tensor_as(hc, SSL_BF16);
        CHECK(ssl_conv2d_backward_cols(&x, &wt, &gy, stride, pad, NULL, 0, &gw2, NULL, &s0, &other) != 0 &&
                  strstr(ssl_last_error(), "cols"), "%s: bf16 cols taken on the CPU", name);
        ssl_tensor *ds2[] = {&dc, &dy2, &dgx2, &dgw2, &dgb2};
        for (int i = 0; i < 5; i++) g_release(gpu, ds2[i]);
        ssl_tensor *hs2[] = {&hc, &y2, &gx2, &gw2, &gb2};
        for (int i = 0; i < 5; i++) free_h(hs2[i]);
    }
    ssl_buf_free(&s0);
    ssl_cuda_buf_free(&s1);
    ssl_tensor *ds[] = {&dx, &dw, &dbv, &dyv, &dgy, &dgx, &dgw, &dgb};
    for (int i = 0; i < 8; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &wt, &b, &y, &gy, &gx, &gw, &gb};
    for (int i = 0; i < 8; i++) free_h(hs[i]);
}
static void conv_case(int gpu, const char *name, int n, int h, int w, int ci, int co, int k, int stride, int pad,
                      int bias, int with_dx) {
    g_conv_kind fp32 = {0, 0, 0, 0};
    g_conv_case(gpu, name, n, h, w, ci, co, k, stride, pad, bias, with_dx, fp32);
}

GPU_TEST(conv2d) {
    conv_case(gpu, "3x3 s1 p1", 2, 9, 11, 5, 7, 3, 1, 1, 1, 1);
    conv_case(gpu, "7x7 s2 p3 (stem)", 2, 13, 15, 3, 4, 7, 2, 3, 0, 1);
    conv_case(gpu, "1x1 s1 (GEMM)", 3, 5, 7, 6, 9, 1, 1, 0, 1, 1);
    /* without a bias (which keeps a convolution on the GEMM path under every
       engine): a 1x1 stride 1 and a 3x3 that cudnn gives cuDNN */
    conv_case(gpu, "1x1 s1 no bias", 3, 5, 7, 8, 9, 1, 1, 0, 0, 1);
    conv_case(gpu, "3x3 s1 p1 no bias", 2, 9, 11, 8, 7, 3, 1, 1, 0, 1);
    conv_case(gpu, "1x1 s2 (downsample)", 2, 9, 7, 6, 8, 1, 2, 0, 0, 1);
    conv_case(gpu, "3x3 s2 p1", 2, 10, 9, 4, 5, 3, 2, 1, 1, 1);
    conv_case(gpu, "3x3 s2 p1, 8 channels (8 per work item)", 2, 10, 9, 8, 5, 3, 2, 1, 1, 1);
    conv_case(gpu, "3x3 s1 p0 no dx", 1, 6, 5, 3, 2, 3, 1, 0, 1, 0);
    /* more than one im2col block on the CPU and in emulation (8 MiB) */
    conv_case(gpu, "3x3 s1 p1 blocked", 4, 64, 64, 16, 8, 3, 1, 1, 0, 1);
    /* the stem's im2col in blocks (16,384 rows, 14,266 a block in emulation):
       the second block starts at row 14,266, inside an image, and its
       311,346 elements end 50 into a warp's run of 256 */
    conv_case(gpu, "7x7 s2 p3 (stem) blocked", 4, 128, 128, 3, 8, 7, 2, 3, 0, 0);
}

/* The same cases through cuDNN (a CUDNN=1 build; conv=cudnn): fp32
   with FMA math, so the GPU's fp32 tolerances. */
TEST(gpu_conv2d_cudnn) {
    if (!g_begin(1)) return;
    if (ssl_cuda_set_conv("cudnn")) { test_skip(ssl_last_error()); return; }
    gbody_conv2d(1);
    CHECK_OK(ssl_cuda_set_conv("gemm"));
}

/* The cuDNN build's convolution plans (descriptors), read back through
   cuDNN's own getters, which need no GPU: every ResNet-50 convolution at
   224 and 160 and a ResNet-18 CIFAR one, at fp32 and bf16, then 600
   random shapes (more than the 512 plans kept: the least recently used
   ones are replaced) and the first shapes again. Skipped in a build
   without cuDNN (make test builds build/tests-cudnn for it). */
TEST(emu_cudnn_plans_describe_the_convolutions) {
    int first = ssl_cuda_cudnn_plan_check(2, 224, 224, 3, 64, 7, 2, 3, 1);
    if (first == 1) { test_skip("this build has no cuDNN (make CUDNN=1)"); return; }
    CHECK(first == 0, "stem: %s", ssl_last_error());
    int checked = 1;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int res = 160; res <= 224; res += 64) {
            int sp = res / 4, in = 64;
            CHECK(ssl_cuda_cudnn_plan_check(2, res, res, 3, 64, 7, 2, 3, bf16) == 0, "stem %d: %s", res, ssl_last_error());
            for (int st = 0; st < 4; st++) {
                int w = 64 << st, s = st ? 2 : 1, osp = sp / s;
                int r[4][6] = {{in, w, 1, 1, 0, sp}, {w, w, 3, s, 1, sp}, {w, 4 * w, 1, 1, 0, osp}, {in, 4 * w, 1, s, 0, sp}};
                for (int i = 0; i < 4; i++, checked++)
                    CHECK(ssl_cuda_cudnn_plan_check(2, r[i][5], r[i][5], r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], bf16) == 0,
                          "res %d stage %d conv %d: %s", res, st, i, ssl_last_error());
                in = 4 * w, sp = osp;
            }
        }
    CHECK(ssl_cuda_cudnn_plan_check(4, 32, 32, 64, 128, 3, 2, 1, 1) == 0, "CIFAR: %s", ssl_last_error());
    ssl_rng rg = ssl_rng_make(3, 0, 0, 0, 0);
    for (int i = 0; i < 600 && !test_failures(); i++, checked++) {
        int k = 1 + 2 * (int)(ssl_rng_u32(&rg) % 4), st = 1 + (int)(ssl_rng_u32(&rg) % 2), pad = k / 2;
        int hw = k + (int)(ssl_rng_u32(&rg) % 40), ci = 1 + (int)(ssl_rng_u32(&rg) % 70), co = 1 + (int)(ssl_rng_u32(&rg) % 70);
        CHECK(ssl_cuda_cudnn_plan_check(1 + i % 5, hw, hw + 1, ci, co, k, st, pad, i % 2) == 0, "random shape %d: %s", i,
              ssl_last_error());
    }
    CHECK(ssl_cuda_cudnn_plan_check(2, 224, 224, 3, 64, 7, 2, 3, 1) == 0, "stem after replacement: %s", ssl_last_error());
    printf("    %d shapes' cuDNN plans as the GEMM path's geometry\n", checked);
}

/* the convolution engine's names and errors; emulation has no cuDNN and
   keeps the GEMM path under cudnn */
TEST(emu_conv_engine_choice) {
    CHECK(ssl_cuda_set_conv("winograd") != 0 && strstr(ssl_last_error(), "expected gemm or cudnn"),
          "an unknown engine was taken: %s", ssl_last_error());
    CHECK_OK(ssl_cuda_set_conv("gemm"));
    CHECK(!strcmp(ssl_cuda_conv(), "gemm"));
    if (ssl_cuda_set_conv("cudnn")) {
        CHECK(strstr(ssl_last_error(), "CUDNN=1") != NULL, "the refusal does not say how to build it: %s", ssl_last_error());
        CHECK(!strcmp(ssl_cuda_conv(), "gemm"), "a refused engine left %s in use", ssl_cuda_conv());
        return;
    }
    CHECK(!strcmp(ssl_cuda_conv(), "cudnn"));
    if (g_begin(0)) gbody_conv2d(0);
    CHECK_OK(ssl_cuda_set_conv("gemm"));
}

/* fused: 0 plain; 1 + ReLU; 2 + residual + ReLU. The device runs the fused
   ops (ssl_batchnorm_forward_act / _backward_act), the CPU reference the
   separate ones (batch norm, add, ReLU; ReLU backward, batch norm
   backward). */
void g_bn_case(int gpu, const char *name, ssl_tensor x, int affine, int training, int fused, int bf16) {
    if (bf16) x = round_h(x);
    ssl_tensor (*dev)(int, const ssl_tensor *) = bf16 ? b_tensor : g_tensor; /* the activations' copies */
    double rtol = bf16 ? G_ULP : EW_R(gpu);
    int64_t c = ssl_tensor_cols(&x);
    ssl_batchnorm bn = ssl_batchnorm_default(), dbn = bn;
    ssl_tensor gam = g_rand(40, 1, c, 0, 0, 0, 0.5f, 1.5f), bet = g_rand(41, 1, c, 0, 0, 0, -1, 1);
    ssl_tensor rm = g_rand(42, 1, c, 0, 0, 0, -1, 1), rv = g_rand(43, 1, c, 0, 0, 0, 0.5f, 2);
    if (affine) bn.weight = gam, bn.bias = bet;
    bn.running_mean = rm, bn.running_var = rv;
    dbn.weight = g_tensor(gpu, &bn.weight), dbn.bias = g_tensor(gpu, &bn.bias);
    dbn.running_mean = g_tensor(gpu, &rm), dbn.running_var = g_tensor(gpu, &rv);
    ssl_tensor y = x, mean = g_rand(44, 1, c, 0, 0, 0, 0, 1), inv = g_rand(45, 1, c, 0, 0, 0, 0, 1);
    y.data = (float *)ssl_calloc(sizeof(float) * (size_t)ssl_tensor_numel(&x), "y");
    ssl_tensor gy = g_rand(46, x.ndim, x.dim[0], x.dim[1], x.dim[2], x.dim[3], -1, 1);
    if (bf16) gy = round_h(gy);
    ssl_tensor gx = gy, gw = g_rand(47, 1, c, 0, 0, 0, -1, 1), gb = g_rand(48, 1, c, 0, 0, 0, -1, 1);
    gx.data = (float *)ssl_calloc(sizeof(float) * (size_t)ssl_tensor_numel(&x), "gx");
    ssl_tensor res = g_rand(52, x.ndim, x.dim[0], x.dim[1], x.dim[2], x.dim[3], -1, 1);
    if (bf16) res = round_h(res);
    ssl_tensor dx = dev(gpu, &x), dyv = dev(gpu, &y), dm = g_tensor(gpu, &mean), di = g_tensor(gpu, &inv),
               dgy = dev(gpu, &gy), dgx = dev(gpu, &gx), dgw = g_tensor(gpu, &gw), dgb = g_tensor(gpu, &gb),
               dres = dev(gpu, &res);
    char what[128];
#define BN_CMP(label, d, h, a, r) (snprintf(what, sizeof what, "%s %s", name, label), G_CLOSE_T(gpu, what, d, h, a, r))
#define BN_ACT(label, d, h, a, r)                                                                   \
    (snprintf(what, sizeof what, "%s %s", name, label),                                            \
     bf16 ? B_CLOSE_T(gpu, what, d, h, a, rtol) : G_CLOSE_T(gpu, what, d, h, a, r))
    CHECK_OK(ssl_batchnorm_forward(&bn, training, &x, &y, &mean, &inv));
    if (fused == 2) CHECK_OK(ssl_add(&y, &res, &y));
    if (fused) CHECK_OK(ssl_relu_forward(&y, &y));
    CHECK_OK(ssl_batchnorm_forward_act(&dbn, training, &dx, fused == 2 ? &dres : NULL, fused > 0, &dyv, &dm, &di));
    BN_ACT("y", &dyv, &y, EW_A(gpu) * 10, EW_R(gpu));
    BN_CMP("mean", &dm, &mean, EW_A(gpu), EW_R(gpu));
    BN_CMP("invstd", &di, &inv, 0, EW_R(gpu));
    BN_CMP("running_mean", &dbn.running_mean, &rm, EW_A(gpu), EW_R(gpu));
    BN_CMP("running_var", &dbn.running_var, &rv, EW_A(gpu), EW_R(gpu));
    if (fused) CHECK_OK(ssl_relu_backward(&y, &gy, &gy)); /* dgy keeps the unmasked gradient */
    CHECK_OK(ssl_batchnorm_backward(&bn, training, &x, &gy, &mean, &inv, &gx, affine ? &gw : NULL, affine ? &gb : NULL));
    CHECK_OK(ssl_batchnorm_backward_act(&dbn, training, &dx, fused ? &dyv : NULL, &dgy, &dm, &di, &dgx, affine ? &dgw : NULL,
                                        affine ? &dgb : NULL));
    /* dx subtracts means of the gradient: cancellation, so an absolute floor */
    BN_ACT("dx", &dgx, &gx, G_TOL(gpu, 1e-6, 1e-5), EW_R(gpu) * 10);
    BN_CMP("dweight", &dgw, &gw, G_TOL(gpu, 1e-6, 1e-5), EW_R(gpu));
    BN_CMP("dbias", &dgb, &gb, G_TOL(gpu, 1e-6, 1e-5), EW_R(gpu));
    if (fused) { /* dy through the ReLU stored by the input-gradient pass: the ReLU backward's values */
        int save = g_misalign;
        g_misalign = 3; /* into a buffer of its own, one element off 16 bytes (the others as they are) */
        ssl_tensor dyr = dev(gpu, &gx);
        g_misalign = save;
        CHECK_OK(ssl_batchnorm_backward_ex(&dbn, training, &dx, &dyv, &dgy, &dm, &di, &dgx, NULL, NULL, &dyr));
        BN_ACT("dy_relu (own buffer, misaligned)", &dyr, &gy, 0, 0);
        g_release(gpu, &dyr);
        /* in place */
        CHECK_OK(ssl_batchnorm_backward_ex(&dbn, training, &dx, &dyv, &dgy, &dm, &di, &dgx, NULL, NULL, &dgy));
        BN_ACT("dy_relu", &dgy, &gy, 0, 0);
        BN_ACT("dx (dy_relu stored)", &dgx, &gx, G_TOL(gpu, 1e-6, 1e-5), EW_R(gpu) * 10);
    }
#undef BN_CMP
#undef BN_ACT
    ssl_tensor *ds[] = {&dx, &dyv, &dm, &di, &dgy, &dgx, &dgw, &dgb, &dbn.weight, &dbn.bias, &dbn.running_mean,
                        &dbn.running_var, &dres};
    for (int i = 0; i < 13; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &y, &mean, &inv, &gy, &gx, &gw, &gb, &gam, &bet, &rm, &rv, &res};
    for (int i = 0; i < 13; i++) free_h(hs[i]);
}

GPU_TEST(batchnorm) {
    for (int training = 0; training < 2; training++)
        for (int affine = 0; affine < 2; affine++) {
            char name[64];
            snprintf(name, sizeof name, "bn NHWC %s%s", training ? "train" : "eval", affine ? " affine" : "");
            g_bn_case(gpu, name, g_rand(49, 4, 3, 5, 7, 6, -2, 3), affine, training, 0, 0);
            snprintf(name, sizeof name, "bn1d %s%s", training ? "train" : "eval", affine ? " affine" : "");
            g_bn_case(gpu, name, g_rand(50, 2, 9, 11, 0, 0, -2, 3), affine, training, 0, 0);
            for (int fused = 1; fused < 3; fused++) {
                snprintf(name, sizeof name, "bn NHWC %s%s %s", training ? "train" : "eval", affine ? " affine" : "",
                         fused == 1 ? "+relu" : "+residual+relu");
                g_bn_case(gpu, name, g_rand(53, 4, 3, 5, 7, 6, -2, 3), affine, training, fused, 0);
            }
        }
    /* many rows: more than one row block on the GPU side */
    g_bn_case(gpu, "bn NHWC train big", g_rand(51, 4, 8, 33, 35, 3, -1, 2), 1, 1, 0, 0);
    g_bn_case(gpu, "bn NHWC train big +residual+relu", g_rand(51, 4, 8, 33, 35, 3, -1, 2), 1, 1, 2, 0);
    /* rows * c above 131072 * 8: blocks of 9 rows, so the partial sums take
       their 8-rows-at-once path, then a row alone, and a shorter last block */
    g_bn_case(gpu, "bn NHWC train 9-row blocks +residual+relu", g_rand(54, 4, 4, 60, 70, 64, -1, 2), 1, 1, 2, 0);
    /* 33,280 rows of 64 channels: forward blocks of 17 rows (the 16-row
       loads, then a row alone), backward blocks of 5 (two 2-row loads, then
       a row alone) */
    g_bn_case(gpu, "bn NHWC train 17-row blocks +residual+relu", g_rand(57, 4, 8, 65, 64, 64, -1, 2), 1, 1, 2, 0);
    /* 16 channels: 8 values per work item */
    for (int fused = 0; fused < 3; fused++) g_bn_case(gpu, "bn NHWC train 16 channels", g_rand(56, 4, 3, 5, 7, 16, -2, 3), 1, 1, fused, 0);
    /* a mean 1000 times the spread: the device's one-pass (shifted) moments
       against the CPU's two passes */
    g_bn_case(gpu, "bn NHWC train large mean", g_rand(54, 4, 8, 33, 35, 3, 999, 1001), 1, 1, 0, 0);
}

/* max pool forward and backward on x (host) and dx (its device copy; bf16
   when bf16, x's values then exact in bf16): the same winners (first
   maximum) and the same order of additions, so fp32 is exact; bf16 holds
   the backward's sums of up to 4 (stride 2) or 9 (stride 1) gradients to
   one rounding */
void g_pool_case(int gpu, const ssl_tensor *x, const ssl_tensor *dx, int k, int s, int p, int bf16) {
    int64_t n = x->dim[0], h = x->dim[1], w = x->dim[2], c = x->dim[3];
    int64_t oh = ssl_conv_out_size(h, k, s, p), ow = ssl_conv_out_size(w, k, s, p);
    ssl_tensor (*dev)(int, const ssl_tensor *) = bf16 ? b_tensor : g_tensor;
    ssl_tensor py = g_rand(64, 4, n, oh, ow, c, 0, 1), pg = g_rand(65, 4, n, oh, ow, c, -1, 1);
    ssl_tensor pdx = g_rand(66, 4, n, h, w, c, 0, 1);
    if (bf16) pg = round_h(pg);
    ssl_tensor dpy = dev(gpu, &py), dpg = dev(gpu, &pg), dpdx = dev(gpu, &pdx);
    char fwd[64], bwd[64];
    snprintf(fwd, sizeof fwd, "%smaxpool %d/%d/%d, %d channels", bf16 ? "bf16 " : "", k, s, p, (int)c);
    snprintf(bwd, sizeof bwd, "%smaxpool %d/%d/%d backward, %d channels", bf16 ? "bf16 " : "", k, s, p, (int)c);
    CHECK_OK(ssl_maxpool2d_forward(x, k, s, p, &py));
    CHECK_OK(ssl_maxpool2d_forward(dx, k, s, p, &dpy));
    CHECK_OK(ssl_maxpool2d_backward(x, &pg, k, s, p, &pdx));
    CHECK_OK(ssl_maxpool2d_backward(dx, &dpg, k, s, p, &dpdx));
    if (bf16) {
        B_CLOSE_T(gpu, fwd, &dpy, &py, 0, 0);
        B_CLOSE_T(gpu, bwd, &dpdx, &pdx, 0, G_ULP);
    } else {
        G_CLOSE_T(gpu, fwd, &dpy, &py, 0, 0);
        G_CLOSE_T(gpu, bwd, &dpdx, &pdx, 0, 0);
    }
    g_release(gpu, &dpy), g_release(gpu, &dpg), g_release(gpu, &dpdx);
    free_h(&py), free_h(&pg), free_h(&pdx);
}
/* 3x3/2/1 (the stem's), 2x2/2/0, 3x3/1/1 (an input in up to 3 x 3 windows),
   17x17/1/8 (wider than the winner's byte: the backward's gather) */
static void pool_cases(int gpu, const ssl_tensor *x, const ssl_tensor *dx) {
    int ks[4][3] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}, {17, 1, 8}};
    for (int t = 0; t < 4; t++) g_pool_case(gpu, x, dx, ks[t][0], ks[t][1], ks[t][2], 0);
}

GPU_TEST(relu_pool_linear_add) {
    ssl_tensor x = g_rand(60, 4, 2, 9, 8, 5, -1, 1), y = g_rand(61, 4, 2, 9, 8, 5, 0, 1);
    for (int64_t i = 0; i < ssl_tensor_numel(&x); i++) x.data[i] = roundf(x.data[i] * 4) / 4; /* ties and zeros */
    ssl_tensor dx = g_tensor(gpu, &x), dyv = g_tensor(gpu, &y);
    CHECK_OK(ssl_relu_forward(&x, &y));
    CHECK_OK(ssl_relu_forward(&dx, &dyv));
    G_CLOSE_T(gpu, "relu", &dyv, &y, 0, 0);
    ssl_tensor g = g_rand(62, 4, 2, 9, 8, 5, -1, 1), gx = g_rand(63, 4, 2, 9, 8, 5, -1, 1);
    ssl_tensor dg = g_tensor(gpu, &g), dgx = g_tensor(gpu, &gx);
    CHECK_OK(ssl_relu_backward(&y, &g, &gx));
    CHECK_OK(ssl_relu_backward(&dyv, &dg, &dgx));
    G_CLOSE_T(gpu, "relu backward", &dgx, &gx, 0, 0);

    pool_cases(gpu, &x, &dx);
    /* 16 channels: 8 a work item, 16-byte loads (and the 3x3 window's loads
       up front, a pixel's 2 x 2 windows' bytes up front in the backward) */
    ssl_tensor x16 = g_rand(69, 4, 2, 9, 8, 16, -1, 1);
    for (int64_t i = 0; i < ssl_tensor_numel(&x16); i++) x16.data[i] = roundf(x16.data[i] * 4) / 4;
    ssl_tensor dx16 = g_tensor(gpu, &x16);
    pool_cases(gpu, &x16, &dx16);
    g_release(gpu, &dx16), free_h(&x16);

    ssl_tensor ay = g_rand(67, 2, 2, 5, 0, 0, 0, 1), ag = g_rand(68, 2, 2, 5, 0, 0, -1, 1);
    ssl_tensor day = g_tensor(gpu, &ay), dag = g_tensor(gpu, &ag);
    CHECK_OK(ssl_avgpool_forward(&x, &ay));
    CHECK_OK(ssl_avgpool_forward(&dx, &day));
    G_CLOSE_T(gpu, "avgpool", &day, &ay, 0, 0); /* the same float sums in the same order */
    CHECK_OK(ssl_avgpool_backward(&ag, &gx));
    CHECK_OK(ssl_avgpool_backward(&dag, &dgx));
    G_CLOSE_T(gpu, "avgpool backward", &dgx, &gx, 0, 0);

    /* linear on a 4-D input read as rows of its last dim */
    ssl_tensor lx = g_rand(69, 4, 2, 3, 1, 9, -1, 1), lw = g_rand(70, 2, 7, 9, 0, 0, -1, 1);
    ssl_tensor lb = g_rand(71, 1, 7, 0, 0, 0, -1, 1), ly = g_rand(72, 2, 6, 7, 0, 0, 0, 1);
    ssl_tensor lg = g_rand(73, 2, 6, 7, 0, 0, -1, 1), lgx = g_rand(74, 4, 2, 3, 1, 9, 0, 1);
    ssl_tensor lgw = g_rand(75, 2, 7, 9, 0, 0, -1, 1), lgb = g_rand(76, 1, 7, 0, 0, 0, -1, 1);
    ssl_tensor d_lx = g_tensor(gpu, &lx), d_lw = g_tensor(gpu, &lw), d_lb = g_tensor(gpu, &lb), d_ly = g_tensor(gpu, &ly),
               d_lg = g_tensor(gpu, &lg), d_lgx = g_tensor(gpu, &lgx), d_lgw = g_tensor(gpu, &lgw),
               d_lgb = g_tensor(gpu, &lgb);
    for (int bias = 0; bias < 2; bias++) {
        CHECK_OK(ssl_linear_forward(&lx, &lw, bias ? &lb : NULL, &ly));
        CHECK_OK(ssl_linear_forward(&d_lx, &d_lw, bias ? &d_lb : NULL, &d_ly));
        G_CLOSE_T(gpu, "linear", &d_ly, &ly, MM_A(gpu), MM_R(gpu));
        CHECK_OK(ssl_linear_backward(&lx, &lw, &lg, &lgx, &lgw, bias ? &lgb : NULL));
        CHECK_OK(ssl_linear_backward(&d_lx, &d_lw, &d_lg, &d_lgx, &d_lgw, bias ? &d_lgb : NULL));
        G_CLOSE_T(gpu, "linear dx", &d_lgx, &lgx, MM_A(gpu), MM_R(gpu));
        G_CLOSE_T(gpu, "linear dw", &d_lgw, &lgw, MM_A(gpu), MM_R(gpu));
        G_CLOSE_T(gpu, "linear db", &d_lgb, &lgb, MM_A(gpu), MM_R(gpu));
    }

    CHECK_OK(ssl_add(&x, &g, &y));
    CHECK_OK(ssl_add(&dx, &dg, &dyv));
    G_CLOSE_T(gpu, "add", &dyv, &y, 0, 0);
    CHECK_OK(ssl_add_backward(&y, &gx, &y)); /* db is dy itself: left alone */
    CHECK_OK(ssl_add_backward(&dyv, &dgx, &dyv));
    G_CLOSE_T(gpu, "add backward", &dgx, &gx, 0, 0);

    ssl_tensor *ds[] = {&dx, &dyv, &dg, &dgx, &day, &dag, &d_lx, &d_lw, &d_lb, &d_ly, &d_lg, &d_lgx, &d_lgw, &d_lgb};
    for (int i = 0; i < 14; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &y, &g, &gx, &ay, &ag, &lx, &lw, &lb, &ly, &lg, &lgx, &lgw, &lgb};
    for (int i = 0; i < 14; i++) free_h(hs[i]);
}

#include "example_loss.h"
/* the four losses, written on the primitives, and the README's example of
   a loss of one's own: value and both gradients */
GPU_TEST(losses) {
    int64_t n = 9, d = 13;
    ssl_tensor z1 = g_rand(80, 2, n, d, 0, 0, -1, 1), z2 = g_rand(81, 2, n, d, 0, 0, -1, 1);
    ssl_tensor g1 = g_rand(82, 2, n, d, 0, 0, 0, 1), g2 = g_rand(83, 2, n, d, 0, 0, 0, 1);
    ssl_tensor dz1 = g_tensor(gpu, &z1), dz2 = g_tensor(gpu, &z2), dg1 = g_tensor(gpu, &g1), dg2 = g_tensor(gpu, &g2);
    ssl_buf s0 = {0}, s1 = {0};
    const char *names[5] = {"simclr", "vicreg", "barlow", "byol", "my_loss (README)"};
    for (int m = 0; m < 5; m++) {
        float l0 = 0, l1 = 0;
        int r0, r1;
        if (m == 0) {
            r0 = ssl_simclr_loss(&z1, &z2, 0.15f, &l0, &g1, &g2, &s0);
            r1 = ssl_simclr_loss(&dz1, &dz2, 0.15f, &l1, &dg1, &dg2, &s1);
        } else if (m == 1) {
            r0 = ssl_vicreg_loss(&z1, &z2, SSL_VICREG_SIM, SSL_VICREG_STD, SSL_VICREG_COV, &l0, &g1, &g2, &s0);
            r1 = ssl_vicreg_loss(&dz1, &dz2, SSL_VICREG_SIM, SSL_VICREG_STD, SSL_VICREG_COV, &l1, &dg1, &dg2, &s1);
        } else if (m == 2) {
            r0 = ssl_barlow_loss(&z1, &z2, SSL_BARLOW_LAMBD, &l0, &g1, &g2, &s0);
            r1 = ssl_barlow_loss(&dz1, &dz2, SSL_BARLOW_LAMBD, &l1, &dg1, &dg2, &s1);
        } else if (m == 4) {
            r0 = my_loss(&z1, &z2, 0.15f, 0.5f, &l0, &g1, &g2, &s0);
            r1 = my_loss(&dz1, &dz2, 0.15f, 0.5f, &l1, &dg1, &dg2, &s1);
        } else {
            r0 = ssl_byol_loss(&z1, &z2, &z2, &z1, &l0, &g1, &g2, &s0);
            r1 = ssl_byol_loss(&dz1, &dz2, &dz2, &dz1, &l1, &dg1, &dg2, &s1);
        }
        CHECK(r0 == 0 && r1 == 0, "%s: %s", names[m], ssl_last_error());
        CHECK(fabs(l1 - l0) <= G_TOL(gpu, 1e-6, 1e-5) * fabs(l0) + 1e-6, "%s loss: got %.9g, want %.9g", names[m], l1, l0);
        char what[64];
        snprintf(what, sizeof what, "%s dz1", names[m]);
        G_CLOSE_T(gpu, what, &dg1, &g1, MM_A(gpu), MM_R(gpu) * 10);
        snprintf(what, sizeof what, "%s dz2", names[m]);
        G_CLOSE_T(gpu, what, &dg2, &g2, MM_A(gpu), MM_R(gpu) * 10);
    }
    ssl_buf_free(&s0);
    ssl_cuda_buf_free(&s1);
    g_release(gpu, &dz1), g_release(gpu, &dz2), g_release(gpu, &dg1), g_release(gpu, &dg2);
    free_h(&z1), free_h(&z2), free_h(&g1), free_h(&g2);
}

/* dx accumulated (a residual block's main path adding its input gradient
   onto the shortcut's): 1x1 (the GEMM's beta) and 3x3 stride 2 (col2im onto
   dx), on the device against the CPU doing the same, and on the CPU
   against dx0 + the plain backward */
GPU_TEST(conv2d_backward_accumulates_dx) {
    for (int k = 0; k < 2; k++) {
        int ks = k ? 3 : 1, stride = k ? 2 : 1, pad = k ? 1 : 0;
        ssl_tensor x = g_rand(70, 4, 2, 9, 7, 5, -1, 1), w = g_rand(71, 4, 6, ks, ks, 5, -1, 1);
        int oh = ssl_conv_out_size(9, ks, stride, pad), ow = ssl_conv_out_size(7, ks, stride, pad);
        ssl_tensor dy = g_rand(72, 4, 2, oh, ow, 6, -1, 1), dx0 = g_rand(73, 4, 2, 9, 7, 5, -1, 1);
        ssl_tensor dxa = g_rand(73, 4, 2, 9, 7, 5, -1, 1), dxp = g_rand(74, 4, 2, 9, 7, 5, -1, 1);
        ssl_tensor dw = g_rand(75, 4, 6, ks, ks, 5, 0, 0), dw2 = g_rand(75, 4, 6, ks, ks, 5, 0, 0);
        ssl_buf scr = {0};
        CHECK_OK(ssl_conv2d_backward_ex(&x, &w, &dy, stride, pad, &dxa, 1, &dw, NULL, &scr));
        CHECK_OK(ssl_conv2d_backward(&x, &w, &dy, stride, pad, &dxp, &dw2, NULL, &scr));
        int64_t n = ssl_tensor_numel(&dx0);
        float *sum = (float *)ssl_malloc(sizeof(float) * (size_t)n, "sum");
        for (int64_t i = 0; i < n; i++) sum[i] = dx0.data[i] + dxp.data[i];
        G_CLOSE(k ? "cpu: 3x3/2 accumulated dx" : "cpu: 1x1 accumulated dx", dxa.data, sum, n, 1e-6, 1e-6);
        ssl_tensor ddx = g_tensor(gpu, &x), dw_ = g_tensor(gpu, &w), ddy = g_tensor(gpu, &dy), ddxa = g_tensor(gpu, &dx0);
        ssl_tensor ddw = g_tensor(gpu, &dw2);
        ssl_buf dscr = {0};
        CHECK_OK(ssl_conv2d_backward_ex(&ddx, &dw_, &ddy, stride, pad, &ddxa, 1, &ddw, NULL, &dscr));
        G_CLOSE_T(gpu, k ? "device: 3x3/2 accumulated dx" : "device: 1x1 accumulated dx", &ddxa, &dxa, MM_A(gpu), MM_R(gpu));
        ssl_cuda_buf_free(&dscr);
        ssl_buf_free(&scr);
        free(sum);
        ssl_tensor *ds[] = {&ddx, &dw_, &ddy, &ddxa, &ddw}, *hs[] = {&x, &w, &dy, &dx0, &dxa, &dxp, &dw, &dw2};
        for (int i = 0; i < 5; i++) g_release(gpu, ds[i]);
        for (int i = 0; i < 8; i++) free_h(hs[i]);
    }
}
