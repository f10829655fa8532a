/* Section 12: kNN, linear and MLP probes on features with known answers;
   the safetensors writer and reader against the format's specification. */
#include "test.h"

/* n points of dim d around 10 class centres (separation sep); labels i % 10. */
static void clusters(float *x, uint32_t *y, int n, int d, float sep, uint32_t stream) {
    ssl_rng rc = ssl_rng_make(99, 0, 0, 0, SSL_RNG_INIT);
    float centre[10][64];
    for (int c = 0; c < 10; c++)
        for (int k = 0; k < d; k++) centre[c][k] = sep * ssl_rng_normal(&rc);
    ssl_rng r = ssl_rng_make(99, 1, stream, 0, SSL_RNG_INIT);
    for (int i = 0; i < n; i++) {
        y[i] = (uint32_t)(i % 10);
        for (int k = 0; k < d; k++) x[(size_t)i * d + k] = centre[y[i]][k] + ssl_rng_normal(&r);
    }
}

static void shuffle_labels(uint32_t *y, int n) {
    ssl_rng r = ssl_rng_make(5, 0, 0, 0, SSL_RNG_ORDER);
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = ssl_rng_below(&r, (uint32_t)(i + 1)), t = y[i];
        y[i] = y[j];
        y[j] = t;
    }
}

enum { NTR = 2000, NTE = 500, D = 32 };
static float xtr[NTR * D], xte[NTE * D];
static uint32_t ytr[NTR], yte[NTE];

TEST(knn_separated_clusters_and_shuffled_labels) {
    clusters(xtr, ytr, NTR, D, 4.0f, 1);
    clusters(xte, yte, NTE, D, 4.0f, 2);
    ssl_probe_result r;
    for (int k = 20; k <= 200; k += 180) {
        CHECK_OK(ssl_knn_eval(xtr, ytr, NTR, xte, yte, NTE, D, 10, k, 0.07f, &r));
        printf("    knn k=%d: top1 %.3f top5 %.3f\n", k, r.top1, r.top5);
        CHECK_NEAR(r.top1, 1.0, 0);
        CHECK_NEAR(r.top5, 1.0, 0);
    }
    shuffle_labels(ytr, NTR);
    CHECK_OK(ssl_knn_eval(xtr, ytr, NTR, xte, yte, NTE, D, 10, 20, 0.07f, &r));
    printf("    knn, shuffled training labels: top1 %.3f (chance 0.1)\n", r.top1);
    CHECK(r.top1 > 0.04 && r.top1 < 0.18, "shuffled labels gave top-1 %.3f, expected chance (0.1)", r.top1);
    CHECK_ERR(ssl_knn_eval(xtr, ytr, NTR, xte, yte, NTE, D, 10, 0, 0.07f, &r), "k 0");
}

TEST(linear_and_mlp_probes_separated_clusters_and_shuffled_labels) {
    clusters(xtr, ytr, NTR, D, 1.0f, 1); /* overlapping a little: not trivially separable */
    clusters(xte, yte, NTE, D, 1.0f, 2);
    ssl_probe_config lin, mlp;
    ssl_probe_config_linear(&lin);
    lin.epochs = 30;
    ssl_probe_config_mlp(&mlp);
    mlp.hidden[0] = mlp.hidden[1] = 64;
    mlp.epochs = 30;
    ssl_probe_result a, b;
    CHECK_OK(ssl_probe_train_eval(&lin, xtr, ytr, NTR, xte, yte, NTE, D, 10, &a));
    CHECK_OK(ssl_probe_train_eval(&mlp, xtr, ytr, NTR, xte, yte, NTE, D, 10, &b));
    /* a Bayes-optimal classifier for these clusters is near 0.99 */
    printf("    linear: top1 %.3f top5 %.3f (%d epochs, %.2fs)\n", a.top1, a.top5, a.epochs_run, a.seconds);
    printf("    mlp:    top1 %.3f top5 %.3f (best epoch %d of %d run, %.2fs)\n", b.top1, b.top5, b.best_epoch, b.epochs_run, b.seconds);
    CHECK(a.top1 > 0.95, "linear probe top-1 %.3f", a.top1);
    CHECK(b.top1 > 0.93, "MLP probe top-1 %.3f", b.top1);
    CHECK(a.top5 >= a.top1 && b.top5 >= b.top1);
    shuffle_labels(ytr, NTR);
    CHECK_OK(ssl_probe_train_eval(&lin, xtr, ytr, NTR, xte, yte, NTE, D, 10, &a));
    CHECK_OK(ssl_probe_train_eval(&mlp, xtr, ytr, NTR, xte, yte, NTE, D, 10, &b));
    printf("    shuffled training labels: linear %.3f, mlp %.3f (chance 0.1)\n", a.top1, b.top1);
    CHECK(a.top1 < 0.2 && b.top1 < 0.2, "shuffled labels: linear %.3f mlp %.3f", a.top1, b.top1);
    /* early stopping ends the MLP run on noise long before its 30 epochs */
    CHECK(b.epochs_run < 30, "early stopping never stopped (%d epochs)", b.epochs_run);
    ytr[3] = 10;
    CHECK_ERR(ssl_probe_train_eval(&lin, xtr, ytr, NTR, xte, yte, NTE, D, 10, &a), "label 10 >= 10 classes");
}

