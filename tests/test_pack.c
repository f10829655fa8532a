/* The pack format, ./pack and its sources, and bad input of every kind. */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stb/stb_image_write.h> /* declarations only: the BMP writer for a test source */


/* Runs ./pack with printf-formatted args; see test_runf. */
#define run_pack(out, ...) test_runf(out, test_bin("SSL_PACK", "./pack"), __VA_ARGS__)

static uint8_t *slurp(const char *path, size_t *n) {
    uint8_t *b = NULL;
    if (ssl_read_file(path, &b, n) != 0) return NULL;
    return b;
}

/* First `per_class` CIFAR test JPEGs of the first `classes` classes, copied
   into root/<class>/ ; returns the number of files. */
static const char *cifar_classes[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};
static const char *cifar_jpeg(int cls, int k) {
    static char path[SSL_STR];
    char name[64];
    snprintf(name, sizeof name, "cifar10/test/%s/%04d.jpg", cifar_classes[cls], k);
    snprintf(path, sizeof path, "%s", test_data(name));
    return path;
}
static int have_cifar(void) {
    struct stat st;
    int ok = stat(cifar_jpeg(0, 0), &st) == 0;
    if (!ok) test_fail(__FILE__, __LINE__, "test data missing: %s (make test extracts it from ../shared/data)", cifar_jpeg(0, 0));
    return ok;
}
static void copy_file(const char *from, const char *to) {
    size_t n;
    uint8_t *b = slurp(from, &n);
    SSL_ASSERT(b, "cannot read %s", from);
    SSL_ASSERT(test_write(to, b, n) == 0, "cannot write %s", to);
    free(b);
}

TEST(pack_writer_reader_raw_roundtrip) {
    const char *path = test_tmp("rt.ssl");
    remove(path);
    ssl_pack_writer *w = ssl_pack_writer_open(path, 0, 4096);
    CHECK(w != NULL, "%s", ssl_last_error());
    if (!w) return;
    enum { N = 57 };
    uint8_t *imgs[N];
    int ws[N], hs[N], cs[N];
    for (int i = 0; i < N; i++) {
        ws[i] = 1 + (i * 7) % 40;
        hs[i] = 1 + (i * 13) % 33;
        cs[i] = i % 3 ? 3 : 1;
        size_t n = (size_t)ws[i] * hs[i] * cs[i];
        imgs[i] = malloc(n);
        for (size_t k = 0; k < n; k++) imgs[i][k] = (uint8_t)(k * 31 + i);
        char p[32];
        snprintf(p, sizeof p, "img%02d.png", i);
        CHECK_OK(ssl_pack_writer_add(w, imgs[i], n, ws[i], hs[i], cs[i], SSL_ENC_RAW, (uint32_t)(i % 4), p));
    }
    /* the writer refuses nonsense records */
    CHECK_ERR(ssl_pack_writer_add(w, imgs[0], 5, 2, 2, 1, SSL_ENC_RAW, 0, "x"), "raw record of 5 bytes for 2x2x1");
    CHECK_ERR(ssl_pack_writer_add(w, imgs[0], 4, 0, 2, 1, SSL_ENC_RAW, 0, "x"), "sides must be 1..65535");
    CHECK_ERR(ssl_pack_writer_add(w, imgs[0], 8, 2, 2, 2, SSL_ENC_RAW, 0, "x"), "must be 1 or 3");
    struct stat st;
    CHECK(stat(path, &st) != 0, "the pack must not exist under its name before finish");
    const char *classes[4] = {"zero", "one", "two", "three"};
    CHECK_OK(ssl_pack_writer_finish(w, classes, 4, SSL_STORE_RAW, 0));
    ssl_pack p;
    CHECK_OK(ssl_pack_open(path, &p));
    CHECK_EQ(p.h.num_samples, N);
    CHECK_EQ(p.h.num_classes, 4);
    CHECK(!strcmp(p.class_names[2], "two"));
    int same = 1;
    for (int i = 0; i < N; i++) {
        size_t n;
        const uint8_t *r = ssl_pack_record(&p, i, &n);
        const ssl_pack_rec *e = &p.index[i];
        if (n != (size_t)ws[i] * hs[i] * cs[i] || memcmp(r, imgs[i], n) || e->width != ws[i] || e->height != hs[i] ||
            e->channels != cs[i] || e->label != (uint32_t)(i % 4) || ssl_pack_check_record(&p, i) != 0)
            same = 0;
        free(imgs[i]);
    }
    CHECK(same, "a raw record did not round-trip exactly");
    CHECK(!strcmp(ssl_pack_source(&p, 13), "img13.png"));
    /* pages: records in index order, so page numbers never decrease */
    int mono = 1;
    for (int i = 1; i < N; i++) mono &= ssl_pack_page(&p, i) >= ssl_pack_page(&p, i - 1);
    CHECK(mono && ssl_pack_page(&p, N - 1) >= 10, "records are laid out in index order across pages");
    ssl_pack_close(&p);
    /* exists: refused without force */
    CHECK(ssl_pack_writer_open(path, 0, 0) == NULL, "opened over an existing pack");
    CHECK_CONTAINS(ssl_last_error(), "pass force=1");
}

