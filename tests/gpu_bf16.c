/* bf16 storage on the device (issue 6): the layer ops on SSL_BF16 tensors
   against the CPU reference (fp32) run on the same values.

   The rule under test: a bf16 op computes in fp32 what the CPU computes and
   rounds once when it stores. So every input is first rounded to bf16 on
   the host (both sides then hold exactly the same values, weights
   included: the device rounds fp32 weights to bf16 for its GEMMs), the CPU
   op runs in fp32, and the device's bf16 result must be within one bf16
   unit in the last place (2^-7 relative: the rounding itself, or a
   rounding tipped the other way by an fp32 sum in another order) of the
   CPU's. One place rounds more than once, and says so at its check: a
   convolution's input gradient through col2im adds kh*kw GEMM outputs
   that were each stored as bf16. The conv and batch-norm cases are
   gpu_ops.c's with bf16 set (g_conv_case, g_bn_case). fp32 outputs (weight and bias gradients,
   batch-norm statistics, the average pool's features) are held to the fp32
   tolerances of gpu_ops.c: their inputs are exact bf16 values. */
#include "gpu_common.h"

#define ULP G_ULP

static void free_h(ssl_tensor *t) { free(t->data); t->data = NULL; }
/* two device tensors (bf16 or fp32) hold the same first n values, bit for bit */
static int same_bits(int gpu, const ssl_tensor *p, const ssl_tensor *q, int64_t n) {
    float *a = p->dtype == SSL_BF16 ? b_fetch(gpu, p) : g_fetch(gpu, p), *b = q->dtype == SSL_BF16 ? b_fetch(gpu, q) : g_fetch(gpu, q);
    int same = memcmp(a, b, sizeof(float) * (size_t)n) == 0;
    free(a), free(b);
    return same;
}

/* bf16 rounding by its definition: of the two bf16 values around f (f's
   top 16 bits, and the next one away from zero, 2^128 past the largest),
   the nearer in double; on a tie the even one */
static float ref_bf16(float f) {
    if (isnan(f) || isinf(f)) return f;
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float a, b;
    memcpy(&a, &lo, 4);
    memcpy(&b, &hi, 4);
    double bd = isinf(b) ? copysign(ldexp(1.0, 128), f) : (double)b;
    double da = fabs((double)f - a), db = fabs(bd - f);
    if (da < db || (da == db && !(lo & 0x10000u))) return a;
    return b;
}

GPU_TEST(bf16_rounding) {
    /* the shared conversion against the definition: special values, then
       random bit patterns (every exponent, ties included) */
    float special[] = {0.0f, -0.0f, 1.0f, 1.00390625f /* tie, to even (down) */, 1.01171875f /* tie, up */,
                       3.3895314e38f /* largest bf16 */, 3.4028235e38f /* rounds to inf */, 1e-40f /* denormal */,
                       -1e-45f, INFINITY, -INFINITY, 0.1f, -65504.0f};
    int bad = 0;
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) {
        float got = r16(special[i]), want = ref_bf16(special[i]);
        if (memcmp(&got, &want, 4)) {
            if (bad++ < 5) CHECK(0, "bf16(%.9g) = %.9g, want %.9g", special[i], got, want);
        }
    }
    float qnan = NAN;
    CHECK(isnan(r16(qnan)), "bf16 of a NaN is not a NaN");
    uint32_t snan_bits = 0x7f800001u; /* a NaN whose payload is only in the low bits */
    float snan;
    memcpy(&snan, &snan_bits, 4);
    CHECK(isnan(r16(snan)), "bf16 of a low-payload NaN became %g (rounding must not make it infinite)", r16(snan));
    enum { N = 1 << 20 };
    float *h = (float *)ssl_malloc(sizeof(float) * N, "patterns"), *want = (float *)ssl_malloc(sizeof(float) * N, "want");
    ssl_rng r = ssl_rng_make(91, 0, 0, 0, 0);
    for (int i = 0; i < N; i++) {
        uint32_t u = ssl_rng_u32(&r);
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        memcpy(&h[i], &u, 4);
        if (isnan(h[i])) h[i] = 1.5f;
        want[i] = ref_bf16(h[i]);
        float got = r16(h[i]);
        if (memcmp(&got, &want[i], 4) && bad++ < 5) CHECK(0, "bf16(%.9g) = %.9g, want %.9g", h[i], got, want[i]);
    }
    CHECK(bad == 0, "%d conversions off", bad);
    /* the device's conversion (ssl_copy between element types) and back:
       the same bits */
    ssl_tensor t = ssl_tensor_vec(h, N), d32 = g_tensor(gpu, &t), d16 = ssl_tensor_as(d32, SSL_BF16);
    d16.data = g_alloc(gpu, N / 2);
    CHECK_OK(ssl_copy(&d16, &d32));
    CHECK_OK(ssl_fill(&d32, 7.0f));
    CHECK_OK(ssl_copy(&d32, &d16));
    float *back = g_fetch(gpu, &d32);
    CHECK(memcmp(back, want, sizeof(float) * N) == 0, "the device's fp32 -> bf16 -> fp32 differs from the definition");
    CHECK_OK(ssl_fill(&d16, 0.1f));
    float *f = b_fetch(gpu, &d16);
    CHECK(f[0] == r16(0.1f) && f[N - 1] == r16(0.1f), "bf16 fill of 0.1 gave %.9g", f[0]);
    free(f);
    free(back);
    g_release(gpu, &d32), g_release(gpu, &d16);
    free(h), free(want);
}

