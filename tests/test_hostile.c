/* Hostile files: crafted packs, images, tensor files and config files that
   once crashed a reader, aborted the loader or passed a check they should
   have failed. Each is refused with an error (or, in the loader, replaced
   and counted), and nothing crashes. The inputs are built here; the
   fuzzers' finds are under tests/fixtures/hostile/. */
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef SSL_TURBOJPEG
#include <turbojpeg.h>
#endif

#define run_pack(out, ...) test_runf(out, test_bin("SSL_PACK", "./pack"), __VA_ARGS__)

static uint8_t *slurp(const char *path, size_t *n) {
    uint8_t *b = NULL;
    if (ssl_read_file(path, &b, n) != 0) return NULL;
    return b;
}

/* A w x h RGB JPEG of a smooth pattern (quality 90); free() it. */
static uint8_t *make_jpeg(int w, int h, size_t *n) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) px[((size_t)y * w + x) * 3 + c] = (uint8_t)(x * 5 + y * 3 + c * 60);
    ssl_buf out = {0, 0};
    SSL_ASSERT(ssl_encode_jpeg(px, w, h, 3, 90, &out, n) == 0, "%s", ssl_last_error());
    free(px);
    uint8_t *b = malloc(*n);
    memcpy(b, out.p, *n);
    ssl_buf_free(&out);
    return b;
}