/* A pack whose last record sits past 4 GiB: the file is sparse, so this
   costs no disk, but every offset goes through 64-bit arithmetic. */
TEST(pack_offsets_over_4_gib) {
    const char *path = test_tmp("big.ssl");
    remove(path);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    CHECK(fd >= 0);
    if (fd < 0) return;
    uint64_t far = (5ull << 30) + 3; /* 5 GiB + 3 */
    uint8_t rec0[12], rec1[12];
    for (int i = 0; i < 12; i++) { rec0[i] = (uint8_t)i; rec1[i] = (uint8_t)(200 + i); }
    ssl_pack_rec idx[2];
    memset(idx, 0, sizeof idx);
    idx[0] = (ssl_pack_rec){128, 12, 2, 2, 3, SSL_ENC_RAW, 0, 0, ssl_crc32(0, rec0, 12), 0};
    idx[1] = (ssl_pack_rec){far, 12, 2, 2, 3, SSL_ENC_RAW, 0, 1, ssl_crc32(0, rec1, 12), 0};
    uint64_t index_off = (far + 12 + 7) / 8 * 8;
    const char strings[] = "a\0b";
    /* header by hand, from the documented layout */
    uint8_t h[128] = {0};
    memcpy(h, "SSLPACK", 8);
    uint32_t u32;
    uint64_t u64;
#define PUT32(o, v) (u32 = (v), memcpy(h + (o), &u32, 4))
#define PUT64(o, v) (u64 = (v), memcpy(h + (o), &u64, 8))
    PUT32(8, 1); PUT32(12, 128); PUT64(16, 2); PUT32(24, 2); PUT32(28, 0); PUT32(32, 0); PUT32(36, 0);
    PUT64(40, 128); PUT64(48, index_off); PUT64(56, index_off + 64); PUT64(64, sizeof strings);
    PUT64(72, index_off + 64 + sizeof strings); PUT32(80, 4 << 20);
    PUT32(84, ssl_crc32(0, idx, sizeof idx)); PUT32(88, ssl_crc32(0, strings, sizeof strings));
    PUT32(124, ssl_crc32(0, h, 124));
    int ok = pwrite(fd, h, 128, 0) == 128 && pwrite(fd, rec0, 12, 128) == 12 && pwrite(fd, rec1, 12, (off_t)far) == 12 &&
             pwrite(fd, idx, sizeof idx, (off_t)index_off) == (ssize_t)sizeof idx &&
             pwrite(fd, strings, sizeof strings, (off_t)index_off + 64) == (ssize_t)sizeof strings;
    close(fd);
    CHECK(ok, "writing the sparse file failed");
    ssl_pack p;
    CHECK_OK(ssl_pack_open(path, &p));
    if (p.map) {
        size_t n;
        const uint8_t *r = ssl_pack_record(&p, 1, &n);
        CHECK_EQ(n, 12);
        CHECK(!memcmp(r, rec1, 12), "record past 4 GiB read back wrong");
        CHECK_OK(ssl_pack_check_record(&p, 1));
        CHECK_EQ(p.h.file_size, index_off + 64 + sizeof strings);
        ssl_pack_close(&p);
    }
    remove(path);
#undef PUT32
#undef PUT64
}

/* Builds root/<class>/ with CIFAR JPEGs; classes created out of order. */
static int make_folder(const char *root, int per_class_base) {
    const char *names[3] = {"zebra", "apple", "mango"};
    int counts[3] = {per_class_base + 2, per_class_base, per_class_base + 1};
    int total = 0;
    char cmd[SSL_STR * 2];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    (void)!system(cmd);
    for (int c = 0; c < 3; c++) {
        char dir[SSL_STR];
        snprintf(dir, sizeof dir, "%s/%s", root, names[c]);
        test_mkdirs(dir);
        for (int k = 0; k < counts[c]; k++) {
            char to[SSL_STR + 32];
            snprintf(to, sizeof to, "%s/img%03d.jpg", dir, k);
            copy_file(cifar_jpeg(c, k), to);
            total++;
        }
    }
    return total;
}

