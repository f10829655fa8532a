/* Basics: CRC32, the RNG, the config table, SSLT files, parallel-for, the
   resampler. */
#include "test.h"

TEST(crc32_known_values) {
    CHECK_EQ(ssl_crc32(0, "123456789", 9), 0xCBF43926u); /* the CRC-32 check value */
    CHECK_EQ(ssl_crc32(0, "", 0), 0);
    /* incremental == one shot, across the 8-byte fast path */
    const char *s = "The quick brown fox jumps over the lazy dog";
    CHECK_EQ(ssl_crc32(0, s, strlen(s)), 0x414FA339u);
    CHECK_EQ(ssl_crc32(ssl_crc32(0, s, 13), s + 13, strlen(s) - 13), 0x414FA339u);
}

TEST(philox_known_answers) {
    /* Random123's known-answer vectors for philox4x32-10 */
    ssl_u32x4 c = {{0, 0, 0, 0}};
    ssl_u32x4 o = ssl_philox(c, 0, 0);
    CHECK_EQ(o.v[0], 0x6627e8d5u); CHECK_EQ(o.v[1], 0xe169c58du);
    CHECK_EQ(o.v[2], 0xbc57ac4cu); CHECK_EQ(o.v[3], 0x9b00dbd8u);
    ssl_u32x4 f = {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
    o = ssl_philox(f, 0xffffffffu, 0xffffffffu);
    CHECK_EQ(o.v[0], 0x408f276du); CHECK_EQ(o.v[1], 0x41c83b0eu);
    CHECK_EQ(o.v[2], 0xa20bc7c6u); CHECK_EQ(o.v[3], 0x6d5451fdu);
    ssl_u32x4 p = {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    o = ssl_philox(p, 0xa4093822u, 0x299f31d0u);
    CHECK_EQ(o.v[0], 0xd16cfe09u); CHECK_EQ(o.v[1], 0x94fdccebu);
    CHECK_EQ(o.v[2], 0x5001e420u); CHECK_EQ(o.v[3], 0x24126ea1u);
}

TEST(rng_streams) {
    /* same key, same numbers; any key field changed, different numbers */
    ssl_rng a = ssl_rng_make(42, 3, 1000, 1, SSL_RNG_CROP), b = ssl_rng_make(42, 3, 1000, 1, SSL_RNG_CROP);
    for (int i = 0; i < 10; i++) CHECK_EQ(ssl_rng_u32(&a), ssl_rng_u32(&b));
    uint32_t base = ssl_rng_u32(&a);
    (void)base;
    uint32_t first[6];
    ssl_rng k[6] = {ssl_rng_make(42, 3, 1000, 1, SSL_RNG_CROP), ssl_rng_make(43, 3, 1000, 1, SSL_RNG_CROP),
                    ssl_rng_make(42, 4, 1000, 1, SSL_RNG_CROP), ssl_rng_make(42, 3, 1001, 1, SSL_RNG_CROP),
                    ssl_rng_make(42, 3, 1000, 2, SSL_RNG_CROP), ssl_rng_make(42, 3, 1000, 1, SSL_RNG_FLIP)};
    for (int i = 0; i < 6; i++) first[i] = ssl_rng_u32(&k[i]);
    for (int i = 1; i < 6; i++) CHECK(first[i] != first[0], "key field %d did not change the stream", i);
    /* moments of 200k draws */
    ssl_rng r = ssl_rng_make(7, 0, 0, 0, 0);
    double s = 0, s2 = 0, n1 = 0, n2 = 0;
    int N = 200000, below_ok = 1;
    for (int i = 0; i < N; i++) {
        double u = ssl_rng_uniform(&r);
        if (u < 0 || u >= 1) below_ok = 0;
        s += u; s2 += u * u;
        double z = ssl_rng_normal(&r);
        n1 += z; n2 += z * z;
        if (ssl_rng_below(&r, 7) >= 7) below_ok = 0;
    }
    CHECK(below_ok, "a draw fell outside its range");
    CHECK_NEAR(s / N, 0.5, 0.003);
    CHECK_NEAR(s2 / N - (s / N) * (s / N), 1.0 / 12, 0.002);
    CHECK_NEAR(n1 / N, 0.0, 0.01);
    CHECK_NEAR(n2 / N, 1.0, 0.015);
}

typedef struct {
    int64_t bs;
    double lr;
    int flag;
    char name[SSL_STR], opt[SSL_STR];
} demo_cfg;
static const ssl_opt demo_opts[] = {
    SSL_OPT_I(demo_cfg, bs, "256", 1, 65536, "batch size"),
    SSL_OPT_F(demo_cfg, lr, "0.3", 0, 100, "learning rate"),
    SSL_OPT_B(demo_cfg, flag, "0", "a flag"),
    SSL_OPT_S(demo_cfg, name, "x", "a name"),
    SSL_OPT_C(demo_cfg, opt, "lars", "sgd|lars|adamw", "optimizer"),
};
#define NDEMO 5

TEST(config_table) {
    demo_cfg c;
    ssl_config_defaults(demo_opts, NDEMO, &c);
    CHECK_EQ(c.bs, 256);
    CHECK_NEAR(c.lr, 0.3, 0);
    CHECK(!strcmp(c.opt, "lars"));
    char *argv[] = {"word", "bs=512", "lr=1e-3", "flag=true", "opt=adamw", "name=hello world"};
    const char *pos[2];
    int np = 0;
    CHECK_OK(ssl_config_parse(demo_opts, NDEMO, &c, 6, argv, pos, 2, &np));
    CHECK_EQ(np, 1);
    CHECK(!strcmp(pos[0], "word"));
    CHECK_EQ(c.bs, 512);
    CHECK_NEAR(c.lr, 1e-3, 1e-12);
    CHECK_EQ(c.flag, 1);
    CHECK(!strcmp(c.name, "hello world"));
    /* errors name the key, the value and what is accepted */
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "bs", "0"), "expected an integer in [1, 65536]");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "bs", "12x"), "'12x' is not an integer");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "lr", "nan"), "bad value for 'lr'");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "opt", "adam"), "one of sgd|lars|adamw");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "flag", "maybe"), "0 or 1");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "lrr", "1"), "did you mean 'lr'?");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "nmae", "1"), "did you mean 'name'?");
    CHECK_ERR(ssl_config_set(demo_opts, NDEMO, &c, "zzzzzzzz", "1"), "unknown option 'zzzzzzzz'");
    char *bad[] = {"a", "b", "c"};
    CHECK_ERR(ssl_config_parse(demo_opts, NDEMO, &c, 3, bad, pos, 2, &np), "unexpected argument 'c'");
    /* a config file of the same lines */
    const char *path = test_tmp("demo.cfg");
    const char *text = "# comment\n  bs = 64\nlr=0.5\n\nopt = sgd\n";
    CHECK_OK(test_write(path, text, strlen(text)));
    char arg[SSL_STR + 16];
    snprintf(arg, sizeof arg, "config=%s", path);
    char *argv2[] = {arg, "bs=32"}; /* later arguments win */
    CHECK_OK(ssl_config_parse(demo_opts, NDEMO, &c, 2, argv2, pos, 0, &np));
    CHECK_EQ(c.bs, 32);
    CHECK_NEAR(c.lr, 0.5, 0);
    CHECK(!strcmp(c.opt, "sgd"));
    const char *bad_text = "bs=64\nwarmpu=3\n";
    CHECK_OK(test_write(path, bad_text, strlen(bad_text)));
    CHECK_ERR(ssl_config_parse(demo_opts, NDEMO, &c, 1, argv2, pos, 0, &np), "demo.cfg:2: unknown option 'warmpu'");
    /* dump and JSON */
    char buf[4096];
    ssl_config_dump(demo_opts, NDEMO, &c, buf, sizeof buf);
    CHECK_CONTAINS(buf, "bs=64\nlr=0.5\n");
    ssl_config_json(demo_opts, NDEMO, &c, buf, sizeof buf);
    CHECK_CONTAINS(buf, "{\"bs\":64,\"lr\":0.5,\"flag\":1,\"name\":\"hello world\",\"opt\":\"sgd\"}");
}