/* The offset of the first marker m in a JPEG (its FF), or 0. */
static size_t jpeg_marker(const uint8_t *b, size_t n, int m) {
    for (size_t i = 2; i + 1 < n;) {
        if (b[i] != 0xFF) return 0;
        if (b[i + 1] == m) return i;
        if (b[i + 1] == 0xDA) return 0;
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    return 0;
}

/* A small pack: k raw 4x4 RGB records, 2 classes; its bytes (free them). */
static uint8_t *small_pack(int k, size_t *n) {
    const char *path = test_tmp("hostile-small.ssl");
    ssl_pack_writer *w = ssl_pack_writer_open(path, 1, 0);
    SSL_ASSERT(w, "%s", ssl_last_error());
    uint8_t px[4 * 4 * 3];
    for (int i = 0; i < k; i++) {
        memset(px, i * 20, sizeof px);
        SSL_ASSERT(ssl_pack_writer_add(w, px, sizeof px, 4, 4, 3, SSL_ENC_RAW, (uint32_t)(i % 2), NULL) == 0, "add");
    }
    const char *cls[2] = {"a", "b"};
    SSL_ASSERT(ssl_pack_writer_finish(w, cls, 2, SSL_STORE_RAW, 0) == 0, "%s", ssl_last_error());
    return slurp(path, n);
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void fix_header_crc(uint8_t *b) { put32(b + 124, ssl_crc32(0, b, 124)); }

TEST(hostile_pack_index_offset_past_the_end) {
    /* index and strings placed past the end of the file, every other field
       consistent with that (no samples; strings_size = file_size -
       strings_offset, wrapped): the offsets must be refused before any
       size is computed from them */
    size_t n;
    uint8_t *b = small_pack(0, &n);
    uint64_t far = ((uint64_t)n + 4096) & ~(uint64_t)7;
    put64(b + 16, 0);             /* num_samples */
    put32(b + 24, 0);             /* num_classes */
    put64(b + 48, far);           /* index_offset */
    put64(b + 56, far);           /* strings_offset */
    put64(b + 64, (uint64_t)n - far); /* strings_size, wrapped */
    fix_header_crc(b);
    const char *path = test_tmp("hostile-index-past-end.ssl");
    CHECK_OK(test_write(path, b, n));
    ssl_pack p;
    CHECK_ERR(ssl_pack_open(path, &p), "bad data/index offsets");
    char *out = NULL;
    CHECK_EQ(run_pack(&out, "info %s", path), 1);
    CHECK_CONTAINS(out, "bad data/index offsets");
    free(out);
    CHECK_EQ(run_pack(&out, "verify %s", path), 1);
    CHECK_CONTAINS(out, "bad data/index offsets");
    free(out);
    free(b);
}

TEST(hostile_pack_class_count_the_strings_cannot_hold) {
    size_t n;
    uint8_t *b = small_pack(3, &n);
    put32(b + 24, 0xFFFFFFFFu);
    fix_header_crc(b);
    const char *path = test_tmp("hostile-classes.ssl");
    CHECK_OK(test_write(path, b, n));
    ssl_pack p;
    CHECK_ERR(ssl_pack_open(path, &p), "4294967295 classes, but the string table of 4 bytes cannot name them");
    free(b);
}

/* A pack of 8 JPEG records of 40x30 pixels, record 4 replaced by `bad`
   (bad_n bytes) whose index entry claims bw x bh. */
static const char *jpeg_pack_with(const char *name, const uint8_t *bad, size_t bad_n, int bw, int bh) {
    const char *path = test_tmp(name);
    size_t gn;
    uint8_t *good = make_jpeg(40, 30, &gn);
    ssl_pack_writer *w = ssl_pack_writer_open(path, 1, 0);
    SSL_ASSERT(w, "%s", ssl_last_error());
    for (int i = 0; i < 8; i++) {
        int rc = i == 4 ? ssl_pack_writer_add(w, bad, bad_n, bw, bh, 3, SSL_ENC_JPEG, 0, "bad.jpg")
                        : ssl_pack_writer_add(w, good, gn, 40, 30, 3, SSL_ENC_JPEG, (uint32_t)(i % 2), "ok.jpg");
        SSL_ASSERT(rc == 0, "%s", ssl_last_error());
    }
    const char *cls[2] = {"a", "b"};
    SSL_ASSERT(ssl_pack_writer_finish(w, cls, 2, SSL_STORE_JPEG, 0) == 0, "%s", ssl_last_error());
    free(good);
    return path;
}

/* One epoch over the pack (batches of 4, 16x16 views, DCT-scaled region
   decode): every sample but record 4 delivered, record 4 counted failed. */
static void epoch_replaces_record_4(const char *path) {
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", 16, 4);
    c.threads = 1;
    c.seed = 3;
    ssl_loader *l = ssl_loader_open(&c);
    if (!l) { test_fail(__FILE__, __LINE__, "ssl_loader_open: %s", ssl_last_error()); return; }
    CHECK_OK(ssl_loader_start_epoch(l, 0, 0));
    const ssl_batch *bt;
    int got = 0;
    while ((bt = ssl_loader_next(l))) {
        for (int i = 0; i < bt->n; i++) CHECK(bt->ids[i] != 4, "the bad record was delivered");
        got += bt->n;
        ssl_loader_release(l, bt);
    }
    CHECK_EQ(got, 8);
    ssl_loader_stats s = ssl_loader_get_stats(l);
    CHECK(s.decode_failures >= 1, "decode failures counted: %lld", (long long)s.decode_failures);
    ssl_loader_close(l);
}

TEST(hostile_loader_jpeg_of_another_size_than_its_index) {
    /* smaller than the index says (the crop box, mapped with the index's
       size, fell outside the decoded rows: a fatal assertion), then larger */
    size_t n;
    uint8_t *j = make_jpeg(24, 20, &n);
    epoch_replaces_record_4(jpeg_pack_with("hostile-smaller.ssl", j, n, 64, 48));
    epoch_replaces_record_4(jpeg_pack_with("hostile-larger.ssl", j, n, 16, 12));
    /* the same size in one side only */
    epoch_replaces_record_4(jpeg_pack_with("hostile-taller.ssl", j, n, 24, 40));
    /* pack verify names it too */
    char *out = NULL;
    CHECK_EQ(run_pack(&out, "verify %s", test_tmp("hostile-smaller.ssl")), 1);
    CHECK_CONTAINS(out, "BAD sample 4");
    free(out);
    free(j);
}

/* The JPEG with its frame header's height and width set to h x w. */
static void jpeg_claim_size(uint8_t *b, size_t n, int w, int h) {
    size_t sof = jpeg_marker(b, n, 0xC0);
    SSL_ASSERT(sof, "no SOF0 marker");
    b[sof + 5] = (uint8_t)(h >> 8), b[sof + 6] = (uint8_t)h;
    b[sof + 7] = (uint8_t)(w >> 8), b[sof + 8] = (uint8_t)w;
}

TEST(hostile_pixel_limit_on_every_decode_path) {
    /* 1 KB claiming 65500x65500 pixels: refused from the header by the
       region decode (the loader's) as by ssl_decode */
    size_t n;
    uint8_t *j = make_jpeg(40, 30, &n);
    jpeg_claim_size(j, n, 65500, 65500);
    ssl_buf out = {0, 0};
    int w, h, c, ox, oy, sw, sh;
    double t0 = ssl_now();
    CHECK_ERR(ssl_decode_region(j, n, 3, 16, 16, 0, 0, 4000, 4000, &out, &w, &h, &c, &ox, &oy, &sw, &sh), "over the limit");
    CHECK_ERR(ssl_decode_at_least(j, n, 3, 16, 16, &out, &w, &h, &c), "over the limit");
    CHECK_ERR(ssl_decode(j, n, 3, &out, &w, &h, &c), "over the limit");
    CHECK_ERR(ssl_image_info(j, n, &w, &h, &c, NULL), "over the limit");
    double dt = ssl_now() - t0;
    CHECK(dt < 0.05, "refusing took %.3f s", dt);
    /* the loader: reported, replaced, counted */
    epoch_replaces_record_4(jpeg_pack_with("hostile-huge.ssl", j, n, 65500, 65500));
    /* a BMP header claiming 20000 x 20000 */
    uint8_t bmp[54] = {'B', 'M'};
    put32(bmp + 2, sizeof bmp), put32(bmp + 10, 54), put32(bmp + 14, 40);
    put32(bmp + 18, 20000), put32(bmp + 22, 20000);
    bmp[26] = 1, bmp[28] = 24;
    CHECK_ERR(ssl_image_info(bmp, sizeof bmp, &w, &h, &c, NULL), "over the limit");
    ssl_buf_free(&out);
    free(j);
}

TEST(hostile_bad_jpeg_does_not_poison_the_next_on_its_thread) {
    /* 7 bytes that stop libjpeg-turbo part-way through a header */
    static const uint8_t bad[7] = {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x03, 0x00};
    size_t n;
    uint8_t *j = make_jpeg(40, 30, &n);
    ssl_buf out = {0, 0};
    int w, h, c, ox, oy, sw, sh;
    /* one buffer for both, as ./pack reads file after file into one */
    uint8_t *buf = malloc(n);
#define BAD (memcpy(buf, bad, sizeof bad), buf), sizeof bad
#define GOOD (memcpy(buf, j, n), buf), n
    for (int round = 0; round < 2; round++) {
        CHECK(ssl_image_info(BAD, &w, &h, &c, NULL) != 0, "the 7-byte file was accepted");
        CHECK_OK(ssl_image_info(GOOD, &w, &h, &c, NULL));
        CHECK(ssl_decode(BAD, 3, &out, &w, &h, &c) != 0, "the 7-byte file decoded");
        CHECK_OK(ssl_decode(GOOD, 3, &out, &w, &h, &c));
        CHECK(w == 40 && h == 30, "decoded %dx%d", w, h);
        CHECK(ssl_decode_at_least(BAD, 3, 8, 8, &out, &w, &h, &c) != 0, "the 7-byte file decoded");
        CHECK_OK(ssl_decode_at_least(GOOD, 3, 8, 8, &out, &w, &h, &c));
        CHECK(ssl_decode_region(BAD, 3, 8, 8, 0, 0, 8, 8, &out, &w, &h, &c, &ox, &oy, &sw, &sh) != 0,
              "the 7-byte file decoded");
        CHECK_OK(ssl_decode_region(GOOD, 3, 8, 8, 0, 0, 8, 8, &out, &w, &h, &c, &ox, &oy, &sw, &sh));
    }
#undef BAD
#undef GOOD
    free(buf);
    /* ./pack of a folder: the bad file (sorted first) is a counted skip,
       the good ones after it on the same thread are all packed */
    const char *dir = test_tmp("hostile-folder");
    char path[SSL_STR + 64];
    snprintf(path, sizeof path, "%s/cls", dir);
    CHECK_OK(test_mkdirs(path));
    snprintf(path, sizeof path, "%s/cls/0bad.jpg", dir);
    CHECK_OK(test_write(path, bad, sizeof bad));
    for (int i = 1; i <= 4; i++) {
        snprintf(path, sizeof path, "%s/cls/%dgood.jpg", dir, i);
        CHECK_OK(test_write(path, j, n));
    }
    const char *pk = test_tmp("hostile-folder.ssl");
    char *o = NULL;
    CHECK_EQ(run_pack(&o, "%s %s threads=1 force=1 quiet=1", dir, pk), 0);
    free(o);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(pk, &p));
    if (p.map) {
        CHECK_EQ(p.h.num_samples, 4);
        ssl_pack_close(&p);
    }
    CHECK_EQ(run_pack(&o, "verify %s threads=1", pk), 0);
    CHECK_CONTAINS(o, "0 bad");
    free(o);
    ssl_buf_free(&out);
    free(j);
}

/* The JPEG without its DQT segments (quantization tables), in a new buffer. */
static uint8_t *jpeg_without_dqt(const uint8_t *b, size_t n, size_t *out_n) {
    uint8_t *o = malloc(n);
    size_t i = 2, k = 2;
    memcpy(o, b, 2);
    while (i + 4 <= n && b[i] == 0xFF && b[i + 1] != 0xDA) {
        size_t len = 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
        if (b[i + 1] != 0xDB) memcpy(o + k, b + i, len), k += len;
        i += len;
    }
    memcpy(o + k, b + i, n - i);
    *out_n = k + n - i;
    return o;
}

TEST(hostile_jpeg_without_its_tables_never_borrows_an_earlier_ones) {
    /* libjpeg keeps the tables one image defines for the next: a JPEG
       without quantization tables decoded with those of the JPEG decoded
       before it on the thread, and failed on a fresh thread (pack verify
       passed records that training's workers then replaced) */
    size_t n, sn;
    uint8_t *j = make_jpeg(40, 30, &n), *s = jpeg_without_dqt(j, n, &sn);
    CHECK(sn < n, "no DQT segment removed");
    ssl_buf out = {0, 0};
    int w, h, c, ox, oy, sw, sh;
    CHECK_OK(ssl_decode(j, n, 3, &out, &w, &h, &c));
    CHECK_ERR(ssl_decode(s, sn, 3, &out, &w, &h, &c), "not defined");
    CHECK_OK(ssl_decode_at_least(j, n, 3, 8, 8, &out, &w, &h, &c));
    CHECK_ERR(ssl_decode_at_least(s, sn, 3, 8, 8, &out, &w, &h, &c), "not defined");
    CHECK_OK(ssl_decode_region(j, n, 3, 8, 8, 0, 0, 8, 8, &out, &w, &h, &c, &ox, &oy, &sw, &sh));
    CHECK_ERR(ssl_decode_region(s, sn, 3, 8, 8, 0, 0, 8, 8, &out, &w, &h, &c, &ox, &oy, &sw, &sh), "not defined");
    ssl_buf_free(&out);
    free(s);
    free(j);
}

#ifdef SSL_TURBOJPEG
TEST(hostile_jpeg_error_after_a_warning_is_an_error) {
    /* a progressive JPEG with junk before its second scan (a warning:
       extraneous data) and that scan naming Huffman table 15 (an error):
       TurboJPEG reports such an error as a warning, and an image none of
       whose rows had been written passed for a whole one */
    uint8_t px[40 * 30 * 3];
    for (size_t k = 0; k < sizeof px; k++) px[k] = (uint8_t)(k * 13 + k / 120);
    tjhandle t = tjInitCompress();
    unsigned char *j = NULL;
    unsigned long n = 0;
    CHECK(tjCompress2(t, px, 40, 0, 30, TJPF_RGB, &j, &n, TJSAMP_444, 90, TJFLAG_PROGRESSIVE) == 0, "%s", tjGetErrorStr2(t));
    tjDestroy(t);
    if (!j) return;
    size_t sos1 = jpeg_marker(j, n, 0xDA), sos2 = 0;
    for (size_t k = sos1 + 2; k + 1 < n && !sos2; k++)
        if (j[k] == 0xFF && j[k + 1] == 0xDA) sos2 = k;
    CHECK(sos1 && sos2, "scans at %zu, %zu", sos1, sos2);
    uint8_t *b = malloc(n + 8);
    memcpy(b, j, sos2);
    memset(b + sos2, 0x5A, 8);
    memcpy(b + sos2 + 8, j + sos2, n - sos2);
    b[sos2 + 8 + 6] = 0xFF;
    ssl_buf out = {0, 0};
    int w, h, c, ox, oy, sw, sh;
    CHECK_ERR(ssl_decode(b, n + 8, 3, &out, &w, &h, &c), "not defined");
    CHECK_ERR(ssl_decode(b, n + 8, 0, &out, &w, &h, &c), "not defined");
    CHECK_ERR(ssl_decode_at_least(b, n + 8, 3, 8, 8, &out, &w, &h, &c), "not defined");
    CHECK_ERR(ssl_decode_region(b, n + 8, 3, 8, 8, 0, 0, 8, 8, &out, &w, &h, &c, &ox, &oy, &sw, &sh), "not defined");
    /* the junk alone is a warning: the image decodes */
    b[sos2 + 8 + 6] = j[sos2 + 6];
    CHECK_OK(ssl_decode(b, n + 8, 3, &out, &w, &h, &c));
    ssl_buf_free(&out);
    free(b);
    tjFree(j);
}
#endif

TEST(hostile_idx_labels_that_do_not_match_the_images) {
    /* ./pack named the label count in its error after freeing the labels */
    uint8_t im[16 + 2 * 2 * 2] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
    uint8_t lb[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 0, 1};
    char images[SSL_STR], labels[SSL_STR];
    snprintf(images, sizeof images, "%s", test_tmp("hostile-images-idx3-ubyte"));
    snprintf(labels, sizeof labels, "%s", test_tmp("hostile-labels-idx1-ubyte"));
    CHECK_OK(test_write(images, im, sizeof im));
    CHECK_OK(test_write(labels, lb, sizeof lb));
    char *out = NULL;
    CHECK_EQ(run_pack(&out, "%s %s labels=%s force=1", images, test_tmp("hostile-idx.ssl"), labels), 1);
    CHECK_CONTAINS(out, "holds 3 labels for 2 images");
    free(out);
}

TEST(hostile_safetensors_shape_product_past_2_64) {
    const char *js = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}";
    uint8_t b[256];
    uint64_t hl = strlen(js);
    memcpy(b, &hl, 8);
    memcpy(b + 8, js, hl);
    const char *path = test_tmp("hostile-wrap.safetensors");
    CHECK_OK(test_write(path, b, 8 + hl));
    ssl_tfile f;
    CHECK_ERR(ssl_safetensors_read(path, &f), "absurd shape");
    /* three sides whose product wraps to 2^64 + 4: 16 bytes would match */
    js = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,4611686018427387904,1],\"data_offsets\":[0,0]}}";
    hl = strlen(js);
    memcpy(b, &hl, 8);
    memcpy(b + 8, js, hl);
    CHECK_OK(test_write(path, b, 8 + hl));
    CHECK_ERR(ssl_safetensors_read(path, &f), "absurd shape");
}

