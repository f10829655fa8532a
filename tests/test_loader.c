/* The loader: order and sharding, determinism, resume, bad records,
   progressive resolution, the uint8 (GPU) output mode. */
#include "test.h"

#include <sys/select.h>
#include <sys/stat.h>
#if defined(SSL_TURBOJPEG) && defined(SSL_LIBJPEG)
#include <turbojpeg.h>
#endif

/* A pack of n tiny raw RGB images whose pixels encode their id. */
static const char *tiny_pack(int n, int side, uint32_t page) {
    const char *path = test_tmp("tiny.ssl");
    ssl_pack_writer *w = ssl_pack_writer_open(path, 1, page);
    SSL_ASSERT(w, "%s", ssl_last_error());
    uint8_t *px = malloc((size_t)side * side * 3);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < side * side * 3; k++) px[k] = (uint8_t)(i * 7 + k);
        SSL_ASSERT(ssl_pack_writer_add(w, px, (size_t)side * side * 3, side, side, 3, SSL_ENC_RAW, (uint32_t)(i % 5), NULL) == 0, "add");
    }
    free(px);
    const char *cls[5] = {"a", "b", "c", "d", "e"};
    SSL_ASSERT(ssl_pack_writer_finish(w, cls, 5, SSL_STORE_RAW, 0) == 0, "%s", ssl_last_error());
    return path;
}

/* 500 real CIFAR-10 JPEGs (50 per class), packed once per run. */
static const char *cifar_pack(void) {
    static char path[SSL_STR];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s", test_tmp("cifar500.ssl"));
    char cmd[4 * SSL_STR];
    const char *bin = test_bin("SSL_PACK", "./pack");
    snprintf(cmd, sizeof cmd, "%s %s %s force=1", bin, test_data("cifar10/test"), path);
    char *out;
    int rc = test_run(cmd, &out);
    if (rc != 0) test_fail(__FILE__, __LINE__, "packing the CIFAR test subset failed: %s", out);
    free(out);
    return path;
}

static ssl_loader *open_loader(const char *path, const char *preset, int res, int bs, int threads, uint64_t seed) {
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, preset, res, bs);
    c.threads = threads;
    c.seed = seed;
    ssl_loader *l = ssl_loader_open(&c);
    if (!l) test_fail(__FILE__, __LINE__, "ssl_loader_open: %s", ssl_last_error());
    return l;
}

TEST(loader_each_sample_once_per_epoch_across_ranks) {
    const char *path = tiny_pack(103, 8, 1024);
    for (int drop = 0; drop <= 1; drop++) {
        int seen[103] = {0}, total = 0;
        for (int rank = 0; rank < 3; rank++) {
            ssl_loader_config c;
            ssl_loader_config_init(&c, path, "crop_gray", 8, 5);
            c.rank = rank;
            c.world = 3;
            c.drop_last = drop;
            c.threads = 2;
            c.seed = 11;
            ssl_loader *l = ssl_loader_open(&c);
            CHECK(l != NULL, "%s", ssl_last_error());
            if (!l) return;
            CHECK_OK(ssl_loader_start_epoch(l, 4, 0));
            CHECK_EQ(ssl_loader_batches_per_epoch(l), drop ? 6 : 7); /* 34 per rank */
            const ssl_batch *b;
            int last_n = 0;
            while ((b = ssl_loader_next(l))) {
                for (int i = 0; i < b->n; i++) seen[b->ids[i]]++;
                total += b->n;
                last_n = b->n;
                ssl_loader_release(l, b);
            }
            CHECK_EQ(last_n, drop ? 5 : 4);
            ssl_loader_close(l);
        }
        int dup = 0, visited = 0;
        for (int i = 0; i < 103; i++) { dup += seen[i] > 1; visited += seen[i] == 1; }
        CHECK_EQ(dup, 0);
        CHECK_EQ(total, drop ? 90 : 102);
        CHECK_EQ(visited, total);
    }
}