TEST(safetensors_layout_and_round_trip) {
    float w[2 * 3] = {1, 2, 3, 4, 5, 6}, b[5] = {-1, -2, -3, -4, -5};
    int64_t step = 7;
    ssl_tentry e[3] = {{"layer1.0.conv1.weight", SSL_F32, 2, {2, 3}, w, sizeof w},
                       {"fc.bias", SSL_F32, 1, {5}, b, sizeof b},
                       {"steps", SSL_I64, 0, {0}, &step, 8}};
    const char *path = test_tmp("t.safetensors");
    CHECK_OK(ssl_safetensors_write(path, e, 3, "{\"format\":\"pt\"}"));
    uint8_t *f;
    size_t n;
    CHECK_OK(ssl_read_file(path, &f, &n));
    if (!f) return;
    /* the specification: u64 header length, JSON, data; here the header is
       padded with spaces to a multiple of 8 so the data is 8-aligned */
    uint64_t hl;
    memcpy(&hl, f, 8);
    CHECK_EQ(hl % 8, 0);
    CHECK_EQ(n, 8 + hl + sizeof w + sizeof b + 8);
    char *hdr = calloc(1, hl + 1);
    memcpy(hdr, f + 8, hl);
    CHECK_CONTAINS(hdr, "\"__metadata__\":{\"format\":\"pt\"}");
    CHECK_CONTAINS(hdr, "\"layer1.0.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}");
    CHECK_CONTAINS(hdr, "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[24,44]}");
    CHECK_CONTAINS(hdr, "\"steps\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[44,52]}");
    CHECK(!memcmp(f + 8 + hl, w, sizeof w) && !memcmp(f + 8 + hl + 24, b, sizeof b), "data bytes misplaced");
    free(hdr);
    ssl_tfile t;
    CHECK_OK(ssl_safetensors_read(path, &t));
    if (t.bytes) {
        CHECK_EQ(t.count, 3);
        const ssl_tentry *x = ssl_tfile_find(&t, "fc.bias");
        CHECK(x && x->dtype == SSL_F32 && x->ndim == 1 && x->dims[0] == 5 && !memcmp(x->data, b, sizeof b));
        x = ssl_tfile_find(&t, "steps");
        CHECK(x && x->dtype == SSL_I64 && x->ndim == 0 && *(const int64_t *)x->data == 7);
        ssl_tfile_free(&t);
    }
    /* refused: truncated, an offset past the data, a header longer than the file */
    CHECK_OK(test_write(path, f, n - 4));
    CHECK_ERR(ssl_safetensors_read(path, &t), "data_offsets");
    uint64_t big = n;
    uint8_t *g = malloc(n);
    memcpy(g, f, n);
    memcpy(g, &big, 8);
    CHECK_OK(test_write(path, g, n));
    CHECK_ERR(ssl_safetensors_read(path, &t), "does not fit the file");
    memcpy(g, f, n);
    char *p = strstr((char *)g + 8, "[24,44]");
    if (p) memcpy(p, "[24,48]", 7);
    CHECK_OK(test_write(path, g, n));
    CHECK_ERR(ssl_safetensors_read(path, &t), "fc.bias");
    free(g);
    free(f);
}