typedef struct {
    int64_t bs;
    char name[SSL_STR];
} hostile_cfg;
static const ssl_opt hostile_opts[] = {
    SSL_OPT_I(hostile_cfg, bs, "256", 1, 65536, "batch size"),
    SSL_OPT_S(hostile_cfg, name, "x", "a name"),
};

TEST(hostile_config_long_lines_are_never_split) {
    /* a comment as long as the old line buffer, then "bs=7" exactly where
       the buffer ended: the tail was parsed as an option */
    size_t pad = SSL_STR + 255;
    char *text = malloc(pad + 64);
    text[0] = '#';
    memset(text + 1, 'a', pad - 1);
    strcpy(text + pad, "bs=7\nname=kept\n");
    const char *path = test_tmp("hostile.cfg");
    CHECK_OK(test_write(path, text, strlen(text)));
    hostile_cfg c;
    ssl_config_defaults(hostile_opts, 2, &c);
    CHECK_OK(ssl_config_load_file(hostile_opts, 2, &c, path));
    CHECK_EQ(c.bs, 256);
    CHECK(!strcmp(c.name, "kept"), "name = '%s'", c.name);
    /* an option line over the limit is an error naming the line */
    strcpy(text, "bs=3\nname=");
    memset(text + 10, 'x', pad);
    strcpy(text + 10 + pad, "bs=9\n");
    CHECK_OK(test_write(path, text, strlen(text)));
    ssl_config_defaults(hostile_opts, 2, &c);
    CHECK_ERR(ssl_config_load_file(hostile_opts, 2, &c, path), "hostile.cfg:2");
    CHECK_CONTAINS(ssl_last_error(), "over the limit");
    CHECK_EQ(c.bs, 3);
    /* a NUL byte hides the rest of a line from strlen */
    memcpy(text, "#x\0bs=5\n", 8);
    CHECK_OK(test_write(path, text, 8));
    ssl_config_defaults(hostile_opts, 2, &c);
    CHECK_ERR(ssl_config_load_file(hostile_opts, 2, &c, path), "NUL byte");
    CHECK_EQ(c.bs, 256);
    free(text);
}