/* the weight gradient's tolerance when not the GEMM path's fp32 one */
static double dw_rtol;

/* a convolution on bf16 activations (gpu_ops.c's case): forward (input
   bf16, or fp32 as the stem's images), weight and bias gradients in fp32,
   input gradient bf16; the weights fp32 (rounded by the op) or a bf16 copy
   (as the model hands them, w16) */
static void conv_case(int gpu, const char *name, int n, int h, int w, int ci, int co, int k, int stride, int pad,
                      int bias, int x_f32, int w16) {
    g_conv_kind kind = {1, x_f32, w16, dw_rtol};
    g_conv_case(gpu, name, n, h, w, ci, co, k, stride, pad, bias, !x_f32, kind);
}

GPU_TEST(bf16_conv2d) {
    conv_case(gpu, "bf16 3x3 s1 p1", 2, 9, 11, 5, 7, 3, 1, 1, 1, 0, 0);
    conv_case(gpu, "bf16 3x3 s1 p1, bf16 weights", 2, 9, 11, 5, 7, 3, 1, 1, 0, 0, 1);
    conv_case(gpu, "bf16 7x7 s2 p3 (stem, fp32 images)", 2, 13, 15, 3, 4, 7, 2, 3, 0, 1, 1);
    conv_case(gpu, "bf16 3x3 s1 p1 (CIFAR stem, fp32 images)", 2, 8, 8, 3, 6, 3, 1, 1, 0, 1, 0);
    conv_case(gpu, "bf16 1x1 s1 (GEMM)", 3, 5, 7, 6, 9, 1, 1, 0, 1, 0, 0);
    conv_case(gpu, "bf16 1x1 s1 (GEMM), bf16 weights", 3, 5, 7, 6, 9, 1, 1, 0, 0, 0, 1);
    conv_case(gpu, "bf16 1x1 s2 (downsample)", 2, 9, 7, 6, 8, 1, 2, 0, 0, 0, 0);
    conv_case(gpu, "bf16 3x3 s2 p1", 2, 10, 9, 4, 5, 3, 2, 1, 1, 0, 0);
    conv_case(gpu, "bf16 3x3 s2 p1, 24 channels", 2, 10, 9, 24, 5, 3, 2, 1, 1, 0, 0);
    conv_case(gpu, "bf16 3x3 s1 p1 blocked", 4, 64, 64, 16, 8, 3, 1, 1, 0, 0, 0);
    /* the stem's im2col in blocks, as in gpu_ops.c's conv2d, from fp32 images into bf16 columns */
    conv_case(gpu, "bf16 7x7 s2 p3 (stem, fp32 images) blocked", 4, 128, 128, 3, 8, 7, 2, 3, 0, 1, 1);
}