/* All the bytes of a batch (views, labels, ids, sizes), hashed. */
static uint32_t batch_hash(const ssl_batch *b) {
    uint32_t hb = ssl_crc32(0, b->w, sizeof(int) * b->num_views);
    for (int v = 0; v < b->num_views; v++) {
        size_t m = (size_t)b->n * b->w[v] * b->h[v] * 3;
        if (b->views[v]) hb = ssl_crc32(hb, b->views[v], m * sizeof(float));
        if (b->views_u8[v]) hb = ssl_crc32(hb, b->views_u8[v], m);
    }
    hb = ssl_crc32(hb, b->labels, b->n * sizeof(uint32_t));
    return ssl_crc32(hb, b->ids, b->n * sizeof(uint64_t));
}

/* All the bytes of one epoch's batches, hashed. */
static uint32_t epoch_hash(ssl_loader *l, int epoch, int64_t first, int64_t count, uint32_t *per_batch) {
    CHECK_OK(ssl_loader_start_epoch(l, epoch, first));
    uint32_t h = 0;
    const ssl_batch *b;
    int64_t k = 0;
    while ((b = ssl_loader_next(l)) && k < count) {
        uint32_t hb = batch_hash(b);
        if (per_batch) per_batch[k] = hb;
        h = ssl_crc32(h, &hb, 4);
        k++;
        ssl_loader_release(l, b);
    }
    if (b) ssl_loader_release(l, b);
    return h;
}

TEST(loader_same_batches_with_1_or_4_threads_and_after_resume) {
    const char *path = cifar_pack();
    ssl_loader *a = open_loader(path, "simclr", 24, 32, 1, 5), *b = open_loader(path, "simclr", 24, 32, 4, 5);
    if (!a || !b) return;
    uint32_t ha[32], hb[32], hr[32];
    uint32_t h1 = epoch_hash(a, 2, 0, 100, ha), h4 = epoch_hash(b, 2, 0, 100, hb);
    CHECK_EQ(ssl_loader_batches_per_epoch(a), 15);
    CHECK(h1 == h4, "1 and 4 threads gave different batches");
    /* resume: starting at batch 6 gives batches 6.. of the full run */
    epoch_hash(b, 2, 6, 100, hr);
    int same = 1;
    for (int k = 6; k < 15; k++) same &= hr[k - 6] == ha[k];
    CHECK(same, "resuming at batch 6 does not reproduce batches 6..14");
    /* a different epoch gives different batches (order and augmentations) */
    CHECK(epoch_hash(a, 3, 0, 100, NULL) != h1, "epochs 2 and 3 gave the same batches");
    /* the same seed again: the same epoch */
    CHECK(epoch_hash(a, 2, 0, 100, NULL) == h1, "the same epoch twice differs");
    ssl_loader_stats s = ssl_loader_get_stats(a);
    CHECK(s.samples >= 3 * 480 && s.decode_failures == 0, "%lld samples, %lld failures", (long long)s.samples, (long long)s.decode_failures);
    ssl_loader_close(a);
    ssl_loader_close(b);
}

/* The started epoch's remaining batches: their hashes into per_batch (up
   to 32), the count returned. */
static int drain_hashes(ssl_loader *l, uint32_t *per_batch) {
    const ssl_batch *b;
    int k = 0;
    while ((b = ssl_loader_next(l))) {
        if (k < 32) per_batch[k] = batch_hash(b);
        k++;
        ssl_loader_release(l, b);
    }
    return k;
}

/* Waits (up to 10 s) until the loader has decoded `want` samples since it
   was opened; returns how many it had. */
static int64_t wait_samples(ssl_loader *l, int64_t want) {
    int64_t got = 0;
    for (int k = 0; k < 1000 && (got = ssl_loader_get_stats(l).samples) < want; k++) {
        struct timeval tv = {0, 10000};
        select(0, NULL, NULL, NULL, &tv); /* 10 ms */
    }
    return got;
}

static int same_hashes(const uint32_t *a, const uint32_t *b, int n) {
    for (int k = 0; k < n; k++)
        if (a[k] != b[k]) return 0;
    return 1;
}

/* ssl_loader_queue_epoch: the workers go on into the next epoch while this
   one's last batches are consumed, and those batches are the ones a fresh
   start of that epoch gives. Any start other than the queued one (another
   epoch, another size, before the epoch is consumed) drops them and is
   still exact. Both with a full last batch and with a partial one. */