TEST(hostile_formats_outside_jpeg_png_bmp_are_refused) {
    int w, h, c;
    /* 19 bytes of TGA header that stb_image reads as 40968x87 */
    static const uint8_t tga[19] = {0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0xA0, 87, 0, 24, 0, 0x80};
    CHECK_ERR(ssl_image_info(tga, sizeof tga, &w, &h, &c, NULL), "not a recognised image");
    static const uint8_t gif[16] = "GIF89a\x10\x00\x10\x00\x00\x00\x00;";
    CHECK_ERR(ssl_image_info(gif, sizeof gif, &w, &h, &c, NULL), "not a recognised image");
    /* a JPEG behind an extra fill byte: stb's JPEG reader took it (and with
       it, its Huffman table bugs); no JPEG reaches stb where libjpeg-turbo
       decodes JPEGs, and elsewhere only after ssl__jpeg_check */
    size_t n;
    uint8_t *j = make_jpeg(40, 30, &n), *f = malloc(n + 1);
    f[0] = 0xFF;
    memcpy(f + 1, j, n);
    CHECK_ERR(ssl_image_info(f, n + 1, &w, &h, &c, NULL), "not a recognised image");
    /* a BMP still reads */
    uint8_t bmp[54 + 4 * 2] = {'B', 'M'};
    put32(bmp + 2, sizeof bmp), put32(bmp + 10, 54), put32(bmp + 14, 40);
    put32(bmp + 18, 1), put32(bmp + 22, 2);
    bmp[26] = 1, bmp[28] = 24;
    CHECK_OK(ssl_image_info(bmp, sizeof bmp, &w, &h, &c, NULL));
    CHECK(w == 1 && h == 2 && c == 3, "BMP read as %dx%dx%d", w, h, c);
    free(f);
    free(j);
}

