/* The GPU suite: every CUDA path against the CPU reference. Built and run by
   `make test-gpu`. Each comparison runs twice (see gpu_common.h): emu_* on
   the host through ssl.cu's functors, gpu_* on the device. Without a CUDA
   device the gpu_* tests fail at once with "no CUDA device". */
#define SSL_IMPLEMENTATION
#define TEST_MAIN
#include "gpu_common.h"

#include <unistd.h>

/* ---- the shared helpers ---- */
int g_begin(int gpu) {
    if (!gpu) {
        /* strict: host code touching device memory faults; SSL_TEST_EMU=1
           (make sanitize): plain, device memory on AddressSanitizer's heap */
        const char *e = getenv("SSL_TEST_EMU");
        ssl_cuda_set_emulation(e && *e == '1' ? 1 : 2);
        return 1;
    }
    ssl_cuda_set_emulation(0);
    static int have = -1;
    if (have < 0) have = ssl_cuda_device_count() > 0;
    CHECK(have, "no CUDA device: the gpu_* tests need an NVIDIA GPU (the emu_* tests run without one)");
    return have;
}
/* Both modes go through the backend's own memory calls: in (strict)
   emulation they are host memory that only the backend may touch. */
float *g_alloc(int gpu, size_t n) {
    (void)gpu;
    return (float *)ssl_cuda_malloc(sizeof(float) * (n ? n : 1), "test tensor");
}
void g_free(int gpu, void *p) {
    (void)gpu;
    ssl_cuda_free(p);
}
void g_up(int gpu, void *dst, const void *src, size_t bytes) {
    (void)gpu;
    ssl_cuda_to_device(dst, src, bytes);
}
void g_down(int gpu, void *dst, const void *src, size_t bytes) {
    (void)gpu;
    ssl_cuda_to_host(dst, src, bytes);
}
int g_misalign = 0;
/* room for n elements of size es, one element in when g_misalign; the
   allocation's start is found again from the address (allocations are
   256-byte aligned, the shifted data never 16-byte aligned) */
static void *g_place(int gpu, size_t n, size_t es) {
    static unsigned count;
    char *p = (char *)g_alloc(gpu, (n * es + 16) / sizeof(float));
    if (g_misalign == 3) { /* this one only */
        g_misalign = 0;
        return p + es;
    }
    return g_misalign == 1 || (g_misalign == 2 && count++ % 2) ? p + es : p;
}
ssl_tensor g_tensor(int gpu, const ssl_tensor *h) {
    ssl_tensor d = *h;
    d.device = SSL_DEV_CUDA;
    if (!h->data) return d;
    size_t n = (size_t)ssl_tensor_numel(h);
    d.data = (float *)g_place(gpu, n, sizeof(float));
    g_up(gpu, d.data, h->data, sizeof(float) * n);
    return d;
}
float *g_fetch(int gpu, const ssl_tensor *d) {
    size_t n = (size_t)ssl_tensor_numel(d);
    float *h = (float *)ssl_malloc(sizeof(float) * (n ? n : 1), "fetched tensor");
    g_down(gpu, h, d->data, sizeof(float) * n);
    return h;
}
void g_release(int gpu, ssl_tensor *d) {
    if (d->data) g_free(gpu, (char *)d->data - (uintptr_t)d->data % 16);
    d->data = NULL;
}
ssl_tensor g_rand(uint64_t seed, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, float lo, float hi) {
    ssl_tensor t = ssl_tensor_make(NULL, ndim, d0, ndim > 1 ? d1 : 1, ndim > 2 ? d2 : 1, ndim > 3 ? d3 : 1);
    int64_t n = ssl_tensor_numel(&t);
    t.data = (float *)ssl_malloc(sizeof(float) * (size_t)(n ? n : 1), "random tensor");
    ssl_rng r = ssl_rng_make(seed, 0, 0, 0, 0);
    for (int64_t i = 0; i < n; i++) t.data[i] = ssl_rng_range(&r, lo, hi);
    return t;
}
double g_close(const char *file, int line, const char *what, const float *got, const float *want, int64_t n,
               double atol, double rtol) {
    double worst = 0, worst_excess = 0;
    int64_t at = -1, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i], e = fabs(g - w);
        if (isnan(g) != isnan(w) || (isinf(w) && g != w)) e = INFINITY;
        else if (isnan(w) || (isinf(w) && g == w)) e = 0;
        double excess = e - (atol + rtol * fabs(w));
        if (excess > 0) bad++;
        if (e > worst) worst = e;
        if (at < 0 || excess > worst_excess) worst_excess = excess, at = i;
    }
    if (bad)
        test_fail(file, line, "%s: %lld of %lld values off (atol %.3g, rtol %.3g); worst at [%lld]: got %.9g, want %.9g",
                  what, (long long)bad, (long long)n, atol, rtol, (long long)at, got[at], want[at]);
    return worst;
}
double g_close_t(const char *file, int line, int gpu, const char *what, const ssl_tensor *d, const ssl_tensor *h,
                 double atol, double rtol) {
    float *got = g_fetch(gpu, d);
    double e = g_close(file, line, what, got, h->data, ssl_tensor_numel(h), atol, rtol);
    free(got);
    return e;
}

