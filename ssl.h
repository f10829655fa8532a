/* ssl.h - joint-embedding self-supervised learning in one header.

   Do this:
       #define SSL_IMPLEMENTATION
   before you include this file in *one* C file to create the implementation.
   Everything else includes it as a plain header. CUDA kernels live in ssl.cu,
   which includes this header for the declarations and the shared math.

   Build flags the implementation understands (the Makefile sets them from
   what it finds):
       SSL_TURBOJPEG   decode/encode JPEG with libjpeg-turbo (else stb_image)
       SSL_CUDA        link the CUDA backend from ssl.cu
       SSL_STATIC      make every public function static

   TABLE OF CONTENTS (sections appear in this order, in the order data flows)
       1. Basics        errors, allocation, timing, logging, progress, CRC32,
                        thread pool, the config table, tensor files (SSLT)
       2. RNG           counter-based Philox4x32-10, keyed by
                        (seed, epoch, sample, view, op)
       3. Pack format   .ssl writer (streaming, atomic) and reader (mmap,
                        validated)
       4. Decode        JPEG (libjpeg-turbo or stb_image), PNG and friends
                        (stb_image), raw records zero-copy; encoders; the
                        resampler shared by packing and cropping
       5. Augment       (issue: loader)
       6. Loader        (issue: loader)
       7. Tensors, ops  (issue: engine)
       8. Models        (issue: engine)
       9. Losses        (issue: engine)
      10. Optimizers    (issue: engine)
      11. Train step, checkpoints, distributed (issue: engine)

   ERRORS. On bad external input (a file, a config value, an image) a
   function returns a negative number or NULL and leaves a message readable
   with ssl_last_error() (per thread). Broken internal invariants and CUDA
   failures stop the program with file, line and the reason.

   THE PACK FILE (.ssl), all little-endian, fixed-width:
       header   128 bytes at offset 0 (see ssl_pack_header below)
       records  the samples' bytes, back to back, in index order, starting at
                data_offset; neighbours in the index are neighbours on disk
       index    num_samples entries of 32 bytes at index_offset (8-aligned)
       strings  class names then (flag SSL_PACK_HAS_PATHS) one source path
                per sample, each NUL-terminated, at strings_offset
   The README has the field table and a 30-line Python reader.
*/
#ifndef SSL_H
#define SSL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __CUDACC__
#define SSL_HD __host__ __device__
#else
#define SSL_HD
#endif

#ifndef SSLDEF
#ifdef SSL_STATIC
#define SSLDEF static
#else
#define SSLDEF extern
#endif
#endif

#define SSL_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* ========================================================================
   1. Basics
   Owns: error messages, allocation that names what it allocates, clocks,
   log lines, the progress line, CRC32, a parallel-for, the config table
   that every program's options come from, and the SSLT tensor file used
   by fixtures and checkpoints.
   ======================================================================== */

/* The message of the last failure on this thread ("" if none). */
SSLDEF const char *ssl_last_error(void);
/* Sets the message (printf-style) and returns -1, for `return ssl__fail(..)`. */
SSLDEF int ssl__fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Prefixes the current message: "ctx: old message". Returns -1. */
SSLDEF int ssl__fail_ctx(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Internal invariant broken: print file:line and the message, abort. */
SSLDEF void ssl__die(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4), noreturn))
#endif
    ;