TEST(hostile_png_empty_idat_before_any_data) {
    /* stb_image 2.27 copies an empty first IDAT chunk to a null pointer
       (undefined; the sanitizer builds stop there) */
    uint8_t px[4 * 3 * 3] = {0};
    ssl_buf png = {0, 0};
    size_t n;
    CHECK_OK(ssl_encode_png(px, 4, 3, 3, &png, &n));
    const uint8_t *p = png.p;
    size_t idat = 8;
    while (idat + 8 <= n && memcmp(p + idat + 4, "IDAT", 4))
        idat += 12 + ((size_t)p[idat] << 24 | (size_t)p[idat + 1] << 16 | (size_t)p[idat + 2] << 8 | p[idat + 3]);
    CHECK(idat + 8 <= n, "no IDAT chunk");
    uint8_t *b = malloc(n + 12);
    memcpy(b, p, idat);
    memcpy(b + idat, "\0\0\0\0IDAT", 8);
    put32(b + idat + 8, 0); /* CRC, unchecked */
    memcpy(b + idat + 12, p + idat, n - idat);
    int w, h, c;
    CHECK_ERR(ssl_image_info(b, n + 12, &w, &h, &c, NULL), "empty IDAT");
    /* the file cut right after that chunk's length and type (stb reads the
       missing CRC as zeros) */
    CHECK_ERR(ssl_image_info(b, idat + 8, &w, &h, &c, NULL), "empty IDAT");
    /* after the data, an empty IDAT is harmless and allowed */
    CHECK_OK(ssl_image_info(p, n, &w, &h, &c, NULL));
    free(b);
    ssl_buf_free(&png);
}