/* ---- bf16 tensors ---- */
float r16(float v) { return ssl_bf16_to_float(ssl_bf16_from_float(v)); }
/* the host tensor's values rounded to bf16, in place */
ssl_tensor round_h(ssl_tensor t) {
    for (int64_t i = 0; i < ssl_tensor_numel(&t); i++) t.data[i] = r16(t.data[i]);
    return t;
}
/* a bf16 copy of host tensor h on the mode's side */
ssl_tensor b_tensor(int gpu, const ssl_tensor *h) {
    ssl_tensor d = ssl_tensor_as(*h, SSL_BF16);
    d.device = SSL_DEV_CUDA;
    if (!h->data) return d;
    size_t n = (size_t)ssl_tensor_numel(h);
    ssl_bf16 *t = (ssl_bf16 *)ssl_malloc(sizeof(ssl_bf16) * (n ? n : 1), "bf16 staging");
    for (size_t i = 0; i < n; i++) t[i] = ssl_bf16_from_float(h->data[i]);
    d.data = (float *)g_place(gpu, n, sizeof(ssl_bf16));
    g_up(gpu, d.data, t, sizeof(ssl_bf16) * n);
    free(t);
    return d;
}
/* a bf16 device tensor's values as fp32 on the host (free them) */
float *b_fetch(int gpu, const ssl_tensor *d) {
    size_t n = (size_t)ssl_tensor_numel(d);
    ssl_bf16 *t = (ssl_bf16 *)ssl_malloc(sizeof(ssl_bf16) * (n ? n : 1), "bf16 staging");
    float *h = (float *)ssl_malloc(sizeof(float) * (n ? n : 1), "fetched tensor");
    g_down(gpu, t, d->data, sizeof(ssl_bf16) * n);
    for (size_t i = 0; i < n; i++) h[i] = ssl_bf16_to_float(t[i]);
    free(t);
    return h;
}
double b_close(const char *file, int line, int gpu, const char *what, const ssl_tensor *d, const ssl_tensor *h,
                      double atol, double rtol) {
    CHECK(d->dtype == SSL_BF16, "%s: the device tensor is not bf16", what);
    float *got = b_fetch(gpu, d);
    double e = g_close(file, line, what, got, h->data, ssl_tensor_numel(h), atol, rtol);
    free(got);
    return e;
}
#define B_CLOSE_T(gpu, what, d, h, atol, rtol) b_close(__FILE__, __LINE__, gpu, what, d, h, atol, rtol)
/* ---- the device itself ---- */
TEST(gpu_is_visible) {
    int n = ssl_cuda_device_count();
    CHECK(n > 0, "no CUDA device visible");
    char d[256];
    if (n > 0 && ssl_cuda_describe(0, d, sizeof d) == 0) printf("    device 0: %s\n", d);
    /* the profile's bandwidth column divides by it: any data-centre GPU
       since 2016 has 500 GB/s to 10 TB/s */
    double bw = n > 0 ? ssl_cuda_peak_gbs(0) : 0;
    CHECK(n <= 0 || (bw > 500 && bw < 10000), "device 0 reports %.0f GB/s of memory bandwidth", bw);
}