TEST(tensor_file_roundtrip_and_corruption) {
    float a[6] = {1, -2, 3.5f, 0, 1e-30f, 7};
    uint8_t b[3] = {0, 128, 255};
    ssl_tentry e[2] = {{"w/a", SSL_F32, 2, {2, 3}, a, sizeof a}, {"b", SSL_U8, 1, {3}, b, sizeof b}};
    const char *path = test_tmp("t.sslt");
    CHECK_OK(ssl_tfile_write(path, e, 2, "meta text"));
    ssl_tfile f;
    CHECK_OK(ssl_tfile_read(path, &f));
    CHECK_EQ(f.count, 2);
    CHECK(!strcmp(f.meta, "meta text"));
    const ssl_tentry *x = ssl_tfile_find(&f, "w/a");
    CHECK(x && x->ndim == 2 && x->dims[0] == 2 && x->dims[1] == 3 && x->dtype == SSL_F32);
    CHECK(x && !memcmp(x->data, a, sizeof a));
    CHECK(ssl_tfile_find(&f, "nope") == NULL);
    /* flip one byte of the data: refused, naming the file */
    uint8_t *bytes = malloc(f.size);
    size_t n = f.size;
    memcpy(bytes, f.bytes, n);
    ssl_tfile_free(&f);
    bytes[n - 8] ^= 0x10;
    CHECK_OK(test_write(path, bytes, n));
    CHECK_ERR(ssl_tfile_read(path, &f), "checksum mismatch");
    CHECK_ERR(ssl_tfile_read(path, &f), "t.sslt");
    bytes[n - 8] ^= 0x10;
    CHECK_OK(test_write(path, bytes, n - 5)); /* truncated */
    CHECK_ERR(ssl_tfile_read(path, &f), "truncated or corrupt");
    free(bytes);
    CHECK_ERR(ssl_tfile_read(test_tmp("does-not-exist.sslt"), &f), "cannot open");
}