TEST(pack_imagefolder_labels_auto_mode_and_thread_independence) {
    if (!have_cifar()) return;
    const char *root = test_tmp("folder");
    int n = make_folder(root, 4);
    /* a nested folder inside a class, and a dot-file that is ignored */
    char nested[SSL_STR + 32];
    snprintf(nested, sizeof nested, "%s/mango/sub", root);
    test_mkdirs(nested);
    strcat(nested, "/deep.jpg");
    copy_file(cifar_jpeg(5, 0), nested);
    char dot[SSL_STR + 32];
    snprintf(dot, sizeof dot, "%s/apple/.hidden.jpg", root);
    copy_file(cifar_jpeg(5, 1), dot);
    n++;
    char *out;
    const char *p1 = test_tmp("folder1.ssl"), *p2 = test_tmp("folder2.ssl");
    int rc = run_pack(&out, "%s %s threads=1 force=1", root, p1);
    CHECK_EQ(rc, 0);
    CHECK_CONTAINS(out, "per class: apple=4, mango=6, zebra=6");
    free(out);
    CHECK_EQ(run_pack(NULL, "%s %s threads=3 force=1", root, p2), 0);
    size_t n1, n2;
    uint8_t *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "packs made with 1 and 3 threads differ");
    free(b1);
    free(b2);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(p1, &p));
    if (!p.map) return;
    CHECK_EQ(p.h.num_samples, n);
    CHECK_EQ(p.h.num_classes, 3);
    CHECK(!strcmp(p.class_names[0], "apple") && !strcmp(p.class_names[1], "mango") && !strcmp(p.class_names[2], "zebra"),
          "classes are sorted by name");
    /* sorted order: apple (label 0) first, zebra last; auto mode keeps the JPEG bytes */
    CHECK_EQ(p.index[0].label, 0);
    CHECK_EQ(p.index[n - 1].label, 2);
    int kept = 1;
    for (uint64_t i = 0; i < p.h.num_samples; i++) {
        size_t rn, fn;
        const uint8_t *r = ssl_pack_record(&p, i, &rn);
        uint8_t *f = slurp(ssl_pack_source(&p, i), &fn);
        if (!f || fn != rn || memcmp(f, r, rn) || p.index[i].encoding != SSL_ENC_JPEG) kept = 0;
        free(f);
    }
    CHECK(kept, "mode=auto must store source JPEG bytes untouched");
    CHECK_CONTAINS(ssl_pack_source(&p, 9), "mango/sub/deep.jpg"); /* apple 0-3, mango img000..004, then sub/ */
    ssl_pack_close(&p);
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) se += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return se == 0 ? 99 : 10 * log10(255.0 * 255.0 * n / se);
}

TEST(pack_jpeg_and_raw_modes_against_source_pixels) {
    if (!have_cifar()) return;
    const char *root = test_tmp("folder_q");
    make_folder(root, 30);
    const char *pj = test_tmp("q_jpeg.ssl"), *pr = test_tmp("q_raw.ssl");
    CHECK_EQ(run_pack(NULL, "%s %s mode=jpeg quality=90 force=1", root, pj), 0);
    CHECK_EQ(run_pack(NULL, "%s %s mode=raw force=1", root, pr), 0);
    ssl_pack a, b;
    CHECK_OK(ssl_pack_open(pj, &a));
    CHECK_OK(ssl_pack_open(pr, &b));
    if (!a.map || !b.map) return;
    ssl_buf src = {0, 0}, dj = {0, 0};
    double sum = 0, worst = 99;
    int exact = 1;
    for (uint64_t i = 0; i < a.h.num_samples; i++) {
        size_t fn;
        uint8_t *f = slurp(ssl_pack_source(&a, i), &fn);
        int w, h, c, w2, h2, c2;
        CHECK_OK(ssl_decode(f, fn, 3, &src, &w, &h, &c));
        CHECK_OK(ssl_pack_decode(&a, i, 3, &dj, &w2, &h2, &c2));
        double q = psnr(src.p, dj.p, (size_t)w * h * 3);
        sum += q;
        if (q < worst) worst = q;
        size_t rn;
        const uint8_t *r = ssl_pack_record(&b, i, &rn);
        if (b.index[i].encoding != SSL_ENC_RAW || rn != (size_t)w * h * 3 || memcmp(r, src.p, rn)) exact = 0;
        free(f);
    }
    double mean = sum / a.h.num_samples;
    printf("    jpeg q=90 re-encode: mean PSNR %.2f dB, worst %.2f dB over %llu CIFAR images\n", mean, worst,
           (unsigned long long)a.h.num_samples);
    CHECK(mean > 34.0, "mean PSNR %.2f dB at quality 90 (expected > 34)", mean);
    CHECK(worst > 28.0, "worst PSNR %.2f dB at quality 90 (expected > 28)", worst);
    CHECK(exact, "mode=raw must store exactly the decoded source pixels");
    ssl_buf_free(&src);
    ssl_buf_free(&dj);
    ssl_pack_close(&a);
    ssl_pack_close(&b);
}