/* The same cases through cuDNN (a CUDNN=1 build). cuDNN's weight gradient
   of a bf16 convolution is bf16 (then added to the fp32 one): one
   rounding, as the activations. */
TEST(gpu_bf16_conv2d_cudnn) {
    if (!g_begin(1)) return;
    if (ssl_cuda_set_conv("cudnn")) { test_skip(ssl_last_error()); return; }
    dw_rtol = ULP;
    gbody_bf16_conv2d(1);
    dw_rtol = 0;
    CHECK_OK(ssl_cuda_set_conv("gemm"));
}

/* batch norm (fused 0: plain, 1: + ReLU, 2: + residual + ReLU) on bf16
   activations (gpu_ops.c's case with bf16 set): y, dx within one rounding
   of the CPU's; statistics and parameter gradients fp32 */
GPU_TEST(bf16_batchnorm) {
    for (int training = 0; training < 2; training++)
        for (int fused = 0; fused < 3; fused++) {
            char name[64];
            snprintf(name, sizeof name, "bf16 bn %s%s", training ? "train" : "eval",
                     fused == 0 ? "" : fused == 1 ? " +relu" : " +residual+relu");
            g_bn_case(gpu, name, g_rand(53, 4, 3, 5, 7, 6, -2, 3), 1, training, fused, 1);
        }
    g_bn_case(gpu, "bf16 bn train big +residual+relu", g_rand(51, 4, 8, 33, 35, 3, -1, 2), 1, 1, 2, 1);
    /* 16 channels: 8 values per work item */
    for (int fused = 0; fused < 3; fused++)
        g_bn_case(gpu, "bf16 bn train, 16 channels", g_rand(55, 4, 3, 5, 7, 16, -2, 3), 1, 1, fused, 1);
    g_bn_case(gpu, "bf16 bn eval, 16 channels +relu", g_rand(55, 4, 3, 5, 7, 16, -2, 3), 1, 0, 1, 1);
}

GPU_TEST(bf16_relu_pool_add) {
    ssl_tensor x = round_h(g_rand(60, 4, 2, 9, 8, 5, -1, 1)), y = g_rand(61, 4, 2, 9, 8, 5, 0, 1);
    for (int64_t i = 0; i < ssl_tensor_numel(&x); i++) x.data[i] = roundf(x.data[i] * 4) / 4; /* ties and zeros */
    ssl_tensor dx = b_tensor(gpu, &x), dyv = b_tensor(gpu, &y);
    CHECK_OK(ssl_relu_forward(&x, &y));
    CHECK_OK(ssl_relu_forward(&dx, &dyv));
    B_CLOSE_T(gpu, "bf16 relu", &dyv, &y, 0, 0);
    ssl_tensor g = round_h(g_rand(62, 4, 2, 9, 8, 5, -1, 1)), gx = g_rand(63, 4, 2, 9, 8, 5, -1, 1);
    ssl_tensor dg = b_tensor(gpu, &g), dgx = b_tensor(gpu, &gx);
    CHECK_OK(ssl_relu_backward(&y, &g, &gx));
    CHECK_OK(ssl_relu_backward(&dyv, &dg, &dgx));
    B_CLOSE_T(gpu, "bf16 relu backward", &dgx, &gx, 0, 0);

    /* max pool: the winner is a bf16 value (exact); the backward's sums of
       up to four gradients, one rounding */
    g_pool_case(gpu, &x, &dx, 3, 2, 1, 1);
    /* 16 channels: 8 a work item (16-byte loads), each of the kernels' paths */
    ssl_tensor x16 = g_rand(69, 4, 2, 9, 8, 16, -1, 1);
    for (int64_t i = 0; i < ssl_tensor_numel(&x16); i++) x16.data[i] = roundf(x16.data[i] * 4) / 4; /* exact in bf16 */
    ssl_tensor dx16 = b_tensor(gpu, &x16);
    g_pool_case(gpu, &x16, &dx16, 3, 2, 1, 1);
    g_pool_case(gpu, &x16, &dx16, 2, 2, 0, 1);
    g_pool_case(gpu, &x16, &dx16, 3, 1, 1, 1);
    g_release(gpu, &dx16), free_h(&x16);

    /* global average pool: bf16 activations in, fp32 features out (the same
       float sums in the same order: exact); back: fp32 in, bf16 out */
    ssl_tensor ay = g_rand(67, 2, 2, 5, 0, 0, 0, 1), ag = g_rand(68, 2, 2, 5, 0, 0, -1, 1);
    ssl_tensor day = g_tensor(gpu, &ay), dag = g_tensor(gpu, &ag);
    CHECK_OK(ssl_avgpool_forward(&x, &ay));
    CHECK_OK(ssl_avgpool_forward(&dx, &day));
    G_CLOSE_T(gpu, "bf16 avgpool -> fp32", &day, &ay, 0, 0);
    CHECK_OK(ssl_avgpool_backward(&ag, &gx));
    CHECK_OK(ssl_avgpool_backward(&dag, &dgx));
    B_CLOSE_T(gpu, "fp32 -> bf16 avgpool backward", &dgx, &gx, 0, ULP);

    CHECK_OK(ssl_add(&x, &g, &y));
    CHECK_OK(ssl_add(&dx, &dg, &dyv));
    B_CLOSE_T(gpu, "bf16 add", &dyv, &y, 0, ULP);

    /* what bf16 tensors are refused by: fp32-only ops, the CPU, and mixing */
    float dot;
    CHECK(ssl_dot(&dx, &dx, &dot) != 0 && strstr(ssl_last_error(), "fp32 tensors only"),
          "an fp32-only op took a bf16 tensor: %s", ssl_last_error());
    ssl_tensor hb = ssl_tensor_as(x, SSL_BF16);
    CHECK(ssl_relu_forward(&hb, &hb) != 0 && strstr(ssl_last_error(), "GPU storage"),
          "the CPU took a bf16 tensor: %s", ssl_last_error());
    ssl_tensor dg32 = g_tensor(gpu, &g);
    CHECK(ssl_add(&dx, &dg32, &dx) != 0 && strstr(ssl_last_error(), "different element types"),
          "an add of bf16 and fp32 activations was taken: %s", ssl_last_error());
    g_release(gpu, &dg32);

    ssl_tensor *ds[] = {&dx, &dyv, &dg, &dgx, &day, &dag};
    for (int i = 0; i < 6; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &y, &g, &gx, &ay, &ag};
    for (int i = 0; i < 6; i++) free_h(hs[i]);
}