static void queued_epochs(int drop_last) {
    const char *path = cifar_pack();
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", 24, 32);
    c.threads = 2, c.seed = 5, c.drop_last = drop_last;
    ssl_loader *ref = ssl_loader_open(&c), *l = ssl_loader_open(&c);
    if (!ref || !l) return;
    const int B = 32, nb = drop_last ? 15 : 16, per = drop_last ? 480 : 500, slots = c.batches_ahead;
    uint32_t want[32], got[32];

    CHECK_ERR(ssl_loader_queue_epoch(l, 3, 0), "start an epoch first");
    CHECK_OK(ssl_loader_start_epoch(l, 2, 0));
    CHECK_ERR(ssl_loader_queue_epoch(l, 3, 3), "resolution 3 out of range");
    CHECK_EQ(ssl_loader_queue_epoch(l, 3, 32), 1); /* bigger than the ring's buffers: not queued */
    CHECK_EQ(ssl_loader_queue_epoch(l, 3, 0), 0);
    CHECK_ERR(ssl_loader_queue_epoch(l, 4, 0), "epoch 3 is queued already");
    for (int e = 2; e <= 4; e++) {
        epoch_hash(ref, e, 0, 100, want);
        if (e > 2) {
            CHECK_OK(ssl_loader_start_epoch(l, e, 0));
            if (e < 4) CHECK_EQ(ssl_loader_queue_epoch(l, e + 1, 0), 0);
        }
        CHECK_EQ(drain_hashes(l, got), nb);
        CHECK(same_hashes(want, got, nb), "drop_last %d: epoch %d's batches differ from a fresh start's", drop_last, e);
        /* nothing held: the queued epoch's first `slots` batches are filled
           before it is started */
        if (e < 4) {
            int64_t have = wait_samples(l, (int64_t)(e - 1) * per + (int64_t)slots * B);
            CHECK(have >= (int64_t)(e - 1) * per + (int64_t)slots * B, "drop_last %d: before epoch %d starts, %lld samples decoded, want %lld",
                  drop_last, e + 1, (long long)have, (long long)((e - 1) * per + slots * B));
        }
    }
    /* going on wasted nothing: three epochs, each sample decoded once */
    CHECK_EQ(ssl_loader_get_stats(l).samples, 3 * per);

    /* a start other than the queued one: exact all the same */
    CHECK_EQ(ssl_loader_queue_epoch(l, 5, 0), 0);
    epoch_hash(ref, 7, 0, 100, want);
    CHECK_OK(ssl_loader_start_epoch(l, 7, 0));
    CHECK(drain_hashes(l, got) == nb && same_hashes(want, got, nb), "drop_last %d: epoch 7 after queueing 5", drop_last);
    /* queued at 16, started at 24 */
    CHECK_EQ(ssl_loader_queue_epoch(l, 8, 16), 0);
    epoch_hash(ref, 8, 0, 100, want);
    CHECK_OK(ssl_loader_start_epoch(l, 8, 0));
    CHECK(drain_hashes(l, got) == nb && same_hashes(want, got, nb), "drop_last %d: epoch 8 queued at another size", drop_last);
    /* queued at 16 and started at 16: goes on, at the new size */
    int64_t before = ssl_loader_get_stats(l).samples;
    CHECK_EQ(ssl_loader_queue_epoch(l, 9, 16), 0);
    CHECK_OK(ssl_loader_set_resolution(ref, 16));
    epoch_hash(ref, 9, 0, 100, want);
    CHECK_OK(ssl_loader_set_resolution(l, 16));
    wait_samples(l, before + (int64_t)slots * B);
    CHECK_OK(ssl_loader_start_epoch(l, 9, 0));
    const ssl_batch *b = ssl_loader_next(l);
    CHECK(b && b->w[0] == 16 && b->h[1] == 16, "epoch 9's views: %dx%d", b ? b->w[0] : 0, b ? b->h[1] : 0);
    got[0] = b ? batch_hash(b) : 0;
    if (b) ssl_loader_release(l, b);
    CHECK_EQ(drain_hashes(l, got + 1), nb - 1);
    CHECK(same_hashes(want, got, nb), "drop_last %d: epoch 9 queued and started at 16", drop_last);
    CHECK_EQ(ssl_loader_get_stats(l).samples, before + per);
    /* started before the epoch was consumed: dropped, and exact */
    CHECK_OK(ssl_loader_start_epoch(l, 10, 0));
    CHECK_EQ(ssl_loader_queue_epoch(l, 11, 0), 0);
    b = ssl_loader_next(l);
    if (b) ssl_loader_release(l, b);
    epoch_hash(ref, 11, 0, 100, want);
    CHECK_OK(ssl_loader_start_epoch(l, 11, 0));
    CHECK(drain_hashes(l, got) == nb && same_hashes(want, got, nb), "drop_last %d: epoch 11 started early", drop_last);
    /* queued, then closed with workers in it */
    CHECK_EQ(ssl_loader_queue_epoch(l, 12, 0), 0);
    ssl_loader_close(ref);
    ssl_loader_close(l);
}