TEST(hostile_jpeg_tables_checked_before_stb) {
    /* valid JPEGs pass: baseline colour, gray, progressive, CIFAR's */
    size_t n;
    uint8_t *j = make_jpeg(40, 30, &n);
    CHECK_OK(ssl__jpeg_check(j, n));
#ifdef SSL_TURBOJPEG
    {
        uint8_t px[33 * 17 * 3];
        for (size_t k = 0; k < sizeof px; k++) px[k] = (uint8_t)(k * 7);
        tjhandle t = tjInitCompress();
        for (int v = 0; v < 2; v++) {
            unsigned char *buf = NULL;
            unsigned long len = 0;
            CHECK(tjCompress2(t, px, 33, 0, 17, v ? TJPF_GRAY : TJPF_RGB, &buf, &len, v ? TJSAMP_GRAY : TJSAMP_444, 80,
                              TJFLAG_PROGRESSIVE) == 0, "%s", tjGetErrorStr2(t));
            if (buf) CHECK_OK(ssl__jpeg_check(buf, len));
            tjFree(buf);
        }
        tjDestroy(t);
    }
#endif
    int cifar = 0;
    DIR *d = opendir(test_data("cifar10/test/cat"));
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[SSL_STR + 300];
        snprintf(p, sizeof p, "%s/%s", test_data("cifar10/test/cat"), e->d_name);
        size_t m;
        uint8_t *b = slurp(p, &m);
        if (b && ssl__jpeg_check(b, m) != 0) test_fail(__FILE__, __LINE__, "%s: %s", p, ssl_last_error());
        free(b);
        cifar++;
    }
    if (d) closedir(d);
    CHECK(cifar >= 40, "%d CIFAR JPEGs checked", cifar);
    /* a Huffman table whose code counts sum to 304 */
    uint8_t dht[4 + 2 + 17 + 304 + 2] = {0xFF, 0xD8, 0xFF, 0xC4, (2 + 17 + 304) >> 8, (2 + 17 + 304) & 255, 0x00};
    memset(dht + 7, 19, 16);
    dht[sizeof dht - 2] = 0xFF, dht[sizeof dht - 1] = 0xD9;
    CHECK_ERR(ssl__jpeg_check(dht, sizeof dht), "Huffman table with 304 codes");
    /* a scan naming table 2, never defined */
    uint8_t *s = malloc(n);
    memcpy(s, j, n);
    size_t sos = jpeg_marker(s, n, 0xDA);
    CHECK(sos > 0, "no SOS marker");
    if (sos) {
        s[sos + 6] = 0x22;
        CHECK_ERR(ssl__jpeg_check(s, n), "not defined before it");
        s[sos + 6] = 0x00;
        CHECK_OK(ssl__jpeg_check(s, n));
    }
    /* no quantization tables: stb would dequantize with uninitialised memory */
    size_t qn;
    uint8_t *q = jpeg_without_dqt(j, n, &qn);
    CHECK_ERR(ssl__jpeg_check(q, qn), "quantization table that is not defined");
    free(q);
    /* the same behind junk and fill bytes, the way stb skips them */
    uint8_t junk[] = {0xFF, 0xD8, 0x12, 0x34, 0xFF, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0xFF, 0xD9};
    CHECK_ERR(ssl__jpeg_check(junk, sizeof junk), "not defined before it");
    /* a segment running past the end */
    uint8_t trunc[] = {0xFF, 0xD8, 0xFF, 0xC4, 0x01, 0x00, 0x00};
    CHECK_ERR(ssl__jpeg_check(trunc, sizeof trunc), "runs past the end");
    free(s);
    free(j);
}

