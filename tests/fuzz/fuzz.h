/* fuzz.h - what the libFuzzer harnesses of tests/fuzz/ share.

   Each harness is one reader of ssl.h fed the fuzzer's bytes as a file:
   the bytes go to an in-memory file (memfd) and the reader opens it by
   its /proc/self/fd path, as it would open any path. A reader may refuse
   the input; it must never crash, read or write out of bounds, overflow,
   leak, or stop the process (SSL_ASSERT aborts, so a check reached by
   bad input is a finding). Built by `make fuzz` with clang's
   -fsanitize=fuzzer,address,undefined. */
#ifndef SSL_FUZZ_H
#define SSL_FUZZ_H
#define _GNU_SOURCE /* memfd_create */
#define SSL_IMPLEMENTATION
#include "ssl.h"

#include <sys/mman.h>
#include <unistd.h>

/* The bytes as a file; its path in *path (a static buffer). -1 on failure. */
static int fuzz_file(const uint8_t *data, size_t size, const char **path) {
    static char p[64];
    static int fd = -1;
    if (fd < 0) fd = memfd_create("fuzz", 0);
    if (fd < 0 || ftruncate(fd, 0) != 0) return -1;
    for (size_t off = 0; off < size;) {
        ssize_t k = pwrite(fd, data + off, size - off, (off_t)off);
        if (k <= 0) return -1;
        off += (size_t)k;
    }
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    *path = p;
    return 0;
}

/* fuzz_file of a copy of the bytes that fix_up (if not NULL) has changed */
static int fuzz_file_fixed(const uint8_t *data, size_t size, void (*fix_up)(uint8_t *, size_t), const char **path) {
    uint8_t *b = (uint8_t *)malloc(size ? size : 1);
    memcpy(b, data, size);
    if (fix_up) fix_up(b, size);
    /* FUZZ_DUMP=FILE: the input as the reader saw it (a crash input made
       into a test fixture) */
    const char *dump = getenv("FUZZ_DUMP");
    if (dump) (void)ssl_write_file_atomic(dump, b, size);
    int rc = fuzz_file(b, size, path);
    free(b);
    return rc;
}

/* A tensor file that was read: each tensor's bytes are all there (touched
   as its shape says) and its name finds it. Traps otherwise. */
static void fuzz_check_tensors(const ssl_tfile *f) {
    for (int i = 0; i < f->count; i++) {
        const ssl_tentry *e = &f->entries[i];
        if ((uint64_t)ssl_tentry_numel(e) * ssl_dtype_size(e->dtype) != e->nbytes) __builtin_trap();
        volatile uint8_t s = 0;
        for (size_t k = 0; k < e->nbytes; k += 64) s ^= ((const uint8_t *)e->data)[k];
        if (e->nbytes) s ^= ((const uint8_t *)e->data)[e->nbytes - 1];
        if (ssl_tfile_find(f, e->name) == NULL) __builtin_trap();
    }
}

static uint32_t fuzz_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t fuzz_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void fuzz_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void fuzz_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

#endif