#define SSL_ASSERT(cond, ...) \
    do { if (!(cond)) ssl__die(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* malloc/calloc/realloc that stop with "out of memory: N bytes for WHAT". */
SSLDEF void *ssl_malloc(size_t n, const char *what);
SSLDEF void *ssl_calloc(size_t n, const char *what);
SSLDEF void *ssl_realloc(void *p, size_t n, const char *what);

/* A growable byte buffer: scratch space reused across calls, so the steady
   state allocates nothing. */
typedef struct { void *p; size_t cap; } ssl_buf;
SSLDEF void *ssl_buf_reserve(ssl_buf *b, size_t n);
SSLDEF void ssl_buf_free(ssl_buf *b);

SSLDEF double ssl_now(void); /* monotonic seconds */

/* Log lines go to stderr; verbosity 0 = warnings only, 1 = info (default). */
SSLDEF void ssl_set_verbosity(int v);
SSLDEF void ssl_info(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
SSLDEF void ssl_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Progress line for long work: "label 1200/60000 (2.0%) 5400/s ETA 11s".
   Redraws in place on a terminal, prints a line every `every` seconds
   otherwise. */
typedef struct {
    const char *label;
    int64_t total;
    double t0, last, every;
    int tty;
} ssl_progress;
SSLDEF void ssl_progress_start(ssl_progress *p, const char *label, int64_t total);
SSLDEF void ssl_progress_update(ssl_progress *p, int64_t done);
SSLDEF void ssl_progress_end(ssl_progress *p, int64_t done);
SSLDEF void ssl_format_duration(double seconds, char *out, size_t cap);

/* CRC-32 as zlib computes it (poly 0xEDB88320). Start with crc = 0. */
SSLDEF uint32_t ssl_crc32(uint32_t crc, const void *data, size_t n);

/* Runs fn(ctx, i, worker) for i in [0, n) on `threads` threads (0 = all
   cores). Work is handed out in chunks from a shared counter. */
typedef void (*ssl_for_fn)(void *ctx, int64_t i, int worker);
SSLDEF void ssl_parallel_for(int64_t n, int threads, ssl_for_fn fn, void *ctx);
SSLDEF int ssl_num_cores(void);

/* Writes `bytes` to `path` atomically: path.tmp.PID, fsync, rename. */
SSLDEF int ssl_write_file_atomic(const char *path, const void *bytes, size_t n);
/* Reads a whole file; *out is malloc'd (caller frees). */
SSLDEF int ssl_read_file(const char *path, uint8_t **out, size_t *n);

/* ---- the config table ----------------------------------------------------
   Every option of every program is one row: name, type, default, range or
   choices, help, and where it lives in the program's config struct. The
   same rows parse key=value arguments and config files, print the usage
   and the run's configuration, and are saved in checkpoints and logs.
   Storage by type: INT int64_t, FLOAT double, BOOL int, STR and CHOICE
   char[SSL_STR]. */
#define SSL_STR 1024
typedef enum { SSL_OPT_INT, SSL_OPT_FLOAT, SSL_OPT_BOOL, SSL_OPT_STR, SSL_OPT_CHOICE } ssl_opt_type;
typedef struct {
    const char *name;
    ssl_opt_type type;
    const char *def;     /* default, as it would be typed */
    double min, max;     /* INT and FLOAT: accepted range */
    const char *choices; /* CHOICE: "a|b|c" */
    const char *help;
    size_t offset;       /* offsetof(config struct, field) */
} ssl_opt;
#define SSL_OPT_I(S, f, def, lo, hi, help) { #f, SSL_OPT_INT, def, lo, hi, NULL, help, offsetof(S, f) }
#define SSL_OPT_F(S, f, def, lo, hi, help) { #f, SSL_OPT_FLOAT, def, lo, hi, NULL, help, offsetof(S, f) }
#define SSL_OPT_B(S, f, def, help) { #f, SSL_OPT_BOOL, def, 0, 1, NULL, help, offsetof(S, f) }
#define SSL_OPT_S(S, f, def, help) { #f, SSL_OPT_STR, def, 0, 0, NULL, help, offsetof(S, f) }
#define SSL_OPT_C(S, f, def, choices, help) { #f, SSL_OPT_CHOICE, def, 0, 0, choices, help, offsetof(S, f) }

SSLDEF void ssl_config_defaults(const ssl_opt *t, int n, void *cfg);
/* Sets one option; errors name the key, the value and what is accepted
   (and, for an unknown key, the nearest valid one). */
SSLDEF int ssl_config_set(const ssl_opt *t, int n, void *cfg, const char *key, const char *value);
/* Parses argv: key=value pairs, `config=FILE` (lines of key=value, '#'
   comments), and up to max_pos positional words returned in pos[]. */
SSLDEF int ssl_config_parse(const ssl_opt *t, int n, void *cfg, int argc, char **argv,
                            const char **pos, int max_pos, int *npos);
SSLDEF int ssl_config_load_file(const ssl_opt *t, int n, void *cfg, const char *path);
SSLDEF void ssl_config_usage(FILE *f, const ssl_opt *t, int n);
SSLDEF void ssl_config_print(FILE *f, const ssl_opt *t, int n, const void *cfg);
/* "key=value\n" lines (for checkpoints) or one JSON object (for logs).
   Return the length written (truncated to cap-1). */
SSLDEF size_t ssl_config_dump(const ssl_opt *t, int n, const void *cfg, char *out, size_t cap);
SSLDEF size_t ssl_config_json(const ssl_opt *t, int n, const void *cfg, char *out, size_t cap);

/* ---- SSLT tensor files ---------------------------------------------------
   Named n-d arrays with dtype and shape, each with a CRC32, plus a text
   `meta`. Fixtures (written by tests/sslt.py) and checkpoints use it.
     header: "SSLTNSR\0" u32 version=1 u32 count u32 meta_len, meta bytes
     record: u32 name_len, name, u32 dtype, u32 ndim, u64 dims[ndim],
             u64 nbytes, u32 crc32(data), data
     trailer: u32 crc32 of every byte before it */
typedef enum { SSL_F32 = 0, SSL_U8 = 1, SSL_I32 = 2, SSL_F64 = 3, SSL_I64 = 4, SSL_BF16 = 5 } ssl_dtype;
SSLDEF size_t ssl_dtype_size(int dtype);
SSLDEF const char *ssl_dtype_name(int dtype);
#define SSL_MAX_DIMS 8
typedef struct {
    const char *name;
    int dtype, ndim;
    int64_t dims[SSL_MAX_DIMS];
    const void *data;
    size_t nbytes;
} ssl_tentry;
typedef struct {
    uint8_t *bytes; /* the whole file */
    size_t size;
    char *meta;     /* NUL-terminated copy */
    int count;
    ssl_tentry *entries;
    char **names;
} ssl_tfile;
SSLDEF int ssl_tfile_write(const char *path, const ssl_tentry *e, int count, const char *meta);
SSLDEF int ssl_tfile_read(const char *path, ssl_tfile *f);
SSLDEF const ssl_tentry *ssl_tfile_find(const ssl_tfile *f, const char *name);
SSLDEF void ssl_tfile_free(ssl_tfile *f);
SSLDEF int64_t ssl_tentry_numel(const ssl_tentry *e);

/* ========================================================================
   2. RNG
   Owns: every random number of the pipeline and the trainer. Philox4x32-10
   (Salmon et al., SC'11) is a pure function of a 128-bit counter and a
   64-bit key: here key = seed, counter = (epoch, sample, view<<16 | op,
   block). A random choice therefore depends only on what it is for, never
   on which thread drew it or what was drawn before, so results are the
   same with 1 thread or 16 and a resumed run sees what it would have seen.
   Host and device share this code (SSL_HD).
   ======================================================================== */
typedef struct { uint32_t v[4]; } ssl_u32x4;

static inline SSL_HD uint32_t ssl__mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32 with 10 rounds. */
static inline SSL_HD ssl_u32x4 ssl_philox(ssl_u32x4 ctr, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = ssl__mulhilo(0xD2511F53u, ctr.v[0], &hi0);
        uint32_t lo1 = ssl__mulhilo(0xCD9E8D57u, ctr.v[2], &hi1);
        ssl_u32x4 n;
        n.v[0] = hi1 ^ ctr.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ ctr.v[3] ^ k1;
        n.v[3] = lo0;
        ctr = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return ctr;
}

/* A stream of numbers for one purpose. Draw as many as you need. */
typedef struct {
    uint32_t key[2];
    uint32_t ctr[3];
    uint32_t block;
    uint32_t buf[4];
    int left;
} ssl_rng;

/* op codes name what a stream is for; new ops get new numbers. */
enum {
    SSL_RNG_ORDER = 1, SSL_RNG_CROP, SSL_RNG_FLIP, SSL_RNG_JITTER, SSL_RNG_GRAY,
    SSL_RNG_BLUR, SSL_RNG_SOLARIZE, SSL_RNG_NOISE, SSL_RNG_REPLACE, SSL_RNG_INIT,
    SSL_RNG_DROPOUT, SSL_RNG_SPLIT
};

static inline SSL_HD ssl_rng ssl_rng_make(uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view, uint32_t op) {
    ssl_rng r;
    r.key[0] = (uint32_t)seed;
    r.key[1] = (uint32_t)(seed >> 32);
    r.ctr[0] = epoch;
    r.ctr[1] = sample;
    r.ctr[2] = (view << 16) | (op & 0xFFFFu);
    r.block = 0;
    r.left = 0;
    r.buf[0] = r.buf[1] = r.buf[2] = r.buf[3] = 0;
    return r;
}

static inline SSL_HD uint32_t ssl_rng_u32(ssl_rng *r) {
    if (r->left == 0) {
        ssl_u32x4 c;
        c.v[0] = r->ctr[0]; c.v[1] = r->ctr[1]; c.v[2] = r->ctr[2]; c.v[3] = r->block++;
        ssl_u32x4 o = ssl_philox(c, r->key[0], r->key[1]);
        r->buf[0] = o.v[0]; r->buf[1] = o.v[1]; r->buf[2] = o.v[2]; r->buf[3] = o.v[3];
        r->left = 4;
    }
    return r->buf[4 - r->left--];
}

/* Uniform in [0, 1), 24 bits. */
static inline SSL_HD float ssl_rng_uniform(ssl_rng *r) {
    return (float)(ssl_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}
/* Uniform in [lo, hi). */
static inline SSL_HD float ssl_rng_range(ssl_rng *r, float lo, float hi) {
    return lo + (hi - lo) * ssl_rng_uniform(r);
}
/* Uniform integer in [0, n), n > 0 (multiply-shift; bias < n / 2^32). */
static inline SSL_HD uint32_t ssl_rng_below(ssl_rng *r, uint32_t n) {
    return (uint32_t)(((uint64_t)ssl_rng_u32(r) * n) >> 32);
}
/* Standard normal (Box-Muller, one value per two uniforms). */
static inline SSL_HD float ssl_rng_normal(ssl_rng *r) {
    float u1 = ((float)(ssl_rng_u32(r) >> 8) + 0.5f) * (1.0f / 16777216.0f);
    float u2 = ssl_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

/* ========================================================================
   3. Pack format
   Owns: the .ssl file. The writer streams records to a temporary file and
   renames it only when the index and strings are complete; the reader
   memory-maps it and checks every size and offset before it trusts one.
   ======================================================================== */
#define SSL_PACK_MAGIC "SSLPACK"   /* 8 bytes with the NUL */
#define SSL_PACK_VERSION 1
#define SSL_PACK_HEADER_SIZE 128
#define SSL_PACK_HAS_PATHS 1u       /* header flag */
#define SSL_PACK_DEFAULT_PAGE (4u << 20)

typedef enum { SSL_ENC_RAW = 0, SSL_ENC_JPEG = 1, SSL_ENC_PNG = 2, SSL_ENC_COUNT } ssl_encoding;
typedef enum { SSL_STORE_RAW = 0, SSL_STORE_JPEG = 1, SSL_STORE_PNG = 2, SSL_STORE_AUTO = 3 } ssl_store_mode;
SSLDEF const char *ssl_encoding_name(int enc);
SSLDEF const char *ssl_store_mode_name(int mode);

/* The header, decoded. On disk (offset: field):
     0 magic[8]  8 version u32  12 header_size u32  16 num_samples u64
    24 num_classes u32  28 store_mode u32  32 max_res u32  36 flags u32
    40 data_offset u64  48 index_offset u64  56 strings_offset u64
    64 strings_size u64  72 file_size u64  80 page_size u32  84 index_crc u32
    88 strings_crc u32  92 reserved[32]  124 header_crc u32 (of bytes 0..123) */
typedef struct {
    uint32_t version, header_size;
    uint64_t num_samples;
    uint32_t num_classes, store_mode, max_res, flags;
    uint64_t data_offset, index_offset, strings_offset, strings_size, file_size;
    uint32_t page_size, index_crc, strings_crc, header_crc;
} ssl_pack_header;

/* One index entry, exactly as on disk (32 bytes, naturally aligned). */
typedef struct {
    uint64_t offset;   /* of the record, from the start of the file */
    uint32_t size;     /* bytes */
    uint16_t width, height;
    uint8_t channels;  /* 1 or 3 */
    uint8_t encoding;  /* ssl_encoding */
    uint16_t flags;    /* reserved, 0 */
    uint32_t label;
    uint32_t crc;      /* CRC32 of the record's bytes */
    uint32_t reserved;
} ssl_pack_rec;

typedef struct {
    char path[SSL_STR];
    ssl_pack_header h;
    const uint8_t *map;
    size_t map_size;
    const ssl_pack_rec *index; /* points into the map: zero-copy */
    const char **class_names;  /* num_classes pointers into the map */
    const char *paths;         /* first source path, if HAS_PATHS */
} ssl_pack;

SSLDEF int ssl_pack_open(const char *path, ssl_pack *p);
SSLDEF void ssl_pack_close(ssl_pack *p);
/* The record's bytes inside the map. */
SSLDEF const uint8_t *ssl_pack_record(const ssl_pack *p, uint64_t i, size_t *size);
/* Source path of sample i, or "" when the pack has none (O(n) scan: for
   messages, not hot paths). */
SSLDEF const char *ssl_pack_source(const ssl_pack *p, uint64_t i);
/* Checks sample i's CRC; 0 if good, -1 with a message if not. */
SSLDEF int ssl_pack_check_record(const ssl_pack *p, uint64_t i);
/* Page of sample i: records are laid in index order, so a page is a run of
   consecutive samples whose bytes share one page_size-sized window. */
static inline uint64_t ssl_pack_page(const ssl_pack *p, uint64_t i) {
    return (p->index[i].offset - p->h.data_offset) / p->h.page_size;
}

typedef struct ssl_pack_writer ssl_pack_writer;
/* Opens `path.tmp.PID` for writing; fails if `path` exists and !force. */
SSLDEF ssl_pack_writer *ssl_pack_writer_open(const char *path, int force, uint32_t page_size);
/* Appends one record (channels 1 or 3; width/height <= 65535). path may be
   NULL; paths are stored only if every added record has one. */
SSLDEF int ssl_pack_writer_add(ssl_pack_writer *w, const void *bytes, size_t size, int width, int height,
                               int channels, int encoding, uint32_t label, const char *path);
/* Writes index, strings and header, fsyncs and renames into place. */
SSLDEF int ssl_pack_writer_finish(ssl_pack_writer *w, const char *const *class_names, int num_classes,
                                  int store_mode, int max_res);
/* Drops the temporary file (on error or interruption). */
SSLDEF void ssl_pack_writer_abort(ssl_pack_writer *w);
SSLDEF uint64_t ssl_pack_writer_count(const ssl_pack_writer *w);
SSLDEF uint64_t ssl_pack_writer_bytes(const ssl_pack_writer *w);

/* ========================================================================
   4. Decode
   Owns: turning bytes into pixels and back. JPEG goes through
   libjpeg-turbo when the build has it (SSL_TURBOJPEG), stb_image otherwise;
   every other format through stb_image. Pixels are uint8, interleaved
   (HWC), 1 or 3 channels. The resampler here is PIL's separable algorithm
   (box for area shrinking, triangle for antialiased bilinear), which is what
   torchvision's antialiased resize computes.
   ======================================================================== */
#define SSL_MAX_PIXELS (1u << 28) /* an image header claiming more is refused */
typedef enum { SSL_FMT_UNKNOWN = 0, SSL_FMT_JPEG, SSL_FMT_PNG, SSL_FMT_OTHER } ssl_format;

/* Reads only the header: format, size, channels (1 or 3 after conversion;
   alpha is dropped). Refuses empty input and absurd sizes. */
SSLDEF int ssl_image_info(const void *buf, size_t n, int *w, int *h, int *c, int *format);
/* Decodes to want_c channels (0 = keep: 1 for gray sources, else 3) into
   out (grown as needed). */
SSLDEF int ssl_decode(const void *buf, size_t n, int want_c, ssl_buf *out, int *w, int *h, int *c);
/* Decodes a pack record (raw records are copied; use ssl_pack_record for
   zero-copy access). */
SSLDEF int ssl_pack_decode(const ssl_pack *p, uint64_t i, int want_c, ssl_buf *out, int *w, int *h, int *c);
SSLDEF int ssl_encode_jpeg(const uint8_t *px, int w, int h, int c, int quality, ssl_buf *out, size_t *size);
SSLDEF int ssl_encode_png(const uint8_t *px, int w, int h, int c, ssl_buf *out, size_t *size);
/* Converts between 1 and 3 channels (ITU-R 601 luma for RGB->gray). */
SSLDEF void ssl_convert_channels(const uint8_t *src, int w, int h, int sc, uint8_t *dst, int dc);

typedef enum { SSL_FILTER_BOX = 0, SSL_FILTER_BILINEAR = 1 } ssl_filter;
/* Resamples the box (bx, by, bw, bh) of src (sw x sh x c, row stride
   sw*c) to dw x dh. Shrinking is antialiased (the filter widens with the
   scale). Output is uint8 (rounded) when dst_f32 is NULL, else float in
   [0, 255] without rounding. scratch is reused between calls. */
SSLDEF void ssl_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                         uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, ssl_buf *scratch);

#ifdef SSL_CUDA
/* ---- CUDA backend (ssl.cu) ---- */
SSLDEF int ssl_cuda_device_count(void);
SSLDEF int ssl_cuda_describe(int device, char *out, size_t cap);
/* Fills out[n] with ssl_rng_uniform draws of stream (seed, 0, i, 0, op) on
   the GPU: checks that device and host share the RNG. */
SSLDEF int ssl_cuda_rng_uniform(uint64_t seed, uint32_t op, float *out, int n);
#endif

#ifdef __cplusplus
}
#endif
#endif /* SSL_H */

/* ======================================================================== */
/*                            IMPLEMENTATION                                */
/* ======================================================================== */
#ifdef SSL_IMPLEMENTATION
#ifndef SSL_IMPLEMENTATION_DONE
#define SSL_IMPLEMENTATION_DONE

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ssl.h reads and writes its files as little-endian and assumes a little-endian host"
#endif
_Static_assert(sizeof(ssl_pack_rec) == 32, "index entry must be 32 bytes");

/* ---- 1. Basics ---------------------------------------------------------- */

static _Thread_local char ssl__err[2048];
static int ssl__verbosity = 1;

SSLDEF const char *ssl_last_error(void) { return ssl__err; }

SSLDEF int ssl__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ssl__err, sizeof ssl__err, fmt, ap);
    va_end(ap);
    return -1;
}

SSLDEF int ssl__fail_ctx(const char *fmt, ...) {
    char prefix[1024], old[sizeof ssl__err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ssl__err, sizeof old);
    size_t pl = strlen(prefix);
    if (pl + 2 >= sizeof ssl__err) pl = sizeof ssl__err - 3;
    memcpy(ssl__err, prefix, pl);
    ssl__err[pl] = ':';
    ssl__err[pl + 1] = ' ';
    size_t ol = strlen(old);
    if (pl + 2 + ol >= sizeof ssl__err) ol = sizeof ssl__err - pl - 3;
    memcpy(ssl__err + pl + 2, old, ol);
    ssl__err[pl + 2 + ol] = 0;
    return -1;
}

SSLDEF void ssl__die(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "ssl.h: fatal at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

SSLDEF void *ssl_malloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) ssl__die(__FILE__, __LINE__, "out of memory: %zu bytes for %s", n, what);
    return p;
}
SSLDEF void *ssl_calloc(size_t n, const char *what) {
    void *p = calloc(1, n ? n : 1);
    if (!p) ssl__die(__FILE__, __LINE__, "out of memory: %zu bytes for %s", n, what);
    return p;
}
SSLDEF void *ssl_realloc(void *q, size_t n, const char *what) {
    void *p = realloc(q, n ? n : 1);
    if (!p) ssl__die(__FILE__, __LINE__, "out of memory: %zu bytes for %s", n, what);
    return p;
}