/* Crash inputs the fuzzers found, kept as files: each is refused by its
   reader, or read, and nothing crashes (tests/fixtures/hostile/). */
TEST(hostile_fuzzer_finds_are_refused) {
    char dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", "tests/fixtures/hostile");
    DIR *d = opendir(dir);
    if (!d) { test_skip("no tests/fixtures/hostile (run from the repository root)"); return; }
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[SSL_STR + 300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        size_t n;
        uint8_t *b = slurp(p, &n);
        if (!b) continue;
        files++;
        int w, h, c;
        ssl_buf out = {0, 0};
        if (strstr(e->d_name, ".ssl")) {
            /* as pack verify reads it; where verify passes every record,
               the loader must load every one */
            ssl_pack pk;
            if (ssl_pack_open(p, &pk) == 0) {
                int bad = 0;
                for (uint64_t i = 0; i < pk.h.num_samples; i++)
                    bad += ssl_pack_check_record(&pk, i) != 0 || ssl_pack_decode(&pk, i, 0, &out, &w, &h, &c) != 0;
                int small = pk.h.num_samples >= 2 && pk.h.num_samples <= 16;
                ssl_pack_close(&pk);
                if (!bad && small) {
                    ssl_loader_config lc;
                    ssl_loader_config_init(&lc, p, "simclr", 16, 2);
                    lc.threads = 1;
                    ssl_loader *l = ssl_loader_open(&lc);
                    if (l && ssl_loader_start_epoch(l, 0, 0) == 0) {
                        const ssl_batch *bt;
                        while ((bt = ssl_loader_next(l))) ssl_loader_release(l, bt);
                        ssl_loader_stats st = ssl_loader_get_stats(l);
                        CHECK(st.decode_failures == 0, "%s: verify passes, the loader replaced %lld", p,
                              (long long)st.decode_failures);
                    }
                    if (l) ssl_loader_close(l);
                }
            }
        } else if (strstr(e->d_name, ".safetensors")) {
            ssl_tfile f;
            if (ssl_safetensors_read(p, &f) == 0) ssl_tfile_free(&f);
        } else if (strstr(e->d_name, ".sslt")) {
            ssl_tfile f;
            if (ssl_tfile_read(p, &f) == 0) ssl_tfile_free(&f);
        } else {
            if (ssl_decode(b, n, 0, &out, &w, &h, &c) == 0) CHECK(w > 0 && h > 0, "%s", p);
        }
        ssl_buf_free(&out);
        free(b);
    }
    closedir(d);
    CHECK(files >= 3, "%d files", files);
}