/* The model at bf16 precision plans bf16 activations (about half the
   bytes), hands out fp32 features and outputs, follows a change of
   precision with one new plan, and its forward is the fp32 forward's up to
   bf16 rounding. */
GPU_TEST(bf16_model_plan_and_forward) {
    ssl_model_config mc = ssl_model_config_default();
    mc.depth = 18, mc.cifar_stem = 1, mc.width = 0.125, mc.seed = 3;
    snprintf(mc.projector, sizeof mc.projector, "64-32");
    ssl_model m;
    if (ssl_model_init(&m, &mc)) { CHECK(0, "%s", ssl_last_error()); return; }
    CHECK_OK(ssl_model_to_device(&m));
    enum { N = 8, S = 16 };
    ssl_tensor xh = g_rand(80, 4, N, S, S, 3, -1.5f, 1.5f), xd = g_tensor(gpu, &xh);
    float *out[2];
    int64_t bytes[2], outn = (int64_t)N * 32;
    for (int p = 0; p < 2; p++) {
        ssl_cuda_set_precision(p);
        CHECK_OK(ssl_model_plan(&m, N, S, S, 1));
        bytes[p] = m.slot_bytes;
        CHECK(m.act_dtype == (p ? SSL_BF16 : SSL_F32), "precision %d planned dtype %d", p, m.act_dtype);
        CHECK_OK(ssl_model_forward(&m, 0, xd.data, 1));
        ssl_tensor o = ssl_model_output(&m, 0), f = ssl_model_features(&m, 0);
        CHECK(o.dtype == SSL_F32 && f.dtype == SSL_F32, "outputs/features not fp32");
        out[p] = g_fetch(gpu, &o);
    }
    ssl_cuda_set_precision(0);
    CHECK(m.plans == 2, "%lld plans for two precisions", (long long)m.plans);
    double ratio = (double)bytes[1] / bytes[0];
    printf("    activations per slot: fp32 %.2f MB, bf16 %.2f MB (%.2f)\n", bytes[0] / 1e6, bytes[1] / 1e6, ratio);
    CHECK(ratio > 0.45 && ratio < 0.6, "bf16 plan is %.2f of the fp32 one", ratio);
    double num = 0, den = 0;
    for (int64_t i = 0; i < outn; i++) {
        double d = (double)out[1][i] - out[0][i];
        num += d * d, den += (double)out[0][i] * out[0][i];
    }
    double e = sqrt(num / den);
    printf("    projector output, bf16 storage vs fp32: %.3g relative L2\n", e);
    /* 20 layers each rounding its activations (at most 2^-9 relative) and
       GEMM operands, amplified by batch norms over few values (the last
       stage normalizes 8 x 2 x 2 values per channel): in emulation 4.7%,
       of which the bf16 GEMM operands alone (fp32 storage) make 3.3%. A
       wrong offset or element type is O(1). */
    CHECK(e < 8e-2, "bf16 forward differs from fp32 by %.3g (relative L2)", e);
    free(out[0]), free(out[1]);
    g_release(gpu, &xd);
    free_h(&xh);
    ssl_model_free(&m);
}