SSLDEF void *ssl_buf_reserve(ssl_buf *b, size_t n) {
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < n) cap *= 2;
        free(b->p);
        b->p = ssl_malloc(cap, "scratch buffer");
        b->cap = cap;
    }
    return b->p;
}
SSLDEF void ssl_buf_free(ssl_buf *b) { free(b->p); b->p = NULL; b->cap = 0; }

SSLDEF double ssl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

SSLDEF void ssl_set_verbosity(int v) { ssl__verbosity = v; }

SSLDEF void ssl_info(const char *fmt, ...) {
    if (ssl__verbosity < 1) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
SSLDEF void ssl_warn(const char *fmt, ...) {
    va_list ap;
    fputs("warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

SSLDEF void ssl_format_duration(double s, char *out, size_t cap) {
    if (!(s >= 0) || s > 1e8) { snprintf(out, cap, "?"); return; }
    long t = (long)(s + 0.5);
    if (t < 60) snprintf(out, cap, "%lds", t);
    else if (t < 3600) snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
}

SSLDEF void ssl_progress_start(ssl_progress *p, const char *label, int64_t total) {
    p->label = label;
    p->total = total;
    p->t0 = p->last = ssl_now();
    p->tty = isatty(2);
    p->every = p->tty ? 0.25 : 5.0;
}

static void ssl__progress_print(ssl_progress *p, int64_t done, int final) {
    double t = ssl_now() - p->t0;
    double rate = t > 0 ? done / t : 0;
    char eta[32], el[32];
    ssl_format_duration(rate > 0 ? (p->total - done) / rate : -1, eta, sizeof eta);
    ssl_format_duration(t, el, sizeof el);
    fprintf(stderr, "%s%s %lld/%lld (%.1f%%) %.0f/s %s %s%s", p->tty ? "\r" : "", p->label, (long long)done,
            (long long)p->total, p->total ? 100.0 * done / p->total : 100.0, rate, final ? "in" : "ETA",
            final ? el : eta, p->tty && !final ? "   " : "\n");
}
SSLDEF void ssl_progress_update(ssl_progress *p, int64_t done) {
    double t = ssl_now();
    if (t - p->last < p->every || ssl__verbosity < 1) return;
    p->last = t;
    ssl__progress_print(p, done, 0);
}
SSLDEF void ssl_progress_end(ssl_progress *p, int64_t done) {
    if (ssl__verbosity >= 1) ssl__progress_print(p, done, 1);
}

/* CRC32, slicing-by-8: eight tables, eight bytes a step (~2 GB/s). */
static uint32_t ssl__crc_tab[8][256];
static pthread_once_t ssl__crc_once = PTHREAD_ONCE_INIT;
static void ssl__crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        ssl__crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            ssl__crc_tab[t][i] = (ssl__crc_tab[t - 1][i] >> 8) ^ ssl__crc_tab[0][ssl__crc_tab[t - 1][i] & 0xFF];
}
SSLDEF uint32_t ssl_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&ssl__crc_once, ssl__crc_init);
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= c;
        c = ssl__crc_tab[7][a & 0xFF] ^ ssl__crc_tab[6][(a >> 8) & 0xFF] ^ ssl__crc_tab[5][(a >> 16) & 0xFF] ^
            ssl__crc_tab[4][a >> 24] ^ ssl__crc_tab[3][b & 0xFF] ^ ssl__crc_tab[2][(b >> 8) & 0xFF] ^
            ssl__crc_tab[1][(b >> 16) & 0xFF] ^ ssl__crc_tab[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = ssl__crc_tab[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

SSLDEF int ssl_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    ssl_for_fn fn;
    void *ctx;
    int64_t n, chunk;
    _Atomic int64_t next;
} ssl__for_job;
typedef struct { ssl__for_job *job; int worker; } ssl__for_arg;

static void *ssl__for_worker(void *arg) {
    ssl__for_arg *a = (ssl__for_arg *)arg;
    ssl__for_job *j = a->job;
    for (;;) {
        int64_t s = atomic_fetch_add(&j->next, j->chunk);
        if (s >= j->n) break;
        int64_t e = s + j->chunk < j->n ? s + j->chunk : j->n;
        for (int64_t i = s; i < e; i++) j->fn(j->ctx, i, a->worker);
    }
    return NULL;
}

SSLDEF void ssl_parallel_for(int64_t n, int threads, ssl_for_fn fn, void *ctx) {
    if (threads <= 0) threads = ssl_num_cores();
    if (threads > n) threads = n > 0 ? (int)n : 1;
    ssl__for_job job;
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.chunk = n / (threads * 16) > 0 ? n / (threads * 16) : 1;
    atomic_init(&job.next, 0);
    if (threads == 1) {
        ssl__for_arg a = {&job, 0};
        ssl__for_worker(&a);
        return;
    }
    pthread_t *tid = (pthread_t *)ssl_malloc(sizeof(pthread_t) * threads, "threads");
    ssl__for_arg *args = (ssl__for_arg *)ssl_malloc(sizeof(ssl__for_arg) * threads, "thread args");
    for (int t = 0; t < threads; t++) {
        args[t].job = &job;
        args[t].worker = t;
        if (t > 0 && pthread_create(&tid[t], NULL, ssl__for_worker, &args[t]) != 0)
            ssl__die(__FILE__, __LINE__, "pthread_create failed: %s", strerror(errno));
    }
    ssl__for_worker(&args[0]);
    for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
    free(tid);
    free(args);
}

SSLDEF int ssl_write_file_atomic(const char *path, const void *bytes, size_t n) {
    char tmp[SSL_STR + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ssl__fail("cannot create '%s': %s", tmp, strerror(errno));
    int ok = fwrite(bytes, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        remove(tmp);
        return ssl__fail("cannot write '%s': %s", path, strerror(err));
    }
    return 0;
}

SSLDEF int ssl_read_file(const char *path, uint8_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ssl__fail("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ssl__fail("'%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size, got = 0;
    uint8_t *buf = (uint8_t *)ssl_malloc(size + 1, path);
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return ssl__fail("cannot read '%s': %s", path, r < 0 ? strerror(errno) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = 0;
    *out = buf;
    *n = size;
    return 0;
}

/* ---- the config table ---- */

static const ssl_opt *ssl__opt_find(const ssl_opt *t, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, key) == 0) return &t[i];
    return NULL;
}

static int ssl__edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1; /* transposition */
            d[i][j] = c;
        }
    return d[la][lb];
}

static void ssl__opt_accepts(const ssl_opt *o, char *out, size_t cap) {
    switch (o->type) {
    case SSL_OPT_INT: snprintf(out, cap, "an integer in [%.15g, %.15g]", o->min, o->max); break;
    case SSL_OPT_FLOAT: snprintf(out, cap, "a number in [%g, %g]", o->min, o->max); break;
    case SSL_OPT_BOOL: snprintf(out, cap, "0 or 1"); break;
    case SSL_OPT_STR: snprintf(out, cap, "a string shorter than %d bytes", SSL_STR); break;
    case SSL_OPT_CHOICE: snprintf(out, cap, "one of %s", o->choices); break;
    }
}

static int ssl__choice_ok(const char *choices, const char *v) {
    size_t lv = strlen(v);
    const char *s = choices;
    while (*s) {
        const char *e = strchr(s, '|');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l == lv && strncmp(s, v, l) == 0) return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

SSLDEF int ssl_config_set(const ssl_opt *t, int n, void *cfg, const char *key, const char *value) {
    const ssl_opt *o = ssl__opt_find(t, n, key);
    if (!o) {
        const char *best = NULL;
        int bd = 99;
        for (int i = 0; i < n; i++) {
            int d = ssl__edit_distance(key, t[i].name);
            if (d < bd) { bd = d; best = t[i].name; }
        }
        int limit = (int)strlen(key) / 3 > 2 ? (int)strlen(key) / 3 : 2;
        if (best && bd <= limit)
            return ssl__fail("unknown option '%s' (did you mean '%s'?); 'help' lists the options", key, best);
        return ssl__fail("unknown option '%s'; 'help' lists the options", key);
    }
    char acc[256];
    ssl__opt_accepts(o, acc, sizeof acc);
    char *dst = (char *)cfg + o->offset;
    char *end = NULL;
    switch (o->type) {
    case SSL_OPT_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (!*value || *end || errno) return ssl__fail("bad value for '%s': '%s' is not an integer (expected %s)", key, value, acc);
        if ((double)v < o->min || (double)v > o->max)
            return ssl__fail("bad value for '%s': %s is out of range (expected %s)", key, value, acc);
        int64_t x = v;
        memcpy(dst, &x, sizeof x);
        break;
    }
    case SSL_OPT_FLOAT: {
        double v = strtod(value, &end);
        if (!*value || *end || !isfinite(v)) return ssl__fail("bad value for '%s': '%s' is not a number (expected %s)", key, value, acc);
        if (v < o->min || v > o->max) return ssl__fail("bad value for '%s': %s is out of range (expected %s)", key, value, acc);
        memcpy(dst, &v, sizeof v);
        break;
    }
    case SSL_OPT_BOOL: {
        int v;
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on")) v = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off")) v = 0;
        else return ssl__fail("bad value for '%s': '%s' (expected %s)", key, value, acc);
        memcpy(dst, &v, sizeof v);
        break;
    }
    case SSL_OPT_CHOICE:
        if (!ssl__choice_ok(o->choices, value)) return ssl__fail("bad value for '%s': '%s' (expected %s)", key, value, acc);
        /* fall through */
    case SSL_OPT_STR:
        if (strlen(value) >= SSL_STR) return ssl__fail("bad value for '%s': too long (expected %s)", key, acc);
        strcpy(dst, value);
        break;
    }
    return 0;
}