TEST(pack_max_res_shrinks_with_the_area_filter) {
    /* a 64x48 RGB PNG with a pattern whose 4x4 block means are known */
    enum { W = 64, H = 48 };
    static uint8_t px[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) px[(y * W + x) * 3 + c] = (uint8_t)((x / 4) * 10 + (y / 4) * 3 + c + (x % 4) * 2);
    ssl_buf png = {0, 0};
    size_t n;
    CHECK_OK(ssl_encode_png(px, W, H, 3, &png, &n));
    const char *root = test_tmp("folder_res");
    char dir[SSL_STR + 16], f[SSL_STR + 32];
    snprintf(dir, sizeof dir, "%s/only", root);
    test_mkdirs(dir);
    snprintf(f, sizeof f, "%s/a.png", dir);
    CHECK_OK(test_write(f, png.p, n));
    ssl_buf_free(&png);
    const char *out = test_tmp("res.ssl");
    CHECK_EQ(run_pack(NULL, "%s %s max_res=16 mode=raw force=1", root, out), 0);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(out, &p));
    if (!p.map) return;
    CHECK_EQ(p.index[0].width, 16);
    CHECK_EQ(p.index[0].height, 12);
    CHECK_EQ(p.h.max_res, 16);
    size_t rn;
    const uint8_t *r = ssl_pack_record(&p, 0, &rn);
    int worst = 0;
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) {
                /* block mean: the (x%4)*2 ramp averages to 3 */
                int want = x * 10 + y * 3 + c + 3;
                int d = abs(r[(y * 16 + x) * 3 + c] - want);
                if (d > worst) worst = d;
            }
    CHECK_EQ(worst, 0);
    ssl_pack_close(&p);
    /* never enlarges */
    CHECK_EQ(run_pack(NULL, "%s %s max_res=100 mode=raw force=1", root, out), 0);
    CHECK_OK(ssl_pack_open(out, &p));
    if (p.map) { CHECK_EQ(p.index[0].width, 64); ssl_pack_close(&p); }
}

TEST(pack_cifar_binary_batches) {
    if (!have_cifar()) return;
    /* 20 records in CIFAR-10's binary layout, made from real CIFAR JPEGs */
    enum { N = 20 };
    static uint8_t bin[N * 3073], want[N][3072];
    ssl_buf px = {0, 0};
    for (int i = 0; i < N; i++) {
        size_t fn;
        uint8_t *f = slurp(cifar_jpeg(i % 10, i / 10), &fn);
        int w, h, c;
        CHECK_OK(ssl_decode(f, fn, 3, &px, &w, &h, &c));
        free(f);
        uint8_t *rec = bin + i * 3073, *p = px.p;
        rec[0] = (uint8_t)(i % 10);
        for (int k = 0; k < 1024; k++) {
            rec[1 + k] = p[3 * k];
            rec[1 + 1024 + k] = p[3 * k + 1];
            rec[1 + 2048 + k] = p[3 * k + 2];
        }
        memcpy(want[i], p, 3072);
    }
    ssl_buf_free(&px);
    const char *dir = test_tmp("cifarbin");
    test_mkdirs(dir);
    char b1[SSL_STR + 16], b2[SSL_STR + 16], meta[SSL_STR + 32];
    snprintf(b1, sizeof b1, "%s/data_batch_1.bin", dir);
    snprintf(b2, sizeof b2, "%s/data_batch_2.bin", dir);
    snprintf(meta, sizeof meta, "%s/batches.meta.txt", dir);
    CHECK_OK(test_write(b1, bin, 12 * 3073));
    CHECK_OK(test_write(b2, bin + 12 * 3073, 8 * 3073));
    const char *names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    CHECK_OK(test_write(meta, names, strlen(names)));
    const char *out = test_tmp("cifar.ssl");
    char *log;
    CHECK_EQ(run_pack(&log, "%s,%s %s force=1", b1, b2, out), 0);
    free(log);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(out, &p));
    if (!p.map) return;
    CHECK_EQ(p.h.num_samples, N);
    CHECK(!strcmp(p.class_names[3], "cat"), "class names from batches.meta.txt");
    int ok = 1;
    for (int i = 0; i < N; i++) {
        size_t rn;
        const uint8_t *r = ssl_pack_record(&p, i, &rn);
        if (rn != 3072 || memcmp(r, want[i], 3072) || p.index[i].label != (uint32_t)(i % 10)) ok = 0;
    }
    CHECK(ok, "CIFAR binary records must unpack to the same pixels and labels");
    ssl_pack_close(&p);
    /* a file that is not a whole number of records */
    CHECK_OK(test_write(b1, bin, 3073 * 2 + 5));
    CHECK_EQ(run_pack(&log, "%s %s format=cifar10 force=1", b1, out), 1);
    CHECK_CONTAINS(log, "not a whole number of 3073-byte CIFAR-10 records");
    free(log);
}