/* ReLU bit masks (ssl_batchnorm_forward_mask): the mask's bits are where
   the stored output is > 0, and the batch-norm backward and the ReLU
   backward give the same bits reading the mask as reading the output;
   8 values per work item (16 channels) and one (6). */
static void mask_case(int gpu, int c, int res) {
    ssl_tensor x = round_h(g_rand(90, 4, 3, 5, 7, c, -2, 3)), r = round_h(g_rand(91, 4, 3, 5, 7, c, -1, 1));
    ssl_tensor gy = round_h(g_rand(92, 4, 3, 5, 7, c, -1, 1));
    int64_t n = ssl_tensor_numel(&x), nb = (n + 7) / 8;
    ssl_batchnorm bn = ssl_batchnorm_default();
    ssl_tensor gam = g_rand(93, 1, c, 0, 0, 0, 0.5f, 1.5f), bet = g_rand(94, 1, c, 0, 0, 0, -1, 1);
    ssl_tensor rm = g_rand(95, 1, c, 0, 0, 0, 0, 0), rv = g_rand(96, 1, c, 0, 0, 0, 1, 1);
    bn.weight = g_tensor(gpu, &gam), bn.bias = g_tensor(gpu, &bet), bn.running_mean = g_tensor(gpu, &rm),
    bn.running_var = g_tensor(gpu, &rv);
    ssl_tensor dx = b_tensor(gpu, &x), dr = b_tensor(gpu, &r), dgy = b_tensor(gpu, &gy);
    ssl_tensor y1 = b_tensor(gpu, &x), y2 = b_tensor(gpu, &x), g1 = b_tensor(gpu, &x), g2 = b_tensor(gpu, &x);
    ssl_tensor mean = g_tensor(gpu, &gam), inv = g_tensor(gpu, &gam), dw = g_tensor(gpu, &gam), db = g_tensor(gpu, &gam);
    ssl_tensor dw2 = g_tensor(gpu, &gam), db2 = g_tensor(gpu, &gam);
    ssl_tensor mask = ssl_tensor_as(ssl_tensor_vec(g_alloc(gpu, (size_t)(nb + 3) / 4), nb), SSL_U8);
    mask.device = SSL_DEV_CUDA;
    CHECK_OK(ssl_batchnorm_forward_act(&bn, 1, &dx, res ? &dr : NULL, 1, &y1, &mean, &inv));
    CHECK_OK(ssl_batchnorm_forward_mask(&bn, 1, &dx, res ? &dr : NULL, &y2, &mean, &inv, &mask));
    float *a = b_fetch(gpu, &y1), *b = b_fetch(gpu, &y2);
    uint8_t *bits = (uint8_t *)ssl_malloc((size_t)nb, "mask");
    g_down(gpu, bits, mask.data, (size_t)nb);
    int wrong = 0;
    for (int64_t i = 0; i < n; i++) wrong += ((bits[i / 8] >> (i % 8)) & 1) != (a[i] > 0);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "c %d: y differs when the mask is written", c);
    CHECK(wrong == 0, "c %d: %d mask bits differ from y > 0", c, wrong);
    free(a), free(b), free(bits);
    /* the backward through the output, then through the bits */
    CHECK_OK(ssl_batchnorm_backward_act(&bn, 1, &dx, &y1, &dgy, &mean, &inv, &g1, &dw, &db));
    CHECK_OK(ssl_batchnorm_backward_act(&bn, 1, &dx, &mask, &dgy, &mean, &inv, &g2, &dw2, &db2));
    CHECK(same_bits(gpu, &g1, &g2, n), "c %d: batch-norm dx differs through the mask", c);
    CHECK(same_bits(gpu, &dw, &dw2, c), "c %d: dweight differs through the mask", c);
    CHECK_OK(ssl_relu_backward(&y1, &dgy, &g1));
    CHECK_OK(ssl_relu_backward(&mask, &dgy, &g2));
    CHECK(same_bits(gpu, &g1, &g2, n), "c %d: ReLU backward differs through the mask", c);
    /* dy through the mask, stored by the batch norm's input-gradient pass (in place): the ReLU backward's bits */
    CHECK_OK(ssl_batchnorm_backward_act(&bn, 1, &dx, &mask, &dgy, &mean, &inv, &y1, NULL, NULL));
    CHECK_OK(ssl_batchnorm_backward_ex(&bn, 1, &dx, &mask, &dgy, &mean, &inv, &y2, NULL, NULL, &dgy));
    CHECK(same_bits(gpu, &g1, &dgy, n), "c %d: dy_relu differs from the ReLU backward through the mask", c);
    CHECK(same_bits(gpu, &y1, &y2, n), "c %d: batch-norm dx differs when dy_relu is stored", c);
    ssl_tensor hb = ssl_tensor_as(x, SSL_U8);
    CHECK(ssl_relu_backward(&hb, &gy, &gy) != 0, "the CPU took a bit mask");
    ssl_tensor *ds[] = {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var, &dx, &dr, &dgy, &y1, &y2, &g1, &g2,
                        &mean, &inv, &dw, &db, &dw2, &db2, &mask};
    for (int i = 0; i < 18; i++) g_release(gpu, ds[i]);
    ssl_tensor *hs[] = {&x, &r, &gy, &gam, &bet, &rm, &rv};
    for (int i = 0; i < 7; i++) free_h(hs[i]);
}