SSLDEF void ssl_config_defaults(const ssl_opt *t, int n, void *cfg) {
    for (int i = 0; i < n; i++)
        if (ssl_config_set(t, n, cfg, t[i].name, t[i].def) != 0)
            ssl__die(__FILE__, __LINE__, "config table: default of '%s' is invalid: %s", t[i].name, ssl_last_error());
}

static int ssl__config_kv(const ssl_opt *t, int n, void *cfg, const char *arg, int depth);

SSLDEF int ssl_config_load_file(const ssl_opt *t, int n, void *cfg, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return ssl__fail("cannot open config file '%s': %s", path, strerror(errno));
    char line[SSL_STR + 256];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line, *e;
        while (*s == ' ' || *s == '\t') s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (!*s || *s == '#') continue;
        /* allow "key = value" */
        char kv[SSL_STR + 256];
        char *eq = strchr(s, '=');
        if (eq) {
            char *ke = eq;
            while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
            char *vs = eq + 1;
            while (*vs == ' ' || *vs == '\t') vs++;
            snprintf(kv, sizeof kv, "%.*s=%s", (int)(ke - s), s, vs);
        } else {
            snprintf(kv, sizeof kv, "%s", s);
        }
        if (ssl__config_kv(t, n, cfg, kv, 1) != 0) {
            fclose(f);
            return ssl__fail_ctx("%s:%d", path, lineno);
        }
    }
    fclose(f);
    return 0;
}

static int ssl__config_kv(const ssl_opt *t, int n, void *cfg, const char *arg, int depth) {
    const char *eq = strchr(arg, '=');
    if (!eq) return ssl__fail("expected key=value, got '%s'", arg);
    char key[128];
    size_t kl = (size_t)(eq - arg);
    if (kl == 0 || kl >= sizeof key) return ssl__fail("bad option name in '%s'", arg);
    memcpy(key, arg, kl);
    key[kl] = 0;
    if (strcmp(key, "config") == 0 && !ssl__opt_find(t, n, "config")) {
        if (depth > 0) return ssl__fail("config files cannot include other config files");
        return ssl_config_load_file(t, n, cfg, eq + 1);
    }
    return ssl_config_set(t, n, cfg, key, eq + 1);
}

SSLDEF int ssl_config_parse(const ssl_opt *t, int n, void *cfg, int argc, char **argv, const char **pos,
                            int max_pos, int *npos) {
    int np = 0;
    for (int i = 0; i < argc; i++) {
        if (!strchr(argv[i], '=')) {
            if (np >= max_pos) {
                if (max_pos == 0) return ssl__fail("unexpected argument '%s' (options are key=value)", argv[i]);
                return ssl__fail("unexpected argument '%s' (at most %d words before the key=value options)", argv[i], max_pos);
            }
            pos[np++] = argv[i];
            continue;
        }
        if (ssl__config_kv(t, n, cfg, argv[i], 0) != 0) return -1;
    }
    if (npos) *npos = np;
    return 0;
}

static void ssl__opt_value(const ssl_opt *o, const void *cfg, char *out, size_t cap) {
    const char *src = (const char *)cfg + o->offset;
    switch (o->type) {
    case SSL_OPT_INT: { int64_t v; memcpy(&v, src, sizeof v); snprintf(out, cap, "%lld", (long long)v); break; }
    case SSL_OPT_FLOAT: { double v; memcpy(&v, src, sizeof v); snprintf(out, cap, "%.10g", v); break; }
    case SSL_OPT_BOOL: { int v; memcpy(&v, src, sizeof v); snprintf(out, cap, "%d", v); break; }
    default: snprintf(out, cap, "%s", src); break;
    }
}

SSLDEF void ssl_config_usage(FILE *f, const ssl_opt *t, int n) {
    for (int i = 0; i < n; i++) {
        char acc[256];
        ssl__opt_accepts(&t[i], acc, sizeof acc);
        fprintf(f, "  %-14s %s\n  %-14s default %s; %s\n", t[i].name, t[i].help, "",
                t[i].def[0] ? t[i].def : "(empty)", acc);
    }
}

SSLDEF void ssl_config_print(FILE *f, const ssl_opt *t, int n, const void *cfg) {
    for (int i = 0; i < n; i++) {
        char v[SSL_STR + 32];
        ssl__opt_value(&t[i], cfg, v, sizeof v);
        /* mark values that differ from the default */
        void *tmp = ssl_calloc(t[i].offset + SSL_STR + 16, "config");
        ssl_config_set(t, n, tmp, t[i].name, t[i].def);
        char d[SSL_STR + 32];
        ssl__opt_value(&t[i], tmp, d, sizeof d);
        free(tmp);
        fprintf(f, "  %-14s = %s%s\n", t[i].name, v[0] ? v : "\"\"", strcmp(v, d) ? "  *" : "");
    }
}

SSLDEF size_t ssl_config_dump(const ssl_opt *t, int n, const void *cfg, char *out, size_t cap) {
    size_t len = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < n && len + 1 < cap; i++) {
        char v[SSL_STR + 32];
        ssl__opt_value(&t[i], cfg, v, sizeof v);
        int w = snprintf(out + len, cap - len, "%s=%s\n", t[i].name, v);
        if (w < 0) break;
        len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
    }
    return len;
}

