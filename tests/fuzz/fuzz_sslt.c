/* An SSLT tensor file (checkpoints, fixtures) through ssl_tfile_read. The
   harness fixes up each tensor's data CRC (where the layout can be walked)
   and the file CRC at the end. */
#include "fuzz.h"

static void fix_up(uint8_t *b, size_t n) {
    if (n < 24) return;
    const uint8_t *end = b + n - 4;
    uint8_t *p = b + 20;
    uint32_t count = fuzz_get32(b + 12), ml = fuzz_get32(b + 16);
    if (ml > (size_t)(end - p)) goto file;
    p += ml;
    for (uint32_t i = 0; i < count && i < 4096; i++) {
        if (end - p < 4) break;
        uint32_t nl = fuzz_get32(p);
        p += 4;
        if ((size_t)(end - p) < (size_t)nl + 8) break;
        p += nl;
        uint32_t ndim = fuzz_get32(p + 4);
        p += 8;
        if (ndim > 8 || (size_t)(end - p) < 8u * ndim + 12) break;
        p += 8u * ndim;
        uint64_t nb = fuzz_get64(p);
        p += 8;
        if (nb > (uint64_t)(end - p - 4)) break;
        fuzz_put32(p, ssl_crc32(0, p + 4, (size_t)nb));
        p += 4 + nb;
    }
file:
    fuzz_put32(b + n - 4, ssl_crc32(0, b, n - 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    ssl_tfile f;
    if (fuzz_file_fixed(data, size, fix_up, &path) != 0 || ssl_tfile_read(path, &f) != 0) return 0;
    fuzz_check_tensors(&f);
    ssl_tfile_free(&f);
    return 0;
}
