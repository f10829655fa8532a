/* Writes the fuzzers' seed corpora, tests/fuzz/corpus/<harness>/ (a few
   tiny valid files each; committed). `make fuzz-seeds` builds and runs it
   from the repository root. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

#include <sys/stat.h>
#ifdef SSL_TURBOJPEG
#include <turbojpeg.h>
#endif

static const char *root = "tests/fuzz/corpus";

static void put(const char *harness, const char *name, const void *b, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, harness);
    mkdir(root, 0755);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", root, harness, name);
    SSL_ASSERT(ssl_write_file_atomic(p, b, n) == 0, "%s", ssl_last_error());
}

static void put_file(const char *harness, const char *name, const char *from) {
    uint8_t *b;
    size_t n;
    SSL_ASSERT(ssl_read_file(from, &b, &n) == 0, "%s", ssl_last_error());
    put(harness, name, b, n);
    free(b);
}

/* a w x h x c image of a smooth pattern */
static uint8_t *pattern(int w, int h, int c) {
    uint8_t *px = (uint8_t *)malloc((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) px[((size_t)y * w + x) * c + k] = (uint8_t)(x * 9 + y * 5 + k * 70);
    return px;
}

int main(void) {
    ssl_buf jpg = {0, 0}, jgray = {0, 0}, png = {0, 0}, pgray = {0, 0};
    size_t nj, njg, np, npg;
    uint8_t *rgb = pattern(12, 9, 3), *gray = pattern(8, 8, 1);
    SSL_ASSERT(ssl_encode_jpeg(rgb, 12, 9, 3, 75, &jpg, &nj) == 0, "jpeg");
    SSL_ASSERT(ssl_encode_jpeg(gray, 8, 8, 1, 75, &jgray, &njg) == 0, "jpeg");
    SSL_ASSERT(ssl_encode_png(rgb, 12, 9, 3, &png, &np) == 0, "png");
    SSL_ASSERT(ssl_encode_png(gray, 8, 8, 1, &pgray, &npg) == 0, "png");
    put("image", "rgb.jpg", jpg.p, nj);
    put("image", "gray.jpg", jgray.p, njg);
    put("image", "rgb.png", png.p, np);
    put("image", "gray.png", pgray.p, npg);
    /* a 2x2 24-bit BMP */
    uint8_t bmp[54 + 2 * 8] = {'B', 'M', sizeof bmp, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 24};
    for (int k = 54; k < (int)sizeof bmp; k++) bmp[k] = (uint8_t)(k * 37);
    put("image", "rgb.bmp", bmp, sizeof bmp);
    put("image_stb", "rgb.jpg", jpg.p, nj);
    put("image_stb", "gray.jpg", jgray.p, njg);
    put("image_stb", "rgb.png", png.p, np);
    static const uint8_t cut[7] = {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x03, 0x00}; /* stops a header part-way */
    put("image", "cut.jpg", cut, sizeof cut);
#ifdef SSL_TURBOJPEG
    {   /* progressive: DC and AC scans, refinements, tables between scans */
        tjhandle t = tjInitCompress();
        unsigned char *b = NULL;
        unsigned long len = 0;
        SSL_ASSERT(tjCompress2(t, rgb, 12, 0, 9, TJPF_RGB, &b, &len, TJSAMP_420, 75, TJFLAG_PROGRESSIVE) == 0, "jpeg");
        put("image", "progressive.jpg", b, len);
        put("image_stb", "progressive.jpg", b, len);
        tjFree(b);
        tjDestroy(t);
    }
#endif

    /* a pack of four records: raw RGB, JPEG RGB, JPEG gray, PNG */
    const char *tmp = "tests/fuzz/corpus/.seed.ssl";
    ssl_pack_writer *w = ssl_pack_writer_open(tmp, 1, 0);
    SSL_ASSERT(w, "%s", ssl_last_error());
    SSL_ASSERT(ssl_pack_writer_add(w, rgb, 4 * 3 * 3, 4, 3, 3, SSL_ENC_RAW, 0, "a/raw") == 0, "add");
    SSL_ASSERT(ssl_pack_writer_add(w, jpg.p, nj, 12, 9, 3, SSL_ENC_JPEG, 1, "b/rgb.jpg") == 0, "add");
    SSL_ASSERT(ssl_pack_writer_add(w, jgray.p, njg, 8, 8, 1, SSL_ENC_JPEG, 0, "a/gray.jpg") == 0, "add");
    SSL_ASSERT(ssl_pack_writer_add(w, png.p, np, 12, 9, 3, SSL_ENC_PNG, 1, "b/rgb.png") == 0, "add");
    const char *cls[2] = {"a", "b"};
    SSL_ASSERT(ssl_pack_writer_finish(w, cls, 2, SSL_STORE_AUTO, 0) == 0, "%s", ssl_last_error());
    put_file("pack", "four.ssl", tmp);
    remove(tmp);

    /* tensor files: two tensors and metadata */
    float t0[6] = {1, 2, 3, 4, 5, 6};
    int64_t t1[1] = {7};
    ssl_tentry e[2];
    memset(e, 0, sizeof e);
    e[0].name = "layer1.0.conv1.weight", e[0].dtype = SSL_F32, e[0].ndim = 2, e[0].dims[0] = 2, e[0].dims[1] = 3;
    e[0].data = t0, e[0].nbytes = sizeof t0;
    e[1].name = "steps", e[1].dtype = SSL_I64, e[1].ndim = 0, e[1].data = t1, e[1].nbytes = sizeof t1;
    tmp = "tests/fuzz/corpus/.seed.t";
    SSL_ASSERT(ssl_tfile_write(tmp, e, 2, "{\"arch\":\"resnet18\"}") == 0, "%s", ssl_last_error());
    put_file("sslt", "two.sslt", tmp);
    SSL_ASSERT(ssl_safetensors_write(tmp, e, 2, "{\"format\":\"pt\"}") == 0, "%s", ssl_last_error());
    put_file("safetensors", "two.safetensors", tmp);
    remove(tmp);

    const char *cfg = "# a config file\nepochs = 30\nwd=0.5\n\namp=0\n  out = run one\noptimizer=sgd\n";
    put("config", "options.cfg", cfg, strlen(cfg));
    const char *bad = "epochs=70000\n";
    put("config", "range.cfg", bad, strlen(bad));

    free(rgb), free(gray);
    ssl_buf_free(&jpg), ssl_buf_free(&jgray), ssl_buf_free(&png), ssl_buf_free(&pgray);
    return 0;
}
