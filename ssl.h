/* ssl.h - joint-embedding self-supervised learning in one header.

   Do this:
       #define SSL_IMPLEMENTATION
   before you include this file in *one* C file to create the implementation.
   Everything else includes it as a plain header. CUDA kernels live in ssl.cu,
   which includes this header for the declarations and the shared math.

   Build flags the implementation understands (the Makefile sets them from
   what it finds):
       SSL_TURBOJPEG   decode/encode JPEG with libjpeg-turbo (else stb_image)
       SSL_LIBJPEG     with it, libjpeg-turbo's libjpeg API: the loader
                       decodes only the part of a JPEG its crops cover
       SSL_CUDA        link the CUDA backend from ssl.cu
       SSL_MPI         many ranks through MPI (mpirun, srun); else one
       SSL_NCCL        (with SSL_CUDA) GPU tensors' collectives through NCCL
       SSL_STATIC      make every public function static

   Every choice that changes what is computed or how fast is an option of
   the programs' config tables (section 1), never the environment. The few
   environment variables debug and test the CUDA backend; ssl.cu's top
   comment lists them.

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
       5. Augment       crop, flip, colour jitter, grayscale, blur, solarize,
                        noise, normalize as torchvision defines them; view
                        recipes and presets
       6. Loader        epoch order and sharding, worker threads, a ring of
                        batches, decode once and cut every view from it
       7. Tensors, ops  the device switch, GEMM, layers forward/backward
       8. Models        the parameter table (torchvision names), ResNet-18/34/50,
                        projector and predictor MLPs
       9. Losses        SimCLR, VICReg, Barlow Twins, BYOL
      10. Optimizers    SGD, LARS, AdamW; warmup + cosine
      11. Train step    the step of each method, EMA target, online probe,
                        checkpoints
      12. Distributed   the communicator: rank, world, collectives on tensors
                        (MPI for host tensors and launch, NCCL for device
                        tensors); SyncBN; the losses over the global batch
      13. Evaluation    kNN, linear and MLP probes, safetensors export

   USAGE. A whole program that trains SimCLR on a pack made by ./pack (make
   test extracts and compiles it, so it stays true):

       #define SSL_IMPLEMENTATION
       #include "ssl.h"

       int main(void) {
           ssl_loader_config lc; // SimCLR's two views, 32x32 crops, 256 images a batch
           ssl_loader_config_init(&lc, "train.ssl", "simclr", 32, 256);
           ssl_loader *l = ssl_loader_open(&lc);
           if (!l) return fprintf(stderr, "%s\n", ssl_last_error()), 1;

           ssl_model_config mc = ssl_model_config_default(); // ResNet-18
           mc.cifar_stem = 1;
           snprintf(mc.projector, sizeof mc.projector, "2048-2048-128");
           ssl_train_config tc = ssl_train_config_default(SSL_METHOD_SIMCLR); // LARS, tau 0.15
           int epochs = 10;
           int64_t per_epoch = (int64_t)ssl_loader_pack(l)->h.num_samples / 256;
           tc.total_steps = epochs * per_epoch; // warmup, then cosine over the run
           ssl_trainer t;
           if (ssl_trainer_init(&t, &mc, &tc)) return fprintf(stderr, "%s\n", ssl_last_error()), 1;

           for (int e = 0; e < epochs; e++) {
               ssl_loader_start_epoch(l, e, 0);
               for (const ssl_batch *b; (b = ssl_loader_next(l)); ssl_loader_release(l, b)) {
                   ssl_step_stats st;
                   if (ssl_train_step(&t, b->views[0], b->views[1], b->labels, b->n, b->h[0], b->w[0], &st))
                       return fprintf(stderr, "%s\n", ssl_last_error()), 1; // e.g. a NaN loss
                   printf("step %lld loss %.4f\n", (long long)t.step, st.loss);
               }
           }
           ssl_trainer_save(&t, "ckpt.sslt", "", NULL, 0);
           ssl_trainer_free(&t);
           ssl_loader_close(l);
           return 0;
       }

   To try a loss of your own, edit section 9 (each loss is a short function
   on public primitives that run on either device) and call yours in
   ssl_train_step's `switch (c->method)` in section 11. ./train is this
   program with the config table, logging, checkpoints and evaluation.

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

#if defined(__GNUC__)
#define SSL__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SSL__PRINTF(fmt, args)
#endif

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
SSLDEF int ssl__fail(const char *fmt, ...) SSL__PRINTF(1, 2);
/* Prefixes the current message: "ctx: old message". Returns -1. */
SSLDEF int ssl__fail_ctx(const char *fmt, ...) SSL__PRINTF(1, 2);
/* Internal invariant broken: print file:line and the message, abort. */
SSLDEF void ssl__die(const char *file, int line, const char *fmt, ...) SSL__PRINTF(3, 4)
#if defined(__GNUC__)
    __attribute__((noreturn))
#endif
    ;
#define SSL_ASSERT(cond, ...) \
    do { if (!(cond)) ssl__die(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* malloc/calloc/realloc that stop with "out of memory: N bytes for WHAT". */
SSLDEF void *ssl_malloc(size_t n, const char *what);
SSLDEF void *ssl_calloc(size_t n, const char *what);
SSLDEF void *ssl_realloc(void *p, size_t n, const char *what);
/* The same, 64-byte aligned (free with free()). */
SSLDEF void *ssl_malloc_aligned(size_t n, const char *what);

/* A growable byte buffer: scratch space reused across calls, so the steady
   state allocates nothing. */
typedef struct { void *p; size_t cap; } ssl_buf;
SSLDEF void *ssl_buf_reserve(ssl_buf *b, size_t n);
SSLDEF void ssl_buf_free(ssl_buf *b);

SSLDEF double ssl_now(void); /* monotonic seconds */

/* Log lines go to stderr; verbosity 0 = warnings only, 1 = info (default). */
SSLDEF void ssl_set_verbosity(int v);
SSLDEF void ssl_info(const char *fmt, ...) SSL__PRINTF(1, 2);
SSLDEF void ssl_warn(const char *fmt, ...) SSL__PRINTF(1, 2);

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
/* Reads a whole file into a reusable buffer (one byte more, NUL). */
SSLDEF int ssl_read_file_buf(const char *path, ssl_buf *b, size_t *n);
/* Maps a regular, non-empty file read-only; ssl_unmap_file releases it. */
SSLDEF int ssl_map_file(const char *path, const uint8_t **map, size_t *size);
SSLDEF void ssl_unmap_file(const uint8_t *map, size_t size);

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
    uint8_t *arena; /* 64-byte aligned copies of every tensor's data */
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
    SSL_RNG_SPLIT = 12 /* 11 was retired: streams keep their numbers */
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
   Owns: turning bytes into pixels and back. Three formats are read: JPEG
   through libjpeg-turbo when the build has it (SSL_TURBOJPEG; its libjpeg
   API with SSL_LIBJPEG, a fresh decompressor per image), stb_image
   otherwise (its tables checked first, ssl__jpeg_check); PNG and BMP
   through stb_image, built for those alone. Every path refuses an image
   over SSL_MAX_PIXELS from its header, before it allocates. Pixels are
   uint8, interleaved (HWC), 1 or 3 channels. The resampler here is PIL's separable algorithm
   (box for area shrinking, triangle for antialiased bilinear), which is what
   torchvision's antialiased resize computes.
   ======================================================================== */
/* an image header claiming more pixels is refused (a build may lower it) */
#ifndef SSL_MAX_PIXELS
#define SSL_MAX_PIXELS (1u << 28)
#endif
typedef enum { SSL_FMT_UNKNOWN = 0, SSL_FMT_JPEG, SSL_FMT_PNG, SSL_FMT_OTHER /* BMP */ } ssl_format;

/* Reads only the header: format, size, channels (1 or 3 after conversion;
   alpha is dropped). Refuses empty input, formats other than JPEG, PNG and
   BMP (by their first bytes), and absurd sizes. */
SSLDEF int ssl_image_info(const void *buf, size_t n, int *w, int *h, int *c, int *format);
/* Checks a JPEG's Huffman tables and the scans that use them (before stb_image
   sees it, in builds without libjpeg-turbo). */
SSLDEF int ssl__jpeg_check(const uint8_t *b, size_t n);
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
/* Reads a whole file, inflating it if it is gzip'd (CRC and size checked). */
SSLDEF int ssl_read_file_gz(const char *path, uint8_t **out, size_t *n);
/* An IDX data set as MNIST and Fashion-MNIST ship it (gzip'd or not): n
   gray images of h x w uint8 pixels and their labels, held in memory. */
typedef struct {
    uint8_t *image_file, *label_file; /* the files' bytes, headers included */
    uint32_t n;
    int w, h, num_classes; /* num_classes: the largest label + 1 */
} ssl_idx;
static inline const uint8_t *ssl_idx_pixels(const ssl_idx *d, uint32_t i) {
    return d->image_file + 16 + (size_t)i * (size_t)d->w * (size_t)d->h;
}
static inline uint32_t ssl_idx_label(const ssl_idx *d, uint32_t i) { return d->label_file[8 + i]; }
/* labels NULL or "": the images' name with images-idx3 -> labels-idx1. */
SSLDEF int ssl_idx_load(const char *images, const char *labels, ssl_idx *d);
SSLDEF void ssl_idx_free(ssl_idx *d);
/* Packs the first `limit` samples (0 = all) of an IDX data set into `out`
   as raw gray records, atomically; class_names may be NULL ("0", "1", ...). */
SSLDEF int ssl_pack_idx(const ssl_idx *d, const char *out, const char *const *class_names, int num_classes,
                        uint64_t limit);

typedef enum { SSL_FILTER_BOX = 0, SSL_FILTER_BILINEAR = 1 } ssl_filter;
/* Resamples the box (bx, by, bw, bh) of src (sw x sh x c, row stride
   sw*c) to dw x dh. Shrinking is antialiased (the filter widens with the
   scale). Output is uint8 (rounded) when dst_f32 is NULL, else float in
   [0, 255] without rounding. scratch is reused between calls. */
SSLDEF void ssl_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                         uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, ssl_buf *scratch);
/* The same, with float output multiplied by `gain` (1/255 gives [0, 1]). */
SSLDEF void ssl__resample_gain(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                               uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, float gain,
                               ssl_buf *scratch);
/* The loader's fast path: the same result in 16-bit fixed point with AVX2
   (uint8 within 1 of the above, float within 0.01 in 0..255 units; 4-5x
   faster on 224-pixel crops); without AVX2, or when one lane's taps do not
   fit its 16-byte window (shrinking beyond ~3x), it is the above. */
SSLDEF void ssl__resample_fast(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                               uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, float gain,
                               ssl_buf *scratch);
/* The loader's float path in one pass (RGB, bilinear): the uint8 result of
   ssl__resample_fast bit for bit, mirrored when `flip`, then per value
   x = q / range, solarized (x >= threshold: 1 - x), and (x - mean[c]) /
   std[c] (0 and 1 for none): the float ops ssl_augment_apply_ex does on the
   same uint8 crop. `stream`: non-temporal stores (dst 32-byte aligned, for
   outputs larger than the caches). Returns -1, touching nothing, where the
   fast path does not apply (no AVX2, or shrinking too much); the caller then
   resamples to uint8 and finishes in a second pass. src, ox, oy: as
   ssl__resample_fast_at. */
typedef struct {
    float range, threshold, mean[3], std[3];
    /* ssl__rs_post_init: reciprocals as float pairs (hi + lo), and whether
       a / b as fma(a, hi, a * lo) gives the divisions' results for every
       uint8 value (checked exhaustively), so the vector pass need not divide */
    float rrange, rrange_lo, rstd[3], rstd_lo[3];
    int exact;
} ssl__rs_post;
SSLDEF void ssl__rs_post_init(ssl__rs_post *p);
SSLDEF int ssl__resample_post(const uint8_t *src, int sw, int sh, int ox, int oy, double bx, double by, double bw,
                              double bh, float *dst, int dw, int dh, int flip, const ssl__rs_post *post, int stream,
                              ssl_buf *scratch);
/* ssl__resample_fast on a part of an image: src is sw x sh pixels at (ox, oy)
   of the image, the box is in the image's coordinates (the taps are those of
   the whole image, so the result is too). -1 where the fast path does not
   apply. */
SSLDEF int ssl__resample_fast_at(const uint8_t *src, int sw, int sh, int c, int ox, int oy, double bx, double by,
                                 double bw, double bh, uint8_t *dst_u8, int dw, int dh, ssl_buf *scratch);

/* ========================================================================
   5. Augment
   Owns: the augmentations of joint-embedding SSL as torchvision.transforms.v2
   defines them on float images in [0, 1] (RandomResizedCrop, horizontal
   flip, ColorJitter, grayscale, Gaussian blur, solarization, Gaussian noise,
   normalize), the per-view recipes that say which ones a view gets, and the
   named presets of the papers (SimCLR, BYOL, FFCV-SSL).

   Two steps per view. ssl_view_draw turns (recipe, seed, epoch, sample,
   view) into ssl_aug_params: every random choice, fixed, each op from its
   own Philox stream, so the same key always gives the same view and adding
   an op never shifts another's numbers. ssl_augment_apply then applies the
   params to an image that ssl_resample already cropped and resized.

   The per-pixel math is below as static inline SSL_HD functions (ssl_px_*):
   the CPU loops here and the CUDA kernels in ssl.cu call the same code.
   Images are interleaved RGB float (h x w x 3). The CPU path works on
   planar copies in scratch, fusing the pointwise ops in L1-sized chunks, so
   the compiler vectorizes every loop (at -O3, the Makefile's default: GCC
   12's -O2 vectorizes almost none and a view costs ~5x more); the steady
   state allocates nothing.

   Where this differs from torchvision (all documented at the op):
     - blur is separable (torchvision convolves with the k x k outer product):
       same math, float rounding differs by ~1e-7; the kernel radius is
       clipped to min(w, h) - 1 where torch's reflect padding would refuse;
     - contrast's image mean is summed in float lanes then double (torch sums
       in float): ~1e-7 apart;
     - noise uses our own Philox-keyed normals (torch has no such op).
   ======================================================================== */

/* One view's recipe: which ops, their strengths, the output size. */
typedef struct {
    int out_w, out_h;
    float scale_min, scale_max, ratio_min, ratio_max;     /* RandomResizedCrop (0.08,1) (3/4,4/3); ratio 0,0 = the
                                                             image's own aspect ratio (with scale 1,1: no crop) */
    float flip_p;                                          /* 0.5 */
    float jitter_p, brightness, contrast, saturation, hue; /* ColorJitter strengths */
    float gray_p;
    float blur_p, blur_sigma_min, blur_sigma_max;          /* (0.1, 2.0) */
    float solarize_p, solarize_threshold;                  /* threshold in [0,1], 0.5 */
    float noise_p, noise_std;                              /* additive Gaussian noise on [0,1] pixels */
    float mean[3], std[3];                                 /* normalize */
} ssl_view_recipe;

/* The parameters drawn for one (sample, view): everything random, fixed. */
typedef struct {
    float crop_x, crop_y, crop_w, crop_h;  /* integer-valued box in source pixels (torchvision's RRC) */
    int flip;
    int jitter;                            /* jitter applied? */
    float brightness, contrast, saturation, hue; /* factors (1 = identity) and hue shift (0 = identity) */
    uint8_t order[4];                      /* permutation of 0=brightness,1=contrast,2=saturation,3=hue */
    int gray;
    float blur_sigma;                      /* 0 = no blur */
    int solarize;
    float solarize_threshold;
    float noise_std;                       /* 0 = no noise */
    uint64_t noise_seed;                   /* noise is drawn per pixel from Philox keyed by this seed and the pixel index */
} ssl_aug_params;

/* The identity: nothing applied, factors 1, order 0 1 2 3, crop box 0. */
SSLDEF ssl_aug_params ssl_aug_identity(void);

/* torchvision RandomResizedCrop.get_params: 10 attempts with area fraction
   uniform in [scale_min, scale_max] and log-uniform aspect ratio, then the
   centre-crop fallback (clamp ratio into [ratio_min, ratio_max]). Returns 1 if
   the fallback was taken. Box x, y, w, h written to box[4] (integers).
   w and h round half to even as Python's round() does. ratio_min <= 0 means
   the source's own aspect ratio for both bounds. */
SSLDEF int ssl_rrc_sample(ssl_rng *r, int src_w, int src_h, float scale_min, float scale_max,
                          float ratio_min, float ratio_max, float box[4]);
/* Draws every parameter of one view from streams keyed (seed, epoch, sample, view, op):
   CROP, FLIP, JITTER (apply, order, then the four factors), GRAY, BLUR (apply,
   sigma), SOLARIZE, NOISE (apply, 64-bit seed for the per-pixel normals). A
   jitter strength of 0 gives exactly the identity factor. */
SSLDEF ssl_aug_params ssl_view_draw(const ssl_view_recipe *r, int src_w, int src_h,
                                    uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view);
/* Applies flip, jitter (in p->order), grayscale, blur, solarize, noise IN PLACE to an
   interleaved RGB float image in [0,1] (h x w x 3, already cropped and resized).
   Does not normalize. scratch holds about 4*w*h floats after the first call. */
SSLDEF void ssl_augment_apply(const ssl_aug_params *p, float *img, int w, int h, ssl_buf *scratch);
/* The pointwise colour ops p applies, in order: jitter's ops that are not
   identities in p's random order (0 brightness, 1 contrast, 2 saturation,
   3 hue), then 4 gray. Returns the count (at most 5). The CPU path and the
   GPU kernel both build their chain with it. */
SSLDEF int ssl_aug_chain(const ssl_aug_params *p, int ops[5]);
/* (x - mean) / std per channel, in place. */
SSLDEF void ssl_normalize(float *img, int w, int h, const float mean[3], const float std[3]);
/* ssl_augment_apply with the loader's neighbours fused in: each value is
   first divided by in_range (255 turns uint8 values into [0, 1] as
   torchvision's ToDtype(float32, scale=True) does, dividing; 1 leaves an
   image already in [0, 1] as it is) and, when
   mean and std are given, normalized last, (x - mean) / std. Same results as
   scaling, ssl_augment_apply and ssl_normalize one after another, bit for
   bit, in fewer passes over the image. */
SSLDEF void ssl_augment_apply_ex(const ssl_aug_params *p, float *img, int w, int h, float in_range,
                                 const float mean[3], const float std[3], ssl_buf *scratch);
/* Named presets: "simclr", "byol", "crop_gray", "crop_flip", "noise"; view index matters for byol
   (asymmetric). Returns -1 with an error naming the preset and listing valid ones.
   All: out_res x out_res, ImageNet mean/std, solarize threshold 0.5, blur
   sigma in [0.1, 2.0] with kernel 2*ceil(3 sigma)+1 (SimCLR used 10% of the
   side), RandomResizedCrop (0.08, 1) (3/4, 4/3) and flip 0.5 unless said.
     simclr     jitter 0.8 (0.4, 0.4, 0.2, 0.1), gray 0.2, blur 0.5; views alike
     byol       jitter 0.8 (0.4, 0.4, 0.2, 0.1), gray 0.2; even views blur 1.0,
                odd views blur 0.1 and solarize 0.2 (BYOL's T and T')
     crop_gray  crop, flip, gray 0.2 only (FFCV-SSL's cheap recipe)
     crop_flip  crop and flip only: no colour op (the data work of a
                supervised baseline, and of bench/gpu_step_torch.py's step)
     noise      the whole image resized (scale 1,1, the image's own ratio), no
                flip, Gaussian noise p 1.0 with std 0.1 on [0, 1] pixels */
SSLDEF int ssl_view_preset(const char *name, int view, int out_res, ssl_view_recipe *out);
/* Instance-SimCLR's negative (FFCV-SSL paper, section 3.4): a random
   patch of area fraction `scale` of the image, in its own aspect ratio,
   resized to out_res; no flip, colour or noise. Its positives are the
   "noise" preset's views. -1 unless 0 < scale <= 1. */
SSLDEF int ssl_view_patch(int out_res, float scale, ssl_view_recipe *out);
/* Checks a recipe's fields (probabilities in [0,1], ranges ordered and
   positive, hue <= 0.5, std > 0); -1 with a message naming the field. */
SSLDEF int ssl_view_recipe_check(const ssl_view_recipe *r);

/* ---- per-pixel math, shared by host and device -------------------------
   Each mirrors torchvision's tensor formula step by step so the float
   results agree to rounding (FMA where torch's vectorized add-with-alpha
   uses one). */

#if defined(__CUDA_ARCH__) || defined(__FMA__)
#define SSL__FMAF(a, b, c) fmaf(a, b, c)
#else
#define SSL__FMAF(a, b, c) ((a) * (b) + (c)) /* no hardware FMA: libm's fmaf would be a slow call */
#endif

/* Ternaries, not fminf/fmaxf: those have NaN rules that keep GCC from
   inlining them, so every call would be a libm call and nothing vectorizes.
   (A NaN passes through, as with torch.clamp.) */
static inline SSL_HD float ssl__maxf(float a, float b) { return a > b ? a : b; }
static inline SSL_HD float ssl__minf(float a, float b) { return a < b ? a : b; }
static inline SSL_HD float ssl_px_clamp01(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

/* floor(x) as an int, for |x| < 2^31: floorf itself only vectorizes under
   -fno-trapping-math; truncation and an integer fix-up always do. */
static inline SSL_HD int ssl__floori(float x) {
    int i = (int)x;
    return i - ((float)i > x);
}

/* rgb_to_grayscale: r*0.2989 + g*0.587 + b*0.114 (torch: r.mul(.2989).add_(g, alpha=.587).add_(b, alpha=.114)) */
static inline SSL_HD float ssl_px_gray(float r, float g, float b) {
    return SSL__FMAF(b, 0.114f, SSL__FMAF(g, 0.587f, r * 0.2989f));
}

/* adjust_brightness: clamp(x * f) */
static inline SSL_HD float ssl_px_brightness(float x, float f) { return ssl_px_clamp01(x * f); }

/* torchvision _blend: clamp(x * ratio + y * (1 - ratio)); contrast blends
   with the image's mean gray, saturation with the pixel's gray. */
static inline SSL_HD float ssl_px_blend(float x, float y, float ratio) {
    return ssl_px_clamp01(SSL__FMAF(y, 1.0f - ratio, x * ratio));
}

/* adjust_hue: torchvision's _rgb_to_hsv, h = (h + shift) mod 1, _hsv_to_rgb.
   Grey pixels get h = s = 0; when channels tie for the max, r wins over g
   over b. Written so that no float operation sits in only one arm of a
   select: torch's own trick of multiplying by 0/1 masks (the sums are the
   same floats), floors for the mods, selects between values already
   computed. Otherwise GCC sinks the operation into a branch, cannot
   if-convert it (float ops may trap) and the loop stays scalar. */
static inline SSL_HD void ssl_px_hue(float *pr, float *pg, float *pb, float shift) {
    float r = *pr, g = *pg, b = *pb;
    float maxc = ssl__maxf(r, ssl__maxf(g, b)), minc = ssl__minf(r, ssl__minf(g, b));
    float eqc = (float)(maxc == minc); /* then range == 0: the +eqc turns 0 into 1, else adds 0 */
    float range = maxc - minc;
    float s = range / (maxc + eqc);    /* torch divides by 1 there: 0 either way */
    float div = range + eqc;
    float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    float is_r = (float)(maxc == r), is_g = (float)(maxc == g);
    float hr = (bc - gc) * is_r;
    float hg = ((rc + 2.0f) - bc) * (is_g * (1.0f - is_r));
    float hb = ((gc + 4.0f) - rc) * ((1.0f - is_r) * (1.0f - is_g));
    float h = (hr + hg) + hb;
    h = h * (1.0f / 6.0f) + 1.0f;
    h = h - (float)ssl__floori(h);     /* fmod(h, 1): h is in [5/6, 11/6] */
    h = h + shift;
    h = h - (float)ssl__floori(h);     /* torch remainder(h, 1) */
    float h6 = h * 6.0f;
    int i = ssl__floori(h6);
    float f = h6 - (float)i;
    i = i >= 6 ? 0 : i;                /* h rounded up to 1.0: sector 6 is sector 0 */
    float v = maxc, sxf = s * f, one_minus_s = 1.0f - s;
    float q = ssl_px_clamp01((1.0f - sxf) * v);
    float t = ssl_px_clamp01((sxf + one_minus_s) * v);
    float p = ssl_px_clamp01(one_minus_s * v);
    /* sector i -> (r, g, b): 0 vtp 1 qvp 2 pvt 3 pqv 4 tpv 5 vpq, as chains
       of two-way selects (GCC gives up on a many-way one) */
    float ro = p, go = p, bo = p;
    ro = i == 4 ? t : ro;
    ro = i == 1 ? q : ro;
    ro = i == 0 ? v : ro;
    ro = i == 5 ? v : ro;
    go = i == 3 ? q : go;
    go = i == 0 ? t : go;
    go = i == 1 ? v : go;
    go = i == 2 ? v : go;
    bo = i == 5 ? q : bo;
    bo = i == 2 ? t : bo;
    bo = i == 3 ? v : bo;
    bo = i == 4 ? v : bo;
    *pr = ro, *pg = go, *pb = bo;
}

/* solarize: x >= threshold -> 1 - x */
static inline SSL_HD float ssl_px_solarize(float x, float threshold) { return x >= threshold ? 1.0f - x : x; }

/* The noise helpers are inlined into the pixel loop, or it cannot vectorize. */
#if defined(__CUDACC__)
#define SSL__HD_INLINE static __forceinline__ SSL_HD
#elif defined(__GNUC__)
#define SSL__HD_INLINE static inline __attribute__((always_inline)) SSL_HD
#else
#define SSL__HD_INLINE static inline SSL_HD
#endif

/* Bit casts that work in C and CUDA. */
static inline SSL_HD uint32_t ssl__f2u(float x) { union { float f; uint32_t u; } c; c.f = x; return c.u; }
static inline SSL_HD float ssl__u2f(uint32_t x) { union { float f; uint32_t u; } c; c.u = x; return c.f; }

/* ln(x) for normal x > 0, branch-free (Cephes logf polynomial; absolute
   error < 5e-7 on [2^-24, 1], the range the noise uses). */
SSL__HD_INLINE float ssl__log(float x) {
    uint32_t u = ssl__f2u(x);
    float e = (float)((int)(u >> 23) - 126);
    float m = ssl__u2f((u & 0x007FFFFFu) | 0x3F000000u); /* [0.5, 1) */
    int lo = m < 0.70710678f;
    e = lo ? e - 1.0f : e;
    m = lo ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292E-2f;
    y = y * m - 1.1514610310E-1f;
    y = y * m + 1.1676998740E-1f;
    y = y * m - 1.2420140846E-1f;
    y = y * m + 1.4249322787E-1f;
    y = y * m - 1.6668057665E-1f;
    y = y * m + 2.0000714765E-1f;
    y = y * m - 2.4999993993E-1f;
    y = y * m + 3.3333331174E-1f;
    y = y * m * z;
    y += -2.12194440E-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}

/* sqrt(x) for x >= 0 (0 gives 0): the bit-trick reciprocal square root and
   three Newton steps (~1e-7 relative). libm's sqrtf keeps GCC from
   vectorizing (it may set errno); this is also the same code on the GPU. */
SSL__HD_INLINE float ssl__sqrt_pos(float x) {
    float y = ssl__u2f(0x5F3759DFu - (ssl__f2u(x) >> 1));
    float hx = 0.5f * x;
    y = y * (1.5f - hx * y * y);
    y = y * (1.5f - hx * y * y);
    y = y * (1.5f - hx * y * y);
    return x * y;
}

/* sin and cos of 2*pi*u for u in [0, 1), branch-free (Cephes polynomials
   on [-pi/4, pi/4] after an exact quadrant reduction). */
SSL__HD_INLINE void ssl__sincos2pi(float u, float *s, float *c) {
    int k = ssl__floori(u * 4.0f + 0.5f);              /* nearest quarter turn, 0..4 */
    float x = (u - (float)k * 0.25f) * 6.28318530718f; /* u - k/4 is exact: |x| <= pi/4 */
    float z = x * x;
    float sp = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * x + x;
    float cp = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z - 0.5f * z + 1.0f;
    /* quadrant k: (sin, cos) = (sp, cp) (cp, -sp) (-sp, -cp) (-cp, sp) */
    k &= 3;
    float ss = k & 1 ? cp : sp, cc = k & 1 ? sp : cp;
    ss = k & 2 ? -ss : ss;
    cc = (k + 1) & 2 ? -cc : cc;
    *s = ss;
    *c = cc;
}

/* Three standard normals for pixel `pixel` of a view: one Philox4x32-10
   block at counter (pixel, 0, 0, 0) under key `seed`, two Box-Muller pairs
   (the fourth normal is dropped). */
SSL__HD_INLINE void ssl_px_normal3(uint64_t seed, uint32_t pixel, float z[3]) {
    ssl_u32x4 c;
    c.v[0] = pixel; c.v[1] = 0; c.v[2] = 0; c.v[3] = 0;
    ssl_u32x4 o = ssl_philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    /* uniforms in (0, 1] for the log, [0, 1) for the angle (24 bits each) */
    float u0 = ((float)(o.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);
    float u1 = (float)(o.v[1] >> 8) * (1.0f / 16777216.0f);
    float u2 = ((float)(o.v[2] >> 8) + 1.0f) * (1.0f / 16777216.0f);
    float u3 = (float)(o.v[3] >> 8) * (1.0f / 16777216.0f);
    float r0 = ssl__sqrt_pos(-2.0f * ssl__log(u0)), r1 = ssl__sqrt_pos(-2.0f * ssl__log(u2));
    float s0, c0, s1, c1;
    ssl__sincos2pi(u1, &s0, &c0);
    ssl__sincos2pi(u3, &s1, &c1);
    z[0] = r0 * c0;
    z[1] = r0 * s0;
    z[2] = r1 * c1;
}

/* Gaussian blur kernel: radius and the one-sided weights k[0..radius]
   (k[j] = exp(-j^2 / (2 sigma^2)) / sum over -radius..radius). Kernel size
   2*ceil(3*sigma)+1 as the FFCV-SSL/BYOL recipes use, radius clipped to
   min(w, h) - 1 so reflect padding stays defined (torch would refuse such a
   small image) and at SSL_BLUR_MAX_RADIUS (sigma > 21); a clipped kernel
   is renormalized. k must hold SSL_BLUR_MAX_RADIUS + 1 floats. */
#define SSL_BLUR_MAX_RADIUS 64
static inline SSL_HD int ssl_blur_kernel(float sigma, int w, int h, float *k) {
    int rad = (int)ceilf(3.0f * sigma);
    int lim = (w < h ? w : h) - 1;
    if (rad > lim) rad = lim;
    if (rad > SSL_BLUR_MAX_RADIUS) rad = SSL_BLUR_MAX_RADIUS;
    if (rad < 0) rad = 0;
    double sum = 1.0, e[SSL_BLUR_MAX_RADIUS + 1];
    e[0] = 1.0;
    for (int j = 1; j <= rad; j++) {
        e[j] = exp(-(double)j * j / (2.0 * (double)sigma * sigma));
        sum += 2.0 * e[j];
    }
    for (int j = 0; j <= rad; j++) k[j] = (float)(e[j] / sum);
    return rad;
}

/* Reflect an index into [0, n) (torch 'reflect': the edge is not repeated);
   valid for -n < i < 2n - 1. */
static inline SSL_HD int ssl__reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

/* ========================================================================
   6. Loader
   Owns: turning a pack into batches of views. Epoch order (random,
   quasi-random by pages, sequential) and rank sharding; worker threads that
   fill a ring of batches sample by sample; each sample decoded once (JPEG
   scaled in the DCT when every crop allows) and all its views cut from it.
   Everything random comes from the RNG keyed by (seed, epoch, sample id,
   view, op), so batches do not depend on the thread count and a run that
   starts at batch k of epoch e sees what a run from the start saw there.
   ======================================================================== */
#define SSL_MAX_VIEWS 8
typedef enum { SSL_ORDER_RANDOM = 0, SSL_ORDER_QUASI = 1, SSL_ORDER_SEQUENTIAL = 2 } ssl_order;

typedef struct {
    const char *path;        /* the .ssl pack */
    int batch_size;
    int num_views;
    ssl_view_recipe views[SSL_MAX_VIEWS];
    int order;               /* ssl_order */
    int quasi_pages;         /* quasi-random: pages shuffled together (default 8) */
    int drop_last;           /* drop the last partial batch (default 1) */
    int rank, world;         /* this process's share of each epoch */
    int threads;             /* workers (0 = all cores) */
    int batches_ahead;       /* ring size (default 3) */
    int output_u8;           /* GPU mode: uint8 crops + parameters, no colour ops */
    void *(*u8_alloc)(size_t bytes, const char *what); /* GPU mode: allocates the uint8 views (ssl_cuda_host_alloc:
                                                         page-locked, copied asynchronously); NULL = host memory */
    void (*u8_free)(void *p);                           /* frees what u8_alloc gave */
    int dct_scale;           /* let libjpeg-turbo downscale in the DCT when crops allow (default 1) */
    uint64_t seed;
} ssl_loader_config;

typedef struct {
    int epoch;
    int64_t index;           /* batch number within the epoch */
    int n;                   /* samples in this batch */
    int num_views;
    int w[SSL_MAX_VIEWS], h[SSL_MAX_VIEWS];
    float *views[SSL_MAX_VIEWS];      /* float mode: n x h x w x 3, augmented and normalized */
    uint8_t *views_u8[SSL_MAX_VIEWS]; /* u8 mode: n x h x w x 3, cropped and resized only */
    ssl_aug_params *params[SSL_MAX_VIEWS]; /* n per view, both modes */
    uint32_t *labels;
    uint64_t *ids;           /* sample ids (index in the pack) */
} ssl_batch;

typedef struct {
    int64_t samples;         /* decoded since open */
    int64_t decode_failures; /* records that failed to decode (each replaced) */
    double worker_busy_s;    /* summed over workers */
    double wait_s;           /* consumer time blocked in ssl_loader_next */
} ssl_loader_stats;

typedef struct ssl_loader ssl_loader;
SSLDEF void ssl_loader_config_init(ssl_loader_config *c, const char *path, const char *preset, int res, int batch_size);
SSLDEF ssl_loader *ssl_loader_open(const ssl_loader_config *c);
/* Starts (or restarts) epoch `epoch` at batch `first_batch`: batches before
   it are skipped without being decoded. */
SSLDEF int ssl_loader_start_epoch(ssl_loader *l, int epoch, int64_t first_batch);
/* The next batch of the epoch, or NULL when the epoch is done. The batch
   stays valid until ssl_loader_release; release batches in order. */
SSLDEF const ssl_batch *ssl_loader_next(ssl_loader *l);
SSLDEF void ssl_loader_release(ssl_loader *l, const ssl_batch *b);
SSLDEF int64_t ssl_loader_batches_per_epoch(const ssl_loader *l);
SSLDEF int64_t ssl_loader_samples_per_epoch(const ssl_loader *l);
/* Names the epoch that comes after the one started, with its resolution
   (0: the views' present size), so that the workers go on into its first
   batches while this epoch's last ones are consumed: the ring is not
   drained at the epoch boundary. ssl_loader_start_epoch(l, epoch, 0), once
   every batch of this epoch is released and with that resolution, then
   goes on with the batches filled; any other start discards them. Returns
   0 when queued, 1 when not (the views are bigger than the ring's buffers:
   that start drains the ring and grows them), -1 on error. */
SSLDEF int ssl_loader_queue_epoch(ssl_loader *l, int epoch, int res);
/* New output resolution for every view, from the next start_epoch on
   (progressive resolution). */
SSLDEF int ssl_loader_set_resolution(ssl_loader *l, int res);
SSLDEF ssl_loader_stats ssl_loader_get_stats(const ssl_loader *l);
SSLDEF const ssl_pack *ssl_loader_pack(const ssl_loader *l);
SSLDEF void ssl_loader_close(ssl_loader *l);
/* The epoch's sample order for this rank (samples_per_epoch ids): of the
   epoch's one order, rank r takes the r-th slice of `batch` samples of
   every global batch of batch * world, and the r-th equal share of a last
   partial one. So N ranks' batches k, side by side, are one rank's batch k
   of batch * N samples. */
SSLDEF void ssl_epoch_order(const ssl_pack *p, int order, int quasi_pages, uint64_t seed, int epoch, int rank, int world,
                            int batch, uint32_t *out, int64_t *count);
/* Decodes a JPEG at the smallest libjpeg-turbo DCT scale (1/8 .. 1) whose
   size is at least need_w x need_h (full size without turbojpeg). */
SSLDEF int ssl_decode_at_least(const void *buf, size_t n, int want_c, int need_w, int need_h, ssl_buf *out, int *w,
                               int *h, int *c);
/* The loader's decode: ssl_decode_at_least, then only the rows and columns
   that the box [x0, x1) x [y0, y1) (full-size pixels) covers at that scale
   (with SSL_LIBJPEG; elsewhere, and for non-JPEG or CMYK records, all of
   them). Out: the decoded rectangle, w x h x c, at (ox, oy) in the scaled
   image of sw x sh. Its pixels are those of the full decode at that scale
   (libjpeg's partial rows may differ in their outermost pixels, so the
   rectangle keeps a margin that is never used). */
SSLDEF int ssl_decode_region(const void *buf, size_t n, int want_c, int need_w, int need_h, double x0, double y0,
                             double x1, double y1, ssl_buf *out, int *w, int *h, int *c, int *ox, int *oy, int *sw,
                             int *sh);
/* The same for a pack record whose index says the image is full_w x
   full_h: an image of any other size is refused from its header, before
   anything is decoded (the loader maps crop boxes with the index's size). */
SSLDEF int ssl__decode_region_sized(const void *buf, size_t n, int want_c, int need_w, int need_h, double x0, double y0,
                                    double x1, double y1, int full_w, int full_h, ssl_buf *out, int *w, int *h, int *c,
                                    int *ox, int *oy, int *sw, int *sh);


/* ========================================================================
   7. Tensors and ops
   Owns: the tensor (a view: pointer, shape, device), the device switch,
   GEMM, the primitives the losses are written with, and the layers, each
   an explicit forward and backward (no autograd).

   LAYOUT. Activations are NHWC, fp32 on the CPU: dim = {N, H, W, C}, the
   channel varies fastest, so a pixel's channels are contiguous and a 1x1
   convolution is one GEMM over N*H*W rows. A matrix is {rows, cols}, row-
   major; any tensor can be read as a matrix of numel/C rows of C (its last
   dim), which is how BN, linear and the primitives see it. Convolution
   weights are stored [out][kh][kw][in] (OHWI) so that a weight row matches
   an im2col row; torchvision stores [out][in][kh][kw] (OIHW):
   ssl_conv_weight_from_torch / _to_torch permute between them. Linear
   weights are [out][in], as in torch.

   DEVICES. Every op checks its tensors' shapes (an error names them),
   then dispatches on the device: CPU code here; on SSL_DEV_CUDA the
   ssl_cuda_* function of the same name in ssl.cu. A build without SSL_CUDA
   answers a GPU tensor with the error "... built without CUDA", and
   mixing devices in one call is an error too.

   GRADIENTS. Layer backwards WRITE the gradient w.r.t. their input (so it
   may share memory with dy where noted, and a fan-out is summed with
   ssl_add) and ACCUMULATE (+=) the gradients w.r.t. parameters, so a
   trainer zeroes parameter grads once per step. A NULL dx skips the input
   gradient (the first layer). Primitives accumulate every gradient they
   produce, so the terms of a loss add up; scalars are written.
   ======================================================================== */
/* Bytes of im2col rows built at once: big enough for efficient GEMMs,
   small enough to stay in cache and not to grow with the batch. */
#ifndef SSL_IM2COL_BYTES
#define SSL_IM2COL_BYTES (8u << 20)
#endif

typedef enum { SSL_DEV_CPU = 0, SSL_DEV_CUDA = 1 } ssl_device;

/* Element types of tensors (ssl_dtype): SSL_F32 everywhere on the CPU
   (the reference) and for parameters, gradients of parameters, statistics
   and losses; on the GPU the backbone's activations and their gradients
   can be SSL_BF16 (the model stores them so when ssl_cuda_precision() is
   bf16): the conv, batch norm, ReLU, pooling, add, copy and fill ops take
   them, compute in fp32 and round once when they store. Other ops refuse
   them. */
/* bf16: the top 16 bits of an IEEE fp32 (8 exponent bits, 7 mantissa). */
typedef struct { uint16_t bits; } ssl_bf16;
static inline SSL_HD float ssl_bf16_to_float(ssl_bf16 h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h.bits << 16;
    return v.f;
}
/* Round to nearest, ties to even (as cuda_bf16.h's __float2bfloat16_rn);
   NaN stays a (quiet) NaN, infinities stay infinite. */
static inline SSL_HD ssl_bf16 ssl_bf16_from_float(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    ssl_bf16 h;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) h.bits = (uint16_t)((v.u >> 16) | 0x40u);
    else h.bits = (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
    return h;
}

typedef struct {
    float *data;    /* host memory on SSL_DEV_CPU, device memory on SSL_DEV_CUDA;
                       for SSL_BF16 it addresses 2-byte elements (cast it) */
    int64_t dim[4]; /* NHWC activations; {rows, cols} matrices; {n} vectors */
    int ndim;       /* 1..4 */
    int device;     /* ssl_device */
    int dtype;      /* SSL_F32 unless made otherwise, or SSL_BF16 */
} ssl_tensor;

static inline ssl_tensor ssl_tensor_make(float *data, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    ssl_tensor t;
    t.data = data;
    t.ndim = ndim;
    t.dim[0] = d0; t.dim[1] = d1; t.dim[2] = d2; t.dim[3] = d3;
    t.device = SSL_DEV_CPU;
    t.dtype = SSL_F32;
    return t;
}
static inline ssl_tensor ssl_tensor_vec(float *data, int64_t n) { return ssl_tensor_make(data, 1, n, 1, 1, 1); }
static inline ssl_tensor ssl_tensor_mat(float *data, int64_t rows, int64_t cols) {
    return ssl_tensor_make(data, 2, rows, cols, 1, 1);
}
static inline ssl_tensor ssl_tensor_nhwc(float *data, int64_t n, int64_t h, int64_t w, int64_t c) {
    return ssl_tensor_make(data, 4, n, h, w, c);
}
/* The same view, marked as living on `device`. */
static inline ssl_tensor ssl_tensor_on(ssl_tensor t, int device) { t.device = device; return t; }
/* The same view, its memory read as elements of `dtype`. */
static inline ssl_tensor ssl_tensor_as(ssl_tensor t, int dtype) { t.dtype = dtype; return t; }
static inline int64_t ssl_tensor_numel(const ssl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dim[i];
    return n;
}
/* A tensor read as a matrix: cols = last dim, rows = the rest. */
static inline int64_t ssl_tensor_cols(const ssl_tensor *t) { return t->dim[t->ndim - 1]; }
static inline int64_t ssl_tensor_rows(const ssl_tensor *t) { return ssl_tensor_numel(t) / ssl_tensor_cols(t); }
/* Rows [start, start+count) of a tensor read as a matrix, as a matrix view. */
static inline ssl_tensor ssl_tensor_row_slice(const ssl_tensor *t, int64_t start, int64_t count) {
    int64_t c = ssl_tensor_cols(t);
    ssl_tensor s = ssl_tensor_mat((float *)((char *)t->data + (size_t)(start * c) * ssl_dtype_size(t->dtype)), count, c);
    s.device = t->device;
    s.dtype = t->dtype;
    return s;
}
/* "[2,9,7,5]" into buf; returns buf. */
SSLDEF const char *ssl_tensor_shape(const ssl_tensor *t, char *buf, size_t cap);

/* ---- GEMM ----------------------------------------------------------------
   Row-major C = alpha * op(A) op(B) + beta * C with op(A) M x K, op(B)
   K x N; trans* != 0 transposes. Host memory only: CBLAS (OpenBLAS) when
   built with SSL_OPENBLAS, plain loops otherwise. beta == 0 ignores what C
   held (NaN included), as BLAS does. */
SSLDEF void ssl_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);
/* The kernels OpenBLAS runs: their name ("Haswell", "SkylakeX", ...),
   followed by " (OPENBLAS_CORETYPE)" when that variable chose them; ""
   without OpenBLAS. An OpenBLAS built with DYNAMIC_ARCH picks them when it
   loads, from the CPU or from OPENBLAS_CORETYPE; the choice can halve
   sgemm's speed (bench/RESULTS.md), so ./train and the CPU benchmark
   print it. */
SSLDEF const char *ssl_blas_kernels(void);
/* "" when the GEMM kernels suit the CPU; otherwise a line saying that
   OpenBLAS fell back to its pre-AVX2 kernels (it picks them by CPU model,
   and an unknown model gets its oldest) on a CPU with AVX2, and what to
   set. Its AVX2 kernels are 2-3x faster on a small ResNet's GEMM
   shapes (bench/RESULTS.md). */
SSLDEF const char *ssl_blas_warning(void);
/* The loops ssl_gemm falls back to (public so tests can compare). */
SSLDEF void ssl_gemm_loops(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc);
/* The same on tensors read as matrices, on either device. */
SSLDEF int ssl_matmul(int transA, int transB, float alpha, const ssl_tensor *A, const ssl_tensor *B, float beta,
                      ssl_tensor *C);

/* ---- primitives the losses are written with --------------------------- */
SSLDEF int ssl_copy(ssl_tensor *dst, const ssl_tensor *src);  /* same numel (on the GPU also fp32 <-> bf16) */
SSLDEF int ssl_fill(ssl_tensor *t, float value);
SSLDEF int ssl_axpy(float alpha, const ssl_tensor *x, ssl_tensor *y); /* y += alpha x */
SSLDEF int ssl_dot(const ssl_tensor *a, const ssl_tensor *b, float *out); /* sum a*b, in double */
SSLDEF int ssl_fill_diagonal(ssl_tensor *m, float value);               /* m square */
/* m [rows, cols]: m[i, col0 + i] = value for every row (col0 + rows <= cols) */
SSLDEF int ssl_fill_diagonal_at(ssl_tensor *m, int64_t col0, float value);
/* y = x / max(||x_row||, 1e-12) per row, as torch's F.normalize; norm[r]
   gets ||x_r|| (unclamped). y may be x. */
SSLDEF int ssl_l2_normalize_rows(const ssl_tensor *x, ssl_tensor *y, ssl_tensor *norm);
/* dx += d(y)/d(x)^T dy, from the forward's y and norm. */
SSLDEF int ssl_l2_normalize_rows_backward(const ssl_tensor *y, const ssl_tensor *norm, const ssl_tensor *dy,
                                          ssl_tensor *dx);
/* Cross-entropy of each row of logits (-inf entries allowed: they get
   probability 0) against the class target[r] (a host array, one per row):
   *loss = scale * sum_r (logsumexp(row r) - logits[r, target[r]]),
   dlogits += scale * (softmax(row r) - onehot(target[r])). dlogits may be
   NULL. */
SSLDEF int ssl_softmax_xent_rows(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                 ssl_tensor *dlogits);
/* The same, and *correct = the rows whose first largest logit is at
   the target (top-1; NaNs are never the largest), in the same pass: on the
   GPU the logits stay on the device. */
SSLDEF int ssl_softmax_xent_rows_top1(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                      ssl_tensor *dlogits, int64_t *correct);
/* y = x - (column mean of x). y may be x. Also the backward of itself:
   the gradient of a centring is the centred gradient. */
SSLDEF int ssl_center_cols(const ssl_tensor *x, ssl_tensor *y);
/* *loss = scale * mean((a - b)^2); da += d/da, db += d/db (either NULL). */
SSLDEF int ssl_mse(const ssl_tensor *a, const ssl_tensor *b, float scale, float *loss, ssl_tensor *da,
                   ssl_tensor *db);
/* *val = scale * sum_{i != j} m_ij^2 of a square m; dm += its gradient. */
SSLDEF int ssl_offdiag_sumsq(const ssl_tensor *m, float scale, float *val, ssl_tensor *dm);
/* *val = scale * sum_i f(m_ii) of a square m; dm_ii += scale * f'(m_ii). */
typedef enum {
    SSL_DIAG_SQ_DEV_ONE, /* f(c) = (1 - c)^2: Barlow Twins' invariance term */
    SSL_DIAG_STD_HINGE   /* f(v) = relu(1 - sqrt(v + param)): VICReg's variance term on var = v */
} ssl_diag_fn;
SSLDEF int ssl_diag_penalty(const ssl_tensor *m, ssl_diag_fn fn, float param, float scale, float *val,
                            ssl_tensor *dm);

/* ---- layers ---------------------------------------------------------- */
/* Conv2d, no groups or dilation, the same stride and padding on both axes.
   x [N,H,W,Ci], w [Co,KH,KW,Ci] (OHWI, see LAYOUT), b [Co] or NULL,
   y [N,OH,OW,Co] with OH = ssl_conv_out_size(H, KH, stride, pad). A 1x1
   stride-1 unpadded conv is one GEMM on x; others go through im2col in
   blocks of at most SSL_IM2COL_BYTES kept in `scratch` (reused). */
SSLDEF int ssl_conv_out_size(int64_t in, int64_t k, int stride, int pad);
SSLDEF int ssl_conv2d_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride, int pad,
                              ssl_tensor *y, ssl_buf *scratch);
/* dx written (NULL: skipped), dw and db accumulated (db NULL: no bias). */
SSLDEF int ssl_conv2d_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                               ssl_tensor *dx, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch);
/* The same with dx accumulated onto what it holds when dx_accumulate is 1
   (a residual block adds its main path's input gradient to the shortcut's
   this way, in the GEMM or col2im that makes it, without a pass of its own). */
SSLDEF int ssl_conv2d_backward_ex(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                                  ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch);
/* Convolutions that keep their columns. ssl_conv2d_forward_cols leaves the
   whole im2col matrix in cols (at least N*OH*OW x KH*KW*Ci values of y's
   element type), and ssl_conv2d_backward_cols reads it there instead of
   building it again: the backward's im2col (the columns written, x read)
   traded for KH*KW times x's size of memory held from the forward to the
   backward. The GEMMs and their blocks are the plain ops', so are the
   results, bit for bit. cols NULL: the plain ops. A convolution that is
   one GEMM on x (1x1, stride 1, no padding, x of y's type) has no columns
   and leaves cols alone. With cols the GPU takes the GEMM path (never
   cuDNN, whose convolutions have no columns). */
SSLDEF int ssl_conv2d_forward_cols(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride, int pad,
                                   ssl_tensor *y, ssl_buf *scratch, ssl_tensor *cols);
SSLDEF int ssl_conv2d_backward_cols(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                                    ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch,
                                    const ssl_tensor *cols);
/* torch OIHW [o][i][kh][kw] <-> ours OHWI [o][kh][kw][i] (host memory). */
SSLDEF void ssl_conv_weight_from_torch(const float *oihw, float *ohwi, int o, int i, int kh, int kw);
SSLDEF void ssl_conv_weight_to_torch(const float *ohwi, float *oihw, int o, int i, int kh, int kw);

/* Batch norm over the last dim C of x (N,H,W,C or N,C: the same code),
   exactly torch.nn.BatchNorm{1,2}d: training normalizes with the batch mean
   and BIASED variance and updates the running stats with `momentum` and the
   UNBIASED variance; eval uses the running stats. */
/* the communicator of section 12 (SyncBN sums its statistics through it) */
typedef struct ssl_comm ssl_comm;
typedef struct {
    ssl_tensor weight, bias;              /* gamma, beta [C]; data NULL: no affine */
    ssl_tensor running_mean, running_var; /* [C]; data NULL: not tracked */
    float momentum, eps;                  /* torch's defaults: 0.1, 1e-5 */
    ssl_comm *comm;                       /* SyncBN: training statistics over every rank's rows
                                             (each rank the same rows); NULL: this process's */
} ssl_batchnorm;
static inline ssl_batchnorm ssl_batchnorm_default(void) {
    ssl_batchnorm bn;
    bn.weight = bn.bias = bn.running_mean = bn.running_var = ssl_tensor_vec(NULL, 0);
    bn.momentum = 0.1f;
    bn.eps = 1e-5f;
    bn.comm = NULL;
    return bn;
}
/* mean and invstd [C] receive what normalized x (batch or running stats);
   backward reads them. y may be x only if no backward follows. */
SSLDEF int ssl_batchnorm_forward(ssl_batchnorm *bn, int training, const ssl_tensor *x, ssl_tensor *y,
                                 ssl_tensor *mean, ssl_tensor *invstd);
/* dx written (NULL: skipped; may be dy), dweight/dbias accumulated
   (NULL: skipped). `training` must match the forward's. */
SSLDEF int ssl_batchnorm_backward(const ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *dy,
                                  const ssl_tensor *mean, const ssl_tensor *invstd, ssl_tensor *dx,
                                  ssl_tensor *dweight, ssl_tensor *dbias);
/* The same with what follows a ResNet's batch norms fused into its passes
   over memory: y = relu(BN(x) + residual) in the one output pass (residual
   NULL: none; relu 0: none), and in the backward the ReLU's mask (dy taken
   as 0 where the forward's output relu_y <= 0; NULL: no ReLU) applied as dy
   is read, so neither the add nor the ReLU costs a pass of its own. The
   same bits as the separate ops. y may be residual. */
SSLDEF int ssl_batchnorm_forward_act(ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                                     int relu, ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd);
SSLDEF int ssl_batchnorm_backward_act(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                      const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                      const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight, ssl_tensor *dbias);
/* ssl_batchnorm_backward_act that also stores dy through the ReLU's mask
   in dy_relu (may be dy itself; not dx; needs relu_y and dx): a residual
   block's output gradient, which its shortcut takes as well, written by
   the input-gradient pass at the cost of the store alone, where a ReLU
   backward of its own would read and write it again. dy_relu NULL:
   ssl_batchnorm_backward_act. */
SSLDEF int ssl_batchnorm_backward_ex(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                     const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                     const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight, ssl_tensor *dbias,
                                     ssl_tensor *dy_relu);
/* On the GPU: ssl_batchnorm_forward_act with the ReLU, also writing its
   output's ReLU mask as bits: mask is an SSL_U8 tensor of at least
   (numel(x) + 7) / 8 bytes, bit i % 8 of byte i / 8 set where y[i] > 0.
   ssl_batchnorm_backward_act (relu_y) and ssl_relu_backward (y) take such
   a mask in place of the output: 1 bit of traffic a value, not 2 or 4
   bytes, and the same results. */
SSLDEF int ssl_batchnorm_forward_mask(ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                                      ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd, ssl_tensor *mask);

/* y = max(x, 0); y may be x. Backward reads y (y > 0 exactly where x > 0),
   so the forward can run in place; dx may be dy. */
SSLDEF int ssl_relu_forward(const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_relu_backward(const ssl_tensor *y, const ssl_tensor *dy, ssl_tensor *dx);

/* Max pool over k x k windows (torchvision's stem: k 3, stride 2, pad 1);
   padding never wins (it is -inf), pad <= k/2 as torch requires. Ties go to
   the first maximum in window order, as torch's CPU kernel; the backward
   recomputes the winner from x instead of storing indices. */
SSLDEF int ssl_maxpool2d_forward(const ssl_tensor *x, int k, int stride, int pad, ssl_tensor *y);
SSLDEF int ssl_maxpool2d_backward(const ssl_tensor *x, const ssl_tensor *dy, int k, int stride, int pad,
                                  ssl_tensor *dx);

/* Global average pool: x [N,H,W,C] -> y [N,C] (or [N,1,1,C]). */
SSLDEF int ssl_avgpool_forward(const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_avgpool_backward(const ssl_tensor *dy, ssl_tensor *dx);

/* y = x W^T + b: x [rows, in] (any tensor with last dim in), w [out][in],
   b [out] or NULL, y [rows, out]. dx written (NULL: skipped), dw/db
   accumulated. */
SSLDEF int ssl_linear_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, ssl_tensor *y);
SSLDEF int ssl_linear_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, ssl_tensor *dx,
                               ssl_tensor *dw, ssl_tensor *db);

/* y = a + b (same shapes; y may be a or b): the residual add, and the sum
   of gradients where a tensor fans out. Its backward hands dy to both
   inputs: da = db = dy (written; a pointer equal to dy's is left alone). */
SSLDEF int ssl_add(const ssl_tensor *a, const ssl_tensor *b, ssl_tensor *y);
SSLDEF int ssl_add_backward(const ssl_tensor *dy, ssl_tensor *da, ssl_tensor *db);

/* ---- the per-element math, shared with ssl.cu -------------------------- */
#define SSL_L2_NORM_EPS 1e-12f /* F.normalize's clamp */

static inline SSL_HD float ssl__relu(float x) { return x < 0.0f ? 0.0f : x; } /* NaN passes, as in torch */
/* Max pool's comparison, as torch's: a larger value or a NaN takes over,
   so the first maximum of a window wins and a NaN propagates. */
static inline SSL_HD int ssl__pool_takes(float best, float v) { return v > best || v != v; }
static inline SSL_HD float ssl__relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }
/* a*b + c with the product rounded before the add, on both devices. nvcc
   would contract it into one FMA (one rounding) and the host, built with
   -ffp-contract=off, does not: where the terms cancel (batch norm of an
   input with a large mean, x*scale ~ -shift) the two results then differ
   by an ulp of the product, far more than an ulp of the result (seen on
   an H100 and an H200). */
static inline SSL_HD float ssl__mul_add(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(__fmul_rn(a, b), c);
#else
    return a * b + c;
#endif
}
/* BN as one multiply-add per element: scale = gamma*invstd,
   shift = beta - mean*scale (torch's CPU kernel folds it the same way). */
static inline SSL_HD float ssl__bn_apply(float x, float scale, float shift) { return ssl__mul_add(x, scale, shift); }
static inline SSL_HD float ssl__bn_running(float run, float batch, float momentum) {
    return (1.0f - momentum) * run + momentum * batch;
}
/* dx of training BN: gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)),
   the batch statistics' share of the gradient removed. */
static inline SSL_HD float ssl__bn_grad_input(float dy, float x, float mean, float invstd, float gamma, float mean_dy,
                                              float mean_dy_xhat) {
    float xhat = (x - mean) * invstd;
    return gamma * invstd * (dy - mean_dy - xhat * mean_dy_xhat);
}
static inline SSL_HD float ssl__l2n_inv(float norm) { return 1.0f / (norm > SSL_L2_NORM_EPS ? norm : SSL_L2_NORM_EPS); }
/* Gradient of y = x/||x|| for one element: (dy - y (y.dy)) / ||x||; below
   the clamp the divisor is a constant and the gradient just dy/eps. */
static inline SSL_HD float ssl__l2n_grad(float y, float dy, float y_dot_dy, float norm) {
    return norm > SSL_L2_NORM_EPS ? (dy - y * y_dot_dy) / norm : dy / SSL_L2_NORM_EPS;
}
/* The first index of a row's largest value (a NaN is never larger): top-1
   on both devices. */
static inline SSL_HD int64_t ssl__top1(const float *row, int64_t c) {
    int64_t best = 0;
    for (int64_t j = 1; j < c; j++)
        if (row[j] > row[best]) best = j;
    return best;
}
/* Barlow Twins' diagonal: (1 - c)^2. */
static inline SSL_HD float ssl__sq_dev_one(float c, float *grad) {
    *grad = 2.0f * (c - 1.0f);
    return (1.0f - c) * (1.0f - c);
}
/* VICReg's hinge on the standard deviation: relu(1 - sqrt(var + eps)),
   zero gradient at and beyond the hinge as torch's relu. */
static inline SSL_HD float ssl__std_hinge(float var, float eps, float *grad) {
    float s = sqrtf(var + eps);
    *grad = s < 1.0f ? -0.5f / s : 0.0f;
    return s < 1.0f ? 1.0f - s : 0.0f;
}

/* ========================================================================
   8. Models (the parameter table)
   Owns: where parameters live. One allocation each for values and
   gradients, carved into named tensors by a table whose names are
   torchvision's state_dict names ("layer1.0.conv1.weight"), so export is a
   loop and weight-decay / LARS exclusions are a rule on the table.
   ======================================================================== */
typedef enum {
    SSL_PARAM_WEIGHT = 0,    /* conv / linear weight: decayed, LARS-adapted */
    SSL_PARAM_BIAS = 1,      /* linear bias: excluded */
    SSL_PARAM_BN_WEIGHT = 2, /* batch-norm gamma: excluded */
    SSL_PARAM_BN_BIAS = 3,   /* batch-norm beta: excluded */
    SSL_PARAM_BUFFER = 4     /* running statistics: saved, not trained */
} ssl_param_kind;
typedef struct {
    char name[96];
    int kind, ndim;
    int64_t shape[4];
    int64_t offset, numel;   /* into the table's flat buffers */
} ssl_param;
typedef struct {
    ssl_param *p;
    int n, cap;
    int64_t total;           /* floats */
    float *data, *grad;      /* grad is zero for buffers; device memory when dev is SSL_DEV_CUDA */
    int dev;                 /* where data and grad live (ssl_params_to_device moves them) */
    float *host;             /* on the GPU: a host copy of data, filled by ssl_params_download */
} ssl_param_table;
/* Adds a tensor (before ssl_params_alloc); returns its index. */
SSLDEF int ssl_params_add(ssl_param_table *t, const char *name, int kind, int ndim, const int64_t *shape);
SSLDEF void ssl_params_alloc(ssl_param_table *t);
SSLDEF void ssl_params_free(ssl_param_table *t);
SSLDEF int ssl_params_find(const ssl_param_table *t, const char *name);
/* Moves data and grad to the GPU (values copied, gradients zeroed). The
   host copy t->host keeps the values for ssl_params_download /
   ssl_params_upload (checkpoints, export). -1 in a build without CUDA. */
SSLDEF int ssl_params_to_device(ssl_param_table *t);
SSLDEF void ssl_params_download(const ssl_param_table *t); /* device data -> t->host */
SSLDEF void ssl_params_upload(ssl_param_table *t);         /* t->host -> device data */
/* The values on the host: data, or the host copy of a table on the GPU
   (as of the last download). */
static inline float *ssl_params_host(const ssl_param_table *t) { return t->dev ? t->host : t->data; }
static inline float *ssl_param_data(const ssl_param_table *t, int i) { return t->data + t->p[i].offset; }
static inline float *ssl_param_grad(const ssl_param_table *t, int i) { return t->grad + t->p[i].offset; }
/* The exclusion rule: only conv/linear weights get weight decay and LARS
   adaptation (the reference code's "exclude_bias_and_norm", p.ndim == 1). */
static inline int ssl_param_decays(const ssl_param *p) { return p->kind == SSL_PARAM_WEIGHT; }


/* ---- models ----------------------------------------------------------------
   A model is a backbone (ResNet-18/34/50, torchvision's v1.5 topology: the
   bottleneck's stride on its 3x3, downsample = 1x1 conv with stride + BN),
   followed by up to two MLP heads: the projector and (BYOL) the predictor.
   It is a flat list of layers, each "conv or linear, then optional BN, then
   optional ReLU", and a list of residual blocks over it; forward and
   backward walk the lists explicitly (no autograd).

   PARAMETERS live in the model's ssl_param_table, registered in
   torchvision's state_dict order under its names ("conv1.weight",
   "layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight", ...).
   Conv weights are stored OHWI and their recorded shape is ours
   [O,KH,KW,I] (ssl_params_to_torch permutes to OIHW). BN running_mean and
   running_var are SSL_PARAM_BUFFER; torch's num_batches_tracked is not
   kept (an exporter writes it as the int64 number of training forwards,
   which no computation here depends on, momentum being fixed). There is no
   "fc": the backbone ends at the global average pool.
   The heads are nn.Sequential's names: for a spec "h1-h2-...-out" layer i
   (0-based) of L = number of widths occupies indices 3i (Linear), 3i+1
   (BatchNorm1d), 3i+2 (ReLU, no parameters); the last Linear is index
   3(L-1). So "2048-2048-128" gives projector.0.{weight,bias},
   projector.1.{weight,bias,running_mean,running_var}, projector.3.*,
   projector.4.*, projector.6.weight. Hidden Linears have a bias (VICReg's
   reference), the projector's last has none, the predictor's last has one
   (BYOL's reference).

   INIT as torchvision: conv kaiming_normal_(fan_out, relu), i.e.
   N(0, 2/(out*kh*kw)); BN gamma 1 (0 for each block's last BN with
   zero_init_residual), beta 0, running stats 0/1; Linear weight and bias
   U(-1/sqrt(in), 1/sqrt(in)). Tensor i of the table draws from the Philox
   stream ssl_rng_make(seed, 0, i, 0, SSL_RNG_INIT), so initial weights are
   a pure function of (seed, architecture).

   ACTIVATIONS are planned once per (batch, height, width, slots) in one
   buffer (ssl_model_plan; planning the same sizes again is free, new sizes
   re-plan). A slot holds one forward pass kept for its backward: the
   trainer uses two, one per view, so each view has its own BN batch
   statistics as in the VICReg/Barlow/BYOL reference code. Three gradient
   buffers of the largest activation's size are shared by all slots.
   On the GPU with bf16 precision (ssl_cuda_precision()) the backbone's
   activations and their gradients are stored as bf16, the rest (input,
   features, heads, BN statistics) as fp32; the plan follows a change of
   precision. */
#define SSL_MODEL_MAX_SLOTS 4
typedef struct {
    int depth;              /* 18, 34 or 50 */
    int cifar_stem;         /* 3x3 stride-1 pad-1 stem conv, no max pool */
    double width;           /* base width 64*width (>= 1 channel): 1 is torchvision's */
    int zero_init_residual; /* zero each block's last BN gamma */
    int in_channels;        /* 3 */
    char projector[256];    /* "2048-2048-128"; "" = none */
    char predictor[256];    /* "4096-256" (BYOL); "" = none */
    uint64_t seed;
} ssl_model_config;
static inline ssl_model_config ssl_model_config_default(void) {
    ssl_model_config c = {18, 0, 1.0, 0, 3, "", "", 0};
    return c;
}

typedef enum { SSL_LAYER_CONV = 0, SSL_LAYER_LINEAR = 1 } ssl_layer_type;
typedef struct {
    int type;                 /* ssl_layer_type */
    int cin, cout, k, stride, pad;
    int bn, relu;             /* followed by batch norm / ReLU */
    int w, b, gamma, beta, rmean, rvar; /* parameter indices, -1: none */
    /* planned: input offset in the slot (-1: the model's input), sizes,
       and the offsets of the layer's outputs and BN statistics, in bytes;
       the element types of its input and of its outputs (and of the
       gradients of both) */
    int64_t x, h, wd, oh, ow;
    int64_t y, ybn, mean, invstd;
    int xdtype, dtype;
    int64_t mask; /* GPU plans: the byte offset of the output's ReLU bit mask (-1: none) */
    int64_t cols; /* plans that keep columns: the byte offset of the conv's im2col matrix (-1: none) */
} ssl_layer;
typedef struct { int first, count, down; } ssl_block; /* layers [first, first+count); down: -1 = identity */

typedef struct {
    ssl_model_config c;
    ssl_param_table params;
    ssl_layer *layers;
    int nlayers, nblocks;
    ssl_block *blocks;
    int stem, maxpool;         /* stem layer index; ImageNet stem's 3x3/2 max pool */
    int proj_first, proj_count, pred_first, pred_count;
    int feat_dim, out_dim;     /* backbone features; the last head's width */
    /* plan */
    int n, h, w, slots, act_dtype; /* act_dtype: the backbone's activations */
    int64_t slot_bytes, grad_bytes, pool, feat; /* pool/feat: byte offsets */
    int64_t pool_h, pool_w, last_h, last_w, last_c;
    char *act, *grads;         /* slots * slot_bytes; 3 * grad_bytes */
    size_t act_cap, grads_cap;
    ssl_bf16 *w16;             /* bf16 storage: the parameters rounded once per forward for the GEMMs */
    int planned_masks, planned_grads;
    int forward_only;          /* 1: never runs backward (BYOL's target): no activation-gradient buffers */
    int no_masks;              /* GPU plans keep each ReLU's mask as bits (the backward reads 1 bit a value,
                                  not the 2- or 4-byte output); 1: read the outputs (the same results) */
    int keep_cols;             /* the convolutions' im2col columns kept from the forward for the backward
                                  (ssl_conv2d_forward_cols: the backward's im2col saved, the same results):
                                  -1 (ssl_model_init's default) on the GPU's GEMM path when the plan with them
                                  takes at most 3/4 of the device's memory, 0 never, 1 always */
    int planned_cols;          /* whether the current plan keeps them */
    int64_t cols_bytes;        /* their bytes per slot in the current plan (kept or not) */
    int64_t plans, allocs;     /* times planned for new sizes, and times the buffers had to grow */
    const float *input[SSL_MODEL_MAX_SLOTS];
    int training[SSL_MODEL_MAX_SLOTS];
    ssl_buf scratch;
    int dev;                   /* SSL_DEV_CPU, or SSL_DEV_CUDA after ssl_model_to_device */
    ssl_comm *comm;            /* SyncBN: batch norm in training sums its statistics over these ranks (NULL: none) */
} ssl_model;

/* Builds the layers and the parameter table and initialises the weights.
   Errors (bad depth, width or head spec) name the option. */
SSLDEF int ssl_model_init(ssl_model *m, const ssl_model_config *c);
SSLDEF void ssl_model_free(ssl_model *m);
/* Moves the parameters to the GPU; activations are then planned there and
   forward/backward take device pointers. Before the first plan. */
SSLDEF int ssl_model_to_device(ssl_model *m);
/* Plans activations for `slots` passes of n images h x w (NHWC). */
SSLDEF int ssl_model_plan(ssl_model *m, int n, int h, int w, int slots);
/* Forward of x [n,h,w,in_channels] (kept by pointer until the backward)
   into slot `slot`; training = batch statistics (and running-stat
   updates), else running statistics. */
SSLDEF int ssl_model_forward(ssl_model *m, int slot, const float *x, int training);
/* The slot's backbone features [n, feat_dim] and the last head's output
   [n, out_dim] (the features when there is no head). */
SSLDEF ssl_tensor ssl_model_features(const ssl_model *m, int slot);
SSLDEF ssl_tensor ssl_model_output(const ssl_model *m, int slot);
/* The projector's output of the slot (the features without a projector). */
SSLDEF ssl_tensor ssl_model_projection(const ssl_model *m, int slot);
/* Backward of a training forward from d(loss)/d(output) [n, out_dim]:
   ACCUMULATES into params.grad (zero them once per step). */
SSLDEF int ssl_model_backward(ssl_model *m, int slot, const ssl_tensor *dout);
/* Number of weights (not buffers). */
SSLDEF int64_t ssl_model_num_weights(const ssl_model *m);

/* Parameter i in torch's layout: conv weights OHWI -> OIHW, others as they
   are. src is in ours (NULL: the value; for a table on the GPU its host
   copy, which ssl_params_download fills); dst gets numel floats. */
SSLDEF void ssl_params_to_torch(const ssl_param_table *t, int i, const float *src, float *dst);
/* And back: torch's layout into ours. */
SSLDEF void ssl_params_from_torch(const ssl_param_table *t, int i, const float *src, float *dst);
/* Parses "2048-2048-128" into widths[] (at most max); returns the count or
   -1 with an error naming the spec. */
SSLDEF int ssl_mlp_spec_parse(const char *spec, int *widths, int max);


/* ========================================================================
   9. Losses
   Owns: the four joint-embedding objectives. Each takes the two views'
   embeddings [N, D] (row-major, same device), writes the loss and
   dL/d(inputs) (written, not accumulated; NULL skips one), and uses
   `scratch` (reused between calls, one device per buffer). They are
   written only with the primitives of section 7, so they read like the
   papers' equations and run on either device; edit them freely.
   ======================================================================== */
/* SimCLR's NT-Xent (Chen et al. 2020): z = normalize(cat(z1, z2)),
   s = z z^T / tau with s_ii = -inf, cross-entropy of row i against its
   other view (i + N mod 2N), mean over the 2N rows. */
SSLDEF int ssl_simclr_loss(const ssl_tensor *z1, const ssl_tensor *z2, float tau, float *loss, ssl_tensor *dz1,
                           ssl_tensor *dz2, ssl_buf *scratch);
/* Instance-SimCLR (FFCV-SSL paper, section 3.4): each image's only
   negative is zp, the embedding of a small patch of that same image. With
   z1, z2, zp normalized, row i of view 1 has the logits
   [z1_i . z2_i, z1_i . zp_i] / tau, row i of view 2 [z2_i . z1_i, z2_i . zp_i];
   loss = mean over the 2N rows of the cross-entropy against the first. */
SSLDEF int ssl_simclr_patch_loss(const ssl_tensor *z1, const ssl_tensor *z2, const ssl_tensor *zp, float tau, float *loss,
                                 ssl_tensor *dz1, ssl_tensor *dz2, ssl_tensor *dzp, ssl_buf *scratch);

/* VICReg (Bardes et al. 2022, their reference code): sim * mse(z1, z2)
   + std * (mean_j relu(1 - sqrt(var_j + 1e-4)) / 2, each view, var unbiased)
   + cov * (sum of off-diagonal cov^2 / D, each view, cov = x^T x / (N-1)
   of the centred view). N >= 2. */
#define SSL_VICREG_SIM 25.0f
#define SSL_VICREG_STD 25.0f
#define SSL_VICREG_COV 1.0f
#define SSL_VICREG_EPS 1e-4f
SSLDEF int ssl_vicreg_loss(const ssl_tensor *z1, const ssl_tensor *z2, float sim_coef, float std_coef,
                           float cov_coef, float *loss, ssl_tensor *dz1, ssl_tensor *dz2, ssl_buf *scratch);

/* Barlow Twins (Zbontar et al. 2021): each view standardized per dimension
   (BatchNorm1d(affine=False) in training: batch mean, biased std, eps 1e-5),
   c = z1n^T z2n / N, loss = sum_i (1 - c_ii)^2 + lambd * sum_{i!=j} c_ij^2. */
#define SSL_BARLOW_LAMBD 0.0051f
SSLDEF int ssl_barlow_loss(const ssl_tensor *z1, const ssl_tensor *z2, float lambd, float *loss, ssl_tensor *dz1,
                           ssl_tensor *dz2, ssl_buf *scratch);

/* BYOL (Grill et al. 2020): loss_fn(p, z) = 2 - 2 cos(p, z) per row;
   loss = mean(loss_fn(p1, z2)) + mean(loss_fn(p2, z1)), p the online
   predictions, z the target projections. The targets are detached: only
   dp1, dp2 are produced. */
SSLDEF int ssl_byol_loss(const ssl_tensor *p1, const ssl_tensor *p2, const ssl_tensor *z1, const ssl_tensor *z2,
                         float *loss, ssl_tensor *dp1, ssl_tensor *dp2, ssl_buf *scratch);

/* ========================================================================
   10. Optimizers and schedules
   Owns: SGD with momentum, LARS and AdamW over a parameter table, and the
   learning-rate schedule (linear warmup, cosine decay to an end ratio).
   The per-element updates are SSL_HD, shared with the GPU.
   ======================================================================== */
typedef enum { SSL_OPTIM_SGD = 0, SSL_OPTIM_LARS = 1, SSL_OPTIM_ADAMW = 2 } ssl_optim_kind;
typedef struct {
    int kind;
    double momentum;         /* SGD, LARS (0.9) */
    double weight_decay;
    double eta;              /* LARS trust coefficient (0.001) */
    double beta1, beta2, eps;/* AdamW (0.9, 0.999, 1e-8) */
} ssl_optim_config;
typedef struct {
    ssl_optim_config c;
    float *m, *v;            /* momentum / first moment, second moment (AdamW); device memory when dev */
    int64_t n, step;
    int dev;                 /* made by ssl_cuda_optim_init */
    float *host_m, *host_v;  /* on the GPU: host copies for checkpoints */
    void *dtab;              /* on the GPU: the parameter table's chunk table and LARS scratch */
} ssl_optimizer;
SSLDEF const char *ssl_optim_name(int kind);
/* The state lives where the table does (ssl_params_to_device first for
   the GPU). */
SSLDEF void ssl_optim_init(ssl_optimizer *o, const ssl_optim_config *c, const ssl_param_table *t);
SSLDEF void ssl_optim_free(ssl_optimizer *o);
/* One update of every trainable tensor with learning rate lr, on the
   table's device. -1 with an error if the optimizer's state and the table
   are on different devices, or the table is on a GPU this build cannot
   reach. */
SSLDEF int ssl_optim_step(ssl_optimizer *o, ssl_param_table *t, double lr);
/* base_lr (already scaled by batch/256 if wanted) at `step`: linear warmup
   from 0 over warmup steps, then cosine decay to base_lr * end_ratio. */
SSLDEF double ssl_lr_at(double base_lr, int64_t step, int64_t warmup, int64_t total, double end_ratio);

/* torch.optim.SGD: d = g + wd*w ; buf = m*buf + d ; w -= lr*buf */
static inline SSL_HD void ssl_sgd_update(float *w, float g, float *buf, float lr, float mom, float wd) {
    float d = g + wd * *w;
    *buf = mom * *buf + d;
    *w -= lr * *buf;
}
/* LARS's trust ratio of a tensor from its sums of squares, w_sq = ||w||^2
   and u_sq = ||g + wd w||^2 (in double): eta ||w|| / ||g + wd w||, 1 if
   either is 0. Excluded tensors (biases, BN) take 1 without calling it. */
static inline SSL_HD float ssl_lars_trust(double eta, double w_sq, double u_sq) {
    double wn = sqrt(w_sq), un = sqrt(u_sq);
    return wn > 0 && un > 0 ? (float)(eta * wn / un) : 1.0f;
}
/* LARS: d = (g + wd*w) * q with q the tensor's trust ratio (1 when excluded) */
static inline SSL_HD void ssl_lars_update(float *w, float g, float *buf, float lr, float mom, float wd, float q) {
    float d = (g + wd * *w) * q;
    *buf = mom * *buf + d;
    *w -= lr * *buf;
}
/* torch.optim.AdamW (decoupled decay, bias-corrected moments), as its
   single-tensor loop computes it: the step's scalars are worked out in
   double and rounded to float once (1 - beta2 from a float beta2 would be
   off by 1.3e-5 relative), and each element takes torch's operations in
   torch's order: w *= 1 - lr wd; m = lerp(m, g, 1 - b1);
   v = v b2 + (1 - b2) g g; w += -(lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),
   with bc = 1 - b^t at step t (from 1). */
typedef struct {
    float decay;        /* 1 - lr wd, for the tensors that decay */
    float one_minus_b1; /* the lerp weight of the first moment */
    float b2, one_minus_b2;
    float step_size;    /* lr / (1 - b1^t) */
    float bc2_sqrt;     /* sqrt(1 - b2^t) */
    float eps;
} ssl_adamw_scalars;
static inline ssl_adamw_scalars ssl_adamw_at(double lr, double wd, double b1, double b2, double eps, int64_t t) {
    ssl_adamw_scalars s;
    s.decay = (float)(1.0 - lr * wd);
    s.one_minus_b1 = (float)(1.0 - b1);
    s.b2 = (float)b2;
    s.one_minus_b2 = (float)(1.0 - b2);
    s.step_size = (float)(lr / (1.0 - pow(b1, (double)t)));
    s.bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)t));
    s.eps = (float)eps;
    return s;
}
static inline SSL_HD void ssl_adamw_update(float *w, float g, float *m, float *v, int decays, ssl_adamw_scalars s) {
    if (decays) *w *= s.decay;
    *m += s.one_minus_b1 * (g - *m); /* torch's lerp for a weight below 0.5 */
    *v = *v * s.b2 + s.one_minus_b2 * g * g;
    *w += -s.step_size * *m / (sqrtf(*v) / s.bc2_sqrt + s.eps);
}

/* ========================================================================
   11. Train step, checkpoints
   Owns: one optimisation step of a joint-embedding method (both views
   forward, the loss, backward, the online probe, the optimizer with its
   schedule, BYOL's EMA target) and the checkpoint that makes a run
   resumable bit for bit.
   ======================================================================== */
typedef enum { SSL_METHOD_SIMCLR = 0, SSL_METHOD_VICREG, SSL_METHOD_BARLOW, SSL_METHOD_BYOL } ssl_method;
SSLDEF const char *ssl_method_name(int method);
SSLDEF int ssl_method_parse(const char *name); /* -1 with an error */

typedef struct {
    int method;                  /* ssl_method */
    float tau;                   /* SimCLR temperature */
    int patch_negatives;         /* SimCLR: Instance-SimCLR, each image's only negative a patch of it (the step's
                                    third view; ssl_train_step3) */
    float sim, std, cov;         /* VICReg coefficients */
    float lambd;                 /* Barlow Twins off-diagonal weight */
    double ema_base;             /* BYOL tau_base (0.996) */
    ssl_optim_config optim;
    double lr;                   /* peak learning rate (already scaled by batch/256 if wanted) */
    int64_t warmup_steps, total_steps;
    double end_ratio;            /* cosine decays to lr * end_ratio */
    int probe_classes;           /* online linear probe; 0 = none */
    ssl_optim_config probe_optim;
    double probe_lr;             /* constant */
    int device;                  /* SSL_DEV_CPU or SSL_DEV_CUDA (a CUDA build) */
    int sync_phases;             /* GPU: wait for the device at each phase's end so the step's t_* split is
                                    device time (default 1); 0: no waits but the loss's, only the sum is exact */
} ssl_train_config;
SSLDEF ssl_train_config ssl_train_config_default(int method);

typedef struct {
    float loss;                  /* the method's loss */
    float probe_loss, probe_acc; /* over both views, before the probe's update */
    double lr, ema_tau;
    double t_forward, t_loss, t_backward, t_optim; /* seconds (probe counted in optim) */
} ssl_step_stats;

/* The online model (backbone + projector [+ predictor]), BYOL's target
   (backbone + projector, EMA of the online weights), the probe, their
   optimizers, and the step count. */
typedef struct {
    ssl_train_config c;
    ssl_model online, target;
    int has_target;
    ssl_optimizer opt;
    ssl_param_table probe;       /* "probe.weight" [classes, feat], "probe.bias" */
    ssl_optimizer probe_opt;
    int64_t step;                /* optimisation steps done */
    float *dout[3], *logits, *dlogits; /* on the trainer's device */
    float *zt;                   /* BYOL: the target's output of view 0 (its one slot then holds view 1) */
    size_t dout_cap, logits_cap, zt_cap;
    int32_t *targets;
    ssl_buf scratch;
    ssl_comm *comm;              /* many ranks (ssl_trainer_set_comm); NULL: one */
    ssl_buf gathered;            /* many ranks: the gathered embeddings and their gradients */
} ssl_trainer;

SSLDEF int ssl_trainer_init(ssl_trainer *t, const ssl_model_config *mc, const ssl_train_config *tc);
/* Trains over the ranks of `comm` (section 12): each step's n is this
   rank's share of the global batch; the losses see the global batch, the
   gradients are summed, and with sync_bn the online model's (and BYOL's
   target's) batch norm uses the global batch's statistics. Rank 0's
   weights are copied to every rank. */
SSLDEF int ssl_trainer_set_comm(ssl_trainer *t, ssl_comm *comm, int sync_bn);
SSLDEF void ssl_trainer_free(ssl_trainer *t);
/* One step on views v1, v2 [n,h,w,C] (labels for the probe, may be NULL,
   always host memory). On the GPU the views are device pointers. A NaN or
   Inf loss returns -1 with "step K: ... loss is nan" before anything is
   updated. */
SSLDEF int ssl_train_step(ssl_trainer *t, const float *v1, const float *v2, const uint32_t *labels, int n, int h,
                          int w, ssl_step_stats *st);
/* The same with a third view vp through the online model: Instance-SimCLR's
   patches (c.patch_negatives), each image's only negative. vp NULL is
   ssl_train_step. */
SSLDEF int ssl_train_step3(ssl_trainer *t, const float *v1, const float *v2, const float *vp, const uint32_t *labels, int n,
                           int h, int w, ssl_step_stats *st);
/* Checkpoint: every tensor of the online model under its own name, the
   target's as "target.<name>", optimizer state "optim.m.<name>" /
   "optim.v.<name>", the probe and its state "probe.*", "probe_optim.m.*",
   and int64 "trainer.state" = [step, opt.step, probe_opt.step], plus the
   caller's int64 "user.state" (n_user values) and meta text (a config
   dump). Written atomically (SSLT, CRC'd). */
SSLDEF int ssl_trainer_save(const ssl_trainer *t, const char *path, const char *meta, const int64_t *user,
                            int n_user);
/* Loads into a trainer built with the same configuration; every tensor
   must be there with its size. user gets up to n_user values. */
SSLDEF int ssl_trainer_load(ssl_trainer *t, const char *path, int64_t *user, int n_user);

/* ========================================================================
   12. Distributed
   Owns: the communicator (rank, world size, local rank, collectives on
   tensors), SyncBN's reductions and the losses over the global batch.
   MPI launches the ranks (mpirun, srun) and carries the collectives of
   host tensors; NCCL carries those of device tensors, its id handed out
   over MPI. Every collective dispatches on the tensor's device, as every
   op does. A process that no launcher started is a world of one, and
   there every collective is a copy or nothing: one rank pays nothing.

   Semantics (what makes the world size change speed, never results): the
   batch is global; each rank takes its share of each global batch (the
   loader's rank/world: rank r the r-th contiguous slice of every batch of
   batch_size * world samples of the epoch's one order); augmentations are
   keyed by the global sample id; gradients are summed across ranks (the
   losses already divide by the global batch); batch norm sums its
   statistics across ranks (SyncBN); each loss is the loss of the whole
   global batch, each rank computing its rows' share (ssl_loss_global says
   how, method by method) and keeping the rows of the gradient that belong
   to its samples.
   ======================================================================== */
struct ssl_comm {
    int rank, world;             /* this process and how many there are */
    int local_rank, local_world; /* on this node (one GPU per local rank) */
    int mpi;                     /* 1: MPI is up (a launched run, or SSL_MPI with a world of one) */
    int owns_mpi;                /* ssl_comm_init started MPI, ssl_comm_free ends it */
    void *nccl;                  /* ncclComm_t, made by ssl_comm_init_gpu */
    double watchdog_s;           /* a collective waiting longer aborts every rank (0: never) */
    double seconds;              /* spent in collectives (host time) */
    int64_t bytes, calls;        /* this rank's payload sent into collectives, and their count */
    const char *in_flight;       /* the collective running now (the watchdog names it) */
    double in_flight_since;
    const char *watched;         /* work whose waits no collective sees (ssl_comm_watch) */
    double watched_since;
};
/* Starts MPI when the process was launched by mpirun or srun (the build
   needs SSL_MPI for that; a launched process without it is refused with
   the reason), else makes a world of one. Rank, world and local rank come
   from MPI; the local rank from OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID
   or MPI's shared-memory split. watchdog_s: see ssl_comm. */
SSLDEF int ssl_comm_init(ssl_comm *c, double watchdog_s);
/* A world of one, no MPI. */
SSLDEF void ssl_comm_single(ssl_comm *c);
/* The GPU side: this rank's device is its local rank (fewer devices than
   local ranks is an error); NCCL's communicator from an id that rank 0
   makes and MPI broadcasts. A CUDA build without NCCL accepts a world of
   one only. */
SSLDEF int ssl_comm_init_gpu(ssl_comm *c);
SSLDEF void ssl_comm_free(ssl_comm *c);
/* Times a stretch of work whose waits for the other ranks happen outside
   the collectives' calls: a GPU step, whose NCCL collectives are queued on
   the stream and waited for later, in whatever reads the device next. The
   watchdog stops every rank when `what` runs longer than watchdog_s; NULL
   ends the stretch. The GPU trainer on several ranks marks each step. In
   NCCL builds the watchdog also polls NCCL's asynchronous errors (a peer's
   connection lost) and stops every rank naming them. */
SSLDEF void ssl_comm_watch(ssl_comm *c, const char *what);
/* Stops every rank now (MPI_Abort), with the message on stderr. */
SSLDEF void ssl_comm_abort(const ssl_comm *c, int code, const char *fmt, ...) SSL__PRINTF(3, 4);
/* The collectives (fp32 tensors, every rank the same shapes, in the same
   order; a NULL comm is a world of one). all_reduce sums in place (fp64
   tensors too: SyncBN's double sums on the GPU);
   all_gather writes [world * rows(in), ...] in rank order; reduce_scatter
   sums [world * rows(out), ...] and gives rank r block r; broadcast copies
   root's tensor to every rank. Empty tensors are allowed. */
SSLDEF int ssl_all_reduce(ssl_comm *c, ssl_tensor *t);
SSLDEF int ssl_all_gather(ssl_comm *c, const ssl_tensor *in, ssl_tensor *out);
SSLDEF int ssl_reduce_scatter(ssl_comm *c, const ssl_tensor *in, ssl_tensor *out);
SSLDEF int ssl_broadcast(ssl_comm *c, ssl_tensor *t, int root);
SSLDEF int ssl_barrier(ssl_comm *c);
/* Host scalars: sums of doubles (in place), the maximum of ints. */
SSLDEF int ssl_comm_sum_f64(ssl_comm *c, double *v, int64_t n);
SSLDEF int ssl_comm_max_i64(ssl_comm *c, int64_t *v, int64_t n);
/* Checks that every rank holds the same bytes (a config, a table's
   checksums): -1 naming the first rank that differs, on every rank. */
SSLDEF int ssl_comm_same(ssl_comm *c, const void *p, size_t n, const char *what);
/* Per-tensor CRC32 of a parameter table's values compared across ranks:
   -1 naming the first tensor that differs and a rank holding another copy. */
SSLDEF int ssl_comm_check_params(ssl_comm *c, const ssl_param_table *t, const char *what);
/* The loss of method c->method (its coefficients from c) over the global
   batch, from this rank's embeddings o1, o2 [n, D] (BYOL: the target's z1,
   z2; the others ignore them), the same value on every rank, and this
   rank's rows of its gradient in d1, d2. Each rank's loss work is its own
   rows' (O(n ...) for its n of the N rows):
   - SimCLR: each rank's rows against every rank's columns (all-gather),
     the columns' gradients summed back to their ranks (reduce-scatter).
   - VICReg: the invariance term of its rows; the views' means and their
     covariances (z - mean)^T (z - mean) / (N - 1) as sums over rows, each
     rank its rows' share, all-reduced ([2, D] and [2, D, D]).
   - Barlow Twins: batch norm over the global batch (means, then variances
     about them: two [2, D] all-reduces), the cross-correlation
     zn1^T zn2 / N as each rank's rows' share, all-reduced ([D, D]), and
     backward the global sums batch norm's backward needs ([4, D]).
     O(n D^2) a rank where gathering cost O(N D^2); what travels is O(D^2).
   - BYOL: every input gathered in rank order and the loss computed whole
     on every rank, each keeping its rows of the gradient: its loss is per
     row and O(N D), cheap beside the backbone, so it stays gathered.
   (Instance-SimCLR, ssl_train_step3, is per row too: each rank its rows,
   their cross-entropies summed over the 2N rows of the global batch.)
   A world of one: the plain loss. scratch as the losses'; gathered holds
   BYOL's gathered copies. */
SSLDEF int ssl_loss_global(ssl_comm *comm, const ssl_train_config *c, const ssl_tensor *o1, const ssl_tensor *o2,
                           const ssl_tensor *z1, const ssl_tensor *z2, float *loss, ssl_tensor *d1, ssl_tensor *d2,
                           ssl_buf *scratch, ssl_buf *gathered);

/* ========================================================================
   13. Evaluation and export
   Owns: what happens to a trained backbone's features: k-nearest-neighbour
   classification (cosine similarity, temperature-weighted votes), linear
   and MLP probes trained on frozen features with early stopping, and the
   safetensors format that PyTorch loads. (The house plan lists sections
   1-12; evaluation gets its own section because ./probe and ./train both
   use it and it depends on sections 7-10.)
   ======================================================================== */
typedef struct {
    double top1, top5;       /* on the evaluation set, in [0, 1] */
    int best_epoch;          /* probes: the epoch reported (see ssl_probe_train_eval) */
    int epochs_run;
    double seconds;
} ssl_probe_result;

/* kNN: every test row is classified by its k most cosine-similar training
   rows, each voting for its label with weight exp(similarity / temperature)
   (the usual SSL protocol: k 20 or 200, temperature 0.07). Features are
   rows of `dim` floats; they are L2-normalized internally. */
SSLDEF int ssl_knn_eval(const float *train, const uint32_t *train_y, int64_t ntrain, const float *test,
                        const uint32_t *test_y, int64_t ntest, int dim, int num_classes, int k, float temperature,
                        ssl_probe_result *out);

typedef struct {
    int nhidden;             /* 0: linear probe; 2 with hidden {2048, 2048}: the paper's MLP probe */
    int hidden[4];
    int epochs, batch_size;
    double lr, weight_decay; /* AdamW, cosine decay over the epochs */
    double val_fraction;     /* held out of the training features for early stopping */
    int patience;            /* stop after this many epochs without a better validation top-1 (0: never) */
    uint64_t seed;
} ssl_probe_config;
SSLDEF void ssl_probe_config_linear(ssl_probe_config *c);
SSLDEF void ssl_probe_config_mlp(ssl_probe_config *c);
/* Trains a probe on standardized frozen features (train mean and std per
   dimension) and evaluates it on the test features. With val_fraction > 0
   the reported result is the test accuracy of the parameters with the best
   validation top-1 (early stopping); with none, the last epoch's. */
SSLDEF int ssl_probe_train_eval(const ssl_probe_config *c, const float *train, const uint32_t *train_y, int64_t ntrain,
                                const float *test, const uint32_t *test_y, int64_t ntest, int dim, int num_classes,
                                ssl_probe_result *out);

/* safetensors: an 8-byte little-endian header length, a JSON header
   {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
   "__metadata__": {...}}, then the tensors' bytes back to back. Entries are
   ssl_tentry as for SSLT files; metadata is a JSON object's text or NULL. */
SSLDEF int ssl_safetensors_write(const char *path, const ssl_tentry *e, int count, const char *metadata_json);
/* Reads a safetensors file into an ssl_tfile (free with ssl_tfile_free);
   every offset is checked against the file. */
SSLDEF int ssl_safetensors_read(const char *path, ssl_tfile *f);

#ifdef SSL_CUDA
/* ---- CUDA backend of sections 7 and 9 (ssl.cu): same arguments as the
   public functions, shapes already checked, every tensor on the GPU. ---- */
SSLDEF void *ssl_cuda_buf_reserve(ssl_buf *b, size_t bytes); /* device memory */
SSLDEF int ssl_cuda_matmul(int transA, int transB, float alpha, const ssl_tensor *A, const ssl_tensor *B,
                           float beta, ssl_tensor *C);
SSLDEF int ssl_cuda_copy(ssl_tensor *dst, const ssl_tensor *src);
SSLDEF int ssl_cuda_fill(ssl_tensor *t, float value);
SSLDEF int ssl_cuda_axpy(float alpha, const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_cuda_dot(const ssl_tensor *a, const ssl_tensor *b, float *out);
SSLDEF int ssl_cuda_fill_diagonal(ssl_tensor *m, float value);
SSLDEF int ssl_cuda_fill_diagonal_at(ssl_tensor *m, int64_t col0, float value);
SSLDEF int ssl_cuda_l2_normalize_rows(const ssl_tensor *x, ssl_tensor *y, ssl_tensor *norm);
SSLDEF int ssl_cuda_l2_normalize_rows_backward(const ssl_tensor *y, const ssl_tensor *norm, const ssl_tensor *dy,
                                               ssl_tensor *dx);
SSLDEF int ssl_cuda_softmax_xent_rows(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                      ssl_tensor *dlogits, int64_t *correct);
SSLDEF int ssl_cuda_center_cols(const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_cuda_mse(const ssl_tensor *a, const ssl_tensor *b, float scale, float *loss, ssl_tensor *da,
                        ssl_tensor *db);
SSLDEF int ssl_cuda_offdiag_sumsq(const ssl_tensor *m, float scale, float *val, ssl_tensor *dm);
SSLDEF int ssl_cuda_diag_penalty(const ssl_tensor *m, ssl_diag_fn fn, float param, float scale, float *val,
                                 ssl_tensor *dm);
SSLDEF int ssl_cuda_conv2d_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride,
                                   int pad, ssl_tensor *y, ssl_buf *scratch, ssl_tensor *cols);
SSLDEF int ssl_cuda_conv2d_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride,
                                    int pad, ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db,
                                    ssl_buf *scratch, const ssl_tensor *cols);
SSLDEF int ssl_cuda_batchnorm_forward(ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                      const ssl_tensor *residual, int relu, ssl_tensor *y, ssl_tensor *mean,
                                      ssl_tensor *invstd, ssl_tensor *mask);
SSLDEF int ssl_cuda_batchnorm_backward(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                       const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                       const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight,
                                       ssl_tensor *dbias, ssl_tensor *dy_relu);
SSLDEF int ssl_cuda_relu_forward(const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_cuda_relu_backward(const ssl_tensor *y, const ssl_tensor *dy, ssl_tensor *dx);
SSLDEF int ssl_cuda_maxpool2d_forward(const ssl_tensor *x, int k, int stride, int pad, ssl_tensor *y);
SSLDEF int ssl_cuda_maxpool2d_backward(const ssl_tensor *x, const ssl_tensor *dy, int k, int stride, int pad,
                                       ssl_tensor *dx);
SSLDEF int ssl_cuda_avgpool_forward(const ssl_tensor *x, ssl_tensor *y);
SSLDEF int ssl_cuda_avgpool_backward(const ssl_tensor *dy, ssl_tensor *dx);
SSLDEF int ssl_cuda_linear_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, ssl_tensor *y);
SSLDEF int ssl_cuda_linear_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, ssl_tensor *dx,
                                    ssl_tensor *dw, ssl_tensor *db);
SSLDEF int ssl_cuda_add(const ssl_tensor *a, const ssl_tensor *b, ssl_tensor *y);
SSLDEF int ssl_cuda_add_backward(const ssl_tensor *dy, ssl_tensor *da, ssl_tensor *db);
#endif

#ifdef SSL_CUDA
/* ---- CUDA backend (ssl.cu) ---- */
SSLDEF int ssl_cuda_device_count(void);
/* Makes `device` this process's GPU (ranks: their local rank). */
SSLDEF int ssl_cuda_set_device(int device);
/* NCCL (SSL_NCCL builds; section 12): the 128-byte unique id rank 0 makes,
   a communicator from it, collectives of fp32 device memory on the compute
   stream (op: 0 all-reduce sum, 1 all-gather, 2 reduce-scatter sum, 3
   broadcast from root, 4 all-reduce sum of doubles, send and recv then
   pointing at count doubles; count: elements of the send buffer), freeing.
   -1 with an error in a build without NCCL. */
SSLDEF int ssl_cuda_nccl_id(void *id128);
SSLDEF int ssl_cuda_nccl_init(void **comm, int world, int rank, const void *id128);
SSLDEF int ssl_cuda_nccl_collective(void *comm, int op, const float *send, float *recv, size_t count, int root);
SSLDEF void ssl_cuda_nccl_free(void *comm);
/* NCCL's asynchronous error on comm: 1 with its description in msg, else 0. */
SSLDEF int ssl_cuda_nccl_error(void *comm, char *msg, size_t cap);
SSLDEF int ssl_cuda_describe(int device, char *out, size_t cap);
/* the device's peak memory bandwidth in GB/s, from its memory clock and bus
   width (2 transfers a clock): 3352 on an H100 SXM, 4814 on an H200; 0 in
   emulation or when the device does not say */
SSLDEF double ssl_cuda_peak_gbs(int device);
/* Fills out[n] with ssl_rng_uniform draws of stream (seed, 0, i, 0, op) on
   the GPU: checks that device and host share the RNG. */
SSLDEF int ssl_cuda_rng_uniform(uint64_t seed, uint32_t op, float *out, int n);
/* Device memory. Allocation failures stop the program; out of memory says
   how much was asked, for what, what is free, and to use a smaller batch. */
SSLDEF void *ssl_cuda_malloc(size_t bytes, const char *what);
SSLDEF void ssl_cuda_free(void *p);
SSLDEF void ssl_cuda_buf_free(ssl_buf *b); /* a buffer grown by ssl_cuda_buf_reserve */
SSLDEF void ssl_cuda_to_device(void *dst, const void *src, size_t bytes);
SSLDEF void ssl_cuda_to_host(void *dst, const void *src, size_t bytes);
SSLDEF void ssl_cuda_memset0(void *dst, size_t bytes);
/* the device's free and total memory (emulation: an 80 GiB device with
   nothing allocated, or SSL_EMU_GPU_MEM bytes when set) */
SSLDEF void ssl_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
/* bytes of device memory the program holds through ssl_cuda_malloc (plans,
   weights, optimizer state, scratch; not cuBLAS's or cuDNN's own) on a GPU
   and in strict emulation (plain emulation keeps scratch buffers in host
   memory, uncounted): a run whose figure keeps growing leaks */
SSLDEF size_t ssl_cuda_live_bytes(void);
/* seconds the host has spent blocked on the device (synchronous copies,
   syncs, event waits) since the program started: a step's wall time less
   its share of this is the host's own time (issuing launches, host math),
   which must stay under the GPU's for the GPU never to wait for the host */
SSLDEF double ssl_cuda_blocked_s(void);
SSLDEF void ssl_cuda_sync(void);
/* Page-locked host memory: the loader's u8 batches in GPU mode, so their
   copies overlap compute. */
SSLDEF void *ssl_cuda_host_alloc(size_t bytes, const char *what);
SSLDEF void ssl_cuda_host_free(void *p);
/* The optimizer over a table whose data and grad are device memory: m and
   v on the device (ssl_cuda_optim_init), same updates as ssl_optim_step
   (multi-tensor launches, LARS trust ratios from device norms). */
SSLDEF void ssl_cuda_optim_init(ssl_optimizer *o, const ssl_optim_config *c, const ssl_param_table *t);
SSLDEF void ssl_cuda_optim_free(ssl_optimizer *o);
SSLDEF int ssl_cuda_optim_step(ssl_optimizer *o, ssl_param_table *t, double lr);
/* The loader's GPU mode: n uint8 crops (n x h x w x 3, host memory, ideally
   from ssl_cuda_host_alloc; copied on a copy stream) and their params ->
   float NHWC device memory `out`, as ssl_augment_apply_ex(p, img, w, h,
   in_range, mean, std) computes it (mean/std NULL: no normalize). When it
   returns, the crops are on the device: host_u8 may be reused. */
SSLDEF int ssl_cuda_augment_u8(const uint8_t *host_u8, const ssl_aug_params *params, int n, int w, int h,
                               float in_range, const float mean[3], const float std[3], float *out);
/* Starts copying `bytes` of uint8 crops to the device on the copy stream,
   so that a later ssl_cuda_augment_u8 of the same pointer finds them there.
   From page-locked memory the copy overlaps whatever the GPU is computing:
   prefetch batch k+1 before running step k. Keep host_u8 unchanged until
   that ssl_cuda_augment_u8 returns. Up to 4 buffers in flight.
   ssl_cuda_prefetch_u8(NULL, 0) forgets the prefetches not used yet (and
   waits for their copies): call it before giving back a prefetched buffer
   that will not be augmented. */
SSLDEF int ssl_cuda_prefetch_u8(const uint8_t *host_u8, size_t bytes);
/* GPU busy time: ssl_cuda_busy_mark(0) where a step's device work begins,
   (1) where it ends (CUDA events on the compute stream, no host wait);
   ssl_cuda_busy_take() returns the device seconds between the marked
   beginnings and ends since its last call (waiting for the last end), so
   busy / wall time is the share of time the GPU had work: what is left is
   the GPU waiting for the host (data, launches). -1 in emulation. */
SSLDEF void ssl_cuda_busy_mark(int end);
SSLDEF double ssl_cuda_busy_take(void);
/* Profile: ssl_cuda_profile(1) clears and starts recording the device time
   of every op by kind of work (CUDA events, no extra host waits; host clock
   in emulation), with the bytes each must move at least and its flops;
   ssl_cuda_profile(0) stops. ssl_cuda_profile_report writes two markdown
   tables: per kind, ms per step (of `steps`), share, GB/s against peak_gbs,
   TFLOP/s; per GEMM shape, TFLOP/s in the step and cuBLAS alone on the same
   shape. Returns the number of kinds. */
SSLDEF void ssl_cuda_profile(int on);
SSLDEF int ssl_cuda_profile_report(FILE *f, int steps, double peak_gbs);
/* One kind's totals since ssl_cuda_profile(1): device ms, the bytes it
   must move at least, and its calls (any may be NULL). 0 when no op of
   that kind ran. */
SSLDEF int ssl_cuda_profile_kind(const char *kind, double *ms, double *bytes, long long *calls);
/* A row of one's own in the profile, around code being tried (a new loss,
   say): the device time between push and pop, less the ops inside it, which
   keep their own rows, under `kind` (a string that outlives the profile: a
   literal). Pairs nest, up to 16 deep. */
SSLDEF void ssl_cuda_profile_push(const char *kind);
SSLDEF void ssl_cuda_profile_pop(void);
/* Tests: run every ssl_cuda_* op's kernels as host loops on host memory
   (tensors marked SSL_DEV_CUDA), so their index math is checked without a
   GPU. Switch only with no live device buffers. */
SSLDEF void ssl_cuda_set_emulation(int on);
/* fp32 throughout, or bf16: models planned after the switch store their
   backbone's activations and gradients as bf16 and run its convolutions'
   GEMMs on bf16 operands; GEMMs on fp32 tensors get bf16 operands (tensor
   cores, FAST_16BF); accumulation, weights, statistics and losses fp32. */
SSLDEF void ssl_cuda_set_precision(int bf16);
/* Convolutions on the GPU: "gemm" (im2col + cuBLAS, the default; NULL
   too) or "cudnn" (cuDNN's kernels; a build with make CUDNN=1; its
   algorithms are picked by timing, so its results are bit-reproducible
   only within a process). -1 with an error naming what is accepted
   otherwise. The programs set it from their conv= option.
   ssl_cuda_conv() names the one in use. */
SSLDEF int ssl_cuda_set_conv(const char *engine);
SSLDEF const char *ssl_cuda_conv(void);
SSLDEF int ssl_cuda_precision(void);
/* target = a * target + b * online over n floats (BYOL's EMA) */
SSLDEF int ssl_cuda_ema(float *target, const float *online, int64_t n, float a, float b);
SSLDEF int ssl_cuda_emulation(void);
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
#include <strings.h>
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
SSLDEF void *ssl_malloc_aligned(size_t n, const char *what) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
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

/* Opens path and checks it is a regular file; returns the fd or -1. */
static int ssl__open_regular(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ssl__fail("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ssl__fail("'%s' is not a regular file", path);
    }
    *size = (size_t)st.st_size;
    return fd;
}

SSLDEF int ssl_read_file_buf(const char *path, ssl_buf *b, size_t *n) {
    size_t size, got = 0;
    int fd = ssl__open_regular(path, &size);
    if (fd < 0) return -1;
    uint8_t *buf = (uint8_t *)ssl_buf_reserve(b, size + 1);
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            return ssl__fail("cannot read '%s': %s", path, r < 0 ? strerror(errno) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = 0;
    *n = size;
    return 0;
}

SSLDEF int ssl_read_file(const char *path, uint8_t **out, size_t *n) {
    ssl_buf b = {0, 0};
    *out = NULL;
    *n = 0;
    if (ssl_read_file_buf(path, &b, n) != 0) {
        ssl_buf_free(&b);
        return -1;
    }
    *out = (uint8_t *)b.p;
    return 0;
}

SSLDEF int ssl_map_file(const char *path, const uint8_t **map, size_t *size) {
    int fd = ssl__open_regular(path, size);
    if (fd < 0) return -1;
    if (*size == 0) {
        close(fd);
        return ssl__fail("'%s' is empty", path);
    }
    void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return ssl__fail("cannot map '%s': %s", path, strerror(errno));
    *map = (const uint8_t *)m;
    return 0;
}

SSLDEF void ssl_unmap_file(const uint8_t *map, size_t size) {
    if (map) munmap((void *)map, size);
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
    /* lines are read whole: a line is an option or a comment as a whole,
       never cut into pieces that parse on their own */
    enum { max_line = SSL_STR + 255 };
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, 0, (size_t)len)) { rc = ssl__fail("NUL byte in the line"); break; }
        char *s = line, *e = line + len;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue; /* comments of any length */
        if (e - s > max_line) { rc = ssl__fail("line of %lld characters, over the limit of %d", (long long)(e - s), max_line); break; }
        /* allow "key = value" */
        char kv[max_line + 2];
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
        if (ssl__config_kv(t, n, cfg, kv, 1) != 0) { rc = -1; break; }
    }
    free(line);
    fclose(f);
    return rc ? ssl__fail_ctx("%s:%d", path, lineno) : 0;
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
    free(f->arena);
    free(f->meta);
    free(f->entries);
    free(f->names);
    memset(f, 0, sizeof *f);
}

/* Tensor data in a file sits at any byte offset: give every tensor a
   64-byte aligned copy so callers can read it as float or int arrays. */
static void ssl__tfile_align(ssl_tfile *f) {
    size_t arena = 0, off = 0;
    for (int i = 0; i < f->count; i++) arena += (f->entries[i].nbytes + 63) / 64 * 64;
    f->arena = (uint8_t *)aligned_alloc(64, arena ? arena : 64);
    SSL_ASSERT(f->arena, "out of memory: %zu bytes for tensor data", arena);
    for (int i = 0; i < f->count; i++) {
        ssl_tentry *e = &f->entries[i];
        if (e->nbytes) memcpy(f->arena + off, e->data, e->nbytes);
        e->data = f->arena + off;
        off += (e->nbytes + 63) / 64 * 64;
    }
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
    ssl__tfile_align(f);
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
    ssl_unmap_file(p->map, p->map_size);
    free(p->class_names);
    memset(p, 0, sizeof *p);
}

SSLDEF int ssl_pack_open(const char *path, ssl_pack *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
#define SSL__PBAD(...) do { ssl__fail(__VA_ARGS__); ssl__fail_ctx("pack '%s'", path); ssl_pack_close(p); return -1; } while (0)
    size_t msize;
    if (ssl_map_file(path, &p->map, &msize) != 0) return ssl__fail_ctx("pack '%s'", path);
    p->map_size = msize;
    uint64_t fsize = msize;
    if (fsize < SSL_PACK_HEADER_SIZE) {
        ssl__fail("%llu bytes, shorter than the %d-byte header (truncated or not a pack)", (unsigned long long)fsize,
                  SSL_PACK_HEADER_SIZE);
        ssl__fail_ctx("pack '%s'", path);
        ssl_pack_close(p);
        return -1;
    }
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
    if (h->data_offset < SSL_PACK_HEADER_SIZE || h->data_offset > h->index_offset || h->index_offset > fsize ||
        h->index_offset % 8 != 0)
        SSL__PBAD("bad data/index offsets (%llu, %llu) for a file of %llu bytes", (unsigned long long)h->data_offset,
                  (unsigned long long)h->index_offset, (unsigned long long)fsize);
    if (h->num_samples > (fsize - h->index_offset) / sizeof(ssl_pack_rec))
        SSL__PBAD("index of %llu entries does not fit in the file", (unsigned long long)h->num_samples);
    uint64_t index_end = h->index_offset + h->num_samples * sizeof(ssl_pack_rec);
    if (h->strings_offset != index_end || h->strings_size > fsize - h->strings_offset ||
        h->strings_offset + h->strings_size != fsize)
        SSL__PBAD("bad string table (offset %llu, size %llu)", (unsigned long long)h->strings_offset,
                  (unsigned long long)h->strings_size);
    /* each class name takes at least its NUL: a count the table cannot hold
       is refused before anything is sized by it */
    if (h->num_classes > h->strings_size)
        SSL__PBAD("%u classes, but the string table of %llu bytes cannot name them", h->num_classes,
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
    p->class_names = (const char **)ssl_malloc(sizeof(char *) * ((size_t)h->num_classes + 1), "class names");
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
    else if (w->all_have_paths) {
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

/* stb_image is built for the formats ssl.h reads and no others: PNG and BMP,
   and JPEG only where libjpeg-turbo is missing (then after ssl__jpeg_check).
   Each format compiled in is code a hostile file can reach. */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#ifndef SSL_TURBOJPEG
#define STBI_ONLY_JPEG
#endif
#define STBI_MAX_DIMENSIONS (1 << 24)
/* stb's user-facing failure strings: its terse ones can quote a file's
   bytes (an unknown PNG chunk's type) into the message */
#define STBI_FAILURE_USERMSG
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
/* One compressor per thread, destroyed at thread exit. Decompressors are
   made per image (0.3 us): libjpeg keeps the tables an image defines for
   the next one (abbreviated streams), so a reused one would decode a JPEG
   that lacks its own tables with an earlier image's, and an image's
   result, or its refusal, would depend on what the thread decoded before. */
static pthread_key_t ssl__tj_key;
static pthread_once_t ssl__tj_once = PTHREAD_ONCE_INIT;
static void ssl__tj_destroy(void *h) { if (h) tjDestroy((tjhandle)h); }
static void ssl__tj_keys(void) { pthread_key_create(&ssl__tj_key, ssl__tj_destroy); }
static tjhandle ssl__tjc(void) {
    pthread_once(&ssl__tj_once, ssl__tj_keys);
    tjhandle h = (tjhandle)pthread_getspecific(ssl__tj_key);
    if (!h) {
        h = tjInitCompress();
        SSL_ASSERT(h, "libjpeg-turbo: cannot create a compressor");
        pthread_setspecific(ssl__tj_key, h);
    }
    return h;
}
static tjhandle ssl__tjd(void) {
    tjhandle h = tjInitDecompress();
    SSL_ASSERT(h, "libjpeg-turbo: cannot create a decompressor");
    return h;
}
/* Fails with TurboJPEG's message and destroys the handle (the thread's
   compressor is made anew on its next use: after an error a handle may be
   left part-way through, and libjpeg-turbo 2.1 does not reset it). */
static int ssl__tj_fail(tjhandle h, const char *what) {
    ssl__fail("%s: %s", what, tjGetErrorStr2(h));
    tjDestroy(h);
    pthread_once(&ssl__tj_once, ssl__tj_keys);
    if (h == pthread_getspecific(ssl__tj_key)) pthread_setspecific(ssl__tj_key, NULL);
    return -1;
}
#endif

/* The format from the first bytes; only these are handed to a decoder. */
static int ssl__sniff(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return SSL_FMT_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return SSL_FMT_PNG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return SSL_FMT_OTHER; /* BMP */
    return SSL_FMT_UNKNOWN;
}

/* Walks a JPEG's markers the way stb_image's reader does: fill bytes and
   junk between segments skipped, a scan's entropy-coded data running to
   the next marker that is not a restart. Checks the two things Debian's
   stb_image 2.27 trusts: a Huffman table's 16 code counts sum to at most
   256 (it writes past its table otherwise), and a scan uses only tables
   defined before it (it reads tables it never filled otherwise: Huffman
   tables out of bounds, quantization tables as uninitialised memory that
   ends up in the pixels). A scan uses DC tables unless it is a progressive
   AC or DC-refinement scan, AC tables unless it is a progressive DC scan,
   and the quantization table of every component of the frame. Segments
   that run past the end are refused; where the data ends, so does the
   walk. */
SSLDEF int ssl__jpeg_check(const uint8_t *b, size_t n) {
    size_t i = 1;
    if (n < 2 || b[0] != 0xFF) return ssl__fail("not a JPEG (no start marker)");
    while (i < n && b[i] == 0xFF) i++;
    if (i >= n || b[i] != 0xD8) return ssl__fail("not a JPEG (no start marker)");
    i++;
    unsigned defined = 0, quant = 0, quant_used = 0; /* Huffman: bit 4 * class + id; quantization: bit id */
    int frame = 0, progressive = 0;
    for (;;) {
        while (i < n && b[i] != 0xFF) i++;
        while (i < n && b[i] == 0xFF) i++;
        if (i >= n) return 0;
        int m = b[i++];
        if (m == 0xD9) return 0;
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no segment */
        if (n - i < 2) return ssl__fail("JPEG marker %02X: truncated", m);
        size_t len = (size_t)b[i] << 8 | b[i + 1];
        if (len < 2 || len > n - i) return ssl__fail("JPEG marker %02X: segment of %zu bytes runs past the end", m, len);
        const uint8_t *q = b + i + 2, *qe = b + i + len;
        i += len;
        if (m == 0xC4) {
            while (q < qe) {
                if (qe - q < 17) return ssl__fail("JPEG Huffman table: truncated");
                int tc = q[0] >> 4, th = q[0] & 15, codes = 0;
                if (tc > 1 || th > 3) return ssl__fail("JPEG Huffman table: class %d, id %d", tc, th);
                for (int k = 1; k <= 16; k++) codes += q[k];
                if (codes > 256) return ssl__fail("JPEG Huffman table with %d codes (at most 256)", codes);
                if (qe - q < 17 + codes) return ssl__fail("JPEG Huffman table: truncated");
                defined |= 1u << (4 * tc + th);
                q += 17 + codes;
            }
        } else if (m == 0xDB) {
            while (q < qe) {
                int pq = q[0] >> 4, tq = q[0] & 15;
                if (pq > 1 || tq > 3 || qe - q < 1 + 64 * (pq + 1)) return ssl__fail("JPEG quantization table: bad header");
                quant |= 1u << tq;
                q += 1 + 64 * (pq + 1);
            }
        } else if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            frame = 1, progressive = m == 0xC2;
            int nf = qe - q >= 6 ? q[5] : 0;
            if (qe - q < 6 + 3 * nf) return ssl__fail("JPEG frame header: bad length");
            quant_used = 0;
            for (int k = 0; k < nf; k++) quant_used |= 1u << (q[8 + 3 * k] & 15);
        } else if (m == 0xDA) {
            if (quant_used & ~quant) return ssl__fail("JPEG scan uses a quantization table that is not defined before it");
            int ns = q < qe ? q[0] : 0;
            if (ns < 1 || ns > 4 || qe - q < 1 + 2 * ns + 3) return ssl__fail("JPEG scan header: bad length");
            int ss = q[1 + 2 * ns], ah = q[3 + 2 * ns] >> 4;
            int dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
            for (int k = 0; k < ns; k++) {
                int td = q[2 + 2 * k] >> 4, ta = q[2 + 2 * k] & 15;
                if ((dc && (td > 3 || !(defined >> td & 1))) || (ac && (ta > 3 || !(defined >> (4 + ta) & 1))))
                    return ssl__fail("JPEG scan uses a Huffman table that is not defined before it%s",
                                     frame ? "" : " (no frame header either)");
            }
            /* entropy-coded data: stuffed zeros and restarts are part of it */
            while (i < n) {
                if (b[i] != 0xFF) { i++; continue; }
                size_t j = i + 1;
                while (j < n && b[j] == 0xFF) j++;
                if (j >= n) return 0;
                if (b[j] == 0x00 || (b[j] >= 0xD0 && b[j] <= 0xD7)) { i = j + 1; continue; }
                break;
            }
        }
    }
}

/* Walks a PNG's chunks the way stb_image does (length, type, data, CRC;
   to IEND or the end of the data) and refuses an empty IDAT chunk before
   any image data: stb_image 2.27 then copies 0 bytes to a null pointer,
   which is undefined (and stops the sanitizer builds). */
static int ssl__png_check(const uint8_t *b, size_t n) {
    size_t i = 8;
    int data = 0;
    while (n - i >= 8) { /* a chunk's length and type (its CRC may be cut off) */
        uint32_t len = (uint32_t)b[i] << 24 | (uint32_t)b[i + 1] << 16 | (uint32_t)b[i + 2] << 8 | b[i + 3];
        if (!memcmp(b + i + 4, "IEND", 4)) return 0;
        if (!memcmp(b + i + 4, "IDAT", 4)) {
            if (len == 0 && !data) return ssl__fail("PNG: an empty IDAT chunk before any image data");
            data = 1;
        }
        if ((size_t)len > n - i - 8 || (size_t)len + 12 > n - i) return 0;
        i += 12 + (size_t)len;
    }
    return 0;
}

SSLDEF int ssl_image_info(const void *buf, size_t n, int *w, int *h, int *c, int *format) {
    const uint8_t *b = (const uint8_t *)buf;
    if (n == 0) return ssl__fail("empty file (0 bytes)");
    if (n > 0x7FFFFFFF) return ssl__fail("image file over 2 GiB");
    int fmt = ssl__sniff(b, n), iw = 0, ih = 0, ic = 0;
    if (fmt == SSL_FMT_UNKNOWN) return ssl__fail("not a recognised image (JPEG, PNG or BMP)");
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
        tjhandle tj = ssl__tjd();
        if (tjDecompressHeader3(tj, b, (unsigned long)n, &iw, &ih, &sub, &cs) != 0)
            return ssl__tj_fail(tj, "not a readable JPEG");
        tjDestroy(tj);
        ic = cs == TJCS_GRAY ? 1 : 3;
    } else
#endif
    {
#ifndef SSL_TURBOJPEG
        if (fmt == SSL_FMT_JPEG && ssl__jpeg_check(b, n) != 0) return -1;
#endif
        if (fmt == SSL_FMT_PNG && ssl__png_check(b, n) != 0) return -1;
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

/* ---- gzip'd files and IDX data sets ------------------------------------ */

SSLDEF int ssl_read_file_gz(const char *path, uint8_t **out, size_t *n) {
    uint8_t *b;
    size_t sz;
    if (ssl_read_file(path, &b, &sz) != 0) return -1;
    if (sz < 2 || b[0] != 0x1f || b[1] != 0x8b) {
        *out = b;
        *n = sz;
        return 0;
    }
    /* RFC 1952: a 10-byte header, optional fields by flag, deflate data, then
       CRC32 and size of the inflated bytes */
    size_t p = 10;
    if (sz < 18 || b[2] != 8) { free(b); return ssl__fail("'%s': not a deflate gzip file", path); }
    int fl = b[3];
    if (fl & 4) { if (p + 2 > sz) goto bad; p += 2 + (size_t)(b[p] | b[p + 1] << 8); }
    if (fl & 8) { while (p < sz && b[p]) p++; p++; }
    if (fl & 16) { while (p < sz && b[p]) p++; p++; }
    if (fl & 2) p += 2;
    if (p + 8 > sz || sz - p > 0x7FFFFFFF) goto bad;
    int outlen = 0;
    /* the whole rest, trailer included: stb's inflater reads a little ahead */
    char *inf = stbi_zlib_decode_noheader_malloc((const char *)b + p, (int)(sz - p), &outlen);
    if (!inf) goto bad;
    if (ssl_crc32(0, inf, (size_t)outlen) != ssl__get32(b + sz - 8) || (uint32_t)outlen != ssl__get32(b + sz - 4)) {
        free(inf);
        free(b);
        return ssl__fail("'%s': gzip checksum mismatch (corrupt or truncated)", path);
    }
    free(b);
    *out = (uint8_t *)inf;
    *n = (size_t)outlen;
    return 0;
bad:
    free(b);
    return ssl__fail("'%s': corrupt or truncated gzip data", path);
}

static uint32_t ssl__be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

SSLDEF void ssl_idx_free(ssl_idx *d) {
    free(d->image_file);
    free(d->label_file);
    memset(d, 0, sizeof *d);
}

SSLDEF int ssl_idx_load(const char *images, const char *labels, ssl_idx *d) {
    memset(d, 0, sizeof *d);
    char guessed[SSL_STR];
    if (!labels || !labels[0]) {
        snprintf(guessed, sizeof guessed, "%s", images);
        char *k = strstr(guessed, "images-idx3");
        if (!k) return ssl__fail("cannot guess the labels file of '%s'; pass labels=FILE", images);
        memcpy(k, "labels-idx1", 11);
        labels = guessed;
    }
    size_t ni, nl;
    if (ssl_read_file_gz(images, &d->image_file, &ni) != 0) return -1;
    if (ssl_read_file_gz(labels, &d->label_file, &nl) != 0) { ssl_idx_free(d); return -1; }
    const uint8_t *im = d->image_file, *lb = d->label_file;
    if (ni < 16 || im[0] || im[1] || im[2] != 8 || im[3] != 3) {
        ssl_idx_free(d);
        return ssl__fail("'%s' is not an IDX file of uint8 images (magic 0x00000803)", images);
    }
    if (nl < 8 || lb[0] || lb[1] || lb[2] != 8 || lb[3] != 1) {
        ssl_idx_free(d);
        return ssl__fail("'%s' is not an IDX file of uint8 labels (magic 0x00000801)", labels);
    }
    uint32_t n = ssl__be32(im + 4), h = ssl__be32(im + 8), w = ssl__be32(im + 12);
    if (w == 0 || h == 0 || w > 65535 || h > 65535 || (uint64_t)n * w * h + 16 != ni) {
        ssl_idx_free(d);
        return ssl__fail("'%s': header says %u images of %ux%u but the file holds %zu bytes", images, n, h, w, ni);
    }
    if (ssl__be32(lb + 4) != n || nl != 8 + (size_t)n) {
        uint32_t claimed = ssl__be32(lb + 4);
        ssl_idx_free(d);
        return ssl__fail("'%s' holds %u labels for %u images", labels, claimed, n);
    }
    d->n = n;
    d->w = (int)w;
    d->h = (int)h;
    for (uint32_t i = 0; i < n; i++)
        if ((int)lb[8 + i] + 1 > d->num_classes) d->num_classes = lb[8 + i] + 1;
    return 0;
}

SSLDEF int ssl_pack_idx(const ssl_idx *d, const char *out, const char *const *class_names, int num_classes,
                        uint64_t limit) {
    if (class_names && num_classes < d->num_classes)
        return ssl__fail("%d class names for a data set with %d classes", num_classes, d->num_classes);
    char **numbered = NULL;
    if (!class_names) {
        num_classes = d->num_classes;
        numbered = ssl_malloc(sizeof(char *) * (size_t)(num_classes > 0 ? num_classes : 1), "class names");
        for (int c = 0; c < num_classes; c++) {
            numbered[c] = ssl_malloc(12, "class name");
            snprintf(numbered[c], 12, "%d", c);
        }
        class_names = (const char *const *)numbered;
    }
    uint64_t n = limit && limit < d->n ? limit : d->n;
    int rc = -1;
    ssl_pack_writer *w = ssl_pack_writer_open(out, 1, 0);
    if (w) {
        rc = 0;
        for (uint64_t i = 0; i < n && rc == 0; i++)
            rc = ssl_pack_writer_add(w, ssl_idx_pixels(d, (uint32_t)i), (size_t)d->w * (size_t)d->h, d->w, d->h, 1,
                                     SSL_ENC_RAW, ssl_idx_label(d, (uint32_t)i), NULL);
        if (rc == 0) rc = ssl_pack_writer_finish(w, class_names, num_classes, SSL_STORE_RAW, 0);
        else ssl_pack_writer_abort(w);
    }
    if (numbered) {
        for (int c = 0; c < num_classes; c++) free(numbered[c]);
        free(numbered);
    }
    return rc;
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

#ifdef SSL_TURBOJPEG
static int ssl__jpeg_lib(const uint8_t *b, size_t n, int want_c, int need_w, int need_h, double x0, double y0, double x1,
                         double y1, int full_w, int full_h, ssl_buf *out, int *w, int *h, int *c, int *ox, int *oy,
                         int *sw, int *sh);

/* A JPEG whose header said iw x ih, decoded at the smallest scale k/8
   (k = 1..8) that still covers need_w x need_h, to oc channels. Through
   libjpeg's API where the build has it: TurboJPEG reports an error that
   follows a warning as a warning (libjpeg-turbo 2.1), so a decode that
   stopped part-way would pass for a whole image. CMYK JPEGs, and builds
   without libjpeg's headers, go through TurboJPEG, into a zeroed buffer
   (the rows an error leaves are then at least the same every time). */
static int ssl__jpeg_scaled(const uint8_t *b, size_t n, int iw, int ih, int oc, int need_w, int need_h, ssl_buf *out,
                            int *w, int *h, int *c) {
    int ox, oy, sw, sh;
    int rc = ssl__jpeg_lib(b, n, oc, need_w, need_h, 0, 0, iw, ih, iw, ih, out, w, h, c, &ox, &oy, &sw, &sh);
    if (rc <= 0) return rc;
    int num = 8;
    for (int k = 1; k < 8; k++)
        if ((iw * k + 7) / 8 >= need_w && (ih * k + 7) / 8 >= need_h) { num = k; break; }
    sw = (iw * num + 7) / 8, sh = (ih * num + 7) / 8;
    uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, (size_t)sw * sh * oc);
    memset(dst, 0, (size_t)sw * sh * oc);
    tjhandle tj = ssl__tjd();
    /* warnings (e.g. extraneous bytes) still produce an image */
    if (tjDecompress2(tj, b, (unsigned long)n, dst, sw, 0, sh, oc == 1 ? TJPF_GRAY : TJPF_RGB, 0) != 0 &&
        tjGetErrorCode(tj) != TJERR_WARNING)
        return ssl__tj_fail(tj, "JPEG decode failed");
    tjDestroy(tj);
    *w = sw; *h = sh; *c = oc;
    return 0;
}
#endif

SSLDEF int ssl_decode(const void *buf, size_t n, int want_c, ssl_buf *out, int *w, int *h, int *c) {
    int iw = 0, ih = 0, ic = 0, fmt = 0;
    if (ssl_image_info(buf, n, &iw, &ih, &ic, &fmt) != 0) return -1;
    int oc = want_c ? want_c : ic;
#ifdef SSL_TURBOJPEG
    if (fmt == SSL_FMT_JPEG) return ssl__jpeg_scaled((const uint8_t *)buf, n, iw, ih, oc, iw, ih, out, w, h, c);
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
    if (tjCompress2(ssl__tjc(), px, w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &dst, &len,
                    c == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, TJFLAG_NOREALLOC) != 0)
        return ssl__tj_fail(ssl__tjc(), "JPEG encode failed");
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
        /* taps stay inside the box: torchvision crops, then resizes */
        int b0 = (int)floor(in0), b1 = (int)ceil(in0 + in_len);
        if (b0 < 0) b0 = 0;
        if (b1 > in_size) b1 = in_size;
        if (lo < b0) lo = b0;
        if (hi > b1) hi = b1;
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

/* One source row through the horizontal taps. */
static void ssl__resample_row(const uint8_t *row, int c, const ssl__taps *tx, const float *wx, int mtx, int dw, float *out) {
    if (c == 3) {
        for (int x = 0; x < dw; x++) {
            const float *wt = wx + (size_t)x * mtx;
            const uint8_t *s = row + (size_t)tx[x].start * 3;
            float a0 = 0, a1 = 0, a2 = 0;
            for (int k = 0; k < tx[x].n; k++) {
                a0 += wt[k] * s[3 * k];
                a1 += wt[k] * s[3 * k + 1];
                a2 += wt[k] * s[3 * k + 2];
            }
            out[3 * x] = a0;
            out[3 * x + 1] = a1;
            out[3 * x + 2] = a2;
        }
        return;
    }
    for (int x = 0; x < dw; x++) {
        const float *wt = wx + (size_t)x * mtx;
        const uint8_t *s = row + (size_t)tx[x].start * c;
        for (int ch = 0; ch < c; ch++) {
            float a = 0;
            for (int k = 0; k < tx[x].n; k++) a += wt[k] * s[k * c + ch];
            out[x * c + ch] = a;
        }
    }
}

SSLDEF void ssl__resample_gain(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                               uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, float gain,
                               ssl_buf *scratch) {
    SSL_ASSERT(dw > 0 && dh > 0 && bw > 0 && bh > 0 && c >= 1 && c <= 4, "bad resample arguments");
    double sx = bw / dw, sy = bh / dh;
    double supx = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sx > 1 ? sx : 1);
    double supy = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sy > 1 ? sy : 1);
    int mtx = (int)ceil(supx) * 2 + 2, mty = (int)ceil(supy) * 2 + 2;
    /* horizontally resampled source rows live in a ring of mty rows: the
       vertical taps of consecutive output rows move forward, so each source
       row is filtered once and the ring stays in cache */
    size_t rowlen = (size_t)dw * c;
    size_t need = sizeof(ssl__taps) * (dw + dh) + sizeof(float) * ((size_t)dw * mtx + (size_t)dh * mty) +
                  sizeof(float) * rowlen * (mty + 1) + sizeof(int) * mty + 256;
    uint8_t *mem = (uint8_t *)ssl_buf_reserve(scratch, need);
    ssl__taps *tx = (ssl__taps *)mem, *ty = tx + dw;
    float *wx = (float *)(ty + dh), *wy = wx + (size_t)dw * mtx, *ring = wy + (size_t)dh * mty;
    float *acc = ring + rowlen * mty;
    int *ring_row = (int *)(acc + rowlen);
    ssl__resample_taps(bx, bw, sw, dw, filter, tx, wx, mtx);
    ssl__resample_taps(by, bh, sh, dh, filter, ty, wy, mty);
    for (int k = 0; k < mty; k++) ring_row[k] = -1;
    for (int y = 0; y < dh; y++) {
        const float *wt = wy + (size_t)y * mty;
        int n = ty[y].n, s0 = ty[y].start;
        SSL_ASSERT(s0 >= 0 && s0 + n <= sh && n <= mty, "resample rows out of range");
        float *o = dst_f32 ? dst_f32 + (size_t)y * rowlen : acc;
        for (int k = 0; k < n; k++) {
            int r = s0 + k, slot = r % mty;
            float *hr = ring + (size_t)slot * rowlen;
            if (ring_row[slot] != r) {
                ssl__resample_row(src + (size_t)r * sw * c, c, tx, wx, mtx, dw, hr);
                ring_row[slot] = r;
            }
            float w = wt[k] * gain;
            if (k == 0)
                for (size_t x = 0; x < rowlen; x++) o[x] = w * hr[x];
            else
                for (size_t x = 0; x < rowlen; x++) o[x] += w * hr[x];
        }
        if (n == 0) memset(o, 0, sizeof(float) * rowlen);
        if (!dst_f32) {
            uint8_t *d = dst_u8 + (size_t)y * rowlen;
            for (size_t x = 0; x < rowlen; x++) {
                float v = o[x] + 0.5f;
                d[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

#if defined(__AVX2__)
#include <immintrin.h>

/* Horizontal pass: nblk blocks of 8 values, S steps each. */
static inline void ssl__rs_hrow(const uint8_t *row, const int32_t *base, const __m256i *mask, const __m256i *wq,
                                int nblk, int S, float *out) {
    if (S == 0) { /* one step, both lanes of a block share one 16-byte window */
        for (int b = 0; b < nblk; b++) {
            __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + base[2 * b])));
            v = _mm256_madd_epi16(_mm256_shuffle_epi8(v, mask[b]), wq[b]);
            _mm256_store_ps(out + 8 * b, _mm256_cvtepi32_ps(v));
        }
        return;
    }
    if (S == 1) {
        for (int b = 0; b < nblk; b++) {
            __m256i v = _mm256_loadu2_m128i((const __m128i *)(row + base[2 * b + 1]),
                                            (const __m128i *)(row + base[2 * b]));
            v = _mm256_madd_epi16(_mm256_shuffle_epi8(v, mask[b]), wq[b]);
            _mm256_store_ps(out + 8 * b, _mm256_cvtepi32_ps(v));
        }
        return;
    }
    if (S == 2) {
        for (int b = 0; b < nblk; b++) {
            const int32_t *bs = base + 4 * b;
            __m256i v0 = _mm256_loadu2_m128i((const __m128i *)(row + bs[1]), (const __m128i *)(row + bs[0]));
            __m256i v1 = _mm256_loadu2_m128i((const __m128i *)(row + bs[3]), (const __m128i *)(row + bs[2]));
            v0 = _mm256_madd_epi16(_mm256_shuffle_epi8(v0, mask[2 * b]), wq[2 * b]);
            v1 = _mm256_madd_epi16(_mm256_shuffle_epi8(v1, mask[2 * b + 1]), wq[2 * b + 1]);
            _mm256_store_ps(out + 8 * b, _mm256_cvtepi32_ps(_mm256_add_epi32(v0, v1)));
        }
        return;
    }
    for (int b = 0; b < nblk; b++) {
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < S; j++) {
            int i = b * S + j;
            __m256i v = _mm256_loadu2_m128i((const __m128i *)(row + base[2 * i + 1]),
                                            (const __m128i *)(row + base[2 * i]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, mask[i]), wq[i]));
        }
        _mm256_store_ps(out + 8 * b, _mm256_cvtepi32_ps(acc));
    }
}

/* ssl__resample_taps with the divisions hoisted (multiplies by 1/fs and
   1/sum): the same taps; weights within an ulp or so of the reference's. */
static void ssl__rs_taps(double in0, double in_len, int in_size, int out_size, ssl_filter f, ssl__taps *taps,
                         float *weights, int max_taps) {
    double scale = in_len / out_size, fs = scale > 1.0 ? scale : 1.0, ifs = 1.0 / fs;
    double support = (f == SSL_FILTER_BOX ? 0.5 : 1.0) * fs;
    int b0 = (int)floor(in0), b1 = (int)ceil(in0 + in_len);
    if (b0 < 0) b0 = 0;
    if (b1 > in_size) b1 = in_size;
    if (f == SSL_FILTER_BILINEAR && fs == 1.0 && max_taps >= 2) {
        /* upsampling: taps floor(center - 0.5) and the next, weights 1 - fr
           and fr; clamped to the box, renormalised, zero weights trimmed */
        int o = 0;
        for (; o < out_size; o++) {
            double t = in0 + (o + 0.5) * scale - 0.5, fl = floor(t), fr = t - fl;
            int i0 = (int)fl;
            double w0 = i0 >= b0 && i0 < b1 ? 1.0 - fr : 0.0, w1 = i0 + 1 >= b0 && i0 + 1 < b1 ? fr : 0.0;
            double sum = w0 + w1;
            if (sum <= 0) break; /* both outside: the general loop below */
            if (sum != 1.0) w0 /= sum, w1 /= sum;
            float *wt = weights + (size_t)o * max_taps;
            int z0 = (float)w0 == 0.0f;
            taps[o].start = i0 + z0;
            taps[o].n = 2 - z0 - ((float)w1 == 0.0f);
            wt[0] = (float)(z0 ? w1 : w0);
            wt[1] = (float)w1;
        }
        if (o == out_size) return;
    }
    double wd[64];
    for (int o = 0; o < out_size; o++) {
        double center = in0 + (o + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < b0) lo = b0;
        if (hi > b1) hi = b1;
        if (hi - lo > max_taps) hi = lo + max_taps;
        double sum = 0;
        float *wt = weights + (size_t)o * max_taps;
        int n = 0;
        for (int x = lo; x < hi; x++) {
            double d = (x + 0.5 - center) * ifs, v;
            if (f == SSL_FILTER_BOX) v = d > -0.5 && d <= 0.5 ? 1.0 : 0.0;
            else v = d < 0 ? 1.0 + d : 1.0 - d;
            if (v < 0) v = 0;
            if (n < 64) wd[n] = v;
            else wt[n] = (float)v;
            n++;
            sum += v;
        }
        double is = sum > 0 ? 1.0 / sum : 1.0;
        for (int k = 0; k < n; k++) wt[k] = (float)((k < 64 ? wd[k] : wt[k]) * is);
        int s = 0;
        while (s < n - 1 && wt[s] == 0) s++;
        while (n - 1 > s && wt[n - 1] == 0) n--;
        if (s) memmove(wt, wt + s, sizeof(float) * (n - s));
        taps[o].start = lo + s;
        taps[o].n = n - s;
    }
}

/* Builds the block tables; returns 0 when some lane's taps do not fit 16 bytes. */
static int ssl__rs_tables(const ssl__taps *tx, const float *wx, int mtx, int dw, int c, int S, int bits,
                          int32_t *base, __m256i *mask, __m256i *wq, int16_t *q) {
    /* quantised weights per output pixel, summing to exactly 2^bits */
    float one = (float)ldexp(1.0, bits);
    for (int x = 0; x < dw; x++) {
        const float *wt = wx + (size_t)x * mtx;
        int16_t *qt = q + (size_t)x * mtx;
        int n = tx[x].n, sum = 0, big = 0;
        for (int k = 0; k < n; k++) {
            qt[k] = (int16_t)(int)(wt[k] * one + 0.5f);
            sum += qt[k];
            if (qt[k] > qt[big]) big = k;
        }
        if (sum > 0) qt[big] = (int16_t)(qt[big] + ((int)one - sum));
    }
    int rowlen = dw * c, nblk = (rowlen + 7) / 8, x = 0, ch = 0;
    if (S == 1) {
        /* per value: tap-0 byte offset, tap count, weight pair; then each
           block's masks and weights with SSE. Returns 2 when every block
           fits one 16-byte window (the broadcast kernel, S = 0). */
        int32_t *off = (int32_t *)(base + 2 * (size_t)nblk), *qq = off + 8 * (size_t)nblk;
        uint8_t *two = (uint8_t *)(qq + 8 * (size_t)nblk);
        for (int v = 0; x < dw; x++)
            for (ch = 0; ch < c; ch++, v++) {
                const int16_t *qt = q + (size_t)x * mtx;
                int n = tx[x].n;
                off[v] = n ? tx[x].start * c + ch : 1 << 28;
                two[v] = n == 2;
                qq[v] = n == 0 ? 0 : (uint16_t)qt[0] | (n == 2 ? (int32_t)((uint32_t)(uint16_t)qt[1] << 16) : 0);
            }
        for (int v = rowlen; v < 8 * nblk; v++) off[v] = 1 << 28, two[v] = 0, qq[v] = 0;
        int shared = 1;
        const __m128i big = _mm_set1_epi32(1 << 28), hi80 = _mm_set1_epi32((int)0x80808080u);
        for (int b = 0; b < nblk; b++) {
            int lo[2], hi[2];
            __m128i o[2], t[2];
            for (int L = 0; L < 2; L++) {
                int v0 = 8 * b + 4 * L;
                o[L] = _mm_loadu_si128((const __m128i *)(off + v0));
                t[L] = _mm_setr_epi32(two[v0] ? c : 0, two[v0 + 1] ? c : 0, two[v0 + 2] ? c : 0, two[v0 + 3] ? c : 0);
                __m128i m = _mm_min_epi32(o[L], _mm_shuffle_epi32(o[L], 0x4e));
                m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0xb1));
                lo[L] = _mm_cvtsi128_si32(m);
                __m128i e = _mm_andnot_si128(_mm_cmpeq_epi32(o[L], big), _mm_add_epi32(o[L], t[L]));
                e = _mm_max_epi32(e, _mm_shuffle_epi32(e, 0x4e));
                e = _mm_max_epi32(e, _mm_shuffle_epi32(e, 0xb1));
                hi[L] = _mm_cvtsi128_si32(e);
                if (lo[L] == 1 << 28) lo[L] = hi[L] = 0;
                if (hi[L] - lo[L] > 15) return 0;
            }
            int blo = lo[0] < lo[1] ? lo[0] : lo[1], bhi = hi[0] > hi[1] ? hi[0] : hi[1];
            if (bhi - blo <= 15) lo[0] = lo[1] = blo;
            else shared = 0;
            for (int L = 0; L < 2; L++) {
                base[2 * b + L] = lo[L];
                /* bytes: [off - lo, 0x80, off + c - lo or 0x80, 0x80]; all 0x80 past the row */
                __m128i valid = _mm_cmplt_epi32(o[L], big), r0 = _mm_sub_epi32(o[L], _mm_set1_epi32(lo[L]));
                __m128i r1 = _mm_add_epi32(r0, t[L]);
                __m128i has1 = _mm_cmpgt_epi32(t[L], _mm_setzero_si128());
                __m128i m = _mm_or_si128(_mm_or_si128(r0, _mm_set1_epi32((int)0x80808000u)),
                                         _mm_and_si128(_mm_slli_epi32(r1, 16), has1));
                m = _mm_andnot_si128(_mm_and_si128(has1, _mm_set1_epi32(0x00800000)), m); /* clear 0x80 of byte 2 */
                m = _mm_blendv_epi8(hi80, m, valid);
                _mm_store_si128((__m128i *)((uint8_t *)&mask[b] + 16 * L), m);
                _mm_store_si128((__m128i *)((int16_t *)&wq[b] + 8 * L), _mm_loadu_si128((const __m128i *)(qq + 8 * b + 4 * L)));
            }
        }
        if (shared) return 2;
        return 1;
    }
    for (int b = 0; b < nblk; b++)
        for (int L = 0; L < 2; L++) {
            int off0[4], nt[4];
            const int16_t *qv[4];
            for (int e = 0; e < 4; e++) {
                if (x < dw) {
                    off0[e] = tx[x].start * c + ch, nt[e] = tx[x].n, qv[e] = q + (size_t)x * mtx;
                    if (++ch == c) ch = 0, x++;
                } else
                    off0[e] = 0, nt[e] = 0, qv[e] = q;
            }
            for (int j = 0; j < S; j++) {
                int i = b * S + j, lo = 1 << 30, hi = -1;
                for (int e = 0; e < 4; e++)
                    for (int t = 0; t < 2; t++)
                        if (2 * j + t < nt[e]) {
                            int off = off0[e] + (2 * j + t) * c;
                            lo = off < lo ? off : lo;
                            hi = off > hi ? off : hi;
                        }
                if (hi < 0) lo = hi = 0;
                if (hi - lo > 15) return 0;
                base[2 * i + L] = lo;
                uint8_t *m = (uint8_t *)&mask[i] + 16 * L;
                int16_t *w = (int16_t *)&wq[i] + 8 * L;
                for (int e = 0; e < 4; e++)
                    for (int t = 0; t < 2; t++) {
                        int k = 2 * j + t, slot = 2 * e + t, ok = k < nt[e];
                        m[2 * slot] = ok ? (uint8_t)(off0[e] + k * c - lo) : 0x80;
                        m[2 * slot + 1] = 0x80;
                        w[slot] = ok ? qv[e][k] : 0;
                    }
            }
        }
    return 1;
}

/* Vertical pass for one output row: sum_k w[k] * rows[k], n >= 1. */
static inline void ssl__rs_vrow(const float *const *rows, const float *w, int n, size_t rowlen, uint8_t *du8,
                                float *df32) {
    size_t x = 0;
    if (df32) {
        if (n == 2) {
            __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]);
            const float *a = rows[0], *b = rows[1];
            for (; x + 8 <= rowlen; x += 8)
                _mm256_storeu_ps(df32 + x, _mm256_fmadd_ps(_mm256_load_ps(b + x), w1,
                                                           _mm256_mul_ps(_mm256_load_ps(a + x), w0)));
        } else {
            for (; x + 8 <= rowlen; x += 8) {
                __m256 o = _mm256_mul_ps(_mm256_load_ps(rows[0] + x), _mm256_set1_ps(w[0]));
                for (int k = 1; k < n; k++) o = _mm256_fmadd_ps(_mm256_load_ps(rows[k] + x), _mm256_set1_ps(w[k]), o);
                _mm256_storeu_ps(df32 + x, o);
            }
        }
        for (; x < rowlen; x++) {
            float o = 0;
            for (int k = 0; k < n; k++) o += w[k] * rows[k][x];
            df32[x] = o;
        }
        return;
    }
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#define SSL__RS_V8(off, dstv)                                                                          \
    do {                                                                                               \
        __m256 o_ = _mm256_fmadd_ps(_mm256_load_ps(rows[0] + (off)), _mm256_set1_ps(w[0]), half);      \
        for (int k = 1; k < n; k++)                                                                    \
            o_ = _mm256_fmadd_ps(_mm256_load_ps(rows[k] + (off)), _mm256_set1_ps(w[k]), o_);           \
        dstv = _mm256_cvttps_epi32(o_);                                                                \
    } while (0)
    if (n == 2) {
        __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]);
        const float *a = rows[0], *b = rows[1];
#define SSL__RS_V2(off) \
    _mm256_cvttps_epi32(_mm256_fmadd_ps(_mm256_load_ps(b + (off)), w1, _mm256_fmadd_ps(_mm256_load_ps(a + (off)), w0, half)))
        for (; x + 32 <= rowlen; x += 32) {
            __m256i i0 = SSL__RS_V2(x), i1 = SSL__RS_V2(x + 8), i2 = SSL__RS_V2(x + 16), i3 = SSL__RS_V2(x + 24);
            __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            _mm256_storeu_si256((__m256i *)(du8 + x), _mm256_permutevar8x32_epi32(p, perm));
        }
#undef SSL__RS_V2
    } else {
        for (; x + 32 <= rowlen; x += 32) {
            __m256i i0, i1, i2, i3;
            SSL__RS_V8(x, i0);
            SSL__RS_V8(x + 8, i1);
            SSL__RS_V8(x + 16, i2);
            SSL__RS_V8(x + 24, i3);
            __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            _mm256_storeu_si256((__m256i *)(du8 + x), _mm256_permutevar8x32_epi32(p, perm));
        }
    }
    for (; x + 8 <= rowlen; x += 8) {
        __m256i i0;
        SSL__RS_V8(x, i0);
        __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(i0), _mm256_extracti128_si256(i0, 1));
        _mm_storel_epi64((__m128i *)(du8 + x), _mm_packus_epi16(p, p));
    }
#undef SSL__RS_V8
    for (; x < rowlen; x++) {
        float o = 0.5f;
        for (int k = 0; k < n; k++) o = fmaf(w[k], rows[k][x], o);
        du8[x] = (uint8_t)(o < 0 ? 0 : o > 255 ? 255 : o);
    }
}

/* Vertical pass of ssl__resample_post: the uint8 value of ssl__rs_vrow, then
   the post ops in float. m[ph], s[ph]: mean and std by lane for a vector
   starting at channel ph (values are interleaved RGB; 8 = 2 mod 3, so three
   vectors cover phases 0, 2, 1). Bilinear weights are non-negative and sum
   to 1, so the rounded sum lies in [0, 255] before the clamp; truncation of
   a positive value is its floor. */
/* a / b as a times the float pair hi + lo of 1/b: equal to the division
   wherever ssl__rs_post_init found it so. The bilinear weights are
   non-negative and sum to 1, so the rounded sum is at most 255 + 0.5 plus
   a few ulps: its floor needs no clamp. */
static inline __m256 ssl__rs_post_v(const float *const *rows, const __m256 *wb, int n, size_t x, __m256 range,
                                    __m256 rr, __m256 rr_lo, __m256 thr, int sol, int exact, __m256 m, __m256 sd,
                                    __m256 rs, __m256 rs_lo) {
    __m256 o = _mm256_fmadd_ps(_mm256_load_ps(rows[0] + x), wb[0], _mm256_set1_ps(0.5f));
    for (int k = 1; k < n; k++) o = _mm256_fmadd_ps(_mm256_load_ps(rows[k] + x), wb[k], o);
    o = _mm256_round_ps(o, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 v = exact ? _mm256_fmadd_ps(o, rr, _mm256_mul_ps(o, rr_lo)) : _mm256_div_ps(o, range);
    if (sol) v = _mm256_blendv_ps(v, _mm256_sub_ps(_mm256_set1_ps(1.0f), v), _mm256_cmp_ps(v, thr, _CMP_GE_OQ));
    v = _mm256_sub_ps(v, m);
    return exact ? _mm256_fmadd_ps(v, rs, _mm256_mul_ps(v, rs_lo)) : _mm256_div_ps(v, sd);
}

static inline __attribute__((always_inline)) void ssl__rs_vrow_post_n(const float *const *rows, const float *w,
                                                                       int n, size_t rowlen, float *dst,
                                                                       const ssl__rs_post *p, const __m256 *m,
                                                                       const __m256 *sd, const __m256 *rsd,
                                                                       const __m256 *rsd_lo, int stream, int sol,
                                                                       int exact) {
    const __m256 range = _mm256_set1_ps(p->range), rr = _mm256_set1_ps(p->rrange),
                 rr_lo = _mm256_set1_ps(p->rrange_lo), thr = _mm256_set1_ps(p->threshold);
    __m256 wb[16];
    for (int k = 0; k < n; k++) wb[k] = _mm256_set1_ps(w[k]);
    size_t x = 0;
#if defined(__AVX512F__)
    { /* the same ops 16 lanes wide: 16 = 1 (mod 3), phases 0, 1, 2 */
        __m512 M[3], S[3], R[3], L[3], W[16];
        for (int ph = 0; ph < 3; ph++) {
            float mv[16], sv[16], rv[16], lv[16];
            for (int j = 0; j < 16; j++) {
                int c = (ph + j) % 3;
                mv[j] = p->mean[c], sv[j] = p->std[c], rv[j] = p->rstd[c], lv[j] = p->rstd_lo[c];
            }
            M[ph] = _mm512_loadu_ps(mv), S[ph] = _mm512_loadu_ps(sv), R[ph] = _mm512_loadu_ps(rv);
            L[ph] = _mm512_loadu_ps(lv);
        }
        for (int k = 0; k < n; k++) W[k] = _mm512_set1_ps(w[k]);
        const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rg = _mm512_set1_ps(p->range),
                     rr = _mm512_set1_ps(p->rrange), rl = _mm512_set1_ps(p->rrange_lo),
                     th = _mm512_set1_ps(p->threshold);
        int st = stream && ((uintptr_t)dst & 63) == 0;
        for (; x + 48 <= rowlen; x += 48) { /* three independent chains side by side */
            __m512 v[3];
            for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_fmadd_ps(_mm512_loadu_ps(rows[0] + x + 16 * ph), W[0], half);
            for (int k = 1; k < n; k++)
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_fmadd_ps(_mm512_loadu_ps(rows[k] + x + 16 * ph), W[k], v[ph]);
            for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_roundscale_ps(v[ph], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            if (exact)
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_fmadd_ps(v[ph], rr, _mm512_mul_ps(v[ph], rl));
            else
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_div_ps(v[ph], rg);
            if (sol)
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_mask_sub_ps(v[ph], _mm512_cmp_ps_mask(v[ph], th, _CMP_GE_OQ), one, v[ph]);
            for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_sub_ps(v[ph], M[ph]);
            if (exact)
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_fmadd_ps(v[ph], R[ph], _mm512_mul_ps(v[ph], L[ph]));
            else
                for (int ph = 0; ph < 3; ph++) v[ph] = _mm512_div_ps(v[ph], S[ph]);
            if (st)
                for (int ph = 0; ph < 3; ph++) _mm512_stream_ps(dst + x + 16 * ph, v[ph]);
            else
                for (int ph = 0; ph < 3; ph++) _mm512_storeu_ps(dst + x + 16 * ph, v[ph]);
        }
    }
#endif
#define SSL__RS_PV(off, ph)                                                             \
    do {                                                                                \
        __m256 v_ = ssl__rs_post_v(rows, wb, n, x + (off), range, rr, rr_lo, thr, sol, exact, m[ph], sd[ph], rsd[ph], rsd_lo[ph]); \
        if (stream) _mm256_stream_ps(dst + x + (off), v_);                              \
        else _mm256_storeu_ps(dst + x + (off), v_);                                     \
    } while (0)
    for (; x + 24 <= rowlen; x += 24) {
        SSL__RS_PV(0, 0);
        SSL__RS_PV(8, 2);
        SSL__RS_PV(16, 1);
    }
    if (x + 8 <= rowlen) { SSL__RS_PV(0, 0); x += 8; }
    if (x + 8 <= rowlen) { SSL__RS_PV(0, 2); x += 8; }
#undef SSL__RS_PV
    for (; x < rowlen; x++) {
        float o = 0.5f;
        for (int k = 0; k < n; k++) o = fmaf(w[k], rows[k][x], o);
        float v = (float)(uint8_t)(o < 0 ? 0 : o > 255 ? 255 : o) / p->range;
        v = v >= p->threshold ? 1.0f - v : v;
        int c = (int)(x % 3);
        dst[x] = (v - p->mean[c]) / p->std[c];
    }
}

/* with the tap count and solarization constant in each loop */
static void ssl__rs_vrow_post(const float *const *rows, const float *w, int n, size_t rowlen, float *dst,
                              const ssl__rs_post *p, const __m256 *m, const __m256 *sd, const __m256 *rsd,
                              const __m256 *rsl, int stream) {
    int sol = p->threshold <= 1.0f;
    if (!p->exact) ssl__rs_vrow_post_n(rows, w, n, rowlen, dst, p, m, sd, rsd, rsl, stream, sol, 0);
    else if (n == 2 && sol) ssl__rs_vrow_post_n(rows, w, 2, rowlen, dst, p, m, sd, rsd, rsl, stream, 1, 1);
    else if (n == 2) ssl__rs_vrow_post_n(rows, w, 2, rowlen, dst, p, m, sd, rsd, rsl, stream, 0, 1);
    else if (sol) ssl__rs_vrow_post_n(rows, w, n, rowlen, dst, p, m, sd, rsd, rsl, stream, 1, 1);
    else ssl__rs_vrow_post_n(rows, w, n, rowlen, dst, p, m, sd, rsd, rsl, stream, 0, 1);
}
#endif

static float ssl__div_pair(float a, float hi, float lo) { return fmaf(a, hi, a * lo); }
static int ssl__same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

SSLDEF void ssl__rs_post_init(ssl__rs_post *p) {
    p->rrange = 1.0f / p->range;
    p->rrange_lo = (float)(1.0 / p->range - p->rrange);
    for (int c = 0; c < 3; c++) p->rstd[c] = 1.0f / p->std[c], p->rstd_lo[c] = (float)(1.0 / p->std[c] - p->rstd[c]);
    /* every value the pass can meet: q / range for q in 0..255, solarized
       or not, minus the mean, over the std */
    p->exact = 1;
    for (int q = 0; q < 256 && p->exact; q++) {
        float x = (float)q / p->range;
        if (!ssl__same_bits(ssl__div_pair((float)q, p->rrange, p->rrange_lo), x)) p->exact = 0;
        for (int sol = 0; sol < 2; sol++) {
            float v = sol ? 1.0f - x : x;
            for (int c = 0; c < 3; c++) {
                float a = v - p->mean[c];
                if (!ssl__same_bits(ssl__div_pair(a, p->rstd[c], p->rstd_lo[c]), a / p->std[c])) p->exact = 0;
            }
        }
    }
}

/* The AVX2 body of ssl__resample_fast and ssl__resample_post; -1 when the
   fast path does not apply. */
static int ssl__resample_fast_impl(const uint8_t *src, int sw, int sh, int c, int ox, int oy, double bx, double by,
                                   double bw, double bh, uint8_t *dst_u8, float *dst_f32, int dw, int dh,
                                   ssl_filter filter, float gain, int flip, const ssl__rs_post *post, int stream,
                                   ssl_buf *scratch);

SSLDEF void ssl__resample_fast(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                               uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, float gain,
                               ssl_buf *scratch) {
    if (ssl__resample_fast_impl(src, sw, sh, c, 0, 0, bx, by, bw, bh, dst_u8, dst_f32, dw, dh, filter, gain, 0, NULL,
                                0, scratch) != 0)
        ssl__resample_gain(src, sw, sh, c, bx, by, bw, bh, dst_u8, dst_f32, dw, dh, filter, gain, scratch);
}

SSLDEF int ssl__resample_post(const uint8_t *src, int sw, int sh, int ox, int oy, double bx, double by, double bw,
                              double bh, float *dst, int dw, int dh, int flip, const ssl__rs_post *post, int stream,
                              ssl_buf *scratch) {
    SSL_ASSERT(post, "resample_post: no post ops");
    return ssl__resample_fast_impl(src, sw, sh, 3, ox, oy, bx, by, bw, bh, NULL, dst, dw, dh, SSL_FILTER_BILINEAR,
                                   1.0f, flip, post, stream, scratch);
}

SSLDEF int ssl__resample_fast_at(const uint8_t *src, int sw, int sh, int c, int ox, int oy, double bx, double by,
                                 double bw, double bh, uint8_t *dst_u8, int dw, int dh, ssl_buf *scratch) {
    return ssl__resample_fast_impl(src, sw, sh, c, ox, oy, bx, by, bw, bh, dst_u8, NULL, dw, dh, SSL_FILTER_BILINEAR,
                                   1.0f, 0, NULL, 0, scratch);
}

static int ssl__resample_fast_impl(const uint8_t *src, int sw, int sh, int c, int ox, int oy, double bx, double by,
                                   double bw, double bh, uint8_t *dst_u8, float *dst_f32, int dw, int dh,
                                   ssl_filter filter, float gain, int flip, const ssl__rs_post *post, int stream,
                                   ssl_buf *scratch) {
#if defined(__AVX2__)
    SSL_ASSERT(dw > 0 && dh > 0 && bw > 0 && bh > 0 && c >= 1 && c <= 4, "bad resample arguments");
    double sx = bw / dw, sy = bh / dh;
    double supx = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sx > 1 ? sx : 1);
    double supy = (filter == SSL_FILTER_BOX ? 0.5 : 1.0) * (sy > 1 ? sy : 1);
    int mtx = (int)ceil(supx) * 2 + 2, mty = (int)ceil(supy) * 2 + 2;
    /* a 16-byte lane holds 2 taps of at most ~(16/c - 2) pixels apart: beyond
       that, the reference path */
    if (sx * c > 9.0 || (post && mty > 16)) return -1;
    size_t rowlen = (size_t)dw * c;
    int nblk = (int)((rowlen + 7) / 8), S = (mtx + 1) / 2;
    size_t rowpad = (size_t)nblk * 8, rowbytes = (size_t)sw * c;
    size_t need = 64 + sizeof(ssl__taps) * (dw + dh) + sizeof(float) * ((size_t)dw * mtx + (size_t)dh * mty) +
                  sizeof(int16_t) * (size_t)dw * mtx + 64 + sizeof(int32_t) * 20 * (size_t)nblk * S + 64 +
                  64 * (size_t)nblk * S + sizeof(float) * rowpad * mty + 64 + rowbytes + 64 + sizeof(int) * mty +
                  sizeof(float) * 4 * mty + 256;
    uint8_t *mem = (uint8_t *)ssl_buf_reserve(scratch, need);
#define SSL__RS_ALIGN(p) ((uint8_t *)(((uintptr_t)(p) + 63) & ~(uintptr_t)63))
    ssl__taps *tx = (ssl__taps *)SSL__RS_ALIGN(mem), *ty = tx + dw;
    float *wx = (float *)(ty + dh), *wy = wx + (size_t)dw * mtx;
    int16_t *q = (int16_t *)(wy + (size_t)dh * mty);
    int32_t *base = (int32_t *)SSL__RS_ALIGN(q + (size_t)dw * mtx);
    __m256i *mask = (__m256i *)SSL__RS_ALIGN(base + 20 * (size_t)nblk * S), *wq = mask + (size_t)nblk * S;
    float *ring = (float *)SSL__RS_ALIGN(wq + (size_t)nblk * S);
    uint8_t *padrow = SSL__RS_ALIGN(ring + rowpad * mty);
    int *ring_row = (int *)SSL__RS_ALIGN(padrow + rowbytes + 32);
    float *wv = (float *)(ring_row + mty);
    const float **rows = (const float **)SSL__RS_ALIGN(wv + mty);
#undef SSL__RS_ALIGN
    ssl__rs_taps(bx, bw, ox + sw, dw, filter, tx, wx, mtx);
    ssl__rs_taps(by, bh, oy + sh, dh, filter, ty, wy, mty);
    if (ox || oy) { /* taps of the whole image, on the part at hand */
        for (int x = 0; x < dw; x++) {
            if (tx[x].n) tx[x].start -= ox;
            SSL_ASSERT(tx[x].n == 0 || (tx[x].start >= 0 && tx[x].start + tx[x].n <= sw), "resample: box outside the part");
        }
        for (int y = 0; y < dh; y++)
            if (ty[y].n) ty[y].start -= oy;
    }
    if (flip) /* a mirrored output is the same sums with the columns' taps in reverse order */
        for (int a = 0, b = dw - 1; a < b; a++, b--) {
            ssl__taps t = tx[a];
            tx[a] = tx[b], tx[b] = t;
            for (int k = 0; k < mtx; k++) {
                float f = wx[(size_t)a * mtx + k];
                wx[(size_t)a * mtx + k] = wx[(size_t)b * mtx + k], wx[(size_t)b * mtx + k] = f;
            }
        }
    int maxn = 0;
    float maxw = 0;
    for (int x = 0; x < dw; x++) {
        if (tx[x].n > maxn) maxn = tx[x].n;
        for (int k = 0; k < tx[x].n; k++)
            if (wx[(size_t)x * mtx + k] > maxw) maxw = wx[(size_t)x * mtx + k];
    }
    S = maxn > 0 ? (maxn + 1) / 2 : 1;
    int bits = 14;
    while (bits < 22 && (double)maxw * ldexp(1.0, bits + 1) + 0.5 + maxn <= 32767.0) bits++;
    int tb = ssl__rs_tables(tx, wx, mtx, dw, c, S, bits, base, mask, wq, q);
    if (!tb) return -1;
    if (tb == 2) S = 0;
    float vscale = (float)((post ? 1.0 : gain) * ldexp(1.0, -bits));
    __m256 pm[3], ps[3], prs[3], prl[3];
    if (post)
        for (int ph = 0; ph < 3; ph++) {
            float mv[8], sv[8], rv[8], lv[8];
            for (int j = 0; j < 8; j++) {
                int ch = (ph + j) % 3;
                mv[j] = post->mean[ch], sv[j] = post->std[ch], rv[j] = post->rstd[ch], lv[j] = post->rstd_lo[ch];
            }
            pm[ph] = _mm256_loadu_ps(mv), ps[ph] = _mm256_loadu_ps(sv), prs[ph] = _mm256_loadu_ps(rv);
            prl[ph] = _mm256_loadu_ps(lv);
        }
    stream = stream && post && ((uintptr_t)dst_f32 & 31) == 0 && (rowlen & 7) == 0;
    size_t total = rowbytes * sh;
    for (int k = 0; k < mty; k++) ring_row[k] = -1;
    for (int y = 0; y < dh; y++) {
        int n = ty[y].n, s0 = ty[y].start;
        SSL_ASSERT(s0 >= 0 && s0 + n <= sh && n <= mty, "resample rows out of range");
        if (n == 0) {
            if (post) {
                float *d = dst_f32 + (size_t)y * rowlen;
                for (size_t x = 0; x < rowlen; x++) {
                    float v = 0.0f >= post->threshold ? 1.0f : 0.0f;
                    d[x] = (v - post->mean[x % 3]) / post->std[x % 3];
                }
            } else if (dst_f32)
                memset(dst_f32 + (size_t)y * rowlen, 0, sizeof(float) * rowlen);
            else
                memset(dst_u8 + (size_t)y * rowlen, 0, rowlen);
            continue;
        }
        for (int k = 0; k < n; k++) {
            int r = s0 + k, slot = r % mty;
            float *hr = ring + (size_t)slot * rowpad;
            if (ring_row[slot] != r) {
                const uint8_t *sr = src + (size_t)r * rowbytes;
                if ((size_t)r * rowbytes + rowbytes + 16 > total) { /* lanes read up to 15 bytes past the taps */
                    memcpy(padrow, sr, rowbytes);
                    memset(padrow + rowbytes, 0, 32);
                    sr = padrow;
                }
                ssl__rs_hrow(sr, base, mask, wq, nblk, S, hr);
                ring_row[slot] = r;
            }
            rows[k] = hr;
            wv[k] = wy[(size_t)y * mty + k] * vscale;
        }
        if (post) ssl__rs_vrow_post(rows, wv, n, rowlen, dst_f32 + (size_t)y * rowlen, post, pm, ps, prs, prl, stream);
        else
            ssl__rs_vrow(rows, wv, n, rowlen, dst_f32 ? NULL : dst_u8 + (size_t)y * rowlen,
                         dst_f32 ? dst_f32 + (size_t)y * rowlen : NULL);
    }
    if (stream) _mm_sfence();
    return 0;
#else
    return -1;
#endif
}

SSLDEF void ssl_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by, double bw, double bh,
                         uint8_t *dst_u8, float *dst_f32, int dw, int dh, ssl_filter filter, ssl_buf *scratch) {
    ssl__resample_gain(src, sw, sh, c, bx, by, bw, bh, dst_u8, dst_f32, dw, dh, filter, 1.0f, scratch);
}

/* ---- 5. Augment --------------------------------------------------------- */

SSLDEF ssl_aug_params ssl_aug_identity(void) {
    ssl_aug_params p;
    memset(&p, 0, sizeof p);
    p.brightness = p.contrast = p.saturation = 1.0f;
    for (int i = 0; i < 4; i++) p.order[i] = (uint8_t)i;
    p.solarize_threshold = 0.5f;
    return p;
}

SSLDEF int ssl_rrc_sample(ssl_rng *r, int src_w, int src_h, float scale_min, float scale_max, float ratio_min,
                          float ratio_max, float box[4]) {
    SSL_ASSERT(src_w > 0 && src_h > 0, "crop: bad source size %dx%d", src_w, src_h);
    double W = src_w, H = src_h, area = W * H;
    double rmin = ratio_min, rmax = ratio_max;
    if (rmin <= 0) rmin = rmax = W / H;
    double lr0 = log(rmin), lr1 = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * ssl_rng_range(r, scale_min, scale_max);
        double ratio = exp(lr0 + (lr1 - lr0) * ssl_rng_uniform(r));
        int w = (int)nearbyint(sqrt(target * ratio)); /* round half to even, as Python */
        int h = (int)nearbyint(sqrt(target / ratio));
        if (w > 0 && w <= src_w && h > 0 && h <= src_h) {
            box[1] = (float)ssl_rng_below(r, (uint32_t)(src_h - h + 1));
            box[0] = (float)ssl_rng_below(r, (uint32_t)(src_w - w + 1));
            box[2] = (float)w;
            box[3] = (float)h;
            return 0;
        }
    }
    /* centre crop, the ratio clamped into [rmin, rmax] */
    double in_ratio = W / H;
    int w, h;
    if (in_ratio < rmin) { w = src_w; h = (int)nearbyint(W / rmin); }
    else if (in_ratio > rmax) { h = src_h; w = (int)nearbyint(H * rmax); }
    else { w = src_w; h = src_h; }
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    box[0] = (float)((src_w - w) / 2);
    box[1] = (float)((src_h - h) / 2);
    box[2] = (float)w;
    box[3] = (float)h;
    return 1;
}

/* factor uniform in [max(0, 1 - s), 1 + s]; exactly 1 when s == 0 */
static float ssl__jitter_factor(ssl_rng *r, float s) {
    float u = ssl_rng_uniform(r);
    if (s <= 0) return 1.0f;
    float lo = 1.0f - s > 0 ? 1.0f - s : 0.0f;
    return lo + (1.0f + s - lo) * u;
}

SSLDEF ssl_aug_params ssl_view_draw(const ssl_view_recipe *rc, int src_w, int src_h, uint64_t seed, uint32_t epoch,
                                    uint32_t sample, uint32_t view) {
    ssl_aug_params p = ssl_aug_identity();
    ssl_rng r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_CROP);
    float box[4];
    ssl_rrc_sample(&r, src_w, src_h, rc->scale_min, rc->scale_max, rc->ratio_min, rc->ratio_max, box);
    p.crop_x = box[0], p.crop_y = box[1], p.crop_w = box[2], p.crop_h = box[3];

    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_FLIP);
    p.flip = ssl_rng_uniform(&r) < rc->flip_p;

    /* every draw is made whether or not jitter applies, so each number has a
       fixed place in the stream */
    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_JITTER);
    int jit = ssl_rng_uniform(&r) < rc->jitter_p;
    uint8_t order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) { /* Fisher-Yates: a uniform permutation */
        int j = (int)ssl_rng_below(&r, (uint32_t)i + 1);
        uint8_t t = order[i]; order[i] = order[j]; order[j] = t;
    }
    float b = ssl__jitter_factor(&r, rc->brightness);
    float c = ssl__jitter_factor(&r, rc->contrast);
    float s = ssl__jitter_factor(&r, rc->saturation);
    float hu = ssl_rng_uniform(&r);
    if (jit) {
        p.jitter = 1;
        memcpy(p.order, order, 4);
        p.brightness = b, p.contrast = c, p.saturation = s;
        p.hue = rc->hue > 0 ? -rc->hue + 2.0f * rc->hue * hu : 0.0f;
    }

    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_GRAY);
    p.gray = ssl_rng_uniform(&r) < rc->gray_p;

    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_BLUR);
    int blur = ssl_rng_uniform(&r) < rc->blur_p;
    float sigma = ssl_rng_range(&r, rc->blur_sigma_min, rc->blur_sigma_max);
    p.blur_sigma = blur ? sigma : 0.0f;

    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_SOLARIZE);
    p.solarize = ssl_rng_uniform(&r) < rc->solarize_p;
    p.solarize_threshold = rc->solarize_threshold;

    r = ssl_rng_make(seed, epoch, sample, view, SSL_RNG_NOISE);
    int noise = ssl_rng_uniform(&r) < rc->noise_p;
    uint64_t lo = ssl_rng_u32(&r), hi = ssl_rng_u32(&r);
    if (noise && rc->noise_std > 0) {
        p.noise_std = rc->noise_std;
        p.noise_seed = lo | hi << 32;
    }
    return p;
}

/* ---- applying: planar chunks ---------------------------------------------
   The image is copied to three planes (flipping on the way), the pointwise
   ops run over chunks of SSL__CHUNK pixels that stay in L1, one op after
   another, then the blur runs per plane and a last pass writes the pixels
   back interleaved, with solarize and noise (and, for ssl_augment_apply_ex,
   the normalize) on the way. Contrast needs the mean gray of the image as it is
   when contrast comes in the order, so the chain splits there: the pass
   before it also sums the gray. After grayscale the three planes are equal
   and share one buffer, so the blur runs once. */
#define SSL__CHUNK 1024

enum { SSL__OP_BRIGHTNESS, SSL__OP_CONTRAST, SSL__OP_SATURATION, SSL__OP_HUE, SSL__OP_GRAY };

/* Sum of gray over n pixels: 16 float lanes (vectorizable without
   reassociation), then double. */
static double ssl__gray_sum(const float *restrict R, const float *restrict G, const float *restrict B, int n) {
    float lane[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lane[l] += ssl_px_gray(R[i + l], G[i + l], B[i + l]);
    double s = 0;
    for (int l = 0; l < 16; l++) s += lane[l];
    for (; i < n; i++) s += ssl_px_gray(R[i], G[i], B[i]);
    return s;
}

/* One op over n pixels of the three planes. */
static void ssl__op_chunk(int op, const ssl_aug_params *p, float mean_gray, float *restrict R, float *restrict G,
                          float *restrict B, int n) {
    switch (op) {
    case SSL__OP_BRIGHTNESS: {
        float f = p->brightness;
        for (int i = 0; i < n; i++) {
            R[i] = ssl_px_brightness(R[i], f);
            G[i] = ssl_px_brightness(G[i], f);
            B[i] = ssl_px_brightness(B[i], f);
        }
        break;
    }
    case SSL__OP_CONTRAST: {
        float f = p->contrast;
        for (int i = 0; i < n; i++) {
            R[i] = ssl_px_blend(R[i], mean_gray, f);
            G[i] = ssl_px_blend(G[i], mean_gray, f);
            B[i] = ssl_px_blend(B[i], mean_gray, f);
        }
        break;
    }
    case SSL__OP_SATURATION: {
        float f = p->saturation;
        for (int i = 0; i < n; i++) {
            float y = ssl_px_gray(R[i], G[i], B[i]);
            R[i] = ssl_px_blend(R[i], y, f);
            G[i] = ssl_px_blend(G[i], y, f);
            B[i] = ssl_px_blend(B[i], y, f);
        }
        break;
    }
    case SSL__OP_HUE: {
        float shift = p->hue;
        for (int i = 0; i < n; i++) {
            float r = R[i], g = G[i], b = B[i];
            ssl_px_hue(&r, &g, &b, shift);
            R[i] = r, G[i] = g, B[i] = b;
        }
        break;
    }
    case SSL__OP_GRAY: /* written to R only; the caller then aliases G and B to R */
        for (int i = 0; i < n; i++) R[i] = ssl_px_gray(R[i], G[i], B[i]);
        break;
    }
}

/* Runs ops[a..b) over all pixels, chunk by chunk; with sum, returns the sum
   of the resulting gray (for contrast). */
static double ssl__chain_pass(const int *ops, int a, int b, int sum, const ssl_aug_params *p, float mean_gray,
                              float *R, float *G, float *B, int n) {
    double gsum = 0;
    for (int i0 = 0; i0 < n; i0 += SSL__CHUNK) {
        int m = n - i0 < SSL__CHUNK ? n - i0 : SSL__CHUNK;
        for (int k = a; k < b; k++) ssl__op_chunk(ops[k], p, mean_gray, R + i0, G + i0, B + i0, m);
        if (sum) gsum += ssl__gray_sum(R + i0, G + i0, B + i0, m);
    }
    return gsum;
}

/* One line of the separable blur, written as
   x + sum_j k_j ((x_-j - x) + (x_+j - x)): the same normalized blur, and a
   constant image comes out exactly unchanged. Here
   dst[x] = c[x] + sum_j k[j] ((lo[j][x] - c[x]) + (hi[j][x] - c[x])), x in [0, n).
   Blocks of two vectors use GCC/Clang vector types so the sums stay in
   registers across the taps (left alone, GCC vectorizes across the taps
   instead, slower even than a plain loop); the tail does the same
   arithmetic one value at a time. */
#if defined(__AVX512F__)
#define SSL__VF 16 /* floats per vector: the widest the target has */
#elif defined(__AVX__)
#define SSL__VF 8
#else
#define SSL__VF 4
#endif
typedef float ssl__vf __attribute__((vector_size(4 * SSL__VF), aligned(4))); /* aligned(4): unaligned loads */
static void ssl__blur_line(float *restrict dst, const float *c, const float *const *lo, const float *const *hi,
                           const float *k, int rad, int n) {
    int x0 = 0;
    for (; x0 + 2 * SSL__VF <= n; x0 += 2 * SSL__VF) {
        ssl__vf c0 = *(const ssl__vf *)(c + x0), c1 = *(const ssl__vf *)(c + x0 + SSL__VF);
        ssl__vf s0 = c0 - c0, s1 = s0; /* zeros */
        for (int j = 1; j <= rad; j++) {
            const float *a = lo[j] + x0, *b = hi[j] + x0;
            float kj = k[j];
            s0 += kj * ((*(const ssl__vf *)a - c0) + (*(const ssl__vf *)b - c0));
            s1 += kj * ((*(const ssl__vf *)(a + SSL__VF) - c1) + (*(const ssl__vf *)(b + SSL__VF) - c1));
        }
        *(ssl__vf *)(dst + x0) = c0 + s0;
        *(ssl__vf *)(dst + x0 + SSL__VF) = c1 + s1;
    }
    for (int x = x0; x < n; x++) {
        float acc = 0;
        for (int j = 1; j <= rad; j++) acc += k[j] * ((lo[j][x] - c[x]) + (hi[j][x] - c[x]));
        dst[x] = c[x] + acc;
    }
}

/* Blurs one plane in place: rows into tmp (each copied into `row`,
   w + 2*rad floats, with reflected ends), then columns back into P, reading
   reflected row pointers. */
static void ssl__blur_plane(float *restrict P, float *restrict tmp, float *restrict row, int w, int h, const float *k,
                            int rad) {
    const float *left[SSL_BLUR_MAX_RADIUS + 1], *right[SSL_BLUR_MAX_RADIUS + 1];
    const float *up[SSL_BLUR_MAX_RADIUS + 1], *dn[SSL_BLUR_MAX_RADIUS + 1];
    for (int j = 1; j <= rad; j++) left[j] = row + rad - j, right[j] = row + rad + j;
    for (int y = 0; y < h; y++) { /* rows: pad by reflection, then blur along x */
        const float *src = P + (size_t)y * w;
        memcpy(row + rad, src, sizeof(float) * w);
        for (int j = 1; j <= rad; j++) {
            row[rad - j] = src[j];
            row[rad + w - 1 + j] = src[w - 1 - j];
        }
        ssl__blur_line(tmp + (size_t)y * w, row + rad, left, right, k, rad, w);
    }
    for (int y = 0; y < h; y++) { /* columns: reflected row pointers */
        for (int j = 1; j <= rad; j++) {
            up[j] = tmp + (size_t)ssl__reflect(y - j, h) * w;
            dn[j] = tmp + (size_t)ssl__reflect(y + j, h) * w;
        }
        ssl__blur_line(P + (size_t)y * w, tmp + (size_t)y * w, up, dn, k, rad, w);
    }
}

/* What the last pass does to each value: scale (u8 range -> [0,1]),
   solarize, noise, normalize. Scale and solarize are always applied (a
   disabled solarize has threshold +inf); noise and normalize pick the loop. */
typedef struct {
    float range, threshold, noise_std; /* x / range first */
    uint64_t noise_seed;
    float mean[3], std[3];
} ssl__finish;

static inline __attribute__((always_inline)) void ssl__finish_px(const ssl__finish *f, int noise, int norm,
                                                                  uint32_t pixel, float *rgb) {
    float z[3] = {0, 0, 0};
    if (noise) ssl_px_normal3(f->noise_seed, pixel, z);
    for (int c = 0; c < 3; c++) {
        float x = ssl_px_solarize(rgb[c] / f->range, f->threshold);
        if (noise) x = ssl_px_clamp01(x + f->noise_std * z[c]);
        rgb[c] = norm ? (x - f->mean[c]) / f->std[c] : x;
    }
}

/* Planes -> interleaved out (or interleaved in place when R is NULL),
   finishing each pixel. noise and norm are constants at each call, so each
   variant is its own branch-free loop. */
static inline __attribute__((always_inline)) void ssl__finish_loop(const ssl__finish *f, int noise, int norm,
                                                                    const float *restrict R, const float *restrict G,
                                                                    const float *restrict B, float *restrict out,
                                                                    int n) {
    if (R)
        for (int i = 0; i < n; i++) {
            float px[3] = {R[i], G[i], B[i]};
            ssl__finish_px(f, noise, norm, (uint32_t)i, px);
            out[3 * i] = px[0], out[3 * i + 1] = px[1], out[3 * i + 2] = px[2];
        }
    else
        for (int i = 0; i < n; i++) ssl__finish_px(f, noise, norm, (uint32_t)i, out + 3 * i);
}

static void ssl__finish_all(const ssl__finish *f, int noise, int norm, const float *R, const float *G,
                            const float *B, float *out, int n) {
    if (noise && norm) ssl__finish_loop(f, 1, 1, R, G, B, out, n);
    else if (noise) ssl__finish_loop(f, 1, 0, R, G, B, out, n);
    else if (norm) ssl__finish_loop(f, 0, 1, R, G, B, out, n);
    else ssl__finish_loop(f, 0, 0, R, G, B, out, n);
}

static void ssl__flip_inplace(float *img, int w, int h) {
    for (int y = 0; y < h; y++) {
        float *row = img + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                float t = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = t;
            }
    }
}

/* Interleaved -> planes, divided by range, mirrored if flip. */
static void ssl__to_planes(const float *restrict img, int w, int h, int flip, float range, float *restrict R,
                           float *restrict G, float *restrict B) {
    for (int y = 0; y < h; y++) {
        const float *s = img + (size_t)y * w * 3;
        float *r = R + (size_t)y * w, *g = G + (size_t)y * w, *b = B + (size_t)y * w;
        if (flip)
            for (int x = 0; x < w; x++) {
                int sx = w - 1 - x;
                r[x] = s[3 * sx] / range, g[x] = s[3 * sx + 1] / range, b[x] = s[3 * sx + 2] / range;
            }
        else
            for (int x = 0; x < w; x++)
                r[x] = s[3 * x] / range, g[x] = s[3 * x + 1] / range, b[x] = s[3 * x + 2] / range;
    }
}

static size_t ssl__align64(size_t n) { return (n + 15) & ~(size_t)15; } /* in floats */

SSLDEF int ssl_aug_chain(const ssl_aug_params *p, int ops[5]) {
    int nops = 0;
    if (p->jitter)
        for (int i = 0; i < 4; i++) {
            int o = p->order[i];
            SSL_ASSERT(o < 4, "augment: order[%d] = %d is not an op", i, o);
            if ((o == SSL__OP_BRIGHTNESS && p->brightness != 1.0f) || (o == SSL__OP_CONTRAST && p->contrast != 1.0f) ||
                (o == SSL__OP_SATURATION && p->saturation != 1.0f) || (o == SSL__OP_HUE && p->hue != 0.0f))
                ops[nops++] = o;
        }
    if (p->gray) ops[nops++] = SSL__OP_GRAY;
    return nops;
}

SSLDEF void ssl_augment_apply_ex(const ssl_aug_params *p, float *img, int w, int h, float in_range,
                                 const float mean[3], const float std[3], ssl_buf *scratch) {
    SSL_ASSERT(w > 0 && h > 0 && (int64_t)w * h < (1ll << 31), "augment: bad image size %dx%d", w, h);
    int n = w * h, noise = p->noise_std > 0, norm = mean && std;
    ssl__finish fin;
    fin.range = in_range;
    fin.threshold = p->solarize ? p->solarize_threshold : INFINITY;
    fin.noise_std = p->noise_std;
    fin.noise_seed = p->noise_seed;
    for (int c = 0; c < 3; c++) {
        fin.mean[c] = norm ? mean[c] : 0.0f;
        fin.std[c] = norm ? std[c] : 1.0f;
    }

    /* the chain of pointwise ops, in order; identities are left out */
    int ops[5], nops = ssl_aug_chain(p, ops);
    float kernel[SSL_BLUR_MAX_RADIUS + 1];
    int rad = p->blur_sigma > 0 ? ssl_blur_kernel(p->blur_sigma, w, h, kernel) : 0;

    if (nops == 0 && rad == 0) { /* nothing needs planes: work in place */
        if (p->flip) ssl__flip_inplace(img, w, h);
        if (noise || norm || p->solarize || in_range != 1.0f) ssl__finish_all(&fin, noise, norm, NULL, NULL, NULL, img, n);
        return;
    }

    size_t plane = ssl__align64((size_t)n), rowlen = ssl__align64((size_t)w + 2 * SSL_BLUR_MAX_RADIUS);
    float *mem = (float *)ssl_buf_reserve(scratch, sizeof(float) * (4 * plane + rowlen) + 64);
    mem = (float *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    float *R = mem, *G = R + plane, *B = G + plane, *tmp = B + plane, *row = tmp + plane;
    ssl__to_planes(img, w, h, p->flip, in_range, R, G, B);
    fin.range = 1.0f;

    /* the chain; contrast needs the mean gray of the image as it stands when
       contrast's turn comes, so the pass before it also sums the gray */
    int ci = nops;
    for (int k = 0; k < nops; k++)
        if (ops[k] == SSL__OP_CONTRAST) ci = k;
    float mean_gray = 0;
    if (ci < nops) mean_gray = (float)(ssl__chain_pass(ops, 0, ci, 1, p, 0, R, G, B, n) / n);
    if (nops > 0) ssl__chain_pass(ops, ci < nops ? ci : 0, nops, 0, p, mean_gray, R, G, B, n);
    if (p->gray) G = B = R;

    if (rad > 0) {
        ssl__blur_plane(R, tmp, row, w, h, kernel, rad);
        if (G != R) ssl__blur_plane(G, tmp, row, w, h, kernel, rad);
        if (B != R) ssl__blur_plane(B, tmp, row, w, h, kernel, rad);
    }
    ssl__finish_all(&fin, noise, norm, R, G, B, img, n);
}

SSLDEF void ssl_augment_apply(const ssl_aug_params *p, float *img, int w, int h, ssl_buf *scratch) {
    ssl_augment_apply_ex(p, img, w, h, 1.0f, NULL, NULL, scratch);
}

SSLDEF void ssl_normalize(float *img, int w, int h, const float mean[3], const float std[3]) {
    /* a period of 48 values holds whole pixels and whole 16-float vectors */
    float m[48], s[48];
    for (int i = 0; i < 48; i++) m[i] = mean[i % 3], s[i] = std[i % 3];
    size_t n = (size_t)w * h * 3, i = 0;
    for (; i + 48 <= n; i += 48)
        for (int j = 0; j < 48; j++) img[i + j] = (img[i + j] - m[j]) / s[j];
    for (int j = 0; i + j < n; j++) img[i + j] = (img[i + j] - m[j]) / s[j]; /* fewer than 48 left */
}

/* ---- recipes ---- */
static const float ssl__imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float ssl__imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/* The common base: RRC (0.08, 1) (3/4, 4/3), flip 0.5, ImageNet stats,
   everything else off (blur sigma range and solarize threshold preset). */
static ssl_view_recipe ssl__recipe_base(int out_res) {
    ssl_view_recipe r;
    memset(&r, 0, sizeof r);
    r.out_w = r.out_h = out_res;
    r.scale_min = 0.08f, r.scale_max = 1.0f;
    r.ratio_min = 3.0f / 4.0f, r.ratio_max = 4.0f / 3.0f;
    r.flip_p = 0.5f;
    r.blur_sigma_min = 0.1f, r.blur_sigma_max = 2.0f;
    r.solarize_threshold = 0.5f;
    for (int c = 0; c < 3; c++) r.mean[c] = ssl__imagenet_mean[c], r.std[c] = ssl__imagenet_std[c];
    return r;
}

static void ssl__recipe_jitter(ssl_view_recipe *r) { /* SimCLR's color distortion, strength 0.5 */
    r->jitter_p = 0.8f;
    r->brightness = 0.4f, r->contrast = 0.4f, r->saturation = 0.2f, r->hue = 0.1f;
    r->gray_p = 0.2f;
}

#define SSL__PRESETS "simclr, byol, crop_gray, crop_flip, noise"

SSLDEF int ssl_view_preset(const char *name, int view, int out_res, ssl_view_recipe *out) {
    if (!name) name = "(null)";
    if (out_res <= 0) return ssl__fail("view preset '%s': output size %d must be positive", name, out_res);
    if (view < 0) return ssl__fail("view preset '%s': view %d must be >= 0", name, view);
    ssl_view_recipe r = ssl__recipe_base(out_res);
    if (!strcmp(name, "simclr")) {          /* Chen et al. 2020, appendix A: both views alike */
        ssl__recipe_jitter(&r);
        r.blur_p = 0.5f;
    } else if (!strcmp(name, "byol")) {     /* Grill et al. 2020, table 6: even views T, odd views T' */
        ssl__recipe_jitter(&r);
        r.blur_p = view % 2 == 0 ? 1.0f : 0.1f;
        r.solarize_p = view % 2 == 0 ? 0.0f : 0.2f;
    } else if (!strcmp(name, "crop_gray")) { /* FFCV-SSL's cheap recipe: crop, flip, grayscale */
        r.gray_p = 0.2f;
    } else if (!strcmp(name, "crop_flip")) { /* crop and flip: the base as it is */
    } else if (!strcmp(name, "noise")) {    /* no crop (whole image, resized), Gaussian noise std 0.1 on [0,1] */
        r.scale_min = r.scale_max = 1.0f;
        r.ratio_min = r.ratio_max = 0.0f;   /* the image's own aspect ratio */
        r.flip_p = 0.0f;
        r.noise_p = 1.0f, r.noise_std = 0.1f;
    } else {
        return ssl__fail("unknown view preset '%s' (valid: " SSL__PRESETS ")", name);
    }
    *out = r;
    return 0;
}

SSLDEF int ssl_view_patch(int out_res, float scale, ssl_view_recipe *out) {
    if (!(scale > 0 && scale <= 1)) return ssl__fail("patch view: scale %g must be in (0, 1]", scale);
    if (ssl_view_preset("crop_flip", 0, out_res, out)) return -1;
    out->scale_min = out->scale_max = scale;
    out->ratio_min = out->ratio_max = 0.0f; /* the image's own aspect ratio */
    out->flip_p = 0.0f;
    return 0;
}

SSLDEF int ssl_view_recipe_check(const ssl_view_recipe *r) {
#define SSL__CHECK_P(f) \
    if (!(r->f >= 0 && r->f <= 1)) return ssl__fail("view recipe: " #f " = %g must be a probability in [0, 1]", r->f)
    if (r->out_w <= 0 || r->out_h <= 0) return ssl__fail("view recipe: output size %dx%d must be positive", r->out_w, r->out_h);
    if (!(r->scale_min > 0 && r->scale_min <= r->scale_max && r->scale_max <= 1))
        return ssl__fail("view recipe: scale (%g, %g) must satisfy 0 < min <= max <= 1", r->scale_min, r->scale_max);
    if (!(r->ratio_min == 0 && r->ratio_max == 0) && !(r->ratio_min > 0 && r->ratio_min <= r->ratio_max))
        return ssl__fail("view recipe: ratio (%g, %g) must satisfy 0 < min <= max (or 0, 0 for the image's own)",
                         r->ratio_min, r->ratio_max);
    SSL__CHECK_P(flip_p);
    SSL__CHECK_P(jitter_p);
    SSL__CHECK_P(gray_p);
    SSL__CHECK_P(blur_p);
    SSL__CHECK_P(solarize_p);
    SSL__CHECK_P(noise_p);
    SSL__CHECK_P(solarize_threshold);
    if (!(r->brightness >= 0 && r->contrast >= 0 && r->saturation >= 0))
        return ssl__fail("view recipe: jitter strengths (%g, %g, %g) must be >= 0", r->brightness, r->contrast,
                         r->saturation);
    if (!(r->hue >= 0 && r->hue <= 0.5f)) return ssl__fail("view recipe: hue = %g must be in [0, 0.5]", r->hue);
    if (r->blur_p > 0 && !(r->blur_sigma_min > 0 && r->blur_sigma_min <= r->blur_sigma_max &&
                           r->blur_sigma_max <= SSL_BLUR_MAX_RADIUS / 3.0f))
        return ssl__fail("view recipe: blur sigma (%g, %g) must satisfy 0 < min <= max <= %g", r->blur_sigma_min,
                         r->blur_sigma_max, SSL_BLUR_MAX_RADIUS / 3.0);
    if (!(r->noise_std >= 0)) return ssl__fail("view recipe: noise_std = %g must be >= 0", r->noise_std);
    for (int c = 0; c < 3; c++)
        if (!(r->std[c] > 0)) return ssl__fail("view recipe: std[%d] = %g must be > 0", c, r->std[c]);
    return 0;
#undef SSL__CHECK_P
}

/* ---- 6. Loader ---------------------------------------------------------- */

/* An image's size against the size its pack index gives (0, 0: any). */
static int ssl__size_is(int iw, int ih, int full_w, int full_h) {
    if (full_w && (iw != full_w || ih != full_h))
        return ssl__fail("the image is %dx%d but the index says %dx%d", iw, ih, full_w, full_h);
    return 0;
}

static int ssl__decode_at_least(const void *buf, size_t n, int want_c, int need_w, int need_h, int full_w, int full_h,
                                ssl_buf *out, int *w, int *h, int *c) {
#ifdef SSL_TURBOJPEG
    int iw = 0, ih = 0, ic = 0, fmt = 0;
    if (ssl_image_info(buf, n, &iw, &ih, &ic, &fmt) != 0) return -1;
    if (ssl__size_is(iw, ih, full_w, full_h) != 0) return -1;
    if (fmt == SSL_FMT_JPEG)
        return ssl__jpeg_scaled((const uint8_t *)buf, n, iw, ih, want_c ? want_c : ic, need_w, need_h, out, w, h, c);
#endif
    (void)need_w;
    (void)need_h;
    if (ssl_decode(buf, n, want_c, out, w, h, c) != 0) return -1;
    return ssl__size_is(*w, *h, full_w, full_h);
}

SSLDEF int ssl_decode_at_least(const void *buf, size_t n, int want_c, int need_w, int need_h, ssl_buf *out, int *w,
                               int *h, int *c) {
    return ssl__decode_at_least(buf, n, want_c, need_w, need_h, 0, 0, out, w, h, c);
}

#if defined(SSL_TURBOJPEG) && defined(SSL_LIBJPEG)
#include <jpeglib.h>
#include <setjmp.h>
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} ssl__jerr;
static void ssl__jerr_exit(j_common_ptr ci) {
    ssl__jerr *e = (ssl__jerr *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jump, 1);
}
static void ssl__jerr_quiet(j_common_ptr ci, int level) { (void)ci, (void)level; } /* warnings: decode goes on */

/* Per thread, the error manager and the decompressor's memory; the
   decompressor itself is created and destroyed around each image (see
   ssl__tjd). */
static pthread_key_t ssl__jd_key;
static pthread_once_t ssl__jd_once = PTHREAD_ONCE_INIT;
typedef struct {
    struct jpeg_decompress_struct ci;
    ssl__jerr err;
} ssl__jdec;
static void ssl__jd_destroy(void *p) {
    ssl__jdec *d = (ssl__jdec *)p;
    free(d);
}
static void ssl__jd_keys(void) { pthread_key_create(&ssl__jd_key, ssl__jd_destroy); }
static __attribute__((noinline)) ssl__jdec *ssl__jd(void) {
    pthread_once(&ssl__jd_once, ssl__jd_keys);
    ssl__jdec *d = (ssl__jdec *)pthread_getspecific(ssl__jd_key);
    if (!d) {
        d = (ssl__jdec *)ssl_calloc(sizeof *d, "JPEG decompressor");
        d->ci.err = jpeg_std_error(&d->err.mgr);
        d->err.mgr.error_exit = ssl__jerr_exit;
        d->err.mgr.emit_message = ssl__jerr_quiet;
        pthread_setspecific(ssl__jd_key, d);
    }
    return d;
}

/* The decode of ssl_decode_region; libjpeg errors longjmp out of it. 1: CMYK
   (left to TurboJPEG). */
static __attribute__((noinline)) int ssl__jd_run(ssl__jdec *d, const uint8_t *buf, size_t n, int want_c, int need_w,
                                                 int need_h, double x0, double y0, double x1, double y1, int full_w,
                                                 int full_h, ssl_buf *out, int *w, int *h, int *c, int *ox, int *oy,
                                                 int *sw, int *sh) {
    struct jpeg_decompress_struct *ci = &d->ci;
    jpeg_mem_src(ci, buf, (unsigned long)n);
    jpeg_read_header(ci, TRUE);
    int iw = (int)ci->image_width, ih = (int)ci->image_height;
    /* the checks ssl_image_info makes, before anything is allocated */
    int over = (uint64_t)iw * (uint64_t)ih > SSL_MAX_PIXELS;
    if (over || ssl__size_is(iw, ih, full_w, full_h) != 0) {
        jpeg_abort_decompress(ci);
        if (over) ssl__fail("image header claims %dx%d pixels, over the limit of %u pixels", iw, ih, SSL_MAX_PIXELS);
        return -1;
    }
    if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK) {
        jpeg_abort_decompress(ci);
        return 1;
    }
    int num = 8; /* the scale ssl_decode_at_least picks */
    for (int k = 1; k < 8; k++)
        if ((iw * k + 7) / 8 >= need_w && (ih * k + 7) / 8 >= need_h) { num = k; break; }
    ci->scale_num = (unsigned)num, ci->scale_denom = 8;
    ci->out_color_space = want_c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    ci->dct_method = JDCT_ISLOW; /* what TurboJPEG and PIL use */
    jpeg_start_decompress(ci);
    int W = (int)ci->output_width, H = (int)ci->output_height;
    double fx = (double)W / iw, fy = (double)H / ih;
    /* the columns and rows the resampler reads, plus one each side */
    int rx0 = (int)floor(x0 * fx) - 1, rx1 = (int)ceil(x1 * fx) + 1;
    int ry0 = (int)floor(y0 * fy) - 1, ry1 = (int)ceil(y1 * fy) + 1;
    rx0 = rx0 < 0 ? 0 : rx0, ry0 = ry0 < 0 ? 0 : ry0;
    rx1 = rx1 > W ? W : rx1, ry1 = ry1 > H ? H : ry1;
    if (rx0 >= rx1 || ry0 >= ry1) rx0 = ry0 = 0, rx1 = W, ry1 = H;
    JDIMENSION xo = (JDIMENSION)rx0, xw = (JDIMENSION)(rx1 - rx0);
    if (xw < (JDIMENSION)W) jpeg_crop_scanline(ci, &xo, &xw); /* moves xo left to an iMCU boundary */
    int pitch = (int)ci->output_width * want_c, rows = ry1 - ry0;
    uint8_t *dst = (uint8_t *)ssl_buf_reserve(out, (size_t)pitch * rows);
    if (ry0 > 0) jpeg_skip_scanlines(ci, (JDIMENSION)ry0);
    while ((int)ci->output_scanline < ry1) {
        JSAMPROW row = dst + (size_t)((int)ci->output_scanline - ry0) * pitch;
        if (jpeg_read_scanlines(ci, &row, 1) != 1) {
            snprintf(d->err.msg, sizeof d->err.msg, "no data for row %d", (int)ci->output_scanline);
            longjmp(d->err.jump, 1);
        }
    }
    jpeg_abort_decompress(ci); /* the rows below are not needed */
    *w = (int)ci->output_width, *h = rows, *c = want_c, *ox = (int)xo, *oy = ry0, *sw = W, *sh = H;
    return 0;
}
#endif

SSLDEF int ssl_decode_region(const void *buf, size_t n, int want_c, int need_w, int need_h, double x0, double y0,
                             double x1, double y1, ssl_buf *out, int *w, int *h, int *c, int *ox, int *oy, int *sw,
                             int *sh) {
    return ssl__decode_region_sized(buf, n, want_c, need_w, need_h, x0, y0, x1, y1, 0, 0, out, w, h, c, ox, oy, sw, sh);
}

#ifdef SSL_TURBOJPEG
/* ssl__jd_run with a fresh decompressor; 1 where it does not apply (not a
   JPEG, CMYK, want_c not 1 or 3, or a build without libjpeg's headers). */
static int ssl__jpeg_lib(const uint8_t *b, size_t n, int want_c, int need_w, int need_h, double x0, double y0, double x1,
                         double y1, int full_w, int full_h, ssl_buf *out, int *w, int *h, int *c, int *ox, int *oy,
                         int *sw, int *sh) {
#ifdef SSL_LIBJPEG
    if (n > 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF && (want_c == 1 || want_c == 3)) {
        ssl__jdec *volatile d = ssl__jd();
        jpeg_create_decompress(&d->ci);
        if (setjmp(d->err.jump)) {
            jpeg_destroy_decompress(&d->ci);
            return ssl__fail("JPEG decode failed: %s", d->err.msg);
        }
        int rc = ssl__jd_run(d, b, n, want_c, need_w, need_h, x0, y0, x1, y1, full_w, full_h, out, w, h, c, ox, oy,
                             sw, sh);
        jpeg_destroy_decompress(&d->ci);
        return rc;
    }
#else
    (void)b, (void)n, (void)want_c, (void)need_w, (void)need_h, (void)x0, (void)y0, (void)x1, (void)y1;
    (void)full_w, (void)full_h, (void)out, (void)w, (void)h, (void)c, (void)ox, (void)oy, (void)sw, (void)sh;
#endif
    return 1;
}
#endif

SSLDEF int ssl__decode_region_sized(const void *buf, size_t n, int want_c, int need_w, int need_h, double x0, double y0,
                                    double x1, double y1, int full_w, int full_h, ssl_buf *out, int *w, int *h, int *c,
                                    int *ox, int *oy, int *sw, int *sh) {
#ifdef SSL_TURBOJPEG
    int rc = ssl__jpeg_lib((const uint8_t *)buf, n, want_c, need_w, need_h, x0, y0, x1, y1, full_w, full_h, out, w, h,
                           c, ox, oy, sw, sh);
    if (rc <= 0) return rc;
#else
    (void)x0, (void)y0, (void)x1, (void)y1;
#endif
    if (ssl__decode_at_least(buf, n, want_c, need_w, need_h, full_w, full_h, out, w, h, c) != 0) return -1;
    *ox = *oy = 0, *sw = *w, *sh = *h;
    return 0;
}

static void ssl__shuffle(uint32_t *v, int64_t n, ssl_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t j = ssl_rng_below(r, (uint32_t)(i + 1)), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

SSLDEF void ssl_epoch_order(const ssl_pack *p, int order, int quasi_pages, uint64_t seed, int epoch, int rank, int world,
                            int batch, uint32_t *out, int64_t *count) {
    int64_t n = (int64_t)p->h.num_samples;
    uint32_t *all = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (n ? n : 1), "epoch order");
    for (int64_t i = 0; i < n; i++) all[i] = (uint32_t)i;
    ssl_rng r = ssl_rng_make(seed, (uint32_t)epoch, 0, 0, SSL_RNG_ORDER);
    if (order == SSL_ORDER_RANDOM) {
        ssl__shuffle(all, n, &r);
    } else if (order == SSL_ORDER_QUASI && n > 0) {
        /* pages are runs of samples; shuffle the pages, then shuffle samples
           within windows of quasi_pages pages: reads stay page-local */
        int64_t np = (int64_t)ssl_pack_page(p, (uint64_t)(n - 1)) + 1;
        int64_t *start = (int64_t *)ssl_malloc(sizeof(int64_t) * (np + 1), "pages");
        uint32_t *perm = (uint32_t *)ssl_malloc(sizeof(uint32_t) * np, "pages");
        int64_t pg = -1, k = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t q = (int64_t)ssl_pack_page(p, (uint64_t)i);
            if (q != pg) { start[k++] = i; pg = q; }
        }
        np = k; /* pages that hold a record start */
        start[np] = n;
        for (int64_t i = 0; i < np; i++) perm[i] = (uint32_t)i;
        ssl__shuffle(perm, np, &r);
        int64_t o = 0;
        int w = quasi_pages > 0 ? quasi_pages : 8;
        for (int64_t g = 0; g < np; g += w) {
            int64_t g0 = o;
            for (int64_t k2 = g; k2 < g + w && k2 < np; k2++)
                for (int64_t i = start[perm[k2]]; i < start[perm[k2] + 1]; i++) all[o++] = (uint32_t)i;
            ssl__shuffle(all + g0, o - g0, &r);
        }
        SSL_ASSERT(o == n, "quasi-random order lost samples");
        free(start);
        free(perm);
    }
    /* rank r takes the r-th slice of each global batch, and the r-th share
       of a last partial one; its n % world remainder is left out (no
       padding duplicates) */
    int64_t global = (int64_t)batch * world, full = batch > 0 ? n / global : 0, k = 0;
    for (int64_t b = 0; b < full; b++, k += batch)
        memcpy(out + k, all + b * global + (int64_t)rank * batch, sizeof(uint32_t) * (size_t)batch);
    int64_t share = (n - full * global) / world;
    memcpy(out + k, all + full * global + (int64_t)rank * share, sizeof(uint32_t) * (size_t)share);
    *count = k + share;
    free(all);
}

typedef struct {
    ssl_batch b;
    int64_t batch;      /* which stream batch it holds (see ssl__slot_label), -1 if none */
    int filled, ready;
    size_t cap_px;      /* pixels per view it was allocated for */
} ssl__slot;

typedef struct { ssl_buf dec, rs, tmp, u8; } ssl__wscratch;

struct ssl_loader {
    ssl_loader_config cfg;
    ssl_pack pack;
    int next_res, max_px;
    ssl__rs_post post[SSL_MAX_VIEWS]; /* each view's normalize, for the resampler's last pass */
    /* epoch state, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready, cv_idle;
    int epoch, shutdown, paused, in_flight;
    uint32_t *order;
    int64_t count, batches, next_sample, released, next_out, total_samples;
    /* the queued epoch (ssl_loader_queue_epoch), -1 if none: its batches
       and samples follow this epoch's in the stream (batches .., and
       next_sample from total_samples on) */
    int ahead_epoch, ahead_w[SSL_MAX_VIEWS], ahead_h[SSL_MAX_VIEWS];
    uint32_t *order_ahead;
    int64_t slot_base; /* stream batch g is in slot (g + slot_base) % nslots */
    ssl__slot *slots;
    int nslots, nthreads;
    pthread_t *tid;
    ssl__wscratch *scr;
    uint8_t *reported;  /* bitset: decode failures already reported */
    void **args;
    ssl_loader_stats stats;
};

SSLDEF void ssl_loader_config_init(ssl_loader_config *c, const char *path, const char *preset, int res, int batch_size) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->batch_size = batch_size;
    c->num_views = 2;
    for (int v = 0; v < 2; v++)
        if (ssl_view_preset(preset, v, res, &c->views[v]) != 0)
            ssl__die(__FILE__, __LINE__, "%s", ssl_last_error());
    c->order = SSL_ORDER_RANDOM;
    c->quasi_pages = 8;
    c->drop_last = 1;
    c->world = 1;
    c->batches_ahead = 3;
    c->dct_scale = 1;
}

SSLDEF int64_t ssl_loader_batches_per_epoch(const ssl_loader *l) { return l->batches; }
SSLDEF int64_t ssl_loader_samples_per_epoch(const ssl_loader *l) { return l->total_samples; }
SSLDEF const ssl_pack *ssl_loader_pack(const ssl_loader *l) { return &l->pack; }

SSLDEF ssl_loader_stats ssl_loader_get_stats(const ssl_loader *l) {
    ssl_loader_stats s;
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    s = l->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return s;
}

static void ssl__u8_free(const ssl_loader_config *c, void *p) {
    if (!p) return;
    if (c->u8_alloc && c->u8_free) c->u8_free(p);
    else if (!c->u8_alloc) free(p);
}
static void ssl__slot_alloc(ssl_loader *l, ssl__slot *s) {
    const ssl_loader_config *c = &l->cfg;
    size_t px = (size_t)l->max_px, n = (size_t)c->batch_size;
    for (int v = 0; v < c->num_views; v++) {
        free(s->b.views[v]);
        ssl__u8_free(c, s->b.views_u8[v]);
        s->b.views[v] = NULL;
        s->b.views_u8[v] = NULL;
        if (c->output_u8)
            s->b.views_u8[v] = (uint8_t *)(c->u8_alloc ? c->u8_alloc(n * px * 3, "batch views (u8)")
                                                       : ssl_malloc_aligned(n * px * 3, "batch views (u8)"));
        else s->b.views[v] = (float *)ssl_malloc_aligned(n * px * 3 * sizeof(float), "batch views");
        if (!s->b.params[v]) s->b.params[v] = (ssl_aug_params *)ssl_malloc(n * sizeof(ssl_aug_params), "batch params");
    }
    if (!s->b.labels) s->b.labels = (uint32_t *)ssl_malloc(n * sizeof(uint32_t), "batch labels");
    if (!s->b.ids) s->b.ids = (uint64_t *)ssl_malloc(n * sizeof(uint64_t), "batch ids");
    s->cap_px = px;
}

/* A view's uint8 crop from the w x h part at (ox, oy) of the image; where the
   fast path does not apply (shrinking more than 3x), the exact resampler on
   the part, with the box moved by (ox, oy). */
static void ssl__crop_u8(const uint8_t *px, int w, int h, int ox, int oy, double bx, double by, double bw, double bh,
                         uint8_t *dst, int ow, int oh, ssl_buf *rs) {
    if (ssl__resample_fast_at(px, w, h, 3, ox, oy, bx, by, bw, bh, dst, ow, oh, rs) != 0)
        ssl__resample_gain(px, w, h, 3, bx - ox, by - oy, bw, bh, dst, NULL, ow, oh, SSL_FILTER_BILINEAR, 1.0f, rs);
}

/* Decodes sample `id` and writes all its views into row `row` of the slot.
   Returns -1 (message set) if the record does not decode. */
static int ssl__load_sample(ssl_loader *l, ssl__wscratch *ws, ssl__slot *s, int row, uint32_t id) {
    const ssl_loader_config *c = &l->cfg;
    const ssl_pack_rec *e = &l->pack.index[id];
    ssl_aug_params prm[SSL_MAX_VIEWS];
    /* draw every view's parameters from the full-size geometry first: they
       decide how small the decode may be */
    double need = 0;
    for (int v = 0; v < c->num_views; v++) {
        prm[v] = ssl_view_draw(&c->views[v], e->width, e->height, c->seed, (uint32_t)s->b.epoch, id, (uint32_t)v);
        double sx = (double)s->b.w[v] / prm[v].crop_w, sy = (double)s->b.h[v] / prm[v].crop_h;
        if (sx > need) need = sx;
        if (sy > need) need = sy;
    }
    /* w x h pixels at (ox, oy) of the (scaled) image of sw x sh */
    int w = e->width, h = e->height, ch = 3, ox = 0, oy = 0, sw = w, sh = h;
    size_t nbytes;
    const uint8_t *rec = ssl_pack_record(&l->pack, id, &nbytes), *px;
    if (e->encoding == SSL_ENC_RAW && e->channels == 3) {
        px = rec; /* zero-copy */
    } else if (e->encoding == SSL_ENC_JPEG && c->dct_scale) {
        int nw = (int)ceil(e->width * need - 1e-9), nh = (int)ceil(e->height * need - 1e-9);
        /* only the part the views cover */
        double x0 = e->width, y0 = e->height, x1 = 0, y1 = 0;
        for (int v = 0; v < c->num_views; v++) {
            x0 = fmin(x0, prm[v].crop_x), y0 = fmin(y0, prm[v].crop_y);
            x1 = fmax(x1, prm[v].crop_x + prm[v].crop_w), y1 = fmax(y1, prm[v].crop_y + prm[v].crop_h);
        }
        if (ssl__decode_region_sized(rec, nbytes, 3, nw, nh, x0, y0, x1, y1, e->width, e->height, &ws->dec, &w, &h, &ch,
                                     &ox, &oy, &sw, &sh) != 0)
            return ssl__fail_ctx("sample %u", id);
        px = (const uint8_t *)ws->dec.p;
    } else {
        if (ssl_pack_decode(&l->pack, id, 3, &ws->dec, &w, &h, &ch) != 0) return -1;
        sw = w, sh = h;
        px = (const uint8_t *)ws->dec.p;
    }
    double fx = (double)sw / e->width, fy = (double)sh / e->height;
    for (int v = 0; v < c->num_views; v++) {
        const ssl_aug_params *p = &prm[v];
        int ow = s->b.w[v], oh = s->b.h[v];
        size_t off = (size_t)row * ow * oh * 3;
        double bx = p->crop_x * fx, by = p->crop_y * fy, bw = p->crop_w * fx, bh = p->crop_h * fy;
        if (c->output_u8) {
            ssl__crop_u8(px, w, h, ox, oy, bx, by, bw, bh, s->b.views_u8[v] + off, ow, oh, &ws->rs);
        } else {
            /* the float view is the uint8 crop (what the GPU path gets) put
               through ssl_augment_apply_ex; a view with only flip, solarize
               and normalize is done in the resampler's last pass */
            float *dst = s->b.views[v] + off;
            const float *mean = c->views[v].mean, *sd = c->views[v].std;
            int pointwise = !p->jitter && !p->gray && p->blur_sigma <= 0 && p->noise_std <= 0;
            ssl__rs_post post = l->post[v];
            post.threshold = p->solarize ? p->solarize_threshold : INFINITY;
            size_t npx = (size_t)ow * oh * 3;
            if (!pointwise || ssl__resample_post(px, w, h, ox, oy, bx, by, bw, bh, dst, ow, oh, p->flip, &post,
                                                 npx * sizeof(float) >= (256u << 10), &ws->rs) != 0) {
                uint8_t *u8 = (uint8_t *)ssl_buf_reserve(&ws->u8, npx);
                ssl__crop_u8(px, w, h, ox, oy, bx, by, bw, bh, u8, ow, oh, &ws->rs);
                for (size_t k = 0; k < npx; k++) dst[k] = (float)u8[k];
                ssl_augment_apply_ex(p, dst, ow, oh, 255.0f, mean, sd, &ws->tmp);
            }
        }
        s->b.params[v][row] = *p;
    }
    s->b.labels[row] = e->label;
    s->b.ids[row] = id;
    return 0;
}

/* The stream: this epoch's batches 0 .. batches - 1 and samples 0 ..
   total_samples - 1, then the queued epoch's, numbered on. Stream sample j
   is row *row of stream batch (the return) and, in its epoch's order,
   entry *at (of l->order or, past this epoch, of l->order_ahead). */
static int64_t ssl__stream_batch(const ssl_loader *l, int64_t j, int64_t *at, int *row) {
    const int B = l->cfg.batch_size;
    int ahead = j >= l->total_samples;
    int64_t k = ahead ? j - l->total_samples : j;
    if (at) *at = k;
    if (row) *row = (int)(k % B);
    return (ahead ? l->batches : 0) + k / B;
}

static ssl__slot *ssl__slot_of(const ssl_loader *l, int64_t g) { return &l->slots[(g + l->slot_base) % l->nslots]; }

/* Points the ring slot of stream batch g at it (its epoch, index, size and
   views' sizes), or at nothing when g is past the stream. */
static void ssl__slot_label(ssl_loader *l, int64_t g) {
    const int B = l->cfg.batch_size;
    ssl__slot *s = ssl__slot_of(l, g);
    int ahead = g >= l->batches;
    int64_t k = ahead ? g - l->batches : g;
    if (ahead && (l->ahead_epoch < 0 || k >= l->batches)) {
        s->batch = -1;
        return;
    }
    s->batch = g;
    s->b.index = k;
    s->b.n = (int)((k + 1) * B <= l->total_samples ? B : l->total_samples - k * B);
    s->b.epoch = ahead ? l->ahead_epoch : l->epoch;
    for (int v = 0; v < l->cfg.num_views; v++) {
        s->b.w[v] = ahead ? l->ahead_w[v] : l->cfg.views[v].out_w;
        s->b.h[v] = ahead ? l->ahead_h[v] : l->cfg.views[v].out_h;
    }
}

/* A sample to take: one left in the stream, in a batch the ring has room for. */
static int ssl__loader_has_work(const ssl_loader *l) {
    int64_t end = l->ahead_epoch >= 0 ? 2 * l->total_samples : l->total_samples;
    return !l->paused && l->next_sample < end && ssl__stream_batch(l, l->next_sample, NULL, NULL) < l->released + l->nslots;
}

static void *ssl__loader_worker(void *arg) {
    void **a = (void **)arg;
    ssl_loader *l = (ssl_loader *)a[0];
    ssl__wscratch *ws = (ssl__wscratch *)a[1];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->shutdown && !ssl__loader_has_work(l)) pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->shutdown) break;
        int64_t j = l->next_sample++, at;
        int row, failures = 0;
        int64_t g = ssl__stream_batch(l, j, &at, &row);
        ssl__slot *s = ssl__slot_of(l, g);
        SSL_ASSERT(s->batch == g, "loader: slot of stream batch %lld holds %lld", (long long)g, (long long)s->batch);
        uint32_t id = (j < l->total_samples ? l->order : l->order_ahead)[at];
        l->in_flight++;
        pthread_mutex_unlock(&l->mu);
        double t0 = ssl_now();
        /* a record that fails is reported once and replaced by another
           sample chosen by the RNG: deterministic, and the epoch goes on */
        uint32_t use = id;
        for (int attempt = 0; ssl__load_sample(l, ws, s, row, use) != 0; attempt++) {
            failures++;
            pthread_mutex_lock(&l->mu);
            if (!(l->reported[use / 8] & (1u << (use % 8)))) {
                l->reported[use / 8] |= (uint8_t)(1u << (use % 8));
                const char *src = ssl_pack_source(&l->pack, use);
                ssl_warn("loader: sample %u%s%s%s does not decode, replaced: %s", use, src[0] ? " (" : "", src,
                         src[0] ? ")" : "", ssl_last_error());
            }
            pthread_mutex_unlock(&l->mu);
            ssl_rng r = ssl_rng_make(l->cfg.seed, (uint32_t)s->b.epoch, id, (uint32_t)attempt, SSL_RNG_REPLACE);
            use = ssl_rng_below(&r, (uint32_t)l->pack.h.num_samples);
            SSL_ASSERT(attempt < 64, "loader: 64 replacement samples in a row failed to decode; is the pack corrupt?");
        }
        double dt = ssl_now() - t0;
        pthread_mutex_lock(&l->mu);
        l->in_flight--;
        l->stats.samples++;
        l->stats.decode_failures += failures;
        l->stats.worker_busy_s += dt;
        if (++s->filled == s->b.n) {
            s->ready = 1;
            pthread_cond_broadcast(&l->cv_ready);
        }
        if (l->in_flight == 0) pthread_cond_broadcast(&l->cv_idle);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

SSLDEF int ssl_loader_set_resolution(ssl_loader *l, int res) {
    if (res < 8 || res > 4096) return ssl__fail("resolution %d out of range [8, 4096]", res);
    l->next_res = res;
    return 0;
}

/* The views' sizes at resolution res (0: as they are now); returns the
   largest view's pixels. */
static int ssl__loader_sizes(const ssl_loader *l, int res, int *w, int *h) {
    int px = 0;
    for (int v = 0; v < l->cfg.num_views; v++) {
        w[v] = res ? res : l->cfg.views[v].out_w;
        h[v] = res ? res : l->cfg.views[v].out_h;
        if (w[v] * h[v] > px) px = w[v] * h[v];
    }
    return px;
}

SSLDEF int ssl_loader_queue_epoch(ssl_loader *l, int epoch, int res) {
    if (res && (res < 8 || res > 4096)) return ssl__fail("resolution %d out of range [8, 4096]", res);
    if (epoch < 0) return ssl__fail("epoch %d is negative", epoch);
    int w[SSL_MAX_VIEWS] = {0}, h[SSL_MAX_VIEWS] = {0};
    pthread_mutex_lock(&l->mu);
    int started = !l->paused, queued = l->ahead_epoch;
    int fits = ssl__loader_sizes(l, res, w, h) <= l->max_px;
    pthread_mutex_unlock(&l->mu);
    if (!started) return ssl__fail("queue epoch %d: start an epoch first", epoch);
    if (queued >= 0) return ssl__fail("queue epoch %d: epoch %d is queued already", epoch, queued);
    if (!fits) return 1;
    /* only this (the consumer's) thread writes the order of the queued
       epoch, and no worker reads it before ahead_epoch is set */
    int64_t count;
    ssl_epoch_order(&l->pack, l->cfg.order, l->cfg.quasi_pages, l->cfg.seed, epoch, l->cfg.rank, l->cfg.world, l->cfg.batch_size, l->order_ahead,
                    &count);
    SSL_ASSERT(count == l->count, "loader: epoch %d has %lld samples, not %lld", epoch, (long long)count, (long long)l->count);
    pthread_mutex_lock(&l->mu);
    l->ahead_epoch = epoch;
    memcpy(l->ahead_w, w, sizeof w);
    memcpy(l->ahead_h, h, sizeof h);
    /* the slots the ring has room for past this epoch's end are its first batches */
    for (int64_t g = l->released > l->batches ? l->released : l->batches; g < l->released + l->nslots; g++) ssl__slot_label(l, g);
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

SSLDEF int ssl_loader_start_epoch(ssl_loader *l, int epoch, int64_t first_batch) {
    const int B = l->cfg.batch_size;
    pthread_mutex_lock(&l->mu);
    /* the views' sizes for this epoch (set_resolution's, or as they are) */
    int w[SSL_MAX_VIEWS] = {0}, h[SSL_MAX_VIEWS] = {0}, px = ssl__loader_sizes(l, l->next_res, w, h);
    for (int v = 0; v < l->cfg.num_views; v++) l->cfg.views[v].out_w = w[v], l->cfg.views[v].out_h = h[v];
    l->next_res = 0;
    if (l->ahead_epoch == epoch && first_batch == 0 && l->released == l->batches &&
        !memcmp(w, l->ahead_w, sizeof(int) * l->cfg.num_views) && !memcmp(h, l->ahead_h, sizeof(int) * l->cfg.num_views)) {
        /* the queued epoch, with every batch of this one released: go on
           with what the workers have filled of it. Its stream numbers
           become this epoch's. */
        uint32_t *o = l->order;
        l->order = l->order_ahead, l->order_ahead = o;
        l->epoch = epoch;
        l->next_sample -= l->total_samples;
        for (int k = 0; k < l->nslots; k++)
            if (l->slots[k].batch >= 0) l->slots[k].batch -= l->batches;
        l->slot_base = (l->slot_base + l->batches) % l->nslots;
        l->released = l->next_out = 0;
        l->ahead_epoch = -1;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    l->paused = 1;
    while (l->in_flight > 0) pthread_cond_wait(&l->cv_idle, &l->mu);
    int grow = px > l->max_px;
    if (grow) l->max_px = px;
    l->epoch = epoch;
    ssl_epoch_order(&l->pack, l->cfg.order, l->cfg.quasi_pages, l->cfg.seed, epoch, l->cfg.rank, l->cfg.world, l->cfg.batch_size, l->order, &l->count);
    l->batches = l->cfg.drop_last ? l->count / B : (l->count + B - 1) / B;
    l->total_samples = l->cfg.drop_last ? l->batches * B : l->count;
    if (first_batch < 0 || first_batch > l->batches) {
        pthread_mutex_unlock(&l->mu);
        return ssl__fail("start batch %lld out of range (epoch has %lld batches)", (long long)first_batch, (long long)l->batches);
    }
    /* a queued epoch's batches filled so far are dropped */
    l->ahead_epoch = -1;
    for (int k = 0; k < l->nslots; k++) {
        ssl__slot *s = &l->slots[k];
        if (grow) ssl__slot_alloc(l, s);
        s->filled = s->ready = 0;
        s->batch = -1;
        s->b.num_views = l->cfg.num_views;
    }
    l->next_sample = first_batch * B;
    l->released = l->next_out = first_batch;
    l->slot_base = 0;
    /* label the slots for the batches about to be filled */
    for (int64_t b = first_batch; b < first_batch + l->nslots && b < l->batches; b++) ssl__slot_label(l, b);
    l->paused = 0;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

SSLDEF const ssl_batch *ssl_loader_next(ssl_loader *l) {
    pthread_mutex_lock(&l->mu);
    if (l->next_out >= l->batches) {
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    ssl__slot *s = ssl__slot_of(l, l->next_out);
    SSL_ASSERT(s->batch == l->next_out, "loader: release batches before asking for more than batches_ahead");
    double t0 = ssl_now();
    while (!s->ready) pthread_cond_wait(&l->cv_ready, &l->mu);
    l->stats.wait_s += ssl_now() - t0;
    l->next_out++;
    pthread_mutex_unlock(&l->mu);
    return &s->b;
}

SSLDEF void ssl_loader_release(ssl_loader *l, const ssl_batch *b) {
    pthread_mutex_lock(&l->mu);
    SSL_ASSERT(b->index == l->released && b->epoch == l->epoch, "loader: batches must be released in order");
    ssl__slot *s = ssl__slot_of(l, b->index);
    s->ready = s->filled = 0;
    l->released++;
    /* the slot now waits for stream batch released + nslots - 1 (of this
       epoch, or of the queued one) */
    ssl__slot_label(l, b->index + l->nslots);
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
}

SSLDEF ssl_loader *ssl_loader_open(const ssl_loader_config *c) {
    if (c->batch_size < 1) { ssl__fail("batch size %d must be at least 1", c->batch_size); return NULL; }
    if (c->num_views < 1 || c->num_views > SSL_MAX_VIEWS) { ssl__fail("%d views: must be 1..%d", c->num_views, SSL_MAX_VIEWS); return NULL; }
    if (c->world < 1 || c->rank < 0 || c->rank >= c->world) { ssl__fail("rank %d of world %d is not valid", c->rank, c->world); return NULL; }
    for (int v = 0; v < c->num_views; v++)
        if (c->views[v].out_w < 1 || c->views[v].out_h < 1 || c->views[v].out_w > 4096 || c->views[v].out_h > 4096) {
            ssl__fail("view %d: output size %dx%d out of range", v, c->views[v].out_w, c->views[v].out_h);
            return NULL;
        }
    ssl_loader *l = (ssl_loader *)ssl_calloc(sizeof *l, "loader");
    l->cfg = *c;
    for (int v = 0; v < c->num_views; v++) {
        ssl__rs_post *q = &l->post[v];
        q->range = 255.0f, q->threshold = INFINITY;
        for (int k = 0; k < 3; k++) q->mean[k] = c->views[v].mean[k], q->std[k] = c->views[v].std[k];
        ssl__rs_post_init(q);
    }
    if (ssl_pack_open(c->path, &l->pack) != 0) { free(l); return NULL; }
    if (l->pack.h.num_samples > 0xFFFFFFFFull) { ssl__fail("pack '%s': over 2^32 samples", c->path); ssl_pack_close(&l->pack); free(l); return NULL; }
    int64_t per = (int64_t)l->pack.h.num_samples / c->world;
    if (per < (c->drop_last ? c->batch_size : 1)) {
        ssl__fail("pack '%s' has %llu samples: %lld per rank, fewer than one batch of %d", c->path,
                  (unsigned long long)l->pack.h.num_samples, (long long)per, c->batch_size);
        ssl_pack_close(&l->pack);
        free(l);
        return NULL;
    }
    l->order = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (per ? per : 1), "epoch order");
    l->order_ahead = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (per ? per : 1), "queued epoch order");
    l->ahead_epoch = -1;
    l->reported = (uint8_t *)ssl_calloc(l->pack.h.num_samples / 8 + 1, "failure bitset");
    l->nslots = c->batches_ahead > 0 ? c->batches_ahead : 3;
    l->slots = (ssl__slot *)ssl_calloc(sizeof(ssl__slot) * l->nslots, "loader ring");
    l->nthreads = c->threads > 0 ? c->threads : ssl_num_cores();
    l->scr = (ssl__wscratch *)ssl_calloc(sizeof(ssl__wscratch) * l->nthreads, "worker scratch");
    l->tid = (pthread_t *)ssl_malloc(sizeof(pthread_t) * l->nthreads, "loader threads");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_idle, NULL);
    l->paused = 1; /* nothing to do until the first start_epoch */
    void **args = (void **)ssl_malloc(sizeof(void *) * 2 * l->nthreads, "args");
    for (int t = 0; t < l->nthreads; t++) {
        args[2 * t] = l;
        args[2 * t + 1] = &l->scr[t];
        if (pthread_create(&l->tid[t], NULL, ssl__loader_worker, &args[2 * t]) != 0)
            ssl__die(__FILE__, __LINE__, "pthread_create failed: %s", strerror(errno));
    }
    l->args = args; /* the threads hold pointers into it until close */
    l->cfg.path = NULL; /* the caller's string need not outlive open */
    return l;
}

SSLDEF void ssl_loader_close(ssl_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->shutdown = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->nthreads; t++) pthread_join(l->tid[t], NULL);
    for (int k = 0; k < l->nslots; k++) {
        ssl_batch *b = &l->slots[k].b;
        for (int v = 0; v < SSL_MAX_VIEWS; v++) { free(b->views[v]); ssl__u8_free(&l->cfg, b->views_u8[v]); free(b->params[v]); }
        free(b->labels);
        free(b->ids);
    }
    for (int t = 0; t < l->nthreads; t++) { ssl_buf_free(&l->scr[t].dec); ssl_buf_free(&l->scr[t].rs); ssl_buf_free(&l->scr[t].tmp); ssl_buf_free(&l->scr[t].u8); }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_idle);
    free(l->args);
    free(l->scr);
    free(l->tid);
    free(l->slots);
    free(l->order);
    free(l->order_ahead);
    free(l->reported);
    ssl_pack_close(&l->pack);
    free(l);
}


/* ---- 7. Tensors and ops ------------------------------------------------- */
#ifdef SSL_OPENBLAS
#include <cblas.h>
#endif
#include <limits.h>


#ifdef _OPENMP
#define SSL__OMP_FOR _Pragma("omp parallel for schedule(static)")
#else
#define SSL__OMP_FOR
#endif

SSLDEF const char *ssl_tensor_shape(const ssl_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)t->dim[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* "op: why: a [..], b [..]" - every shape error names the shapes. */
static int ssl__bad_shapes(const char *op, const char *why, const char *an, const ssl_tensor *a, const char *bn,
                           const ssl_tensor *b) {
    char sa[96], sb[96];
    ssl_tensor_shape(a, sa, sizeof sa);
    if (!b) return ssl__fail("%s: %s: %s %s", op, why, an, sa);
    return ssl__fail("%s: %s: %s %s, %s %s", op, why, an, sa, bn, ssl_tensor_shape(b, sb, sizeof sb));
}
static int ssl__same_shape(const char *op, const char *an, const ssl_tensor *a, const char *bn, const ssl_tensor *b) {
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->dim[i] == b->dim[i];
    return same ? 0 : ssl__bad_shapes(op, "shapes differ", an, a, bn, b);
}
static int ssl__same_numel(const char *op, const char *an, const ssl_tensor *a, const char *bn, const ssl_tensor *b) {
    return ssl_tensor_numel(a) == ssl_tensor_numel(b) ? 0 : ssl__bad_shapes(op, "sizes differ", an, a, bn, b);
}
/* A [C] vector (any shape with numel C), or absent (NULL / no data). */
static int ssl__vec_of(const char *op, const char *name, const ssl_tensor *v, int64_t c) {
    if (!v || !v->data || ssl_tensor_numel(v) == c) return 0;
    char s[96];
    return ssl__fail("%s: %s %s should hold %lld values", op, name, ssl_tensor_shape(v, s, sizeof s), (long long)c);
}

/* The device all given tensors share (NULL or data-less ones are skipped),
   or -1 with an error when they mix devices. */
/* The device of an op's tensors (NULL or empty ones skipped), or -1 with
   an error: mixed devices, or a bf16 tensor where the op takes fp32 only
   (SSL__DEVICE) or on the CPU (SSL__DEVICE_BF16: the GPU's layer ops). */
#define SSL__DEVICE(op, ...) SSL__DEVICE_(op, 0, __VA_ARGS__)
#define SSL__DEVICE_BF16(op, ...) SSL__DEVICE_(op, 1, __VA_ARGS__)
#define SSL__DEVICE_(op, bf16, ...)                                    \
    ssl__device(op, bf16, (const ssl_tensor *const[]){__VA_ARGS__},    \
                sizeof((const ssl_tensor *const[]){__VA_ARGS__}) / sizeof(const ssl_tensor *))
static int ssl__device(const char *op, int bf16_ok, const ssl_tensor *const *ts, size_t n) {
    int dev = -1, mixed = 0, bf16 = 0;
    for (size_t i = 0; i < n; i++) {
        const ssl_tensor *t = ts[i];
        if (!t || !t->data) continue;
        if (dev >= 0 && t->device != dev) mixed = 1;
        if (dev < 0) dev = t->device;
        if (t->dtype != SSL_F32 && t->dtype != SSL_BF16 && t->dtype != SSL_U8)
            return ssl__fail("%s: unknown element type %d", op, t->dtype);
        bf16 |= t->dtype != SSL_F32; /* bf16 activations, or a ReLU's bit mask (SSL_U8) */
    }
    if (mixed) return ssl__fail("%s: tensors on different devices (CPU and GPU) in one call", op);
    if (dev != SSL_DEV_CPU && dev != SSL_DEV_CUDA && dev >= 0) return ssl__fail("%s: unknown device %d", op, dev);
    if (bf16 && !bf16_ok) return ssl__fail("%s: takes fp32 tensors only (bf16 is for the GPU's layer ops)", op);
    if (bf16 && dev != SSL_DEV_CUDA) return ssl__fail("%s: bf16 tensors are GPU storage; the CPU computes in fp32", op);
    return dev < 0 ? SSL_DEV_CPU : dev;
}
/* On the GPU the layer kernels (conv, batch norm, pooling) index with 32
   bits: -1 with an error for a tensor of 2^31 elements or more there. */
#define SSL__IDX32(op, dev, ...)                                         \
    ssl__idx32(op, dev, (const ssl_tensor *const[]){__VA_ARGS__},        \
               sizeof((const ssl_tensor *const[]){__VA_ARGS__}) / sizeof(const ssl_tensor *))
static int ssl__idx32(const char *op, int dev, const ssl_tensor *const *ts, size_t n) {
    if (dev != SSL_DEV_CUDA) return dev;
    for (size_t i = 0; i < n; i++)
        if (ts[i] && ts[i]->data && ssl_tensor_numel(ts[i]) >= ((int64_t)1 << 31))
            return ssl__fail("%s: a tensor of %lld elements; the GPU's layer kernels index with 32 bits (2^31 - 1 at "
                             "most): use a smaller batch", op, (long long)ssl_tensor_numel(ts[i]));
    return dev;
}
/* -1 with an error unless every tensor given (NULL or empty skipped) has
   the first one's element type */
#define SSL__SAME_DTYPE(op, ...)                                        \
    ssl__same_dtype(op, (const ssl_tensor *const[]){__VA_ARGS__},       \
                    sizeof((const ssl_tensor *const[]){__VA_ARGS__}) / sizeof(const ssl_tensor *))
static int ssl__same_dtype(const char *op, const ssl_tensor *const *ts, size_t n) {
    int dt = -1;
    for (size_t i = 0; i < n; i++) {
        if (!ts[i] || !ts[i]->data) continue;
        if (dt >= 0 && ts[i]->dtype != dt) return ssl__fail("%s: activations of different element types (fp32 and bf16)", op);
        dt = ts[i]->dtype;
    }
    return 0;
}
#ifndef SSL_CUDA
static int ssl__no_cuda(const char *op) {
    return ssl__fail("%s: tensor is on the GPU but ssl.h was built without CUDA (SSL_CUDA)", op);
}
#endif
/* Hands a GPU call to ssl.cu; in a CPU-only build the call is not even
   compiled, and the request is answered with an error. */
#ifdef SSL_CUDA
#define SSL__ON_GPU(dev, call) do { if ((dev) == SSL_DEV_CUDA) return (call); } while (0)
#define SSL__ON_GPU_AS(op, dev, call) SSL__ON_GPU(dev, call)
#else
#define SSL__ON_GPU(dev, call) do { if ((dev) == SSL_DEV_CUDA) return ssl__no_cuda(__func__); } while (0)
/* an entry point shared by two public names: errors name the one called */
#define SSL__ON_GPU_AS(op, dev, call) do { if ((dev) == SSL_DEV_CUDA) return ssl__no_cuda(op); } while (0)
#endif

/* Scratch floats on a device (host memory for the CPU). */
static float *ssl__scratch(ssl_buf *b, int dev, size_t nfloats) {
#ifdef SSL_CUDA
    if (dev == SSL_DEV_CUDA) return (float *)ssl_cuda_buf_reserve(b, nfloats * sizeof(float));
#endif
    (void)dev;
    return (float *)ssl_buf_reserve(b, nfloats * sizeof(float));
}

/* ---- GEMM ---- */
SSLDEF void ssl_gemm_loops(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                           int ldb, float beta, float *C, int ldc) {
    /* The inner loop streams a row of B into a row of C (c += a_ik B[k,:]),
       which vectorizes without reassociating sums. A transposed B is
       copied out first so that its rows are contiguous too. */
    float *bt = NULL;
    if (tb) {
        bt = (float *)ssl_malloc(sizeof(float) * (size_t)K * (size_t)N, "GEMM transpose");
        for (int j = 0; j < N; j++)
            for (int k = 0; k < K; k++) bt[(size_t)k * N + j] = B[(size_t)j * ldb + k];
        B = bt;
        ldb = N;
    }
    SSL__OMP_FOR
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
    free(bt);
}

SSLDEF const char *ssl_blas_kernels(void) {
#ifdef SSL_OPENBLAS
    static char s[96];
    snprintf(s, sizeof s, "%.60s%s", openblas_get_corename(), getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE)" : "");
    return s;
#else
    return "";
#endif
}

SSLDEF const char *ssl_blas_warning(void) {
#if defined(SSL_OPENBLAS) && defined(__x86_64__) && defined(__GNUC__)
    /* OpenBLAS's x86-64 cores without AVX2 kernels */
    static const char *const old_cores[] = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai",
                                            "coppermine", "northwood", "banias", "opteron", "barcelona", "bobcat",
                                            "athlon", "nano", "sandybridge", "bulldozer", "unknown"};
    static char s[400];
    const char *core = openblas_get_corename(), *forced = getenv("OPENBLAS_CORETYPE");
    int old = 0;
    for (size_t i = 0; i < sizeof old_cores / sizeof old_cores[0]; i++)
        if (!strncasecmp(core, old_cores[i], strlen(old_cores[i]))) old = 1;
    __builtin_cpu_init();
    if (!old || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return "";
    snprintf(s, sizeof s,
             "OpenBLAS runs its %.40s kernels (%s) on a CPU with AVX2%s: its GEMMs are 2-3x slower than they "
             "could be. Run with OPENBLAS_CORETYPE=Haswell (any AVX2 CPU) in the environment.",
             core, forced ? "OPENBLAS_CORETYPE in the environment asks for them" : "it did not recognise this CPU model",
             __builtin_cpu_supports("avx512f") ? " and AVX-512" : "");
    return s;
#else
    return "";
#endif
}

SSLDEF void ssl_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef SSL_OPENBLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
#else
    ssl_gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

static int ssl__fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

SSLDEF int ssl_matmul(int ta, int tb, float alpha, const ssl_tensor *A, const ssl_tensor *B, float beta,
                      ssl_tensor *C) {
    int64_t ar = ssl_tensor_rows(A), ac = ssl_tensor_cols(A), br = ssl_tensor_rows(B), bc = ssl_tensor_cols(B);
    int64_t M = ta ? ac : ar, K = ta ? ar : ac, Kb = tb ? bc : br, N = tb ? br : bc;
    if (K != Kb) return ssl__bad_shapes(__func__, "inner dimensions differ", ta ? "A^T of" : "A", A, tb ? "B^T of" : "B", B);
    if (ssl_tensor_rows(C) != M || ssl_tensor_cols(C) != N) {
        char s[96];
        return ssl__fail("%s: C %s should be [%lld,%lld] for op(A) [%lld,%lld] x op(B) [%lld,%lld]", __func__,
                         ssl_tensor_shape(C, s, sizeof s), (long long)M, (long long)N, (long long)M, (long long)K,
                         (long long)K, (long long)N);
    }
    if (!ssl__fits_int(M) || !ssl__fits_int(N) || !ssl__fits_int(K) || !ssl__fits_int(ac) || !ssl__fits_int(bc))
        return ssl__fail("%s: a side over 2^31 elements (BLAS takes int)", __func__);
    int dev = SSL__DEVICE(__func__, A, B, C);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_matmul(ta, tb, alpha, A, B, beta, C));
    ssl_gemm(ta, tb, (int)M, (int)N, (int)K, alpha, A->data, (int)ac, B->data, (int)bc, beta, C->data, (int)N);
    return 0;
}

/* ---- primitives ---- */
SSLDEF int ssl_copy(ssl_tensor *dst, const ssl_tensor *src) {
    if (ssl__same_numel(__func__, "dst", dst, "src", src)) return -1;
    int dev = SSL__DEVICE_BF16(__func__, dst, src);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_copy(dst, src));
    if (dst->data != src->data) memmove(dst->data, src->data, sizeof(float) * (size_t)ssl_tensor_numel(src));
    return 0;
}

SSLDEF int ssl_fill(ssl_tensor *t, float value) {
    int dev = SSL__DEVICE_BF16(__func__, t);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_fill(t, value));
    int64_t n = ssl_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = value;
    return 0;
}

SSLDEF int ssl_axpy(float alpha, const ssl_tensor *x, ssl_tensor *y) {
    if (ssl__same_numel(__func__, "x", x, "y", y)) return -1;
    int dev = SSL__DEVICE(__func__, x, y);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_axpy(alpha, x, y));
    int64_t n = ssl_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) y->data[i] += alpha * x->data[i];
    return 0;
}

SSLDEF int ssl_dot(const ssl_tensor *a, const ssl_tensor *b, float *out) {
    if (ssl__same_numel(__func__, "a", a, "b", b)) return -1;
    int dev = SSL__DEVICE(__func__, a, b);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_dot(a, b, out));
    double s = 0;
    int64_t n = ssl_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) s += (double)a->data[i] * b->data[i];
    *out = (float)s;
    return 0;
}

static int ssl__square(const char *op, const char *name, const ssl_tensor *m) {
    if (ssl_tensor_rows(m) == ssl_tensor_cols(m)) return 0;
    return ssl__bad_shapes(op, "expected a square matrix", name, m, NULL, NULL);
}

SSLDEF int ssl_fill_diagonal(ssl_tensor *m, float value) {
    if (ssl__square(__func__, "m", m)) return -1;
    int dev = SSL__DEVICE(__func__, m);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_fill_diagonal(m, value));
    int64_t n = ssl_tensor_cols(m);
    for (int64_t i = 0; i < n; i++) m->data[i * n + i] = value;
    return 0;
}

SSLDEF int ssl_fill_diagonal_at(ssl_tensor *m, int64_t col0, float value) {
    int64_t rows = ssl_tensor_rows(m), cols = ssl_tensor_cols(m);
    if (m->ndim != 2 || col0 < 0 || col0 + rows > cols)
        return ssl__bad_shapes(__func__, "needs a matrix with col0 + rows <= cols", "m", m, NULL, NULL);
    int dev = SSL__DEVICE(__func__, m);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_fill_diagonal_at(m, col0, value));
    for (int64_t i = 0; i < rows; i++) m->data[i * cols + col0 + i] = value;
    return 0;
}

/* Shapes of a row-wise op: y like x, a vector of one value per row. */
static int ssl__rowwise(const char *op, const ssl_tensor *x, const ssl_tensor *y, const char *vn, const ssl_tensor *v) {
    if (ssl__same_numel(op, "x", x, "y", y) || ssl_tensor_cols(x) != ssl_tensor_cols(y))
        return ssl__bad_shapes(op, "x and y must have the same rows", "x", x, "y", y);
    return ssl__vec_of(op, vn, v, ssl_tensor_rows(x));
}

SSLDEF int ssl_l2_normalize_rows(const ssl_tensor *x, ssl_tensor *y, ssl_tensor *norm) {
    if (ssl__rowwise(__func__, x, y, "norm", norm)) return -1;
    int dev = SSL__DEVICE(__func__, x, y, norm);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_l2_normalize_rows(x, y, norm));
    int64_t rows = ssl_tensor_rows(x), d = ssl_tensor_cols(x);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
        float n = (float)sqrt(ss), inv = ssl__l2n_inv(n);
        for (int64_t j = 0; j < d; j++) y->data[r * d + j] = xr[j] * inv;
        norm->data[r] = n;
    }
    return 0;
}

SSLDEF int ssl_l2_normalize_rows_backward(const ssl_tensor *y, const ssl_tensor *norm, const ssl_tensor *dy,
                                          ssl_tensor *dx) {
    if (ssl__rowwise(__func__, y, dy, "norm", norm) || ssl__rowwise(__func__, y, dx, "norm", norm)) return -1;
    int dev = SSL__DEVICE(__func__, y, norm, dy, dx);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_l2_normalize_rows_backward(y, norm, dy, dx));
    int64_t rows = ssl_tensor_rows(y), d = ssl_tensor_cols(y);
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y->data + r * d, *g = dy->data + r * d;
        double yg = 0;
        for (int64_t j = 0; j < d; j++) yg += (double)yr[j] * g[j];
        for (int64_t j = 0; j < d; j++) dx->data[r * d + j] += ssl__l2n_grad(yr[j], g[j], (float)yg, norm->data[r]);
    }
    return 0;
}

SSLDEF int ssl_softmax_xent_rows(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                 ssl_tensor *dlogits) {
    return ssl_softmax_xent_rows_top1(logits, target, scale, loss, dlogits, NULL);
}
SSLDEF int ssl_softmax_xent_rows_top1(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                      ssl_tensor *dlogits, int64_t *correct) {
    if (dlogits && ssl__same_shape(__func__, "logits", logits, "dlogits", dlogits)) return -1;
    int64_t rows = ssl_tensor_rows(logits), c = ssl_tensor_cols(logits);
    for (int64_t r = 0; r < rows; r++)
        if (target[r] < 0 || target[r] >= c)
            return ssl__fail("%s: target[%lld] = %d is not a class of logits with %lld columns", __func__,
                             (long long)r, target[r], (long long)c);
    int dev = SSL__DEVICE(__func__, logits, dlogits);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_softmax_xent_rows(logits, target, scale, loss, dlogits, correct));
    double total = 0;
    if (correct) *correct = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *l = logits->data + r * c;
        if (correct) *correct += ssl__top1(l, c) == target[r];
        float mx = -INFINITY;
        for (int64_t j = 0; j < c; j++) mx = l[j] > mx ? l[j] : mx;
        double se = 0;
        for (int64_t j = 0; j < c; j++) se += exp((double)l[j] - mx);
        double lse = mx + log(se);
        total += lse - l[target[r]];
        if (!dlogits) continue;
        float *g = dlogits->data + r * c;
        for (int64_t j = 0; j < c; j++) g[j] += scale * (float)exp((double)l[j] - lse);
        g[target[r]] -= scale;
    }
    *loss = (float)(scale * total);
    return 0;
}

SSLDEF int ssl_center_cols(const ssl_tensor *x, ssl_tensor *y) {
    if (ssl__same_shape(__func__, "x", x, "y", y)) return -1;
    int dev = SSL__DEVICE(__func__, x, y);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_center_cols(x, y));
    int64_t rows = ssl_tensor_rows(x), c = ssl_tensor_cols(x);
    double *mean = (double *)ssl_calloc(sizeof(double) * (size_t)c, "column means");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) mean[j] += x->data[r * c + j];
    for (int64_t j = 0; j < c; j++) mean[j] /= (double)rows;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) y->data[r * c + j] = (float)(x->data[r * c + j] - mean[j]);
    free(mean);
    return 0;
}

SSLDEF int ssl_mse(const ssl_tensor *a, const ssl_tensor *b, float scale, float *loss, ssl_tensor *da,
                   ssl_tensor *db) {
    if (ssl__same_shape(__func__, "a", a, "b", b) || (da && ssl__same_shape(__func__, "a", a, "da", da)) ||
        (db && ssl__same_shape(__func__, "b", b, "db", db)))
        return -1;
    int dev = SSL__DEVICE(__func__, a, b, da, db);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_mse(a, b, scale, loss, da, db));
    int64_t n = ssl_tensor_numel(a);
    double s = 0;
    float g = 2.0f * scale / (float)n;
    for (int64_t i = 0; i < n; i++) {
        float d = a->data[i] - b->data[i];
        s += (double)d * d;
        if (da) da->data[i] += g * d;
        if (db) db->data[i] -= g * d;
    }
    *loss = (float)(scale * s / (double)n);
    return 0;
}

SSLDEF int ssl_offdiag_sumsq(const ssl_tensor *m, float scale, float *val, ssl_tensor *dm) {
    if (ssl__square(__func__, "m", m) || (dm && ssl__same_shape(__func__, "m", m, "dm", dm))) return -1;
    int dev = SSL__DEVICE(__func__, m, dm);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_offdiag_sumsq(m, scale, val, dm));
    int64_t d = ssl_tensor_cols(m);
    double s = 0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            if (i == j) continue;
            float v = m->data[i * d + j];
            s += (double)v * v;
            if (dm) dm->data[i * d + j] += 2.0f * scale * v;
        }
    *val = (float)(scale * s);
    return 0;
}

SSLDEF int ssl_diag_penalty(const ssl_tensor *m, ssl_diag_fn fn, float param, float scale, float *val,
                            ssl_tensor *dm) {
    if (ssl__square(__func__, "m", m) || (dm && ssl__same_shape(__func__, "m", m, "dm", dm))) return -1;
    if (fn != SSL_DIAG_SQ_DEV_ONE && fn != SSL_DIAG_STD_HINGE) return ssl__fail("%s: unknown function %d", __func__, (int)fn);
    int dev = SSL__DEVICE(__func__, m, dm);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_diag_penalty(m, fn, param, scale, val, dm));
    int64_t d = ssl_tensor_cols(m);
    double s = 0;
    for (int64_t i = 0; i < d; i++) {
        float g, v = m->data[i * d + i];
        s += fn == SSL_DIAG_SQ_DEV_ONE ? ssl__sq_dev_one(v, &g) : ssl__std_hinge(v, param, &g);
        if (dm) dm->data[i * d + i] += scale * g;
    }
    *val = (float)(scale * s);
    return 0;
}

/* ---- conv2d ---- */
SSLDEF int ssl_conv_out_size(int64_t in, int64_t k, int stride, int pad) {
    if (stride < 1 || pad < 0 || in + 2 * pad < k) return 0;
    return (int)((in + 2 * pad - k) / stride + 1);
}

SSLDEF void ssl_conv_weight_from_torch(const float *oihw, float *ohwi, int o, int i, int kh, int kw) {
    for (int a = 0; a < o; a++)
        for (int b = 0; b < i; b++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++)
                    ohwi[(((size_t)a * kh + y) * kw + x) * i + b] = oihw[(((size_t)a * i + b) * kh + y) * kw + x];
}
SSLDEF void ssl_conv_weight_to_torch(const float *ohwi, float *oihw, int o, int i, int kh, int kw) {
    for (int a = 0; a < o; a++)
        for (int b = 0; b < i; b++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++)
                    oihw[(((size_t)a * i + b) * kh + y) * kw + x] = ohwi[(((size_t)a * kh + y) * kw + x) * i + b];
}

/* Geometry of one convolution; an im2col row is one output pixel's
   receptive field in [kh][kw][ci] order: a row of the OHWI weight. */
typedef struct {
    int64_t n, h, w, ci, co, kh, kw, oh, ow;
    int stride, pad;
} ssl__conv;

static int64_t ssl__conv_k(const ssl__conv *g) { return g->kh * g->kw * g->ci; }
static int ssl__conv_is_gemm(const ssl__conv *g) { return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0; }

static int ssl__conv_check(const char *op, const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b,
                           const ssl_tensor *y, const char *yn, int stride, int pad, ssl__conv *g) {
    if (x->ndim != 4) return ssl__bad_shapes(op, "x must be NHWC", "x", x, NULL, NULL);
    if (w->ndim != 4) return ssl__bad_shapes(op, "w must be [out][kh][kw][in]", "w", w, NULL, NULL);
    if (x->dim[3] != w->dim[3]) return ssl__bad_shapes(op, "input channels differ", "x", x, "w", w);
    if (stride < 1 || pad < 0) return ssl__fail("%s: bad stride %d or padding %d", op, stride, pad);
    g->n = x->dim[0]; g->h = x->dim[1]; g->w = x->dim[2]; g->ci = x->dim[3];
    g->co = w->dim[0]; g->kh = w->dim[1]; g->kw = w->dim[2];
    g->stride = stride; g->pad = pad;
    g->oh = ssl_conv_out_size(g->h, g->kh, stride, pad);
    g->ow = ssl_conv_out_size(g->w, g->kw, stride, pad);
    if (g->oh < 1 || g->ow < 1) return ssl__bad_shapes(op, "kernel larger than the padded input", "x", x, "w", w);
    if (ssl__vec_of(op, "bias", b, g->co)) return -1;
    if (!ssl__fits_int(g->n * g->oh * g->ow) || !ssl__fits_int(g->n * g->h * g->w) || !ssl__fits_int(ssl__conv_k(g)))
        return ssl__bad_shapes(op, "over 2^31 pixels (BLAS takes int)", "x", x, "w", w);
    if (y->ndim != 4 || y->dim[0] != g->n || y->dim[1] != g->oh || y->dim[2] != g->ow || y->dim[3] != g->co) {
        char s[96], sx[96], sw[96];
        return ssl__fail("%s: %s %s should be [%lld,%lld,%lld,%lld] for x %s, w %s, stride %d, pad %d", op, yn,
                         ssl_tensor_shape(y, s, sizeof s), (long long)g->n, (long long)g->oh, (long long)g->ow,
                         (long long)g->co, ssl_tensor_shape(x, sx, sizeof sx), ssl_tensor_shape(w, sw, sizeof sw),
                         stride, pad);
    }
    return 0;
}

/* Builds im2col rows [r0, r0+nr) (output pixels, flattened n,oy,ox).
   A kernel row lies on one input row, and NHWC makes its kw pixels
   contiguous: one memcpy per kernel row, zeros where it hangs over. */
static void ssl__im2col(const ssl__conv *g, const float *x, int64_t r0, int64_t nr, float *cols) {
    int64_t k = ssl__conv_k(g), ci = g->ci;
    for (int64_t r = r0; r < r0 + nr; r++) {
        int64_t n = r / (g->oh * g->ow), oy = r / g->ow % g->oh, ox = r % g->ow;
        int64_t iy0 = oy * g->stride - g->pad, ix0 = ox * g->stride - g->pad;
        int64_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + g->kw > g->w ? g->w - ix0 : g->kw;
        float *dst = cols + (r - r0) * k;
        for (int64_t ky = 0; ky < g->kh; ky++, dst += g->kw * ci) {
            int64_t iy = iy0 + ky;
            if (iy < 0 || iy >= g->h || kx1 <= kx0) { memset(dst, 0, sizeof(float) * g->kw * ci); continue; }
            memset(dst, 0, sizeof(float) * kx0 * ci);
            memcpy(dst + kx0 * ci, x + ((n * g->h + iy) * g->w + ix0 + kx0) * ci, sizeof(float) * (kx1 - kx0) * ci);
            memset(dst + kx1 * ci, 0, sizeof(float) * (g->kw - kx1) * ci);
        }
    }
}

/* The adjoint of ssl__im2col: adds each row's gradient back onto the
   input pixels it was copied from. */
static void ssl__col2im_add(const ssl__conv *g, const float *dcols, int64_t r0, int64_t nr, float *dx) {
    int64_t k = ssl__conv_k(g), ci = g->ci;
    for (int64_t r = r0; r < r0 + nr; r++) {
        int64_t n = r / (g->oh * g->ow), oy = r / g->ow % g->oh, ox = r % g->ow;
        int64_t iy0 = oy * g->stride - g->pad, ix0 = ox * g->stride - g->pad;
        int64_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + g->kw > g->w ? g->w - ix0 : g->kw;
        const float *src = dcols + (r - r0) * k;
        for (int64_t ky = 0; ky < g->kh; ky++, src += g->kw * ci) {
            int64_t iy = iy0 + ky;
            if (iy < 0 || iy >= g->h || kx1 <= kx0) continue;
            float *d = dx + ((n * g->h + iy) * g->w + ix0 + kx0) * ci;
            const float *s = src + kx0 * ci;
            for (int64_t j = 0; j < (kx1 - kx0) * ci; j++) d[j] += s[j];
        }
    }
}

/* Output pixels per im2col block. */
static int64_t ssl__conv_block(const ssl__conv *g) {
    int64_t rows = g->n * g->oh * g->ow, per = (int64_t)(SSL_IM2COL_BYTES / (sizeof(float) * ssl__conv_k(g)));
    if (per < 1) per = 1;
    return per < rows ? per : rows;
}

/* y rows = bias (beta 1 then adds the GEMM) or nothing (beta 0). */
static float ssl__bias_rows(float *y, int64_t rows, int64_t c, const ssl_tensor *b) {
    if (!b || !b->data) return 0.0f;
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * c, b->data, sizeof(float) * c);
    return 1.0f;
}
/* db += column sums of dy. */
static void ssl__bias_grad(const float *dy, int64_t rows, int64_t c, ssl_tensor *db) {
    if (!db || !db->data) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) db->data[j] += dy[r * c + j];
}

/* kept columns: at least rows x K values of the columns' type (t) */
static int ssl__cols_check(const char *op, const ssl_tensor *cols, const ssl__conv *g, int t) {
    if (!cols) return 0;
    int64_t need = g->n * g->oh * g->ow * ssl__conv_k(g);
    if (!cols->data || ssl_tensor_numel(cols) < need || cols->dtype != t) {
        char s[96];
        return ssl__fail("%s: cols %s (%s) holds %lld values; the columns are %lld x %lld of %s", op,
                         ssl_tensor_shape(cols, s, sizeof s), ssl_dtype_name(cols->dtype),
                         (long long)ssl_tensor_numel(cols), (long long)(g->n * g->oh * g->ow), (long long)ssl__conv_k(g),
                         ssl_dtype_name(t));
    }
    return 0;
}

SSLDEF int ssl_conv2d_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride, int pad,
                              ssl_tensor *y, ssl_buf *scratch) {
    return ssl_conv2d_forward_cols(x, w, b, stride, pad, y, scratch, NULL);
}
SSLDEF int ssl_conv2d_forward_cols(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride, int pad,
                                   ssl_tensor *y, ssl_buf *scratch, ssl_tensor *cols) {
    const char *op = cols ? __func__ : "ssl_conv2d_forward";
    ssl__conv g;
    if (ssl__conv_check(op, x, w, b, y, "y", stride, pad, &g) || ssl__cols_check(op, cols, &g, y->dtype)) return -1;
    if (SSL__DEVICE(op, b) < 0) return -1; /* an fp32 bias; w may be a bf16 copy on the GPU */
    int dev = SSL__IDX32(op, SSL__DEVICE_BF16(op, x, w, b, y, cols), x, y);
    if (dev < 0) return -1;
    SSL__ON_GPU_AS(op, dev, ssl_cuda_conv2d_forward(x, w, b, stride, pad, y, scratch, cols));
    int64_t rows = g.n * g.oh * g.ow, k = ssl__conv_k(&g);
    float beta = ssl__bias_rows(y->data, rows, g.co, b);
    if (ssl__conv_is_gemm(&g)) { /* x already is the im2col matrix */
        ssl_gemm(0, 1, (int)rows, (int)g.co, (int)k, 1.0f, x->data, (int)k, w->data, (int)k, beta, y->data, (int)g.co);
        return 0;
    }
    int64_t per = ssl__conv_block(&g);
    float *buf = cols ? NULL : (float *)ssl_buf_reserve(scratch, sizeof(float) * (size_t)(per * k));
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        float *c = cols ? cols->data + r0 * k : buf; /* kept: the block's rows of the whole matrix */
        ssl__im2col(&g, x->data, r0, nr, c);
        ssl_gemm(0, 1, (int)nr, (int)g.co, (int)k, 1.0f, c, (int)k, w->data, (int)k, beta, y->data + r0 * g.co,
                 (int)g.co);
    }
    return 0;
}

SSLDEF int ssl_conv2d_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                               ssl_tensor *dx, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch) {
    return ssl_conv2d_backward_ex(x, w, dy, stride, pad, dx, 0, dw, db, scratch);
}
SSLDEF int ssl_conv2d_backward_ex(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                                  ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch) {
    return ssl_conv2d_backward_cols(x, w, dy, stride, pad, dx, dx_accumulate, dw, db, scratch, NULL);
}
SSLDEF int ssl_conv2d_backward_cols(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride, int pad,
                                    ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db, ssl_buf *scratch,
                                    const ssl_tensor *cols) {
    const char *op = cols ? __func__ : "ssl_conv2d_backward_ex";
    ssl__conv g;
    if (ssl__conv_check(op, x, w, db, dy, "dy", stride, pad, &g) ||
        ssl__same_shape(op, "w", w, "dw", dw) || (dx && ssl__same_shape(op, "x", x, "dx", dx)) ||
        ssl__cols_check(op, cols, &g, dy->dtype))
        return -1;
    if (SSL__DEVICE(op, dw, db) < 0 || SSL__SAME_DTYPE(op, x, dx)) return -1;
    int dev = SSL__IDX32(op, SSL__DEVICE_BF16(op, x, w, dy, dx, dw, db, cols), x, dy);
    if (dev < 0) return -1;
    SSL__ON_GPU_AS(op, dev, ssl_cuda_conv2d_backward(x, w, dy, stride, pad, dx, dx_accumulate, dw, db, scratch, cols));
    int64_t rows = g.n * g.oh * g.ow, k = ssl__conv_k(&g), co = g.co;
    ssl__bias_grad(dy->data, rows, co, db);
    if (ssl__conv_is_gemm(&g)) {
        /* y = x w^T  =>  dw += dy^T x, dx = dy w */
        ssl_gemm(1, 0, (int)co, (int)k, (int)rows, 1.0f, dy->data, (int)co, x->data, (int)k, 1.0f, dw->data, (int)k);
        if (dx)
            ssl_gemm(0, 0, (int)rows, (int)k, (int)co, 1.0f, dy->data, (int)co, w->data, (int)k, dx_accumulate ? 1.0f : 0.0f,
                     dx->data, (int)k);
        return 0;
    }
    /* the same per block of im2col rows, rebuilt (KH*KW times the input's
       size to keep), or the forward's where cols kept them */
    int64_t per = ssl__conv_block(&g);
    float *buf = (float *)ssl_buf_reserve(scratch, sizeof(float) * (size_t)((cols ? 1 : 2) * per * k)),
          *dcols = cols ? buf : buf + per * k;
    if (dx && !dx_accumulate) memset(dx->data, 0, sizeof(float) * (size_t)ssl_tensor_numel(dx));
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        const float *dyb = dy->data + r0 * co, *c = cols ? cols->data + r0 * k : buf;
        if (!cols) ssl__im2col(&g, x->data, r0, nr, buf);
        ssl_gemm(1, 0, (int)co, (int)k, (int)nr, 1.0f, dyb, (int)co, c, (int)k, 1.0f, dw->data, (int)k);
        if (!dx) continue;
        ssl_gemm(0, 0, (int)nr, (int)k, (int)co, 1.0f, dyb, (int)co, w->data, (int)k, 0.0f, dcols, (int)k);
        ssl__col2im_add(&g, dcols, r0, nr, dx->data);
    }
    return 0;
}

/* ---- batch norm ----
   Per-channel sums run over the rows in a fixed number of blocks, each
   summed in double and then added in block order: the result does not
   depend on the thread count, and 3M-row batches keep their precision. */
#define SSL__BN_BLOCKS 32
enum { SSL__BN_SUM, SSL__BN_SUMSQ_DEV, SSL__BN_APPLY, SSL__BN_GRAD_SUMS, SSL__BN_GRAD_INPUT };
typedef struct {
    int stage;
    int64_t rows, c, per; /* per: rows per block */
    const float *x, *dy;
    const float *res, *relu_y; /* fused: residual added before the ReLU; the forward's output (ReLU mask) */
    int relu;                  /* fused ReLU on the output */
    float *y, *dx, *dyr; /* dyr: dy through the ReLU's mask, stored (may be dy) */
    const float *mean, *invstd, *scale, *shift, *gamma, *mean_dy, *mean_dy_xhat;
    double *part; /* [block][2c] */
} ssl__bn_job;

static void ssl__bn_block(void *ctx, int64_t blk, int worker) {
    (void)worker;
    ssl__bn_job *j = (ssl__bn_job *)ctx;
    int64_t c = j->c, r0 = blk * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    double *p = j->part + blk * 2 * c;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * c;
        switch (j->stage) {
        case SSL__BN_SUM:
            for (int64_t i = 0; i < c; i++) p[i] += x[i];
            break;
        case SSL__BN_SUMSQ_DEV: /* two passes: sum (x - mean)^2 does not cancel like E[x^2] - mean^2 */
            for (int64_t i = 0; i < c; i++) { double d = (double)x[i] - j->mean[i]; p[i] += d * d; }
            break;
        case SSL__BN_APPLY:
            if (!j->res && !j->relu) {
                for (int64_t i = 0; i < c; i++) j->y[r * c + i] = ssl__bn_apply(x[i], j->scale[i], j->shift[i]);
            } else {
                const float *res = j->res ? j->res + r * c : NULL;
                for (int64_t i = 0; i < c; i++) {
                    float v = ssl__bn_apply(x[i], j->scale[i], j->shift[i]);
                    if (res) v += res[i];
                    j->y[r * c + i] = j->relu ? ssl__relu(v) : v;
                }
            }
            break;
        case SSL__BN_GRAD_SUMS: {
            const float *dy = j->dy + r * c, *m = j->relu_y ? j->relu_y + r * c : NULL;
            for (int64_t i = 0; i < c; i++) {
                float g = m ? ssl__relu_grad(m[i], dy[i]) : dy[i];
                p[i] += g;
                p[c + i] += (double)g * ((x[i] - j->mean[i]) * j->invstd[i]);
            }
            break;
        }
        case SSL__BN_GRAD_INPUT: {
            const float *dy = j->dy + r * c, *m = j->relu_y ? j->relu_y + r * c : NULL;
            float *dyr = j->dyr ? j->dyr + r * c : NULL;
            for (int64_t i = 0; i < c; i++) {
                float g = m ? ssl__relu_grad(m[i], dy[i]) : dy[i];
                if (dyr) dyr[i] = g;
                j->dx[r * c + i] = ssl__bn_grad_input(g, x[i], j->mean[i], j->invstd[i], j->gamma[i], j->mean_dy[i],
                                                      j->mean_dy_xhat[i]);
            }
            break;
        }
        }
    }
}

/* Runs one stage over all blocks; sums[2c] gets the block sums (in block
   order) for the reducing stages. Threads only when the work pays for
   starting them. */
static void ssl__bn_run(ssl__bn_job *j, int stage, double *sums) {
    int64_t blocks = (j->rows + j->per - 1) / j->per;
    j->stage = stage;
    if (sums) memset(j->part, 0, sizeof(double) * (size_t)(blocks * 2 * j->c));
    ssl_parallel_for(blocks, j->rows * j->c >= (1 << 18) ? 0 : 1, ssl__bn_block, j);
    if (!sums) return;
    memset(sums, 0, sizeof(double) * (size_t)(2 * j->c));
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t i = 0; i < 2 * j->c; i++) sums[i] += j->part[b * 2 * j->c + i];
}

static ssl__bn_job ssl__bn_job_make(const ssl_tensor *x, double **mem, float **fmem) {
    ssl__bn_job j;
    memset(&j, 0, sizeof j);
    j.c = ssl_tensor_cols(x);
    j.rows = ssl_tensor_rows(x);
    j.per = (j.rows + SSL__BN_BLOCKS - 1) / SSL__BN_BLOCKS;
    if (j.per < 1) j.per = 1;
    j.x = x->data;
    /* block partials + final sums (double), 4 per-channel float vectors */
    *mem = (double *)ssl_malloc(sizeof(double) * (size_t)((SSL__BN_BLOCKS + 1) * 2 * j.c), "batch-norm sums");
    *fmem = (float *)ssl_malloc(sizeof(float) * (size_t)(4 * j.c), "batch-norm vectors");
    j.part = *mem + 2 * j.c;
    return j;
}

static int ssl__bn_check(const char *op, const ssl_batchnorm *bn, const ssl_tensor *x, const ssl_tensor *y,
                         const char *yn, const ssl_tensor *mean, const ssl_tensor *invstd) {
    int64_t c = ssl_tensor_cols(x);
    if (ssl__same_shape(op, "x", x, yn, y) || ssl__vec_of(op, "mean", mean, c) || ssl__vec_of(op, "invstd", invstd, c) ||
        ssl__vec_of(op, "weight", &bn->weight, c) || ssl__vec_of(op, "bias", &bn->bias, c) ||
        ssl__vec_of(op, "running_mean", &bn->running_mean, c) || ssl__vec_of(op, "running_var", &bn->running_var, c))
        return -1;
    if (!mean || !mean->data || !invstd || !invstd->data) return ssl__fail("%s: mean and invstd are needed", op);
    return 0;
}

SSLDEF int ssl_batchnorm_forward(ssl_batchnorm *bn, int training, const ssl_tensor *x, ssl_tensor *y,
                                 ssl_tensor *mean, ssl_tensor *invstd) {
    return ssl_batchnorm_forward_act(bn, training, x, NULL, 0, y, mean, invstd);
}
static int ssl__bn_forward(const char *op, ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                           int relu, ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd, ssl_tensor *mask);
SSLDEF int ssl_batchnorm_forward_act(ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                                     int relu, ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd) {
    return ssl__bn_forward(__func__, bn, training, x, residual, relu, y, mean, invstd, NULL);
}
/* a ReLU bit mask for n values: SSL_U8, at least (n + 7) / 8 bytes */
static int ssl__mask_check(const char *op, const char *name, const ssl_tensor *m, int64_t n) {
    if (m->dtype != SSL_U8 || ssl_tensor_numel(m) < (n + 7) / 8)
        return ssl__fail("%s: %s must be a bit mask (SSL_U8) of at least %lld bytes", op, name, (long long)((n + 7) / 8));
    return 0;
}
SSLDEF int ssl_batchnorm_forward_mask(ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                                      ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd, ssl_tensor *mask) {
    if (!mask || !mask->data) return ssl__fail("%s: no mask given", __func__);
    if (ssl__mask_check(__func__, "mask", mask, ssl_tensor_numel(x))) return -1;
    if (mask->device != SSL_DEV_CUDA) return ssl__fail("%s: bit masks are GPU storage; the CPU reads y", __func__);
    return ssl__bn_forward(__func__, bn, training, x, residual, 1, y, mean, invstd, mask);
}
static int ssl__bn_forward(const char *op, ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *residual,
                           int relu, ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd, ssl_tensor *mask) {
    if (ssl__bn_check(op, bn, x, y, "y", mean, invstd)) return -1;
    if (residual && ssl__same_shape(op, "x", x, "residual", residual)) return -1;
    int64_t c = ssl_tensor_cols(x), rows = ssl_tensor_rows(x);
    int tracked = bn->running_mean.data && bn->running_var.data;
    /* SyncBN: the statistics of every rank's rows (each rank as many) */
    ssl_comm *sync = training && bn->comm && bn->comm->world > 1 ? bn->comm : NULL;
    int64_t rows_all = sync ? rows * sync->world : rows;
    if (training && rows_all < 2) return ssl__bad_shapes(op, "training needs more than one value per channel", "x", x, NULL, NULL);
    if (!training && !tracked) return ssl__fail("%s: eval mode needs running_mean and running_var", op);
    if (SSL__DEVICE(op, mean, invstd, &bn->weight, &bn->bias, &bn->running_mean, &bn->running_var) < 0 ||
        SSL__SAME_DTYPE(op, x, y, residual))
        return -1;
    int dev = SSL__IDX32(op, SSL__DEVICE_BF16(op, x, y, mean, invstd, &bn->weight, &bn->bias, &bn->running_mean, &bn->running_var, residual, mask), x);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_batchnorm_forward(bn, training, x, residual, relu, y, mean, invstd, mask));
    double *sums;
    float *v;
    ssl__bn_job j = ssl__bn_job_make(x, &sums, &v);
    float *scale = v, *shift = v + c;
    if (training) {
        ssl__bn_run(&j, SSL__BN_SUM, sums);
        ssl_comm_sum_f64(sync, sums, c);
        for (int64_t i = 0; i < c; i++) mean->data[i] = (float)(sums[i] / rows_all);
        j.mean = mean->data;
        ssl__bn_run(&j, SSL__BN_SUMSQ_DEV, sums);
        ssl_comm_sum_f64(sync, sums, c);
        for (int64_t i = 0; i < c; i++) {
            double var = sums[i] / rows_all; /* biased: what normalizes */
            invstd->data[i] = (float)(1.0 / sqrt(var + bn->eps));
            if (tracked) { /* the running variance is the unbiased one, as torch */
                bn->running_mean.data[i] = ssl__bn_running(bn->running_mean.data[i], mean->data[i], bn->momentum);
                bn->running_var.data[i] = ssl__bn_running(bn->running_var.data[i], (float)(sums[i] / (rows_all - 1)), bn->momentum);
            }
        }
    } else {
        for (int64_t i = 0; i < c; i++) {
            mean->data[i] = bn->running_mean.data[i];
            invstd->data[i] = (float)(1.0 / sqrt((double)bn->running_var.data[i] + bn->eps));
        }
    }
    for (int64_t i = 0; i < c; i++) {
        float gamma = bn->weight.data ? bn->weight.data[i] : 1.0f, beta = bn->bias.data ? bn->bias.data[i] : 0.0f;
        scale[i] = gamma * invstd->data[i];
        shift[i] = ssl__mul_add(-mean->data[i], scale[i], beta);
    }
    j.scale = scale;
    j.shift = shift;
    j.y = y->data;
    j.res = residual ? residual->data : NULL;
    j.relu = relu;
    ssl__bn_run(&j, SSL__BN_APPLY, NULL);
    free(sums);
    free(v);
    return 0;
}

SSLDEF int ssl_batchnorm_backward(const ssl_batchnorm *bn, int training, const ssl_tensor *x, const ssl_tensor *dy,
                                  const ssl_tensor *mean, const ssl_tensor *invstd, ssl_tensor *dx,
                                  ssl_tensor *dweight, ssl_tensor *dbias) {
    return ssl_batchnorm_backward_act(bn, training, x, NULL, dy, mean, invstd, dx, dweight, dbias);
}
SSLDEF int ssl_batchnorm_backward_act(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                      const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                      const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight, ssl_tensor *dbias) {
    return ssl_batchnorm_backward_ex(bn, training, x, relu_y, dy, mean, invstd, dx, dweight, dbias, NULL);
}
SSLDEF int ssl_batchnorm_backward_ex(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                     const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                     const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight, ssl_tensor *dbias,
                                     ssl_tensor *dy_relu) {
    const char *op = dy_relu ? __func__ : "ssl_batchnorm_backward_act";
    int64_t c = ssl_tensor_cols(x), rows = ssl_tensor_rows(x);
    int bits = relu_y && relu_y->dtype == SSL_U8; /* relu_y is the forward's bit mask */
    if (ssl__bn_check(op, bn, x, dy, "dy", mean, invstd) || (dx && ssl__same_shape(op, "x", x, "dx", dx)) ||
        (relu_y && !bits && ssl__same_shape(op, "x", x, "relu_y", relu_y)) ||
        (bits && ssl__mask_check(op, "relu_y", relu_y, ssl_tensor_numel(x))) ||
        ssl__vec_of(op, "dweight", dweight, c) || ssl__vec_of(op, "dbias", dbias, c) ||
        (dy_relu && ssl__same_shape(op, "dy", dy, "dy_relu", dy_relu)))
        return -1;
    if (dy_relu && (!relu_y || !dx || !dx->data || !dy_relu->data || dx->data == dy_relu->data))
        return ssl__fail("%s: dy_relu needs relu_y and dx, and must not be dx (given: relu_y %s, dx %s, dy_relu %s)", op,
                         relu_y ? "yes" : "NULL", !dx || !dx->data ? "NULL" : dx->data == dy_relu->data ? "the same memory" : "yes",
                         dy_relu->data ? "yes" : "NULL");
    if (SSL__DEVICE(op, mean, invstd, dweight, dbias, &bn->weight) < 0 ||
        SSL__SAME_DTYPE(op, x, dy, dx, bits ? NULL : relu_y, dy_relu))
        return -1;
    int dev = SSL__IDX32(op, SSL__DEVICE_BF16(op, x, dy, mean, invstd, dx, dweight, dbias, &bn->weight, relu_y, dy_relu), x);
    if (dev < 0) return -1;
    ssl_comm *sync = training && bn->comm && bn->comm->world > 1 ? bn->comm : NULL;
    int64_t rows_all = sync ? rows * sync->world : rows;
    SSL__ON_GPU_AS(op, dev, ssl_cuda_batchnorm_backward(bn, training, x, relu_y, dy, mean, invstd, dx, dweight, dbias, dy_relu));
    double *sums;
    float *v;
    ssl__bn_job j = ssl__bn_job_make(x, &sums, &v);
    float *gamma = v, *mean_dy = v + c, *mean_dy_xhat = v + 2 * c;
    j.dy = dy->data;
    j.relu_y = relu_y ? relu_y->data : NULL;
    j.mean = mean->data;
    j.invstd = invstd->data;
    ssl__bn_run(&j, SSL__BN_GRAD_SUMS, sums); /* sums[i] = sum dy, sums[c+i] = sum dy*xhat */
    for (int64_t i = 0; i < c; i++) { /* this rank's share: the gradients' all-reduce adds the others' */
        if (dbias && dbias->data) dbias->data[i] += (float)sums[i];
        if (dweight && dweight->data) dweight->data[i] += (float)sums[c + i];
    }
    /* SyncBN: the statistics came from every rank's rows, so their share
       of the gradient does too */
    ssl_comm_sum_f64(sync, sums, 2 * c);
    for (int64_t i = 0; i < c; i++) {
        gamma[i] = bn->weight.data ? bn->weight.data[i] : 1.0f;
        /* in eval the statistics are constants: no share to remove */
        mean_dy[i] = training ? (float)(sums[i] / rows_all) : 0.0f;
        mean_dy_xhat[i] = training ? (float)(sums[c + i] / rows_all) : 0.0f;
    }
    if (dx) {
        j.gamma = gamma;
        j.mean_dy = mean_dy;
        j.mean_dy_xhat = mean_dy_xhat;
        j.dx = dx->data;
        j.dyr = dy_relu ? dy_relu->data : NULL;
        ssl__bn_run(&j, SSL__BN_GRAD_INPUT, NULL);
    }
    free(sums);
    free(v);
    return 0;
}

/* ---- relu ---- */
SSLDEF int ssl_relu_forward(const ssl_tensor *x, ssl_tensor *y) {
    if (ssl__same_shape(__func__, "x", x, "y", y)) return -1;
    int dev = SSL__DEVICE_BF16(__func__, x, y);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, x, y)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_relu_forward(x, y));
    int64_t n = ssl_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) y->data[i] = ssl__relu(x->data[i]);
    return 0;
}

SSLDEF int ssl_relu_backward(const ssl_tensor *y, const ssl_tensor *dy, ssl_tensor *dx) {
    int bits = y->dtype == SSL_U8; /* y is a bit mask (ssl_batchnorm_forward_mask) */
    if ((bits ? ssl__mask_check(__func__, "y", y, ssl_tensor_numel(dy)) : ssl__same_shape(__func__, "y", y, "dy", dy)) ||
        ssl__same_shape(__func__, "dy", dy, "dx", dx))
        return -1;
    int dev = SSL__DEVICE_BF16(__func__, y, dy, dx);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, bits ? NULL : y, dy, dx)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_relu_backward(y, dy, dx));
    int64_t n = ssl_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) dx->data[i] = ssl__relu_grad(y->data[i], dy->data[i]);
    return 0;
}

/* ---- max pool ---- */
static int ssl__pool_check(const char *op, const ssl_tensor *x, const ssl_tensor *y, const char *yn, int k, int stride,
                           int pad) {
    if (x->ndim != 4) return ssl__bad_shapes(op, "x must be NHWC", "x", x, NULL, NULL);
    if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
        return ssl__fail("%s: bad window: kernel %d, stride %d, pad %d (pad must be at most kernel/2)", op, k, stride, pad);
    int oh = ssl_conv_out_size(x->dim[1], k, stride, pad), ow = ssl_conv_out_size(x->dim[2], k, stride, pad);
    if (y->ndim != 4 || y->dim[0] != x->dim[0] || y->dim[1] != oh || y->dim[2] != ow || y->dim[3] != x->dim[3] || oh < 1) {
        char s[96], sx[96];
        return ssl__fail("%s: %s %s should be [%lld,%d,%d,%lld] for x %s, kernel %d, stride %d, pad %d", op, yn,
                         ssl_tensor_shape(y, s, sizeof s), (long long)x->dim[0], oh, ow, (long long)x->dim[3],
                         ssl_tensor_shape(x, sx, sizeof sx), k, stride, pad);
    }
    return 0;
}

/* The input pixels of output pixel o's window: rows [*y0, *y1), columns
   [*x0, *x1), clipped to the image (padding is -inf: it never wins). */
static int64_t ssl__pool_window(const ssl_tensor *x, const ssl_tensor *y, int k, int stride, int pad, int64_t o,
                                int64_t *y0, int64_t *y1, int64_t *x0, int64_t *x1) {
    int64_t oh = y->dim[1], ow = y->dim[2], n = o / (oh * ow), oy = o / ow % oh, ox = o % ow;
    *y0 = oy * stride - pad; *y1 = *y0 + k;
    *x0 = ox * stride - pad; *x1 = *x0 + k;
    if (*y0 < 0) *y0 = 0;
    if (*x0 < 0) *x0 = 0;
    if (*y1 > x->dim[1]) *y1 = x->dim[1];
    if (*x1 > x->dim[2]) *x1 = x->dim[2];
    return n;
}

SSLDEF int ssl_maxpool2d_forward(const ssl_tensor *x, int k, int stride, int pad, ssl_tensor *y) {
    if (ssl__pool_check(__func__, x, y, "y", k, stride, pad)) return -1;
    int dev = SSL__IDX32(__func__, SSL__DEVICE_BF16(__func__, x, y), x);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, x, y)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_maxpool2d_forward(x, k, stride, pad, y));
    int64_t h = x->dim[1], w = x->dim[2], c = x->dim[3], outs = y->dim[0] * y->dim[1] * y->dim[2];
    for (int64_t o = 0; o < outs; o++) {
        int64_t y0, y1, x0, x1, n = ssl__pool_window(x, y, k, stride, pad, o, &y0, &y1, &x0, &x1);
        float *best = y->data + o * c;
        for (int64_t i = 0; i < c; i++) best[i] = -INFINITY;
        for (int64_t iy = y0; iy < y1; iy++)
            for (int64_t ix = x0; ix < x1; ix++) {
                const float *px = x->data + ((n * h + iy) * w + ix) * c;
                for (int64_t i = 0; i < c; i++) best[i] = ssl__pool_takes(best[i], px[i]) ? px[i] : best[i];
            }
    }
    return 0;
}

SSLDEF int ssl_maxpool2d_backward(const ssl_tensor *x, const ssl_tensor *dy, int k, int stride, int pad,
                                  ssl_tensor *dx) {
    if (ssl__pool_check(__func__, x, dy, "dy", k, stride, pad) || ssl__same_shape(__func__, "x", x, "dx", dx)) return -1;
    int dev = SSL__IDX32(__func__, SSL__DEVICE_BF16(__func__, x, dy, dx), x);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, x, dy, dx)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_maxpool2d_backward(x, dy, k, stride, pad, dx));
    /* the forward's scan again, remembering where each winner is */
    int64_t h = x->dim[1], w = x->dim[2], c = x->dim[3], outs = dy->dim[0] * dy->dim[1] * dy->dim[2];
    float *best = (float *)ssl_malloc(sizeof(float) * (size_t)c, "max-pool values");
    int64_t *arg = (int64_t *)ssl_malloc(sizeof(int64_t) * (size_t)c, "max-pool winners");
    memset(dx->data, 0, sizeof(float) * (size_t)ssl_tensor_numel(dx));
    for (int64_t o = 0; o < outs; o++) {
        int64_t y0, y1, x0, x1, n = ssl__pool_window(x, dy, k, stride, pad, o, &y0, &y1, &x0, &x1);
        for (int64_t i = 0; i < c; i++) { best[i] = -INFINITY; arg[i] = (n * h + y0) * w + x0; }
        for (int64_t iy = y0; iy < y1; iy++)
            for (int64_t ix = x0; ix < x1; ix++) {
                int64_t pix = (n * h + iy) * w + ix;
                const float *px = x->data + pix * c;
                for (int64_t i = 0; i < c; i++)
                    if (ssl__pool_takes(best[i], px[i])) { best[i] = px[i]; arg[i] = pix; }
            }
        for (int64_t i = 0; i < c; i++) dx->data[arg[i] * c + i] += dy->data[o * c + i];
    }
    free(best);
    free(arg);
    return 0;
}

/* ---- global average pool ---- */
static int ssl__avgpool_check(const char *op, const ssl_tensor *x, const char *xn, const ssl_tensor *y, const char *yn) {
    if (x->ndim != 4) return ssl__bad_shapes(op, "expected NHWC", xn, x, NULL, NULL);
    if (ssl_tensor_numel(y) != x->dim[0] * x->dim[3] || ssl_tensor_cols(y) != x->dim[3])
        return ssl__bad_shapes(op, "pooled shape should be [N,C]", xn, x, yn, y);
    return 0;
}

SSLDEF int ssl_avgpool_forward(const ssl_tensor *x, ssl_tensor *y) {
    if (ssl__avgpool_check(__func__, x, "x", y, "y")) return -1;
    int dev = SSL__IDX32(__func__, SSL__DEVICE_BF16(__func__, x, y), x);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_avgpool_forward(x, y));
    int64_t n = x->dim[0], hw = x->dim[1] * x->dim[2], c = x->dim[3];
    for (int64_t b = 0; b < n; b++) {
        float *o = y->data + b * c;
        for (int64_t i = 0; i < c; i++) o[i] = 0.0f;
        for (int64_t p = 0; p < hw; p++)
            for (int64_t i = 0; i < c; i++) o[i] += x->data[(b * hw + p) * c + i];
        for (int64_t i = 0; i < c; i++) o[i] /= (float)hw;
    }
    return 0;
}

SSLDEF int ssl_avgpool_backward(const ssl_tensor *dy, ssl_tensor *dx) {
    if (ssl__avgpool_check(__func__, dx, "dx", dy, "dy")) return -1;
    int dev = SSL__IDX32(__func__, SSL__DEVICE_BF16(__func__, dy, dx), dx);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_avgpool_backward(dy, dx));
    int64_t n = dx->dim[0], hw = dx->dim[1] * dx->dim[2], c = dx->dim[3];
    for (int64_t b = 0; b < n; b++)
        for (int64_t p = 0; p < hw; p++)
            for (int64_t i = 0; i < c; i++) dx->data[(b * hw + p) * c + i] = dy->data[b * c + i] / (float)hw;
    return 0;
}

/* ---- linear ---- */
static int ssl__linear_check(const char *op, const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b,
                             const ssl_tensor *y, const char *yn) {
    if (w->ndim != 2) return ssl__bad_shapes(op, "weight must be [out][in]", "w", w, NULL, NULL);
    if (ssl_tensor_cols(x) != w->dim[1]) return ssl__bad_shapes(op, "x's last dim must equal w's in_features (dim 1)", "x", x, "w", w);
    if (ssl__vec_of(op, "bias", b, w->dim[0])) return -1;
    if (ssl_tensor_rows(y) != ssl_tensor_rows(x) || ssl_tensor_cols(y) != w->dim[0]) {
        char s[96], sx[96], sw[96];
        return ssl__fail("%s: %s %s should be [%lld,%lld] for x %s, w %s", op, yn, ssl_tensor_shape(y, s, sizeof s),
                         (long long)ssl_tensor_rows(x), (long long)w->dim[0], ssl_tensor_shape(x, sx, sizeof sx),
                         ssl_tensor_shape(w, sw, sizeof sw));
    }
    return 0;
}

SSLDEF int ssl_linear_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, ssl_tensor *y) {
    if (ssl__linear_check(__func__, x, w, b, y, "y")) return -1;
    int dev = SSL__DEVICE(__func__, x, w, b, y);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_linear_forward(x, w, b, y));
    int64_t rows = ssl_tensor_rows(x), in = w->dim[1], out = w->dim[0];
    float beta = ssl__bias_rows(y->data, rows, out, b);
    ssl_gemm(0, 1, (int)rows, (int)out, (int)in, 1.0f, x->data, (int)in, w->data, (int)in, beta, y->data, (int)out);
    return 0;
}

SSLDEF int ssl_linear_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, ssl_tensor *dx,
                               ssl_tensor *dw, ssl_tensor *db) {
    if (ssl__linear_check(__func__, x, w, db, dy, "dy") || ssl__same_shape(__func__, "w", w, "dw", dw) ||
        (dx && ssl__same_shape(__func__, "x", x, "dx", dx)))
        return -1;
    int dev = SSL__DEVICE(__func__, x, w, dy, dx, dw, db);
    if (dev < 0) return -1;
    SSL__ON_GPU(dev, ssl_cuda_linear_backward(x, w, dy, dx, dw, db));
    int64_t rows = ssl_tensor_rows(x), in = w->dim[1], out = w->dim[0];
    /* y = x w^T + b  =>  dw += dy^T x, db += sum_rows dy, dx = dy w */
    ssl_gemm(1, 0, (int)out, (int)in, (int)rows, 1.0f, dy->data, (int)out, x->data, (int)in, 1.0f, dw->data, (int)in);
    ssl__bias_grad(dy->data, rows, out, db);
    if (dx) ssl_gemm(0, 0, (int)rows, (int)in, (int)out, 1.0f, dy->data, (int)out, w->data, (int)in, 0.0f, dx->data, (int)in);
    return 0;
}

/* ---- residual add ---- */
SSLDEF int ssl_add(const ssl_tensor *a, const ssl_tensor *b, ssl_tensor *y) {
    if (ssl__same_shape(__func__, "a", a, "b", b) || ssl__same_shape(__func__, "a", a, "y", y)) return -1;
    int dev = SSL__DEVICE_BF16(__func__, a, b, y);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, a, b, y)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_add(a, b, y));
    int64_t n = ssl_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) y->data[i] = a->data[i] + b->data[i];
    return 0;
}

SSLDEF int ssl_add_backward(const ssl_tensor *dy, ssl_tensor *da, ssl_tensor *db) {
    if ((da && ssl__same_shape(__func__, "dy", dy, "da", da)) || (db && ssl__same_shape(__func__, "dy", dy, "db", db)))
        return -1;
    int dev = SSL__DEVICE_BF16(__func__, dy, da, db);
    if (dev < 0 || SSL__SAME_DTYPE(__func__, dy, da, db)) return -1;
    SSL__ON_GPU(dev, ssl_cuda_add_backward(dy, da, db));
    if (da) ssl_copy(da, dy);
    if (db) ssl_copy(db, dy);
    return 0;
}

/* ---- 8. Models: the parameter table ----------------------------------- */

SSLDEF int ssl_params_add(ssl_param_table *t, const char *name, int kind, int ndim, const int64_t *shape) {
    SSL_ASSERT(!t->data, "ssl_params_add after ssl_params_alloc");
    SSL_ASSERT(ndim >= 1 && ndim <= 4 && strlen(name) < sizeof t->p[0].name, "bad parameter '%s'", name);
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->p = (ssl_param *)ssl_realloc(t->p, sizeof(ssl_param) * t->cap, "parameter table");
    }
    ssl_param *p = &t->p[t->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) { p->shape[d] = shape[d]; p->numel *= shape[d]; }
    /* 16-float alignment keeps every tensor 64-byte aligned */
    p->offset = (t->total + 15) / 16 * 16;
    t->total = p->offset + p->numel;
    return t->n++;
}

SSLDEF void ssl_params_alloc(ssl_param_table *t) {
    size_t bytes = sizeof(float) * (size_t)((t->total + 15) / 16 * 16);
    t->data = (float *)ssl_calloc(bytes, "parameters");
    t->grad = (float *)ssl_calloc(bytes, "gradients");
}

SSLDEF void ssl_params_free(ssl_param_table *t) {
    free(t->p);
#ifdef SSL_CUDA
    if (t->dev) {
        ssl_cuda_free(t->data);
        ssl_cuda_free(t->grad);
        free(t->host);
        memset(t, 0, sizeof *t);
        return;
    }
#endif
    free(t->data);
    free(t->grad);
    memset(t, 0, sizeof *t);
}

#ifdef SSL_CUDA
static size_t ssl__params_bytes(const ssl_param_table *t) { return sizeof(float) * (size_t)((t->total + 15) / 16 * 16); }
#endif

SSLDEF int ssl_params_to_device(ssl_param_table *t) {
    if (t->dev) return 0;
#ifdef SSL_CUDA
    size_t bytes = ssl__params_bytes(t);
    float *d = (float *)ssl_cuda_malloc(bytes, "parameters"), *g = (float *)ssl_cuda_malloc(bytes, "gradients");
    ssl_cuda_to_device(d, t->data, bytes);
    ssl_cuda_memset0(g, bytes);
    free(t->grad);
    t->host = t->data;
    t->data = d, t->grad = g, t->dev = SSL_DEV_CUDA;
    return 0;
#else
    return ssl__fail("parameters: this build has no CUDA backend (build with nvcc present)");
#endif
}

SSLDEF void ssl_params_download(const ssl_param_table *t) {
#ifdef SSL_CUDA
    if (t->dev) ssl_cuda_to_host(t->host, t->data, ssl__params_bytes(t));
#else
    (void)t;
#endif
}

SSLDEF void ssl_params_upload(ssl_param_table *t) {
#ifdef SSL_CUDA
    if (t->dev) ssl_cuda_to_device(t->data, t->host, ssl__params_bytes(t));
#else
    (void)t;
#endif
}

SSLDEF int ssl_params_find(const ssl_param_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->p[i].name, name)) return i;
    return -1;
}


/* ---- 8. Models: ResNets and heads --------------------------------------- */

SSLDEF int ssl_mlp_spec_parse(const char *spec, int *widths, int max) {
    int n = 0;
    const char *s = spec;
    if (!s || !*s) return 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1 << 20) || (*end && *end != '-') || n == max)
            return ssl__fail("MLP spec '%s': expected widths like 2048-2048-128 (1 to %d positive integers joined by '-')",
                             spec, max);
        widths[n++] = (int)v;
        s = *end ? end + 1 : end;
        if (*end == '-' && !*s) return ssl__fail("MLP spec '%s': ends with '-'", spec);
    }
    return n;
}

static int ssl__add_param(ssl_model *m, const char *prefix, const char *name, int kind, int ndim, int64_t a, int64_t b,
                          int64_t c, int64_t d) {
    char full[96];
    int64_t shape[4] = {a, b, c, d};
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return ssl_params_add(&m->params, full, kind, ndim, shape);
}

/* Appends a layer; `name` is the torch module of the conv/linear, `bn_name`
   of its BN ("" = none). */
static int ssl__add_layer(ssl_model *m, int type, const char *name, const char *bn_name, int cin, int cout, int k,
                          int stride, int pad, int bias, int relu) {
    m->layers = (ssl_layer *)ssl_realloc(m->layers, sizeof(ssl_layer) * (size_t)(m->nlayers + 1), "model layers");
    ssl_layer *L = &m->layers[m->nlayers];
    memset(L, 0, sizeof *L);
    L->type = type;
    L->cin = cin, L->cout = cout, L->k = k, L->stride = stride, L->pad = pad;
    L->relu = relu;
    L->b = L->gamma = L->beta = L->rmean = L->rvar = -1;
    if (type == SSL_LAYER_CONV)
        L->w = ssl__add_param(m, name, ".weight", SSL_PARAM_WEIGHT, 4, cout, k, k, cin);
    else
        L->w = ssl__add_param(m, name, ".weight", SSL_PARAM_WEIGHT, 2, cout, cin, 0, 0);
    if (bias) L->b = ssl__add_param(m, name, ".bias", SSL_PARAM_BIAS, 1, cout, 0, 0, 0);
    if (bn_name && *bn_name) {
        L->bn = 1;
        L->gamma = ssl__add_param(m, bn_name, ".weight", SSL_PARAM_BN_WEIGHT, 1, cout, 0, 0, 0);
        L->beta = ssl__add_param(m, bn_name, ".bias", SSL_PARAM_BN_BIAS, 1, cout, 0, 0, 0);
        L->rmean = ssl__add_param(m, bn_name, ".running_mean", SSL_PARAM_BUFFER, 1, cout, 0, 0, 0);
        L->rvar = ssl__add_param(m, bn_name, ".running_var", SSL_PARAM_BUFFER, 1, cout, 0, 0, 0);
    }
    return m->nlayers++;
}

/* An MLP head: Linear-BN-ReLU per hidden width, then a Linear. */
static int ssl__add_mlp(ssl_model *m, const char *prefix, const char *spec, int in, int last_bias, int *first,
                        int *count, int *out) {
    int widths[64];
    int nw = ssl_mlp_spec_parse(spec, widths, 64);
    if (nw < 0) return ssl__fail_ctx("%s", prefix);
    *first = m->nlayers;
    *count = nw;
    for (int i = 0; i < nw; i++) {
        char lin[64], bn[64];
        snprintf(lin, sizeof lin, "%s.%d", prefix, 3 * i);
        snprintf(bn, sizeof bn, "%s.%d", prefix, 3 * i + 1);
        int last = i == nw - 1;
        ssl__add_layer(m, SSL_LAYER_LINEAR, lin, last ? "" : bn, in, widths[i], 1, 1, 0, last ? last_bias : 1, !last);
        in = widths[i];
    }
    *out = in;
    return 0;
}

/* torchvision's init, from Philox streams keyed by the tensor's index. */
static void ssl__model_init_weights(ssl_model *m) {
    ssl_param_table *t = &m->params;
    for (int i = 0; i < t->n; i++) {
        ssl_param *p = &t->p[i];
        float *v = ssl_param_data(t, i);
        ssl_rng r = ssl_rng_make(m->c.seed, 0, (uint32_t)i, 0, SSL_RNG_INIT);
        const char *tail = strrchr(p->name, '.');
        if (p->kind == SSL_PARAM_WEIGHT && p->ndim == 4) {
            float std = sqrtf(2.0f / (float)(p->shape[0] * p->shape[1] * p->shape[2])); /* fan_out */
            for (int64_t k = 0; k < p->numel; k++) v[k] = std * ssl_rng_normal(&r);
        } else if (p->kind == SSL_PARAM_WEIGHT || p->kind == SSL_PARAM_BIAS) {
            /* the bias draws with the fan-in of the weight registered just before it */
            int64_t fan_in = p->kind == SSL_PARAM_WEIGHT ? p->shape[1] : t->p[i - 1].shape[1];
            float bound = 1.0f / sqrtf((float)fan_in);
            for (int64_t k = 0; k < p->numel; k++) v[k] = ssl_rng_range(&r, -bound, bound);
        } else {
            float val = (p->kind == SSL_PARAM_BN_WEIGHT || !strcmp(tail, ".running_var")) ? 1.0f : 0.0f;
            for (int64_t k = 0; k < p->numel; k++) v[k] = val;
        }
    }
    if (m->c.zero_init_residual)
        for (int b = 0; b < m->nblocks; b++) {
            const ssl_layer *L = &m->layers[m->blocks[b].first + m->blocks[b].count - 1];
            memset(ssl_param_data(t, L->gamma), 0, sizeof(float) * (size_t)L->cout);
        }
}

SSLDEF int ssl_model_init(ssl_model *m, const ssl_model_config *c) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->keep_cols = -1;
    int bottleneck, nb[4];
    switch (c->depth) {
    case 18: bottleneck = 0, nb[0] = 2, nb[1] = 2, nb[2] = 2, nb[3] = 2; break;
    case 34: bottleneck = 0, nb[0] = 3, nb[1] = 4, nb[2] = 6, nb[3] = 3; break;
    case 50: bottleneck = 1, nb[0] = 3, nb[1] = 4, nb[2] = 6, nb[3] = 3; break;
    default: return ssl__fail("ResNet depth %d: expected 18, 34 or 50", c->depth);
    }
    if (!(c->width > 0 && c->width <= 64)) return ssl__fail("ResNet width multiplier %g: expected 0 < width <= 64", c->width);
    if (c->in_channels < 1) return ssl__fail("model input channels %d must be >= 1", c->in_channels);
    int base = (int)lround(64 * c->width), expansion = bottleneck ? 4 : 1;
    if (base < 1) base = 1;
    /* stem */
    if (c->cifar_stem)
        m->stem = ssl__add_layer(m, SSL_LAYER_CONV, "conv1", "bn1", c->in_channels, base, 3, 1, 1, 0, 1);
    else
        m->stem = ssl__add_layer(m, SSL_LAYER_CONV, "conv1", "bn1", c->in_channels, base, 7, 2, 3, 0, 1);
    m->maxpool = !c->cifar_stem;
    int inplanes = base;
    for (int s = 0; s < 4; s++) {
        int planes = base << s, stride = s == 0 ? 1 : 2;
        for (int j = 0; j < nb[s]; j++) {
            char p[32], a[80], b[80];
            int st = j == 0 ? stride : 1;
            m->blocks = (ssl_block *)ssl_realloc(m->blocks, sizeof(ssl_block) * (size_t)(m->nblocks + 1), "blocks");
            ssl_block *B = &m->blocks[m->nblocks++];
            B->first = m->nlayers;
            B->down = -1;
#define SSL__NAMES(i) (snprintf(a, sizeof a, "%s.conv%d", p, i), snprintf(b, sizeof b, "%s.bn%d", p, i))
            snprintf(p, sizeof p, "layer%d.%d", s + 1, j);
            if (bottleneck) { /* 1x1, 3x3 (stride: v1.5), 1x1 to 4x */
                SSL__NAMES(1); ssl__add_layer(m, SSL_LAYER_CONV, a, b, inplanes, planes, 1, 1, 0, 0, 1);
                SSL__NAMES(2); ssl__add_layer(m, SSL_LAYER_CONV, a, b, planes, planes, 3, st, 1, 0, 1);
                SSL__NAMES(3); ssl__add_layer(m, SSL_LAYER_CONV, a, b, planes, planes * 4, 1, 1, 0, 0, 0);
                B->count = 3;
            } else {
                SSL__NAMES(1); ssl__add_layer(m, SSL_LAYER_CONV, a, b, inplanes, planes, 3, st, 1, 0, 1);
                SSL__NAMES(2); ssl__add_layer(m, SSL_LAYER_CONV, a, b, planes, planes, 3, 1, 1, 0, 0);
                B->count = 2;
            }
#undef SSL__NAMES
            if (st != 1 || inplanes != planes * expansion) {
                snprintf(a, sizeof a, "%s.downsample.0", p);
                snprintf(b, sizeof b, "%s.downsample.1", p);
                B->down = ssl__add_layer(m, SSL_LAYER_CONV, a, b, inplanes, planes * expansion, 1, st, 0, 0, 0);
            }
            inplanes = planes * expansion;
        }
    }
    m->feat_dim = m->out_dim = inplanes;
    m->proj_first = m->pred_first = m->nlayers;
    if (ssl__add_mlp(m, "projector", c->projector, m->out_dim, 0, &m->proj_first, &m->proj_count, &m->out_dim) ||
        ssl__add_mlp(m, "predictor", c->predictor, m->out_dim, 1, &m->pred_first, &m->pred_count, &m->out_dim)) {
        ssl_model_free(m);
        return -1;
    }
    ssl_params_alloc(&m->params);
    ssl__model_init_weights(m);
    return 0;
}

SSLDEF void ssl_model_free(ssl_model *m) {
    ssl_params_free(&m->params);
    free(m->layers);
    free(m->blocks);
#ifdef SSL_CUDA
    if (m->dev) {
        ssl_cuda_free(m->act);
        ssl_cuda_free(m->grads);
        ssl_cuda_free(m->w16);
        ssl_cuda_buf_free(&m->scratch);
        memset(m, 0, sizeof *m);
        return;
    }
#endif
    free(m->act);
    free(m->grads);
    ssl_buf_free(&m->scratch);
    memset(m, 0, sizeof *m);
}

SSLDEF int ssl_model_to_device(ssl_model *m) {
    if (m->act) return ssl__fail("model: move it to the GPU before planning");
    if (ssl_params_to_device(&m->params)) return -1;
    m->dev = SSL_DEV_CUDA;
    return 0;
}

/* activation memory on the model's device */
static char *ssl__model_alloc(const ssl_model *m, size_t bytes, const char *what) {
#ifdef SSL_CUDA
    if (m->dev) return (char *)ssl_cuda_malloc(bytes, what);
#endif
    return (char *)ssl_malloc(bytes, what);
}
static void ssl__model_release(const ssl_model *m, char *p) {
#ifdef SSL_CUDA
    if (m->dev) { ssl_cuda_free(p); return; }
#endif
    free(p);
}

SSLDEF int64_t ssl_model_num_weights(const ssl_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++)
        if (m->params.p[i].kind != SSL_PARAM_BUFFER) n += m->params.p[i].numel;
    return n;
}

/* n elements of `dtype` at byte offset *off (aligned to 256 bytes) */
static int64_t ssl__plan_take(int64_t *off, int64_t n, int dtype) {
    int64_t o = *off;
    *off += ((int64_t)ssl_dtype_size(dtype) * n + 255) / 256 * 256;
    return o;
}

/* Sizes and offsets of one layer whose input (offset x, of type xdtype) is
   h x w; its outputs of type dtype. maxact: the largest activation, bytes. */
static void ssl__plan_layer(ssl_model *m, ssl_layer *L, int64_t x, int xdtype, int dtype, int64_t h, int64_t w,
                            int64_t *off, int64_t *maxact) {
    L->x = x, L->h = h, L->wd = w;
    L->xdtype = xdtype, L->dtype = dtype;
    L->oh = L->type == SSL_LAYER_CONV ? ssl_conv_out_size(h, L->k, L->stride, L->pad) : 1;
    L->ow = L->type == SSL_LAYER_CONV ? ssl_conv_out_size(w, L->k, L->stride, L->pad) : 1;
    int64_t n = (int64_t)m->n * L->oh * L->ow * L->cout;
    L->y = ssl__plan_take(off, n, dtype);
    if (L->bn) {
        L->ybn = ssl__plan_take(off, n, dtype);
        L->mean = ssl__plan_take(off, L->cout, SSL_F32);
        L->invstd = ssl__plan_take(off, L->cout, SSL_F32);
    } else {
        L->ybn = L->y;
    }
    int64_t bytes = n * (int64_t)ssl_dtype_size(dtype);
    if (bytes > *maxact) *maxact = bytes;
    L->mask = L->cols = -1;
}
/* the bytes of a layer's im2col matrix (0: a conv that is one GEMM on x, or linear) */
static int64_t ssl__layer_cols_bytes(const ssl_model *m, const ssl_layer *L) {
    if (L->type != SSL_LAYER_CONV || (L->k == 1 && L->stride == 1 && L->pad == 0 && L->xdtype == L->dtype)) return 0;
    return ((int64_t)m->n * L->oh * L->ow * L->k * L->k * L->cin * (int64_t)ssl_dtype_size(L->dtype) + 255) / 256 * 256;
}
/* whether a plan of `slots` x `slot` bytes (+ cols per slot if kept) and
   `grads` bytes of gradient buffers keeps the columns (see keep_cols) */
static int ssl__plan_keeps_cols(const ssl_model *m, int64_t slot, int64_t cols, int slots, int64_t grads) {
    if (m->forward_only || !cols) return 0; /* no backward to read them */
    if (m->keep_cols >= 0) return m->keep_cols != 0;
#ifdef SSL_CUDA
    if (m->dev == SSL_DEV_CUDA && !strcmp(ssl_cuda_conv(), "gemm")) { /* cuDNN's convolutions have no columns */
        size_t fr = 0, total = 0;
        ssl_cuda_mem_info(&fr, &total);
        double have = (double)fr + (double)m->act_cap + (double)m->grads_cap; /* ours is given back to re-plan */
        return (double)(slot + cols) * slots + (double)grads <= 0.75 * have;
    }
#endif
    (void)slot, (void)slots, (void)grads;
    return 0; /* the CPU: its im2col is memcpy beside the GEMMs' arithmetic, and memory is the scarcer */
}
/* a bit mask for the layer's ReLU'd output (GPU plans: see no_masks) */
static void ssl__plan_mask(ssl_model *m, ssl_layer *L, int64_t *off) {
    if (m->dev == SSL_DEV_CUDA && L->bn && !m->no_masks)
        L->mask = ssl__plan_take(off, ((int64_t)m->n * L->oh * L->ow * L->cout + 7) / 8, SSL_U8);
}
/* bf16 storage of the backbone: on the GPU at bf16 precision */
static int ssl__model_act_dtype(const ssl_model *m) {
#ifdef SSL_CUDA
    if (m->dev == SSL_DEV_CUDA && ssl_cuda_precision()) return SSL_BF16;
#endif
    (void)m;
    return SSL_F32;
}

SSLDEF int ssl_model_plan(ssl_model *m, int n, int h, int w, int slots) {
    if (n < 1 || h < 1 || w < 1 || slots < 1 || slots > SSL_MODEL_MAX_SLOTS)
        return ssl__fail("model plan: batch %d, %dx%d, %d slots (1..%d) is not a valid size", n, h, w, slots,
                         SSL_MODEL_MAX_SLOTS);
    int dt = ssl__model_act_dtype(m);
    if (m->act && m->n == n && m->h == h && m->w == w && m->slots == slots && m->act_dtype == dt &&
        m->planned_masks == !m->no_masks && m->planned_grads == !m->forward_only &&
        (m->keep_cols < 0 || m->planned_cols == (m->keep_cols != 0 && !m->forward_only && m->cols_bytes != 0)))
        return 0;
    m->n = n, m->h = h, m->w = w, m->slots = slots, m->act_dtype = dt, m->planned_masks = !m->no_masks;
    m->planned_grads = !m->forward_only;
    m->plans++;
    int64_t off = 0, maxact = 0;
    ssl_layer *S = &m->layers[m->stem];
    ssl__plan_layer(m, S, -1, SSL_F32, dt, h, w, &off, &maxact);
    if (S->oh < 1 || S->ow < 1) return ssl__fail("model plan: input %dx%d is too small for the stem", h, w);
    ssl__plan_mask(m, S, &off);
    int64_t cur = S->ybn, ch = S->oh, cw = S->ow;
    if (m->maxpool) {
        m->pool_h = ssl_conv_out_size(ch, 3, 2, 1), m->pool_w = ssl_conv_out_size(cw, 3, 2, 1);
        int64_t pn = (int64_t)n * m->pool_h * m->pool_w * S->cout;
        m->pool = ssl__plan_take(&off, pn, dt);
        if (pn * (int64_t)ssl_dtype_size(dt) > maxact) maxact = pn * (int64_t)ssl_dtype_size(dt);
        cur = m->pool, ch = m->pool_h, cw = m->pool_w;
    }
    for (int b = 0; b < m->nblocks; b++) {
        const ssl_block *B = &m->blocks[b];
        int64_t in = cur, ih = ch, iw = cw;
        for (int j = 0; j < B->count; j++) {
            ssl_layer *L = &m->layers[B->first + j];
            ssl__plan_layer(m, L, cur, dt, dt, ch, cw, &off, &maxact);
            ssl__plan_mask(m, L, &off); /* every main-path output is ReLU'd (the last one after the add) */
            cur = L->ybn, ch = L->oh, cw = L->ow;
        }
        if (B->down >= 0) ssl__plan_layer(m, &m->layers[B->down], in, dt, dt, ih, iw, &off, &maxact);
        if (ch < 1 || cw < 1) return ssl__fail("model plan: input %dx%d is too small for this ResNet", h, w);
    }
    m->last_h = ch, m->last_w = cw, m->last_c = m->feat_dim;
    m->feat = ssl__plan_take(&off, (int64_t)n * m->feat_dim, SSL_F32);
    cur = m->feat;
    for (int i = m->proj_first; i < m->pred_first + m->pred_count; i++) {
        ssl__plan_layer(m, &m->layers[i], cur, SSL_F32, SSL_F32, 1, 1, &off, &maxact);
        cur = m->layers[i].ybn;
    }
    if (maxact < 4 * (int64_t)n * m->feat_dim) maxact = 4 * (int64_t)n * m->feat_dim;
    m->grad_bytes = (maxact + 255) / 256 * 256;
    /* the convolutions' columns, after the rest of the slot, when kept */
    int64_t cols = 0;
    for (int i = 0; i < m->nlayers; i++) cols += ssl__layer_cols_bytes(m, &m->layers[i]);
    m->cols_bytes = cols;
    m->planned_cols = ssl__plan_keeps_cols(m, off, cols, slots, m->forward_only ? 0 : 3 * m->grad_bytes);
    for (int i = 0; m->planned_cols && i < m->nlayers; i++) {
        ssl_layer *L = &m->layers[i];
        int64_t b = ssl__layer_cols_bytes(m, L);
        if (b) L->cols = off, off += b;
    }
    m->slot_bytes = off;
    size_t need = (size_t)(off * slots);
    if (need > m->act_cap) {
        ssl__model_release(m, m->act);
        m->act = ssl__model_alloc(m, need, "activations");
        m->act_cap = need;
        m->allocs++;
    }
#ifdef SSL_CUDA
    if (dt == SSL_BF16 && !m->w16) m->w16 = (ssl_bf16 *)ssl_cuda_malloc(sizeof(ssl_bf16) * (size_t)m->params.total, "bf16 weights");
#endif
    need = m->forward_only ? 0 : (size_t)(3 * m->grad_bytes);
    if (need > m->grads_cap) {
        ssl__model_release(m, m->grads);
        m->grads = ssl__model_alloc(m, need, "activation gradients");
        m->grads_cap = need;
    }
    for (int s = 0; s < SSL_MODEL_MAX_SLOTS; s++) m->input[s] = NULL;
    return 0;
}

static char *ssl__act_slot(const ssl_model *m, int slot) { return m->act + (int64_t)slot * m->slot_bytes; }
/* Tensors of the model live on its device (fp32 unless typed). */
static ssl_tensor ssl__mvec(const ssl_model *m, void *d, int64_t n) {
    return ssl_tensor_on(ssl_tensor_vec((float *)d, n), m->dev);
}
static ssl_tensor ssl__mmat(const ssl_model *m, void *d, int64_t r, int64_t c) {
    return ssl_tensor_on(ssl_tensor_mat((float *)d, r, c), m->dev);
}
static ssl_tensor ssl__mnhwc(const ssl_model *m, int dtype, void *d, int64_t n, int64_t h, int64_t w, int64_t c) {
    return ssl_tensor_as(ssl_tensor_on(ssl_tensor_nhwc((float *)d, n, h, w, c), m->dev), dtype);
}
static ssl_tensor ssl__pvec(const ssl_model *m, int i) {
    return i < 0 ? ssl_tensor_vec(NULL, 0) : ssl__mvec(m, ssl_param_data(&m->params, i), m->params.p[i].numel);
}
static ssl_tensor ssl__gvec(const ssl_model *m, int i) {
    return i < 0 ? ssl_tensor_vec(NULL, 0) : ssl__mvec(m, ssl_param_grad(&m->params, i), m->params.p[i].numel);
}
/* A layer's input, output (before BN) and weight as tensors. */
static ssl_tensor ssl__layer_x(const ssl_model *m, const ssl_layer *L, int slot, void *data) {
    if (!data) data = L->x < 0 ? (void *)m->input[slot] : ssl__act_slot(m, slot) + L->x;
    return L->type == SSL_LAYER_CONV ? ssl__mnhwc(m, L->xdtype, data, m->n, L->h, L->wd, L->cin)
                                     : ssl_tensor_as(ssl__mmat(m, data, m->n, L->cin), L->xdtype);
}
static ssl_tensor ssl__layer_y(const ssl_model *m, const ssl_layer *L, void *data) {
    return L->type == SSL_LAYER_CONV ? ssl__mnhwc(m, L->dtype, data, m->n, L->oh, L->ow, L->cout)
                                     : ssl_tensor_as(ssl__mmat(m, data, m->n, L->cout), L->dtype);
}
/* grad: the gradient; else the weight, as the bf16 copy for bf16 layers */
static ssl_tensor ssl__layer_w(const ssl_model *m, const ssl_layer *L, int grad) {
    float *d = grad ? ssl_param_grad(&m->params, L->w) : ssl_param_data(&m->params, L->w);
    if (L->type != SSL_LAYER_CONV) return ssl__mmat(m, d, L->cout, L->cin);
    if (grad || L->dtype != SSL_BF16) return ssl__mnhwc(m, SSL_F32, d, L->cout, L->k, L->k, L->cin);
    return ssl__mnhwc(m, SSL_BF16, m->w16 + m->params.p[L->w].offset, L->cout, L->k, L->k, L->cin);
}
static ssl_batchnorm ssl__layer_bn(const ssl_model *m, const ssl_layer *L) {
    ssl_batchnorm bn = ssl_batchnorm_default();
    bn.weight = ssl__pvec(m, L->gamma);
    bn.bias = ssl__pvec(m, L->beta);
    bn.running_mean = ssl__pvec(m, L->rmean);
    bn.running_var = ssl__pvec(m, L->rvar);
    bn.comm = m->comm;
    return bn;
}

/* the conv's kept im2col matrix in slot memory A (L->cols >= 0) */
static ssl_tensor ssl__layer_cols(const ssl_model *m, const ssl_layer *L, char *A) {
    int64_t rows = (int64_t)m->n * L->oh * L->ow, k = (int64_t)L->k * L->k * L->cin;
    return ssl_tensor_as(ssl__mmat(m, L->cols >= 0 ? A + L->cols : NULL, rows, k), L->dtype);
}
/* the layer's ReLU bit mask in slot memory A (L->mask >= 0) */
static ssl_tensor ssl__layer_mask(const ssl_model *m, const ssl_layer *L, char *A) {
    return ssl_tensor_as(ssl__mvec(m, A + L->mask, ((int64_t)m->n * L->oh * L->ow * L->cout + 7) / 8), SSL_U8);
}

/* conv or linear, then BN, then ReLU (in place on the BN output). With a
   residual (a block's last layer): BN, + residual, ReLU, fused in the BN's
   output pass. */
static int ssl__layer_forward_res(ssl_model *m, const ssl_layer *L, int slot, int training, const ssl_tensor *res);
static int ssl__layer_forward(ssl_model *m, const ssl_layer *L, int slot, int training) {
    return ssl__layer_forward_res(m, L, slot, training, NULL);
}
static int ssl__layer_forward_res(ssl_model *m, const ssl_layer *L, int slot, int training, const ssl_tensor *res) {
    char *A = ssl__act_slot(m, slot);
    ssl_tensor x = ssl__layer_x(m, L, slot, NULL), y = ssl__layer_y(m, L, A + L->y), w = ssl__layer_w(m, L, 0);
    ssl_tensor b = ssl__pvec(m, L->b);
    ssl_tensor cols = ssl__layer_cols(m, L, A);
    int r = L->type == SSL_LAYER_CONV
                ? ssl_conv2d_forward_cols(&x, &w, L->b >= 0 ? &b : NULL, L->stride, L->pad, &y, &m->scratch, L->cols >= 0 ? &cols : NULL)
                : ssl_linear_forward(&x, &w, L->b >= 0 ? &b : NULL, &y);
    if (r) return -1;
    ssl_tensor out = ssl__layer_y(m, L, A + L->ybn);
    if (L->bn) {
        ssl_batchnorm bn = ssl__layer_bn(m, L);
        ssl_tensor mean = ssl__mvec(m, A + L->mean, L->cout), invstd = ssl__mvec(m, A + L->invstd, L->cout);
        if (L->mask >= 0 && (L->relu || res)) {
            ssl_tensor mask = ssl__layer_mask(m, L, A);
            return ssl_batchnorm_forward_mask(&bn, training, &y, res, &out, &mean, &invstd, &mask);
        }
        return ssl_batchnorm_forward_act(&bn, training, &y, res, L->relu || res, &out, &mean, &invstd);
    }
    if (res && ssl_add(&out, res, &out)) return -1;
    if ((L->relu || res) && ssl_relu_forward(&out, &out)) return -1;
    return 0;
}

/* dy: gradient of the layer's output (its ReLU and BN backward may
   overwrite it); the BN's input gradient goes to tmp (may be dy); the
   conv/linear's input gradient to dx (NULL: skipped; never dy or tmp),
   added to what dx holds when acc (convolutions only). */
static int ssl__layer_backward_gate(ssl_model *m, const ssl_layer *L, int slot, char *dy, char *tmp, char *dx, int acc,
                                    const ssl_layer *R, char *dyr);
static int ssl__layer_backward(ssl_model *m, const ssl_layer *L, int slot, char *dy, char *tmp, char *dx) {
    return ssl__layer_backward_gate(m, L, slot, dy, tmp, dx, 0, NULL, NULL);
}
static int ssl__layer_backward_acc(ssl_model *m, const ssl_layer *L, int slot, char *dy, char *tmp, char *dx, int acc) {
    return ssl__layer_backward_gate(m, L, slot, dy, tmp, dx, acc, NULL, NULL);
}
/* R (a block's last layer, L->bn): dy goes through R's output ReLU rather
   than L's own, and dyr (NULL: not) receives it so, from the BN backward's
   input-gradient pass (the block's output gradient, which the identity
   shortcut takes too) */
static int ssl__layer_backward_gate(ssl_model *m, const ssl_layer *L, int slot, char *dy, char *tmp, char *dx, int acc,
                                    const ssl_layer *R, char *dyr) {
    char *A = ssl__act_slot(m, slot);
    int training = m->training[slot];
    ssl_tensor out = ssl__layer_y(m, L, A + L->ybn), y = ssl__layer_y(m, L, A + L->y);
    ssl_tensor tdy = ssl__layer_y(m, L, dy), ttmp = ssl__layer_y(m, L, tmp);
    if (R && !L->bn) return ssl__fail("model backward: a block's output ReLU fused into a layer without batch norm");
    if (L->bn) { /* the ReLU's mask applied as the BN backward reads dy */
        ssl_batchnorm bn = ssl__layer_bn(m, L);
        ssl_tensor mean = ssl__mvec(m, A + L->mean, L->cout), invstd = ssl__mvec(m, A + L->invstd, L->cout);
        ssl_tensor dg = ssl__gvec(m, L->gamma), db = ssl__gvec(m, L->beta), tdyr = ssl__layer_y(m, L, dyr);
        const ssl_layer *M = R ? R : L->relu ? L : NULL; /* whose ReLU */
        ssl_tensor relu_y = !M ? out : M->mask >= 0 ? ssl__layer_mask(m, M, A) : ssl__layer_y(m, M, A + M->ybn); /* the bits, or the output */
        if (ssl_batchnorm_backward_ex(&bn, training, &y, M ? &relu_y : NULL, &tdy, &mean, &invstd, &ttmp, &dg, &db,
                                      dyr ? &tdyr : NULL))
            return -1;
    } else {
        if (L->relu && ssl_relu_backward(&out, &tdy, &tdy)) return -1;
        ttmp = tdy;
    }
    ssl_tensor x = ssl__layer_x(m, L, slot, NULL), w = ssl__layer_w(m, L, 0), dw = ssl__layer_w(m, L, 1);
    ssl_tensor bgrad = ssl__gvec(m, L->b), tdx = ssl__layer_x(m, L, slot, dx);
    if (acc && L->type != SSL_LAYER_CONV) return ssl__fail("model backward: accumulating input gradient of a linear layer");
    ssl_tensor cols = ssl__layer_cols(m, L, A);
    return L->type == SSL_LAYER_CONV
               ? ssl_conv2d_backward_cols(&x, &w, &ttmp, L->stride, L->pad, dx ? &tdx : NULL, acc, &dw,
                                          L->b >= 0 ? &bgrad : NULL, &m->scratch, L->cols >= 0 ? &cols : NULL)
               : ssl_linear_backward(&x, &w, &ttmp, dx ? &tdx : NULL, &dw, L->b >= 0 ? &bgrad : NULL);
}

SSLDEF int ssl_model_forward(ssl_model *m, int slot, const float *x, int training) {
    if (!m->act || slot < 0 || slot >= m->slots) return ssl__fail("model forward: slot %d not planned", slot);
    m->input[slot] = x;
    m->training[slot] = training;
    char *A = ssl__act_slot(m, slot);
    if (m->act_dtype == SSL_BF16) { /* the weights as this forward (and its backward) use them */
        ssl_tensor w32 = ssl__mvec(m, m->params.data, m->params.total), w16 = ssl_tensor_as(ssl__mvec(m, m->w16, m->params.total), SSL_BF16);
        if (ssl_copy(&w16, &w32)) return -1;
    }
    const ssl_layer *S = &m->layers[m->stem];
    if (ssl__layer_forward(m, S, slot, training)) return -1;
    ssl_tensor last = ssl__layer_y(m, S, A + S->ybn);
    if (m->maxpool) {
        ssl_tensor pooled = ssl__mnhwc(m, S->dtype, A + m->pool, m->n, m->pool_h, m->pool_w, S->cout);
        if (ssl_maxpool2d_forward(&last, 3, 2, 1, &pooled)) return -1;
    }
    for (int b = 0; b < m->nblocks; b++) {
        const ssl_block *B = &m->blocks[b];
        /* the shortcut first, so that the last layer's BN output pass can
           add it and apply the block's ReLU: out = relu(BN(main) + shortcut) */
        ssl_tensor sc;
        if (B->down >= 0) {
            const ssl_layer *D = &m->layers[B->down];
            if (ssl__layer_forward(m, D, slot, training)) return -1;
            sc = ssl__layer_y(m, D, A + D->ybn);
        } else {
            sc = ssl__layer_x(m, &m->layers[B->first], slot, NULL);
        }
        for (int j = 0; j < B->count - 1; j++)
            if (ssl__layer_forward(m, &m->layers[B->first + j], slot, training)) return -1;
        const ssl_layer *L = &m->layers[B->first + B->count - 1];
        if (ssl__layer_forward_res(m, L, slot, training, &sc)) return -1;
        last = ssl__layer_y(m, L, A + L->ybn);
    }
    ssl_tensor feat = ssl__mmat(m, A + m->feat, m->n, m->feat_dim);
    if (ssl_avgpool_forward(&last, &feat)) return -1;
    for (int i = m->proj_first; i < m->pred_first + m->pred_count; i++)
        if (ssl__layer_forward(m, &m->layers[i], slot, training)) return -1;
    return 0;
}

SSLDEF ssl_tensor ssl_model_features(const ssl_model *m, int slot) {
    return ssl__mmat(m, ssl__act_slot(m, slot) + m->feat, m->n, m->feat_dim);
}
SSLDEF ssl_tensor ssl_model_output(const ssl_model *m, int slot) {
    int last = m->pred_first + m->pred_count - 1;
    if (last < m->proj_first) return ssl_model_features(m, slot);
    const ssl_layer *L = &m->layers[last];
    return ssl__mmat(m, ssl__act_slot(m, slot) + L->ybn, m->n, L->cout);
}
SSLDEF ssl_tensor ssl_model_projection(const ssl_model *m, int slot) {
    if (!m->proj_count) return ssl_model_features(m, slot);
    const ssl_layer *L = &m->layers[m->proj_first + m->proj_count - 1];
    return ssl__mmat(m, ssl__act_slot(m, slot) + L->ybn, m->n, L->cout);
}

SSLDEF int ssl_model_backward(ssl_model *m, int slot, const ssl_tensor *dout) {
    if (!m->act || slot < 0 || slot >= m->slots || !m->input[slot])
        return ssl__fail("model backward: slot %d has no forward", slot);
    if (!m->training[slot]) return ssl__fail("model backward: slot %d was an evaluation forward", slot);
    if (m->forward_only) return ssl__fail("model backward: the model is forward-only (planned without gradient buffers)");
    if (ssl_tensor_numel(dout) != (int64_t)m->n * m->out_dim)
        return ssl__fail("model backward: gradient has %lld values, the output %lld", (long long)ssl_tensor_numel(dout),
                         (long long)m->n * m->out_dim);
    char *A = ssl__act_slot(m, slot), *G[3];
    for (int i = 0; i < 3; i++) G[i] = m->grads + i * m->grad_bytes;
    /* a: the gradient of the current tensor; the other two are free */
    int a = 0;
    ssl_tensor g0 = ssl__mmat(m, G[a], m->n, m->out_dim), src = *dout;
    if (src.device != m->dev) return ssl__fail("model backward: the gradient is not on the model's device");
    if (ssl_copy(&g0, &src)) return -1;
    for (int i = m->pred_first + m->pred_count - 1; i >= m->proj_first; i--) {
        int o = (a + 1) % 3;
        if (ssl__layer_backward(m, &m->layers[i], slot, G[a], G[a], G[o])) return -1;
        a = o;
    }
    /* global average pool */
    {
        int o = (a + 1) % 3;
        ssl_tensor df = ssl__mmat(m, G[a], m->n, m->feat_dim),
                   dl = ssl__mnhwc(m, m->act_dtype, G[o], m->n, m->last_h, m->last_w, m->last_c);
        if (ssl_avgpool_backward(&df, &dl)) return -1;
        a = o;
    }
    for (int b = m->nblocks - 1; b >= 0; b--) {
        const ssl_block *B = &m->blocks[b];
        const ssl_layer *L = &m->layers[B->first + B->count - 1];
        int p = (a + 1) % 3, q = (a + 2) % 3;
        /* G[a]: the block output's gradient. Its ReLU's mask is applied by
           the batch-norm backwards that read it (L's, and the projection's),
           not by a pass of its own; with an identity shortcut L's stores
           the masked gradient back into G[a], which the shortcut passes on.
           The shortcut's gradient goes to a buffer T first, and the main
           path's first layer adds its input gradient onto T (beta 1 /
           col2im onto T), so the block input's gradient needs no add pass.
           Identity shortcut: T is G[a] itself, and the main path works in
           G[p] and G[q]. Projection: its backward puts its input gradient
           in T = G[q]; the main path then works in G[a] and G[p]. */
        const ssl_layer *D = B->down >= 0 ? &m->layers[B->down] : NULL;
        const ssl_layer *R = L->bn && (!D || D->bn) ? L : NULL; /* the output ReLU in the batch norms' passes */
        if (!R) {
            ssl_tensor out = L->mask >= 0 ? ssl__layer_mask(m, L, A) : ssl__layer_y(m, L, A + L->ybn), d = ssl__layer_y(m, L, G[a]);
            if (ssl_relu_backward(&out, &d, &d)) return -1;
        }
        int T, cur, other;
        if (D) {
            if (ssl__layer_backward_gate(m, D, slot, G[a], G[p], G[q], 0, R, NULL)) return -1;
            T = q;
            if (ssl__layer_backward_gate(m, L, slot, G[a], G[a], G[p], 0, R, NULL)) return -1;
            cur = p, other = a;
        } else {
            T = a;
            if (ssl__layer_backward_gate(m, L, slot, G[a], G[q], G[p], 0, R, R ? G[a] : NULL)) return -1;
            cur = p, other = q;
        }
        for (int j = B->count - 2; j >= 0; j--) {
            int last = j == 0;
            if (ssl__layer_backward_acc(m, &m->layers[B->first + j], slot, G[cur], G[cur], last ? G[T] : G[other], last))
                return -1;
            int t = cur; cur = other; other = t;
        }
        a = T;
    }
    const ssl_layer *S = &m->layers[m->stem];
    if (m->maxpool) {
        int o = (a + 1) % 3;
        ssl_tensor x = ssl__layer_y(m, S, A + S->ybn), dx = ssl__layer_y(m, S, G[o]);
        ssl_tensor dy = ssl__mnhwc(m, S->dtype, G[a], m->n, m->pool_h, m->pool_w, S->cout);
        if (ssl_maxpool2d_backward(&x, &dy, 3, 2, 1, &dx)) return -1;
        a = o;
    }
    return ssl__layer_backward(m, S, slot, G[a], G[a], NULL);
}

SSLDEF void ssl_params_to_torch(const ssl_param_table *t, int i, const float *src, float *dst) {
    const ssl_param *p = &t->p[i];
    if (!src) src = ssl_params_host(t) + p->offset; /* never device memory */
    if (p->kind == SSL_PARAM_WEIGHT && p->ndim == 4)
        ssl_conv_weight_to_torch(src, dst, (int)p->shape[0], (int)p->shape[3], (int)p->shape[1], (int)p->shape[2]);
    else
        memcpy(dst, src, sizeof(float) * (size_t)p->numel);
}

SSLDEF void ssl_params_from_torch(const ssl_param_table *t, int i, const float *src, float *dst) {
    const ssl_param *p = &t->p[i];
    if (p->kind == SSL_PARAM_WEIGHT && p->ndim == 4)
        ssl_conv_weight_from_torch(src, dst, (int)p->shape[0], (int)p->shape[3], (int)p->shape[1], (int)p->shape[2]);
    else
        memcpy(dst, src, sizeof(float) * (size_t)p->numel);
}

/* ---- 9. Losses ------------------------------------------------------------
   Each loss: check the embeddings and the backend, carve its scratch, then
   the paper's equations one primitive per line, forward then backward.
   Once the inputs have passed the checks no primitive inside can fail
   (shapes agree by construction, and CUDA failures abort), so the bodies
   do not test return codes: the equations stay readable. A new term with
   new shapes should be checked up front in the same way. */

/* z1, z2 (and the gradients asked for) all [N, D], N >= min_rows. */
static int ssl__loss_check(const char *op, const ssl_tensor *z1, const ssl_tensor *z2, const ssl_tensor *dz1,
                           const ssl_tensor *dz2, int64_t min_rows, int64_t *n, int64_t *d) {
    if (z1->ndim != 2) return ssl__bad_shapes(op, "embeddings must be [N, D]", "z1", z1, NULL, NULL);
    if (ssl__same_shape(op, "z1", z1, "z2", z2) || (dz1 && ssl__same_shape(op, "z1", z1, "dz1", dz1)) ||
        (dz2 && ssl__same_shape(op, "z2", z2, "dz2", dz2)))
        return -1;
    if (z1->dim[0] < min_rows) return ssl__bad_shapes(op, min_rows > 1 ? "needs at least 2 rows" : "empty batch", "z1", z1, NULL, NULL);
    *n = z1->dim[0];
    *d = z1->dim[1];
    int dev = SSL__DEVICE(op, z1, z2, dz1, dz2);
#ifndef SSL_CUDA
    if (dev == SSL_DEV_CUDA) return ssl__no_cuda(op);
#endif
    return dev;
}

/* A [rows, cols] matrix carved from *mem on device dev. */
static ssl_tensor ssl__carve(float **mem, int dev, int64_t rows, int64_t cols) {
    ssl_tensor t = ssl_tensor_on(ssl_tensor_mat(*mem, rows, cols), dev);
    *mem += rows * cols;
    return t;
}

SSLDEF int ssl_simclr_loss(const ssl_tensor *z1, const ssl_tensor *z2, float tau, float *loss, ssl_tensor *dz1,
                           ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check(__func__, z1, z2, dz1, dz2, 1, &n, &d);
    if (dev < 0) return -1;
    if (!(tau > 0.0f)) return ssl__fail("%s: temperature must be > 0, got %g", __func__, tau);
    int64_t m = 2 * n;
    float *mem = ssl__scratch(scratch, dev, (size_t)(2 * m * d + m + 2 * m * m));
    ssl_tensor z = ssl__carve(&mem, dev, m, d), norm = ssl__carve(&mem, dev, m, 1), s = ssl__carve(&mem, dev, m, m),
               ds = ssl__carve(&mem, dev, m, m), dz = ssl__carve(&mem, dev, m, d);
    ssl_tensor z_1 = ssl_tensor_row_slice(&z, 0, n), z_2 = ssl_tensor_row_slice(&z, n, n);
    int32_t *positive = (int32_t *)ssl_malloc(sizeof(int32_t) * (size_t)m, "SimCLR targets");
    for (int64_t i = 0; i < m; i++) positive[i] = (int32_t)((i + n) % m); /* the other view of the same image */

    /* z = normalize(cat(z1, z2)) */
    ssl_copy(&z_1, z1);
    ssl_copy(&z_2, z2);
    ssl_l2_normalize_rows(&z, &z, &norm);
    /* s = z z^T / tau, each row's similarity with itself masked out */
    ssl_matmul(0, 1, 1.0f / tau, &z, &z, 0.0f, &s);
    ssl_fill_diagonal(&s, -INFINITY);
    /* loss = mean over the 2N rows of cross_entropy(s_i, positive(i)) */
    ssl_fill(&ds, 0.0f);
    ssl_softmax_xent_rows(&s, positive, 1.0f / (float)m, loss, &ds);
    free(positive);
    if (!dz1 && !dz2) return 0;

    /* backward: s = z z^T / tau  =>  dz = (ds + ds^T) z / tau */
    ssl_matmul(0, 0, 1.0f / tau, &ds, &z, 0.0f, &dz);
    ssl_matmul(1, 0, 1.0f / tau, &ds, &z, 1.0f, &dz);
    /* through the normalization, each view's rows into its own gradient */
    for (int v = 0; v < 2; v++) {
        ssl_tensor *dzv = v ? dz2 : dz1;
        if (!dzv) continue;
        ssl_tensor zv = ssl_tensor_row_slice(&z, v * n, n), nv = ssl_tensor_row_slice(&norm, v * n, n),
                   dzn = ssl_tensor_row_slice(&dz, v * n, n);
        ssl_fill(dzv, 0.0f);
        ssl_l2_normalize_rows_backward(&zv, &nv, &dzn, dzv);
    }
    return 0;
}

/* Instance-SimCLR's rows are independent of each other (each against its
   own positive and its own patch), so over the ranks each takes its rows
   and the mean is over the global batch's rows_all = 2N: that sum over
   the ranks is the loss, and each rank's gradient is its rows'. */
static int ssl__simclr_patch(const ssl_tensor *z1, const ssl_tensor *z2, const ssl_tensor *zp, float tau, int64_t rows_all,
                             float *loss, ssl_tensor *dz1, ssl_tensor *dz2, ssl_tensor *dzp, ssl_buf *scratch);
SSLDEF int ssl_simclr_patch_loss(const ssl_tensor *z1, const ssl_tensor *z2, const ssl_tensor *zp, float tau, float *loss,
                                 ssl_tensor *dz1, ssl_tensor *dz2, ssl_tensor *dzp, ssl_buf *scratch) {
    return ssl__simclr_patch(z1, z2, zp, tau, 2 * (z1->ndim == 2 ? z1->dim[0] : 0), loss, dz1, dz2, dzp, scratch);
}
static int ssl__simclr_patch(const ssl_tensor *z1, const ssl_tensor *z2, const ssl_tensor *zp, float tau, int64_t rows_all,
                             float *loss, ssl_tensor *dz1, ssl_tensor *dz2, ssl_tensor *dzp, ssl_buf *scratch) {
    const char *op = "ssl_simclr_patch_loss";
    int64_t n, d;
    int dev = ssl__loss_check(op, z1, z2, dz1, dz2, 1, &n, &d);
    if (dev < 0) return -1;
    if (ssl__same_shape(op, "z1", z1, "zp", zp) || (dzp && ssl__same_shape(op, "zp", zp, "dzp", dzp)) ||
        SSL__DEVICE(op, z1, zp, dzp) < 0)
        return -1;
    if (!(tau > 0.0f)) return ssl__fail("%s: temperature must be > 0, got %g", op, tau);
    /* a = [z1; z2] normalized (the 2N anchors), b = [z2; z1; zp; zp] (the
       candidates: row r's positive is b_r, its negative b_{2N+r}), so the
       two entries each row keeps of a b^T lie on two diagonals of its
       4N-wide rows: a mask of -inf with those two diagonals zeroed, made by
       fill_diagonal on [4N, 4N] views of a buffer padded to hold them */
    float *mem = ssl__scratch(scratch, dev, (size_t)(2 * (6 * n * d) + 3 * n + 16 * n * n + 2 * n + 2 * (8 * n * n)));
    ssl_tensor a = ssl__carve(&mem, dev, 2 * n, d), b = ssl__carve(&mem, dev, 4 * n, d), da = ssl__carve(&mem, dev, 2 * n, d),
               db = ssl__carve(&mem, dev, 4 * n, d), norm = ssl__carve(&mem, dev, 3 * n, 1),
               mask = ssl__carve(&mem, dev, 4 * n, 4 * n), pad = ssl__carve(&mem, dev, 2 * n, 1),
               s = ssl__carve(&mem, dev, 2 * n, 4 * n), ds = ssl__carve(&mem, dev, 2 * n, 4 * n);
    (void)pad;
    ssl_tensor a1 = ssl_tensor_row_slice(&a, 0, n), a2 = ssl_tensor_row_slice(&a, n, n), bp = ssl_tensor_row_slice(&b, 2 * n, n);
    ssl_tensor n1 = ssl_tensor_row_slice(&norm, 0, n), n2 = ssl_tensor_row_slice(&norm, n, n),
               np_ = ssl_tensor_row_slice(&norm, 2 * n, n);
    int32_t *positive = (int32_t *)ssl_malloc(sizeof(int32_t) * (size_t)(2 * n), "Instance-SimCLR targets");
    for (int64_t i = 0; i < 2 * n; i++) positive[i] = (int32_t)i;

    /* the three views normalized; b's copies */
    ssl_l2_normalize_rows(z1, &a1, &n1);
    ssl_l2_normalize_rows(z2, &a2, &n2);
    ssl_l2_normalize_rows(zp, &bp, &np_);
    ssl_tensor b0 = ssl_tensor_row_slice(&b, 0, n), b1 = ssl_tensor_row_slice(&b, n, n), b3 = ssl_tensor_row_slice(&b, 3 * n, n);
    ssl_copy(&b0, &a2);
    ssl_copy(&b1, &a1);
    ssl_copy(&b3, &bp);
    /* the mask: 0 at (r, r) and (r, 2N + r), -inf elsewhere */
    ssl_tensor m = ssl_tensor_row_slice(&mask, 0, 2 * n), shifted = ssl_tensor_on(ssl_tensor_mat((float *)mask.data + 2 * n, 4 * n, 4 * n), dev);
    ssl_fill(&m, -INFINITY);
    ssl_fill_diagonal(&mask, 0.0f);
    ssl_fill_diagonal(&shifted, 0.0f); /* its rows past 2N fall in the padding */
    /* s = a b^T / tau, masked; loss = mean over the 2N rows of cross_entropy(s_r, r) */
    ssl_matmul(0, 1, 1.0f / tau, &a, &b, 0.0f, &s);
    ssl_axpy(1.0f, &m, &s);
    ssl_fill(&ds, 0.0f);
    ssl_softmax_xent_rows(&s, positive, 1.0f / (float)rows_all, loss, &ds);
    free(positive);
    if (!dz1 && !dz2 && !dzp) return 0;

    /* backward: da = ds b / tau, db = ds^T a / tau; each view's rows summed */
    ssl_matmul(0, 0, 1.0f / tau, &ds, &b, 0.0f, &da);
    ssl_matmul(1, 0, 1.0f / tau, &ds, &a, 0.0f, &db);
    ssl_tensor da1 = ssl_tensor_row_slice(&da, 0, n), da2 = ssl_tensor_row_slice(&da, n, n);
    ssl_tensor db0 = ssl_tensor_row_slice(&db, 0, n), db1 = ssl_tensor_row_slice(&db, n, n), db2 = ssl_tensor_row_slice(&db, 2 * n, n),
               db3 = ssl_tensor_row_slice(&db, 3 * n, n);
    ssl_axpy(1.0f, &db1, &da1);
    ssl_axpy(1.0f, &db0, &da2);
    ssl_axpy(1.0f, &db3, &db2);
    /* through the normalizations */
    if (dz1) ssl_fill(dz1, 0.0f), ssl_l2_normalize_rows_backward(&a1, &n1, &da1, dz1);
    if (dz2) ssl_fill(dz2, 0.0f), ssl_l2_normalize_rows_backward(&a2, &n2, &da2, dz2);
    if (dzp) ssl_fill(dzp, 0.0f), ssl_l2_normalize_rows_backward(&bp, &np_, &db2, dzp);
    return 0;
}

SSLDEF int ssl_vicreg_loss(const ssl_tensor *z1, const ssl_tensor *z2, float sim_coef, float std_coef,
                           float cov_coef, float *loss, ssl_tensor *dz1, ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check(__func__, z1, z2, dz1, dz2, 2, &n, &d);
    if (dev < 0) return -1;
    float *mem = ssl__scratch(scratch, dev, (size_t)(2 * n * d + 2 * d * d));
    ssl_tensor x = ssl__carve(&mem, dev, n, d), dx = ssl__carve(&mem, dev, n, d), c = ssl__carve(&mem, dev, d, d),
               dc = ssl__carve(&mem, dev, d, d);
    const ssl_tensor *z[2] = {z1, z2};
    ssl_tensor *dz[2] = {dz1, dz2};
    for (int v = 0; v < 2; v++)
        if (dz[v]) ssl_fill(dz[v], 0.0f);

    /* invariance: sim * mse(z1, z2) */
    float repr;
    ssl_mse(z1, z2, sim_coef, &repr, dz1, dz2);
    double total = repr;
    for (int v = 0; v < 2; v++) {
        float std_term, cov_term;
        /* x = z - mean(z); c = x^T x / (N-1), whose diagonal is the unbiased variance */
        ssl_center_cols(z[v], &x);
        ssl_matmul(1, 0, 1.0f / (float)(n - 1), &x, &x, 0.0f, &c);
        ssl_fill(&dc, 0.0f);
        /* variance: std * mean_j relu(1 - sqrt(var_j + eps)) / 2 */
        ssl_diag_penalty(&c, SSL_DIAG_STD_HINGE, SSL_VICREG_EPS, std_coef / (2.0f * (float)d), &std_term, &dc);
        /* covariance: cov * sum_{i != j} c_ij^2 / D */
        ssl_offdiag_sumsq(&c, cov_coef / (float)d, &cov_term, &dc);
        total += (double)std_term + cov_term;
        if (!dz[v]) continue;

        /* backward: c = x^T x / (N-1)  =>  dx = x (dc + dc^T) / (N-1) = 2 x dc / (N-1), dc being symmetric */
        ssl_matmul(0, 0, 2.0f / (float)(n - 1), &x, &dc, 0.0f, &dx);
        /* through the centring: centre the gradient */
        ssl_center_cols(&dx, &dx);
        ssl_axpy(1.0f, &dx, dz[v]);
    }
    *loss = (float)total;
    return 0;
}

SSLDEF int ssl_barlow_loss(const ssl_tensor *z1, const ssl_tensor *z2, float lambd, float *loss, ssl_tensor *dz1,
                           ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check(__func__, z1, z2, dz1, dz2, 2, &n, &d);
    if (dev < 0) return -1;
    float *mem = ssl__scratch(scratch, dev, (size_t)(3 * n * d + 2 * d * d + 4 * d));
    ssl_tensor zn1 = ssl__carve(&mem, dev, n, d), zn2 = ssl__carve(&mem, dev, n, d), dzn = ssl__carve(&mem, dev, n, d),
               c = ssl__carve(&mem, dev, d, d), dc = ssl__carve(&mem, dev, d, d);
    ssl_tensor mean1 = ssl__carve(&mem, dev, 1, d), istd1 = ssl__carve(&mem, dev, 1, d),
               mean2 = ssl__carve(&mem, dev, 1, d), istd2 = ssl__carve(&mem, dev, 1, d);
    ssl_batchnorm bn = ssl_batchnorm_default(); /* affine=False, no running stats */

    /* each view standardized per dimension with batch statistics */
    ssl_batchnorm_forward(&bn, 1, z1, &zn1, &mean1, &istd1);
    ssl_batchnorm_forward(&bn, 1, z2, &zn2, &mean2, &istd2);
    /* c = zn1^T zn2 / N, the cross-correlation matrix */
    ssl_matmul(1, 0, 1.0f / (float)n, &zn1, &zn2, 0.0f, &c);
    /* loss = sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2 */
    float on_diag, off_diag;
    ssl_fill(&dc, 0.0f);
    ssl_diag_penalty(&c, SSL_DIAG_SQ_DEV_ONE, 0.0f, 1.0f, &on_diag, &dc);
    ssl_offdiag_sumsq(&c, lambd, &off_diag, &dc);
    *loss = on_diag + off_diag;

    /* backward: c = zn1^T zn2 / N  =>  dzn1 = zn2 dc^T / N, dzn2 = zn1 dc / N */
    if (dz1) {
        ssl_matmul(0, 1, 1.0f / (float)n, &zn2, &dc, 0.0f, &dzn);
        ssl_batchnorm_backward(&bn, 1, z1, &dzn, &mean1, &istd1, dz1, NULL, NULL);
    }
    if (dz2) {
        ssl_matmul(0, 0, 1.0f / (float)n, &zn1, &dc, 0.0f, &dzn);
        ssl_batchnorm_backward(&bn, 1, z2, &dzn, &mean2, &istd2, dz2, NULL, NULL);
    }
    return 0;
}

SSLDEF int ssl_byol_loss(const ssl_tensor *p1, const ssl_tensor *p2, const ssl_tensor *z1, const ssl_tensor *z2,
                         float *loss, ssl_tensor *dp1, ssl_tensor *dp2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check(__func__, p1, p2, dp1, dp2, 1, &n, &d);
    if (dev < 0 || ssl__same_shape(__func__, "p1", p1, "z1", z1) || ssl__same_shape(__func__, "p2", p2, "z2", z2) ||
        SSL__DEVICE(__func__, p1, z1, z2) < 0)
        return -1;
    float *mem = ssl__scratch(scratch, dev, (size_t)(3 * n * d + 2 * n));
    ssl_tensor pn = ssl__carve(&mem, dev, n, d), zn = ssl__carve(&mem, dev, n, d), dpn = ssl__carve(&mem, dev, n, d),
               pnorm = ssl__carve(&mem, dev, n, 1), znorm = ssl__carve(&mem, dev, n, 1);
    /* each prediction is compared with the target of the other view */
    const ssl_tensor *p[2] = {p1, p2}, *z[2] = {z2, z1};
    ssl_tensor *dp[2] = {dp1, dp2};
    double total = 0;
    for (int v = 0; v < 2; v++) {
        /* loss_fn(p, z) = 2 - 2 cos(p, z), averaged over the rows */
        float cos_sum;
        ssl_l2_normalize_rows(p[v], &pn, &pnorm);
        ssl_l2_normalize_rows(z[v], &zn, &znorm);
        ssl_dot(&pn, &zn, &cos_sum);
        total += 2.0 - 2.0 * cos_sum / (double)n;
        if (!dp[v]) continue;
        /* backward into p only: the target is detached */
        ssl_fill(&dpn, 0.0f);
        ssl_axpy(-2.0f / (float)n, &zn, &dpn);
        ssl_fill(dp[v], 0.0f);
        ssl_l2_normalize_rows_backward(&pn, &pnorm, &dpn, dp[v]);
    }
    *loss = (float)total;
    return 0;
}

/* ---- 10. Optimizers and schedules --------------------------------------- */

SSLDEF const char *ssl_optim_name(int kind) {
    return kind == SSL_OPTIM_SGD ? "sgd" : kind == SSL_OPTIM_LARS ? "lars" : kind == SSL_OPTIM_ADAMW ? "adamw" : "?";
}

SSLDEF void ssl_optim_init(ssl_optimizer *o, const ssl_optim_config *c, const ssl_param_table *t) {
#ifdef SSL_CUDA
    if (t->dev) {
        ssl_cuda_optim_init(o, c, t);
        return;
    }
#endif
    memset(o, 0, sizeof *o);
    o->c = *c;
    o->n = t->total;
    o->m = (float *)ssl_calloc(sizeof(float) * (size_t)(t->total + 1), "optimizer state");
    if (c->kind == SSL_OPTIM_ADAMW) o->v = (float *)ssl_calloc(sizeof(float) * (size_t)(t->total + 1), "optimizer state");
}

SSLDEF void ssl_optim_free(ssl_optimizer *o) {
#ifdef SSL_CUDA
    if (o->dev) {
        ssl_cuda_optim_free(o);
        return;
    }
#endif
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

SSLDEF int ssl_optim_step(ssl_optimizer *o, ssl_param_table *t, double lr) {
    if (o->dev != t->dev)
        return ssl__fail("ssl_optim_step: the optimizer's state is on the %s and the parameters on the %s (make the optimizer "
                         "after ssl_params_to_device)", o->dev ? "GPU" : "CPU", t->dev ? "GPU" : "CPU");
    if (o->n != t->total)
        return ssl__fail("ssl_optim_step: optimizer made for %lld floats, the table has %lld", (long long)o->n,
                         (long long)t->total);
#ifdef SSL_CUDA
    if (t->dev) return ssl_cuda_optim_step(o, t, lr);
#else
    if (t->dev) return ssl__no_cuda(__func__);
#endif
    const ssl_optim_config *c = &o->c;
    o->step++;
    ssl_adamw_scalars as = ssl_adamw_at(lr, c->weight_decay, c->beta1, c->beta2, c->eps, o->step);
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        if (p->kind == SSL_PARAM_BUFFER) continue;
        float *w = t->data + p->offset, *g = t->grad + p->offset, *m = o->m + p->offset;
        float wd = ssl_param_decays(p) ? (float)c->weight_decay : 0.0f;
        if (c->kind == SSL_OPTIM_SGD) {
            for (int64_t k = 0; k < p->numel; k++) ssl_sgd_update(&w[k], g[k], &m[k], (float)lr, (float)c->momentum, wd);
        } else if (c->kind == SSL_OPTIM_LARS) {
            float q = 1.0f;
            if (ssl_param_decays(p)) {
                double wsq = 0, usq = 0;
                for (int64_t k = 0; k < p->numel; k++) {
                    double d = (double)g[k] + (double)wd * w[k];
                    wsq += (double)w[k] * w[k], usq += d * d;
                }
                q = ssl_lars_trust(c->eta, wsq, usq);
            }
            for (int64_t k = 0; k < p->numel; k++) ssl_lars_update(&w[k], g[k], &m[k], (float)lr, (float)c->momentum, wd, q);
        } else {
            float *v = o->v + p->offset;
            for (int64_t k = 0; k < p->numel; k++) ssl_adamw_update(&w[k], g[k], &m[k], &v[k], wd != 0, as);
        }
    }
    return 0;
}

SSLDEF double ssl_lr_at(double base_lr, int64_t step, int64_t warmup, int64_t total, double end_ratio) {
    if (step < warmup) return base_lr * (double)(step + 1) / (double)warmup;
    if (total <= warmup) return base_lr;
    double t = (double)(step - warmup) / (double)(total - warmup);
    if (t > 1) t = 1;
    double end = base_lr * end_ratio;
    return end + (base_lr - end) * 0.5 * (1 + cos(3.141592653589793 * t));
}

/* ---- 11. Train step, checkpoints -------------------------------------- */

static const char *const ssl__method_names[] = {"simclr", "vicreg", "barlow", "byol"};
SSLDEF const char *ssl_method_name(int method) {
    return method >= 0 && method < 4 ? ssl__method_names[method] : "?";
}
SSLDEF int ssl_method_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, ssl__method_names[i])) return i;
    return ssl__fail("unknown method '%s' (valid: simclr, vicreg, barlow, byol)", name ? name : "(null)");
}

SSLDEF ssl_train_config ssl_train_config_default(int method) {
    ssl_train_config c;
    memset(&c, 0, sizeof c);
    c.method = method;
    c.tau = 0.15f;
    c.sim = SSL_VICREG_SIM, c.std = SSL_VICREG_STD, c.cov = SSL_VICREG_COV;
    c.lambd = SSL_BARLOW_LAMBD;
    c.ema_base = 0.996;
    c.optim.kind = SSL_OPTIM_LARS;
    c.optim.momentum = 0.9, c.optim.weight_decay = 1e-6, c.optim.eta = 0.001;
    c.optim.beta1 = 0.9, c.optim.beta2 = 0.999, c.optim.eps = 1e-8;
    c.lr = 0.3;
    c.total_steps = 1;
    c.end_ratio = 0.001;
    c.probe_optim.kind = SSL_OPTIM_ADAMW;
    c.probe_optim.beta1 = 0.9, c.probe_optim.beta2 = 0.999, c.probe_optim.eps = 1e-8;
    c.probe_lr = 1e-3;
    c.sync_phases = 1;
    return c;
}

/* Device memory for the trainer's own buffers (host memory on the CPU). */
static void *ssl__trainer_alloc(const ssl_trainer *t, size_t bytes, const char *what) {
#ifdef SSL_CUDA
    if (t->c.device == SSL_DEV_CUDA) return ssl_cuda_malloc(bytes, what);
#endif
    return ssl_malloc(bytes, what);
}
static void ssl__trainer_release(const ssl_trainer *t, void *p) {
#ifdef SSL_CUDA
    if (t->c.device == SSL_DEV_CUDA) { ssl_cuda_free(p); return; }
#endif
    free(p);
}
static void ssl__trainer_sync(const ssl_trainer *t) { /* for the step's time split */
#ifdef SSL_CUDA
    if (t->c.device == SSL_DEV_CUDA && t->c.sync_phases) ssl_cuda_sync();
#else
    (void)t;
#endif
}

/* Everything built on the host moves to the GPU: the models, the probe,
   the optimizers (their state starts at zero, as on the host). */
static int ssl__trainer_to_device(ssl_trainer *t) {
#ifdef SSL_CUDA
    if (ssl_model_to_device(&t->online) || (t->has_target && ssl_model_to_device(&t->target)))
        return ssl__fail_ctx("trainer");
    ssl_optim_free(&t->opt);
    ssl_optim_init(&t->opt, &t->c.optim, &t->online.params);
    if (t->probe.n) {
        if (ssl_params_to_device(&t->probe)) return -1;
        ssl_optim_free(&t->probe_opt);
        ssl_optim_init(&t->probe_opt, &t->c.probe_optim, &t->probe);
    }
    return 0;
#else
    (void)t;
    return ssl__fail("trainer: device=cuda needs a build with the CUDA backend (nvcc was not found when this was built)");
#endif
}

SSLDEF int ssl_trainer_init(ssl_trainer *t, const ssl_model_config *mc, const ssl_train_config *tc) {
    memset(t, 0, sizeof *t);
    if (tc->device != SSL_DEV_CPU && tc->device != SSL_DEV_CUDA) return ssl__fail("trainer: unknown device %d", tc->device);
    t->c = *tc;
    if (tc->method < 0 || tc->method > SSL_METHOD_BYOL) return ssl__fail("trainer: unknown method %d", tc->method);
    ssl_model_config oc = *mc;
    if (tc->method != SSL_METHOD_BYOL && oc.predictor[0])
        return ssl__fail("trainer: a predictor ('%s') is only used by byol, not %s", oc.predictor, ssl_method_name(tc->method));
    if (tc->method == SSL_METHOD_BYOL && !oc.predictor[0])
        return ssl__fail("trainer: byol needs a predictor spec (e.g. predictor=4096-256)");
    if (ssl_model_init(&t->online, &oc)) return -1;
    if (tc->method == SSL_METHOD_BYOL) {
        ssl_model_config tcfg = oc;
        tcfg.predictor[0] = 0;
        if (ssl_model_init(&t->target, &tcfg)) { ssl_model_free(&t->online); return -1; }
        t->target.forward_only = 1;
        /* the target starts as a copy: its table is the online table's prefix */
        for (int i = 0; i < t->target.params.n; i++) {
            SSL_ASSERT(!strcmp(t->target.params.p[i].name, t->online.params.p[i].name), "target/online tables differ");
            memcpy(ssl_param_data(&t->target.params, i), ssl_param_data(&t->online.params, i),
                   sizeof(float) * (size_t)t->online.params.p[i].numel);
        }
        t->has_target = 1;
        if (t->online.out_dim != t->target.out_dim) {
            ssl__fail("trainer: the predictor '%s' ends with %d, the projector '%s' with %d: they must match",
                      oc.predictor, t->online.out_dim, oc.projector, t->target.out_dim);
            ssl_trainer_free(t);
            return -1;
        }
    }
    ssl_optim_init(&t->opt, &tc->optim, &t->online.params);
    if (tc->probe_classes > 0) {
        int64_t ws[2] = {tc->probe_classes, t->online.feat_dim}, bs[1] = {tc->probe_classes};
        ssl_params_add(&t->probe, "probe.weight", SSL_PARAM_WEIGHT, 2, ws);
        ssl_params_add(&t->probe, "probe.bias", SSL_PARAM_BIAS, 1, bs);
        ssl_params_alloc(&t->probe);
        float bound = 1.0f / sqrtf((float)t->online.feat_dim);
        for (int i = 0; i < 2; i++) {
            ssl_rng r = ssl_rng_make(mc->seed, 1, (uint32_t)i, 0, SSL_RNG_INIT);
            float *v = ssl_param_data(&t->probe, i);
            for (int64_t k = 0; k < t->probe.p[i].numel; k++) v[k] = ssl_rng_range(&r, -bound, bound);
        }
        ssl_optim_init(&t->probe_opt, &tc->probe_optim, &t->probe);
    }
    if (tc->device == SSL_DEV_CUDA && ssl__trainer_to_device(t)) {
        ssl_trainer_free(t);
        return -1;
    }
    return 0;
}

SSLDEF void ssl_trainer_free(ssl_trainer *t) {
    ssl_model_free(&t->online);
    if (t->has_target) ssl_model_free(&t->target);
    ssl_optim_free(&t->opt);
    if (t->probe.n) {
        ssl_optim_free(&t->probe_opt);
        ssl_params_free(&t->probe);
    }
    ssl__trainer_release(t, t->dout[0]);
    ssl__trainer_release(t, t->dout[1]);
    ssl__trainer_release(t, t->dout[2]);
    ssl__trainer_release(t, t->logits);
    ssl__trainer_release(t, t->zt);
    free(t->targets);
#ifdef SSL_CUDA
    if (t->c.device == SSL_DEV_CUDA) ssl_cuda_buf_free(&t->scratch), ssl_cuda_buf_free(&t->gathered);
    else
#endif
        ssl_buf_free(&t->scratch), ssl_buf_free(&t->gathered);
    memset(t, 0, sizeof *t);
}

/* The online probe on detached features of both views: cross-entropy
   over the 2N rows of logits (both views' labels), top-1 before the update
   counted in the same pass, then its own optimizer step. */
static int ssl__probe_step(ssl_trainer *t, const uint32_t *labels, int n, ssl_step_stats *st) {
    int k = t->c.probe_classes;
    size_t need = sizeof(float) * (size_t)(2 * n * k);
    if (need > t->logits_cap) {
        ssl__trainer_release(t, t->logits);
        free(t->targets);
        t->logits = (float *)ssl__trainer_alloc(t, 2 * need, "probe logits");
        t->targets = (int32_t *)ssl_malloc(sizeof(int32_t) * (size_t)(2 * n), "probe targets");
        t->logits_cap = need;
    }
    int dev = t->c.device;
    t->dlogits = t->logits + 2 * n * k;
    for (int i = 0; i < n; i++) {
        if (labels[i] >= (uint32_t)k) return ssl__fail("probe: label %u of sample %d is not below probe classes %d", labels[i], i, k);
        t->targets[i] = t->targets[n + i] = (int32_t)labels[i];
    }
    ssl_tensor gall = ssl_tensor_on(ssl_tensor_vec(t->probe.grad, t->probe.total), dev);
    ssl_fill(&gall, 0.0f);
    ssl_tensor w = ssl_tensor_on(ssl_tensor_mat(ssl_param_data(&t->probe, 0), k, t->online.feat_dim), dev);
    ssl_tensor b = ssl_tensor_on(ssl_tensor_vec(ssl_param_data(&t->probe, 1), k), dev);
    ssl_tensor dw = ssl_tensor_on(ssl_tensor_mat(ssl_param_grad(&t->probe, 0), k, t->online.feat_dim), dev);
    ssl_tensor db = ssl_tensor_on(ssl_tensor_vec(ssl_param_grad(&t->probe, 1), k), dev);
    ssl_tensor lg = ssl_tensor_on(ssl_tensor_mat(t->logits, 2 * n, k), dev),
               dlg = ssl_tensor_on(ssl_tensor_mat(t->dlogits, 2 * n, k), dev);
    for (int v = 0; v < 2; v++) {
        ssl_tensor feat = ssl_model_features(&t->online, v), lv = ssl_tensor_row_slice(&lg, v * n, n);
        if (ssl_linear_forward(&feat, &w, &b, &lv)) return -1;
    }
    float loss;
    int64_t correct;
    int world = t->comm ? t->comm->world : 1; /* the mean over the global batch's 2N rows */
    ssl_fill(&dlg, 0.0f);
    if (ssl_softmax_xent_rows_top1(&lg, t->targets, 1.0f / (float)(2 * n * world), &loss, &dlg, &correct)) return -1;
    for (int v = 0; v < 2; v++) {
        ssl_tensor feat = ssl_model_features(&t->online, v), dv = ssl_tensor_row_slice(&dlg, v * n, n);
        if (ssl_linear_backward(&feat, &w, &dv, NULL, &dw, &db)) return -1;
    }
    double sums[2] = {loss, (double)correct};
    if (ssl_comm_sum_f64(t->comm, sums, 2) || ssl_all_reduce(t->comm, &gall)) return -1;
    st->probe_loss = (float)sums[0];
    st->probe_acc = (float)(sums[1] / (double)(2 * n * world));
    return ssl_optim_step(&t->probe_opt, &t->probe, t->c.probe_lr);
}

/* SimCLR over the ranks: each rank's 2n rows against all 2N columns.
   The rows are this rank's normalized embeddings, the columns everyone's
   (gathered); the loss is the sum of every rank's rows' cross-entropies
   over 2N. Backward, an embedding gets gradient as a row (here) and as a
   column (on every rank): the columns' gradients are summed across ranks
   and each rank's rows handed back (reduce-scatter), then added to the
   rows' own. */
static int ssl__simclr_ranks(ssl_comm *c, const ssl_tensor *z1, const ssl_tensor *z2, float tau, float *loss,
                             ssl_tensor *dz1, ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check("ssl_simclr_loss", z1, z2, dz1, dz2, 1, &n, &d);
    if (dev < 0) return -1;
    if (!(tau > 0.0f)) return ssl__fail("ssl_simclr_loss: temperature must be > 0, got %g", tau);
    const int64_t R = c->rank, N = n * c->world, m = 2 * n, M = 2 * N;
    float *mem = ssl__scratch(scratch, dev, (size_t)(3 * m * d + m + 2 * M * d + 2 * m * M));
    ssl_tensor z = ssl__carve(&mem, dev, m, d), norm = ssl__carve(&mem, dev, m, 1), g = ssl__carve(&mem, dev, M, d),
               s = ssl__carve(&mem, dev, m, M), ds = ssl__carve(&mem, dev, m, M), dg = ssl__carve(&mem, dev, M, d),
               dz = ssl__carve(&mem, dev, m, d), back = ssl__carve(&mem, dev, m, d);
    ssl_tensor z_1 = ssl_tensor_row_slice(&z, 0, n), z_2 = ssl_tensor_row_slice(&z, n, n);
    ssl_tensor g_1 = ssl_tensor_row_slice(&g, 0, N), g_2 = ssl_tensor_row_slice(&g, N, N);
    ssl_tensor s_1 = ssl_tensor_row_slice(&s, 0, n), s_2 = ssl_tensor_row_slice(&s, n, n);
    /* global indices: view 1 of sample j is row j, view 2 is row N + j */
    int32_t *positive = (int32_t *)ssl_malloc(sizeof(int32_t) * (size_t)m, "SimCLR targets");
    for (int64_t i = 0; i < n; i++) positive[i] = (int32_t)(N + R * n + i), positive[n + i] = (int32_t)(R * n + i);

    /* this rank's rows, normalized; every rank's, gathered in the global order */
    ssl_copy(&z_1, z1);
    ssl_copy(&z_2, z2);
    ssl_l2_normalize_rows(&z, &z, &norm);
    if (ssl_all_gather(c, &z_1, &g_1) || ssl_all_gather(c, &z_2, &g_2)) { free(positive); return -1; }
    /* s = z g^T / tau, each row's similarity with itself masked out */
    ssl_matmul(0, 1, 1.0f / tau, &z, &g, 0.0f, &s);
    ssl_fill_diagonal_at(&s_1, R * n, -INFINITY);
    ssl_fill_diagonal_at(&s_2, N + R * n, -INFINITY);
    /* loss = sum over every rank's rows of cross_entropy(s_i, positive(i)) / 2N */
    float part;
    ssl_fill(&ds, 0.0f);
    ssl_softmax_xent_rows(&s, positive, 1.0f / (float)M, &part, &ds);
    free(positive);
    double total = part;
    if (ssl_comm_sum_f64(c, &total, 1)) return -1;
    *loss = (float)total;
    if (!dz1 && !dz2) return 0;

    /* backward: rows dz = ds g / tau; columns dg = ds^T z / tau, summed over
       the ranks, this rank's rows of each view back */
    ssl_matmul(0, 0, 1.0f / tau, &ds, &g, 0.0f, &dz);
    ssl_matmul(1, 0, 1.0f / tau, &ds, &z, 0.0f, &dg);
    ssl_tensor dg_1 = ssl_tensor_row_slice(&dg, 0, N), dg_2 = ssl_tensor_row_slice(&dg, N, N);
    ssl_tensor back_1 = ssl_tensor_row_slice(&back, 0, n), back_2 = ssl_tensor_row_slice(&back, n, n);
    if (ssl_reduce_scatter(c, &dg_1, &back_1) || ssl_reduce_scatter(c, &dg_2, &back_2)) return -1;
    ssl_axpy(1.0f, &back, &dz);
    /* through the normalization, each view's rows into its own gradient */
    for (int v = 0; v < 2; v++) {
        ssl_tensor *dzv = v ? dz2 : dz1;
        if (!dzv) continue;
        ssl_tensor zv = ssl_tensor_row_slice(&z, v * n, n), nv = ssl_tensor_row_slice(&norm, v * n, n),
                   dzn = ssl_tensor_row_slice(&dz, v * n, n);
        ssl_fill(dzv, 0.0f);
        ssl_l2_normalize_rows_backward(&zv, &nv, &dzn, dzv);
    }
    return 0;
}

/* ---- VICReg and Barlow Twins split over the ranks ----------------------
   Neither needs the global batch's rows in one place: every statistic of
   the batch they use is a sum over its rows (the per-dimension means and
   variances, the [D, D] covariance or cross-correlation), so each rank sums
   over its own rows, an all-reduce adds the ranks' sums, and every rank
   computes the loss from them (the same value on each). Backward, the
   gradient of a rank's rows is written with those rows and the reduced
   statistics; what batch norm's backward needs of the whole batch is again
   a sum over rows, all-reduced. A rank's work is O(n D^2) for its n rows;
   what travels is the [D, D] matrices and a few [D] vectors. */

/* The per-dimension passes these losses need beside GEMMs, on [rows, D]
   tensors of either device, made of batch norm's own passes (so its CUDA
   code runs them): sums over the rows, and a per-dimension affine map.
   k holds [D] constants and outputs on the loss's device. */
typedef struct {
    ssl_tensor zeros, ones, inv_n;   /* 0, 1, 1/N (N the global batch) */
    ssl_tensor mean_out, invstd_out; /* what batch norm's forward writes, unused */
} ssl__colk;

static ssl__colk ssl__colk_carve(float **mem, int dev, int64_t d, int64_t rows_all) {
    ssl__colk k;
    k.zeros = ssl__carve(mem, dev, 1, d), k.ones = ssl__carve(mem, dev, 1, d), k.inv_n = ssl__carve(mem, dev, 1, d);
    k.mean_out = ssl__carve(mem, dev, 1, d), k.invstd_out = ssl__carve(mem, dev, 1, d);
    ssl_fill(&k.zeros, 0.0f);
    ssl_fill(&k.ones, 1.0f);
    ssl_fill(&k.inv_n, 1.0f / (float)rows_all);
    return k;
}
#define SSL__COLK_FLOATS(d) (5 * (d))

/* sum_j = sum_i a_ij and dot_j = w_j sum_i a_ij b_ij (either NULL),
   summed in double: batch norm's backward statistics sum dy (its dbias)
   and sum dy * xhat (its dweight) with dy = a, x = b, mean 0, invstd w. */
static void ssl__col_sums(const ssl__colk *k, const ssl_tensor *a, const ssl_tensor *b, const ssl_tensor *w, ssl_tensor *sum,
                          ssl_tensor *dot) {
    ssl_batchnorm bn = ssl_batchnorm_default();
    if (sum) ssl_fill(sum, 0.0f);
    if (dot) ssl_fill(dot, 0.0f);
    ssl_batchnorm_backward(&bn, 0, b ? b : a, a, &k->zeros, w ? w : &k->ones, NULL, dot, sum);
}

/* y = (x - shift) * scale per dimension (y may be x): batch norm's
   eval-mode forward with running mean `shift`, running variance 1, eps 0
   and weight `scale` (its invstd is then exactly 1). */
static void ssl__col_affine(const ssl__colk *k, const ssl_tensor *x, const ssl_tensor *shift, const ssl_tensor *scale,
                            ssl_tensor *y) {
    ssl_batchnorm bn = ssl_batchnorm_default();
    bn.weight = *scale, bn.running_mean = *shift, bn.running_var = k->ones, bn.eps = 0.0f;
    ssl_tensor m = k->mean_out, s = k->invstd_out;
    ssl_batchnorm_forward(&bn, 0, x, y, &m, &s);
}

/* Barlow Twins over the ranks. Each view is standardized with the global
   batch's statistics: its mean from the ranks' column sums, then its
   biased variance from the ranks' sums of squared deviations from that
   mean (two passes, as batch norm, so no cancellation), and normalized
   with them (batch norm's eval-mode forward given those statistics). The
   ranks' partial cross-correlations zn1^T zn2 / N add up to c. Backward,
   dc is the same on every rank; this rank's dzn are GEMMs with its rows,
   and batch norm's backward,
     dz = invstd (dzn - mean(dzn) - zn mean(dzn zn)),
   takes its two means over the global batch: a fourth all-reduce, [4, D]. */
static int ssl__barlow_ranks(ssl_comm *c, const ssl_tensor *z1, const ssl_tensor *z2, float lambd, float *loss,
                             ssl_tensor *dz1, ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check("ssl_barlow_loss", z1, z2, dz1, dz2, 1, &n, &d);
    if (dev < 0) return -1;
    const int64_t N = n * c->world;
    float *mem = ssl__scratch(scratch, dev, (size_t)(5 * n * d + 2 * d * d + 10 * d + SSL__COLK_FLOATS(d)));
    ssl_tensor zn = ssl__carve(&mem, dev, 2 * n, d), dzn = ssl__carve(&mem, dev, 2 * n, d), t = ssl__carve(&mem, dev, n, d),
               cc = ssl__carve(&mem, dev, d, d), dc = ssl__carve(&mem, dev, d, d), mean = ssl__carve(&mem, dev, 2, d),
               var = ssl__carve(&mem, dev, 2, d), invstd = ssl__carve(&mem, dev, 2, d), g = ssl__carve(&mem, dev, 4, d);
    ssl__colk k = ssl__colk_carve(&mem, dev, d, N);
    const ssl_tensor *z[2] = {z1, z2};
    ssl_tensor *dz[2] = {dz1, dz2}, znv[2], meanv[2], varv[2], isv[2];
    for (int v = 0; v < 2; v++) {
        znv[v] = ssl_tensor_row_slice(&zn, v * n, n), meanv[v] = ssl_tensor_row_slice(&mean, v, 1);
        varv[v] = ssl_tensor_row_slice(&var, v, 1), isv[v] = ssl_tensor_row_slice(&invstd, v, 1);
    }

    /* each view's mean over the global batch: its column sums, summed over the ranks, over N */
    for (int v = 0; v < 2; v++) ssl__col_sums(&k, z[v], NULL, NULL, &meanv[v], NULL);
    if (ssl_all_reduce(c, &mean)) return -1;
    ssl__col_affine(&k, &mean, &k.zeros, &k.inv_n, &mean);
    /* its biased variance: (1/N) sum (z - mean)^2, summed over the ranks */
    for (int v = 0; v < 2; v++) {
        ssl__col_affine(&k, z[v], &meanv[v], &k.ones, &znv[v]);
        ssl__col_sums(&k, &znv[v], &znv[v], &k.inv_n, NULL, &varv[v]);
    }
    if (ssl_all_reduce(c, &var)) return -1;
    /* zn = (z - mean) / sqrt(var + eps), BatchNorm1d(affine=False) of the global batch */
    for (int v = 0; v < 2; v++) {
        ssl_batchnorm bn = ssl_batchnorm_default();
        bn.running_mean = meanv[v], bn.running_var = varv[v];
        ssl_tensor m = k.mean_out;
        ssl_batchnorm_forward(&bn, 0, z[v], &znv[v], &m, &isv[v]);
    }
    /* c = zn1^T zn2 / N: this rank's rows' share, summed over the ranks */
    ssl_matmul(1, 0, 1.0f / (float)N, &znv[0], &znv[1], 0.0f, &cc);
    if (ssl_all_reduce(c, &cc)) return -1;
    /* loss = sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2, from c on every rank */
    float on_diag, off_diag;
    ssl_fill(&dc, 0.0f);
    ssl_diag_penalty(&cc, SSL_DIAG_SQ_DEV_ONE, 0.0f, 1.0f, &on_diag, &dc);
    ssl_offdiag_sumsq(&cc, lambd, &off_diag, &dc);
    *loss = on_diag + off_diag;
    if (!dz1 && !dz2) return 0;

    /* backward: c = zn1^T zn2 / N  =>  dzn1 = zn2 dc^T / N, dzn2 = zn1 dc / N (this rank's rows) */
    ssl_tensor dznv[2] = {ssl_tensor_row_slice(&dzn, 0, n), ssl_tensor_row_slice(&dzn, n, n)};
    ssl_matmul(0, 1, 1.0f / (float)N, &znv[1], &dc, 0.0f, &dznv[0]);
    ssl_matmul(0, 0, 1.0f / (float)N, &znv[0], &dc, 0.0f, &dznv[1]);
    /* batch norm's backward needs mean(dzn) and mean(dzn zn) over the global batch */
    ssl_tensor mdy_both = ssl_tensor_row_slice(&g, 0, 2), mdy[2] = {ssl_tensor_row_slice(&g, 0, 1), ssl_tensor_row_slice(&g, 1, 1)},
               mdyx[2] = {ssl_tensor_row_slice(&g, 2, 1), ssl_tensor_row_slice(&g, 3, 1)};
    for (int v = 0; v < 2; v++) ssl__col_sums(&k, &dznv[v], &znv[v], &k.inv_n, &mdy[v], &mdyx[v]);
    if (ssl_all_reduce(c, &g)) return -1;
    ssl__col_affine(&k, &mdy_both, &k.zeros, &k.inv_n, &mdy_both);
    /* dz = invstd (dzn - zn mean(dzn zn) - mean(dzn)) */
    for (int v = 0; v < 2; v++) {
        if (!dz[v]) continue;
        ssl__col_affine(&k, &znv[v], &k.zeros, &mdyx[v], &t);
        ssl_axpy(-1.0f, &t, &dznv[v]);
        ssl__col_affine(&k, &dznv[v], &mdy[v], &isv[v], dz[v]);
    }
    return 0;
}

/* VICReg over the ranks. The invariance term is per row: this rank's
   rows' share of the mean over the N D values, summed. Each view is
   centred with the global batch's mean (the ranks' column sums), and the
   ranks' partial Gram matrices (z - mean)^T (z - mean) / (N - 1) add up
   to the covariance, from which every rank computes the variance and
   covariance terms. Backward, dx = 2 x dc / (N - 1) for this rank's rows
   x; the centring's share, -(1/N) sum over every row of dx, is
   -2 (sum of x) dc / (N (N - 1)), zero because x sums to zero over the
   global batch: no fourth all-reduce (the one-process loss centres dx,
   which removes only rounding). */
static int ssl__vicreg_ranks(ssl_comm *c, const ssl_tensor *z1, const ssl_tensor *z2, float sim_coef, float std_coef,
                             float cov_coef, float *loss, ssl_tensor *dz1, ssl_tensor *dz2, ssl_buf *scratch) {
    int64_t n, d;
    int dev = ssl__loss_check("ssl_vicreg_loss", z1, z2, dz1, dz2, 1, &n, &d);
    if (dev < 0) return -1;
    const int64_t N = n * c->world;
    float *mem = ssl__scratch(scratch, dev, (size_t)(3 * n * d + 3 * d * d + 2 * d + SSL__COLK_FLOATS(d)));
    ssl_tensor x = ssl__carve(&mem, dev, 2 * n, d), dx = ssl__carve(&mem, dev, n, d), cc = ssl__carve(&mem, dev, 2 * d, d),
               dc = ssl__carve(&mem, dev, d, d), mean = ssl__carve(&mem, dev, 2, d);
    ssl__colk k = ssl__colk_carve(&mem, dev, d, N);
    const ssl_tensor *z[2] = {z1, z2};
    ssl_tensor *dz[2] = {dz1, dz2}, xv[2], cv[2], meanv[2];
    for (int v = 0; v < 2; v++) {
        xv[v] = ssl_tensor_row_slice(&x, v * n, n), cv[v] = ssl_tensor_row_slice(&cc, v * d, d);
        meanv[v] = ssl_tensor_row_slice(&mean, v, 1);
        if (dz[v]) ssl_fill(dz[v], 0.0f);
    }

    /* invariance: sim * mse over the global batch, this rank's rows' share */
    float repr;
    ssl_mse(z1, z2, sim_coef / (float)c->world, &repr, dz1, dz2);
    /* x = z - mean over the global batch; c = x^T x / (N-1), summed over the ranks */
    for (int v = 0; v < 2; v++) ssl__col_sums(&k, z[v], NULL, NULL, &meanv[v], NULL);
    if (ssl_all_reduce(c, &mean)) return -1;
    ssl__col_affine(&k, &mean, &k.zeros, &k.inv_n, &mean);
    for (int v = 0; v < 2; v++) {
        ssl__col_affine(&k, z[v], &meanv[v], &k.ones, &xv[v]);
        ssl_matmul(1, 0, 1.0f / (float)(N - 1), &xv[v], &xv[v], 0.0f, &cv[v]);
    }
    if (ssl_all_reduce(c, &cc)) return -1;
    double total = repr;
    if (ssl_comm_sum_f64(c, &total, 1)) return -1;
    for (int v = 0; v < 2; v++) {
        float std_term, cov_term;
        ssl_fill(&dc, 0.0f);
        /* variance: std * mean_j relu(1 - sqrt(var_j + eps)) / 2 */
        ssl_diag_penalty(&cv[v], SSL_DIAG_STD_HINGE, SSL_VICREG_EPS, std_coef / (2.0f * (float)d), &std_term, &dc);
        /* covariance: cov * sum_{i != j} c_ij^2 / D */
        ssl_offdiag_sumsq(&cv[v], cov_coef / (float)d, &cov_term, &dc);
        total += (double)std_term + cov_term;
        if (!dz[v]) continue;
        /* backward: dx = 2 x dc / (N-1) for this rank's rows (dc symmetric) */
        ssl_matmul(0, 0, 2.0f / (float)(N - 1), &xv[v], &dc, 0.0f, &dx);
        ssl_axpy(1.0f, &dx, dz[v]);
    }
    *loss = (float)total;
    return 0;
}

SSLDEF int ssl_loss_global(ssl_comm *comm, const ssl_train_config *c, const ssl_tensor *o1, const ssl_tensor *o2,
                           const ssl_tensor *z1, const ssl_tensor *z2, float *loss, ssl_tensor *d1, ssl_tensor *d2,
                           ssl_buf *scratch, ssl_buf *gathered) {
    if (comm && comm->world > 1) {
        if (c->method == SSL_METHOD_SIMCLR) return ssl__simclr_ranks(comm, o1, o2, c->tau, loss, d1, d2, scratch);
        if (c->method == SSL_METHOD_VICREG)
            return ssl__vicreg_ranks(comm, o1, o2, c->sim, c->std, c->cov, loss, d1, d2, scratch);
        if (c->method == SSL_METHOD_BARLOW) return ssl__barlow_ranks(comm, o1, o2, c->lambd, loss, d1, d2, scratch);
    }
    const ssl_tensor *in[4] = {o1, o2, z1, z2};
    ssl_tensor *grad[2] = {d1, d2};
    int world = comm ? comm->world : 1, nin = c->method == SSL_METHOD_BYOL ? 4 : 2;
    ssl_tensor g[4], dg[2];
    if (world > 1) {
        for (int v = 0; v < 2; v++)
            if (o1->ndim != 2 || (grad[v] && ssl_tensor_numel(grad[v]) != ssl_tensor_numel(o1)))
                return ssl__fail("%s: embeddings and their gradients must be [n, D] alike", __func__);
        int64_t n = o1->dim[0], d = o1->dim[1];
        int dev = o1->device;
        float *mem = ssl__scratch(gathered, dev, (size_t)((nin + 2) * n * world * d));
        for (int k = 0; k < nin; k++) {
            g[k] = ssl__carve(&mem, dev, n * world, d);
            if (ssl_all_gather(comm, in[k], &g[k])) return -1;
            in[k] = &g[k];
        }
        for (int v = 0; v < 2; v++) dg[v] = ssl__carve(&mem, dev, n * world, d), grad[v] = grad[v] ? &dg[v] : NULL;
    }
    int r;
    switch (c->method) {
    case SSL_METHOD_SIMCLR: r = ssl_simclr_loss(in[0], in[1], c->tau, loss, grad[0], grad[1], scratch); break;
    case SSL_METHOD_VICREG: r = ssl_vicreg_loss(in[0], in[1], c->sim, c->std, c->cov, loss, grad[0], grad[1], scratch); break;
    case SSL_METHOD_BARLOW: r = ssl_barlow_loss(in[0], in[1], c->lambd, loss, grad[0], grad[1], scratch); break;
    case SSL_METHOD_BYOL: r = ssl_byol_loss(in[0], in[1], in[2], in[3], loss, grad[0], grad[1], scratch); break;
    default: r = ssl__fail("%s: unknown method %d", __func__, c->method);
    }
    if (r || world == 1) return r;
    /* this rank's rows of the global batch's gradient */
    for (int v = 0; v < 2; v++) {
        if (!grad[v]) continue;
        ssl_tensor mine = ssl_tensor_row_slice(&dg[v], (int64_t)comm->rank * o1->dim[0], o1->dim[0]);
        if (ssl_copy(v ? d2 : d1, &mine)) return -1;
    }
    return 0;
}

SSLDEF int ssl_trainer_set_comm(ssl_trainer *t, ssl_comm *comm, int sync_bn) {
    t->comm = comm;
    t->online.comm = sync_bn ? comm : NULL;
    if (t->has_target) t->target.comm = sync_bn ? comm : NULL;
    if (!comm || comm->world == 1) return 0;
    ssl_param_table *tabs[3] = {&t->online.params, t->has_target ? &t->target.params : NULL, t->probe.n ? &t->probe : NULL};
    for (int i = 0; i < 3; i++) {
        if (!tabs[i]) continue;
        ssl_tensor all = ssl_tensor_on(ssl_tensor_vec(tabs[i]->data, tabs[i]->total), tabs[i]->dev);
        if (ssl_broadcast(comm, &all, 0)) return -1;
    }
    return 0;
}

SSLDEF int ssl_train_step(ssl_trainer *t, const float *v1, const float *v2, const uint32_t *labels, int n, int h,
                          int w, ssl_step_stats *st) {
    return ssl_train_step3(t, v1, v2, NULL, labels, n, h, w, st);
}

static int ssl__train_step3(ssl_trainer *t, const float *v1, const float *v2, const float *vp, const uint32_t *labels, int n,
                            int h, int w, ssl_step_stats *st);
SSLDEF int ssl_train_step3(ssl_trainer *t, const float *v1, const float *v2, const float *vp, const uint32_t *labels, int n,
                           int h, int w, ssl_step_stats *st) {
    /* several GPUs: the step's NCCL collectives are queued, and a rank that
       died or hangs shows as a wait in whatever reads the device next, so
       the watchdog times the whole step */
    int watch = t->comm && t->comm->world > 1 && t->c.device == SSL_DEV_CUDA;
    if (watch) ssl_comm_watch(t->comm, "a GPU step");
    int rc = ssl__train_step3(t, v1, v2, vp, labels, n, h, w, st);
    if (watch) ssl_comm_watch(t->comm, NULL);
    return rc;
}
static int ssl__train_step3(ssl_trainer *t, const float *v1, const float *v2, const float *vp, const uint32_t *labels, int n,
                            int h, int w, ssl_step_stats *st) {
    ssl_step_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    const ssl_train_config *c = &t->c;
    const int dev = c->device;
    double t0 = ssl_now();
    /* BYOL's target never runs backward: one slot, its view-0 output copied
       out before view 1 overwrites it (half the target's activations: what
       lets a ResNet-50 at batch 256 in fp32 fit in 80 GB) */
    /* the target first: the online model's plan decides whether to keep its
       columns from the memory left (keep_cols) */
    /* Instance-SimCLR: the patches, a third view through the online model */
    const int nv = c->method == SSL_METHOD_SIMCLR && c->patch_negatives ? 3 : 2;
    if (nv == 3 && !vp) return ssl__fail("step %lld: Instance-SimCLR needs the patch view", (long long)t->step);
    if ((t->has_target && ssl_model_plan(&t->target, n, h, w, 1)) || ssl_model_plan(&t->online, n, h, w, nv))
        return ssl__fail_ctx("step %lld", (long long)t->step);
    if (t->has_target && sizeof(float) * (size_t)n * t->target.out_dim > t->zt_cap) {
        ssl__trainer_release(t, t->zt);
        t->zt_cap = sizeof(float) * (size_t)n * t->target.out_dim;
        t->zt = (float *)ssl__trainer_alloc(t, t->zt_cap, "BYOL target outputs");
    }
    ssl_tensor zt0 = ssl_tensor_on(ssl_tensor_mat(t->zt, n, t->has_target ? t->target.out_dim : 0), dev);
    /* forward: each view its own pass, so its own BN batch statistics */
    const float *views[3] = {v1, v2, vp};
    for (int v = 0; v < nv; v++) {
        if (ssl_model_forward(&t->online, v, views[v], 1) || (t->has_target && ssl_model_forward(&t->target, 0, views[v], 1)))
            return ssl__fail_ctx("step %lld", (long long)t->step);
        if (t->has_target && v == 0) {
            ssl_tensor o = ssl_model_output(&t->target, 0);
            if (ssl_copy(&zt0, &o)) return ssl__fail_ctx("step %lld", (long long)t->step);
        }
    }
    ssl__trainer_sync(t);
    double t1 = ssl_now();

    /* the loss and its gradient w.r.t. the online outputs */
    int64_t d = t->online.out_dim;
    size_t need = sizeof(float) * (size_t)(n * d);
    if (need > t->dout_cap) {
        for (int v = 0; v < 3; v++) {
            ssl__trainer_release(t, t->dout[v]);
            t->dout[v] = (float *)ssl__trainer_alloc(t, need, "loss gradients");
        }
        t->dout_cap = need;
    }
    ssl_tensor o1 = ssl_model_output(&t->online, 0), o2 = ssl_model_output(&t->online, 1);
    ssl_tensor d1 = ssl_tensor_on(ssl_tensor_mat(t->dout[0], n, d), dev), d2 = ssl_tensor_on(ssl_tensor_mat(t->dout[1], n, d), dev);
    float loss = 0;
    int r;
    if (nv == 3) { /* Instance-SimCLR: each row's negative is its own patch; over the ranks, each its rows */
        ssl_tensor op = ssl_model_output(&t->online, 2), dp = ssl_tensor_on(ssl_tensor_mat(t->dout[2], n, d), dev);
        int world = t->comm ? t->comm->world : 1;
        r = ssl__simclr_patch(&o1, &o2, &op, c->tau, 2 * (int64_t)n * world, &loss, &d1, &d2, &dp, &t->scratch);
        if (!r && world > 1) {
            double total = loss;
            r = ssl_comm_sum_f64(t->comm, &total, 1);
            loss = (float)total;
        }
    } else {
        ssl_tensor z2 = t->has_target ? ssl_model_output(&t->target, 0) : o1; /* BYOL: view 1's target; view 0's is zt0 */
        r = ssl_loss_global(t->comm, c, &o1, &o2, &zt0, &z2, &loss, &d1, &d2, &t->scratch, &t->gathered);
    }
    if (r) return ssl__fail_ctx("step %lld", (long long)t->step);
    st->loss = loss;
    if (!isfinite(loss))
        return ssl__fail("step %lld: %s loss is %s; stopped before updating the weights", (long long)t->step,
                         ssl_method_name(c->method), isnan(loss) ? "nan" : "inf");
    double t2 = ssl_now();

    ssl_tensor gall = ssl_tensor_on(ssl_tensor_vec(t->online.params.grad, t->online.params.total), dev);
    ssl_fill(&gall, 0.0f);
    if (ssl_model_backward(&t->online, 0, &d1) || ssl_model_backward(&t->online, 1, &d2))
        return ssl__fail_ctx("step %lld", (long long)t->step);
    if (nv == 3) {
        ssl_tensor dp = ssl_tensor_on(ssl_tensor_mat(t->dout[2], n, d), dev);
        if (ssl_model_backward(&t->online, 2, &dp)) return ssl__fail_ctx("step %lld", (long long)t->step);
    }
    /* the ranks' gradients summed (the losses divide by the global batch):
       one all-reduce of the whole flat buffer after the backward */
    if (ssl_all_reduce(t->comm, &gall)) return ssl__fail_ctx("step %lld", (long long)t->step);
    ssl__trainer_sync(t);
    double t3 = ssl_now();

    if (t->probe.n && labels && ssl__probe_step(t, labels, n, st)) return ssl__fail_ctx("step %lld", (long long)t->step);
    st->lr = ssl_lr_at(c->lr, t->step, c->warmup_steps, c->total_steps, c->end_ratio);
    if (ssl_optim_step(&t->opt, &t->online.params, st->lr)) return ssl__fail_ctx("step %lld", (long long)t->step);
    if (t->has_target) {
        /* tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, k = steps done */
        double k = (double)t->step, K = (double)(c->total_steps > 0 ? c->total_steps : 1);
        if (k > K) k = K;
        double tau = 1.0 - (1.0 - c->ema_base) * (cos(3.141592653589793 * k / K) + 1.0) / 2.0;
        st->ema_tau = tau;
        float a = (float)tau, b = (float)(1.0 - tau);
        for (int i = 0; i < t->target.params.n; i++) {
            const ssl_param *p = &t->target.params.p[i];
            if (p->kind == SSL_PARAM_BUFFER) continue; /* the target keeps its own running statistics */
            float *tv = ssl_param_data(&t->target.params, i);
            const float *ov = ssl_param_data(&t->online.params, i);
#ifdef SSL_CUDA
            if (dev == SSL_DEV_CUDA) {
                ssl_cuda_ema(tv, ov, p->numel, a, b);
                continue;
            }
#endif
            for (int64_t j = 0; j < p->numel; j++) tv[j] = a * tv[j] + b * ov[j];
        }
    }
    t->step++;
    ssl__trainer_sync(t);
    double t4 = ssl_now();
    st->t_forward = t1 - t0, st->t_loss = t2 - t1, st->t_backward = t3 - t2, st->t_optim = t4 - t3;
    return 0;
}

/* ---- checkpoints ---- */
typedef struct {
    ssl_tentry *e;
    char **names;
    int n, cap;
} ssl__ckpt;

static void ssl__ckpt_add(ssl__ckpt *k, const char *prefix, const char *name, int dtype, const void *data, int64_t numel,
                          int ndim, const int64_t *shape) {
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 256;
        k->e = (ssl_tentry *)ssl_realloc(k->e, sizeof(ssl_tentry) * (size_t)k->cap, "checkpoint entries");
        k->names = (char **)ssl_realloc(k->names, sizeof(char *) * (size_t)k->cap, "checkpoint names");
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *nm = (char *)ssl_malloc(len, "checkpoint name");
    snprintf(nm, len, "%s%s", prefix, name);
    ssl_tentry *e = &k->e[k->n];
    memset(e, 0, sizeof *e);
    e->name = nm;
    e->dtype = dtype;
    e->data = data;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->dims[d] = shape ? shape[d] : numel;
    e->nbytes = (size_t)numel * ssl_dtype_size(dtype);
    k->names[k->n++] = nm;
}

/* Every tensor of a table, values (and optimizer state when o != NULL). */
/* (on the GPU: the host copies, which ssl__ckpt_sync fills or empties) */
static void ssl__ckpt_table(ssl__ckpt *k, const char *prefix, const ssl_param_table *t, const ssl_optimizer *o,
                            const char *oprefix) {
    const float *data = ssl_params_host(t);
    const float *om = o ? (o->dev ? o->host_m : o->m) : NULL, *ov = o ? (o->dev ? o->host_v : o->v) : NULL;
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        ssl__ckpt_add(k, prefix, p->name, SSL_F32, data + p->offset, p->numel, p->ndim, p->shape);
        if (!o || p->kind == SSL_PARAM_BUFFER) continue;
        char pre[64];
        snprintf(pre, sizeof pre, "%sm.", oprefix);
        ssl__ckpt_add(k, pre, p->name, SSL_F32, om + p->offset, p->numel, p->ndim, p->shape);
        if (ov) {
            snprintf(pre, sizeof pre, "%sv.", oprefix);
            ssl__ckpt_add(k, pre, p->name, SSL_F32, ov + p->offset, p->numel, p->ndim, p->shape);
        }
    }
}

/* GPU trainer: device state -> host copies (to_host) or back. */
static void ssl__ckpt_sync(const ssl_trainer *t, int to_host) {
#ifdef SSL_CUDA
    if (t->c.device != SSL_DEV_CUDA) return;
    const ssl_param_table *tb[3] = {&t->online.params, t->has_target ? &t->target.params : NULL, t->probe.n ? &t->probe : NULL};
    const ssl_optimizer *op[3] = {&t->opt, NULL, t->probe.n ? &t->probe_opt : NULL};
    for (int i = 0; i < 3; i++) {
        if (!tb[i]) continue;
        if (to_host) ssl_params_download(tb[i]);
        else ssl_params_upload((ssl_param_table *)tb[i]);
        const ssl_optimizer *o = op[i];
        if (!o) continue;
        size_t bytes = sizeof(float) * (size_t)o->n;
        if (to_host) {
            ssl_cuda_to_host(o->host_m, o->m, bytes);
            if (o->v) ssl_cuda_to_host(o->host_v, o->v, bytes);
        } else {
            ssl_cuda_to_device(o->m, o->host_m, bytes);
            if (o->v) ssl_cuda_to_device(o->v, o->host_v, bytes);
        }
    }
#else
    (void)t, (void)to_host;
#endif
}

static void ssl__ckpt_build(const ssl_trainer *t, ssl__ckpt *k, int64_t *state, const int64_t *user, int n_user) {
    memset(k, 0, sizeof *k);
    ssl__ckpt_table(k, "", &t->online.params, &t->opt, "optim.");
    if (t->has_target) ssl__ckpt_table(k, "target.", &t->target.params, NULL, NULL);
    if (t->probe.n) ssl__ckpt_table(k, "", &t->probe, &t->probe_opt, "probe_optim.");
    state[0] = t->step, state[1] = t->opt.step, state[2] = t->probe.n ? t->probe_opt.step : 0;
    ssl__ckpt_add(k, "", "trainer.state", SSL_I64, state, 3, 1, NULL);
    if (n_user > 0) ssl__ckpt_add(k, "", "user.state", SSL_I64, user, n_user, 1, NULL);
}

static void ssl__ckpt_free(ssl__ckpt *k) {
    for (int i = 0; i < k->n; i++) free(k->names[i]);
    free(k->names);
    free(k->e);
}

SSLDEF int ssl_trainer_save(const ssl_trainer *t, const char *path, const char *meta, const int64_t *user,
                            int n_user) {
    ssl__ckpt k;
    int64_t state[3];
    ssl__ckpt_sync(t, 1);
    ssl__ckpt_build(t, &k, state, user, n_user);
    int r = ssl_tfile_write(path, k.e, k.n, meta);
    ssl__ckpt_free(&k);
    return r ? ssl__fail_ctx("checkpoint %s", path) : 0;
}

SSLDEF int ssl_trainer_load(ssl_trainer *t, const char *path, int64_t *user, int n_user) {
    ssl_tfile f;
    if (ssl_tfile_read(path, &f)) return ssl__fail_ctx("checkpoint %s", path);
    ssl__ckpt k;
    int64_t state[3];
    ssl__ckpt_build(t, &k, state, user, n_user);
    /* check everything first, then copy: a bad file changes nothing */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < k.n; i++) {
            const ssl_tentry *want = &k.e[i], *got = ssl_tfile_find(&f, want->name);
            int user_entry = !strcmp(want->name, "user.state");
            if (!got) {
                ssl__fail("checkpoint %s: tensor '%s' is missing (was it written with another configuration?)", path,
                          want->name);
                goto fail;
            }
            if (got->dtype != want->dtype || (user_entry ? got->nbytes < 8 : got->nbytes != want->nbytes)) {
                ssl__fail("checkpoint %s: tensor '%s' holds %zu bytes of %s, expected %zu bytes of %s", path, want->name,
                          got->nbytes, ssl_dtype_name(got->dtype), want->nbytes, ssl_dtype_name(want->dtype));
                goto fail;
            }
            if (pass == 0) continue;
            size_t nb = user_entry && got->nbytes < want->nbytes ? got->nbytes : want->nbytes;
            memcpy((void *)want->data, got->data, nb);
        }
    t->step = state[0];
    t->opt.step = state[1];
    if (t->probe.n) t->probe_opt.step = state[2];
    ssl__ckpt_sync(t, 0);
    ssl__ckpt_free(&k);
    ssl_tfile_free(&f);
    return 0;
fail:
    ssl__ckpt_free(&k);
    ssl_tfile_free(&f);
    return -1;
}

/* ---- 12. Distributed ------------------------------------------------------
   MPI for launch and host tensors, NCCL for device tensors. Every
   collective is timed and counted on the communicator, and watched: a
   collective that waits longer than watchdog_s (a rank died or hangs)
   aborts the whole job instead of waiting forever. */
#ifdef SSL_MPI
#include <mpi.h>
#endif

SSLDEF void ssl_comm_single(ssl_comm *c) {
    memset(c, 0, sizeof *c);
    c->world = c->local_world = 1;
}

/* The world size a launcher announced in the environment (1 if none). */
static int ssl__launched_world(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = getenv(keys[i]);
        if (v && atoi(v) > 1) return atoi(v);
    }
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ? 1 : 0;
}

/* the one communicator the watchdog watches */
static ssl_comm *volatile ssl__watched;

SSLDEF void ssl_comm_watch(ssl_comm *c, const char *what) {
    if (!c || c->world == 1) return;
    if (what) c->watched_since = ssl_now();
    __atomic_store_n(&c->watched, what, __ATOMIC_RELEASE);
}

#ifdef SSL_MPI
static volatile int ssl__watch_stop;
static void *ssl__watchdog(void *arg) {
    (void)arg;
    while (!ssl__watch_stop) {
        usleep(100000);
        ssl_comm *c = ssl__watched;
        if (!c || c->watchdog_s <= 0) continue;
        const char *what = __atomic_load_n(&c->in_flight, __ATOMIC_ACQUIRE);
        double since = c->in_flight_since;
        if (what && ssl_now() - since > c->watchdog_s)
            ssl_comm_abort(c, 3, "%s has waited %.0f s for the other ranks (watchdog=%g s): one of them died or hangs",
                           what, ssl_now() - since, c->watchdog_s);
        what = __atomic_load_n(&c->watched, __ATOMIC_ACQUIRE);
        since = c->watched_since;
        if (what && ssl_now() - since > c->watchdog_s)
            ssl_comm_abort(c, 3, "%s has run %.0f s (watchdog=%g s): its collectives wait for a rank that died or hangs",
                           what, ssl_now() - since, c->watchdog_s);
#if defined(SSL_CUDA) && defined(SSL_NCCL)
        char msg[256];
        if (c->nccl && ssl_cuda_nccl_error(c->nccl, msg, sizeof msg))
            ssl_comm_abort(c, 3, "rank %d: NCCL: %s (a rank died, or the network between them failed)", c->rank, msg);
#endif
    }
    return NULL;
}
#endif

SSLDEF int ssl_comm_init(ssl_comm *c, double watchdog_s) {
    ssl_comm_single(c);
    c->watchdog_s = watchdog_s;
    int launched = ssl__launched_world();
#ifdef SSL_MPI
    if (!launched) return 0; /* a world of one: MPI is not started */
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return ssl__fail("MPI_Init failed");
        c->owns_mpi = 1;
    }
    c->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &c->local_rank);
    MPI_Comm_size(local, &c->local_world);
    MPI_Comm_free(&local);
    if (c->world > 1) { /* it reads watchdog_s each time: a program may set it after parsing its options */
        pthread_t tid;
        ssl__watched = c;
        ssl__watch_stop = 0;
        if (pthread_create(&tid, NULL, ssl__watchdog, NULL) == 0) pthread_detach(tid);
    }
    return 0;
#else
    if (launched > 1)
        return ssl__fail("launched as one of %d ranks, but this build has no MPI (SSL_MPI): install libopenmpi-dev "
                         "and rebuild (make says 'MPI yes'), or run one process", launched);
    return 0;
#endif
}

SSLDEF int ssl_comm_init_gpu(ssl_comm *c) {
#ifdef SSL_CUDA
    if (c->world == 1) return 0; /* one process: the GPU it would have used anyway */
    int n = ssl_cuda_emulation() ? c->local_world : ssl_cuda_device_count();
    if (n < c->local_world)
        return ssl__fail("%d ranks on this node but %d GPU%s: one GPU per rank (start at most %d ranks a node)",
                         c->local_world, n, n == 1 ? "" : "s", n);
    if (!ssl_cuda_emulation() && ssl_cuda_set_device(c->local_rank)) return -1;
    if (ssl_cuda_emulation()) return 0; /* emulated device memory is host memory: MPI carries it */
#ifdef SSL_NCCL
    unsigned char id[128];
    memset(id, 0, sizeof id);
    if (c->rank == 0 && ssl_cuda_nccl_id(id)) return -1;
#ifdef SSL_MPI
    MPI_Bcast(id, 128, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
    return ssl_cuda_nccl_init(&c->nccl, c->world, c->rank, id);
#else
    return ssl__fail("%d ranks on GPUs need NCCL: this CUDA build was made without it (nccl.h not found)", c->world);
#endif
#else
    (void)c;
    return ssl__fail("GPU ranks need a build with the CUDA backend");
#endif
}

SSLDEF void ssl_comm_free(ssl_comm *c) {
    if (ssl__watched == c) ssl__watched = NULL;
#ifdef SSL_CUDA
    if (c->nccl) ssl_cuda_nccl_free(c->nccl);
#endif
#ifdef SSL_MPI
    if (c->owns_mpi) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
#endif
    memset(c, 0, sizeof *c);
}

SSLDEF void ssl_comm_abort(const ssl_comm *c, int code, const char *fmt, ...) {
    va_list ap;
    char msg[1024];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "rank %d of %d: %s; stopping every rank\n", c ? c->rank : 0, c ? c->world : 1, msg);
    fflush(stderr);
#ifdef SSL_MPI
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    _exit(code);
}

static void ssl__coll_begin(ssl_comm *c, const char *what, int64_t bytes) {
    c->in_flight_since = ssl_now();
    __atomic_store_n(&c->in_flight, what, __ATOMIC_RELEASE);
    c->bytes += bytes;
    c->calls++;
}
static void ssl__coll_end(ssl_comm *c) {
    __atomic_store_n(&c->in_flight, (const char *)NULL, __ATOMIC_RELEASE);
    c->seconds += ssl_now() - c->in_flight_since;
}

/* Which way a tensor's collective goes: 0 host memory through MPI (host
   tensors, and device tensors of the emulated GPU, whose memory is the
   host's), 1 NCCL, -1 an error. */
static int ssl__coll_route(const char *op, ssl_comm *c, const ssl_tensor *a, const ssl_tensor *b) {
    if (a->dtype != SSL_F32 || (b && b->dtype != SSL_F32)) return ssl__fail("%s: collectives take fp32 tensors", op);
    if (b && a->device != b->device) return ssl__fail("%s: the tensors are on different devices", op);
    if (a->device == SSL_DEV_CPU) return 0;
#ifdef SSL_CUDA
    if (ssl_cuda_emulation()) return 0;
    if (!c->nccl) return ssl__fail("%s: GPU tensors across %d ranks need NCCL (ssl_comm_init_gpu)", op, c->world);
    return 1;
#else
    return ssl__no_cuda(op);
#endif
}

#ifdef SSL_MPI
#define SSL__MPI_MAX ((int64_t)1 << 30) /* elements per call: MPI counts are int */
#endif

SSLDEF int ssl_all_reduce(ssl_comm *c, ssl_tensor *t) {
    if (!c || c->world == 1) return 0;
    int f64 = t->dtype == SSL_F64; /* doubles: SyncBN's statistics on the GPU */
    ssl_tensor as = *t;
    if (f64) as.dtype = SSL_F32; /* the route depends on the device only */
    int route = ssl__coll_route(__func__, c, &as, NULL);
    if (route < 0) return -1;
    int64_t n = ssl_tensor_numel(t);
    ssl__coll_begin(c, f64 ? "all-reduce (double)" : "all-reduce", n * (f64 ? 8 : 4));
    int r = 0;
#ifdef SSL_CUDA
    if (route == 1) r = ssl_cuda_nccl_collective(c->nccl, f64 ? 4 : 0, t->data, t->data, (size_t)n, 0);
#endif
#ifdef SSL_MPI
    for (int64_t o = 0; route == 0 && o < n; o += SSL__MPI_MAX) {
        int k = (int)(n - o < SSL__MPI_MAX ? n - o : SSL__MPI_MAX);
        void *p = f64 ? (void *)((double *)t->data + o) : (void *)(t->data + o);
        MPI_Allreduce(MPI_IN_PLACE, p, k, f64 ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
#endif
    ssl__coll_end(c);
    return r;
}

SSLDEF int ssl_broadcast(ssl_comm *c, ssl_tensor *t, int root) {
    if (!c || c->world == 1) return 0;
    if (root < 0 || root >= c->world) return ssl__fail("%s: root %d is not a rank of %d", __func__, root, c->world);
    int route = ssl__coll_route(__func__, c, t, NULL);
    if (route < 0) return -1;
    int64_t n = ssl_tensor_numel(t);
    ssl__coll_begin(c, "broadcast", c->rank == root ? n * 4 : 0);
    int r = 0;
#ifdef SSL_CUDA
    if (route == 1) r = ssl_cuda_nccl_collective(c->nccl, 3, t->data, t->data, (size_t)n, root);
#endif
#ifdef SSL_MPI
    for (int64_t o = 0; route == 0 && o < n; o += SSL__MPI_MAX) {
        int k = (int)(n - o < SSL__MPI_MAX ? n - o : SSL__MPI_MAX);
        MPI_Bcast(t->data + o, k, MPI_FLOAT, root, MPI_COMM_WORLD);
    }
#endif
    ssl__coll_end(c);
    return r;
}

/* all-gather / reduce-scatter: big holds world blocks of small's size */
static int ssl__coll_blocks(const char *op, ssl_comm *c, const ssl_tensor *small, const ssl_tensor *big) {
    int64_t w = c ? c->world : 1;
    if (ssl_tensor_numel(big) != w * ssl_tensor_numel(small)) {
        char a[64], b[64];
        return ssl__fail("%s: %s holds %lld values, %lld ranks x %s needs %lld", op, ssl_tensor_shape(big, a, sizeof a),
                         (long long)ssl_tensor_numel(big), (long long)w, ssl_tensor_shape(small, b, sizeof b),
                         (long long)(w * ssl_tensor_numel(small)));
    }
    if (ssl_tensor_numel(small) > INT32_MAX / 2) return ssl__fail("%s: over 2^30 values a rank", op);
    return 0;
}

SSLDEF int ssl_all_gather(ssl_comm *c, const ssl_tensor *in, ssl_tensor *out) {
    if (ssl__coll_blocks(__func__, c, in, out)) return -1;
    if (!c || c->world == 1) return ssl_copy(out, in);
    int route = ssl__coll_route(__func__, c, in, out);
    if (route < 0) return -1;
    int64_t n = ssl_tensor_numel(in);
    ssl__coll_begin(c, "all-gather", n * 4);
    int r = 0;
#ifdef SSL_CUDA
    if (route == 1) r = ssl_cuda_nccl_collective(c->nccl, 1, in->data, out->data, (size_t)n, 0);
#endif
#ifdef SSL_MPI
    if (route == 0) MPI_Allgather(in->data, (int)n, MPI_FLOAT, out->data, (int)n, MPI_FLOAT, MPI_COMM_WORLD);
#endif
    ssl__coll_end(c);
    return r;
}

SSLDEF int ssl_reduce_scatter(ssl_comm *c, const ssl_tensor *in, ssl_tensor *out) {
    if (ssl__coll_blocks(__func__, c, out, in)) return -1;
    if (!c || c->world == 1) return ssl_copy(out, in);
    int route = ssl__coll_route(__func__, c, in, out);
    if (route < 0) return -1;
    int64_t n = ssl_tensor_numel(out);
    ssl__coll_begin(c, "reduce-scatter", n * 4 * c->world);
    int r = 0;
#ifdef SSL_CUDA
    if (route == 1) r = ssl_cuda_nccl_collective(c->nccl, 2, in->data, out->data, (size_t)n * c->world, 0);
#endif
#ifdef SSL_MPI
    if (route == 0) MPI_Reduce_scatter_block(in->data, out->data, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
#endif
    ssl__coll_end(c);
    return r;
}

SSLDEF int ssl_barrier(ssl_comm *c) {
    if (!c || c->world == 1) return 0;
    ssl__coll_begin(c, "barrier", 0);
#ifdef SSL_MPI
    MPI_Barrier(MPI_COMM_WORLD);
#endif
    ssl__coll_end(c);
    return 0;
}

/* The host scalars' all-reduce in place: the sum of doubles, or the
   maximum of int64s (max: 1) */
static int ssl__host_reduce(const char *op, ssl_comm *c, void *v, int64_t n, int max) {
    if (!c || c->world == 1 || n == 0) return 0;
    if (n > INT32_MAX) return ssl__fail("%s: over 2^31 values", op);
    ssl__coll_begin(c, max ? "all-reduce (max)" : "all-reduce (double)", n * 8);
#ifdef SSL_MPI
    MPI_Allreduce(MPI_IN_PLACE, v, (int)n, max ? MPI_INT64_T : MPI_DOUBLE, max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
#endif
    ssl__coll_end(c);
    return 0;
}
SSLDEF int ssl_comm_sum_f64(ssl_comm *c, double *v, int64_t n) { return ssl__host_reduce(__func__, c, v, n, 0); }
SSLDEF int ssl_comm_max_i64(ssl_comm *c, int64_t *v, int64_t n) { return ssl__host_reduce(__func__, c, v, n, 1); }

/* Every rank's `n` uint32 values, rank by rank, into all[world * n]. */
static int ssl__gather_u32(ssl_comm *c, const uint32_t *mine, int64_t n, uint32_t *all) {
    if (!c || c->world == 1) { memcpy(all, mine, sizeof(uint32_t) * (size_t)n); return 0; }
    ssl__coll_begin(c, "all-gather (checksums)", n * 4);
#ifdef SSL_MPI
    MPI_Allgather(mine, (int)n, MPI_UINT32_T, all, (int)n, MPI_UINT32_T, MPI_COMM_WORLD);
#endif
    ssl__coll_end(c);
    return 0;
}

SSLDEF int ssl_comm_same(ssl_comm *c, const void *p, size_t n, const char *what) {
    if (!c || c->world == 1) return 0;
    uint32_t mine[2] = {ssl_crc32(0, p, n), (uint32_t)n};
    uint32_t *all = (uint32_t *)ssl_malloc(sizeof(uint32_t) * 2 * (size_t)c->world, "checksums");
    ssl__gather_u32(c, mine, 2, all);
    int bad = -1;
    for (int r = 1; r < c->world && bad < 0; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) bad = r;
    free(all);
    if (bad >= 0) return ssl__fail("rank %d has a different %s than rank 0: every rank must be started the same way", bad, what);
    return 0;
}

SSLDEF int ssl_comm_check_params(ssl_comm *c, const ssl_param_table *t, const char *what) {
    if (!c || c->world == 1 || t->n == 0) return 0;
    const float *host = ssl_params_host(t);
    uint32_t *mine = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (size_t)t->n, "checksums");
    uint32_t *all = (uint32_t *)ssl_malloc(sizeof(uint32_t) * (size_t)t->n * c->world, "checksums");
    for (int i = 0; i < t->n; i++) mine[i] = ssl_crc32(0, host + t->p[i].offset, sizeof(float) * (size_t)t->p[i].numel);
    ssl__gather_u32(c, mine, t->n, all);
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++)
        for (int r = 1; r < c->world && !rc; r++)
            if (all[(size_t)r * t->n + i] != all[i])
                rc = ssl__fail("%s: tensor '%s' differs between rank 0 and rank %d (crc %08x vs %08x): the ranks' "
                               "weights diverged", what, t->p[i].name, r, all[i], all[(size_t)r * t->n + i]);
    free(mine);
    free(all);
    return rc;
}

/* ---- 13. Evaluation and export ------------------------------------------ */

static float *ssl__normalized_copy(const float *x, int64_t n, int dim) {
    float *y = (float *)ssl_malloc(sizeof(float) * (size_t)(n * dim + 1), "normalized features");
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < dim; d++) s += (double)x[i * dim + d] * x[i * dim + d];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int d = 0; d < dim; d++) y[i * dim + d] = x[i * dim + d] * inv;
    }
    return y;
}

/* Indices of the 5 largest scores (ties: the lower class first). */
static void ssl__top5(const double *score, int n, int *top) {
    for (int j = 0; j < 5; j++) top[j] = -1;
    for (int c = 0; c < n; c++) {
        int j = 5;
        while (j > 0 && (top[j - 1] < 0 || score[c] > score[top[j - 1]])) j--;
        if (j < 5) {
            for (int m = 4; m > j; m--) top[m] = top[m - 1];
            top[j] = c;
        }
    }
}

SSLDEF int ssl_knn_eval(const float *train, const uint32_t *train_y, int64_t ntrain, const float *test,
                        const uint32_t *test_y, int64_t ntest, int dim, int num_classes, int k, float temperature,
                        ssl_probe_result *out) {
    if (ntrain < 1 || ntest < 1 || dim < 1 || num_classes < 1) return ssl__fail("knn: empty features");
    if (k < 1 || temperature <= 0) return ssl__fail("knn: k %d and temperature %g must be positive", k, temperature);
    if (k > ntrain) k = (int)ntrain;
    double t0 = ssl_now();
    float *tr = ssl__normalized_copy(train, ntrain, dim), *te = ssl__normalized_copy(test, ntest, dim);
    const int64_t chunk = 256;
    float *sim = (float *)ssl_malloc(sizeof(float) * (size_t)(chunk * ntrain), "knn similarities");
    int64_t *heap_i = (int64_t *)ssl_malloc(sizeof(int64_t) * k, "knn");
    float *heap_s = (float *)ssl_malloc(sizeof(float) * k, "knn");
    double *score = (double *)ssl_malloc(sizeof(double) * num_classes, "knn");
    int64_t hit1 = 0, hit5 = 0;
    for (int64_t r0 = 0; r0 < ntest; r0 += chunk) {
        int64_t rows = ntest - r0 < chunk ? ntest - r0 : chunk;
        ssl_gemm(0, 1, (int)rows, (int)ntrain, dim, 1.0f, te + r0 * dim, dim, tr, dim, 0.0f, sim, (int)ntrain);
        for (int64_t r = 0; r < rows; r++) {
            const float *s = sim + r * ntrain;
            /* the k largest, kept as a min-heap on similarity */
            int n = 0;
            for (int64_t j = 0; j < ntrain; j++) {
                if (n < k) {
                    int i = n++;
                    while (i > 0 && heap_s[(i - 1) / 2] > s[j]) { heap_s[i] = heap_s[(i - 1) / 2]; heap_i[i] = heap_i[(i - 1) / 2]; i = (i - 1) / 2; }
                    heap_s[i] = s[j]; heap_i[i] = j;
                } else if (s[j] > heap_s[0]) {
                    int i = 0;
                    for (;;) {
                        int a = 2 * i + 1, b = a + 1, m = i;
                        float v = s[j];
                        if (a < n && heap_s[a] < v) { m = a; v = heap_s[a]; }
                        if (b < n && heap_s[b] < v) m = b;
                        if (m == i) break;
                        heap_s[i] = heap_s[m]; heap_i[i] = heap_i[m];
                        i = m;
                    }
                    heap_s[i] = s[j]; heap_i[i] = j;
                }
            }
            for (int c = 0; c < num_classes; c++) score[c] = 0;
            for (int m = 0; m < n; m++) {
                uint32_t y = train_y[heap_i[m]];
                if (y < (uint32_t)num_classes) score[y] += exp((double)heap_s[m] / temperature);
            }
            int top[5];
            ssl__top5(score, num_classes, top);
            uint32_t want = test_y[r0 + r];
            hit1 += top[0] == (int)want;
            for (int j = 0; j < 5; j++) hit5 += top[j] == (int)want;
        }
    }
    out->top1 = (double)hit1 / ntest;
    out->top5 = (double)hit5 / ntest;
    out->best_epoch = out->epochs_run = 0;
    out->seconds = ssl_now() - t0;
    free(tr); free(te); free(sim); free(heap_i); free(heap_s); free(score);
    return 0;
}

SSLDEF void ssl_probe_config_linear(ssl_probe_config *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 100;
    c->batch_size = 256;
    c->lr = 1e-2;
    c->weight_decay = 0;
    c->seed = 0;
}

SSLDEF void ssl_probe_config_mlp(ssl_probe_config *c) {
    ssl_probe_config_linear(c);
    c->nhidden = 2;
    c->hidden[0] = c->hidden[1] = 2048;
    c->epochs = 50;
    c->lr = 1e-3;
    c->weight_decay = 1e-4;
    c->val_fraction = 0.1;
    c->patience = 5;
}

/* The probe network: [Linear-BN-ReLU] x nhidden, then Linear. */
typedef struct {
    int nl;                     /* linear layers */
    int in[5], out[5];
    int w[5], b[5];             /* parameter indices */
    ssl_batchnorm bn[4];
    int bnw[4], bnb[4], bnm[4], bnv[4];
    ssl_param_table t;
    /* activations for one batch: x[l] is the input of linear l */
    float *x[5], *a[4], *mean[4], *invstd[4], *logits, *dlog, *dx, *dy;
    int cap;
} ssl__probe_net;

static void ssl__probe_bind_bn(ssl__probe_net *p) {
    for (int l = 0; l + 1 < p->nl; l++) {
        ssl_batchnorm *bn = &p->bn[l];
        *bn = ssl_batchnorm_default();
        int c = p->out[l];
        bn->weight = ssl_tensor_vec(ssl_param_data(&p->t, p->bnw[l]), c);
        bn->bias = ssl_tensor_vec(ssl_param_data(&p->t, p->bnb[l]), c);
        bn->running_mean = ssl_tensor_vec(ssl_param_data(&p->t, p->bnm[l]), c);
        bn->running_var = ssl_tensor_vec(ssl_param_data(&p->t, p->bnv[l]), c);
    }
}

static void ssl__probe_build(ssl__probe_net *p, const ssl_probe_config *c, int dim, int classes, int cap) {
    memset(p, 0, sizeof *p);
    p->nl = c->nhidden + 1;
    int d = dim;
    for (int l = 0; l < p->nl; l++) {
        p->in[l] = d;
        p->out[l] = l < c->nhidden ? c->hidden[l] : classes;
        char name[64];
        int64_t ws[2] = {p->out[l], p->in[l]}, bs[1] = {p->out[l]};
        snprintf(name, sizeof name, "probe.%d.weight", 3 * l);
        p->w[l] = ssl_params_add(&p->t, name, SSL_PARAM_WEIGHT, 2, ws);
        snprintf(name, sizeof name, "probe.%d.bias", 3 * l);
        p->b[l] = ssl_params_add(&p->t, name, SSL_PARAM_BIAS, 1, bs);
        if (l < c->nhidden) {
            snprintf(name, sizeof name, "probe.%d.weight", 3 * l + 1);
            p->bnw[l] = ssl_params_add(&p->t, name, SSL_PARAM_BN_WEIGHT, 1, bs);
            snprintf(name, sizeof name, "probe.%d.bias", 3 * l + 1);
            p->bnb[l] = ssl_params_add(&p->t, name, SSL_PARAM_BN_BIAS, 1, bs);
            snprintf(name, sizeof name, "probe.%d.running_mean", 3 * l + 1);
            p->bnm[l] = ssl_params_add(&p->t, name, SSL_PARAM_BUFFER, 1, bs);
            snprintf(name, sizeof name, "probe.%d.running_var", 3 * l + 1);
            p->bnv[l] = ssl_params_add(&p->t, name, SSL_PARAM_BUFFER, 1, bs);
        }
        d = p->out[l];
    }
    ssl_params_alloc(&p->t);
    /* torch.nn.Linear's default init: U(-1/sqrt(in), 1/sqrt(in)) */
    ssl_rng r = ssl_rng_make(c->seed, 0, 0, 0, SSL_RNG_INIT);
    for (int l = 0; l < p->nl; l++) {
        float bound = 1.0f / sqrtf((float)p->in[l]);
        float *w = ssl_param_data(&p->t, p->w[l]), *b = ssl_param_data(&p->t, p->b[l]);
        for (int64_t i = 0; i < (int64_t)p->out[l] * p->in[l]; i++) w[i] = ssl_rng_range(&r, -bound, bound);
        for (int i = 0; i < p->out[l]; i++) b[i] = ssl_rng_range(&r, -bound, bound);
        if (l + 1 < p->nl)
            for (int i = 0; i < p->out[l]; i++) {
                ssl_param_data(&p->t, p->bnw[l])[i] = 1;
                ssl_param_data(&p->t, p->bnv[l])[i] = 1;
            }
    }
    ssl__probe_bind_bn(p);
    p->cap = cap;
    int widest = classes;
    for (int l = 0; l < p->nl; l++) widest = p->in[l] > widest ? p->in[l] : widest;
    for (int l = 0; l < p->nl; l++) p->x[l] = (float *)ssl_malloc(sizeof(float) * (size_t)cap * p->in[l], "probe activations");
    for (int l = 0; l + 1 < p->nl; l++) {
        p->a[l] = (float *)ssl_malloc(sizeof(float) * (size_t)cap * p->out[l], "probe activations");
        p->mean[l] = (float *)ssl_malloc(sizeof(float) * p->out[l], "probe bn");
        p->invstd[l] = (float *)ssl_malloc(sizeof(float) * p->out[l], "probe bn");
    }
    p->logits = (float *)ssl_malloc(sizeof(float) * (size_t)cap * classes, "probe logits");
    p->dlog = (float *)ssl_malloc(sizeof(float) * (size_t)cap * classes, "probe logits");
    p->dx = (float *)ssl_malloc(sizeof(float) * (size_t)cap * widest, "probe grads");
    p->dy = (float *)ssl_malloc(sizeof(float) * (size_t)cap * widest, "probe grads");
}

static void ssl__probe_free(ssl__probe_net *p) {
    for (int l = 0; l < p->nl; l++) free(p->x[l]);
    for (int l = 0; l + 1 < p->nl; l++) { free(p->a[l]); free(p->mean[l]); free(p->invstd[l]); }
    free(p->logits); free(p->dlog); free(p->dx); free(p->dy);
    ssl_params_free(&p->t);
}

/* Forward of n rows already in p->x[0]; logits in p->logits. */
static void ssl__probe_forward(ssl__probe_net *p, int n, int training) {
    for (int l = 0; l < p->nl; l++) {
        ssl_tensor x = ssl_tensor_mat(p->x[l], n, p->in[l]);
        ssl_tensor w = ssl_tensor_mat(ssl_param_data(&p->t, p->w[l]), p->out[l], p->in[l]);
        ssl_tensor b = ssl_tensor_vec(ssl_param_data(&p->t, p->b[l]), p->out[l]);
        if (l + 1 == p->nl) {
            ssl_tensor y = ssl_tensor_mat(p->logits, n, p->out[l]);
            ssl_linear_forward(&x, &w, &b, &y);
            break;
        }
        ssl_tensor a = ssl_tensor_mat(p->a[l], n, p->out[l]), nx = ssl_tensor_mat(p->x[l + 1], n, p->out[l]);
        ssl_tensor m = ssl_tensor_vec(p->mean[l], p->out[l]), s = ssl_tensor_vec(p->invstd[l], p->out[l]);
        ssl_linear_forward(&x, &w, &b, &a);
        ssl_batchnorm_forward(&p->bn[l], training, &a, &nx, &m, &s);
        ssl_relu_forward(&nx, &nx);
    }
}

static double ssl__probe_backward(ssl__probe_net *p, int n, const int32_t *y, int classes) {
    float loss = 0;
    ssl_tensor lg = ssl_tensor_mat(p->logits, n, classes), dl = ssl_tensor_mat(p->dlog, n, classes);
    memset(p->dlog, 0, sizeof(float) * (size_t)n * classes);
    ssl_softmax_xent_rows(&lg, y, 1.0f / n, &loss, &dl);
    memset(p->t.grad, 0, sizeof(float) * (size_t)p->t.total);
    float *dy = p->dlog;
    for (int l = p->nl - 1; l >= 0; l--) {
        ssl_tensor x = ssl_tensor_mat(p->x[l], n, p->in[l]);
        ssl_tensor w = ssl_tensor_mat(ssl_param_data(&p->t, p->w[l]), p->out[l], p->in[l]);
        ssl_tensor dw = ssl_tensor_mat(ssl_param_grad(&p->t, p->w[l]), p->out[l], p->in[l]);
        ssl_tensor db = ssl_tensor_vec(ssl_param_grad(&p->t, p->b[l]), p->out[l]);
        ssl_tensor g = ssl_tensor_mat(dy, n, p->out[l]);
        ssl_tensor dx = ssl_tensor_mat(p->dx, n, p->in[l]);
        ssl_linear_backward(&x, &w, &g, l ? &dx : NULL, &dw, &db);
        if (l == 0) break;
        /* through ReLU and BN of hidden layer l-1: x[l] is its output */
        int c = p->out[l - 1];
        ssl_tensor xo = ssl_tensor_mat(p->x[l], n, c), d = ssl_tensor_mat(p->dx, n, c);
        ssl_relu_backward(&xo, &d, &d);
        ssl_tensor a = ssl_tensor_mat(p->a[l - 1], n, c), da = ssl_tensor_mat(p->dy, n, c);
        ssl_tensor m = ssl_tensor_vec(p->mean[l - 1], c), s = ssl_tensor_vec(p->invstd[l - 1], c);
        ssl_tensor gw = ssl_tensor_vec(ssl_param_grad(&p->t, p->bnw[l - 1]), c);
        ssl_tensor gb = ssl_tensor_vec(ssl_param_grad(&p->t, p->bnb[l - 1]), c);
        ssl_batchnorm_backward(&p->bn[l - 1], 1, &a, &d, &m, &s, &da, &gw, &gb);
        /* linear l-1 reads its dy from p->dy and writes its dx to p->dx */
        dy = p->dy;
    }
    return loss;
}

/* top-1/top-5 of the probe on rows idx (or all n when idx is NULL). */
static void ssl__probe_eval(ssl__probe_net *p, const float *feat, const uint32_t *labels, const int64_t *idx, int64_t n,
                            int dim, const float *mu, const float *sd, int classes, double *top1, double *top5) {
    int64_t h1 = 0, h5 = 0;
    double *score = (double *)ssl_malloc(sizeof(double) * classes, "probe scores");
    for (int64_t s = 0; s < n; s += p->cap) {
        int m = (int)(n - s < p->cap ? n - s : p->cap);
        for (int r = 0; r < m; r++) {
            int64_t i = idx ? idx[s + r] : s + r;
            for (int d = 0; d < dim; d++) p->x[0][(int64_t)r * dim + d] = (feat[i * dim + d] - mu[d]) / sd[d];
        }
        ssl__probe_forward(p, m, 0);
        for (int r = 0; r < m; r++) {
            int64_t i = idx ? idx[s + r] : s + r;
            for (int c = 0; c < classes; c++) score[c] = p->logits[(int64_t)r * classes + c];
            int top[5];
            ssl__top5(score, classes, top);
            h1 += top[0] == (int)labels[i];
            for (int j = 0; j < 5; j++) h5 += top[j] == (int)labels[i];
        }
    }
    free(score);
    *top1 = n ? (double)h1 / n : 0;
    *top5 = n ? (double)h5 / n : 0;
}

SSLDEF int ssl_probe_train_eval(const ssl_probe_config *c, const float *train, const uint32_t *train_y, int64_t ntrain,
                                const float *test, const uint32_t *test_y, int64_t ntest, int dim, int num_classes,
                                ssl_probe_result *out) {
    if (c->nhidden < 0 || c->nhidden > 4 || c->epochs < 1 || c->batch_size < 1 || dim < 1 || num_classes < 1)
        return ssl__fail("probe: bad configuration (hidden layers %d, epochs %d, batch %d)", c->nhidden, c->epochs, c->batch_size);
    for (int64_t i = 0; i < ntrain; i++)
        if (train_y[i] >= (uint32_t)num_classes) return ssl__fail("probe: training label %u >= %d classes", train_y[i], num_classes);
    double t0 = ssl_now();
    /* split: a seeded permutation; the last val_fraction is held out */
    int64_t *perm = (int64_t *)ssl_malloc(sizeof(int64_t) * (size_t)ntrain, "probe split");
    for (int64_t i = 0; i < ntrain; i++) perm[i] = i;
    ssl_rng sr = ssl_rng_make(c->seed, 0, 0, 0, SSL_RNG_SPLIT);
    for (int64_t i = ntrain - 1; i > 0; i--) {
        int64_t j = ssl_rng_below(&sr, (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t nval = (int64_t)(ntrain * c->val_fraction), nfit = ntrain - nval;
    if (nfit < 1) { free(perm); return ssl__fail("probe: no training rows left after holding out %lld", (long long)nval); }
    /* standardize with the fitting rows' statistics */
    float *mu = (float *)ssl_calloc(sizeof(float) * dim, "probe stats"), *sd = (float *)ssl_calloc(sizeof(float) * dim, "probe stats");
    for (int d = 0; d < dim; d++) {
        double s = 0, s2 = 0;
        for (int64_t k = 0; k < nfit; k++) { double v = train[perm[k] * dim + d]; s += v; s2 += v * v; }
        double m = s / nfit, var = s2 / nfit - m * m;
        mu[d] = (float)m;
        sd[d] = (float)sqrt(var > 1e-12 ? var : 1e-12);
    }
    int bs = c->batch_size < nfit ? c->batch_size : (int)nfit;
    ssl__probe_net p;
    ssl__probe_build(&p, c, dim, num_classes, bs);
    ssl_optim_config oc = {SSL_OPTIM_ADAMW, 0.9, c->weight_decay, 0.001, 0.9, 0.999, 1e-8};
    ssl_optimizer opt;
    ssl_optim_init(&opt, &oc, &p.t);
    int32_t *yb = (int32_t *)ssl_malloc(sizeof(int32_t) * bs, "probe labels");
    float *best = (float *)ssl_malloc(sizeof(float) * (size_t)p.t.total, "probe best params");
    double best_val = -1, best_test1 = 0, best_test5 = 0, t1 = 0, t5 = 0;
    int best_epoch = -1, since = 0, epoch;
    int64_t steps_per_epoch = nfit / bs, step = 0, total = steps_per_epoch * c->epochs;
    for (epoch = 0; epoch < c->epochs; epoch++) {
        ssl_rng r = ssl_rng_make(c->seed, (uint32_t)epoch, 0, 0, SSL_RNG_ORDER);
        for (int64_t i = nfit - 1; i > 0; i--) {
            int64_t j = ssl_rng_below(&r, (uint32_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int64_t s = 0; s + bs <= nfit; s += bs) {
            for (int k = 0; k < bs; k++) {
                int64_t i = perm[s + k];
                yb[k] = (int32_t)train_y[i];
                for (int d = 0; d < dim; d++) p.x[0][(int64_t)k * dim + d] = (train[i * dim + d] - mu[d]) / sd[d];
            }
            ssl__probe_forward(&p, bs, 1);
            double loss = ssl__probe_backward(&p, bs, yb, num_classes);
            if (!isfinite(loss)) {
                ssl__fail("probe: loss is %g at epoch %d", loss, epoch);
                goto fail;
            }
            ssl_optim_step(&opt, &p.t, ssl_lr_at(c->lr, step++, 0, total, 0.0));
        }
        ssl__probe_eval(&p, test, test_y, NULL, ntest, dim, mu, sd, num_classes, &t1, &t5);
        double score = t1;
        if (nval > 0) {
            double v5;
            ssl__probe_eval(&p, train, train_y, perm + nfit, nval, dim, mu, sd, num_classes, &score, &v5);
        }
        if (score > best_val) {
            best_val = score;
            best_epoch = epoch;
            best_test1 = t1;
            best_test5 = t5;
            memcpy(best, p.t.data, sizeof(float) * (size_t)p.t.total);
            since = 0;
        } else if (c->patience > 0 && ++since >= c->patience) {
            epoch++;
            break;
        }
    }
    out->epochs_run = epoch;
    out->best_epoch = best_epoch;
    if (nval > 0) { out->top1 = best_test1; out->top5 = best_test5; }
    else { out->top1 = t1; out->top5 = t5; }
    out->seconds = ssl_now() - t0;
    free(perm); free(mu); free(sd); free(yb); free(best);
    ssl_optim_free(&opt);
    ssl__probe_free(&p);
    return 0;
fail:
    free(perm); free(mu); free(sd); free(yb); free(best);
    ssl_optim_free(&opt);
    ssl__probe_free(&p);
    return -1;
}

/* ---- safetensors ---- */

static const char *ssl__st_dtype(int d) {
    switch (d) {
    case SSL_F32: return "F32";
    case SSL_U8: return "U8";
    case SSL_I32: return "I32";
    case SSL_F64: return "F64";
    case SSL_I64: return "I64";
    case SSL_BF16: return "BF16";
    default: return NULL;
    }
}

SSLDEF int ssl_safetensors_write(const char *path, const ssl_tentry *e, int count, const char *metadata_json) {
    size_t cap = 256 + (metadata_json ? strlen(metadata_json) : 0), len = 0;
    for (int i = 0; i < count; i++) cap += strlen(e[i].name) * 2 + 128 + 24 * (size_t)e[i].ndim;
    char *hdr = (char *)ssl_malloc(cap, "safetensors header");
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    if (metadata_json) len += (size_t)snprintf(hdr + len, cap - len, "\"__metadata__\":%s", metadata_json);
    for (int i = 0; i < count; i++) {
        const char *dt = ssl__st_dtype(e[i].dtype);
        if (!dt) { free(hdr); return ssl__fail("tensor '%s': dtype %d has no safetensors name", e[i].name, e[i].dtype); }
        if ((size_t)ssl_tentry_numel(&e[i]) * ssl_dtype_size(e[i].dtype) != e[i].nbytes) {
            free(hdr);
            return ssl__fail("tensor '%s': %zu bytes do not match its shape", e[i].name, e[i].nbytes);
        }
        if (i || metadata_json) hdr[len++] = ',';
        len += ssl__json_str(hdr + len, cap - len, e[i].name);
        len += (size_t)snprintf(hdr + len, cap - len, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < e[i].ndim; d++) len += (size_t)snprintf(hdr + len, cap - len, "%s%lld", d ? "," : "", (long long)e[i].dims[d]);
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + e[i].nbytes));
        off += e[i].nbytes;
    }
    hdr[len++] = '}';
    while (len % 8) hdr[len++] = ' '; /* pad so the data starts 8-aligned */
    size_t total = 8 + len + off;
    uint8_t *buf = (uint8_t *)ssl_malloc(total, "safetensors file");
    uint64_t hl = len;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, hdr, len);
    size_t p = 8 + len;
    for (int i = 0; i < count; i++) {
        if (e[i].nbytes) memcpy(buf + p, e[i].data, e[i].nbytes);
        p += e[i].nbytes;
    }
    free(hdr);
    int rc = ssl_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}

/* A minimal JSON reader for safetensors headers. */
typedef struct { const char *p, *end; } ssl__js;
static void ssl__js_ws(ssl__js *j) { while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++; }
static int ssl__js_lit(ssl__js *j, char c) { ssl__js_ws(j); if (j->p < j->end && *j->p == c) { j->p++; return 1; } return 0; }
static int ssl__js_string(ssl__js *j, char *out, size_t cap) {
    ssl__js_ws(j);
    if (j->p >= j->end || *j->p != '"') return -1;
    j->p++;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        char ch = *j->p++;
        if (ch == '\\') {
            if (j->p >= j->end) return -1;
            ch = *j->p++;
            if (ch == 'u') { if (j->end - j->p < 4) return -1; j->p += 4; ch = '?'; }
            else if (ch == 'n') ch = '\n';
            else if (ch == 't') ch = '\t';
        }
        if (n + 1 < cap) out[n++] = ch;
        else return -1;
    }
    if (j->p >= j->end) return -1;
    j->p++;
    out[n] = 0;
    return 0;
}
static int ssl__js_uint(ssl__js *j, uint64_t *v) {
    ssl__js_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    uint64_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return -1;
        x = x * 10 + (uint64_t)(*j->p++ - '0');
    }
    *v = x;
    return 0;
}
/* skips any JSON value (for __metadata__ and unknown keys) */
static int ssl__js_skip(ssl__js *j, int depth) {
    ssl__js_ws(j);
    if (j->p >= j->end || depth > 32) return -1;
    char c = *j->p;
    if (c == '"') { char tmp[4096]; return ssl__js_string(j, tmp, sizeof tmp); }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (ssl__js_lit(j, close)) return 0;
        for (;;) {
            if (c == '{') { char k[4096]; if (ssl__js_string(j, k, sizeof k) || !ssl__js_lit(j, ':')) return -1; }
            if (ssl__js_skip(j, depth + 1)) return -1;
            if (ssl__js_lit(j, close)) return 0;
            if (!ssl__js_lit(j, ',')) return -1;
        }
    }
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']') j->p++;
    return 0;
}

SSLDEF int ssl_safetensors_read(const char *path, ssl_tfile *f) {
    memset(f, 0, sizeof *f);
    if (ssl_read_file(path, &f->bytes, &f->size) != 0) return -1;
#define SSL__SBAD(...) do { ssl__fail(__VA_ARGS__); ssl__fail_ctx("safetensors '%s'", path); ssl_tfile_free(f); return -1; } while (0)
    if (f->size < 10) SSL__SBAD("%zu bytes: too short for a header", f->size);
    uint64_t hl;
    memcpy(&hl, f->bytes, 8);
    if (hl < 2 || hl > f->size - 8 || hl > (100u << 20)) SSL__SBAD("header length %llu does not fit the file", (unsigned long long)hl);
    const uint8_t *data = f->bytes + 8 + hl;
    uint64_t dsize = f->size - 8 - hl;
    ssl__js j = {(const char *)f->bytes + 8, (const char *)f->bytes + 8 + hl};
    if (!ssl__js_lit(&j, '{')) SSL__SBAD("header is not a JSON object");
    int cap = 0;
    uint64_t covered = 0;
    f->meta = (char *)ssl_calloc(1, "meta");
    if (!ssl__js_lit(&j, '}')) {
        for (;;) {
            char key[1024];
            if (ssl__js_string(&j, key, sizeof key) || !ssl__js_lit(&j, ':')) SSL__SBAD("bad JSON in the header");
            if (!strcmp(key, "__metadata__")) {
                if (ssl__js_skip(&j, 0)) SSL__SBAD("bad __metadata__");
            } else {
                if (f->count == cap) {
                    cap = cap ? cap * 2 : 64;
                    f->entries = (ssl_tentry *)ssl_realloc(f->entries, sizeof(ssl_tentry) * cap, "tensor table");
                    f->names = (char **)ssl_realloc(f->names, sizeof(char *) * cap, "tensor names");
                }
                ssl_tentry *e = &f->entries[f->count];
                memset(e, 0, sizeof *e);
                f->names[f->count] = strdup(key);
                e->name = f->names[f->count];
                f->count++;
                char dt[16] = "";
                uint64_t b0 = 0, b1 = 0;
                int have_off = 0;
                e->dtype = -1;
                if (!ssl__js_lit(&j, '{')) SSL__SBAD("tensor '%s': expected an object", key);
                for (;;) {
                    char fk[64];
                    if (ssl__js_string(&j, fk, sizeof fk) || !ssl__js_lit(&j, ':')) SSL__SBAD("tensor '%s': bad JSON", key);
                    if (!strcmp(fk, "dtype")) {
                        if (ssl__js_string(&j, dt, sizeof dt)) SSL__SBAD("tensor '%s': bad dtype", key);
                        for (int d = 0; d <= SSL_BF16; d++)
                            if (ssl__st_dtype(d) && !strcmp(ssl__st_dtype(d), dt)) e->dtype = d;
                    } else if (!strcmp(fk, "shape")) {
                        if (!ssl__js_lit(&j, '[')) SSL__SBAD("tensor '%s': bad shape", key);
                        if (!ssl__js_lit(&j, ']'))
                            for (;;) {
                                uint64_t v;
                                if (e->ndim >= SSL_MAX_DIMS || ssl__js_uint(&j, &v)) SSL__SBAD("tensor '%s': bad shape", key);
                                e->dims[e->ndim++] = (int64_t)v;
                                if (ssl__js_lit(&j, ']')) break;
                                if (!ssl__js_lit(&j, ',')) SSL__SBAD("tensor '%s': bad shape", key);
                            }
                    } else if (!strcmp(fk, "data_offsets")) {
                        if (!ssl__js_lit(&j, '[') || ssl__js_uint(&j, &b0) || !ssl__js_lit(&j, ',') || ssl__js_uint(&j, &b1) ||
                            !ssl__js_lit(&j, ']'))
                            SSL__SBAD("tensor '%s': bad data_offsets", key);
                        have_off = 1;
                    } else if (ssl__js_skip(&j, 0)) {
                        SSL__SBAD("tensor '%s': bad JSON", key);
                    }
                    if (ssl__js_lit(&j, '}')) break;
                    if (!ssl__js_lit(&j, ',')) SSL__SBAD("tensor '%s': bad JSON", key);
                }
                if (e->dtype < 0) SSL__SBAD("tensor '%s': unsupported dtype '%s'", key, dt);
                if (!have_off || b0 > b1 || b1 > dsize) SSL__SBAD("tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", key,
                                                                  (unsigned long long)b0, (unsigned long long)b1, (unsigned long long)dsize);
                /* the shape's product is checked as it is formed (the limit
                   of SSLT files): a product past 2^64 would wrap to a small
                   size that matches the bytes */
                uint64_t numel = 1, lim = (uint64_t)1 << 40;
                for (int d = 0; d < e->ndim; d++) {
                    uint64_t v = (uint64_t)e->dims[d];
                    if (v > lim || (v && numel > lim / v)) SSL__SBAD("tensor '%s': absurd shape", key);
                    numel *= v;
                }
                if (numel * ssl_dtype_size(e->dtype) != b1 - b0) SSL__SBAD("tensor '%s': %llu bytes for its shape", key, (unsigned long long)(b1 - b0));
                e->data = data + b0;
                e->nbytes = b1 - b0;
                covered += b1 - b0;
            }
            if (ssl__js_lit(&j, '}')) break;
            if (!ssl__js_lit(&j, ',')) SSL__SBAD("bad JSON in the header");
        }
    }
    if (covered != dsize) SSL__SBAD("tensors cover %llu of the %llu data bytes", (unsigned long long)covered, (unsigned long long)dsize);
    ssl__tfile_align(f);
#undef SSL__SBAD
    return 0;
}

#endif /* SSL_IMPLEMENTATION_DONE */
#endif /* SSL_IMPLEMENTATION */