static size_t ssl__json_str(char *out, size_t cap, const char *s) {
    size_t len = 0;
#define SSL__PUT(ch) do { if (len + 1 < cap) out[len] = (ch); len++; } while (0)
    SSL__PUT('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { SSL__PUT('\\'); SSL__PUT(ch); }
        else if (ch < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", ch);
            for (char *q = e; *q; q++) SSL__PUT(*q);
        } else SSL__PUT(ch);
    }
    SSL__PUT('"');
#undef SSL__PUT
    if (cap) out[len < cap ? len : cap - 1] = 0;
    return len;
}

SSLDEF size_t ssl_config_json(const ssl_opt *t, int n, const void *cfg, char *out, size_t cap) {
    size_t len = 0;
    if (!cap) return 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (len + 4 >= cap) break;
        out[len++] = i ? ',' : '{';
        len += ssl__json_str(out + len, cap - len, t[i].name);
        if (len + 2 >= cap) break;
        out[len++] = ':';
        char v[SSL_STR + 32];
        ssl__opt_value(&t[i], cfg, v, sizeof v);
        if (t[i].type == SSL_OPT_STR || t[i].type == SSL_OPT_CHOICE) len += ssl__json_str(out + len, cap - len, v);
        else len += (size_t)snprintf(out + len, cap - len, "%s", v);
        if (len >= cap) { len = cap - 1; break; }
    }
    if (len + 2 < cap) { out[len++] = '}'; out[len] = 0; }
    else out[cap - 1] = 0;
    return len;
}

/* ---- SSLT tensor files ---- */

SSLDEF size_t ssl_dtype_size(int d) {
    switch (d) {
    case SSL_F32: case SSL_I32: return 4;
    case SSL_U8: return 1;
    case SSL_F64: case SSL_I64: return 8;
    case SSL_BF16: return 2;
    default: return 0;
    }
}
SSLDEF const char *ssl_dtype_name(int d) {
    static const char *names[] = {"float32", "uint8", "int32", "float64", "int64", "bfloat16"};
    return d >= 0 && d <= SSL_BF16 ? names[d] : "unknown";
}
SSLDEF int64_t ssl_tentry_numel(const ssl_tentry *e) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->dims[i];
    return n;
}

static void ssl__put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void ssl__put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t ssl__get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ssl__get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

SSLDEF int ssl_tfile_write(const char *path, const ssl_tentry *e, int count, const char *meta) {
    size_t ml = meta ? strlen(meta) : 0, total = 20 + ml + 4;
    for (int i = 0; i < count; i++) {
        if (e[i].ndim < 0 || e[i].ndim > SSL_MAX_DIMS || !ssl_dtype_size(e[i].dtype))
            return ssl__fail("tensor '%s': bad dtype or rank", e[i].name);
        if ((size_t)ssl_tentry_numel(&e[i]) * ssl_dtype_size(e[i].dtype) != e[i].nbytes)
            return ssl__fail("tensor '%s': %zu bytes do not match its shape", e[i].name, e[i].nbytes);
        total += 4 + strlen(e[i].name) + 8 + 8 * e[i].ndim + 8 + 4 + e[i].nbytes;
    }
    uint8_t *buf = (uint8_t *)ssl_malloc(total, "tensor file"), *p = buf;
    memcpy(p, "SSLTNSR", 8); p += 8;
    ssl__put32(p, 1); ssl__put32(p + 4, (uint32_t)count); ssl__put32(p + 8, (uint32_t)ml); p += 12;
    memcpy(p, meta ? meta : "", ml); p += ml;
    for (int i = 0; i < count; i++) {
        size_t nl = strlen(e[i].name);
        ssl__put32(p, (uint32_t)nl); p += 4;
        memcpy(p, e[i].name, nl); p += nl;
        ssl__put32(p, (uint32_t)e[i].dtype); ssl__put32(p + 4, (uint32_t)e[i].ndim); p += 8;
        for (int d = 0; d < e[i].ndim; d++) { ssl__put64(p, (uint64_t)e[i].dims[d]); p += 8; }
        ssl__put64(p, e[i].nbytes); p += 8;
        ssl__put32(p, ssl_crc32(0, e[i].data, e[i].nbytes)); p += 4;
        if (e[i].nbytes) memcpy(p, e[i].data, e[i].nbytes);
        p += e[i].nbytes;
    }
    ssl__put32(p, ssl_crc32(0, buf, (size_t)(p - buf))); p += 4;
    SSL_ASSERT((size_t)(p - buf) == total, "tensor file size mismatch");
    int r = ssl_write_file_atomic(path, buf, total);
    free(buf);
    return r;
}

SSLDEF void ssl_tfile_free(ssl_tfile *f) {
    for (int i = 0; f->names && i < f->count; i++) free(f->names[i]);
    free(f->bytes);
    free(f->meta);
    free(f->entries);
    free(f->names);
    memset(f, 0, sizeof *f);
}

SSLDEF int ssl_tfile_read(const char *path, ssl_tfile *f) {
    memset(f, 0, sizeof *f);
    if (ssl_read_file(path, &f->bytes, &f->size) != 0) return -1;
    const uint8_t *b = f->bytes, *end = b + f->size;
    size_t n = f->size;
#define SSL__TBAD(...) do { ssl__fail(__VA_ARGS__); ssl__fail_ctx("tensor file '%s'", path); ssl_tfile_free(f); return -1; } while (0)
    if (n < 24 || memcmp(b, "SSLTNSR", 8) != 0) SSL__TBAD("not an SSLT file (bad magic or shorter than a header)");
    if (ssl__get32(b + 8) != 1) SSL__TBAD("version %u, this build reads version 1", ssl__get32(b + 8));
    uint32_t stored = ssl__get32(end - 4), crc = ssl_crc32(0, b, n - 4);
    if (stored != crc) SSL__TBAD("file checksum mismatch (stored %08x, computed %08x): truncated or corrupt", stored, crc);
    uint32_t count = ssl__get32(b + 12), ml = ssl__get32(b + 16);
    const uint8_t *p = b + 20;
    end -= 4;
    if (ml > (size_t)(end - p)) SSL__TBAD("meta length %u runs past the end", ml);
    f->meta = (char *)ssl_malloc(ml + 1, "meta");
    memcpy(f->meta, p, ml);
    f->meta[ml] = 0;
    p += ml;
    if (count > (size_t)(end - p) / 24) SSL__TBAD("claims %u tensors, more than the file can hold", count);
    f->entries = (ssl_tentry *)ssl_calloc(sizeof(ssl_tentry) * count, "tensor table");
    f->names = (char **)ssl_calloc(sizeof(char *) * count, "tensor names");
    f->count = (int)count;
    for (uint32_t i = 0; i < count; i++) {
        ssl_tentry *e = &f->entries[i];
        if (end - p < 4) SSL__TBAD("tensor %u: truncated", i);
        uint32_t nl = ssl__get32(p); p += 4;
        if (nl > 4096 || (size_t)(end - p) < nl + 8) SSL__TBAD("tensor %u: bad name length %u", i, nl);
        /* names are kept NUL-terminated in a side copy (the data is not) */
        f->names[i] = (char *)ssl_malloc(nl + 1, "tensor name");
        memcpy(f->names[i], p, nl);
        f->names[i][nl] = 0;
        e->name = f->names[i];
        p += nl;
        e->dtype = (int)ssl__get32(p); e->ndim = (int)ssl__get32(p + 4); p += 8;
        if (!ssl_dtype_size(e->dtype)) SSL__TBAD("tensor '%s': unknown dtype %d", e->name, e->dtype);
        if (e->ndim < 0 || e->ndim > SSL_MAX_DIMS || (size_t)(end - p) < 8u * e->ndim + 12)
            SSL__TBAD("tensor '%s': bad rank %d", e->name, e->ndim);
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            uint64_t v = ssl__get64(p); p += 8;
            if (v > ((uint64_t)1 << 40) || (v && numel > ((uint64_t)1 << 40) / v)) SSL__TBAD("tensor '%s': absurd shape", e->name);
            e->dims[d] = (int64_t)v;
            numel *= v;
        }
        uint64_t nb = ssl__get64(p); p += 8;
        uint32_t dcrc = ssl__get32(p); p += 4;
        if (nb != numel * ssl_dtype_size(e->dtype)) SSL__TBAD("tensor '%s': %llu bytes do not match its shape", e->name, (unsigned long long)nb);
        if (nb > (uint64_t)(end - p)) SSL__TBAD("tensor '%s': data runs past the end of the file", e->name);
        if (ssl_crc32(0, p, nb) != dcrc) SSL__TBAD("tensor '%s': checksum mismatch", e->name);
        e->data = p;
        e->nbytes = nb;
        p += nb;
    }
    if (p != end) SSL__TBAD("%zu unexpected bytes after the last tensor", (size_t)(end - p));
#undef SSL__TBAD
    return 0;
}