TEST(loader_queued_epoch_is_filled_across_the_boundary_and_exact) {
    queued_epochs(1);
    queued_epochs(0);
}

TEST(loader_augmentations_change_per_epoch_for_the_same_sample) {
    const char *path = cifar_pack();
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", 16, 500);
    c.order = SSL_ORDER_SEQUENTIAL;
    c.threads = 2;
    ssl_loader *l = ssl_loader_open(&c);
    if (!l) return;
    ssl_aug_params p0[500], p1[500];
    for (int e = 0; e < 2; e++) {
        CHECK_OK(ssl_loader_start_epoch(l, e, 0));
        const ssl_batch *b = ssl_loader_next(l);
        CHECK(b && b->n == 500 && b->ids[0] == 0 && b->ids[499] == 499, "sequential order");
        if (!b) return;
        memcpy(e ? p1 : p0, b->params[0], sizeof p0);
        ssl_loader_release(l, b);
    }
    int same_crop = 0;
    for (int i = 0; i < 500; i++) same_crop += p0[i].crop_x == p1[i].crop_x && p0[i].crop_w == p1[i].crop_w && p0[i].crop_y == p1[i].crop_y;
    CHECK(same_crop < 25, "%d of 500 samples kept their crop from epoch 0 to 1", same_crop);
    ssl_loader_close(l);
}