GPU_TEST(bf16_relu_masks_same_bits) {
    for (int res = 0; res < 2; res++) {
        mask_case(gpu, 16, res);
        mask_case(gpu, 6, res);
    }
    /* a model's step: the bits-reading backward gives the same gradients,
       with the CIFAR stem and with the ImageNet stem (its max pool) */
    for (int st = 0; st < 2; st++) {
        ssl_model_config mc = ssl_model_config_default();
        mc.depth = 18, mc.cifar_stem = !st, mc.width = 0.125, mc.seed = 5;
        snprintf(mc.projector, sizeof mc.projector, "64-32");
        ssl_model m[2];
        enum { N = 8 };
        int S = st ? 32 : 16;
        ssl_tensor xh = g_rand(97, 4, N, S, S, 3, -1.5f, 1.5f), gh = g_rand(98, 2, N, 32, 0, 0, -1, 1);
        ssl_tensor xd = g_tensor(gpu, &xh), gd = g_tensor(gpu, &gh);
        float *grads[2];
        double bytes[2];
        ssl_cuda_set_precision(1);
        for (int k = 0; k < 2; k++) {
            if (ssl_model_init(&m[k], &mc)) { CHECK(0, "%s", ssl_last_error()); return; }
            m[k].no_masks = k;
            CHECK_OK(ssl_model_to_device(&m[k]));
            CHECK_OK(ssl_model_plan(&m[k], N, S, S, 1));
            bytes[k] = (double)m[k].slot_bytes;
            CHECK((m[k].layers[m[k].stem].mask >= 0) == !k, "model %d: stem mask offset %lld", k, (long long)m[k].layers[m[k].stem].mask);
            CHECK_OK(ssl_model_forward(&m[k], 0, xd.data, 1));
            CHECK_OK(ssl_model_backward(&m[k], 0, &gd));
            ssl_params_download(&m[k].params);
            grads[k] = (float *)ssl_malloc(sizeof(float) * (size_t)m[k].params.total, "grads");
            ssl_cuda_to_host(grads[k], m[k].params.grad, sizeof(float) * (size_t)m[k].params.total);
        }
        ssl_cuda_set_precision(0);
        printf("    %s stem: activations per slot: %.0f bytes with masks, %.0f without (+%.1f%%)\n", st ? "ImageNet" : "CIFAR",
               bytes[0], bytes[1], 100 * (bytes[0] / bytes[1] - 1));
        CHECK(memcmp(grads[0], grads[1], sizeof(float) * (size_t)m[0].params.total) == 0,
              "%s stem: the model's gradients differ between reading masks and reading outputs",
              st ? "ImageNet" : "CIFAR");
        free(grads[0]), free(grads[1]);
        ssl_model_free(&m[0]), ssl_model_free(&m[1]);
        g_release(gpu, &xd), g_release(gpu, &gd);
        free_h(&xh), free_h(&gh);
    }
}