SSLDEF const ssl_tentry *ssl_tfile_find(const ssl_tfile *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

/* ---- 3. Pack format ----------------------------------------------------- */

SSLDEF const char *ssl_encoding_name(int enc) {
    static const char *n[] = {"raw", "jpeg", "png"};
    return enc >= 0 && enc < SSL_ENC_COUNT ? n[enc] : "unknown";
}
SSLDEF const char *ssl_store_mode_name(int m) {
    static const char *n[] = {"raw", "jpeg", "png", "auto"};
    return m >= 0 && m <= SSL_STORE_AUTO ? n[m] : "unknown";
}

static void ssl__pack_header_encode(const ssl_pack_header *h, uint8_t out[SSL_PACK_HEADER_SIZE]) {
    memset(out, 0, SSL_PACK_HEADER_SIZE);
    memcpy(out, SSL_PACK_MAGIC, 8);
    ssl__put32(out + 8, h->version);
    ssl__put32(out + 12, h->header_size);
    ssl__put64(out + 16, h->num_samples);
    ssl__put32(out + 24, h->num_classes);
    ssl__put32(out + 28, h->store_mode);
    ssl__put32(out + 32, h->max_res);
    ssl__put32(out + 36, h->flags);
    ssl__put64(out + 40, h->data_offset);
    ssl__put64(out + 48, h->index_offset);
    ssl__put64(out + 56, h->strings_offset);
    ssl__put64(out + 64, h->strings_size);
    ssl__put64(out + 72, h->file_size);
    ssl__put32(out + 80, h->page_size);
    ssl__put32(out + 84, h->index_crc);
    ssl__put32(out + 88, h->strings_crc);
    ssl__put32(out + 124, ssl_crc32(0, out, 124));
}

static void ssl__pack_header_decode(const uint8_t *in, ssl_pack_header *h) {
    h->version = ssl__get32(in + 8);
    h->header_size = ssl__get32(in + 12);
    h->num_samples = ssl__get64(in + 16);
    h->num_classes = ssl__get32(in + 24);
    h->store_mode = ssl__get32(in + 28);
    h->max_res = ssl__get32(in + 32);
    h->flags = ssl__get32(in + 36);
    h->data_offset = ssl__get64(in + 40);
    h->index_offset = ssl__get64(in + 48);
    h->strings_offset = ssl__get64(in + 56);
    h->strings_size = ssl__get64(in + 64);
    h->file_size = ssl__get64(in + 72);
    h->page_size = ssl__get32(in + 80);
    h->index_crc = ssl__get32(in + 84);
    h->strings_crc = ssl__get32(in + 88);
    h->header_crc = ssl__get32(in + 124);
}

SSLDEF void ssl_pack_close(ssl_pack *p) {
    if (p->map) munmap((void *)p->map, p->map_size);
    free(p->class_names);
    memset(p, 0, sizeof *p);
}

SSLDEF int ssl_pack_open(const char *path, ssl_pack *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
#define SSL__PBAD(...) do { ssl__fail(__VA_ARGS__); ssl__fail_ctx("pack '%s'", path); ssl_pack_close(p); return -1; } while (0)
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ssl__fail("pack '%s': cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ssl__fail("pack '%s': not a regular file", path);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < SSL_PACK_HEADER_SIZE) {
        close(fd);
        return ssl__fail("pack '%s': %llu bytes, shorter than the %d-byte header (truncated or not a pack)", path,
                         (unsigned long long)fsize, SSL_PACK_HEADER_SIZE);
    }
    void *m = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return ssl__fail("pack '%s': mmap failed: %s", path, strerror(errno));
    p->map = (const uint8_t *)m;
    p->map_size = (size_t)fsize;
    const uint8_t *b = p->map;
    ssl_pack_header *h = &p->h;
    if (memcmp(b, SSL_PACK_MAGIC, 8) != 0) SSL__PBAD("bad magic (not an .ssl pack file)");
    ssl__pack_header_decode(b, h);
    if (h->version != SSL_PACK_VERSION)
        SSL__PBAD("format version %u, this build reads version %d", h->version, SSL_PACK_VERSION);
    if (ssl_crc32(0, b, 124) != h->header_crc) SSL__PBAD("header checksum mismatch (corrupt header)");
    if (h->header_size != SSL_PACK_HEADER_SIZE) SSL__PBAD("header size %u, expected %d", h->header_size, SSL_PACK_HEADER_SIZE);
    if (h->file_size != fsize)
        SSL__PBAD("file is %llu bytes but its header says %llu (%s)", (unsigned long long)fsize,
                  (unsigned long long)h->file_size, fsize < h->file_size ? "truncated" : "trailing bytes");
    if (h->store_mode > SSL_STORE_AUTO) SSL__PBAD("unknown storage mode %u", h->store_mode);
    if (h->page_size == 0) SSL__PBAD("page size is 0");
    if (h->num_classes == 0 && h->num_samples > 0) SSL__PBAD("no classes but %llu samples", (unsigned long long)h->num_samples);
    /* regions: header | records [data_offset, index_offset) | index | strings */
    if (h->data_offset < SSL_PACK_HEADER_SIZE || h->data_offset > h->index_offset || h->index_offset % 8 != 0)
        SSL__PBAD("bad data/index offsets (%llu, %llu)", (unsigned long long)h->data_offset, (unsigned long long)h->index_offset);
    if (h->num_samples > (fsize - h->index_offset) / sizeof(ssl_pack_rec))
        SSL__PBAD("index of %llu entries does not fit in the file", (unsigned long long)h->num_samples);
    uint64_t index_end = h->index_offset + h->num_samples * sizeof(ssl_pack_rec);
    if (h->strings_offset != index_end || h->strings_size > fsize - h->strings_offset ||
        h->strings_offset + h->strings_size != fsize)
        SSL__PBAD("bad string table (offset %llu, size %llu)", (unsigned long long)h->strings_offset,
                  (unsigned long long)h->strings_size);
    if (ssl_crc32(0, b + h->index_offset, index_end - h->index_offset) != h->index_crc) SSL__PBAD("index checksum mismatch (corrupt index)");
    if (ssl_crc32(0, b + h->strings_offset, h->strings_size) != h->strings_crc) SSL__PBAD("string table checksum mismatch");
    p->index = (const ssl_pack_rec *)(b + h->index_offset);
    /* every entry, against the records region */
    for (uint64_t i = 0; i < h->num_samples; i++) {
        const ssl_pack_rec *r = &p->index[i];
        if (r->offset < h->data_offset || r->offset > h->index_offset || r->size > h->index_offset - r->offset)
            SSL__PBAD("sample %llu: record [%llu, +%u) points outside the records region [%llu, %llu)", (unsigned long long)i,
                      (unsigned long long)r->offset, r->size, (unsigned long long)h->data_offset,
                      (unsigned long long)h->index_offset);
        if (r->encoding >= SSL_ENC_COUNT) SSL__PBAD("sample %llu: unknown encoding %u", (unsigned long long)i, r->encoding);
        if (r->channels != 1 && r->channels != 3) SSL__PBAD("sample %llu: %u channels (expected 1 or 3)", (unsigned long long)i, r->channels);
        if (r->width == 0 || r->height == 0) SSL__PBAD("sample %llu: zero width or height", (unsigned long long)i);
        if (r->encoding == SSL_ENC_RAW && (uint64_t)r->width * r->height * r->channels != r->size)
            SSL__PBAD("sample %llu: raw record of %u bytes for %ux%ux%u pixels", (unsigned long long)i, r->size, r->width,
                      r->height, r->channels);
        if (r->label >= h->num_classes)
            SSL__PBAD("sample %llu: label %u but only %u classes", (unsigned long long)i, r->label, h->num_classes);
    }
    /* strings: num_classes names, then num_samples paths if flagged */
    const char *s = (const char *)b + h->strings_offset, *se = s + h->strings_size;
    uint64_t need = h->num_classes + ((h->flags & SSL_PACK_HAS_PATHS) ? h->num_samples : 0), have = 0;
    if (h->strings_size && se[-1] != 0) SSL__PBAD("string table is not NUL-terminated");
    for (const char *q = s; q < se; q++) have += (*q == 0);
    if (have != need) SSL__PBAD("string table holds %llu strings, expected %llu", (unsigned long long)have, (unsigned long long)need);
    p->class_names = (const char **)ssl_malloc(sizeof(char *) * (h->num_classes + 1), "class names");
    for (uint32_t c = 0; c < h->num_classes; c++) {
        p->class_names[c] = s;
        s += strlen(s) + 1;
    }
    p->paths = (h->flags & SSL_PACK_HAS_PATHS) ? s : NULL;
#undef SSL__PBAD
    return 0;
}

SSLDEF const uint8_t *ssl_pack_record(const ssl_pack *p, uint64_t i, size_t *size) {
    SSL_ASSERT(i < p->h.num_samples, "sample %llu out of range", (unsigned long long)i);
    if (size) *size = p->index[i].size;
    return p->map + p->index[i].offset;
}

SSLDEF const char *ssl_pack_source(const ssl_pack *p, uint64_t i) {
    if (!p->paths || i >= p->h.num_samples) return "";
    const char *s = p->paths;
    while (i--) s += strlen(s) + 1;
    return s;
}

SSLDEF int ssl_pack_check_record(const ssl_pack *p, uint64_t i) {
    size_t n;
    const uint8_t *r = ssl_pack_record(p, i, &n);
    uint32_t c = ssl_crc32(0, r, n);
    if (c != p->index[i].crc)
        return ssl__fail("sample %llu: CRC mismatch (index says %08x, record hashes to %08x)", (unsigned long long)i,
                         p->index[i].crc, c);
    return 0;
}

struct ssl_pack_writer {
    char path[SSL_STR], tmp[SSL_STR + 32];
    FILE *f;
    uint64_t pos, count, cap;
    uint32_t page_size;
    ssl_pack_rec *index;
    char *paths;
    size_t paths_len, paths_cap;
    int all_have_paths;
};

SSLDEF uint64_t ssl_pack_writer_count(const ssl_pack_writer *w) { return w->count; }
SSLDEF uint64_t ssl_pack_writer_bytes(const ssl_pack_writer *w) { return w->pos; }

SSLDEF ssl_pack_writer *ssl_pack_writer_open(const char *path, int force, uint32_t page_size) {
    struct stat st;
    if (strlen(path) >= SSL_STR) { ssl__fail("output path too long"); return NULL; }
    if (!force && stat(path, &st) == 0) {
        ssl__fail("'%s' already exists; pass force=1 to overwrite it", path);
        return NULL;
    }
    ssl_pack_writer *w = (ssl_pack_writer *)ssl_calloc(sizeof *w, "pack writer");
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        ssl__fail("cannot create '%s': %s", w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    uint8_t zero[SSL_PACK_HEADER_SIZE] = {0};
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) {
        ssl__fail("cannot write '%s': %s", w->tmp, strerror(errno));
        ssl_pack_writer_abort(w);
        return NULL;
    }
    w->pos = SSL_PACK_HEADER_SIZE;
    w->page_size = page_size ? page_size : SSL_PACK_DEFAULT_PAGE;
    w->all_have_paths = 1;
    return w;
}

SSLDEF void ssl_pack_writer_abort(ssl_pack_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->index);
    free(w->paths);
    free(w);
}