TEST(loader_replaces_a_record_that_does_not_decode) {
    /* 40 good JPEGs and one record that claims to be a JPEG but is not */
    const char *path = test_tmp("onebad.ssl");
    ssl_pack good;
    CHECK_OK(ssl_pack_open(cifar_pack(), &good));
    if (!good.map) return;
    ssl_pack_writer *w = ssl_pack_writer_open(path, 1, 0);
    for (int i = 0; i < 41; i++) {
        size_t n;
        const uint8_t *r = ssl_pack_record(&good, (uint64_t)i, &n);
        if (i == 17) ssl_pack_writer_add(w, "garbage, not a JPEG at all", 26, 32, 32, 3, SSL_ENC_JPEG, 0, "bad.jpg");
        else ssl_pack_writer_add(w, r, n, 32, 32, 3, SSL_ENC_JPEG, good.index[i].label, "ok.jpg");
    }
    const char *cls[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    CHECK_OK(ssl_pack_writer_finish(w, cls, 10, SSL_STORE_JPEG, 0));
    ssl_pack_close(&good);
    ssl_loader *l = open_loader(path, "simclr", 16, 8, 2, 1);
    if (!l) return;
    int got = 0, batches = 0;
    CHECK_OK(ssl_loader_start_epoch(l, 0, 0));
    const ssl_batch *b;
    while ((b = ssl_loader_next(l))) {
        got += b->n;
        batches++;
        for (int i = 0; i < b->n; i++) CHECK(b->ids[i] != 17, "the bad record was delivered");
        ssl_loader_release(l, b);
    }
    CHECK_EQ(batches, 5);
    CHECK_EQ(got, 40);
    ssl_loader_stats s = ssl_loader_get_stats(l);
    CHECK(s.decode_failures >= 1, "decode failures counted: %lld", (long long)s.decode_failures);
    ssl_loader_close(l);
}

TEST(loader_progressive_resolution_without_reopening) {
    const char *path = cifar_pack();
    ssl_loader *l = open_loader(path, "crop_gray", 16, 50, 2, 3);
    if (!l) return;
    int res[4] = {16, 24, 20, 32};
    for (int e = 0; e < 4; e++) {
        if (e) CHECK_OK(ssl_loader_set_resolution(l, res[e]));
        CHECK_OK(ssl_loader_start_epoch(l, e, 0));
        const ssl_batch *b;
        int n = 0;
        while ((b = ssl_loader_next(l))) {
            CHECK(b->w[0] == res[e] && b->h[1] == res[e], "epoch %d: got %dx%d, expected %d", e, b->w[0], b->h[1], res[e]);
            /* normalized values of real images stay in a sane range */
            float mn = 1e9f, mx = -1e9f;
            for (size_t k = 0; k < (size_t)b->n * b->w[0] * b->h[0] * 3; k++) {
                mn = fminf(mn, b->views[0][k]);
                mx = fmaxf(mx, b->views[0][k]);
            }
            CHECK(mn >= -2.2f && mx <= 2.7f && mx - mn > 1.0f, "epoch %d: values in [%g, %g]", e, mn, mx);
            n++;
            ssl_loader_release(l, b);
        }
        CHECK_EQ(n, 10);
    }
    CHECK_ERR(ssl_loader_set_resolution(l, 3), "resolution 3 out of range");
    ssl_loader_close(l);
}

/* The GPU path: uint8 crops plus parameters. The float path must be exactly
   those crops through ssl_augment_apply_ex (what the GPU kernel computes),
   both where every op runs (simclr) and where the resampler's last pass does
   flip, solarize and normalize itself (pointwise views, at a size that uses
   non-temporal stores). */
static void u8_vs_float(int res, int pointwise) {
    const char *path = cifar_pack();
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", res, 20);
    c.threads = 2;
    c.seed = 9;
    if (pointwise)
        for (int v = 0; v < 2; v++) {
            c.views[v].jitter_p = c.views[v].gray_p = c.views[v].blur_p = 0;
            c.views[v].solarize_p = 0.5f;
        }
    ssl_loader *f = ssl_loader_open(&c);
    c.output_u8 = 1;
    ssl_loader *u = ssl_loader_open(&c);
    if (!f || !u) return;
    CHECK_OK(ssl_loader_start_epoch(f, 1, 0));
    CHECK_OK(ssl_loader_start_epoch(u, 1, 0));
    const ssl_batch *bf = ssl_loader_next(f), *bu = ssl_loader_next(u);
    CHECK(bf && bu && bu->views_u8[0] && !bu->views[0]);
    if (!bf || !bu) return;
    size_t npx = (size_t)res * res * 3;
    float *img = malloc(npx * sizeof(float));
    ssl_buf scratch = {0, 0};
    double worst = 0;
    int flips = 0, sols = 0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < bu->n; i++) {
            CHECK(bu->ids[i] == bf->ids[i]);
            const ssl_aug_params *p = &bu->params[v][i];
            flips += p->flip, sols += p->solarize;
            const uint8_t *src = bu->views_u8[v] + (size_t)i * npx;
            for (size_t k = 0; k < npx; k++) img[k] = src[k];
            ssl_augment_apply_ex(p, img, res, res, 255.0f, c.views[v].mean, c.views[v].std, &scratch);
            const float *ref = bf->views[v] + (size_t)i * npx;
            for (size_t k = 0; k < npx; k++) {
                double d = fabs(img[k] - ref[k]);
                if (!(d <= worst)) worst = d;
            }
        }
    printf("    res %d%s: float path vs uint8 path + augment_apply_ex: max |diff| %g (%d flipped, %d solarized views)\n",
           res, pointwise ? " pointwise" : "", worst, flips, sols);
    CHECK(worst == 0, "float path differs by up to %g", worst);
    CHECK(flips > 5 && (!pointwise || sols > 5), "the batch should exercise flip and solarize");
    free(img);
    ssl_buf_free(&scratch);
    ssl_loader_release(f, bf);
    ssl_loader_release(u, bu);
    ssl_loader_close(f);
    ssl_loader_close(u);
}

TEST(loader_u8_mode_matches_the_float_path) {
    u8_vs_float(24, 0);
    u8_vs_float(24, 1);
    u8_vs_float(160, 1);
}