TEST(pack_idx_fashion_mnist) {
    const char *dir = getenv("SSL_FMNIST") ? getenv("SSL_FMNIST") : "/usr/share/datasets/fashion-mnist";
    char images[SSL_STR], cmd[SSL_STR * 2];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    const char *out = test_tmp("fmnist.ssl");
    char *log;
    CHECK_EQ(run_pack(&log, "%s %s force=1", images, out), 0);
    CHECK_CONTAINS(log, "per class: 0=1000, 1=1000, 2=1000");
    free(log);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(out, &p));
    if (!p.map) return;
    CHECK_EQ(p.h.num_samples, 10000);
    CHECK_EQ(p.index[0].label, 9); /* the first test image is an ankle boot */
    CHECK_EQ(p.index[0].channels, 1);
    CHECK_EQ(p.index[0].width, 28);
    /* cross-check pixels with gzip's own decompression */
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' | head -c %d | tail -c %d", images, 16 + 784 * 50, 784 * 50);
    FILE *f = popen(cmd, "r");
    static uint8_t ref[784 * 50];
    size_t got = f ? fread(ref, 1, sizeof ref, f) : 0;
    if (f) pclose(f);
    CHECK_EQ(got, sizeof ref);
    int same = 1;
    for (int i = 0; i < 50; i++) {
        size_t rn;
        const uint8_t *r = ssl_pack_record(&p, i, &rn);
        if (rn != 784 || memcmp(r, ref + 784 * i, 784)) same = 0;
    }
    CHECK(same, "IDX pixels differ from gzip -dc's");
    ssl_pack_close(&p);
    /* channels=rgb converts gray to three equal channels */
    CHECK_EQ(run_pack(NULL, "%s %s channels=rgb limit=5 force=1", images, out), 0);
    CHECK_OK(ssl_pack_open(out, &p));
    if (p.map) {
        size_t rn;
        const uint8_t *r = ssl_pack_record(&p, 0, &rn);
        CHECK_EQ(rn, 784 * 3);
        CHECK(r[3 * 400] == r[3 * 400 + 1] && r[3 * 400] == r[3 * 400 + 2] && r[3 * 400] == ref[400]);
        ssl_pack_close(&p);
    }
}

TEST(pack_list_file_with_named_labels) {
    if (!have_cifar()) return;
    const char *dir = test_tmp("listsrc");
    test_mkdirs(dir);
    char list[SSL_STR + 16], text[4096] = "# path<TAB>label\n";
    for (int i = 0; i < 6; i++) {
        char to[SSL_STR + 16], line[128];
        snprintf(to, sizeof to, "%s/f%d.jpg", dir, i);
        copy_file(cifar_jpeg(i, 0), to);
        snprintf(line, sizeof line, "f%d.jpg\t%s\n", i, i % 2 ? "odd" : "even");
        strcat(text, line);
    }
    snprintf(list, sizeof list, "%s/list.txt", dir);
    CHECK_OK(test_write(list, text, strlen(text)));
    const char *out = test_tmp("list.ssl");
    CHECK_EQ(run_pack(NULL, "%s %s force=1", list, out), 0);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(out, &p));
    if (!p.map) return;
    CHECK_EQ(p.h.num_samples, 6);
    CHECK(!strcmp(p.class_names[0], "even") && !strcmp(p.class_names[1], "odd"));
    CHECK_EQ(p.index[0].label, 0);
    CHECK_EQ(p.index[1].label, 1);
    ssl_pack_close(&p);
    CHECK_OK(test_write(list, "f0.jpg 3\n", 9));
    char *log;
    CHECK_EQ(run_pack(&log, "%s %s force=1", list, out), 1);
    CHECK_CONTAINS(log, "list.txt:1: expected 'path<TAB>label'");
    free(log);
}