SSLDEF int ssl_pack_writer_add(ssl_pack_writer *w, const void *bytes, size_t size, int width, int height,
                               int channels, int encoding, uint32_t label, const char *path) {
    if (width <= 0 || height <= 0 || width > 65535 || height > 65535)
        return ssl__fail("record of %dx%d pixels: sides must be 1..65535", width, height);
    if (channels != 1 && channels != 3) return ssl__fail("record with %d channels: must be 1 or 3", channels);
    if (encoding < 0 || encoding >= SSL_ENC_COUNT) return ssl__fail("unknown encoding %d", encoding);
    if (size > 0xFFFFFFFFu) return ssl__fail("record of %zu bytes is over the 4 GiB record limit", size);
    if (encoding == SSL_ENC_RAW && (size_t)width * height * channels != size)
        return ssl__fail("raw record of %zu bytes for %dx%dx%d pixels", size, width, height, channels);
    if (w->count == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->index = (ssl_pack_rec *)ssl_realloc(w->index, w->cap * sizeof(ssl_pack_rec), "pack index");
    }
    if (size && fwrite(bytes, 1, size, w->f) != size) return ssl__fail("cannot write '%s': %s", w->tmp, strerror(errno));
    ssl_pack_rec *r = &w->index[w->count++];
    memset(r, 0, sizeof *r);
    r->offset = w->pos;
    r->size = (uint32_t)size;
    r->width = (uint16_t)width;
    r->height = (uint16_t)height;
    r->channels = (uint8_t)channels;
    r->encoding = (uint8_t)encoding;
    r->label = label;
    r->crc = ssl_crc32(0, bytes, size);
    w->pos += size;
    if (!path) w->all_have_paths = 0;
    if (w->all_have_paths) {
        size_t l = strlen(path) + 1;
        if (w->paths_len + l > w->paths_cap) {
            w->paths_cap = (w->paths_len + l) * 2;
            w->paths = (char *)ssl_realloc(w->paths, w->paths_cap, "pack paths");
        }
        memcpy(w->paths + w->paths_len, path, l);
        w->paths_len += l;
    }
    return 0;
}

SSLDEF int ssl_pack_writer_finish(ssl_pack_writer *w, const char *const *class_names, int num_classes,
                                  int store_mode, int max_res) {
    int rc = -1;
    for (uint64_t i = 0; i < w->count; i++)
        if (w->index[i].label >= (uint32_t)num_classes) {
            ssl__fail("sample %llu has label %u but only %d classes were named", (unsigned long long)i, w->index[i].label, num_classes);
            goto out;
        }
    ssl_pack_header h;
    memset(&h, 0, sizeof h);
    h.version = SSL_PACK_VERSION;
    h.header_size = SSL_PACK_HEADER_SIZE;
    h.num_samples = w->count;
    h.num_classes = (uint32_t)num_classes;
    h.store_mode = (uint32_t)store_mode;
    h.max_res = (uint32_t)max_res;
    h.flags = (w->all_have_paths && w->count) ? SSL_PACK_HAS_PATHS : 0;
    h.data_offset = SSL_PACK_HEADER_SIZE;
    h.page_size = w->page_size;
    /* pad so the index is 8-aligned and can be used in place */
    static const uint8_t pad[8] = {0};
    size_t np = (size_t)((8 - w->pos % 8) % 8);
    if (np && fwrite(pad, 1, np, w->f) != np) goto ioerr;
    h.index_offset = w->pos + np;
    size_t isz = (size_t)w->count * sizeof(ssl_pack_rec);
    if (isz && fwrite(w->index, 1, isz, w->f) != isz) goto ioerr;
    h.index_crc = ssl_crc32(0, w->index, isz);
    h.strings_offset = h.index_offset + isz;
    uint32_t scrc = 0;
    uint64_t ssz = 0;
    for (int c = 0; c < num_classes; c++) {
        size_t l = strlen(class_names[c]) + 1;
        if (fwrite(class_names[c], 1, l, w->f) != l) goto ioerr;
        scrc = ssl_crc32(scrc, class_names[c], l);
        ssz += l;
    }
    if (h.flags & SSL_PACK_HAS_PATHS) {
        if (fwrite(w->paths, 1, w->paths_len, w->f) != w->paths_len) goto ioerr;
        scrc = ssl_crc32(scrc, w->paths, w->paths_len);
        ssz += w->paths_len;
    }
    h.strings_size = ssz;
    h.strings_crc = scrc;
    h.file_size = h.strings_offset + ssz;
    uint8_t hb[SSL_PACK_HEADER_SIZE];
    ssl__pack_header_encode(&h, hb);
    if (fflush(w->f) != 0 || fseeko(w->f, 0, SEEK_SET) != 0 || fwrite(hb, 1, sizeof hb, w->f) != sizeof hb ||
        fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        goto ioerr;
    if (fclose(w->f) != 0) { w->f = NULL; goto ioerr; }
    w->f = NULL;
    if (rename(w->tmp, w->path) != 0) {
        ssl__fail("cannot rename '%s' to '%s': %s", w->tmp, w->path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
ioerr:
    ssl__fail("cannot write '%s': %s", w->tmp, strerror(errno));
out:
    if (rc == 0) {
        free(w->index);
        free(w->paths);
        free(w);
    } else {
        ssl_pack_writer_abort(w);
    }
    return rc;
}

/* ---- 4. Decode ---------------------------------------------------------- */

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO_UNUSED
#define STBI_MAX_DIMENSIONS (1 << 24)
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#else
#include <stb_image.h>
#include <stb_image_write.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef SSL_TURBOJPEG
#include <turbojpeg.h>
/* One decompressor and one compressor per thread, destroyed at thread exit. */
static pthread_key_t ssl__tj_key[2];
static pthread_once_t ssl__tj_once = PTHREAD_ONCE_INIT;
static void ssl__tj_destroy(void *h) { if (h) tjDestroy((tjhandle)h); }
static void ssl__tj_keys(void) {
    pthread_key_create(&ssl__tj_key[0], ssl__tj_destroy);
    pthread_key_create(&ssl__tj_key[1], ssl__tj_destroy);
}
static tjhandle ssl__tj(int compress) {
    pthread_once(&ssl__tj_once, ssl__tj_keys);
    tjhandle h = (tjhandle)pthread_getspecific(ssl__tj_key[compress]);
    if (!h) {
        h = compress ? tjInitCompress() : tjInitDecompress();
        SSL_ASSERT(h, "libjpeg-turbo: cannot create a handle");
        pthread_setspecific(ssl__tj_key[compress], h);
    }
    return h;
}
#endif

static int ssl__sniff(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return SSL_FMT_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return SSL_FMT_PNG;
    return SSL_FMT_OTHER;
}

SSLDEF int ssl_image_info(const void *buf, size_t n, int *w, int *h, int *c, int *format) {
    const uint8_t *b = (const uint8_t *)buf;
    if (n == 0) return ssl__fail("empty file (0 bytes)");
    if (n > 0x7FFFFFFF) return ssl__fail("image file over 2 GiB");
    int fmt = ssl__sniff(b, n), iw = 0, ih = 0, ic = 0;
    if (fmt == SSL_FMT_PNG && n >= 24) {
        /* PNG's size sits at a fixed place: check it before any decoder
           allocates for it (stb's own refusal names no size) */
        uint32_t pw = (uint32_t)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
        uint32_t ph = (uint32_t)b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
        if ((uint64_t)pw * ph > SSL_MAX_PIXELS)
            return ssl__fail("image header claims %ux%u pixels, over the limit of %u pixels", pw, ph, SSL_MAX_PIXELS);
    }
#ifdef SSL_TURBOJPEG
    if (fmt == SSL_FMT_JPEG) {
        int sub, cs;
        if (tjDecompressHeader3(ssl__tj(0), b, (unsigned long)n, &iw, &ih, &sub, &cs) != 0)
            return ssl__fail("not a readable JPEG: %s", tjGetErrorStr2(ssl__tj(0)));
        ic = cs == TJCS_GRAY ? 1 : 3;
    } else
#endif
    {
        if (!stbi_info_from_memory(b, (int)n, &iw, &ih, &ic))
            return ssl__fail("not a recognised image (%s)", stbi_failure_reason());
        ic = ic <= 2 ? 1 : 3;
    }
    if (iw <= 0 || ih <= 0) return ssl__fail("corrupt image header (claims %dx%d pixels)", iw, ih);
    if ((uint64_t)iw * (uint64_t)ih > SSL_MAX_PIXELS)
        return ssl__fail("image header claims %dx%d pixels, over the limit of %u pixels", iw, ih, SSL_MAX_PIXELS);
    if (w) *w = iw;
    if (h) *h = ih;
    if (c) *c = ic;
    if (format) *format = fmt;
    return 0;
}

SSLDEF void ssl_convert_channels(const uint8_t *src, int w, int h, int sc, uint8_t *dst, int dc) {
    size_t n = (size_t)w * h;
    if (sc == dc) { memmove(dst, src, n * sc); return; }
    if (sc == 3 && dc == 1) {
        /* ITU-R 601-2 luma with PIL's fixed-point rounding */
        for (size_t i = 0; i < n; i++)
            dst[i] = (uint8_t)((src[3 * i] * 19595 + src[3 * i + 1] * 38470 + src[3 * i + 2] * 7471 + 0x8000) >> 16);
    } else if (sc == 1 && dc == 3) {
        for (size_t i = n; i-- > 0;) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
    } else {
        ssl__die(__FILE__, __LINE__, "cannot convert %d to %d channels", sc, dc);
    }
}

SSLDEF int ssl_decode(const void *buf, size_t n, int want_c, ssl_buf *out, int *w, int *h, int *c) {
    int iw = 0, ih = 0, ic = 0, fmt = 0;
    if (ssl_image_info(buf, n, &iw, &ih, &ic, &fmt) != 0) return -1;
    int oc = want_c ? want_c : ic;
#ifdef SSL_TURBOJPEG
    if (fmt == SSL_FMT_JPEG) {
        uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, (size_t)iw * ih * oc);
        if (tjDecompress2(ssl__tj(0), (const uint8_t *)buf, (unsigned long)n, dst, iw, 0, ih,
                          oc == 1 ? TJPF_GRAY : TJPF_RGB, 0) != 0) {
            /* warnings (e.g. extraneous bytes) still produce an image */
            if (tjGetErrorCode(ssl__tj(0)) != TJERR_WARNING)
                return ssl__fail("JPEG decode failed: %s", tjGetErrorStr2(ssl__tj(0)));
        }
        *w = iw; *h = ih; *c = oc;
        return 0;
    }
#endif
    int sw, sh, sc;
    uint8_t *px = stbi_load_from_memory((const uint8_t *)buf, (int)n, &sw, &sh, &sc, oc);
    if (!px) return ssl__fail("decode failed (%s)", stbi_failure_reason());
    uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, (size_t)sw * sh * oc);
    memcpy(dst, px, (size_t)sw * sh * oc);
    stbi_image_free(px);
    *w = sw; *h = sh; *c = oc;
    return 0;
}

SSLDEF int ssl_pack_decode(const ssl_pack *p, uint64_t i, int want_c, ssl_buf *out, int *w, int *h, int *c) {
    size_t n;
    const uint8_t *r = ssl_pack_record(p, i, &n);
    const ssl_pack_rec *e = &p->index[i];
    if (e->encoding == SSL_ENC_RAW) {
        int oc = want_c ? want_c : e->channels;
        uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, (size_t)e->width * e->height * (oc > e->channels ? oc : e->channels));
        if (oc == e->channels) memcpy(dst, r, n);
        else ssl_convert_channels(r, e->width, e->height, e->channels, dst, oc);
        *w = e->width; *h = e->height; *c = oc;
        return 0;
    }
    if (ssl_decode(r, n, want_c, out, w, h, c) != 0) return ssl__fail_ctx("sample %llu", (unsigned long long)i);
    if (*w != e->width || *h != e->height)
        return ssl__fail("sample %llu: decoded %dx%d but the index says %ux%u", (unsigned long long)i, *w, *h, e->width, e->height);
    return 0;
}