/* Every layer kernel with a 16-byte vector path (8 values a thread) takes
   it only where all its pointers are 16-byte aligned; a GPU faults on a
   misaligned vector access, and so does the emulation (ssl__vio_aligned).
   The same cases with every tensor one element off a 16-byte boundary: the
   same results through the one-value paths; then with every other tensor
   misaligned (one aligned operand must not decide for the rest). */
GPU_TEST(misaligned_tensors_take_the_scalar_paths) {
    g_misalign = 1;
    gbody_bf16_relu_pool_add(gpu);
    for (int fused = 0; fused < 3; fused++) {
        g_bn_case(gpu, "bf16 bn train, 16 channels, misaligned", g_rand(55, 4, 3, 5, 7, 16, -2, 3), 1, 1, fused, 1);
        g_bn_case(gpu, "fp32 bn train, 16 channels, misaligned", g_rand(56, 4, 3, 5, 7, 16, -2, 3), 1, 1, fused, 0);
    }
    for (int res = 0; res < 2; res++) mask_case(gpu, 16, res);
    conv_case(gpu, "bf16 3x3 s2 p1, 24 channels, misaligned", 2, 10, 9, 24, 5, 3, 2, 1, 1, 0, 0);
    conv_case(gpu, "bf16 3x3 s1 p1 blocked, misaligned", 4, 64, 64, 16, 8, 3, 1, 1, 0, 0, 0);
    /* every other tensor: aligned images, misaligned input gradient */
    g_misalign = 2;
    conv_case(gpu, "bf16 3x3 s2 p1, 24 channels, every other misaligned", 2, 10, 9, 24, 5, 3, 2, 1, 1, 0, 0);
    gbody_bf16_relu_pool_add(gpu);
    g_misalign = 0;
}

/* A model that keeps its convolutions' columns from the forward for the
   backward (keep_cols) computes the same gradients, bit for bit, as one
   that rebuilds them: on the host (fp32) and on the device in fp32 and
   bf16, with two slots whose forwards both run before either backward (a
   slot's columns must survive the other slot's forward). The plan grows by
   the columns' bytes; keep_cols = -1 keeps them on the device when the
   plan takes at most 3/4 of its memory (in emulation: SSL_EMU_GPU_MEM) and
   never on the host. */