/* ---- bad pack files ---- */

static uint8_t *good_pack(size_t *n) {
    const char *path = test_tmp("good.ssl");
    remove(path);
    ssl_pack_writer *w = ssl_pack_writer_open(path, 1, 0);
    uint8_t px[4 * 4 * 3];
    for (int i = 0; i < 8; i++) {
        memset(px, i * 20, sizeof px);
        px[5] = 3;
        ssl_pack_writer_add(w, px, sizeof px, 4, 4, 3, SSL_ENC_RAW, (uint32_t)(i % 2), NULL);
    }
    const char *cls[2] = {"a", "b"};
    SSL_ASSERT(ssl_pack_writer_finish(w, cls, 2, SSL_STORE_RAW, 0) == 0, "%s", ssl_last_error());
    return slurp(path, n);
}

TEST(pack_reader_refuses_bad_files) {
    size_t n;
    uint8_t *g = good_pack(&n), *b = malloc(n);
    const char *path = test_tmp("bad.ssl");
    ssl_pack p;
    /* truncated */
    CHECK_OK(test_write(path, g, n - 10));
    CHECK_ERR(ssl_pack_open(path, &p), "truncated");
    CHECK_ERR(ssl_pack_open(path, &p), "bad.ssl");
    CHECK_OK(test_write(path, g, 50));
    CHECK_ERR(ssl_pack_open(path, &p), "shorter than the 128-byte header");
    CHECK_OK(test_write(path, g, 0));
    CHECK_ERR(ssl_pack_open(path, &p), "bad.ssl' is empty");
    /* wrong magic, wrong version */
    memcpy(b, g, n);
    b[0] = 'X';
    CHECK_OK(test_write(path, b, n));
    CHECK_ERR(ssl_pack_open(path, &p), "bad magic");
    memcpy(b, g, n);
    b[8] = 9;
    CHECK_OK(test_write(path, b, n));
    CHECK_ERR(ssl_pack_open(path, &p), "format version 9, this build reads version 1");
    /* header corrupted elsewhere: caught by the header CRC */
    memcpy(b, g, n);
    b[33] ^= 1;
    CHECK_OK(test_write(path, b, n));
    CHECK_ERR(ssl_pack_open(path, &p), "header checksum mismatch");
    /* an index entry pointing past the end (index CRC fixed up, so the
       bounds check itself must catch it) */
    memcpy(b, g, n);
    uint64_t index_off, bad_off = 1ull << 40;
    memcpy(&index_off, b + 48, 8);
    memcpy(b + index_off + 3 * 32, &bad_off, 8);
    uint32_t crc = ssl_crc32(0, b + index_off, 8 * 32);
    memcpy(b + 84, &crc, 4);
    crc = ssl_crc32(0, b, 124);
    memcpy(b + 124, &crc, 4);
    CHECK_OK(test_write(path, b, n));
    CHECK_ERR(ssl_pack_open(path, &p), "sample 3: record");
    CHECK_ERR(ssl_pack_open(path, &p), "outside the records region");
    /* ... and without the fix-up the index CRC catches it first */
    memcpy(b, g, n);
    memcpy(b + index_off + 3 * 32, &bad_off, 8);
    CHECK_OK(test_write(path, b, n));
    CHECK_ERR(ssl_pack_open(path, &p), "index checksum mismatch");
    /* a flipped byte inside record 5: opens, verify names the sample */
    memcpy(b, g, n);
    b[128 + 5 * 48 + 7] ^= 0x40;
    CHECK_OK(test_write(path, b, n));
    CHECK_OK(ssl_pack_open(path, &p));
    if (p.map) {
        CHECK_OK(ssl_pack_check_record(&p, 4));
        CHECK_ERR(ssl_pack_check_record(&p, 5), "sample 5: CRC mismatch");
        ssl_pack_close(&p);
    }
    char *out;
    CHECK_EQ(run_pack(&out, "verify %s", path), 1);
    CHECK_CONTAINS(out, "BAD sample 5: sample 5: CRC mismatch");
    CHECK_CONTAINS(out, "1 bad");
    free(out);
    CHECK_OK(test_write(path, g, n));
    CHECK_EQ(run_pack(&out, "verify %s", path), 0);
    CHECK_CONTAINS(out, "verified 8 records");
    free(out);
    CHECK_EQ(run_pack(&out, "info %s", test_tmp("nope.ssl")), 1);
    CHECK_CONTAINS(out, "nope.ssl': cannot open");
    free(out);
    /* random garbage of every length up to 300 bytes never crashes */
    int refused = 1;
    for (size_t len = 0; len < 300; len += 7) {
        for (size_t k = 0; k < len; k++) b[k] = (uint8_t)(k * 131 + len);
        if (len >= 8) memcpy(b, "SSLPACK", 8);
        test_write(path, b, len);
        if (ssl_pack_open(path, &p) == 0) { refused = 0; ssl_pack_close(&p); }
    }
    CHECK(refused, "a garbage file was accepted");
    free(g);
    free(b);
}

