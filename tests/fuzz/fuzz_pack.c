/* A pack, read as ./pack verify and the loader read it: opened (every size
   and offset checked), each record's CRC checked and decoded to the size
   its index gives, each JPEG record's loader decode (DCT-scaled, only the
   rows and columns of a crop box) and the crop resampled from it (the
   first 64 records); a pack of 2 to 16 records that all pass is then
   loaded for one epoch by the real loader, which must not fail on any
   record verify passed.

   The harness fixes up what the fuzzer cannot guess: the header's file
   size, each index entry's record CRC (when the entry points inside the
   file), the index and string-table CRCs, the header CRC. */
#include "fuzz.h"

static uint32_t crc_of(const uint8_t *b, size_t n, uint64_t off, uint64_t len) {
    return off <= n && len <= n - off ? ssl_crc32(0, b + off, (size_t)len) : 0;
}

static void fix_up(uint8_t *b, size_t n) {
    if (n < SSL_PACK_HEADER_SIZE) return;
    fuzz_put64(b + 72, n);
    uint64_t samples = fuzz_get64(b + 16), index = fuzz_get64(b + 48);
    uint64_t strings = fuzz_get64(b + 56), ssize = fuzz_get64(b + 64);
    if (index <= n && samples <= (n - index) / 32) {
        for (uint64_t i = 0; i < samples; i++) {
            uint8_t *e = b + index + 32 * i;
            uint64_t off = fuzz_get64(e);
            uint32_t size = fuzz_get32(e + 8);
            if (off <= n && size <= n - off) fuzz_put32(e + 24, ssl_crc32(0, b + off, size));
        }
        fuzz_put32(b + 84, crc_of(b, n, index, samples * 32));
    }
    fuzz_put32(b + 88, crc_of(b, n, strings, ssize));
    fuzz_put32(b + 124, ssl_crc32(0, b, 124));
}

/* the loader's decode of record i and one crop of it, as ssl__load_sample */
static void loader_decode(const ssl_pack *p, uint64_t i, ssl_buf *dec, ssl_buf *rs) {
    const ssl_pack_rec *e = &p->index[i];
    if (e->encoding != SSL_ENC_JPEG) return;
    size_t n;
    const uint8_t *rec = ssl_pack_record(p, i, &n);
    double x0 = e->width / 4.0, y0 = e->height / 3.0, x1 = e->width, y1 = e->height * 0.9;
    int need = 8 + (int)(e->crc % 24), w, h, c, ox, oy, sw, sh;
    if (ssl__decode_region_sized(rec, n, 3, need, need, x0, y0, x1, y1, e->width, e->height, dec, &w, &h, &c, &ox, &oy,
                                 &sw, &sh) != 0)
        return;
    double fx = (double)sw / e->width, fy = (double)sh / e->height;
    uint8_t out[16 * 16 * 3];
    if (ssl__resample_fast_at((const uint8_t *)dec->p, w, h, 3, ox, oy, x0 * fx, y0 * fy, (x1 - x0) * fx, (y1 - y0) * fy,
                              out, 16, 16, rs) != 0)
        ssl__resample_gain((const uint8_t *)dec->p, w, h, 3, x0 * fx - ox, y0 * fy - oy, (x1 - x0) * fx, (y1 - y0) * fy,
                           out, NULL, 16, 16, SSL_FILTER_BILINEAR, 1.0f, rs);
}

static void one_epoch(const char *path) {
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", 16, 2);
    c.threads = 1;
    ssl_loader *l = ssl_loader_open(&c);
    if (!l) return;
    if (ssl_loader_start_epoch(l, 0, 0) == 0) {
        const ssl_batch *b;
        while ((b = ssl_loader_next(l))) ssl_loader_release(l, b);
        ssl_loader_stats s = ssl_loader_get_stats(l);
        /* a record verify passes must load */
        if (s.decode_failures) __builtin_trap();
    }
    ssl_loader_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    ssl_pack p;
    if (fuzz_file_fixed(data, size, fix_up, &path) != 0 || ssl_pack_open(path, &p) != 0) return 0;
    ssl_buf dec = {0, 0}, rs = {0, 0};
    uint64_t n = p.h.num_samples < 64 ? p.h.num_samples : 64, bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        int w, h, c;
        (void)ssl_pack_source(&p, i);
        if (ssl_pack_check_record(&p, i) != 0 || ssl_pack_decode(&p, i, 0, &dec, &w, &h, &c) != 0) bad++;
        loader_decode(&p, i, &dec, &rs);
    }
    ssl_buf_free(&dec);
    ssl_buf_free(&rs);
    uint64_t samples = p.h.num_samples;
    ssl_pack_close(&p);
    if (!bad && samples >= 2 && samples <= 16) one_epoch(path);
    return 0;
}