static float *keep_cols_step(int gpu, int dev, int bf16, int keep, ssl_model *m, const ssl_tensor *xh, const ssl_tensor *gh) {
    ssl_model_config mc = ssl_model_config_default();
    mc.depth = 18, mc.cifar_stem = 1, mc.width = 0.125, mc.seed = 7;
    snprintf(mc.projector, sizeof mc.projector, "64-32");
    ssl_cuda_set_precision(bf16);
    if (ssl_model_init(m, &mc)) { CHECK(0, "%s", ssl_last_error()); return NULL; }
    m->keep_cols = keep;
    ssl_tensor xd = *xh, gd = *gh, x2 = *xh;
    if (dev) {
        xd = g_tensor(gpu, xh), gd = g_tensor(gpu, gh);
        CHECK_OK(ssl_model_to_device(m));
    }
    x2.data = NULL;
    int64_t n = ssl_tensor_numel(xh);
    float *flip = (float *)ssl_malloc(sizeof(float) * (size_t)n, "x2");
    for (int64_t i = 0; i < n; i++) flip[i] = -0.5f * xh->data[n - 1 - i];
    x2.data = flip;
    ssl_tensor x2d = dev ? g_tensor(gpu, &x2) : x2;
    float *grads = NULL;
    if (!ssl_model_plan(m, (int)xh->dim[0], (int)xh->dim[1], (int)xh->dim[2], 2) &&
        !ssl_model_forward(m, 0, xd.data, 1) && !ssl_model_forward(m, 1, x2d.data, 1) &&
        !ssl_model_backward(m, 1, &gd) && !ssl_model_backward(m, 0, &gd)) {
        grads = (float *)ssl_malloc(sizeof(float) * (size_t)m->params.total, "grads");
        if (dev) {
            ssl_cuda_to_host(grads, m->params.grad, sizeof(float) * (size_t)m->params.total);
        } else {
            memcpy(grads, m->params.grad, sizeof(float) * (size_t)m->params.total);
        }
    } else {
        CHECK(0, "keep_cols %d step: %s", keep, ssl_last_error());
    }
    ssl_cuda_set_precision(0);
    if (dev) g_release(gpu, &xd), g_release(gpu, &gd), g_release(gpu, &x2d);
    free(flip);
    return grads;
}
GPU_TEST(model_keeps_columns_same_bits) {
    enum { N = 4, S = 16 };
    ssl_tensor xh = g_rand(110, 4, N, S, S, 3, -1.5f, 1.5f), gh = g_rand(111, 2, N, 32, 0, 0, -1, 1);
    for (int mode = 0; mode < 3; mode++) { /* host fp32, device fp32, device bf16 */
        int dev = mode > 0, bf16 = mode == 2;
        const char *what = mode == 0 ? "host" : mode == 1 ? "device fp32" : "device bf16";
        ssl_model m[2];
        float *g[2];
        for (int k = 0; k < 2; k++) g[k] = keep_cols_step(gpu, dev, bf16, k, &m[k], &xh, &gh);
        if (g[0] && g[1]) {
            CHECK(!m[0].planned_cols && m[1].planned_cols && m[1].cols_bytes > 0, "%s: planned_cols %d / %d", what,
                  m[0].planned_cols, m[1].planned_cols);
            CHECK(m[1].slot_bytes == m[0].slot_bytes + m[1].cols_bytes, "%s: slot %lld bytes with columns, %lld + %lld without",
                  what, (long long)m[1].slot_bytes, (long long)m[0].slot_bytes, (long long)m[1].cols_bytes);
            CHECK(memcmp(g[0], g[1], sizeof(float) * (size_t)m[0].params.total) == 0,
                  "%s: the gradients differ when the columns are kept", what);
            if (mode == 2) printf("    columns kept: %lld of %lld bytes per slot\n", (long long)m[1].cols_bytes, (long long)m[1].slot_bytes);
        }
        for (int k = 0; k < 2; k++) free(g[k]), ssl_model_free(&m[k]);
        /* keep_cols -1: never on the host; on the device by memory */
        ssl_model a;
        float *ga = keep_cols_step(gpu, dev, bf16, -1, &a, &xh, &gh);
        CHECK(a.planned_cols == dev, "%s: keep_cols -1 planned_cols %d", what, a.planned_cols);
        free(ga), ssl_model_free(&a);
        if (dev && !gpu) { /* an emulated device too small for the columns: 3/4 of it below the plan with them */
            setenv("SSL_EMU_GPU_MEM", "1000000", 1);
            ga = keep_cols_step(gpu, dev, bf16, -1, &a, &xh, &gh);
            unsetenv("SSL_EMU_GPU_MEM");
            CHECK(!a.planned_cols, "%s: columns kept on an emulated 1 MB device", what);
            free(ga), ssl_model_free(&a);
        }
    }
    free_h(&xh), free_h(&gh);
}