static void sum_fn(void *ctx, int64_t i, int w) {
    _Atomic int64_t *s = ctx;
    atomic_fetch_add(s, i);
    (void)w;
}
TEST(parallel_for_visits_each_index_once) {
    for (int threads = 1; threads <= 5; threads += 2) {
        _Atomic int64_t s;
        atomic_init(&s, 0);
        ssl_parallel_for(100001, threads, sum_fn, &s);
        CHECK_EQ(atomic_load(&s), 100001LL * 100000 / 2);
    }
}

TEST(resample_basics) {
    ssl_buf scratch = {0, 0};
    /* 4x4 gray -> 2x2 box: exact 2x2 means (rounded half up) */
    uint8_t src[16] = {0, 2, 10, 20, 4, 6, 30, 40, 100, 101, 7, 7, 102, 103, 7, 8};
    uint8_t dst[4];
    ssl_resample(src, 4, 4, 1, 0, 0, 4, 4, dst, NULL, 2, 2, SSL_FILTER_BOX, &scratch);
    CHECK_EQ(dst[0], 3); CHECK_EQ(dst[1], 25); CHECK_EQ(dst[2], 102); CHECK_EQ(dst[3], 7);
    /* same size is the identity for both filters */
    uint8_t big[7 * 5 * 3], out[7 * 5 * 3];
    for (int i = 0; i < (int)sizeof big; i++) big[i] = (uint8_t)(i * 37 % 251);
    for (int f = 0; f < 2; f++) {
        ssl_resample(big, 7, 5, 3, 0, 0, 7, 5, out, NULL, 7, 5, (ssl_filter)f, &scratch);
        CHECK(!memcmp(big, out, sizeof big), "filter %d is not the identity at scale 1", f);
    }
    /* a constant image stays constant, enlarging and shrinking, any box */
    uint8_t flat[40 * 30 * 3];
    memset(flat, 77, sizeof flat);
    float fo[23 * 61 * 3];
    ssl_resample(flat, 40, 30, 3, 3.5, 2.25, 31, 20.5, NULL, fo, 61, 23, SSL_FILTER_BILINEAR, &scratch);
    float mx = 0;
    for (int i = 0; i < 23 * 61 * 3; i++) mx = fmaxf(mx, fabsf(fo[i] - 77));
    CHECK_NEAR(mx, 0, 1e-4);
    ssl_resample(flat, 40, 30, 3, 0, 0, 40, 30, NULL, fo, 7, 3, SSL_FILTER_BILINEAR, &scratch);
    mx = 0;
    for (int i = 0; i < 7 * 3 * 3; i++) mx = fmaxf(mx, fabsf(fo[i] - 77));
    CHECK_NEAR(mx, 0, 1e-4);
    /* a horizontal ramp enlarged 2x bilinear: interior samples interpolate */
    uint8_t ramp[4] = {0, 100, 200, 250};
    float r8[8];
    ssl_resample(ramp, 4, 1, 1, 0, 0, 4, 1, NULL, r8, 8, 1, SSL_FILTER_BILINEAR, &scratch);
    CHECK_NEAR(r8[0], 0, 1e-4);   /* clamped edge */
    CHECK_NEAR(r8[1], 25, 1e-4);  /* centre 0.75: 0.75*0 + 0.25*100 */
    CHECK_NEAR(r8[2], 75, 1e-4);
    CHECK_NEAR(r8[7], 250, 1e-4);
    ssl_buf_free(&scratch);
}

/* The usage example at the top of ssl.h is a whole program: extracted
   (the lines indented 7 spaces after "USAGE.", up to the next paragraph)
   and compiled against this ssl.h, so that it cannot drift from the API. */
TEST(usage_example_in_ssl_h_compiles) {
    uint8_t *h;
    size_t n;
    CHECK_OK(ssl_read_file("ssl.h", &h, &n));
    if (!h) return;
    const char *start = strstr((const char *)h, "   USAGE.");
    CHECK(start != NULL, "ssl.h has no USAGE block");
    if (!start) { free(h); return; }
    const char *src = test_tmp("usage.c");
    FILE *f = fopen(src, "w");
    CHECK(f != NULL, "cannot write %s", src);
    int lines = 0;
    const char *p = strchr(start, '\n') + 1;
    while (f && *p) { /* skip the block's own text, then take the code */
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int code = len >= 7 && !strncmp(p, "       ", 7), blank = len == 0;
        if (!code && !blank && lines > 0) break; /* the next paragraph */
        if (code) fprintf(f, "%.*s\n", (int)(len - 7), p + 7), lines++;
        else if (blank && lines > 0) fputc('\n', f);
        if (!e) break;
        p = e + 1;
    }
    if (f) fclose(f);
    free(h);
    CHECK(lines >= 20, "only %d lines of code in the USAGE block", lines);
    char *out;
    int rc = test_runf(&out, NULL, "cc -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers "
                                    "-I. -c %s -o %s 2>&1", src, test_tmp("usage.o"));
    CHECK(rc == 0, "the USAGE example does not compile: %s", out);
    free(out);
}