static void ssl__buf_sink(void *ctx, void *data, int size) {
    void **c = (void **)ctx;
    ssl_buf *b = (ssl_buf *)c[0];
    size_t *len = (size_t *)c[1];
    if (*len + (size_t)size > b->cap) {
        b->cap = (*len + (size_t)size) * 2 + 4096;
        b->p = ssl_realloc(b->p, b->cap, "encoder output");
    }
    memcpy((uint8_t *)b->p + *len, data, (size_t)size);
    *len += (size_t)size;
}

SSLDEF int ssl_encode_jpeg(const uint8_t *px, int w, int h, int c, int quality, ssl_buf *out, size_t *size) {
#ifdef SSL_TURBOJPEG
    unsigned long cap = tjBufSize(w, h, c == 1 ? TJSAMP_GRAY : TJSAMP_420);
    uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, cap);
    unsigned long len = cap;
    if (tjCompress2(ssl__tj(1), px, w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &dst, &len,
                    c == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, TJFLAG_NOREALLOC) != 0)
        return ssl__fail("JPEG encode failed: %s", tjGetErrorStr2(ssl__tj(1)));
    *size = len;
    return 0;
#else
    size_t len = 0;
    void *ctx[2] = {out, &len};
    if (!stbi_write_jpg_to_func(ssl__buf_sink, ctx, w, h, c, px, quality)) return ssl__fail("JPEG encode failed");
    *size = len;
    return 0;
#endif
}

SSLDEF int ssl_encode_png(const uint8_t *px, int w, int h, int c, ssl_buf *out, size_t *size) {
    size_t len = 0;
    void *ctx[2] = {out, &len};
    if (!stbi_write_png_to_func(ssl__buf_sink, ctx, w, h, c, px, w * c)) return ssl__fail("PNG encode failed");
    *size = len;
    return 0;
}

/* ---- the resampler ----
   For each output coordinate the filter is centred on the matching source
   point; when shrinking by `scale` its support widens by `scale`, which is
   what makes the result antialiased (PIL's ImagingResample; torchvision's
   antialias=True computes the same). Weights are normalised per tap window.
   Two separable passes in float: horizontal over the rows the vertical pass
   needs, then vertical. */
typedef struct { int start, n; } ssl__taps;

static double ssl__filter(ssl_filter f, double x) {
    if (f == SSL_FILTER_BOX) return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
    if (x < 0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Computes taps for one axis; returns the max taps per output. weights are
   laid as [out][max_taps]. */
static int ssl__resample_taps(double in0, double in_len, int in_size, int out_size, ssl_filter f, ssl__taps *taps,
                              float *weights, int max_taps) {
    double scale = in_len / out_size, fs = scale > 1.0 ? scale : 1.0;
    double support = (f == SSL_FILTER_BOX ? 0.5 : 1.0) * fs;
    for (int o = 0; o < out_size; o++) {
        double center = in0 + (o + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        if (hi - lo > max_taps) hi = lo + max_taps;
        double sum = 0;
        float *wt = weights + (size_t)o * max_taps;
        int n = 0;
        for (int x = lo; x < hi; x++) {
            double v = ssl__filter(f, (x + 0.5 - center) / fs);
            wt[n++] = (float)v;
            sum += v;
        }
        if (sum > 0)
            for (int k = 0; k < n; k++) wt[k] = (float)(wt[k] / sum);
        /* trim zero-weight ends (box edges) so loops stay tight */
        int s = 0;
        while (s < n - 1 && wt[s] == 0) s++;
        while (n - 1 > s && wt[n - 1] == 0) n--;
        if (s) memmove(wt, wt + s, sizeof(float) * (n - s));
        taps[o].start = lo + s;
        taps[o].n = n - s;
    }
    return max_taps;
}

SSLDEF void ssl_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                         uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, ssl_buf *scratch) {
    SSL_ASSERT(dw > 0 && dh > 0 && bw > 0 && bh > 0 && c >= 1 && c <= 4, "bad resample arguments");
    double sx = bw / dw, sy = bh / dh;
    double supx = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sx > 1 ? sx : 1);
    double supy = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sy > 1 ? sy : 1);
    int mtx = (int)ceil(supx) * 2 + 2, mty = (int)ceil(supy) * 2 + 2;
    size_t need = sizeof(ssl__taps) * (dw + dh) + sizeof(float) * ((size_t)dw * mtx + (size_t)dh * mty);
    /* rows of the horizontal pass: only those the vertical pass reads */
    int ylo = (int)floor(by - supy - 1), yhi = (int)ceil(by + bh + supy + 1);
    if (ylo < 0) ylo = 0;
    if (yhi > sh) yhi = sh;
    size_t mid = (size_t)(yhi - ylo) * dw * c;
    uint8_t *mem = (uint8_t *)ssl_buf_reserve(scratch, need + sizeof(float) * mid + 64);
    ssl__taps *tx = (ssl__taps *)mem, *ty = tx + dw;
    float *wx = (float *)(ty + dh), *wy = wx + (size_t)dw * mtx, *tmp = wy + (size_t)dh * mty;
    ssl__resample_taps(bx, bw, sw, dw, filter, tx, wx, mtx);
    ssl__resample_taps(by, bh, sh, dh, filter, ty, wy, mty);
    for (int y = ylo; y < yhi; y++) {
        const uint8_t *row = src + (size_t)y * sw * c;
        float *o = tmp + (size_t)(y - ylo) * dw * c;
        for (int x = 0; x < dw; x++) {
            const float *wt = wx + (size_t)x * mtx;
            const uint8_t *s = row + (size_t)tx[x].start * c;
            float acc[4] = {0, 0, 0, 0};
            for (int k = 0; k < tx[x].n; k++)
                for (int ch = 0; ch < c; ch++) acc[ch] += wt[k] * s[k * c + ch];
            for (int ch = 0; ch < c; ch++) o[x * c + ch] = acc[ch];
        }
    }
    for (int y = 0; y < dh; y++) {
        const float *wt = wy + (size_t)y * mty;
        int n = ty[y].n, s0 = ty[y].start - ylo;
        SSL_ASSERT(s0 >= 0 && s0 + n <= yhi - ylo, "resample rows out of range");
        for (int x = 0; x < dw * c; x++) {
            float acc = 0;
            for (int k = 0; k < n; k++) acc += wt[k] * tmp[(size_t)(s0 + k) * dw * c + x];
            if (dst_f32) dst_f32[(size_t)y * dw * c + x] = acc;
            else {
                float v = acc + 0.5f;
                dst_u8[(size_t)y * dw * c + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

#endif /* SSL_IMPLEMENTATION_DONE */
#endif /* SSL_IMPLEMENTATION */