/* A PNG whose header claims w x h (stb_image does not check chunk CRCs,
   but we write a correct one anyway). */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
    uint8_t b[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    uint8_t *p = b + 16;
    p[0] = w >> 24; p[1] = w >> 16; p[2] = w >> 8; p[3] = w;
    p[4] = h >> 24; p[5] = h >> 16; p[6] = h >> 8; p[7] = h;
    p[8] = 8; p[9] = 2; /* 8-bit RGB */
    uint32_t crc = ssl_crc32(0, b + 12, 17);
    b[29] = crc >> 24; b[30] = crc >> 16; b[31] = crc >> 8; b[32] = crc;
    memcpy(b + 33, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    test_write(path, b, sizeof b);
}

TEST(pack_bad_sources_are_errors_or_counted_skips) {
    if (!have_cifar()) return;
    char *out;
    const char *dst = test_tmp("bad_src.ssl");
    /* missing and empty folders */
    CHECK_EQ(run_pack(&out, "%s %s", test_tmp("no-such-dir"), dst), 1);
    CHECK_CONTAINS(out, "does not exist");
    free(out);
    const char *empty = test_tmp("empty_dir");
    test_mkdirs(empty);
    CHECK_EQ(run_pack(&out, "%s %s", empty, dst), 1);
    CHECK_CONTAINS(out, "has no class folders");
    free(out);
    /* a class folder with a text file, a zero-byte .jpg, an absurd PNG and a truncated JPEG */
    const char *root = test_tmp("dirty");
    make_folder(root, 2);
    char f[SSL_STR + 64];
    snprintf(f, sizeof f, "%s/apple/notes.txt", root);
    test_write(f, "not an image\n", 13);
    snprintf(f, sizeof f, "%s/apple/zero.jpg", root);
    test_write(f, "", 0);
    snprintf(f, sizeof f, "%s/mango/huge.png", root);
    write_png_header(f, 100000, 100000);
    size_t jn;
    uint8_t *j = slurp(cifar_jpeg(0, 9), &jn);
    snprintf(f, sizeof f, "%s/zebra/cut.jpg", root);
    test_write(f, j, 20);
    free(j);
    CHECK_EQ(run_pack(&out, "%s %s mode=raw force=1", root, dst), 0);
    CHECK_CONTAINS(out, "skipped: 4");
    CHECK_CONTAINS(out, "apple/notes.txt: not a recognised image");
    CHECK_CONTAINS(out, "apple/zero.jpg: empty file (0 bytes)");
    CHECK_CONTAINS(out, "huge.png: image header claims 100000x100000 pixels, over the limit");
    CHECK_CONTAINS(out, "zebra/cut.jpg:");
    CHECK_CONTAINS(out, "per class: apple=2, mango=3, zebra=4");
    free(out);
    /* strict=1 turns the first skip into an error, and leaves no file behind */
    remove(dst);
    CHECK_EQ(run_pack(&out, "%s %s strict=1", root, dst), 1);
    CHECK_CONTAINS(out, "(strict=1)");
    free(out);
    struct stat st;
    CHECK(stat(dst, &st) != 0, "a failed pack left '%s' behind", dst);
    DIR *d = opendir(test_tmp(""));
    struct dirent *e;
    int tmp_left = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, "bad_src.ssl.tmp")) tmp_left = 1;
    if (d) closedir(d);
    CHECK(!tmp_left, "a failed pack left its temporary file behind");
    /* existing output without force */
    CHECK_EQ(run_pack(NULL, "%s %s", root, dst), 0);
    CHECK_EQ(run_pack(&out, "%s %s", root, dst), 1);
    CHECK_CONTAINS(out, "already exists; pass force=1");
    free(out);
    /* bad options are refused before any work */
    CHECK_EQ(run_pack(&out, "%s %s qualty=50", root, dst), 2);
    CHECK_CONTAINS(out, "did you mean 'quality'?");
    free(out);
    CHECK_EQ(run_pack(&out, "%s %s mode=webp", root, dst), 2);
    CHECK_CONTAINS(out, "expected one of auto|jpeg|raw|png");
    free(out);
    CHECK_EQ(run_pack(&out, "%s %s quality=101", root, dst), 2);
    CHECK_CONTAINS(out, "expected an integer in [1, 100]");
    free(out);
}