/* Distinct pages among o[i..i+len). */
static int pages_in_window(const ssl_pack *p, const uint32_t *o, int i, int len) {
    uint64_t seen[64];
    int n = 0;
    for (int k = i; k < i + len; k++) {
        uint64_t pg = ssl_pack_page(p, o[k]);
        int found = 0;
        for (int j = 0; j < n; j++) found |= seen[j] == pg;
        if (!found && n < 64) seen[n++] = pg;
    }
    return n;
}

TEST(loader_quasi_random_order_is_a_page_local_permutation) {
    /* 1000 records of 768 bytes in 8 KiB pages: ~10.7 records a page */
    const char *path = tiny_pack(1000, 16, 8192);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(path, &p));
    if (!p.map) return;
    static uint32_t o[1000];
    static int seen[1000];
    int64_t n;
    ssl_epoch_order(&p, SSL_ORDER_QUASI, 4, 7, 0, 0, 1, 1, o, &n);
    CHECK_EQ(n, 1000);
    int dup = 0;
    for (int i = 0; i < 1000; i++) dup += seen[o[i]]++ != 0;
    CHECK_EQ(dup, 0);
    /* groups of 4 pages (~43 samples): any 40 consecutive samples of the
       order touch at most the 8 pages of two neighbouring groups */
    int worst = 0, worst_random = 99;
    for (int i = 0; i + 40 <= 1000; i += 40) {
        int k = pages_in_window(&p, o, i, 40);
        if (k > worst) worst = k;
    }
    CHECK(worst <= 8, "a window of 40 samples touched %d pages", worst);
    static uint32_t quasi0[1000];
    memcpy(quasi0, o, sizeof o);
    /* a random order touches ~ 40 distinct pages of 94 in such a window */
    ssl_epoch_order(&p, SSL_ORDER_RANDOM, 4, 7, 0, 0, 1, 1, o, &n);
    for (int i = 0; i + 40 <= 1000; i += 40) {
        int k = pages_in_window(&p, o, i, 40);
        if (k < worst_random) worst_random = k;
    }
    CHECK(worst_random > 16, "random order: a window touched only %d pages", worst_random);
    /* the order differs between epochs */
    static uint32_t o2[1000];
    ssl_epoch_order(&p, SSL_ORDER_QUASI, 4, 7, 1, 0, 1, 1, o2, &n);
    CHECK(memcmp(quasi0, o2, sizeof o2) != 0, "quasi-random orders of epochs 0 and 1 are equal");
    ssl_pack_close(&p);
}

TEST(loader_dct_scaled_decode) {
    /* A 32x32 JPEG asked for at least 16x16 decodes at 4/8 scale with
       libjpeg-turbo (and at full size without it). */
    char name[64];
    snprintf(name, sizeof name, "cifar10/test/cat/0001.jpg");
    uint8_t *b;
    size_t n;
    CHECK_OK(ssl_read_file(test_data(name), &b, &n));
    if (!b) return;
    ssl_buf out = {0, 0};
    int w, h, c;
    CHECK_OK(ssl_decode_at_least(b, n, 3, 16, 16, &out, &w, &h, &c));
#ifdef SSL_TURBOJPEG
    CHECK_EQ(w, 16);
#else
    CHECK_EQ(w, 32);
#endif
    CHECK_OK(ssl_decode_at_least(b, n, 3, 17, 9, &out, &w, &h, &c));
#ifdef SSL_TURBOJPEG
    CHECK_EQ(w, 20); /* 5/8 */
#endif
    CHECK_OK(ssl_decode_at_least(b, n, 3, 64, 64, &out, &w, &h, &c));
    CHECK_EQ(w, 32); /* never enlarges */
    ssl_buf_free(&out);
    free(b);
}

#if defined(SSL_TURBOJPEG) && defined(SSL_LIBJPEG)
/* ssl_decode_region: the pixels the resampler reads are those of the whole
   decode at the same DCT scale, for 4:4:4, 4:2:2, 4:2:0, gray and
   progressive JPEGs (made here from a real CIFAR image, enlarged to 203x157
   so that regions have room), regions touching every edge, all 8 scales. */