TEST(gpu_rng_matches_host) {
    /* the same Philox streams on both devices, bit for bit */
    if (!g_begin(1)) return;
    enum { N = 100000 };
    static float dev[N];
    CHECK_OK(ssl_cuda_rng_uniform(1234567, SSL_RNG_CROP, dev, N));
    int diff = 0;
    for (int i = 0; i < N; i++) {
        ssl_rng r = ssl_rng_make(1234567, 0, (uint32_t)i, 0, SSL_RNG_CROP);
        if (ssl_rng_uniform(&r) != dev[i]) diff++;
    }
    CHECK_EQ(diff, 0);
}

/* Runs this test binary again as `ENV=1 ./tests-gpu test`, output in *out
   (free it); the exit status, or -1 if the binary cannot name itself. */
static int run_child(const char *env, const char *test, char **out) {
    char self[4096], cmd[4300];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(k > 0, "readlink /proc/self/exe");
    if (k <= 0) return -1;
    self[k] = 0;
    snprintf(cmd, sizeof cmd, "%s=1 '%s' %s", env, self, test);
    return test_run(cmd, out);
}

/* Run by gpu_oom_message in a child process: asks for 1 PiB. */
TEST(oom_child_) {
    if (!getenv("SSL_GPU_OOM_CHILD")) return;
    void *p = ssl_cuda_malloc((size_t)1 << 50, "activations");
    ssl_cuda_free(p);
}

TEST(gpu_oom_message) {
    /* out of GPU memory names the size, what it was for, and the remedy */
    if (!g_begin(1)) return;
    char *out = NULL;
    int rc = run_child("SSL_GPU_OOM_CHILD", "oom_child_", &out);
    if (rc == -1) return;
    CHECK(rc != 0, "the child should stop on out-of-memory");
    CHECK_CONTAINS(out, "out of GPU memory");
    CHECK_CONTAINS(out, "1048576.00 GiB");
    CHECK_CONTAINS(out, "activations");
    CHECK_CONTAINS(out, "smaller batch");
    free(out);
}

TEST(gpu_buf_reserve_grows) {
    /* device scratch: grows, keeps the pointer while it fits */
    if (!g_begin(1)) return;
    ssl_buf b = {0};
    void *p1 = ssl_cuda_buf_reserve(&b, 1000);
    void *p2 = ssl_cuda_buf_reserve(&b, 2000);
    CHECK(p1 && p1 == p2, "4096-byte first reservation should hold 2000 bytes");
    void *p3 = ssl_cuda_buf_reserve(&b, 1 << 20);
    CHECK(p3 && b.cap >= (1u << 20), "grown to 1 MiB");
    ssl_cuda_memset0(p3, 1 << 20);
    ssl_cuda_buf_free(&b);
    CHECK(b.p == NULL && b.cap == 0, "freed");
}

/* Run by emu_strict_emulation_catches_host_access in a child process:
   host code writing through a device pointer. */
TEST(strict_child_) {
    if (!getenv("SSL_GPU_STRICT_CHILD")) return;
    ssl_cuda_set_emulation(2);
    float *d = (float *)ssl_cuda_malloc(4096, "the child's activations");
    d[10] = 1.0f; /* what a GPU would not allow */
    ssl_cuda_free(d);
}

TEST(emu_strict_emulation_catches_host_access) {
    /* strict emulation: device memory is closed to host code outside the
       backend, and touching it stops with the allocation's name */
    char *out = NULL;
    int rc = run_child("SSL_GPU_STRICT_CHILD", "strict_child_", &out);
    if (rc == -1) return;
    CHECK(rc != 0, "the child should stop at the host access");
    CHECK_CONTAINS(out, "host code touched device memory (the child's activations, byte 40 of 4096)");
    free(out);
    /* inside the backend the same memory is open */
    ssl_cuda_set_emulation(2);
    float *d = (float *)ssl_cuda_malloc(4096, "activations"), v = 3.0f, back = 0;
    ssl_cuda_to_device(d + 10, &v, sizeof v);
    ssl_cuda_to_host(&back, d + 10, sizeof back);
    CHECK(back == 3.0f, "round trip through strict device memory: %g", back);
    ssl_cuda_free(d);
}
