/* test.h - the tiny test harness of ssl.h.

   TEST(name) { ... } registers a test. Checks state what they expect in
   numbers; a failed check prints file:line, the expression and the values,
   and marks the test failed. The run ends with "N passed, N failed" and
   exits non-zero if any test failed. One file per binary defines TEST_MAIN
   (and SSL_IMPLEMENTATION) to get main() and the registry. */
#ifndef SSL_TEST_H
#define SSL_TEST_H
#include "ssl.h"
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_fail_check(const char *file, int line, const char *cond, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Marks the running test skipped (reason printed); counted apart. */
void test_skip(const char *reason);
/* checks failed so far in the running test */
int test_failures(void);
const char *test_tmp(const char *name);          /* path under the test tmp dir (static ring buffer) */
const char *test_data(const char *name);         /* path under the test data dir */
int test_run(const char *cmd, char **output);    /* runs a shell command, captures stdout+stderr */
/* The program a test runs: $env if set, else def ("./pack", "./train"...). */
const char *test_bin(const char *env, const char *def);
/* test_run of "PROG ARGS" with ARGS printf-formatted (prog NULL: ARGS is the
   whole command); the output goes to *out (free it), or is dropped if out
   is NULL. Returns the exit code. */
int test_runf(char **out, const char *prog, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_write(const char *path, const void *p, size_t n);
int test_mkdirs(const char *path);
/* The first `limit` Fashion-MNIST test images ($SSL_FMNIST, else Debian's
   folder) packed by ./pack into test_tmp(name), once per run of the test
   binary; the pack's path (a failed check when packing fails). */
const char *test_fmnist_pack(const char *name, int limit);
/* Tests that need several MPI ranks start this binary again under mpirun,
   each rank running the same test with SSL_TEST_MPI_CHILD=1.
   test_mpirun: the mpirun command line, or NULL with the test skipped,
   saying why (no MPI build, no mpirun, the sanitizers). test_is_child: 1
   in a rank. test_launch_ranks: test `name` as np ranks, their output in
   *out; the exit code (-1: nothing launched). */
const char *test_mpirun(void);
int test_is_child(void);
int test_launch_ranks(const char *name, int np, char **out);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void test_reg_##name(void) {                 \
        test_register(#name, __FILE__, test_##name);                                 \
    }                                                                                \
    static void test_##name(void)

/* the condition is passed as a string argument, never as a format */
#define CHECK(cond, ...) \
    do { if (!(cond)) test_fail_check(__FILE__, __LINE__, #cond, " " __VA_ARGS__); } while (0)
#define CHECK_EQ(a, b)                                                                                  \
    do {                                                                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);                                             \
        if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s: got %lld, expected %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                            \
    do {                                                                                                 \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                                   \
        if (!(fabs(a_ - b_) <= t_))                                                                      \
            test_fail(__FILE__, __LINE__, "%s ~ %s: got %.9g, expected %.9g within %.3g", #a, #b, a_, b_, t_); \
    } while (0)
/* expr must return 0 */
#define CHECK_OK(expr) \
    do { if ((expr) != 0) test_fail(__FILE__, __LINE__, "%s failed: %s", #expr, ssl_last_error()); } while (0)
/* expr must fail with a message containing `needle` */
#define CHECK_ERR(expr, needle)                                                                         \
    do {                                                                                                \
        int r_ = (expr);                                                                                \
        if (r_ == 0) test_fail(__FILE__, __LINE__, "%s succeeded, expected an error with '%s'", #expr, needle); \
        else if (!strstr(ssl_last_error(), needle))                                                     \
            test_fail(__FILE__, __LINE__, "%s: error '%s' does not mention '%s'", #expr, ssl_last_error(), needle); \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                                     \
    do {                                                                                                \
        const char *h_ = (hay);                                                                         \
        if (!h_ || !strstr(h_, needle))                                                                 \
            test_fail(__FILE__, __LINE__, "expected '%s' in: %.600s", needle, h_ ? h_ : "(null)");      \
    } while (0)

#ifdef TEST_MAIN
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name, *file; test_fn fn; } test_entry;
static test_entry test__all[512];
static int test__n, test__cur_failed, test__cur_skipped;

int test_failures(void) { return test__cur_failed; }

void test_skip(const char *reason) {
    printf("    skipped: %s\n", reason);
    test__cur_skipped = 1;
}

void test_register(const char *name, const char *file, test_fn fn) {
    SSL_ASSERT(test__n < 512, "too many tests");
    test__all[test__n].name = name;
    test__all[test__n].file = file;
    test__all[test__n++].fn = fn;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    test__cur_failed++;
}

void test_fail_check(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "    %s:%d: CHECK(%s) ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    test__cur_failed++;
}

static const char *test__env(const char *k, const char *def) {
    const char *v = getenv(k);
    return v && *v ? v : def;
}
/* dir/name in ring `which` of 8 buffers: a few paths of each kind stay
   alive at once, and data paths never overwrite tmp paths */
static const char *test__path(int which, const char *dir, const char *name) {
    static char ring[2][8][SSL_STR];
    static int k[2];
    char *o = ring[which][k[which]++ % 8];
    snprintf(o, SSL_STR, "%s/%s", dir, name);
    return o;
}
const char *test_tmp(const char *name) { return test__path(0, test__env("SSL_TEST_TMP", "build/tmp"), name); }
const char *test_data(const char *name) { return test__path(1, test__env("SSL_TEST_DATA", "build/data"), name); }
const char *test_bin(const char *env, const char *def) { return test__env(env, def); }
int test_mkdirs(const char *path) {
    char cmd[SSL_STR + 16];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    return system(cmd);
}
int test_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}
int test_run(const char *cmd, char **output) {
    char full[4 * SSL_STR];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 1024) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int st = pclose(p);
    if (output) *output = buf; else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int test_runf(char **out, const char *prog, const char *fmt, ...) {
    char args[3 * SSL_STR], cmd[4 * SSL_STR];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (prog) snprintf(cmd, sizeof cmd, "%s %s", prog, args);
    else snprintf(cmd, sizeof cmd, "%s", args);
    char *o = NULL;
    int rc = test_run(cmd, &o);
    if (out) *out = o;
    else free(o);
    return rc;
}

const char *test_fmnist_pack(const char *name, int limit) {
    static char done[8][SSL_STR]; /* the packs made so far (their paths live as long as the binary) */
    static int n;
    const char *path = test_tmp(name);
    for (int i = 0; i < n; i++)
        if (!strcmp(done[i], path)) return done[i];
    char *slot = done[n < 8 ? n++ : 7];
    snprintf(slot, SSL_STR, "%s", path);
    const char *dir = getenv("SSL_FMNIST") ? getenv("SSL_FMNIST") : "/usr/share/datasets/fashion-mnist";
    char *out = NULL;
    if (test_runf(&out, NULL, "%s %s/t10k-images-idx3-ubyte.gz %s limit=%d force=1", test_bin("SSL_PACK", "./pack"), dir, slot,
                  limit) != 0) {
        test_fail(__FILE__, __LINE__, "packing %d Fashion-MNIST images from %s failed: %.1000s", limit, dir, out ? out : "");
    }
    free(out);
    return slot;
}

const char *test_mpirun(void) {
#if defined(__SANITIZE_ADDRESS__)
    test_skip("under the sanitizers: MPI's own allocations are not ours (make test runs these)");
    return NULL;
#endif
#ifndef SSL_MPI
    test_skip("built without MPI (SSL_MPI): apt-get install libopenmpi-dev openmpi-bin, then make");
    return NULL;
#else
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        test_skip("mpirun not found (apt-get install openmpi-bin)");
        return NULL;
    }
    /* root in containers; more ranks than cores on a small machine; no
       warnings about fabrics it does not have */
    return "mpirun --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none";
#endif
}

int test_is_child(void) { return getenv("SSL_TEST_MPI_CHILD") != NULL; }

int test_launch_ranks(const char *name, int np, char **out) {
    *out = NULL;
    const char *mr = test_mpirun();
    if (!mr) return -1;
    char self[SSL_STR];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        test_fail(__FILE__, __LINE__, "cannot find this binary (/proc/self/exe)");
        return -1;
    }
    self[k] = 0;
    return test_runf(out, NULL, "SSL_TEST_MPI_CHILD=1 %s -x SSL_TEST_MPI_CHILD -np %d %s =%s", mr, np, self, name);
}

int main(int argc, char **argv) {
    /* arguments: run the tests whose names contain any of them ("=name":
       exactly that one); --list prints the names */
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < test__n; i++) printf("%s\n", test__all[i].name);
        return 0;
    }
    test_mkdirs(test__env("SSL_TEST_TMP", "build/tmp"));
    ssl_set_verbosity(0);
    int passed = 0, failed = 0, skipped = 0;
    double t0 = ssl_now();
    for (int i = 0; i < test__n; i++) {
        int take = argc < 2;
        for (int k = 1; k < argc && !take; k++)
            take = argv[k][0] == '=' ? !strcmp(test__all[i].name, argv[k] + 1) : strstr(test__all[i].name, argv[k]) != NULL;
        if (!take) continue;
        test__cur_failed = test__cur_skipped = 0;
        double t = ssl_now();
        test__all[i].fn();
        t = ssl_now() - t;
        if (test__cur_failed) { failed++; printf("FAIL %-40s (%.2fs)\n", test__all[i].name, t); }
        else if (test__cur_skipped) { skipped++; printf("skip %-40s\n", test__all[i].name); }
        else { passed++; printf("ok   %-40s (%.2fs)\n", test__all[i].name, t); }
        fflush(stdout);
    }
    printf("(%.1fs)\n", ssl_now() - t0);
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
#endif
#endif