TEST(decode_region_equals_the_whole_decode) {
    uint8_t *b;
    size_t n;
    CHECK_OK(ssl_read_file(test_data("cifar10/test/cat/0001.jpg"), &b, &n));
    if (!b) return;
    ssl_buf whole = {0, 0}, part = {0, 0}, big = {0, 0};
    int w, h, c;
    CHECK_OK(ssl_decode(b, n, 3, &whole, &w, &h, &c));
    const int W = 203, H = 157;
    uint8_t *img = (uint8_t *)ssl_buf_reserve(&big, (size_t)W * H * 3);
    ssl_resample((const uint8_t *)whole.p, w, h, 3, 0, 0, w, h, img, NULL, W, H, SSL_FILTER_BILINEAR, &part);
    for (int k = 0; k < W * H * 3; k++) img[k] = (uint8_t)(img[k] ^ ((k * 2654435761u) >> 29)); /* texture */
    int samps[5] = {TJSAMP_444, TJSAMP_422, TJSAMP_420, TJSAMP_GRAY, TJSAMP_420};
    uint64_t rs = 12345;
    int checked = 0, cropped = 0;
    for (int e = 0; e < 5; e++) {
        unsigned char *jpg = NULL;
        unsigned long len = 0;
        tjhandle tj = tjInitCompress();
        int rc = tjCompress2(tj, img, W, 0, H, TJPF_RGB, &jpg, &len, samps[e], 90, e == 4 ? TJFLAG_PROGRESSIVE : 0);
        CHECK(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
        tjDestroy(tj);
        if (rc != 0) continue;
        for (int it = 0; it < 60; it++) {
            rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
            double x0 = (double)(rs % 1000) / 1000 * W, y0 = (double)((rs >> 10) % 1000) / 1000 * H;
            double x1 = x0 + (double)((rs >> 20) % 1000) / 1000 * (W - x0), y1 = y0 + (double)((rs >> 30) % 1000) / 1000 * (H - y0);
            if (it % 10 == 0) x0 = 0, y0 = 0;
            if (it % 10 == 1) x1 = W, y1 = H;
            if (x1 <= x0) x1 = x0 + 0.5;
            if (y1 <= y0) y1 = y0 + 0.5;
            int need = 1 + (int)((rs >> 40) % W);
            int ww, wh, wc, pw, ph, pc, ox, oy, sw, sh;
            if (ssl_decode_at_least(jpg, len, 3, need, 1, &whole, &ww, &wh, &wc) != 0 ||
                ssl_decode_region(jpg, len, 3, need, 1, x0, y0, x1, y1, &part, &pw, &ph, &pc, &ox, &oy, &sw, &sh) != 0) {
                CHECK(0, "%s", ssl_last_error());
                break;
            }
            CHECK(sw == ww && sh == wh && pc == 3, "scaled size %dx%d vs %dx%d", sw, sh, ww, wh);
            double fx = (double)sw / W, fy = (double)sh / H;
            int cx0 = (int)floor(x0 * fx), cx1 = (int)ceil(x1 * fx), cy0 = (int)floor(y0 * fy), cy1 = (int)ceil(y1 * fy);
            cx1 = cx1 > sw ? sw : cx1, cy1 = cy1 > sh ? sh : cy1;
            CHECK(ox <= cx0 && oy <= cy0 && ox + pw >= cx1 && oy + ph >= cy1, "region (%d,%d %dx%d) does not cover [%d,%d)x[%d,%d)", ox, oy, pw, ph, cx0, cx1, cy0, cy1);
            if (ox > cx0 || oy > cy0 || ox + pw < cx1 || oy + ph < cy1) continue;
            int bad = 0;
            for (int y = cy0; y < cy1; y++)
                bad += memcmp((const uint8_t *)whole.p + ((size_t)y * ww + cx0) * 3,
                              (const uint8_t *)part.p + ((size_t)(y - oy) * pw + (cx0 - ox)) * 3, (size_t)(cx1 - cx0) * 3) != 0;
            CHECK(bad == 0, "encoding %d, box (%.1f %.1f %.1f %.1f) at %dx%d: %d rows differ", e, x0, y0, x1, y1, sw, sh, bad);
            checked++;
            cropped += pw < sw || ph < sh;
        }
        tjFree(jpg);
    }
    printf("    %d regions equal to the whole decode (%d of them decoded partly)\n", checked, cropped);
    CHECK(checked == 300 && cropped > 200);
    ssl_buf_free(&whole), ssl_buf_free(&part), ssl_buf_free(&big);
    free(b);
}

/* The loader's batches are the same with region decoding (dct_scale=1 at a
   size that never scales) and with whole decodes (dct_scale=0). */
TEST(loader_region_decode_gives_the_same_batches) {
    const char *path = cifar_pack();
    uint32_t crc[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        ssl_loader_config c;
        ssl_loader_config_init(&c, path, "simclr", 40, 25);
        c.threads = 2, c.seed = 3, c.dct_scale = k == 0;
        c.output_u8 = 1;
        ssl_loader *l = ssl_loader_open(&c);
        if (!l) return;
        CHECK_OK(ssl_loader_start_epoch(l, 2, 0));
        const ssl_batch *bt;
        for (int i = 0; i < 4 && (bt = ssl_loader_next(l)); i++) {
            for (int v = 0; v < 2; v++) crc[k] = ssl_crc32(crc[k], bt->views_u8[v], (size_t)bt->n * 40 * 40 * 3);
            ssl_loader_release(l, bt);
        }
        ssl_loader_close(l);
    }
    CHECK(crc[0] == crc[1], "region decode changes the crops (crc %08x vs %08x)", crc[0], crc[1]);
}
#endif

/* GPU mode: the uint8 views come from the caller's allocator (./train
   gives page-locked memory) and go back to it; batches are the same as with
   host memory, also when two are held at once (./train holds the next batch
   while the step runs, to copy it ahead). */
static int g_allocs, g_frees;
static void *counting_alloc(size_t bytes, const char *what) {
    g_allocs++;
    return ssl_malloc_aligned(bytes, what);
}
static void counting_free(void *p) {
    g_frees++;
    free(p);
}
TEST(loader_u8_views_from_the_callers_allocator) {
    const char *path = tiny_pack(40, 12, 4096);
    uint32_t crc[2] = {0, 0};
    g_allocs = g_frees = 0;
    for (int k = 0; k < 2; k++) {
        ssl_loader_config c;
        ssl_loader_config_init(&c, path, "simclr", 8, 5);
        c.threads = 2, c.seed = 9, c.output_u8 = 1;
        if (k) c.u8_alloc = counting_alloc, c.u8_free = counting_free;
        ssl_loader *l = ssl_loader_open(&c);
        if (!l) return;
        for (int e = 0; e < 2; e++) {
            if (e) ssl_loader_set_resolution(l, 12); /* bigger views: the buffers are allocated again */
            CHECK_OK(ssl_loader_start_epoch(l, e, 0));
            int r = e ? 12 : 8;
            const ssl_batch *b = ssl_loader_next(l), *nb = NULL;
            for (; b; b = nb, nb = NULL) {
                nb = ssl_loader_next(l); /* held together */
                for (int v = 0; v < 2; v++) crc[k] = ssl_crc32(crc[k], b->views_u8[v], (size_t)b->n * r * r * 3);
                ssl_loader_release(l, b);
            }
        }
        ssl_loader_close(l);
    }
    CHECK(crc[0] == crc[1], "batches differ with the caller's allocator (crc %08x vs %08x)", crc[0], crc[1]);
    CHECK(g_allocs > 0, "the caller's allocator was not used");
    CHECK_EQ(g_allocs, g_frees);
}

TEST(loader_bad_config_is_refused) {
    const char *path = tiny_pack(10, 8, 1024);
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", 8, 4);
    c.world = 2;
    c.rank = 2;
    CHECK(ssl_loader_open(&c) == NULL);
    CHECK_CONTAINS(ssl_last_error(), "rank 2 of world 2");
    c.rank = 0;
    c.batch_size = 6;
    CHECK(ssl_loader_open(&c) == NULL);
    CHECK_CONTAINS(ssl_last_error(), "fewer than one batch of 6");
    c.batch_size = 2;
    c.path = test_tmp("missing.ssl");
    CHECK(ssl_loader_open(&c) == NULL);
    CHECK_CONTAINS(ssl_last_error(), "missing.ssl': cannot open");
    ssl_view_recipe r;
    CHECK_ERR(ssl_view_preset("simclrr", 0, 8, &r), "simclr");
}