static void sink(void *ctx, void *data, int size) { fwrite(data, 1, (size_t)size, (FILE *)ctx); }

TEST(pack_rgba_gray_and_bmp_sources) {
    /* an RGBA PNG (alpha dropped), a gray PNG (kept gray), an RGB BMP */
    enum { W = 9, H = 7 };
    uint8_t rgba[W * H * 4], gray[W * H], rgb[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        rgba[4 * i] = (uint8_t)(i * 3); rgba[4 * i + 1] = (uint8_t)(i * 5); rgba[4 * i + 2] = (uint8_t)(i * 7); rgba[4 * i + 3] = (uint8_t)(255 - i);
        gray[i] = (uint8_t)(i * 4);
        rgb[3 * i] = (uint8_t)(200 - i); rgb[3 * i + 1] = (uint8_t)i; rgb[3 * i + 2] = (uint8_t)(i * 2);
    }
    const char *root = test_tmp("formats");
    char dir[SSL_STR + 16], f[SSL_STR + 32];
    snprintf(dir, sizeof dir, "%s/c", root);
    test_mkdirs(dir);
    ssl_buf png = {0, 0};
    size_t n;
    CHECK_OK(ssl_encode_png(rgba, W, H, 4, &png, &n));
    snprintf(f, sizeof f, "%s/a_rgba.png", dir);
    test_write(f, png.p, n);
    CHECK_OK(ssl_encode_png(gray, W, H, 1, &png, &n));
    snprintf(f, sizeof f, "%s/b_gray.png", dir);
    test_write(f, png.p, n);
    ssl_buf_free(&png);
    snprintf(f, sizeof f, "%s/c_rgb.bmp", dir);
    FILE *fp = fopen(f, "wb");
    CHECK(fp && stbi_write_bmp_to_func(sink, fp, W, H, 3, rgb) != 0);
    fclose(fp);
    const char *out = test_tmp("formats.ssl");
    CHECK_EQ(run_pack(NULL, "%s %s force=1", root, out), 0);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(out, &p));
    if (!p.map) return;
    CHECK_EQ(p.h.num_samples, 3);
    size_t rn;
    const uint8_t *r = ssl_pack_record(&p, 0, &rn);
    CHECK(p.index[0].channels == 3 && rn == W * H * 3, "RGBA is stored as RGB");
    CHECK(r[3 * 10] == rgba[40] && r[3 * 10 + 1] == rgba[41] && r[3 * 10 + 2] == rgba[42], "RGBA colour kept, alpha dropped");
    r = ssl_pack_record(&p, 1, &rn);
    CHECK(p.index[1].channels == 1 && rn == W * H && !memcmp(r, gray, W * H), "gray stays gray and exact");
    r = ssl_pack_record(&p, 2, &rn);
    CHECK(p.index[2].channels == 3 && rn == W * H * 3 && !memcmp(r, rgb, W * H * 3), "BMP read exactly");
    ssl_pack_close(&p);
    /* channels=gray converts everything to one channel */
    CHECK_EQ(run_pack(NULL, "%s %s channels=gray force=1", root, out), 0);
    CHECK_OK(ssl_pack_open(out, &p));
    if (p.map) {
        CHECK(p.index[0].channels == 1 && p.index[2].channels == 1);
        ssl_pack_close(&p);
    }
}
