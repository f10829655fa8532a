// ssl.cu - the CUDA backend of ssl.h.
//
// Kernels and cuBLAS behind the ssl_cuda_* functions that ssl.h declares.
// Per-element math comes from ssl.h's SSL_HD functions, so the GPU computes
// what the CPU reference computes.
//
// HOW IT IS BUILT. Every op is a few functors: small structs whose
// __host__ __device__ operator()(i) does the work of element (or row, or
// chunk) i. An executor runs them: ssl__gpu launches one generic
// grid-stride kernel per functor; ssl__cpu loops over i on the host. So the
// index math of every kernel (im2col, col2im, pooling windows, the
// augmentation pipeline, the optimizer's chunk table) also runs on machines
// without a GPU: ssl_cuda_set_emulation(1) makes every ssl_cuda_* function
// run its functors on host memory (GEMMs through ssl_gemm), and
// tests/gpu_*.c compare that against the CPU reference in `make test-gpu`
// even where no GPU is present.
//
// SEMANTICS. Each op mirrors its CPU implementation in ssl.h: same
// formulas, same SSL_HD helpers, fp64 accumulation where the CPU sums in
// double. Reductions are deterministic (fixed chunking, partial sums added
// in a fixed order): the same inputs give the same bits run after run.
// Scatters (col2im, max-pool backward) are written as gathers that add in
// the CPU's order, so no atomics. Reductions are sequential per chunk, row
// or column (batch-norm sums in two levels), not tuned block reductions.
//
// STORAGE AND INDEXING. Layer functors are templates on the stored type
// (float or ssl_bf16: read as fp32, rounded once when stored); the ReLU
// masks of GPU plans are bits. They index with 32 bits and divide by
// invariant integers (multiply-high and shift), and move 8 values (16
// bytes) per thread where sizes and alignment allow: see "index math" and
// ssl__vio below for why.
//
// STREAMS. Compute runs on the legacy default stream; the loader's GPU mode
// copies uint8 crops on its own non-blocking copy stream, and the compute
// stream waits on an event. Scalars (losses, dot) come back with a
// synchronous copy.
//
// ERRORS. Every CUDA and cuBLAS call and every launch is checked; a failure
// stops with file, line, the call and the library's own error string.
// Out of GPU memory stops with how much was asked, for what, how much is
// free, and the advice to use a smaller batch.
//
// CHOICES. What changes results or speed (precision, the convolution
// engine, kept im2col columns) is set through ssl_cuda_set_* by the
// programs, from their option tables (conv=, precision=, keep_cols=), so
// it is printed, logged and checkpointed with the run. The environment
// only debugs and tests; these variables are the whole list:
//   SSL_CUDA_SYNC=1        synchronize after every launch and library call,
//                          so an asynchronous fault is reported at the call
//                          that caused it
//   SSL_CUDA_EMULATE=1|2   (./train, ./probe with device=cuda) run the GPU
//                          code path on the host: 1 plain, 2 strict (host
//                          code touching device memory faults at once)
//   SSL_EMU_ORDER=forward|reverse|shuffle   the order emulation visits a
//                          launch's indices in (a race shows as a change)
//   SSL_EMU_GPU_MEM=BYTES  the device memory emulation reports (default
//                          80 GiB)
//   SSL_EMU_GPU_BLOCKS=1   emulation cuts im2col into the GPU's blocks, not
//                          the CPU's (bench/traffic.py's bookkeeping)
//
// Build: nvcc -arch=sm_90 -c ssl.cu (the Makefile does this when it finds
// nvcc).
#define SSL_CUDA 1
#include "ssl.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// ---- errors ------------------------------------------------------------------
static void ssl__cuda_die(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "ssl.cu: CUDA error at %s:%d: %s: %s\n", file, line, what, msg);
    fflush(stderr);
    abort();
}
#define SSL_CUDA_CHECK(call)                                                                    \
    do {                                                                                        \
        cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess) ssl__cuda_die(__FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)
#define SSL_CUBLAS_CHECK(call)                                                                          \
    do {                                                                                                \
        cublasStatus_t s_ = (call);                                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS) ssl__cuda_die(__FILE__, __LINE__, #call, cublasGetStatusString(s_)); \
        ssl__sync_check(__FILE__, __LINE__, #call);                                                       \
    } while (0)

static int ssl__sync_launches = -1; /* SSL_CUDA_SYNC=1: synchronize after each launch */
static double ssl__blocked;          /* seconds the host waited for the device: see ssl__block */
/* SSL_CUDA_SYNC=1: a fault inside a kernel (ours, cuBLAS's, cuDNN's)
   reported at the call that launched it */
static int ssl__sync_on(void) {
    if (ssl__sync_launches < 0) {
        const char *s = getenv("SSL_CUDA_SYNC");
        ssl__sync_launches = s && *s && *s != '0';
    }
    return ssl__sync_launches;
}
static void ssl__sync_check(const char *file, int line, const char *what) {
    if (!ssl__sync_on()) return;
    double t0 = ssl_now();
    cudaError_t e = cudaDeviceSynchronize();
    ssl__blocked += ssl_now() - t0;
    if (e != cudaSuccess) ssl__cuda_die(file, line, what, cudaGetErrorString(e));
}
static void ssl__launch_check(const char *file, int line, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) ssl__cuda_die(file, line, what, cudaGetErrorString(e));
    ssl__sync_check(file, line, what);
}

// ---- memory ------------------------------------------------------------------
/* In emulation (ssl_cuda_set_emulation) "device" memory is host memory and
   copies are memcpy, so whole GPU code paths (the trainer's included) run
   their functors on machines without a GPU. Do not switch with live
   buffers. */
static int ssl__emu = 0;
/* host waits for the device (synchronous copies, device syncs), counted
   always: the profile reports them per step (each one drains the GPU's
   queue, and the GPU idles until the host queues more) */
static long long ssl__waits;
/* seconds the host spent blocked on the device (the waits above, device
   syncs, event waits), so that a step's own host time (wall time less
   this) can be told from the GPU's: ssl_cuda_blocked_s */
struct ssl__block {
    double t0;
    ssl__block() : t0(ssl_now()) {}
    ~ssl__block() { ssl__blocked += ssl_now() - t0; }
};
#define SSL__BLOCKED ssl__block blocked_
/* A launch returns in a few microseconds, unless the device's queue of
   pending launches (about a thousand) is full: then it waits for the GPU,
   and that is time blocked, not the host's own. */
static void ssl__launch_waited(double t0, double limit) {
    double dt = ssl_now() - t0;
    if (dt > limit) ssl__blocked += dt;
}
extern "C" double ssl_cuda_blocked_s(void) { return ssl__blocked; }

/* STRICT EMULATION (ssl_cuda_set_emulation(2), SSL_CUDA_EMULATE=2): the
   emulated device memory is mapped PROT_NONE whenever no ssl_cuda_* call is
   running, so host code that reads or writes through a device pointer (on
   a GPU: a crash or garbage) stops at once on a machine without one, with
   the name of the allocation it touched. Every entry point of this file
   that touches device memory holds an ssl__guard, which opens all of it
   for the call (nested calls count). */
struct ssl__region {
    char *p;
    size_t len;
    const char *what;
};
static ssl__region *ssl__regions;
static int ssl__nregions, ssl__region_cap, ssl__guard_depth;
static void ssl__regions_protect(int prot) {
    for (int i = 0; i < ssl__nregions; i++)
        if (mprotect(ssl__regions[i].p, ssl__regions[i].len, prot)) {
            perror("ssl.cu: mprotect");
            abort();
        }
}
struct ssl__guard {
    ssl__guard() {
        if (ssl__emu == 2 && ssl__guard_depth++ == 0) ssl__regions_protect(PROT_READ | PROT_WRITE);
    }
    ~ssl__guard() {
        if (ssl__emu == 2 && --ssl__guard_depth == 0) ssl__regions_protect(PROT_NONE);
    }
};
#define SSL__GUARD ssl__guard guard_
static void ssl__strict_fault(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    char *a = (char *)si->si_addr;
    for (int i = 0; i < ssl__nregions; i++)
        if (a >= ssl__regions[i].p && a < ssl__regions[i].p + ssl__regions[i].len) {
            char msg[512];
            int n = snprintf(msg, sizeof msg,
                             "ssl.cu: strict emulation: host code touched device memory (%s, byte %lld of %lld) "
                             "outside the CUDA backend; on a GPU this is a bad host access\n",
                             ssl__regions[i].what, (long long)(a - ssl__regions[i].p), (long long)ssl__regions[i].len);
            if (write(2, msg, (size_t)n) < 0) {}
            signal(SIGABRT, SIG_DFL);
            abort();
        }
    signal(sig, SIG_DFL); /* not ours: the default action */
    raise(sig);
}
static void *ssl__strict_alloc(size_t bytes, const char *what) {
    static int handler;
    if (!handler) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = ssl__strict_fault;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        handler = 1;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (bytes + page - 1) / page * page;
    void *p = mmap(NULL, len, ssl__guard_depth ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "ssl.cu: strict emulation: cannot map %zu bytes for %s\n", bytes, what);
        abort();
    }
    if (ssl__nregions == ssl__region_cap) {
        ssl__region_cap = ssl__region_cap ? 2 * ssl__region_cap : 64;
        ssl__regions = (ssl__region *)realloc(ssl__regions, sizeof(ssl__region) * (size_t)ssl__region_cap);
        if (!ssl__regions) abort();
    }
    ssl__region r = {(char *)p, len, what ? what : "device memory"};
    ssl__regions[ssl__nregions++] = r;
    return p;
}
static int ssl__strict_free(void *p) {
    for (int i = 0; i < ssl__nregions; i++)
        if (ssl__regions[i].p == p) {
            munmap(p, ssl__regions[i].len);
            ssl__regions[i] = ssl__regions[--ssl__nregions];
            return 1;
        }
    return 0;
}

/* Live device allocations (pointer, size), every mode: ssl_cuda_live_bytes
   says what the program holds, so a run can show that it stops growing
   (progressive resolution, evaluation, checkpoints). A process holds tens
   of them and frees few, so a list searched from its end will do. */
struct ssl__live {
    void *p;
    size_t bytes;
};
static ssl__live *ssl__lives;
static int ssl__nlive, ssl__live_cap;
static size_t ssl__live_total;
static void *ssl__live_add(void *p, size_t bytes) {
    if (ssl__nlive == ssl__live_cap) {
        ssl__live_cap = ssl__live_cap ? 2 * ssl__live_cap : 64;
        ssl__lives = (ssl__live *)realloc(ssl__lives, sizeof(ssl__live) * (size_t)ssl__live_cap);
        if (!ssl__lives) ssl__cuda_die(__FILE__, __LINE__, "allocation list", "out of host memory");
    }
    ssl__live l = {p, bytes};
    ssl__lives[ssl__nlive++] = l;
    ssl__live_total += bytes;
    return p;
}
static void ssl__live_drop(void *p) {
    for (int i = ssl__nlive - 1; i >= 0; i--)
        if (ssl__lives[i].p == p) {
            ssl__live_total -= ssl__lives[i].bytes;
            ssl__lives[i] = ssl__lives[--ssl__nlive];
            return;
        }
}
extern "C" size_t ssl_cuda_live_bytes(void) { return ssl__live_total; }

static void *ssl__malloc_dev(size_t bytes, const char *what);
extern "C" void *ssl_cuda_malloc(size_t bytes, const char *what) {
    if (bytes == 0) bytes = 1;
    return ssl__live_add(ssl__malloc_dev(bytes, what), bytes);
}
static void *ssl__malloc_dev(size_t bytes, const char *what) {
    if (ssl__emu == 2) return ssl__strict_alloc(bytes, what);
    if (ssl__emu) { /* the exact size, 256-byte aligned as cudaMalloc: a read past it is a sanitizer's error */
        void *p = NULL;
        if (posix_memalign(&p, 256, bytes)) ssl__cuda_die(__FILE__, __LINE__, what ? what : "emulated device memory", "out of memory");
        return p;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it */
        size_t fr = 0, total = 0;
        cudaMemGetInfo(&fr, &total);
        fprintf(stderr,
                "ssl.cu: out of GPU memory: asked for %.2f GiB (%zu bytes) for %s; %.2f GiB of %.2f GiB free.\n"
                "        Use a smaller batch size (bs=) or resolution.\n",
                bytes / 1073741824.0, bytes, what ? what : "?", fr / 1073741824.0, total / 1073741824.0);
        fflush(stderr);
        abort();
    }
    if (e != cudaSuccess) ssl__cuda_die(__FILE__, __LINE__, what ? what : "cudaMalloc", cudaGetErrorString(e));
    return p;
}
extern "C" void ssl_cuda_free(void *p) {
    if (!p) return;
    ssl__live_drop(p);
    if (ssl__emu == 2 && ssl__strict_free(p)) return;
    if (ssl__emu) free(p);
    else { /* kernels still queued may use it: wait for them (cudaFree's own wait is not a documented promise) */
        SSL__BLOCKED;
        SSL_CUDA_CHECK(cudaDeviceSynchronize());
        SSL_CUDA_CHECK(cudaFree(p));
    }
}
extern "C" void *ssl_cuda_buf_reserve(ssl_buf *b, size_t bytes) {
    if (ssl__emu == 1) return ssl_buf_reserve(b, bytes); /* emulation: host memory (do not switch with live buffers) */
    if (bytes > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < bytes) cap *= 2;
        ssl_cuda_free(b->p); /* cudaFree waits for kernels still using it */
        b->p = ssl_cuda_malloc(cap, "device scratch buffer");
        b->cap = cap;
    }
    return b->p;
}
extern "C" void ssl_cuda_buf_free(ssl_buf *b) {
    if (ssl__emu == 1) {
        ssl_buf_free(b);
        return;
    }
    ssl_cuda_free(b->p);
    b->p = NULL;
    b->cap = 0;
}
extern "C" void ssl_cuda_to_device(void *dst, const void *src, size_t bytes) {
    SSL__GUARD;
    SSL__BLOCKED;
    ssl__waits++;
    if (ssl__emu) memcpy(dst, src, bytes);
    else if (bytes) SSL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
extern "C" void ssl_cuda_to_host(void *dst, const void *src, size_t bytes) {
    SSL__GUARD;
    SSL__BLOCKED;
    ssl__waits++;
    if (ssl__emu) memcpy(dst, src, bytes);
    else if (bytes) SSL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
extern "C" void ssl_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    if (ssl__emu) {
        const char *e = getenv("SSL_EMU_GPU_MEM");
        *free_bytes = *total_bytes = e && *e ? (size_t)strtoull(e, NULL, 10) : (size_t)80 << 30;
        return;
    }
    SSL_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}
extern "C" void ssl_cuda_memset0(void *dst, size_t bytes) {
    SSL__GUARD;
    if (ssl__emu) memset(dst, 0, bytes);
    else if (bytes) SSL_CUDA_CHECK(cudaMemset(dst, 0, bytes));
}
extern "C" void ssl_cuda_sync(void) {
    SSL__BLOCKED;
    ssl__waits++;
    if (!ssl__emu) SSL_CUDA_CHECK(cudaDeviceSynchronize());
}
extern "C" void *ssl_cuda_host_alloc(size_t bytes, const char *what) {
    if (ssl__emu) return ssl_malloc_aligned(bytes ? bytes : 1, what ? what : "emulated pinned memory");
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        fprintf(stderr, "ssl.cu: cannot allocate %.2f GiB of page-locked host memory for %s: %s\n",
                bytes / 1073741824.0, what ? what : "?", cudaGetErrorString(e));
        abort();
    }
    return p;
}
extern "C" void ssl_cuda_host_free(void *p) {
    if (ssl__emu) free(p);
    else if (p) {
        SSL__BLOCKED; /* cudaFreeHost waits for the whole device */
        SSL_CUDA_CHECK(cudaFreeHost(p));
    }
}

// ---- device info, RNG check ----------------------------------------------------
extern "C" int ssl_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int ssl_cuda_set_device(int device) {
    if (ssl__emu) return 0;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return ssl__fail("cannot use GPU %d: %s", device, cudaGetErrorString(e));
    return 0;
}

// ---- NCCL: the GPU tensors' collectives (ssl.h section 12) ----------------------
// Enqueued on the compute stream (the legacy default stream), so they run
// after the kernels that made their inputs and before those that read
// their outputs, with no host wait.
#ifdef SSL_NCCL
#include <nccl.h>
#define SSL_NCCL_CHECK(call)                                                                   \
    do {                                                                                       \
        ncclResult_t r_ = (call);                                                              \
        if (r_ != ncclSuccess) ssl__cuda_die(__FILE__, __LINE__, #call, ncclGetErrorString(r_)); \
    } while (0)
extern "C" int ssl_cuda_nccl_id(void *id128) {
    static_assert(sizeof(ncclUniqueId) == 128, "NCCL's unique id is 128 bytes");
    SSL_NCCL_CHECK(ncclGetUniqueId((ncclUniqueId *)id128));
    return 0;
}
extern "C" int ssl_cuda_nccl_init(void **comm, int world, int rank, const void *id128) {
    ncclUniqueId id;
    memcpy(&id, id128, sizeof id);
    ncclComm_t c;
    SSL_NCCL_CHECK(ncclCommInitRank(&c, world, id, rank));
    *comm = (void *)c;
    return 0;
}
extern "C" int ssl_cuda_nccl_collective(void *comm, int op, const float *send, float *recv, size_t count, int root) {
    ncclComm_t c = (ncclComm_t)comm;
    int world = 1;
    SSL_NCCL_CHECK(ncclCommCount(c, &world));
    cudaStream_t s = 0;
    switch (op) {
    case 0: SSL_NCCL_CHECK(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, c, s)); break;
    case 1: SSL_NCCL_CHECK(ncclAllGather(send, recv, count, ncclFloat32, c, s)); break;
    case 2: SSL_NCCL_CHECK(ncclReduceScatter(send, recv, count / (size_t)world, ncclFloat32, ncclSum, c, s)); break;
    case 3: SSL_NCCL_CHECK(ncclBroadcast(send, recv, count, ncclFloat32, root, c, s)); break;
    case 4: SSL_NCCL_CHECK(ncclAllReduce(send, recv, count, ncclFloat64, ncclSum, c, s)); break; /* doubles */
    default: return ssl__fail("ssl_cuda_nccl_collective: unknown op %d", op);
    }
    if (ssl__sync_on()) SSL_CUDA_CHECK(cudaDeviceSynchronize());
    return 0;
}
extern "C" void ssl_cuda_nccl_free(void *comm) {
    if (comm) ncclCommDestroy((ncclComm_t)comm);
}
/* NCCL's documented way to see a peer's failure while its kernels wait:
   polled by the watchdog thread, as the frameworks' watchdogs do */
extern "C" int ssl_cuda_nccl_error(void *comm, char *msg, size_t cap) {
    ncclResult_t r = ncclSuccess;
    if (ncclCommGetAsyncError((ncclComm_t)comm, &r) != ncclSuccess || r == ncclSuccess || r == ncclInProgress) return 0;
    snprintf(msg, cap, "%s (%s)", ncclGetErrorString(r), ncclGetLastError((ncclComm_t)comm));
    return 1;
}
#else
extern "C" int ssl_cuda_nccl_id(void *) { return ssl__fail("this CUDA build has no NCCL"); }
extern "C" int ssl_cuda_nccl_init(void **, int, int, const void *) { return ssl__fail("this CUDA build has no NCCL"); }
extern "C" int ssl_cuda_nccl_collective(void *, int, const float *, float *, size_t, int) {
    return ssl__fail("this CUDA build has no NCCL");
}
extern "C" void ssl_cuda_nccl_free(void *) {}
extern "C" int ssl_cuda_nccl_error(void *, char *, size_t) { return 0; }
#endif

extern "C" double ssl_cuda_peak_gbs(int device) {
    int khz = 0, bits = 0;
    if (ssl__emu || cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return 2.0 * khz * 1e3 * (bits / 8) / 1e9;
}

extern "C" int ssl_cuda_describe(int device, char *out, size_t cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return -1;
    snprintf(out, cap, "%s (sm_%d%d, %d SMs, %.1f GiB, %.0f GB/s)", p.name, p.major, p.minor, p.multiProcessorCount,
             p.totalGlobalMem / 1073741824.0, ssl_cuda_peak_gbs(device));
    return 0;
}

__global__ void ssl__rng_uniform_kernel(uint64_t seed, uint32_t op, float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ssl_rng r = ssl_rng_make(seed, 0, (uint32_t)i, 0, op);
    out[i] = ssl_rng_uniform(&r);
}

extern "C" int ssl_cuda_rng_uniform(uint64_t seed, uint32_t op, float *out, int n) {
    float *d = (float *)ssl_cuda_malloc(sizeof(float) * (size_t)n, "RNG check");
    ssl__rng_uniform_kernel<<<(n + 255) / 256, 256>>>(seed, op, d, n);
    ssl__launch_check(__FILE__, __LINE__, "ssl__rng_uniform_kernel");
    ssl_cuda_to_host(out, d, sizeof(float) * (size_t)n);
    ssl_cuda_free(d);
    return 0;
}

// ---- executors ---------------------------------------------------------------
extern "C" void ssl_cuda_set_emulation(int on) { ssl__emu = on == 2 ? 2 : on != 0; }
extern "C" int ssl_cuda_emulation(void) { return ssl__emu; }

static cublasHandle_t ssl__cublas(void) {
    static cublasHandle_t h = NULL;
    if (!h) {
        SSL_CUBLAS_CHECK(cublasCreate(&h));
        /* fp32 means fp32: no TF32 tensor-core rounding, no reduced-precision
           split-K reductions */
        SSL_CUBLAS_CHECK(cublasSetMathMode(h, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                                             CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    }
    return h;
}

/* Precision: fp32 throughout, or bf16. At bf16 the model stores the
   backbone's activations and their gradients as bf16 (ssl.h's plan), their
   GEMMs take bf16 operands (cublasGemmEx, CUDA_R_16BF, fp32 accumulation,
   C in bf16 or fp32), and the GEMMs that stay on fp32 tensors (heads,
   losses) round their operands to bf16 on the tensor cores
   (CUBLAS_COMPUTE_32F_FAST_16BF, which also lets cuBLAS pick TF32 or fp32
   kernels: at least bf16's precision). Emulation rounds the same values to
   bf16 (nearest even) and multiplies in fp32 on the host. */
static int ssl__bf16 = 0;
extern "C" void ssl_cuda_set_precision(int bf16) { ssl__bf16 = bf16 != 0; }
extern "C" int ssl_cuda_precision(void) { return ssl__bf16; }

/* ---- GEMM calls: row-major in ssl.h, column-major in cuBLAS ----
   ssl.h's GEMMs are row-major (ssl_gemm: C = alpha op(A) op(B) + beta C, C
   M x N with row stride ldc). cuBLAS is column-major, and a row-major
   matrix with row stride ld is, read column-major, its transpose with the
   same ld. So the row-major product is computed as the column-major
   C^T = op(B)^T op(A)^T: the operands swapped, M and N swapped, the
   transpose flags kept. ssl__blas_map builds that call once; the GPU
   executor hands it to cuBLAS and emulation hands it to ssl__blas_emulate,
   which checks it the way cuBLAS checks its arguments and carries it out as
   cuBLAS defines it. ssl_cuda_gemm_selftest holds the mapping against a
   plain column-major loop written from cuBLAS's documentation. */
struct ssl__blas {
    int opa, opb; /* cuBLAS's transa, transb: 0 = N, 1 = T */
    int m, n, k;
    const void *A;
    int lda, ta; /* ta, tb, tc: element types (SSL_F32, SSL_BF16) */
    const void *B;
    int ldb, tb;
    void *C;
    int ldc, tc;
};
static inline int ssl__dtype_of(const float *) { return SSL_F32; }
static inline int ssl__dtype_of(const ssl_bf16 *) { return SSL_BF16; }
template <class TA, class TB, class TC>
static ssl__blas ssl__blas_map(int ta, int tb, int M, int N, int K, const TA *A, int lda, const TB *B, int ldb, TC *C,
                               int ldc) {
    ssl__blas g = {tb, ta, N, M, K, B, ldb, ssl__dtype_of(B), A, lda, ssl__dtype_of(A), C, ldc, ssl__dtype_of(C)};
    return g;
}
static inline int ssl__imax(int a, int b) { return a > b ? a : b; }
/* what cuBLAS refuses with CUBLAS_STATUS_INVALID_VALUE (or this backend
   does not ask of it), or NULL */
static const char *ssl__blas_invalid(const ssl__blas &g) {
    if (g.m < 0 || g.n < 0 || g.k < 0) return "a negative dimension";
    if (g.lda < ssl__imax(1, g.opa ? g.k : g.m)) return "lda below the rows of A";
    if (g.ldb < ssl__imax(1, g.opb ? g.n : g.k)) return "ldb below the rows of B";
    if (g.ldc < ssl__imax(1, g.m)) return "ldc below the rows of C";
    if (g.ta != g.tb) return "A and B of different element types";
    if (g.ta == SSL_F32 && g.tc != SSL_F32) return "fp32 operands with a bf16 C";
    return NULL;
}
/* An operand of n elements as fp32 on the host: itself, or its bf16 values
   (stored, or rounded as FAST_16BF does) in buf. */
static const float *ssl__blas_operand(const void *p, int dt, size_t n, int round, float *buf) {
    if (dt == SSL_F32 && !round) return (const float *)p;
    for (size_t i = 0; i < n; i++)
        buf[i] = ssl_bf16_to_float(dt == SSL_BF16 ? ((const ssl_bf16 *)p)[i] : ssl_bf16_from_float(((const float *)p)[i]));
    return buf;
}
/* Carries out cuBLAS call g on host memory. Column-major X (r x c, ld) is
   row-major X^T, so C = op(A) op(B) is the row-major C^T = op(B)^T op(A)^T,
   which ssl_gemm computes (the CPU reference's own GEMM, so emulation
   matches the CPU to rounding). bf16: fp32 operands rounded first (the
   FAST_16BF mode), bf16 ones read as they are; a bf16 C is read to fp32
   and rounded once when stored. */
static void ssl__blas_emulate(const ssl__blas &g, float alpha, float beta, int bf16) {
    const char *bad = ssl__blas_invalid(g);
    if (bad) {
        fprintf(stderr, "ssl.cu: a GEMM cuBLAS would refuse: %s (transa %c transb %c m %d n %d k %d lda %d ldb %d ldc %d)\n",
                bad, g.opa ? 'T' : 'N', g.opb ? 'T' : 'N', g.m, g.n, g.k, g.lda, g.ldb, g.ldc);
        abort();
    }
    if (g.m == 0 || g.n == 0) return;
    static ssl_buf ab = {0, 0};
    /* (columns - 1) x ld + rows: what the call reads */
    size_t na = g.k ? (size_t)((g.opa ? g.m : g.k) - 1) * g.lda + (g.opa ? g.k : g.m) : 0,
           nb = g.k ? (size_t)((g.opb ? g.k : g.n) - 1) * g.ldb + (g.opb ? g.n : g.k) : 0,
           nc = (size_t)(g.n - 1) * g.ldc + g.m;
    float *a = (float *)ssl_buf_reserve(&ab, sizeof(float) * (na + nb + nc)), *b = a + na, *c = b + nb;
    const float *A = ssl__blas_operand(g.A, g.ta, na, bf16, a), *B = ssl__blas_operand(g.B, g.tb, nb, bf16, b);
    if (g.tc == SSL_F32) {
        ssl_gemm(g.opb, g.opa, g.n, g.m, g.k, alpha, B, g.ldb, A, g.lda, beta, (float *)g.C, g.ldc);
        return;
    }
    ssl_bf16 *C = (ssl_bf16 *)g.C;
    for (size_t i = 0; i < nc; i++) c[i] = ssl_bf16_to_float(C[i]);
    ssl_gemm(g.opb, g.opa, g.n, g.m, g.k, alpha, B, g.ldb, A, g.lda, beta, c, g.ldc);
    for (int j = 0; j < g.n; j++) /* C's m rows of each column; what lies between stays */
        for (int i = 0; i < g.m; i++) C[i + (size_t)j * g.ldc] = ssl_bf16_from_float(c[i + (size_t)j * g.ldc]);
}

/* Tests the mapping: random shapes, transposes and padded leading
   dimensions; the mapped call evaluated by a plain loop straight from
   cuBLAS's definition (C[i + j ldc] = alpha sum_l opA(i,l) opB(l,j) +
   beta C, opA(i,l) = A[i + l lda] for N, A[l + i lda] for T) against
   ssl_gemm's row-major result, and through ssl__blas_emulate. Returns the
   largest relative difference; 1e30 for a call cuBLAS would refuse. */
extern "C" double ssl_cuda_gemm_selftest(int trials, uint64_t seed) {
    double worst = 0;
    ssl_rng r = ssl_rng_make(seed, 0, 0, 0, 0);
    for (int t = 0; t < trials; t++) {
        int ta = ssl_rng_uniform(&r) < 0.5f, tb = ssl_rng_uniform(&r) < 0.5f;
        int M = 1 + (int)(ssl_rng_uniform(&r) * 17), N = 1 + (int)(ssl_rng_uniform(&r) * 17),
            K = 1 + (int)(ssl_rng_uniform(&r) * 17);
        int pa = (int)(ssl_rng_uniform(&r) * 3), pb = (int)(ssl_rng_uniform(&r) * 3), pc = (int)(ssl_rng_uniform(&r) * 3);
        /* row-major storage: A is M x K (K x M if ta), B K x N (N x K if tb) */
        int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        int lda = ac + pa, ldb = bc + pb, ldc = N + pc;
        float alpha = ssl_rng_range(&r, -2, 2), beta = t % 3 == 0 ? 0.0f : ssl_rng_range(&r, -1, 1);
        size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
        float *A = (float *)ssl_malloc(sizeof(float) * (na + nb + 3 * nc), "gemm self-test"), *B = A + na, *C0 = B + nb,
              *C1 = C0 + nc, *C2 = C1 + nc;
        for (size_t i = 0; i < na; i++) A[i] = ssl_rng_range(&r, -1, 1);
        for (size_t i = 0; i < nb; i++) B[i] = ssl_rng_range(&r, -1, 1);
        for (size_t i = 0; i < nc; i++) C0[i] = C1[i] = C2[i] = ssl_rng_range(&r, -1, 1);
        ssl_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
        ssl__blas g = ssl__blas_map(ta, tb, M, N, K, A, lda, B, ldb, C1, ldc);
        if (ssl__blas_invalid(g)) {
            free(A);
            return 1e30;
        }
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) {
                double s = 0;
                const float *gA = (const float *)g.A, *gB = (const float *)g.B;
                for (int l = 0; l < g.k; l++) {
                    float a = g.opa ? gA[l + (size_t)i * g.lda] : gA[i + (size_t)l * g.lda];
                    float b = g.opb ? gB[j + (size_t)l * g.ldb] : gB[l + (size_t)j * g.ldb];
                    s += (double)a * b;
                }
                float *c = &((float *)g.C)[i + (size_t)j * g.ldc];
                *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
            }
        g.C = C2;
        ssl__blas_emulate(g, alpha, beta, 0);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                size_t at = (size_t)i * ldc + j;
                double e1 = fabs((double)C1[at] - C0[at]) / (1.0 + fabs((double)C0[at]));
                double e2 = fabs((double)C2[at] - C0[at]) / (1.0 + fabs((double)C0[at]));
                if (e1 > worst) worst = e1;
                if (e2 > worst) worst = e2;
            }
        free(A);
    }
    return worst;
}

template <class F> __global__ void ssl__each_kernel(const F f, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

// ---- profile: device time per kind of work ---------------------------------
/* ssl_cuda_profile(1) starts recording: each op records two CUDA events
   around its work on the compute stream (host clock in emulation) under a
   kind ("BN forward", "GEMM conv forward", ...) with the bytes it must move
   at least (each input read once, each output written once) and its
   floating-point operations. Scopes nest; a kind's time excludes the scopes
   inside it (a linear layer's GEMM is counted as GEMM). Events are read
   only when the pool is full or at the report, so a profiled step has no
   extra host waits. GEMMs are also kept by shape, for the table of achieved
   TFLOP/s against cuBLAS alone on the same shape. */
#define SSL__PROF_MAX 4096
#define SSL__PROF_KINDS 64
#define SSL__PROF_SHAPES 256
struct ssl__prof_rec {
    int kind, parent, shape;
    double bytes, flops, t0, t1; /* t0/t1: host clock (emulation) */
};
struct ssl__prof_kind {
    const char *name;
    long long calls;
    double ms, bytes, flops;
};
struct ssl__prof_shape {
    const char *name;
    int ta, tb, M, N, K, beta, bf16, tab, tc; /* bf16: FAST_16BF mode; tab, tc: operand and C types */
    long long calls;
    double ms;
};
/* work items the executors issue (functor kernels, GEMM calls), counted
   always: the profile reports them per step (each launch costs the host a
   few microseconds, which small convolutions do not hide) */
static long long ssl__launches, ssl__gemms, ssl__prof_launch0, ssl__prof_gemm0, ssl__prof_launch1, ssl__prof_gemm1;
static long long ssl__prof_wait0, ssl__prof_wait1;
static int ssl__prof_on, ssl__prof_n, ssl__prof_depth, ssl__prof_stack[32], ssl__prof_nkinds, ssl__prof_nshapes;
static double ssl__prof_conv_floor; /* profiled GEMM-path convolutions as implicit GEMMs (bytes, ssl__conv_floor) */
static ssl__prof_rec ssl__prof_recs[SSL__PROF_MAX];
static cudaEvent_t ssl__prof_ev[2 * SSL__PROF_MAX];
static ssl__prof_kind ssl__prof_kinds[SSL__PROF_KINDS];
static ssl__prof_shape ssl__prof_shapes[SSL__PROF_SHAPES];

static int ssl__prof_kind_of(const char *name) {
    for (int i = 0; i < ssl__prof_nkinds; i++)
        if (!strcmp(ssl__prof_kinds[i].name, name)) return i;
    if (ssl__prof_nkinds == SSL__PROF_KINDS) return SSL__PROF_KINDS - 1;
    ssl__prof_kind k = {name, 0, 0, 0, 0};
    ssl__prof_kinds[ssl__prof_nkinds] = k;
    return ssl__prof_nkinds++;
}
/* the records so far into the kinds' totals (waits for their events) */
static void ssl__prof_fold(void) {
    if (!ssl__prof_n) return;
    static double ms[SSL__PROF_MAX];
    /* every scope is closed here (folds happen at depth 0), but the end event
       recorded last may be an outer scope's: wait for all of them */
    if (!ssl__emu) {
        SSL__BLOCKED;
        SSL_CUDA_CHECK(cudaDeviceSynchronize());
    }
    for (int i = 0; i < ssl__prof_n; i++) {
        if (ssl__prof_recs[i].kind < 0) { /* a scope of the caller's left open across a fold: dropped */
            ms[i] = 0;
            continue;
        }
        float e = 0;
        if (ssl__emu) e = (float)(1e3 * (ssl__prof_recs[i].t1 - ssl__prof_recs[i].t0));
        else SSL_CUDA_CHECK(cudaEventElapsedTime(&e, ssl__prof_ev[2 * i], ssl__prof_ev[2 * i + 1]));
        ms[i] = e;
    }
    for (int i = 0; i < ssl__prof_n; i++) {
        const ssl__prof_rec *r = &ssl__prof_recs[i];
        if (r->kind < 0) continue;
        if (r->shape >= 0) ssl__prof_shapes[r->shape].ms += ms[i], ssl__prof_shapes[r->shape].calls++;
        double own = ms[i];
        for (int j = i + 1; j < ssl__prof_n; j++) /* children follow their parent */
            if (ssl__prof_recs[j].parent == i) own -= ms[j];
        ssl__prof_kind *k = &ssl__prof_kinds[r->kind];
        k->calls++, k->ms += own, k->bytes += r->bytes, k->flops += r->flops;
    }
    ssl__prof_n = 0;
}
struct ssl__prof {
    int id;
    ssl__prof(const char *kind, double bytes, double flops, int shape = -1) {
        id = -1;
        if (!ssl__prof_on || ssl__prof_depth >= 32) return;
        if (ssl__prof_n == SSL__PROF_MAX) {
            if (ssl__prof_depth) return; /* a full pool inside a scope: this one goes uncounted */
            ssl__prof_fold();
        }
        id = ssl__prof_n++;
        ssl__prof_rec r = {ssl__prof_kind_of(kind), ssl__prof_depth ? ssl__prof_stack[ssl__prof_depth - 1] : -1, shape,
                           bytes, flops, 0, 0};
        ssl__prof_recs[id] = r;
        ssl__prof_stack[ssl__prof_depth++] = id;
        if (ssl__emu) ssl__prof_recs[id].t0 = ssl_now();
        else {
            if (!ssl__prof_ev[2 * id]) {
                SSL_CUDA_CHECK(cudaEventCreate(&ssl__prof_ev[2 * id]));
                SSL_CUDA_CHECK(cudaEventCreate(&ssl__prof_ev[2 * id + 1]));
            }
            SSL_CUDA_CHECK(cudaEventRecord(ssl__prof_ev[2 * id], 0));
        }
    }
    ~ssl__prof() {
        if (id < 0) return;
        if (ssl__emu) ssl__prof_recs[id].t1 = ssl_now();
        else SSL_CUDA_CHECK(cudaEventRecord(ssl__prof_ev[2 * id + 1], 0));
        ssl__prof_depth--;
    }
};
static int ssl__prof_shape_of(const char *name, int ta, int tb, int M, int N, int K, int beta, int tab, int tc) {
    for (int i = 0; i < ssl__prof_nshapes; i++) {
        const ssl__prof_shape *s = &ssl__prof_shapes[i];
        if (!strcmp(s->name, name) && s->ta == ta && s->tb == tb && s->M == M && s->N == N && s->K == K &&
            s->beta == beta && s->bf16 == ssl__bf16 && s->tab == tab && s->tc == tc)
            return i;
    }
    if (ssl__prof_nshapes == SSL__PROF_SHAPES) return -1;
    ssl__prof_shape s = {name, ta, tb, M, N, K, beta, ssl__bf16, tab, tc, 0, 0};
    ssl__prof_shapes[ssl__prof_nshapes] = s;
    return ssl__prof_nshapes++;
}
/* a GEMM's scope: 2MNK operations; A, B, C read once (C only with beta),
   C written once, at their element sizes (tab: A and B's type, tc: C's) */
struct ssl__prof_gemm : ssl__prof {
    ssl__prof_gemm(const char *what, int ta, int tb, int M, int N, int K, int beta, int tab, int tc)
        : ssl__prof(what,
                    (double)ssl_dtype_size(tab) * ((double)M * K + (double)K * N) +
                        (double)ssl_dtype_size(tc) * M * N * (beta ? 2 : 1),
                    2.0 * M * N * K, ssl__prof_on ? ssl__prof_shape_of(what, ta, tb, M, N, K, beta, tab, tc) : -1) {}
};
#define SSL__PROF(kind, bytes, flops) ssl__prof prof_(kind, (double)(bytes), (double)(flops))

/* scopes of the caller's own (ssl_cuda_profile_push/pop): the ops inside
   keep their rows, the scope's row gets the rest of its time */
static ssl__prof *ssl__user_scopes[16];
static int ssl__nuser_scopes, ssl__user_scopes_lost;
extern "C" void ssl_cuda_profile_push(const char *kind) {
    if (ssl__nuser_scopes == 16) { ssl__user_scopes_lost++; return; }
    ssl__user_scopes[ssl__nuser_scopes++] = new ssl__prof(kind ? kind : "(unnamed scope)", 0, 0);
}
/* Scopes of the caller's still open when the profile starts, stops or is
   reported: dropped (their records skipped, their pops do nothing), and the
   nesting depth is 0 again, so that a fold never reads an end not yet
   recorded and a later pop never unbalances the stack. */
static void ssl__user_scopes_drop(void) {
    for (int i = 0; i < ssl__nuser_scopes; i++) {
        ssl__prof *u = ssl__user_scopes[i];
        if (u->id >= 0) ssl__prof_recs[u->id].kind = -1, u->id = -1;
    }
    if (ssl__nuser_scopes) ssl__prof_depth = 0;
}
extern "C" void ssl_cuda_profile_pop(void) {
    if (ssl__user_scopes_lost) { ssl__user_scopes_lost--; return; }
    if (ssl__nuser_scopes) delete ssl__user_scopes[--ssl__nuser_scopes];
}

extern "C" void ssl_cuda_profile(int on) {
    ssl__user_scopes_drop();
    if (on) {
        ssl__prof_n = ssl__prof_depth = ssl__prof_nkinds = ssl__prof_nshapes = 0;
        ssl__prof_conv_floor = 0;
        ssl__prof_launch0 = ssl__launches, ssl__prof_gemm0 = ssl__gemms, ssl__prof_wait0 = ssl__waits;
    } else {
        ssl__prof_fold();
        if (ssl__prof_on) ssl__prof_launch1 = ssl__launches, ssl__prof_gemm1 = ssl__gemms, ssl__prof_wait1 = ssl__waits;
    }
    ssl__prof_on = on != 0;
}

/* What both executors do for a GEMM: count it, profile it, map it to
   cuBLAS's column-major call; D::blas carries the call out. */
template <class D> struct ssl__exec {
    template <class TA, class TB, class TC>
    void gemm(const char *what, int ta, int tb, int M, int N, int K, float alpha, const TA *A, int lda, const TB *B,
              int ldb, float beta, TC *C, int ldc) const {
        if (M <= 0 || N <= 0) return;
        ssl__prof_gemm pg(what, ta, tb, M, N, K, beta != 0.0f, ssl__dtype_of(A), ssl__dtype_of(C));
        ssl__gemms++;
        static_cast<const D *>(this)->blas(what, ssl__blas_map(ta, tb, M, N, K, A, lda, B, ldb, C, ldc), alpha, beta);
    }
};

struct ssl__gpu : ssl__exec<ssl__gpu> {
    template <class F> void each(const F &f, int64_t n) const {
        if (n <= 0) return;
        ssl__launches++;
        int64_t blocks = (n + 255) / 256;
        if (blocks > (1 << 20)) blocks = 1 << 20; /* grid-stride covers the rest */
        double t0 = ssl_now();
        ssl__each_kernel<F><<<(unsigned)blocks, 256>>>(f, n);
        ssl__launch_waited(t0, 20e-6);
        ssl__launch_check(__FILE__, __LINE__, "ssl__each_kernel");
    }
    void *scratch(ssl_buf *b, size_t bytes) const { return ssl_cuda_buf_reserve(b, bytes); }
    void copy(void *dst, const void *src, size_t bytes) const {
        if (bytes && dst != src) SSL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
    }
    void zero(void *dst, size_t bytes) const {
        if (bytes) SSL_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, 0));
    }
    void to_host(void *dst, const void *src, size_t bytes) const { ssl_cuda_to_host(dst, src, bytes); }
    /* host -> device in stream order, without a wait: through a page-locked
       staging buffer (a copy from pageable memory would first wait for all
       work queued before it, draining the GPU), reused only once its last
       copy is done */
    void to_dev_async(void *dst, const void *src, size_t bytes) const {
            static char *stage;
        static size_t cap;
        static cudaEvent_t done;
        if (!bytes) return;
        if (!done) SSL_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
        else {
            SSL__BLOCKED;
            SSL_CUDA_CHECK(cudaEventSynchronize(done)); /* the last copy out of stage (long done: its op read back since) */
        }
        if (bytes > cap) {
            if (stage) ssl_cuda_host_free(stage);
            cap = bytes > 4096 ? bytes : 4096;
            stage = (char *)ssl_cuda_host_alloc(cap, "host-to-device staging");
        }
        memcpy(stage, src, bytes);
        SSL_CUDA_CHECK(cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, 0));
        SSL_CUDA_CHECK(cudaEventRecord(done, 0));
    }
    void blas(const char *what, const ssl__blas &g, float alpha, float beta) const {
        const char *bad = ssl__blas_invalid(g);
        if (bad) ssl__cuda_die(__FILE__, __LINE__, what, bad);
        cublasOperation_t oa = g.opa ? CUBLAS_OP_T : CUBLAS_OP_N, ob = g.opb ? CUBLAS_OP_T : CUBLAS_OP_N;
        struct waited { /* a call past 200 us (its heuristics take a few) waited for a full launch queue */
            double t0 = ssl_now();
            ~waited() { ssl__launch_waited(t0, 200e-6); }
        } w_;
        if (g.ta == SSL_BF16) /* bf16 storage: bf16 operands, fp32 accumulation, C in its own type */
            SSL_CUBLAS_CHECK(cublasGemmEx(ssl__cublas(), oa, ob, g.m, g.n, g.k, &alpha, g.A, CUDA_R_16BF, g.lda, g.B,
                                          CUDA_R_16BF, g.ldb, &beta, g.C, g.tc == SSL_BF16 ? CUDA_R_16BF : CUDA_R_32F,
                                          g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        else if (ssl__bf16)
            SSL_CUBLAS_CHECK(cublasGemmEx(ssl__cublas(), oa, ob, g.m, g.n, g.k, &alpha, g.A, CUDA_R_32F, g.lda, g.B,
                                          CUDA_R_32F, g.ldb, &beta, g.C, CUDA_R_32F, g.ldc,
                                          CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
        else
            SSL_CUBLAS_CHECK(cublasSgemm(ssl__cublas(), oa, ob, g.m, g.n, g.k, &alpha, (const float *)g.A, g.lda,
                                         (const float *)g.B, g.ldb, &beta, (float *)g.C, g.ldc));
    }
};

/* The order emulation visits a launch's indices in. A GPU runs them all at
   once, in no order, so a functor whose index i reads what another index
   of the same launch writes (a race there) would still pass in emulation's
   ascending order. SSL_EMU_ORDER=reverse or =shuffle (a fixed permutation,
   i -> i * a mod n with a coprime to n) runs them otherwise: results that
   change with it betray such a dependence. */
static int ssl__emu_order(void) {
    static int order = -1;
    if (order < 0) {
        const char *e = getenv("SSL_EMU_ORDER");
        order = !e || !*e || !strcmp(e, "forward") ? 0 : !strcmp(e, "reverse") ? 1 : !strcmp(e, "shuffle") ? 2 : -1;
        if (order < 0) {
            fprintf(stderr, "ssl.cu: SSL_EMU_ORDER=%s: want forward, reverse or shuffle\n", e);
            abort();
        }
    }
    return order;
}
static int64_t ssl__gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}
/* one launch's indices in emulation's order */
template <class F> static void ssl__cpu_loop(const F &f, int64_t n) {
    int order = ssl__emu_order();
    if (order == 0)
        for (int64_t i = 0; i < n; i++) f(i);
    else if (order == 1)
        for (int64_t i = n - 1; i >= 0; i--) f(i);
    else {
        /* i -> i0 + j*a mod n, a coprime to n near n/phi (never 1 for
           n > 3, so neighbours are not visited in order), from the middle */
        int64_t a = (int64_t)((double)n * 0.6180339887498949) | 1;
        while (n > 1 && ssl__gcd64(a, n) != 1) a += 2;
        for (int64_t j = 0, i = n / 2; j < n; j++, i = (i + a) % n) f(i);
    }
}
struct ssl__cpu : ssl__exec<ssl__cpu> {
    template <class F> void each(const F &f, int64_t n) const {
        if (n <= 0) return;
        ssl__launches++;
        ssl__cpu_loop(f, n);
    }
    void *scratch(ssl_buf *b, size_t bytes) const { return ssl_buf_reserve(b, bytes); }
    void copy(void *dst, const void *src, size_t bytes) const {
        if (bytes && dst != src) memmove(dst, src, bytes);
    }
    void zero(void *dst, size_t bytes) const {
        memset(dst, 0, bytes);
    }
    void to_host(void *dst, const void *src, size_t bytes) const {
        ssl__waits++, memcpy(dst, src, bytes);
    }
    void to_dev_async(void *dst, const void *src, size_t bytes) const { /* no wait on a GPU either */
        memcpy(dst, src, bytes);
    }
    /* the very call the GPU makes, carried out by ssl__blas_emulate */
    void blas(const char *, const ssl__blas &g, float alpha, float beta) const {
        ssl__blas_emulate(g, alpha, beta, ssl__bf16);
    }
};

/* Runs body (a generic lambda taking the executor) on the GPU or, in
   emulation, on the host. */
#define SSL__RUN(...)                                       \
    do {                                                    \
        SSL__GUARD;                                         \
        if (ssl__emu) { const ssl__cpu X_{}; __VA_ARGS__ } \
        else { const ssl__gpu X_{}; __VA_ARGS__ }           \
    } while (0)

/* Internal scratch, one buffer per purpose (and per executor), so that
   nested uses never alias. Not thread-safe: one host thread drives a GPU. */
enum { SSL__S_SUM, SSL__S_ROWS, SSL__S_VEC, SSL__S_CONV, SSL__S_W, SSL__S_W2, SSL__S_ACC, SSL__S_AUG, SSL__S_POOL, SSL__S_COUNT };
static ssl_buf ssl__scr[2][SSL__S_COUNT];
static void *ssl__tmp(const ssl__gpu &x, int which, size_t bytes) { return x.scratch(&ssl__scr[0][which], bytes); }
static void *ssl__tmp(const ssl__cpu &x, int which, size_t bytes) { return x.scratch(&ssl__scr[1][which], bytes); }

static inline SSL_HD int64_t ssl__min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- deterministic sums in double ------------------------------------------
/* out[t] = sum of f(i) over chunk t of `per` indices, in index order. f may
   also write (gradients): each i is visited once. */
template <class F> struct ssl__chunk_sum {
    F f;
    int64_t n, per;
    double *out;
    SSL_HD void operator()(int64_t t) const {
        int64_t a = t * per, b = ssl__min64(a + per, n);
        double s = 0;
        for (int64_t i = a; i < b; i++) s += f(i);
        out[t] = s;
    }
};
struct ssl__read_d {
    const double *p;
    SSL_HD double operator()(int64_t i) const { return p[i]; }
};
#define SSL__SUM_PER 256
/* sum over i < n of f(i): chunks of 256, then sums of 256 partials, ... */
template <class X, class F> static double ssl__sum(const X &x, const F &f, int64_t n) {
    if (n <= 0) return 0.0;
    int64_t nt = (n + SSL__SUM_PER - 1) / SSL__SUM_PER, nt2 = (nt + SSL__SUM_PER - 1) / SSL__SUM_PER;
    double *a = (double *)ssl__tmp(x, SSL__S_SUM, sizeof(double) * (size_t)(nt + nt2)), *b = a + nt;
    ssl__chunk_sum<F> first = {f, n, SSL__SUM_PER, a};
    x.each(first, nt);
    while (nt > 1) {
        int64_t nn = (nt + SSL__SUM_PER - 1) / SSL__SUM_PER;
        ssl__chunk_sum<ssl__read_d> next = {{a}, nt, SSL__SUM_PER, b};
        x.each(next, nn);
        double *t = a;
        a = b;
        b = t;
        nt = nn;
    }
    double r;
    x.to_host(&r, a, sizeof r);
    return r;
}

// ---- element types ---------------------------------------------------------------
/* Functors that touch activations are templates on the stored type (float
   or ssl_bf16): ssl__ld reads an element as fp32, ssl__st rounds fp32 into
   one. SSL__TYPED(dt, T, body) runs body with T the type of dtype dt. */
static inline SSL_HD float ssl__ld(float v) { return v; }
static inline SSL_HD float ssl__ld(ssl_bf16 v) { return ssl_bf16_to_float(v); }
static inline SSL_HD void ssl__st(float *p, float v) { *p = v; }
static inline SSL_HD void ssl__st(ssl_bf16 *p, float v) { *p = ssl_bf16_from_float(v); }
/* v as an element of *p's type would hold it */
static inline SSL_HD float ssl__stored(const float *, float v) { return v; }
static inline SSL_HD float ssl__stored(const ssl_bf16 *, float v) { return ssl_bf16_to_float(ssl_bf16_from_float(v)); }
#define SSL__TYPED(dt, T, ...)                                  \
    do {                                                        \
        if ((dt) == SSL_BF16) { typedef ssl_bf16 T; __VA_ARGS__ } \
        else { typedef float T; __VA_ARGS__ }                   \
    } while (0)
template <class A, class B> struct ssl__same_type { enum { value = 0 }; };
template <class A> struct ssl__same_type<A, A> { enum { value = 1 }; };

/* V consecutive elements as fp32 (V = 1, or 8 from a 16-byte-aligned
   address). A kernel whose threads each load one 2-byte value keeps too few
   bytes in flight to fill the memory system (an H100 needs about
   bandwidth x latency = 3.35 TB/s x ~600 ns = 2 MB in flight; 132 SMs x
   2048 threads x 2 bytes is 0.5 MB), so the element-wise layer kernels
   move 8 values (16 bytes of bf16, 32 of fp32) per thread where the sizes
   and alignment allow. */
template <int V> struct ssl__vio {
    template <class T> static SSL_HD void ld(const T *p, float *v) { v[0] = ssl__ld(p[0]); }
    template <class T> static SSL_HD void st(T *p, const float *v) { ssl__st(p, v[0]); }
};
/* On the host (emulation) every 16-byte access checks the alignment that a
   GPU's vector load or store needs (a misaligned one is a fault there). */
#ifndef __CUDA_ARCH__
static inline void ssl__vio_aligned(const void *p) {
    if ((uintptr_t)p % 16) {
        fprintf(stderr, "ssl.cu: 16-byte vector access at %p, which is not 16-byte aligned (a fault on a GPU)\n", p);
        abort();
    }
}
#endif
template <> struct ssl__vio<8> {
    static SSL_HD void ld(const ssl_bf16 *p, float *v) {
        uint32_t w[4];
#ifdef __CUDA_ARCH__
        uint4 r = *(const uint4 *)p;
        w[0] = r.x, w[1] = r.y, w[2] = r.z, w[3] = r.w;
#else
        ssl__vio_aligned(p);
        memcpy(w, p, 16);
#endif
        for (int e = 0; e < 4; e++) { /* little-endian: the lower half is the first element */
            ssl_bf16 lo = {(uint16_t)(w[e] & 0xffffu)}, hi = {(uint16_t)(w[e] >> 16)};
            v[2 * e] = ssl_bf16_to_float(lo), v[2 * e + 1] = ssl_bf16_to_float(hi);
        }
    }
    static SSL_HD void st(ssl_bf16 *p, const float *v) {
        uint32_t w[4];
        for (int e = 0; e < 4; e++)
            w[e] = (uint32_t)ssl_bf16_from_float(v[2 * e]).bits | ((uint32_t)ssl_bf16_from_float(v[2 * e + 1]).bits << 16);
#ifdef __CUDA_ARCH__
        *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
#else
        ssl__vio_aligned(p);
        memcpy(p, w, 16);
#endif
    }
    static SSL_HD void ld(const float *p, float *v) {
#ifdef __CUDA_ARCH__
        float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
#else
        ssl__vio_aligned(p);
        memcpy(v, p, 32);
#endif
    }
    static SSL_HD void st(float *p, const float *v) {
#ifdef __CUDA_ARCH__
        ((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        ((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
#else
        ssl__vio_aligned(p);
        memcpy(p, v, 32);
#endif
    }
};
/* 8 values per work item: n a multiple of 8 and every pointer (NULL
   allowed) 16-byte aligned */
static int ssl__vec8(int64_t n, const void *a, const void *b = NULL, const void *c = NULL, const void *d = NULL,
                     const void *e = NULL) {
    const void *p[5] = {a, b, c, d, e};
    if (n % 8) return 0;
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)p[i] % 16) return 0;
    return 1;
}

// ---- index math: 32 bits, division by invariant integers -------------------
/* The per-element kernels turn a flat index into coordinates with divisions
   by the tensor's sizes. A GPU has no integer divider: a 64-bit division is
   a subroutine of ~70 instructions and a 32-bit one ~20, while a kernel
   that moves 2-byte values at 3.35 TB/s has ~10 integer instructions per
   value to spend. So the layer kernels index with 32 bits (ssl.h refuses
   GPU layer tensors of 2^31 elements or more) and divide by a multiply-high
   and a shift with a magic number chosen once per divisor on the host
   (Granlund and Montgomery, "Division by invariant integers using
   multiplication", 1994): for d >= 1, s = ceil(log2 d) and
   m = floor(2^32 (2^s - d) / d) + 1 < 2^32, n / d = (mulhi(n, m) + n) >> s
   for every n < 2^31 (the sum stays below 2^32). Tested against / and %
   (ssl_cuda_fastdiv_selftest). */
struct ssl__div {
    uint32_t d, m, s;
};
static ssl__div ssl__div_make(int64_t d) {
    if (d < 1 || d >= ((int64_t)1 << 31)) {
        fprintf(stderr, "ssl.cu: divisor %lld outside [1, 2^31) for 32-bit index math\n", (long long)d);
        abort();
    }
    uint32_t s = 0;
    while (((uint64_t)1 << s) < (uint64_t)d) s++;
    uint64_t m = (((uint64_t)1 << 32) * (((uint64_t)1 << s) - (uint64_t)d)) / (uint64_t)d + 1;
    ssl__div v = {(uint32_t)d, (uint32_t)m, s};
    return v;
}
static inline SSL_HD uint32_t ssl__mulhi(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}
static inline SSL_HD uint32_t ssl__div_q(const ssl__div &v, uint32_t n) { return (ssl__mulhi(n, v.m) + n) >> v.s; }
/* q = n / d, returns n % d */
static inline SSL_HD uint32_t ssl__divmod(const ssl__div &v, uint32_t n, uint32_t *q) {
    *q = ssl__div_q(v, n);
    return n - *q * v.d;
}
extern "C" int64_t ssl_cuda_fastdiv_selftest(int64_t trials, uint64_t seed) {
    ssl_rng r = ssl_rng_make(seed, 0, 0, 0, 0);
    int64_t bad = 0;
    for (int64_t t = 0; t < trials; t++) {
        uint32_t d = t < 4096 ? (uint32_t)t + 1 : (ssl_rng_u32(&r) >> (1 + ssl_rng_u32(&r) % 31)) | 1u;
        if (t % 5 == 0 && t >= 4096) d = 1u << (ssl_rng_u32(&r) % 31); /* powers of two */
        if (d >= (1u << 31)) d = (1u << 31) - 1;
        ssl__div v = ssl__div_make(d);
        uint32_t ns[8] = {0, 1, d - 1, d, d + 1, (1u << 31) - 1, ssl_rng_u32(&r) >> 1, (ssl_rng_u32(&r) >> 1) / d * d};
        for (int i = 0; i < 8; i++) {
            uint32_t n = ns[i] & 0x7fffffffu, q, rem = ssl__divmod(v, n, &q);
            if (q != n / d || rem != n % d) bad++;
        }
    }
    return bad;
}

// ---- simple element-wise functors ----------------------------------------------
template <class T> struct ssl__f_fill {
    T *t;
    float v;
    SSL_HD void operator()(int64_t i) const { ssl__st(&t[i], v); }
};
/* d = s, converting between element types */
template <class TD, class TS> struct ssl__f_convert {
    TD *d;
    const TS *s;
    SSL_HD void operator()(int64_t i) const { ssl__st(&d[i], ssl__ld(s[i])); }
};
struct ssl__f_axpy {
    float a;
    const float *x;
    float *y;
    SSL_HD void operator()(int64_t i) const { y[i] += a * x[i]; }
};
struct ssl__f_dot {
    const float *a, *b;
    SSL_HD double operator()(int64_t i) const { return (double)a[i] * b[i]; }
};
struct ssl__f_diag {
    float *m;
    int64_t n;
    float v;
    SSL_HD void operator()(int64_t i) const { m[i * n + i] = v; }
};
/* element-wise over work items of V values (see ssl__vio): y = op(a, b)
   (b NULL: op(a, 0)) */
template <class T, int V, class Op> struct ssl__f_map2 {
    const T *a, *b;
    T *y;
    SSL_HD void operator()(int64_t j) const {
        float u[V], v[V] = {0};
        ssl__vio<V>::ld(a + j * V, u);
        if (b) ssl__vio<V>::ld(b + j * V, v);
        for (int e = 0; e < V; e++) u[e] = Op()(u[e], b ? v[e] : 0.0f);
        ssl__vio<V>::st(y + j * V, u);
    }
};
struct ssl__op_relu {
    SSL_HD float operator()(float x, float) const { return ssl__relu(x); }
};
struct ssl__op_relu_grad { /* a: the ReLU's output, b: the gradient */
    SSL_HD float operator()(float y, float g) const { return ssl__relu_grad(y, g); }
};
struct ssl__op_add {
    SSL_HD float operator()(float a, float b) const { return a + b; }
};
template <class T, int V> using ssl__f_relu = ssl__f_map2<T, V, ssl__op_relu>;
template <class T, int V> using ssl__f_relu_grad = ssl__f_map2<T, V, ssl__op_relu_grad>;
template <class T, int V> using ssl__f_add = ssl__f_map2<T, V, ssl__op_add>;
/* the ReLU mask's bit for value i (ssl_batchnorm_forward_mask's layout) */
static inline SSL_HD int ssl__bit(const uint8_t *m, int64_t i) { return (m[i >> 3] >> (i & 7)) & 1; }
/* dx = dy where the mask's bit is set, else 0 (ssl__relu_grad from a bit) */
template <class T, int V> struct ssl__f_mask_grad {
    const uint8_t *m;
    const T *dy;
    T *dx;
    SSL_HD void operator()(int64_t j) const {
        float g[V];
        ssl__vio<V>::ld(dy + j * V, g);
        int byte = V == 8 ? m[j] : ssl__bit(m, j);
        for (int e = 0; e < V; e++) g[e] = (byte >> e) & 1 ? g[e] : 0.0f;
        ssl__vio<V>::st(dx + j * V, g);
    }
};
/* mask byte j from y's values 8j .. 8j+7 (fewer at the end): the bits
   where the batch norm's V = 1 output pass could not write whole bytes */
template <class T> struct ssl__f_mask_of {
    const T *y;
    uint8_t *m;
    int64_t n;
    SSL_HD void operator()(int64_t j) const {
        int b = 0;
        for (int e = 0; e < 8 && j * 8 + e < n; e++) b |= (ssl__ld(y[j * 8 + e]) > 0.0f) << e;
        m[j] = (uint8_t)b;
    }
};

/* runs functor F<T, 8> over n/8 work items when ssl__vec8 allows, else
   F<T, 1> over n */
#define SSL__EACH_V(X, F, T, ok, n, ...)                               \
    do {                                                               \
        if (ok) { F<T, 8> f8_ = {__VA_ARGS__}; (X).each(f8_, (n) / 8); } \
        else { F<T, 1> f1_ = {__VA_ARGS__}; (X).each(f1_, (n)); }       \
    } while (0)
/* y rows = the bias vector (then the GEMM adds with beta 1) */
template <class T> struct ssl__f_bias_rows {
    T *y;
    const float *b;
    int64_t c;
    SSL_HD void operator()(int64_t i) const { ssl__st(&y[i], b[i % c]); }
};
/* db[j] += column j's sum of dy (in double) */
template <class T> struct ssl__f_bias_grad {
    const T *dy;
    float *db;
    int64_t rows, c;
    SSL_HD void operator()(int64_t j) const {
        double s = 0;
        for (int64_t r = 0; r < rows; r++) s += ssl__ld(dy[r * c + j]);
        db[j] += (float)s;
    }
};

template <class X, class T> static float ssl__bias_rows_x(const X &x, T *y, int64_t rows, int64_t c, const ssl_tensor *b) {
    if (!b || !b->data) return 0.0f;
    ssl__f_bias_rows<T> f = {y, b->data, c};
    x.each(f, rows * c);
    return 1.0f;
}
template <class X, class T> static void ssl__bias_grad_x(const X &x, const T *dy, int64_t rows, int64_t c, ssl_tensor *db) {
    if (!db || !db->data) return;
    ssl__f_bias_grad<T> f = {dy, db->data, rows, c};
    x.each(f, c);
}

// ---- GEMM and the primitives ---------------------------------------------------
extern "C" int ssl_cuda_matmul(int ta, int tb, float alpha, const ssl_tensor *A, const ssl_tensor *B, float beta,
                               ssl_tensor *C) {
    int64_t ac = ssl_tensor_cols(A), bc = ssl_tensor_cols(B);
    int M = (int)ssl_tensor_rows(C), N = (int)ssl_tensor_cols(C);
    int K = (int)(ta ? ssl_tensor_rows(A) : ac);
    SSL__RUN(X_.gemm("GEMM matmul", ta, tb, M, N, K, alpha, A->data, (int)ac, B->data, (int)bc, beta, C->data, N););
    return 0;
}

/* bytes of a tensor's elements */
static double ssl__bytes(const ssl_tensor *t) { return (double)ssl_dtype_size(t->dtype) * ssl_tensor_numel(t); }

extern "C" int ssl_cuda_copy(ssl_tensor *dst, const ssl_tensor *src) {
    SSL__PROF("copy, fill", ssl__bytes(src) + ssl__bytes(dst), 0);
    int64_t n = ssl_tensor_numel(src);
    if (dst->dtype == src->dtype) {
        SSL__RUN(X_.copy(dst->data, src->data, ssl_dtype_size(src->dtype) * (size_t)n););
        return 0;
    }
    SSL__TYPED(dst->dtype, TD, SSL__TYPED(src->dtype, TS, {
        ssl__f_convert<TD, TS> f = {(TD *)dst->data, (const TS *)src->data};
        SSL__RUN(X_.each(f, n););
    }););
    return 0;
}

extern "C" int ssl_cuda_fill(ssl_tensor *t, float value) {
    SSL__PROF("copy, fill", ssl__bytes(t), 0);
    SSL__TYPED(t->dtype, T, {
        ssl__f_fill<T> f = {(T *)t->data, value};
        SSL__RUN(X_.each(f, ssl_tensor_numel(t)););
    });
    return 0;
}

extern "C" int ssl_cuda_axpy(float alpha, const ssl_tensor *x, ssl_tensor *y) {
    SSL__PROF("axpy, EMA", 12.0 * ssl_tensor_numel(x), 2.0 * ssl_tensor_numel(x));
    ssl__f_axpy f = {alpha, x->data, y->data};
    SSL__RUN(X_.each(f, ssl_tensor_numel(x)););
    return 0;
}

struct ssl__f_ema {
    float *t;
    const float *o;
    float a, b;
    SSL_HD void operator()(int64_t i) const { t[i] = a * t[i] + b * o[i]; }
};
extern "C" int ssl_cuda_ema(float *target, const float *online, int64_t n, float a, float b) {
    SSL__PROF("axpy, EMA", 12.0 * n, 3.0 * n);
    ssl__f_ema f = {target, online, a, b};
    SSL__RUN(X_.each(f, n););
    return 0;
}

extern "C" int ssl_cuda_dot(const ssl_tensor *a, const ssl_tensor *b, float *out) {
    SSL__PROF("loss", 8.0 * ssl_tensor_numel(a), 2.0 * ssl_tensor_numel(a));
    ssl__f_dot f = {a->data, b->data};
    double s = 0;
    SSL__RUN(s = ssl__sum(X_, f, ssl_tensor_numel(a)););
    *out = (float)s;
    return 0;
}

extern "C" int ssl_cuda_fill_diagonal(ssl_tensor *m, float value) {
    ssl__f_diag f = {m->data, ssl_tensor_cols(m), value};
    SSL__RUN(X_.each(f, ssl_tensor_cols(m)););
    return 0;
}
/* the same functor from column col0: m[i, col0 + i], one row each */
extern "C" int ssl_cuda_fill_diagonal_at(ssl_tensor *m, int64_t col0, float value) {
    ssl__f_diag f = {m->data + col0, ssl_tensor_cols(m), value};
    SSL__RUN(X_.each(f, ssl_tensor_rows(m)););
    return 0;
}

/* one row per thread: ||x_r|| in double, y = x * inv (y may be x) */
struct ssl__f_l2n {
    const float *x;
    float *y, *norm;
    int64_t d;
    SSL_HD void operator()(int64_t r) const {
        const float *xr = x + r * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
        float n = (float)sqrt(ss), inv = ssl__l2n_inv(n);
        for (int64_t j = 0; j < d; j++) y[r * d + j] = xr[j] * inv;
        norm[r] = n;
    }
};
extern "C" int ssl_cuda_l2_normalize_rows(const ssl_tensor *x, ssl_tensor *y, ssl_tensor *norm) {
    SSL__PROF("loss", 8.0 * ssl_tensor_numel(x), 3.0 * ssl_tensor_numel(x));
    ssl__f_l2n f = {x->data, y->data, norm->data, ssl_tensor_cols(x)};
    SSL__RUN(X_.each(f, ssl_tensor_rows(x)););
    return 0;
}

struct ssl__f_l2n_back {
    const float *y, *norm, *dy;
    float *dx;
    int64_t d;
    SSL_HD void operator()(int64_t r) const {
        const float *yr = y + r * d, *g = dy + r * d;
        double yg = 0;
        for (int64_t j = 0; j < d; j++) yg += (double)yr[j] * g[j];
        for (int64_t j = 0; j < d; j++) dx[r * d + j] += ssl__l2n_grad(yr[j], g[j], (float)yg, norm[r]);
    }
};
extern "C" int ssl_cuda_l2_normalize_rows_backward(const ssl_tensor *y, const ssl_tensor *norm, const ssl_tensor *dy,
                                                   ssl_tensor *dx) {
    SSL__PROF("loss", 12.0 * ssl_tensor_numel(y), 4.0 * ssl_tensor_numel(y));
    ssl__f_l2n_back f = {y->data, norm->data, dy->data, dx->data, ssl_tensor_cols(y)};
    SSL__RUN(X_.each(f, ssl_tensor_rows(y)););
    return 0;
}

/* one row per thread: row loss (double) to rowloss[r], dlogits += ... */
struct ssl__f_xent {
    const float *logits;
    const int32_t *target;
    float scale;
    float *dlogits; /* NULL: no gradient */
    double *rowloss, *hit; /* hit: 1 where the row's top-1 is the target (NULL: not asked) */
    int64_t c;
    SSL_HD void operator()(int64_t r) const {
        const float *l = logits + r * c;
        if (hit) hit[r] = ssl__top1(l, c) == target[r];
        float mx = -INFINITY;
        for (int64_t j = 0; j < c; j++) mx = l[j] > mx ? l[j] : mx;
        double se = 0;
        for (int64_t j = 0; j < c; j++) se += exp((double)l[j] - mx);
        double lse = mx + log(se);
        int32_t t = target[r];
        rowloss[r] = lse - l[t];
        if (!dlogits) return;
        float *g = dlogits + r * c;
        for (int64_t j = 0; j < c; j++) {
            float v = g[j] + scale * (float)exp((double)l[j] - lse);
            if (j == t) v -= scale; /* the CPU adds, then subtracts at the target */
            g[j] = v;
        }
    }
};
extern "C" int ssl_cuda_softmax_xent_rows(const ssl_tensor *logits, const int32_t *target, float scale, float *loss,
                                          ssl_tensor *dlogits, int64_t *correct) {
    SSL__PROF("loss", 8.0 * ssl_tensor_numel(logits), 4.0 * ssl_tensor_numel(logits));
    int64_t rows = ssl_tensor_rows(logits), c = ssl_tensor_cols(logits), nh = correct ? rows : 0;
    double *host = (double *)ssl_malloc(sizeof(double) * (size_t)(rows + nh + 1), "row losses");
    SSL__RUN({
        size_t tbytes = (sizeof(int32_t) * (size_t)rows + 15) & ~(size_t)15;
        char *mem = (char *)ssl__tmp(X_, SSL__S_ROWS, tbytes + sizeof(double) * (size_t)(rows + nh));
        int32_t *dt = (int32_t *)mem;
        double *rl = (double *)(mem + tbytes);
        X_.to_dev_async(dt, target, sizeof(int32_t) * (size_t)rows);
        ssl__f_xent f = {logits->data, dt, scale, dlogits ? dlogits->data : NULL, rl, correct ? rl + rows : NULL, c};
        X_.each(f, rows);
        X_.to_host(host, rl, sizeof(double) * (size_t)(rows + nh)); /* the losses and the hits: one wait */
    });
    double total = 0; /* in row order, as the CPU */
    for (int64_t r = 0; r < rows; r++) total += host[r];
    if (correct) {
        *correct = 0;
        for (int64_t r = 0; r < rows; r++) *correct += host[rows + r] != 0;
    }
    free(host);
    *loss = (float)(scale * total);
    return 0;
}

/* one column per thread: mean in double, then y = x - mean (y may be x) */
struct ssl__f_center {
    const float *x;
    float *y;
    int64_t rows, c;
    SSL_HD void operator()(int64_t j) const {
        double m = 0;
        for (int64_t r = 0; r < rows; r++) m += x[r * c + j];
        m /= (double)rows;
        for (int64_t r = 0; r < rows; r++) y[r * c + j] = (float)(x[r * c + j] - m);
    }
};
extern "C" int ssl_cuda_center_cols(const ssl_tensor *x, ssl_tensor *y) {
    SSL__PROF("loss", 12.0 * ssl_tensor_numel(x), 2.0 * ssl_tensor_numel(x));
    ssl__f_center f = {x->data, y->data, ssl_tensor_rows(x), ssl_tensor_cols(x)};
    SSL__RUN(X_.each(f, f.c););
    return 0;
}

struct ssl__f_mse {
    const float *a, *b;
    float *da, *db;
    float g;
    SSL_HD double operator()(int64_t i) const {
        float d = a[i] - b[i];
        if (da) da[i] += g * d;
        if (db) db[i] -= g * d;
        return (double)d * d;
    }
};
extern "C" int ssl_cuda_mse(const ssl_tensor *a, const ssl_tensor *b, float scale, float *loss, ssl_tensor *da,
                            ssl_tensor *db) {
    SSL__PROF("loss", 16.0 * ssl_tensor_numel(a), 3.0 * ssl_tensor_numel(a));
    int64_t n = ssl_tensor_numel(a);
    ssl__f_mse f = {a->data, b->data, da ? da->data : NULL, db ? db->data : NULL, 2.0f * scale / (float)n};
    double s = 0;
    SSL__RUN(s = ssl__sum(X_, f, n););
    *loss = (float)(scale * s / (double)n);
    return 0;
}

struct ssl__f_offdiag {
    const float *m;
    float *dm;
    int64_t d;
    float scale;
    SSL_HD double operator()(int64_t k) const {
        if (k / d == k % d) return 0.0;
        float v = m[k];
        if (dm) dm[k] += 2.0f * scale * v;
        return (double)v * v;
    }
};
extern "C" int ssl_cuda_offdiag_sumsq(const ssl_tensor *m, float scale, float *val, ssl_tensor *dm) {
    SSL__PROF("loss", 8.0 * ssl_tensor_numel(m), 2.0 * ssl_tensor_numel(m));
    int64_t d = ssl_tensor_cols(m);
    ssl__f_offdiag f = {m->data, dm ? dm->data : NULL, d, scale};
    double s = 0;
    SSL__RUN(s = ssl__sum(X_, f, d * d););
    *val = (float)(scale * s);
    return 0;
}

struct ssl__f_diagpen {
    const float *m;
    float *dm;
    int64_t d;
    int fn;
    float param, scale;
    SSL_HD double operator()(int64_t i) const {
        float g, v = m[i * d + i];
        float f = fn == SSL_DIAG_SQ_DEV_ONE ? ssl__sq_dev_one(v, &g) : ssl__std_hinge(v, param, &g);
        if (dm) dm[i * d + i] += scale * g;
        return f;
    }
};
extern "C" int ssl_cuda_diag_penalty(const ssl_tensor *m, ssl_diag_fn fn, float param, float scale, float *val,
                                     ssl_tensor *dm) {
    SSL__PROF("loss", 8.0 * ssl_tensor_cols(m), 0);
    int64_t d = ssl_tensor_cols(m);
    ssl__f_diagpen f = {m->data, dm ? dm->data : NULL, d, (int)fn, param, scale};
    double s = 0;
    SSL__RUN(s = ssl__sum(X_, f, d););
    *val = (float)(scale * s);
    return 0;
}

// ---- conv2d ------------------------------------------------------------------
/* Geometry of one convolution (as ssl.h's ssl__conv). An im2col row is one
   output pixel's receptive field in [kh][kw][ci] order: a row of the OHWI
   weight. */
struct ssl__cg {
    int64_t n, h, w, ci, co, kh, kw, oh, ow;
    int stride, pad;
    /* the kernels' 32-bit divisors; vec: channels per work item (8 when
       ci allows, so one set of divisions serves 8 values) */
    int vec, vshift;
    ssl__div d_cv, d_kw, d_ohw, d_ow, d_w, d_h, d_stride;
};
static ssl__cg ssl__cg_make(const ssl_tensor *x, const ssl_tensor *w, int stride, int pad) {
    ssl__cg g;
    g.n = x->dim[0]; g.h = x->dim[1]; g.w = x->dim[2]; g.ci = x->dim[3];
    g.co = w->dim[0]; g.kh = w->dim[1]; g.kw = w->dim[2];
    g.stride = stride; g.pad = pad;
    g.oh = ssl_conv_out_size(g.h, g.kh, stride, pad);
    g.ow = ssl_conv_out_size(g.w, g.kw, stride, pad);
    int v8 = g.ci % 8 == 0 && (uintptr_t)x->data % 16 == 0; /* 16-byte accesses (ssl__vio) */
    g.vec = v8 ? 8 : 1, g.vshift = v8 ? 3 : 0;
    g.d_cv = ssl__div_make(g.ci / g.vec), g.d_kw = ssl__div_make(g.kw), g.d_ohw = ssl__div_make(g.oh * g.ow);
    g.d_ow = ssl__div_make(g.ow), g.d_w = ssl__div_make(g.w), g.d_h = ssl__div_make(g.h), g.d_stride = ssl__div_make(stride);
    return g;
}

/* The least bytes a convolution's three products move when no columns are
   materialised (an implicit GEMM: each operand read once, each output
   written once, the fp32 weight gradient read and written), at element
   sizes sx (x), sy (y, dy and the weights as the GEMM reads them), sdx
   (dx): cuDNN's profile entries, and the GEMM path's implicit-GEMM floor
   in the profile report. */
struct ssl__conv_bytes {
    double fwd, dgrad, wgrad;
};
static ssl__conv_bytes ssl__conv_floor(const ssl__cg &g, double sx, double sy, double sdx, int acc) {
    double nx = (double)g.n * g.h * g.w * g.ci, nw = (double)g.co * g.kh * g.kw * g.ci, ny = (double)g.n * g.oh * g.ow * g.co;
    ssl__conv_bytes b = {sx * nx + sy * (nw + ny), sy * (ny + nw) + sdx * nx * (acc ? 2 : 1), sy * ny + sx * nx + 8.0 * nw};
    return b;
}
static int ssl__cg_is_gemm(const ssl__cg &g) { return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0; }

/* cols of rows [r0, r0 + nr) x K: the input value or 0 in the padding
   (converted to the columns' type), for channels in groups of 8 (g.vec).
   Work item j: 8 consecutive values of one row and tap (channels
   c .. c + 7), so adjacent items write adjacent memory; j indexes (row,
   tap, channel group) with taps x groups = K / 8 per row. */
template <class TX, class TC> struct ssl__f_im2col {
    ssl__cg g;
    const TX *x;
    TC *cols;
    int64_t r0;
    ssl__div d_kv; /* K / vec */
    SSL_HD void operator()(int64_t j) const {
        uint32_t rl, tap, ky, n, oy;
        uint32_t kv = ssl__divmod(d_kv, (uint32_t)j, &rl);
        uint32_t cg = ssl__divmod(g.d_cv, kv, &tap), kx = ssl__divmod(g.d_kw, tap, &ky);
        uint32_t p = ssl__divmod(g.d_ohw, (uint32_t)(r0 + rl), &n), ox = ssl__divmod(g.d_ow, p, &oy);
        int iy = (int)(oy * g.stride) - g.pad + (int)ky, ix = (int)(ox * g.stride) - g.pad + (int)kx;
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            ssl__vio<8>::ld(x + (((uint32_t)n * (uint32_t)g.h + (uint32_t)iy) * (uint32_t)g.w + (uint32_t)ix) * (uint32_t)g.ci + cg * 8, v);
        ssl__vio<8>::st(cols + (uint32_t)j * 8, v);
    }
};
/* im2col for few channels (ci not a multiple of 8: the stem's 3). The
   block's columns taken as one flat array (rows of K); 32 consecutive work
   items (a warp) fill 256 consecutive elements, item t's u-th being element
   256 (t / 32) + 32 u + t % 32, so that each of a warp's 8 stores writes 32
   consecutive elements (64 bytes of bf16: two whole sectors) and each load
   reads them from one to three runs of x (a kernel row's kw x ci values lie
   next to each other in x as in the columns). One set of divisions per
   item; then (row, ky, j) advances by 32 elements, with j = kx ci + c the
   offset in the kernel row, bounds-checked without dividing by ci.
   Why: a thread per kernel row (21 values of the 7x7 stem) would store
   2-byte values 42 bytes apart, 32 partial sectors per warp store, 672
   sector writes to L2 for a warp's 1,344 bytes where 42 whole ones do
   (ResNet-50 at 224, batch 256, two views: ~1.9 G sector writes a step,
   ~11 ms at an H100's ~170 G sectors/s of L2). Here: 1/16 of a sector
   write and ~0.16 L1 wavefronts a value, ~40 instructions (PTX), so the
   bound is instructions. */
template <class TX, class TC> struct ssl__f_im2col_few {
    ssl__cg g;
    const TX *x;
    TC *cols; /* the block's columns: nr rows of K */
    int64_t r0;
    uint32_t total; /* nr K */
    ssl__div d_k, d_seg; /* K; a kernel row's kw ci */
    SSL_HD void operator()(int64_t t) const {
        uint32_t e = (uint32_t)(t >> 5) * 256u + (uint32_t)(t & 31), rl, ky;
        if (e >= total) return;
        uint32_t k = ssl__divmod(d_k, e, &rl), j = ssl__divmod(d_seg, k, &ky);
        int wc = (int)(g.w * g.ci), iy0, jx0; /* the row's window corner: image row, and (column, channel) offset */
        const TX *img;
        row_(rl, &img, &iy0, &jx0);
        for (int u = 0; u < 8 && e < total; u++, e += 32) {
            int iy = iy0 + (int)ky, jx = jx0 + (int)j; /* jx: (ix, c) as one offset in x's image row */
            float v = 0.0f;
            if (iy >= 0 && iy < g.h && jx >= 0 && jx < wc) v = ssl__ld(img[(uint32_t)iy * (uint32_t)wc + (uint32_t)jx]);
            ssl__st(&cols[e], v);
            uint32_t r = rl;
            for (j += 32; j >= d_seg.d; j -= d_seg.d)
                if (++ky == (uint32_t)g.kh) ky = 0, rl++;
            if (rl != r) row_(rl, &img, &iy0, &jx0);
        }
    }
    SSL_HD void row_(uint32_t rl, const TX **img, int *iy0, int *jx0) const {
        uint32_t n, oy, p = ssl__divmod(g.d_ohw, (uint32_t)(r0 + rl), &n), ox = ssl__divmod(g.d_ow, p, &oy);
        *img = x + (size_t)n * (size_t)(g.h * g.w * g.ci);
        *iy0 = (int)(oy * g.stride) - g.pad, *jx0 = ((int)(ox * g.stride) - g.pad) * (int)g.ci;
    }
};
/* cols for rows [r0, r0 + nr): 8-channel groups, or warps of 256 flat elements for few channels */
template <class X, class TX, class TC>
static void ssl__im2col_x(const X &x, const ssl__cg &g, const TX *xd, TC *cols, int64_t r0, int64_t nr) {
    int64_t k = g.kh * g.kw * g.ci;
    /* the stem's (few channels, flat) apart from the rest, in the profile */
    SSL__PROF(g.ci < 8 ? "im2col (stem)" : "im2col", (double)nr * k * (sizeof(TC) + (double)sizeof(TX) / (g.kh * g.kw)), 0);
    if (g.vec == 8) {
        ssl__f_im2col<TX, TC> f = {g, xd, cols, r0, ssl__div_make(k / 8)};
        x.each(f, nr * k / 8);
    } else {
        uint32_t total = (uint32_t)(nr * k);
        ssl__f_im2col_few<TX, TC> f = {g, xd, cols, r0, total, ssl__div_make(k), ssl__div_make(g.kw * g.ci)};
        x.each(f, ((int64_t)total + 255) / 256 * 32);
    }
}

/* The adjoint of im2col as a gather: input pixel values (g.vec channels per
   work item, from element `first` on) add the dcols entries of block rows
   [r0, r0+nr) that were copied from them, in increasing row order as the
   CPU's scatter does (ky, kx decreasing), into a running float (stored
   once, in dx's type). */
template <class TC, class TD> struct ssl__f_col2im {
    ssl__cg g;
    const TC *dcols;
    TD *dx;
    int64_t r0, nr, first; /* first: index of the first dx element visited (a multiple of vec) */
    int fresh;             /* dx is written, not added to (one block of rows, no accumulation) */
    SSL_HD void operator()(int64_t t) const {
        uint32_t i = (uint32_t)first + (uint32_t)t * g.vec, pix, q, n, iy;
        uint32_t cg = ssl__divmod(g.d_cv, i >> g.vshift, &pix);
        uint32_t ix = ssl__divmod(g.d_w, pix, &q);
        iy = ssl__divmod(g.d_h, q, &n);
        uint32_t K = (uint32_t)(g.kh * g.kw * g.ci), c = cg * g.vec;
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s8[8];
        if (!fresh) { /* add to what dx holds */
            if (g.vec == 8) ssl__vio<8>::ld(dx + i, v);
            else v[0] = ssl__ld(dx[i]);
        }
        for (int ky = (int)g.kh - 1; ky >= 0; ky--) {
            int ty = (int)iy + g.pad - ky;
            if (ty < 0) continue;
            uint32_t oy, ry = ssl__divmod(g.d_stride, (uint32_t)ty, &oy);
            if (ry || oy >= g.oh) continue;
            for (int kx = (int)g.kw - 1; kx >= 0; kx--) {
                int tx = (int)ix + g.pad - kx;
                if (tx < 0) continue;
                uint32_t ox, rx = ssl__divmod(g.d_stride, (uint32_t)tx, &ox);
                if (rx || ox >= g.ow) continue;
                int64_t r = ((int64_t)n * g.oh + oy) * g.ow + ox;
                if (r < r0 || r >= r0 + nr) continue;
                const TC *src = dcols + (uint32_t)(r - r0) * K + ((uint32_t)ky * (uint32_t)g.kw + (uint32_t)kx) * (uint32_t)g.ci + c;
                if (g.vec == 8) {
                    ssl__vio<8>::ld(src, s8);
                    for (int e = 0; e < 8; e++) v[e] += s8[e];
                } else {
                    v[0] += ssl__ld(src[0]);
                }
            }
        }
        if (g.vec == 8) ssl__vio<8>::st(dx + i, v);
        else ssl__st(&dx[i], v[0]);
    }
};

/* Output pixels per im2col block: SSL_CUDA_IM2COL_BYTES of columns (of
   esize bytes each) at most. 1 GB on the GPU: every convolution of a
   bf16 ResNet-50 at batch 256 and 224 is one block (the largest, the stem
   and layer1's 3x3, are ~0.93 GB), so one GEMM each, and the input
   gradient's col2im writes dx without zeroing and re-reading it. */
#ifndef SSL_CUDA_IM2COL_BYTES
#define SSL_CUDA_IM2COL_BYTES ((size_t)1 << 30)
#endif
/* the im2col/col2im kernels index a block's columns in 32 bits (and divide
   them by K/8 as 31-bit dividends): a block of 2-byte columns must stay
   under 2^31 elements */
static_assert(SSL_CUDA_IM2COL_BYTES / 2 < ((size_t)1 << 31), "SSL_CUDA_IM2COL_BYTES must stay below 4 GiB");
static int64_t ssl__cg_block(const ssl__cg &g, int emu, size_t esize) {
    /* emulation blocks as the CPU does (its budget in fp32 columns), so the
       weight gradient's sums split where the CPU's do; SSL_EMU_GPU_BLOCKS=1
       blocks as the GPU does (bench/traffic.py's bookkeeping) */
    static int gpu_blocks = -1;
    if (gpu_blocks < 0) gpu_blocks = getenv("SSL_EMU_GPU_BLOCKS") && *getenv("SSL_EMU_GPU_BLOCKS") == '1';
    if (gpu_blocks) emu = 0;
    size_t budget = emu ? (size_t)SSL_IM2COL_BYTES : SSL_CUDA_IM2COL_BYTES, e = emu ? sizeof(float) : esize;
    int64_t rows = g.n * g.oh * g.ow, per = (int64_t)(budget / (e * (size_t)(g.kh * g.kw * g.ci)));
    if (per < 1) per = 1;
    return per < rows ? per : rows;
}

/* A tensor's data as elements of T: as it is when stored so (the model
   hands bf16 weight copies made once per forward), else converted into
   scratch `which` (GEMM operands are of the activations' type). */
template <class T, class X> static const T *ssl__as_type(const X &x, const ssl_tensor *w, int which = SSL__S_W) {
    int64_t n = ssl_tensor_numel(w);
    if (w->dtype == ssl__dtype_of((const T *)NULL)) return (const T *)w->data;
    SSL__PROF("copy, fill", (double)(sizeof(T) + ssl_dtype_size(w->dtype)) * n, 0);
    T *h = (T *)ssl__tmp(x, which, sizeof(T) * (size_t)n);
    SSL__TYPED(w->dtype, TW, {
        ssl__f_convert<T, TW> f = {h, (const TW *)w->data};
        x.each(f, n);
    });
    return h;
}

/* y = acc + bias, rounded once into y's type (a bf16 y with a bias: the
   GEMM's fp32 result goes through acc rather than onto a bias already
   rounded to bf16) */
template <class T> struct ssl__f_bias_store {
    const float *acc, *b;
    T *y;
    int64_t c;
    SSL_HD void operator()(int64_t i) const { ssl__st(&y[i], acc[i] + b[i % c]); }
};

/* y (TC) = conv(x (TX), w): GEMMs on operands of y's type; the input is
   its own im2col matrix for 1x1 stride-1 convolutions of the same type.
   Rows in blocks (im2col's buffer, or a bf16 y's fp32 accumulator). */
template <class X, class TX, class TC>
static void ssl__conv_fwd(const X &x, const ssl__cg &g, const TX *xd, const ssl_tensor *w, const ssl_tensor *b, TC *yd,
                          ssl_buf *scratch, TC *kept) {
    int64_t rows = g.n * g.oh * g.ow, k = g.kh * g.kw * g.ci, co = g.co;
    const TC *wd = ssl__as_type<TC>(x, w);
    int direct = ssl__cg_is_gemm(g) && ssl__same_type<TX, TC>::value; /* x already is the im2col matrix */
    int via_acc = b && b->data && !ssl__same_type<TC, float>::value;
    float beta = 0.0f;
    if (!via_acc && b && b->data) { /* a profile scope only where there is work: its calls/step count launches */
        SSL__PROF("bias (linear, conv)", (double)sizeof(TC) * rows * co, 0);
        beta = ssl__bias_rows_x(x, yd, rows, co, b);
    }
    int64_t per = direct && !via_acc ? rows : ssl__cg_block(g, ssl__emu, sizeof(TC));
    TC *cols = NULL;
    float *acc = NULL;
    if (!direct && !kept) {
        size_t bytes = sizeof(TC) * (size_t)(per * k);
        cols = (TC *)(scratch ? x.scratch(scratch, bytes) : ssl__tmp(x, SSL__S_CONV, bytes));
    }
    if (via_acc) acc = (float *)ssl__tmp(x, SSL__S_ACC, sizeof(float) * (size_t)(per * co));
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        if (kept) cols = kept + r0 * k; /* the block's rows of the whole matrix, kept for the backward */
        const TC *A = direct ? (const TC *)(const void *)xd + r0 * k : cols;
        if (!direct) ssl__im2col_x(x, g, xd, cols, r0, nr);
        if (!via_acc) {
            x.gemm("GEMM conv forward", 0, 1, (int)nr, (int)co, (int)k, 1.0f, A, (int)k, wd, (int)k, beta, yd + r0 * co, (int)co);
            continue;
        }
        x.gemm("GEMM conv forward", 0, 1, (int)nr, (int)co, (int)k, 1.0f, A, (int)k, wd, (int)k, 0.0f, acc, (int)co);
        SSL__PROF("bias (linear, conv)", (4.0 + sizeof(TC)) * nr * co, (double)nr * co);
        ssl__f_bias_store<TC> f = {acc, b->data, yd + r0 * co, co};
        x.each(f, nr * co);
    }
}

// ---- cuDNN convolutions (a CUDNN=1 build, on request) ------------------------
/* ssl_cuda_set_conv("cudnn") (the programs' conv=cudnn) routes
   the GPU's convolutions to cuDNN's kernels, which read the input where it
   is (implicit GEMM and the like: no im2col buffer, no col2im): forward,
   input gradient and weight gradient through cudnnConvolutionForward,
   BackwardData and BackwardFilter on NHWC tensors and KRSC (= OHWI)
   filters of the activations' type; fp32 with FMA math (no TF32), bf16
   with tensor-op math and fp32 accumulation. For each shape the fastest
   deterministic algorithm is found once by running them
   (cudnnFind*Algorithm, as PyTorch's cudnn.benchmark), then kept. What
   stays on the GEMM path: emulation (cuDNN needs a GPU), biased
   convolutions, an input gradient of another type than dy, and a shape
   and direction for which cuDNN has no usable deterministic algorithm
   (said once on stderr). An input of another type than the output (the
   stem's fp32 images) is converted first.
   Weight gradients of bf16 convolutions come out of cuDNN in bf16 and are
   added to the fp32 gradient (as PyTorch's autocast does); the GEMM path
   writes them in fp32 directly. */
/* cuDNN's engine is bit-reproducible only within a process: its algorithm
   is picked by timing, so another run (a resume, the same seed twice) may
   pick another that sums in another order. */
static int ssl__conv_engine = 0; /* 0: GEMM; 1: cuDNN */
extern "C" int ssl_cuda_set_conv(const char *engine) {
    if (!engine || !strcmp(engine, "gemm")) { ssl__conv_engine = 0; return 0; }
    if (!strcmp(engine, "cudnn")) {
#ifdef SSL_CUDNN
        ssl__conv_engine = 1;
        return 0;
#else
        return ssl__fail("conv engine cudnn: this build has no cuDNN (build with make CUDNN=1)");
#endif
    }
    return ssl__fail("conv engine '%s': expected gemm or cudnn", engine);
}
extern "C" const char *ssl_cuda_conv(void) {
    static const char *const names[2] = {"gemm", "cudnn"};
    return names[ssl__conv_engine];
}

#ifdef SSL_CUDNN
#include <cudnn.h>
#define SSL_CUDNN_CHECK(call)                                                                  \
    do {                                                                                       \
        cudnnStatus_t st_ = (call);                                                            \
        if (st_ != CUDNN_STATUS_SUCCESS) ssl__cuda_die(__FILE__, __LINE__, #call, cudnnGetErrorString(st_)); \
        ssl__sync_check(__FILE__, __LINE__, #call);                                              \
    } while (0)
static cudnnHandle_t ssl__cudnn(void) {
    static cudnnHandle_t h = NULL;
    if (!h) {
        SSL_CUDNN_CHECK(cudnnCreate(&h));
    }
    return h;
}
/* one convolution shape: its descriptors and the algorithms found for it */
#define SSL__CUDNN_PLANS 512
struct ssl__cudnn_plan {
    int64_t key[10];
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int have[3]; /* forward, data, filter: 1 found, -1 cuDNN has no usable algorithm (the GEMM path takes it), 0 not yet */
    cudnnMathType_t req, math[3]; /* asked for; what each direction's algorithm was timed with */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filter;
    size_t ws[3];
    uint64_t used; /* the least recently used plan makes room when all are taken */
};
static ssl__cudnn_plan ssl__cudnn_plans[SSL__CUDNN_PLANS];
static int ssl__cudnn_nplans;
static uint64_t ssl__cudnn_clock;
static ssl_buf ssl__cudnn_ws;
static ssl__cudnn_plan *ssl__cudnn_plan_for(const ssl__cg &g, int dtype) {
    int64_t key[10] = {g.n, g.h, g.w, g.ci, g.co, g.kh, g.kw, g.stride, g.pad, dtype};
    for (int i = 0; i < ssl__cudnn_nplans; i++)
        if (!memcmp(ssl__cudnn_plans[i].key, key, sizeof key)) {
            ssl__cudnn_plans[i].used = ++ssl__cudnn_clock;
            return &ssl__cudnn_plans[i];
        }
    ssl__cudnn_plan *p;
    if (ssl__cudnn_nplans < SSL__CUDNN_PLANS) p = &ssl__cudnn_plans[ssl__cudnn_nplans++];
    else { /* a long run through many shapes (progressive resolution, last batches, evaluation): the least
              recently used plan is dropped (found again if its shape comes back) */
        p = &ssl__cudnn_plans[0];
        for (int i = 1; i < SSL__CUDNN_PLANS; i++)
            if (ssl__cudnn_plans[i].used < p->used) p = &ssl__cudnn_plans[i];
        SSL_CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x));
        SSL_CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y));
        SSL_CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w));
        SSL_CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->conv));
    }
    memset(p, 0, sizeof *p);
    p->used = ++ssl__cudnn_clock;
    memcpy(p->key, key, sizeof key);
    cudnnDataType_t dt = dtype == SSL_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    SSL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    SSL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    SSL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    SSL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
    SSL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, dt, (int)g.n, (int)g.ci, (int)g.h, (int)g.w));
    SSL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, dt, (int)g.n, (int)g.co, (int)g.oh, (int)g.ow));
    SSL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, dt, CUDNN_TENSOR_NHWC, (int)g.co, (int)g.ci, (int)g.kh, (int)g.kw));
    SSL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, g.pad, g.pad, g.stride, g.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
    p->req = dtype == SSL_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    SSL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->req));
    return p;
}
/* Once per plan and direction: find(perf, &n) runs cuDNN's Find, and the
   fastest deterministic algorithm of its results (sorted by time) and its
   workspace are kept: returns 1. If cuDNN has none for this shape (say a
   bf16 tensor-op convolution of the stem's 3 channels), that is said once
   on stderr, with every candidate's status, and the GEMM path takes this
   shape from then on: returns 0. */
template <class P, class A, class Find>
static int ssl__cudnn_find(ssl__cudnn_plan *p, int dir, A *algo, const char *what, const Find &find) {
    int *have = &p->have[dir];
    size_t *ws = &p->ws[dir];
    if (*have) return *have > 0;
    P perf[16];
    int n = 0;
    SSL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->req)); /* another direction may have changed it */
    cudnnStatus_t st = find(perf, &n);
    /* the search allocates for itself (cudaMalloc): short of memory, some
       or all candidates fail, and the runtime may keep the allocation's
       error as the last one, which the next launch check would report at
       an unrelated kernel; so it is taken here, and a search that could
       not allocate at all leaves the shape to the GEMM path (no extra
       memory) rather than stopping the run */
    cudaError_t le = cudaGetLastError();
    if (le != cudaSuccess && le != cudaErrorMemoryAllocation) ssl__cuda_die(__FILE__, __LINE__, what, cudaGetErrorString(le));
    if (st / 1000 == CUDNN_STATUS_NOT_SUPPORTED / 1000 || st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        n = 0; /* cuDNN 9's 3xxx codes: nothing for this shape */
    else if (st != CUDNN_STATUS_SUCCESS) ssl__cuda_die(__FILE__, __LINE__, what, cudnnGetErrorString(st));
    size_t fr = 0, tot = 0; /* a workspace of at most half the free memory (and what the one held has): the rest is the run's */
    SSL_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            (p->req != CUDNN_FMA_MATH || perf[i].mathType == CUDNN_FMA_MATH) && /* fp32: never TF32 */
            perf[i].memory <= fr / 2 + ssl__cudnn_ws.cap) {
            *algo = perf[i].algo, *ws = perf[i].memory, p->math[dir] = perf[i].mathType, *have = 1;
            return 1;
        }
    char msg[1024];
    int o = snprintf(msg, sizeof msg, "no usable deterministic algorithm for this shape (%s; %d tried:",
                     cudnnGetErrorString(st), n);
    for (int i = 0; i < n && o < (int)sizeof msg; i++)
        o += snprintf(msg + o, sizeof msg - o, " algo %d %s%s%s%s;", (int)perf[i].algo, cudnnGetErrorString(perf[i].status),
                      perf[i].determinism == CUDNN_DETERMINISTIC ? "" : " non-deterministic",
                      perf[i].mathType == CUDNN_FMA_MATH || p->req != CUDNN_FMA_MATH ? "" : " not FMA",
                      perf[i].memory <= fr / 2 + ssl__cudnn_ws.cap ? "" : " workspace over half the free memory");
    if (o < (int)sizeof msg) snprintf(msg + o, sizeof msg - o, ")");
    static const char *const dirs[3] = {"forward", "input gradient", "weight gradient"};
    const int64_t *k = p->key; /* n, h, w, ci, co, kh, kw, stride, pad, dtype */
    fprintf(stderr, "ssl.cu: %s: %s; the %s of this convolution (%s, input %lldx%lldx%lldx%lld, %lld filters %lldx%lld, "
            "stride %lld, pad %lld) goes through im2col + cuBLAS\n",
            what, msg, dirs[dir], k[9] == SSL_BF16 ? "bf16" : "fp32", (long long)k[0], (long long)k[1], (long long)k[2],
            (long long)k[3], (long long)k[4], (long long)k[5], (long long)k[6], (long long)k[7], (long long)k[8]);
    *have = -1;
    return 0;
}
static void *ssl__cudnn_workspace(size_t bytes) {
    if (!bytes) return NULL;
    if (bytes > ssl__cudnn_ws.cap) { /* cudaFree waits for the convolutions still using it */
        ssl_cuda_free(ssl__cudnn_ws.p);
        ssl__cudnn_ws.p = ssl_cuda_malloc(bytes, "cuDNN workspace");
        ssl__cudnn_ws.cap = bytes;
    }
    return ssl__cudnn_ws.p;
}

/* T: the type of x (converted if needed), y and dy */
/* 0: cuDNN has no usable algorithm for this shape; nothing was done */
template <class T>
static int ssl__cudnn_fwd(ssl__cudnn_plan *p, const ssl__cg &g, const ssl_tensor *x, const ssl_tensor *w, T *y) {
    const ssl__gpu X{};
    if (!ssl__cudnn_find<cudnnConvolutionFwdAlgoPerf_t>(p, 0, &p->fwd, "cudnnFindConvolutionForwardAlgorithm",
                                                       [&](cudnnConvolutionFwdAlgoPerf_t *perf, int *n) {
                                                           return cudnnFindConvolutionForwardAlgorithm(
                                                               ssl__cudnn(), p->x, p->w, p->conv, p->y, 16, n, perf);
                                                       }))
        return 0;
    const T *xd = ssl__as_type<T>(X, x, SSL__S_CONV); /* the stem's fp32 images converted */
    const T *wd = ssl__as_type<T>(X, w);
    float one = 1.0f, zero = 0.0f;
    SSL__PROF("conv forward (cuDNN)", ssl__conv_floor(g, sizeof(T), sizeof(T), sizeof(T), 0).fwd,
              2.0 * g.n * g.oh * g.ow * g.co * g.kh * g.kw * g.ci);
    SSL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[0]));
    SSL_CUDNN_CHECK(cudnnConvolutionForward(ssl__cudnn(), &one, p->x, xd, p->w, wd, p->conv, p->fwd,
                                            ssl__cudnn_workspace(p->ws[0]), p->ws[0], &zero, p->y, y));
    return 1;
}
template <class T> struct ssl__f_acc_grad { /* dw += g (the cuDNN weight gradient) */
    const T *g;
    float *dw;
    SSL_HD void operator()(int64_t i) const { dw[i] += ssl__ld(g[i]); }
};
/* 0: cuDNN has no usable algorithm for a direction this backward needs;
   nothing was done (the GEMM path then runs the whole backward) */
template <class T>
static int ssl__cudnn_bwd(ssl__cudnn_plan *p, const ssl__cg &g, const ssl_tensor *x, const ssl_tensor *w, const T *dy, T *dx,
                          int acc, float *dw) {
    const ssl__gpu X{};
    if (dx && !ssl__cudnn_find<cudnnConvolutionBwdDataAlgoPerf_t>(
                  p, 1, &p->data, "cudnnFindConvolutionBackwardDataAlgorithm",
                  [&](cudnnConvolutionBwdDataAlgoPerf_t *perf, int *n) {
                      return cudnnFindConvolutionBackwardDataAlgorithm(ssl__cudnn(), p->w, p->y, p->conv, p->x, 16, n, perf);
                  }))
        return 0;
    if (!ssl__cudnn_find<cudnnConvolutionBwdFilterAlgoPerf_t>(
            p, 2, &p->filter, "cudnnFindConvolutionBackwardFilterAlgorithm",
            [&](cudnnConvolutionBwdFilterAlgoPerf_t *perf, int *n) {
                return cudnnFindConvolutionBackwardFilterAlgorithm(ssl__cudnn(), p->x, p->y, p->conv, p->w, 16, n, perf);
            }))
        return 0;
    const T *xd = ssl__as_type<T>(X, x, SSL__S_CONV);
    double flops = 2.0 * g.n * g.oh * g.ow * g.co * g.kh * g.kw * g.ci;
    ssl__conv_bytes fl = ssl__conv_floor(g, sizeof(T), sizeof(T), sizeof(T), acc);
    int64_t nw = g.co * g.kh * g.kw * g.ci;
    float one = 1.0f, beta = acc ? 1.0f : 0.0f, zero = 0.0f;
    if (dx) {
        const T *wd = ssl__as_type<T>(X, w);
        SSL__PROF("conv input grad (cuDNN)", fl.dgrad, flops);
        SSL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[1]));
        SSL_CUDNN_CHECK(cudnnConvolutionBackwardData(ssl__cudnn(), &one, p->w, wd, p->y, dy, p->conv, p->data,
                                                     ssl__cudnn_workspace(p->ws[1]), p->ws[1], &beta, p->x, dx));
    }
    SSL__PROF("conv weight grad (cuDNN)", fl.wgrad, flops);
    void *ws = ssl__cudnn_workspace(p->ws[2]);
    SSL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[2]));
    if (ssl__same_type<T, float>::value) { /* accumulated in place (beta 1) */
        SSL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ssl__cudnn(), &one, p->x, xd, p->y, dy, p->conv, p->filter, ws,
                                                       p->ws[2], &one, p->w, dw));
        return 1;
    }
    T *gw = (T *)ssl__tmp(X, SSL__S_W2, sizeof(T) * (size_t)nw);
    SSL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ssl__cudnn(), &one, p->x, xd, p->y, dy, p->conv, p->filter, ws,
                                                   p->ws[2], &zero, p->w, gw));
    ssl__f_acc_grad<T> f = {gw, dw};
    X.each(f, nw);
    return 1;
}
/* cuDNN takes this forward / backward (see above) */
static int ssl__cudnn_takes(const ssl_tensor *b) {
    return !ssl__emu && ssl__conv_engine == 1 && !(b && b->data);
}
#endif

/* Tests: the cuDNN plan of one convolution shape, read back through cuDNN's
   own getters (host-side calls that need no GPU), against the geometry the
   GEMM path computes: NHWC tensors with their strides, a KRSC (= OHWI)
   filter, padding, stride, no dilation, cross-correlation, fp32 compute,
   the math type, and cuDNN's output size. 0: all agree; -1: the first
   difference (ssl_last_error); 1: this build has no cuDNN. The plans made
   here are the plans convolutions use, so more than 512 shapes exercise
   their least-recently-used replacement. */
extern "C" int ssl_cuda_cudnn_plan_check(int n, int h, int w, int ci, int co, int k, int stride, int pad, int bf16) {
#ifdef SSL_CUDNN
    ssl_tensor x = ssl_tensor_make(NULL, 4, n, h, w, ci), wt = ssl_tensor_make(NULL, 4, co, k, k, ci);
    ssl__cg g = ssl__cg_make(&x, &wt, stride, pad);
    ssl__cudnn_plan *p = ssl__cudnn_plan_for(g, bf16 ? SSL_BF16 : SSL_F32);
    cudnnDataType_t want_dt = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, dt;
    const char *what = "";
    int t[8];
    cudnnTensorDescriptor_t td[2] = {p->x, p->y};
    int dims[2][4] = {{n, ci, h, w}, {n, co, (int)g.oh, (int)g.ow}};
    for (int i = 0; i < 2; i++) {
        SSL_CUDNN_CHECK(cudnnGetTensor4dDescriptor(td[i], &dt, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]));
        int c = dims[i][1], hh = dims[i][2], ww = dims[i][3];
        int want[8] = {dims[i][0], c, hh, ww, hh * ww * c, 1, ww * c, c}; /* NHWC strides */
        if (dt != want_dt || memcmp(t, want, sizeof want))
            return ssl__fail("cuDNN plan: %s tensor is %s %dx%dx%dx%d strides %d,%d,%d,%d; want %dx%dx%dx%d NHWC",
                             i ? "output" : "input", dt == want_dt ? "right type" : "WRONG TYPE", t[0], t[1], t[2], t[3],
                             t[4], t[5], t[6], t[7], want[0], want[1], want[2], want[3]);
    }
    cudnnTensorFormat_t fmt;
    SSL_CUDNN_CHECK(cudnnGetFilter4dDescriptor(p->w, &dt, &fmt, &t[0], &t[1], &t[2], &t[3]));
    if (dt != want_dt || fmt != CUDNN_TENSOR_NHWC || t[0] != co || t[1] != ci || t[2] != k || t[3] != k)
        return ssl__fail("cuDNN plan: filter %dx%dx%dx%d (format %d); want KRSC %dx%dx%dx%d", t[0], t[1], t[2], t[3],
                         (int)fmt, co, ci, k, k);
    cudnnConvolutionMode_t mode;
    SSL_CUDNN_CHECK(cudnnGetConvolution2dDescriptor(p->conv, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &mode, &dt));
    if (t[0] != pad || t[1] != pad || t[2] != stride || t[3] != stride || t[4] != 1 || t[5] != 1) what = "padding, stride or dilation";
    else if (mode != CUDNN_CROSS_CORRELATION) what = "mode (want cross-correlation)";
    else if (dt != CUDNN_DATA_FLOAT) what = "compute type (want fp32)";
    cudnnMathType_t math;
    SSL_CUDNN_CHECK(cudnnGetConvolutionMathType(p->conv, &math));
    if (!*what && math != (bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH)) what = "math type";
    if (*what) return ssl__fail("cuDNN plan: the convolution's %s differs", what);
    SSL_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &t[0], &t[1], &t[2], &t[3]));
    if (t[0] != n || t[1] != co || t[2] != (int)g.oh || t[3] != (int)g.ow)
        return ssl__fail("cuDNN plan: cuDNN's output is %dx%dx%dx%d, the GEMM path's %dx%dx%lldx%lld", t[0], t[1], t[2],
                         t[3], n, co, (long long)g.oh, (long long)g.ow);
    if (ssl__cudnn_nplans > SSL__CUDNN_PLANS) return ssl__fail("cuDNN plan: %d plans kept", ssl__cudnn_nplans);
    return 0;
#else
    (void)n, (void)h, (void)w, (void)ci, (void)co, (void)k, (void)stride, (void)pad, (void)bf16;
    return 1;
#endif
}

extern "C" int ssl_cuda_conv2d_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, int stride,
                                       int pad, ssl_tensor *y, ssl_buf *scratch, ssl_tensor *cols) {
    ssl__cg g = ssl__cg_make(x, w, stride, pad);
    if (cols && (uintptr_t)cols->data % 16) g.vec = 1, g.vshift = 0, g.d_cv = ssl__div_make(g.ci); /* im2col's 16-byte stores */
#ifdef SSL_CUDNN
    if (!cols && ssl__cudnn_takes(b)) {
        int done = 0;
        SSL__GUARD;
        SSL__TYPED(y->dtype, T, done = ssl__cudnn_fwd<T>(ssl__cudnn_plan_for(g, y->dtype), g, x, w, (T *)y->data););
        if (done) return 0; /* else cuDNN has no algorithm for the shape: the GEMM path below */
    }
#endif
    if (ssl__prof_on)
        ssl__prof_conv_floor += ssl__conv_floor(g, ssl_dtype_size(x->dtype), ssl_dtype_size(y->dtype), 0, 0).fwd;
    SSL__TYPED(x->dtype, TX, SSL__TYPED(y->dtype, TC, {
        SSL__RUN(ssl__conv_fwd(X_, g, (const TX *)x->data, w, b, (TC *)y->data, scratch, cols ? (TC *)cols->data : (TC *)NULL););
    }););
    return 0;
}

/* dx (TX, x's type) and dw (fp32) from dy (TG): GEMMs on operands of dy's
   type, fp32 accumulation; dw's GEMM writes fp32 (beta 1). */
template <class X, class TX, class TG>
static void ssl__conv_bwd(const X &x, const ssl__cg &g, const TX *xd, const ssl_tensor *w, const TG *dyd, TX *dxd, int acc,
                          float *dwd, ssl_tensor *db, ssl_buf *scratch, const TG *kept) {
    int64_t rows = g.n * g.oh * g.ow, k = g.kh * g.kw * g.ci, co = g.co;
    if (db && db->data) {
        SSL__PROF("bias (linear, conv)", (double)sizeof(TG) * rows * co, 0);
        ssl__bias_grad_x(x, dyd, rows, co, db);
    }
    const TG *wd = dxd ? ssl__as_type<TG>(x, w) : NULL;
    if (ssl__cg_is_gemm(g) && ssl__same_type<TX, TG>::value) {
        /* y = x w^T  =>  dw += dy^T x, dx = dy w */
        const TG *xg = (const TG *)(const void *)xd;
        x.gemm("GEMM conv weight grad", 1, 0, (int)co, (int)k, (int)rows, 1.0f, dyd, (int)co, xg, (int)k, 1.0f, dwd, (int)k);
        if (dxd)
            x.gemm("GEMM conv input grad", 0, 0, (int)rows, (int)k, (int)co, 1.0f, dyd, (int)co, wd, (int)k,
                   acc ? 1.0f : 0.0f, (TG *)(void *)dxd, (int)k);
        return;
    }
    /* the columns rebuilt per block, or the forward's (kept) */
    int64_t per = ssl__cg_block(g, ssl__emu, sizeof(TG));
    size_t bytes = sizeof(TG) * (size_t)((kept ? 1 : 2) * per * k);
    TG *buf = (TG *)(scratch ? x.scratch(scratch, bytes) : ssl__tmp(x, SSL__S_CONV, bytes)), *dcols = kept ? buf : buf + per * k;
    int fresh = dxd && !acc && per >= rows; /* one block: col2im writes dx outright */
    if (dxd && !acc && !fresh) {
        SSL__PROF("copy, fill", (double)sizeof(TX) * g.n * g.h * g.w * g.ci, 0);
        x.zero(dxd, sizeof(TX) * (size_t)(g.n * g.h * g.w * g.ci));
    }
    int64_t img = g.h * g.w * g.ci, opix = g.oh * g.ow;
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        const TG *dyb = dyd + r0 * co, *cols = kept ? kept + r0 * k : buf;
        if (!kept) ssl__im2col_x(x, g, xd, buf, r0, nr);
        x.gemm("GEMM conv weight grad", 1, 0, (int)co, (int)k, (int)nr, 1.0f, dyb, (int)co, cols, (int)k, 1.0f, dwd, (int)k);
        if (!dxd) continue;
        x.gemm("GEMM conv input grad", 0, 0, (int)nr, (int)k, (int)co, 1.0f, dyb, (int)co, wd, (int)k, 0.0f, dcols, (int)k);
        /* only the images this block's rows come from */
        int64_t n0 = r0 / opix, n1 = (r0 + nr - 1) / opix;
        SSL__PROF("col2im", (double)sizeof(TG) * nr * k + (fresh ? 1.0 : 2.0) * sizeof(TX) * (n1 - n0 + 1) * img, (double)nr * k);
        ssl__f_col2im<TG, TX> c2 = {g, dcols, dxd, r0, nr, n0 * img, fresh};
        x.each(c2, (n1 - n0 + 1) * img / g.vec);
    }
}

extern "C" int ssl_cuda_conv2d_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, int stride,
                                        int pad, ssl_tensor *dx, int dx_accumulate, ssl_tensor *dw, ssl_tensor *db,
                                        ssl_buf *scratch, const ssl_tensor *cols) {
    ssl__cg g = ssl__cg_make(x, w, stride, pad);
    if (dx && (uintptr_t)dx->data % 16) g.vec = 1, g.vshift = 0, g.d_cv = ssl__div_make(g.ci); /* col2im: 16-byte accesses need it aligned */
#ifdef SSL_CUDNN
    if (!cols && ssl__cudnn_takes(db) && (!dx || dx->dtype == dy->dtype)) {
        int done = 0;
        SSL__GUARD;
        SSL__TYPED(dy->dtype, T, done = ssl__cudnn_bwd<T>(ssl__cudnn_plan_for(g, dy->dtype), g, x, w, (const T *)dy->data,
                                                          dx ? (T *)dx->data : (T *)NULL, dx_accumulate, dw->data););
        if (done) return 0; /* else the GEMM path below */
    }
#endif
    if (ssl__prof_on) {
        ssl__conv_bytes fl = ssl__conv_floor(g, ssl_dtype_size(x->dtype), ssl_dtype_size(dy->dtype),
                                             ssl_dtype_size(x->dtype), dx_accumulate);
        ssl__prof_conv_floor += fl.wgrad + (dx ? fl.dgrad : 0);
    }
    SSL__TYPED(x->dtype, TX, SSL__TYPED(dy->dtype, TG, {
        SSL__RUN(ssl__conv_bwd(X_, g, (const TX *)x->data, w, (const TG *)dy->data, dx ? (TX *)dx->data : (TX *)NULL,
                               dx_accumulate, dw->data, db, scratch, cols ? (const TG *)cols->data : (const TG *)NULL););
    }););
    return 0;
}

// ---- batch norm ------------------------------------------------------------------
/* Per-channel sums over row blocks, in double: part[blk][2][c]. Stage
   GRAD: dy and dy * xhat; MOMENTS: x - k and
   (x - k)^2 with k the block's first value of the channel (shifted sums:
   one pass over x, no cancellation when k is near the mean, which a value
   of the same channel is). Then fin adds the blocks in order
   (deterministic; a different split than the CPU's 32 blocks, so the sums
   can differ in the last bits of a double).
   SyncBN (training with a communicator of several ranks): the same passes,
   with the per-channel double sums all-reduced between the statistics and
   what uses them (the forward's sum and its squared deviations from the
   mean, the backward's two sums), on the compute stream, no host wait. A
   world of one launches the one-process kernels only, unchanged. */
/* ptxas (CUDA 13, sm_90) may schedule a run of loads into the arithmetic
   that uses them, one or two loads ahead, however the source orders them:
   the SASS (bench/ptx_check.py with cuobjdump) showed BN's moments pass
   keeping 2 loads in flight a thread where the source loads 16 rows
   ahead. The thread then waits a memory latency per couple of rows.
   ssl__after(v, dep) is v, unchanged (dep is the OR of the run's loaded
   bits AND a kernel argument `zero` that is always 0, which the compiler
   cannot know), but depending on every load of the run, so nothing
   computed from v can start before all of them are issued: ptxas then
   issues them together. */
static inline SSL_HD uint32_t ssl__bits(float v) {
    union { float f; uint32_t u; } a;
    a.f = v;
    return a.u;
}
static inline SSL_HD float ssl__after(float v, uint32_t dep) {
    union { float f; uint32_t u; } a;
    a.f = v, a.u |= dep;
    return a.f;
}
enum { SSL__BNS_GRAD, SSL__BNS_MOMENTS };
/* V channels per thread: 1, or 8 (c % 8 == 0, the tensors and the
   channels' mean and invstd 16-byte aligned) loaded as one vector. With 8
   channels a thread (64K threads, 4x the blocks) the backward's pass got
   faster on an H200 and the forward's slower (bench/RESULTS.md, "The GPU,
   measured"), so the backward takes 8 and the forward 1. A channel's
   additions are those of the one-channel loop, in its order: each
   (block, channel) sum is the same bits for the same blocks. */
template <class T, int V, int STAGE, int U> struct ssl__f_bn_part {
    /* STAGE a parameter: each stage its own kernel, registers and all */
    const T *x, *dy;
    const float *mean, *invstd;
    const T *relu_y; /* GRAD: the fused ReLU's mask (NULL: none) */
    int64_t rows, c, per;
    double *part;
    const uint8_t *mbits; /* GRAD: the mask as bits (ssl_batchnorm_forward_mask), instead of relu_y */
    uint32_t zero;        /* 0 (ssl__after; left out of the initializers) */
    /* rows r .. r + N - 1 of channels ch .. ch + V - 1: all their loads
       issued before any of the (dependent, in-order) double additions, so
       that each thread has N rows' loads in flight rather than the one or
       few the compiler hoists across a loop of additions (Little's law:
       an H200 wants ~3.4 MB in flight, 4.8 TB/s x ~700 ns): one channel a
       thread and U = 16 rows for the forward's one load, 128K threads, 4 MB of 2-byte loads; eight
       channels a thread and U = 2 for the backward's loads, 64K threads,
       ~4 MB of 16-byte loads in what the registers allow (16 double sums a
       thread; U = 8 where the backward takes one channel a thread). The
       additions are those of the one-row loop, in its order, whatever V
       and U: the same bits for the same blocks. */
    template <int N>
    SSL_HD void rows_(int64_t r, int64_t ch, const float *k, const float *mu, const float *is, double *s0, double *s1) const {
        float v[N][V], g[N][V];
        for (int u = 0; u < N; u++) ssl__vio<V>::ld(x + (r + u) * c + ch, v[u]);
        if constexpr (STAGE == SSL__BNS_MOMENTS) {
            /* the shift made to depend on all N loads (ssl__after): ptxas
               otherwise interleaved them two at a time with the double
               additions (32 registers); so, all 16 load first (48) */
            float kk[V];
            uint32_t all = 0;
            for (int u = 0; u < N; u++)
                for (int e = 0; e < V; e++) all |= ssl__bits(v[u][e]);
            for (int e = 0; e < V; e++) kk[e] = ssl__after(k[e], all & zero);
            for (int u = 0; u < N; u++)
                for (int e = 0; e < V; e++) {
                    double d = (double)v[u][e] - (double)kk[e];
                    s0[e] += d, s1[e] += d * d;
                }
        } else {
            for (int u = 0; u < N; u++) ssl__vio<V>::ld(dy + (r + u) * c + ch, g[u]);
            if (relu_y) {
                float m[V];
                for (int u = 0; u < N; u++) {
                    ssl__vio<V>::ld(relu_y + (r + u) * c + ch, m);
                    for (int e = 0; e < V; e++) g[u][e] = ssl__relu_grad(m[e], g[u][e]);
                }
            } else if (mbits) {
                for (int u = 0; u < N; u++) { /* V bits in one byte: c and ch are multiples of V */
                    int64_t i = (r + u) * c + ch;
                    int byte = V == 1 ? ssl__bit(mbits, i) : mbits[i >> 3] >> (i & 7);
                    for (int e = 0; e < V; e++) g[u][e] = (byte >> e) & 1 ? g[u][e] : 0.0f;
                }
            }
            for (int u = 0; u < N; u++)
                for (int e = 0; e < V; e++) {
                    s0[e] += g[u][e];
                    s1[e] += (double)g[u][e] * ((v[u][e] - mu[e]) * is[e]);
                }
        }
    }
    SSL_HD void operator()(int64_t t) const {
        int64_t nc = c / V, blk = t / nc, ch = t % nc * V, r0 = blk * per, r1 = ssl__min64(r0 + per, rows), r = r0;
        double s0[V], s1[V];
        float k[V], mu[V], is[V];
        if (STAGE == SSL__BNS_MOMENTS) ssl__vio<V>::ld(x + r0 * c + ch, k);
        if (STAGE == SSL__BNS_GRAD) ssl__vio<V>::ld(mean + ch, mu), ssl__vio<V>::ld(invstd + ch, is);
        for (int e = 0; e < V; e++) {
            s0[e] = 0, s1[e] = 0;
            if (STAGE != SSL__BNS_GRAD) mu[e] = 0.0f, is[e] = 0.0f;
            if (STAGE != SSL__BNS_MOMENTS) k[e] = 0.0f;
        }
        for (; r + U <= r1; r += U) rows_<U>(r, ch, k, mu, is, s0, s1);
        for (; r < r1; r++) rows_<1>(r, ch, k, mu, is, s0, s1);
        for (int e = 0; e < V; e++) {
            part[(blk * 2) * c + ch + e] = s0[e];
            part[(blk * 2 + 1) * c + ch + e] = s1[e];
        }
    }
};
/* The blocks in groups of G (about sqrt(blocks)), one thread per group and
   channel, so that no thread walks all of a channel's blocks (131072 / c
   of them: 2048 at 64 channels, a serial chain of 4,096 dependent-latency
   loads on 64 threads). GRAD: plain sums into grp[g][0..1][ch]. MOMENTS
   (a block's shift k is its first value): the group's count, its sum
   (sum of nb k + S, as one sum over the whole channel would add it) and
   its squared deviations from its own mean, sum of (Q - S^2/nb) +
   nb (mean_b - mean_g)^2, into grp[g][0..2][ch]. The channel's mean is
   then one sum divided by the count, as on the CPU, not a running
   (Chan) mean: a few rows' exact mean is often a tie between two floats,
   and a running mean's last-bit error rounds it the other way (tried: the
   batch-8 train steps then drift from the CPU's 100 times faster). */
/* The walks take one block a step: loading 8 blocks ahead measured no
   gain on an H200 (bench/RESULTS.md, "The GPU, measured"); the profile's
   "groups, finish" rows time them on their own. */
template <class T> struct ssl__f_bn_group {
    int stage;
    const double *part;
    const T *x;
    double *grp; /* [groups][3][c] */
    int64_t blocks, rows, c, per, G;
    SSL_HD void operator()(int64_t t) const {
        int64_t g = t / c, ch = t % c, b0 = g * G, b1 = ssl__min64((g + 1) * G, blocks);
        double a0 = 0, a1 = 0, a2 = 0;
        for (int64_t b = b0; b < b1; b++) {
            double S = part[(b * 2) * c + ch], Q = part[(b * 2 + 1) * c + ch];
            if (stage == SSL__BNS_GRAD) {
                a0 += S, a1 += Q;
                continue;
            }
            int64_t r0 = b * per;
            double nb = (double)(ssl__min64(r0 + per, rows) - r0);
            a0 += nb, a1 += nb * (double)ssl__ld(x[r0 * c + ch]) + S;
        }
        if (stage == SSL__BNS_MOMENTS) {
            double mg = a1 / a0;
            for (int64_t b = b0; b < b1; b++) {
                double S = part[(b * 2) * c + ch], Q = part[(b * 2 + 1) * c + ch];
                int64_t r0 = b * per;
                double nb = (double)(ssl__min64(r0 + per, rows) - r0), mb = ssl__ld(x[r0 * c + ch]) + S / nb - mg;
                a2 += Q - S * S / nb + nb * mb * mb;
            }
        }
        grp[(g * 3) * c + ch] = a0, grp[(g * 3 + 1) * c + ch] = a1, grp[(g * 3 + 2) * c + ch] = a2;
    }
};
/* per channel over the groups: the sums (GRAD), or the count and the sum
   (MOMENTS: SyncBN's), into sums[2][c] */
struct ssl__f_bn_fin {
    const double *grp;
    double *sums;
    int64_t groups, c;
    SSL_HD void operator()(int64_t ch) const {
        double s0 = 0, s1 = 0;
        for (int64_t g = 0; g < groups; g++) s0 += grp[(g * 3) * c + ch], s1 += grp[(g * 3 + 1) * c + ch];
        sums[ch] = s0;
        sums[c + ch] = s1;
    }
};
/* training, one pass: the groups' moments added per channel, then what
   the two-pass CPU computes: the mean rounded to float, and the sum of
   squared deviations from that rounded mean (M2 + N (mean - mean_f)^2),
   into sums[ch] for the stats step */
struct ssl__f_bn_moments {
    const double *grp;
    double *sums;
    float *mean;
    int64_t groups, rows, c;
    SSL_HD void operator()(int64_t ch) const {
        double tot = 0, m2 = 0;
        for (int64_t g = 0; g < groups; g++) tot += grp[(g * 3 + 1) * c + ch];
        double md = tot / rows;
        for (int64_t g = 0; g < groups; g++) { /* each group's squared deviations moved to the channel's mean */
            double n = grp[(g * 3) * c + ch], d = grp[(g * 3 + 1) * c + ch] / n - md;
            m2 += grp[(g * 3 + 2) * c + ch] + n * d * d;
        }
        float mf = (float)md;
        double e = md - (double)mf;
        mean[ch] = mf;
        sums[ch] = m2 + rows * e * e;
    }
};
/* SyncBN (several ranks), after the all-reduce of every rank's per-channel
   sum into sums[c + ch]: the global mean rounded to float, and this rank's
   squared deviations from that rounded mean (each group's moved to it,
   M2 + n (mean_g - mean_f)^2), into sums[ch] for the next all-reduce. What
   the CPU's SyncBN sums, in double as this path's sums are. */
struct ssl__f_bn_rank_dev {
    const double *grp;
    double *sums;
    float *mean;
    int64_t groups, c, rows_all;
    SSL_HD void operator()(int64_t ch) const {
        float mf = (float)(sums[c + ch] / rows_all);
        double m2 = 0;
        for (int64_t g = 0; g < groups; g++) {
            double n = grp[(g * 3) * c + ch], d = grp[(g * 3 + 1) * c + ch] / n - (double)mf;
            m2 += grp[(g * 3 + 2) * c + ch] + n * d * d;
        }
        mean[ch] = mf;
        sums[ch] = m2;
    }
};
/* SyncBN: n doubles of device memory summed over the ranks in place, by the
   communicator (NCCL on GPUs; MPI on the emulation's host memory), queued
   on the compute stream between the kernels that make and read them */
static int ssl__bn_sum_ranks(ssl_comm *comm, double *v, int64_t n) {
    ssl_tensor t = ssl_tensor_vec((float *)v, n);
    t.dtype = SSL_F64;
    t.device = SSL_DEV_CUDA;
    return ssl_all_reduce(comm, &t);
}
/* after the deviations (training) or from the running stats (eval): invstd,
   running stats, and the folded scale/shift */
struct ssl__f_bn_stats {
    int training;
    const double *sums;
    float *mean, *invstd, *rmean, *rvar, *scale, *shift;
    const float *gamma, *beta;
    int64_t rows;
    float eps, momentum;
    SSL_HD void operator()(int64_t i) const {
        if (training) {
            double var = sums[i] / rows; /* biased: what normalizes */
            invstd[i] = (float)(1.0 / sqrt(var + eps));
            if (rmean && rvar) { /* the running variance is the unbiased one */
                rmean[i] = ssl__bn_running(rmean[i], mean[i], momentum);
                rvar[i] = ssl__bn_running(rvar[i], (float)(sums[i] / (rows - 1)), momentum);
            }
        } else {
            mean[i] = rmean[i];
            invstd[i] = (float)(1.0 / sqrt((double)rvar[i] + eps));
        }
        float g = gamma ? gamma[i] : 1.0f, b = beta ? beta[i] : 0.0f;
        scale[i] = g * invstd[i];
        shift[i] = ssl__mul_add(-mean[i], scale[i], b);
    }
};
/* y = BN(x) (+ residual) (then ReLU): the fused output pass */
/* V values of one row per work item (c % V == 0); scale and shift loaded as
   vectors (see ssl__f_bn_dx: as 16 single floats they were 128 L1 cycles a
   warp against 13 for the data). */
template <class T, int V> struct ssl__f_bn_apply {
    const T *x;
    const float *scale, *shift;
    const T *res;
    T *y;
    ssl__div d_c;
    int relu;
    uint8_t *mask; /* V = 8: the ReLU's bits, a byte per work item (NULL: none) */
    SSL_HD void operator()(int64_t t) const {
        uint32_t r, k = ssl__divmod(d_c, (uint32_t)(t * V), &r);
        float sc[V], sh[V];
        ssl__vio<V>::ld(scale + k, sc);
        ssl__vio<V>::ld(shift + k, sh);
        float v[V], rv[V] = {}; /* (initialized: the host compiler cannot see res's test repeat) */
        ssl__vio<V>::ld(x + t * V, v);
        if (res) ssl__vio<V>::ld(res + t * V, rv);
        for (int e = 0; e < V; e++) {
            v[e] = ssl__bn_apply(v[e], sc[e], sh[e]);
            if (res) v[e] += rv[e];
            if (relu) v[e] = ssl__relu(v[e]);
        }
        ssl__vio<V>::st(y + t * V, v);
        if (V == 8 && mask) {
            int b = 0;
            for (int e = 0; e < V; e++) b |= (ssl__stored(y, v[e]) > 0.0f) << e; /* where the stored y is > 0 */
            mask[t] = (uint8_t)b;
        }
    }
};
struct ssl__f_bn_gradfin {
    int training;
    const double *sums;
    float *dweight, *dbias, *gam, *mean_dy, *mean_dy_xhat;
    const float *gamma;
    int64_t rows, c;
    SSL_HD void operator()(int64_t i) const {
        if (dbias) dbias[i] += (float)sums[i];
        if (dweight) dweight[i] += (float)sums[c + i];
        gam[i] = gamma ? gamma[i] : 1.0f;
        mean_dy[i] = training ? (float)(sums[i] / rows) : 0.0f;
        mean_dy_xhat[i] = training ? (float)(sums[c + i] / rows) : 0.0f;
    }
};
/* V values of one row per work item (c % V == 0). The channels' five
   parameters are loaded as vectors like the data: read one float at a time,
   each of a warp's 40 loads touches 32 floats 32 bytes apart, 8 of L1's
   128-byte lines, so L1 spent 320 cycles on parameters for every 13 on the
   16-byte data accesses of a warp's 256 values (at 132 SMs x 1.98 GHz, about
   0.2 T values/s, 26% of an H200's bandwidth; measured: 34% for the pass and
   its statistics). As 16-byte vectors: 10 loads of 4 lines, 40 cycles. */
template <class T, int V> struct ssl__f_bn_dx {
    const T *x, *dy, *relu_y;
    const float *mean, *invstd, *gam, *mean_dy, *mean_dy_xhat;
    T *dx;
    ssl__div d_c;
    const uint8_t *mbits; /* the mask as bits, instead of relu_y */
    T *dyr;               /* dy through the mask, stored (NULL: not; may be dy) */
    SSL_HD void operator()(int64_t t) const {
        uint32_t r, k = ssl__divmod(d_c, (uint32_t)(t * V), &r);
        float xv[V], g[V], m[V];
        int byte = 0;
        ssl__vio<V>::ld(x + t * V, xv); /* every load before the first store (dyr may be dy) */
        ssl__vio<V>::ld(dy + t * V, g);
        if (relu_y) ssl__vio<V>::ld(relu_y + t * V, m);
        else if (mbits) byte = V == 8 ? mbits[t] : ssl__bit(mbits, t);
        if (relu_y)
            for (int e = 0; e < V; e++) g[e] = ssl__relu_grad(m[e], g[e]);
        else if (mbits)
            for (int e = 0; e < V; e++) g[e] = (byte >> e) & 1 ? g[e] : 0.0f;
        if (dyr) ssl__vio<V>::st(dyr + t * V, g);
        float mu[V], is[V], ga[V], md[V], mdx[V];
        ssl__vio<V>::ld(mean + k, mu);
        ssl__vio<V>::ld(invstd + k, is);
        ssl__vio<V>::ld(gam + k, ga);
        ssl__vio<V>::ld(mean_dy + k, md);
        ssl__vio<V>::ld(mean_dy_xhat + k, mdx);
        for (int e = 0; e < V; e++) g[e] = ssl__bn_grad_input(g[e], xv[e], mu[e], is[e], ga[e], md[e], mdx[e]);
        ssl__vio<V>::st(dx + t * V, g);
    }
};

/* blocks per group (see ssl__f_bn_group): about sqrt(blocks) */
static int64_t ssl__bn_group(int64_t blocks) {
    int64_t G = 1;
    while (G * G < blocks) G++;
    return G;
}
/* rows per block: enough blocks x channels for ~128K threads (V = 1) or
   64K threads of 8 channels (V = 8) */
static int64_t ssl__bn_per(int64_t rows, int64_t c, int V) {
    int64_t blocks = (V == 8 ? 524288 : 131072) / (c > 0 ? c : 1);
    if (blocks < 1) blocks = 1;
    if (blocks > rows) blocks = rows;
    return (rows + blocks - 1) / blocks;
}

/* F<T, 8> over rows x c where 8-value vectors are allowed (v8), else
   F<T, 1> one value a work item */
#define SSL__BN_EACH(X, F, T, v8, rows, c, ...)                                                 \
    do {                                                                                          \
        int64_t n_ = (rows) * (c);                                                                \
        if (!(v8)) { F<T, 1> f_ = {__VA_ARGS__}; (X).each(f_, n_); }                              \
        else { F<T, 8> f_ = {__VA_ARGS__}; (X).each(f_, n_ / 8); }                                \
    } while (0)

/* a(i) then b(i): two per-index steps where the second needs the first's
   result for the same index (a channel's sums, then what uses them), in
   one launch */
template <class A, class B> struct ssl__f_seq {
    A a;
    B b;
    SSL_HD void operator()(int64_t i) const {
        a(i);
        b(i);
    }
};
template <class X, class E, int V, int U, class T>
static void ssl__bn_sums(const X &x, ssl__f_bn_part<E, V, SSL__BNS_GRAD, U> f, double *part, double *grp, double *sums, const T &then) {
    int64_t blocks = (f.rows + f.per - 1) / f.per, G = ssl__bn_group(blocks), groups = (blocks + G - 1) / G;
    f.part = part;
    x.each(f, blocks * f.c / V);
    /* a row of its own in the profile: the blocks' sums added up (small
       launches; how much of the statistics' time they take is the next
       question, see RESULTS) */
    SSL__PROF("BN statistics (backward): groups, finish", sizeof(double) * 2.0 * (double)(blocks * f.c), 0);
    ssl__f_bn_group<E> gr = {SSL__BNS_GRAD, part, f.x, grp, blocks, f.rows, f.c, f.per, G};
    x.each(gr, groups * f.c);
    ssl__f_seq<ssl__f_bn_fin, T> fin = {{grp, sums, groups, f.c}, then};
    x.each(fin, f.c);
}

/* T: the activations' element type */
template <class T, class X>
static int ssl__bn_fwd(const X &x, ssl_batchnorm *bn, int training, const ssl_tensor *xt, const ssl_tensor *res,
                       int relu, ssl_tensor *y, ssl_tensor *mean, ssl_tensor *invstd, ssl_tensor *mask) {
    /* the statistics pass one channel a thread: 8 a thread (as the
       backward's) measured slower here (bench/RESULTS.md, "The GPU,
       measured") */
    int64_t c = ssl_tensor_cols(xt), rows = ssl_tensor_rows(xt), per = ssl__bn_per(rows, c, 1);
    int64_t blocks = (rows + per - 1) / per, G = ssl__bn_group(blocks), groups = (blocks + G - 1) / G;
    char *mem = (char *)ssl__tmp(x, SSL__S_VEC, sizeof(double) * (size_t)((blocks + 1) * 2 * c + groups * 3 * c) +
                                                     sizeof(float) * 2 * (size_t)c);
    double *sums = (double *)mem, *part = sums + 2 * c, *grp = part + blocks * 2 * c;
    float *scale = (float *)(grp + groups * 3 * c), *shift = scale + c;
    int tracked = bn->running_mean.data && bn->running_var.data;
    ssl__f_bn_stats st = {training, sums, mean->data, invstd->data, tracked ? bn->running_mean.data : NULL,
                          tracked ? bn->running_var.data : NULL, scale, shift, bn->weight.data, bn->bias.data,
                          rows, bn->eps, bn->momentum};
    if (training) { /* one pass over x for the moments, then per channel mean, invstd, running stats, scale/shift */
        SSL__PROF("BN statistics (forward)", ssl__bytes(xt), 2.0 * ssl_tensor_numel(xt)); /* a row of its own: its x read */
        const T *xd = (const T *)xt->data;
        ssl__f_bn_part<T, 1, SSL__BNS_MOMENTS, 16> f = {xd, NULL, NULL, NULL, NULL, rows, c, per, part};
        x.each(f, blocks * c);
        {
            SSL__PROF("BN statistics (forward): groups, finish", sizeof(double) * 2.0 * (double)(blocks * c), 0);
            ssl__f_bn_group<T> gr = {SSL__BNS_MOMENTS, part, xd, grp, blocks, rows, c, per, G};
            x.each(gr, groups * c);
            ssl_comm *sync = bn->comm && bn->comm->world > 1 ? bn->comm : NULL;
            if (!sync) {
                ssl__f_seq<ssl__f_bn_moments, ssl__f_bn_stats> mo = {{grp, sums, mean->data, groups, rows, c}, st};
                x.each(mo, c);
            } else { /* SyncBN: two all-reduces of C doubles, as the CPU's (the sums, then the deviations from the mean) */
                ssl__f_bn_fin cs = {grp, sums, groups, c}; /* sums[c + ch]: this rank's sum (sums[ch]: its count) */
                x.each(cs, c);
                if (ssl__bn_sum_ranks(sync, sums + c, c)) return -1;
                ssl__f_bn_rank_dev dv = {grp, sums, mean->data, groups, c, rows * sync->world};
                x.each(dv, c);
                if (ssl__bn_sum_ranks(sync, sums, c)) return -1;
                st.rows = rows * sync->world;
                x.each(st, c);
            }
        }
    } else {
        x.each(st, c);
    }
    const void *rd = res ? res->data : NULL;
    uint8_t *mk = mask ? (uint8_t *)mask->data : NULL;
    int v8 = c % 8 == 0 && ssl__vec8(rows * c, xt->data, rd, y->data) && ssl__vec8(c, scale, shift);
    SSL__BN_EACH(x, ssl__f_bn_apply, T, v8, rows, c, (const T *)xt->data, scale, shift, (const T *)rd, (T *)y->data,
                 ssl__div_make(c), relu, mk);
    if (mk && !v8) { /* one value per work item: the mask's bytes from y */
        ssl__f_mask_of<T> f = {(const T *)y->data, mk, rows * c};
        x.each(f, (rows * c + 7) / 8);
    }
    return 0;
}

extern "C" int ssl_cuda_batchnorm_forward(ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                          const ssl_tensor *residual, int relu, ssl_tensor *y, ssl_tensor *mean,
                                          ssl_tensor *invstd, ssl_tensor *mask) {
    SSL__PROF(relu || residual ? "BN forward (+add, ReLU)" : "BN forward",
              ssl__bytes(x) * (2 + (residual != NULL)) + (mask ? ssl_tensor_numel(x) / 8.0 : 0), /* the statistics' read: their row */
              4.0 * ssl_tensor_numel(x));
    int rc = 0;
    SSL__TYPED(x->dtype, T, SSL__RUN(rc = ssl__bn_fwd<T>(X_, bn, training, x, residual, relu, y, mean, invstd, mask);););
    return rc;
}

template <class T, class X>
static int ssl__bn_bwd(const X &x, const ssl_batchnorm *bn, int training, const ssl_tensor *xt,
                       const ssl_tensor *relu_y, const ssl_tensor *dy,
                       const ssl_tensor *mean, const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight,
                       ssl_tensor *dbias, ssl_tensor *dy_relu) {
    int64_t c = ssl_tensor_cols(xt), rows = ssl_tensor_rows(xt);
    int bits = relu_y && relu_y->dtype == SSL_U8; /* the forward's bit mask */
    const T *mask = relu_y && !bits ? (const T *)relu_y->data : NULL, *xd = (const T *)xt->data, *dyd = (const T *)dy->data;
    const uint8_t *mb = bits ? (const uint8_t *)relu_y->data : NULL;
    /* the statistics pass, 8 channels a thread */
    int sv8 = c % 8 == 0 && ssl__vec8(rows * c, xd, dyd, mask) && ssl__vec8(c, mean->data, invstd->data);
    int64_t per = ssl__bn_per(rows, c, sv8 ? 8 : 1);
    int64_t blocks = (rows + per - 1) / per, G = ssl__bn_group(blocks), groups = (blocks + G - 1) / G;
    char *mem = (char *)ssl__tmp(x, SSL__S_VEC, sizeof(double) * (size_t)((blocks + 1) * 2 * c + groups * 3 * c) +
                                                     sizeof(float) * 3 * (size_t)c);
    double *sums = (double *)mem, *part = sums + 2 * c, *grp = part + blocks * 2 * c;
    float *gam = (float *)(grp + groups * 3 * c), *mean_dy = gam + c, *mean_dy_xhat = gam + 2 * c;
    ssl__f_bn_gradfin gf = {training, sums, dweight && dweight->data ? dweight->data : NULL,
                            dbias && dbias->data ? dbias->data : NULL, gam, mean_dy, mean_dy_xhat, bn->weight.data,
                            rows, c};
    {
        double mpass = !relu_y ? 0 : bits ? 1.0 / (8 * sizeof(T)) : 1;
        SSL__PROF("BN statistics (backward)", ssl__bytes(xt) * (2 + mpass), 4.0 * ssl_tensor_numel(xt));
        /* 8 channels a thread where the tensors allow 16-byte vectors, else one */
        if (sv8) {
            ssl__f_bn_part<T, 8, SSL__BNS_GRAD, 2> f = {xd, dyd, mean->data, invstd->data, mask, rows, c, per, NULL, mb};
            ssl__bn_sums(x, f, part, grp, sums, gf);
        } else {
            ssl__f_bn_part<T, 1, SSL__BNS_GRAD, 8> f = {xd, dyd, mean->data, invstd->data, mask, rows, c, per, NULL, mb};
            ssl__bn_sums(x, f, part, grp, sums, gf);
        }
    }
    ssl_comm *sync = training && bn->comm && bn->comm->world > 1 ? bn->comm : NULL;
    if (sync) {
        /* SyncBN: gf added this rank's sums to dbias and dweight (the
           gradients' all-reduce adds the others'); the statistics came from
           every rank's rows, so their share of dx does too: the sums of dy
           and dy * xhat over all ranks, then the means again from them */
        if (ssl__bn_sum_ranks(sync, sums, 2 * c)) return -1;
        gf.dweight = gf.dbias = NULL;
        gf.rows = rows * sync->world;
        x.each(gf, c);
    }
    if (dx && dx->data) {
        T *dyr = dy_relu ? (T *)dy_relu->data : NULL;
        int v8 = c % 8 == 0 && ssl__vec8(rows * c, xd, dyd, mask, dx->data, dyr) &&
                 ssl__vec8(c, mean->data, invstd->data, gam, mean_dy, mean_dy_xhat);
        SSL__BN_EACH(x, ssl__f_bn_dx, T, v8, rows, c, xd, dyd, mask, mean->data, invstd->data, gam, mean_dy,
                     mean_dy_xhat, (T *)dx->data, ssl__div_make(c), mb, dyr);
    }
    return 0;
}

extern "C" int ssl_cuda_batchnorm_backward(const ssl_batchnorm *bn, int training, const ssl_tensor *x,
                                           const ssl_tensor *relu_y, const ssl_tensor *dy, const ssl_tensor *mean,
                                           const ssl_tensor *invstd, ssl_tensor *dx, ssl_tensor *dweight,
                                           ssl_tensor *dbias, ssl_tensor *dy_relu) {
    double mpass = !relu_y ? 0 : relu_y->dtype == SSL_U8 ? 1.0 / (8 * ssl_dtype_size(x->dtype)) : 1; /* a mask read, in x's passes */
    SSL__PROF(relu_y ? "BN backward (ReLU)" : "BN backward", /* the statistics' pass has a row of its own */
              ssl__bytes(x) * ((dx && dx->data ? 3 + mpass : 0) + (dy_relu ? 1 : 0)), 6.0 * ssl_tensor_numel(x));
    int rc = 0;
    SSL__TYPED(x->dtype, T, SSL__RUN(rc = ssl__bn_bwd<T>(X_, bn, training, x, relu_y, dy, mean, invstd, dx, dweight, dbias, dy_relu);););
    return rc;
}

// ---- relu, pools, linear, add ------------------------------------------------------
extern "C" int ssl_cuda_relu_forward(const ssl_tensor *x, ssl_tensor *y) {
    SSL__PROF("ReLU, add", 2.0 * ssl__bytes(x), 0);
    int64_t n = ssl_tensor_numel(x);
    SSL__TYPED(x->dtype, T, SSL__RUN(SSL__EACH_V(X_, ssl__f_relu, T, ssl__vec8(n, x->data, y->data), n, (const T *)x->data,
                                                 (const T *)NULL, (T *)y->data);););
    return 0;
}
extern "C" int ssl_cuda_relu_backward(const ssl_tensor *y, const ssl_tensor *dy, ssl_tensor *dx) {
    if (y->dtype == SSL_U8) { /* the forward's bit mask */
        SSL__PROF("ReLU, add", 2.0 * ssl__bytes(dy) + ssl__bytes(dy) / (8.0 * ssl_dtype_size(dy->dtype)), 0);
        int64_t n = ssl_tensor_numel(dy);
        SSL__TYPED(dy->dtype, T, SSL__RUN(SSL__EACH_V(X_, ssl__f_mask_grad, T, ssl__vec8(n, dy->data, dx->data), n,
                                                      (const uint8_t *)y->data, (const T *)dy->data, (T *)dx->data);););
        return 0;
    }
    SSL__PROF("ReLU, add", 3.0 * ssl__bytes(y), 0);
    int64_t n = ssl_tensor_numel(y);
    SSL__TYPED(y->dtype, T, SSL__RUN(SSL__EACH_V(X_, ssl__f_relu_grad, T, ssl__vec8(n, y->data, dy->data, dx->data), n,
                                                 (const T *)y->data, (const T *)dy->data, (T *)dx->data);););
    return 0;
}

struct ssl__pg { /* pooling geometry, 32-bit (see the index math) */
    int n, h, w, c, oh, ow;
    int k, stride, pad;
    ssl__div d_c, d_w, d_h, d_ow, d_oh, d_stride;
};
static ssl__pg ssl__pg_make(const ssl_tensor *x, const ssl_tensor *y, int k, int stride, int pad) {
    ssl__pg g = {(int)x->dim[0], (int)x->dim[1], (int)x->dim[2], (int)x->dim[3], (int)y->dim[1], (int)y->dim[2], k, stride, pad,
                 ssl__div_make(x->dim[3]), ssl__div_make(x->dim[2]), ssl__div_make(x->dim[1]), ssl__div_make(y->dim[2]),
                 ssl__div_make(y->dim[1]), ssl__div_make(stride)};
    return g;
}
/* the output windows [oy0, oy1] x [ox0, ox1] that cover input pixel (iy, ix) */
static inline SSL_HD void ssl__pool_windows(const ssl__pg &g, uint32_t iy, uint32_t ix, int *oy0, int *oy1, int *ox0, int *ox1) {
    int ly = (int)iy + g.pad - g.k + 1, lx = (int)ix + g.pad - g.k + 1;
    *oy0 = ly <= 0 ? 0 : (int)ssl__div_q(g.d_stride, (uint32_t)(ly + g.stride - 1));
    *ox0 = lx <= 0 ? 0 : (int)ssl__div_q(g.d_stride, (uint32_t)(lx + g.stride - 1));
    *oy1 = (int)ssl__div_q(g.d_stride, iy + g.pad), *ox1 = (int)ssl__div_q(g.d_stride, ix + g.pad);
    if (*oy1 > g.oh - 1) *oy1 = g.oh - 1;
    if (*ox1 > g.ow - 1) *ox1 = g.ow - 1;
}
/* The winners of output pixel (n, oy, ox), channels ch .. ch + V - 1: as
   the CPU, the first maximum in window order over the clipped window
   (padding never wins), the window's first pixel inside the image if
   nothing beats -inf. best[e] gets its value, pos[e] its place in the
   window (row << 16 | column; ssl__pool_byte packs it for windows up to 16
   wide). K = 3: the 3x3 window's loads (those inside the image) all issued
   before the first comparison, so a thread waits for memory once, not
   once a tap (a loop of dependent taps is latency-bound; the measured
   pool rows are in bench/RESULTS.md). K = 0: any window, tap by tap. The same comparisons
   in the same order: the same winners. */
template <class T, int V, int K>
static inline SSL_HD void ssl__pool_winners(const ssl__pg &g, const T *x, int n, int oy, int ox, int ch, float *best,
                                            int *pos) {
    int wy = oy * g.stride - g.pad, wx = ox * g.stride - g.pad; /* the window's corner, maybe outside */
    int y0 = wy < 0 ? 0 : wy, x0 = wx < 0 ? 0 : wx, y1 = wy + g.k > g.h ? g.h : wy + g.k, x1 = wx + g.k > g.w ? g.w : wx + g.k;
    for (int e = 0; e < V; e++) best[e] = -INFINITY, pos[e] = ((y0 - wy) << 16) | (x0 - wx);
    if constexpr (K > 0) {
        float v[K * K][V];
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                if (wy + a >= y0 && wy + a < y1 && wx + b >= x0 && wx + b < x1)
                    ssl__vio<V>::ld(x + (((uint32_t)n * g.h + (uint32_t)(wy + a)) * g.w + (uint32_t)(wx + b)) * g.c + ch, v[a * K + b]);
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                if (wy + a >= y0 && wy + a < y1 && wx + b >= x0 && wx + b < x1)
                    for (int e = 0; e < V; e++)
                        if (ssl__pool_takes(best[e], v[a * K + b][e])) best[e] = v[a * K + b][e], pos[e] = (a << 16) | b;
    } else {
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++) {
                float v[V];
                ssl__vio<V>::ld(x + (((uint32_t)n * g.h + (uint32_t)iy) * g.w + (uint32_t)ix) * g.c + ch, v);
                for (int e = 0; e < V; e++)
                    if (ssl__pool_takes(best[e], v[e])) best[e] = v[e], pos[e] = ((iy - wy) << 16) | (ix - wx);
            }
    }
}
/* a window place as the arg byte: row and column, 4 bits each */
static inline SSL_HD uint32_t ssl__pool_byte(int pos) { return (uint32_t)(((pos >> 16) << 4) | (pos & 15)); }
/* V channels of one output pixel per work item (V = 8: c % 8 == 0, the
   tensors 16-byte aligned); d_cv divides by c / V. ARG: the winners'
   places into arg (one byte a value) instead of their values into y. */
template <class T, int V, int K, int ARG> struct ssl__f_maxpool {
    ssl__pg g;
    const T *x;
    T *y;
    uint8_t *arg;
    ssl__div d_cv;
    SSL_HD void operator()(int64_t i) const {
        uint32_t o, q, n, ch = V * ssl__divmod(d_cv, (uint32_t)i, &o), ox = ssl__divmod(g.d_ow, o, &q), oy = ssl__divmod(g.d_oh, q, &n);
        float b[V];
        int pos[V];
        ssl__pool_winners<T, V, K>(g, x, (int)n, (int)oy, (int)ox, (int)ch, b, pos);
        uint32_t at = o * (uint32_t)g.c + ch;
        if (!ARG) {
            ssl__vio<V>::st(y + at, b);
        } else if (V == 8) { /* one 8-byte store */
            uint64_t w = 0;
            for (int e = 0; e < V; e++) w |= (uint64_t)ssl__pool_byte(pos[e]) << (8 * e);
#ifdef __CUDA_ARCH__
            *(uint64_t *)(arg + at) = w;
#else
            for (int e = 0; e < V; e++) arg[at + e] = (uint8_t)(w >> (8 * e)); /* little-endian, as the GPU's */
#endif
        } else {
            for (int e = 0; e < V; e++) arg[at + e] = (uint8_t)ssl__pool_byte(pos[e]);
        }
    }
};
/* dx element i gathers dy of every window whose winner it is, in output
   order (the order of the CPU's scatter) */
template <class T> struct ssl__f_maxpool_back {
    ssl__pg g;
    const T *x, *dy;
    T *dx;
    SSL_HD void operator()(int64_t i) const {
        uint32_t pix, q, n, ch = ssl__divmod(g.d_c, (uint32_t)i, &pix), ix = ssl__divmod(g.d_w, pix, &q), iy = ssl__divmod(g.d_h, q, &n);
        int oy0, oy1, ox0, ox1;
        ssl__pool_windows(g, iy, ix, &oy0, &oy1, &ox0, &ox1);
        float v = 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) {
                float b;
                int p;
                ssl__pool_winners<T, 1, 0>(g, x, (int)n, oy, ox, (int)ch, &b, &p);
                if (oy * g.stride - g.pad + (p >> 16) == (int)iy && ox * g.stride - g.pad + (p & 0xffff) == (int)ix)
                    v += ssl__ld(dy[(((uint32_t)n * g.oh + oy) * g.ow + ox) * g.c + ch]);
            }
        ssl__st(&dx[i], v);
    }
};
/* The backward in two passes (windows up to 16 wide). The gather above
   finds each of an input's (up to 4) windows' winner again: k*k loads
   per window, 36 per input for the stem's 3x3/2 pool (a few per cent of
   the bandwidth: bench/RESULTS.md). Here each window's winner is found once and stored as a byte (row and
   column in the window, 4 bits each: ssl__f_maxpool with ARG); then each
   input reads its windows' bytes. The same winners, added in the same
   order: the same bits. V channels of one input pixel per work item; W = 2
   (a pixel in at most 2 x 2 windows, the stem's 3x3/2): the windows'
   bytes and gradients all loaded before the first addition (one wait for
   memory, not one a window); W = 0: any, window by window. */
template <class T, int V, int W> struct ssl__f_maxpool_back_arg {
    ssl__pg g;
    const uint8_t *arg;
    const T *dy;
    T *dx;
    ssl__div d_cv;
    SSL_HD void operator()(int64_t i) const {
        uint32_t pix, q, n, ch = V * ssl__divmod(d_cv, (uint32_t)i, &pix), ix = ssl__divmod(g.d_w, pix, &q), iy = ssl__divmod(g.d_h, q, &n);
        int oy0, oy1, ox0, ox1;
        ssl__pool_windows(g, iy, ix, &oy0, &oy1, &ox0, &ox1);
        float v[V];
        for (int e = 0; e < V; e++) v[e] = 0.0f;
        if constexpr (W > 0) {
            float d[W * W][V];
            uint8_t a[W * W][V];
            for (int u = 0; u < W; u++)
                for (int t = 0; t < W; t++)
                    if (oy0 + u <= oy1 && ox0 + t <= ox1) {
                        uint32_t o = (((uint32_t)n * g.oh + (uint32_t)(oy0 + u)) * g.ow + (uint32_t)(ox0 + t)) * g.c + ch;
                        ssl__vio<V>::ld(dy + o, d[u * W + t]);
                        for (int e = 0; e < V; e++) a[u * W + t][e] = arg[o + e];
                    }
            for (int u = 0; u < W; u++)
                for (int t = 0; t < W; t++)
                    if (oy0 + u <= oy1 && ox0 + t <= ox1)
                        for (int e = 0; e < V; e++) {
                            int p = a[u * W + t][e];
                            if ((oy0 + u) * g.stride - g.pad + (p >> 4) == (int)iy && (ox0 + t) * g.stride - g.pad + (p & 15) == (int)ix)
                                v[e] += d[u * W + t][e];
                        }
        } else {
            for (int oy = oy0; oy <= oy1; oy++)
                for (int ox = ox0; ox <= ox1; ox++) {
                    uint32_t o = (((uint32_t)n * g.oh + oy) * g.ow + ox) * g.c + ch;
                    float d[V];
                    ssl__vio<V>::ld(dy + o, d);
                    for (int e = 0; e < V; e++) {
                        int p = arg[o + e];
                        if (oy * g.stride - g.pad + (p >> 4) == (int)iy && ox * g.stride - g.pad + (p & 15) == (int)ix) v[e] += d[e];
                    }
                }
        }
        ssl__vio<V>::st(dx + pix * (uint32_t)g.c + ch, v);
    }
};
/* the forward (ARG 0) or the winners' places (ARG 1): V = 8 where it can,
   the 3x3 window's loads up front where k = 3 */
template <class T, int ARG, class X>
static void ssl__maxpool_run(const X &x, const ssl__pg &g, const T *xd, T *y, uint8_t *arg, int v8, int64_t outs) {
    int V = v8 ? 8 : 1;
    ssl__div d = ssl__div_make(g.c / V);
    if (v8 && g.k == 3) { ssl__f_maxpool<T, 8, 3, ARG> f = {g, xd, y, arg, d}; x.each(f, outs / 8); }
    else if (v8) { ssl__f_maxpool<T, 8, 0, ARG> f = {g, xd, y, arg, d}; x.each(f, outs / 8); }
    else if (g.k == 3) { ssl__f_maxpool<T, 1, 3, ARG> f = {g, xd, y, arg, d}; x.each(f, outs); }
    else { ssl__f_maxpool<T, 1, 0, ARG> f = {g, xd, y, arg, d}; x.each(f, outs); }
}
/* the backward's gather from the winners' bytes (n: the input's values) */
template <class T, class X>
static void ssl__maxpool_from_arg(const X &x, const ssl__pg &g, const uint8_t *arg, const T *dyd, T *dxd, int v8, int k, int stride,
                                  int64_t n) {
    int two = (k + stride - 1) / stride <= 2; /* an input in at most 2 x 2 windows */
    ssl__div d = ssl__div_make(g.c / (v8 ? 8 : 1));
    if (v8 && two) { ssl__f_maxpool_back_arg<T, 8, 2> f = {g, arg, dyd, dxd, d}; x.each(f, n / 8); }
    else if (v8) { ssl__f_maxpool_back_arg<T, 8, 0> f = {g, arg, dyd, dxd, d}; x.each(f, n / 8); }
    else if (two) { ssl__f_maxpool_back_arg<T, 1, 2> f = {g, arg, dyd, dxd, d}; x.each(f, n); }
    else { ssl__f_maxpool_back_arg<T, 1, 0> f = {g, arg, dyd, dxd, d}; x.each(f, n); }
}
extern "C" int ssl_cuda_maxpool2d_forward(const ssl_tensor *x, int k, int stride, int pad, ssl_tensor *y) {
    SSL__PROF("pooling", ssl__bytes(x) + ssl__bytes(y), 0);
    int v8 = x->dim[3] % 8 == 0 && ssl__vec8(ssl_tensor_numel(x), x->data, y->data);
    SSL__TYPED(x->dtype, T, SSL__RUN(ssl__maxpool_run<T, 0>(X_, ssl__pg_make(x, y, k, stride, pad), (const T *)x->data,
                                                                (T *)y->data, (uint8_t *)NULL, v8, ssl_tensor_numel(y));););
    return 0;
}
extern "C" int ssl_cuda_maxpool2d_backward(const ssl_tensor *x, const ssl_tensor *dy, int k, int stride, int pad,
                                           ssl_tensor *dx) {
    SSL__PROF("pooling", 2.0 * ssl__bytes(x) + ssl__bytes(dy), 0);
    int64_t outs = ssl_tensor_numel(dy);
    int v8 = x->dim[3] % 8 == 0 && ssl__vec8(ssl_tensor_numel(x), x->data, dy->data, dx->data);
    SSL__TYPED(x->dtype, T, {
        ssl__pg g = ssl__pg_make(x, dy, k, stride, pad);
        if (k > 16) { /* the window's position does not fit a byte: find the winners again */
            ssl__f_maxpool_back<T> f = {g, (const T *)x->data, (const T *)dy->data, (T *)dx->data};
            SSL__RUN(X_.each(f, ssl_tensor_numel(x)););
        } else
            SSL__RUN({
                uint8_t *arg = (uint8_t *)ssl__tmp(X_, SSL__S_POOL, (size_t)outs);
                ssl__maxpool_run<T, 1>(X_, g, (const T *)x->data, (T *)NULL, arg, v8, outs);
                ssl__maxpool_from_arg(X_, g, arg, (const T *)dy->data, (T *)dx->data, v8, k, stride, ssl_tensor_numel(x));
            });
    });
    return 0;
}
/* (n, c) per thread: a float running sum in pixel order, as the CPU */
template <class TX, class TY> struct ssl__f_avgpool {
    const TX *x;
    TY *y;
    int64_t hw, c;
    SSL_HD void operator()(int64_t i) const {
        int64_t b = i / c, ch = i % c;
        float s = 0.0f;
        for (int64_t p = 0; p < hw; p++) s += ssl__ld(x[(b * hw + p) * c + ch]);
        ssl__st(&y[i], s / (float)hw);
    }
};
template <class TY, class TX> struct ssl__f_avgpool_back {
    const TY *dy;
    TX *dx;
    int64_t hw, c;
    ssl__div d_hwc, d_c;
    SSL_HD void operator()(int64_t i) const {
        uint32_t n = ssl__div_q(d_hwc, (uint32_t)i), pix, ch = ssl__divmod(d_c, (uint32_t)i, &pix);
        ssl__st(&dx[i], ssl__ld(dy[n * (uint32_t)c + ch]) / (float)hw);
    }
};
extern "C" int ssl_cuda_avgpool_forward(const ssl_tensor *x, ssl_tensor *y) {
    SSL__PROF("pooling", ssl__bytes(x) + ssl__bytes(y), 0);
    SSL__TYPED(x->dtype, TX, SSL__TYPED(y->dtype, TY, {
        ssl__f_avgpool<TX, TY> f = {(const TX *)x->data, (TY *)y->data, x->dim[1] * x->dim[2], x->dim[3]};
        SSL__RUN(X_.each(f, x->dim[0] * x->dim[3]););
    }););
    return 0;
}
extern "C" int ssl_cuda_avgpool_backward(const ssl_tensor *dy, ssl_tensor *dx) {
    SSL__PROF("pooling", ssl__bytes(dx) + ssl__bytes(dy), 0);
    SSL__TYPED(dy->dtype, TY, SSL__TYPED(dx->dtype, TX, {
        int64_t hw = dx->dim[1] * dx->dim[2], c = dx->dim[3];
        ssl__f_avgpool_back<TY, TX> f = {(const TY *)dy->data, (TX *)dx->data, hw, c, ssl__div_make(hw * c), ssl__div_make(c)};
        SSL__RUN(X_.each(f, ssl_tensor_numel(dx)););
    }););
    return 0;
}

extern "C" int ssl_cuda_linear_forward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *b, ssl_tensor *y) {
    int64_t rows = ssl_tensor_rows(x), in = w->dim[1], out = w->dim[0];
    SSL__RUN({
        float beta = 0.0f;
        if (b && b->data) {
            SSL__PROF("bias (linear, conv)", 4.0 * ssl_tensor_numel(y), 0);
            beta = ssl__bias_rows_x(X_, y->data, rows, out, b);
        }
        X_.gemm("GEMM linear", 0, 1, (int)rows, (int)out, (int)in, 1.0f, x->data, (int)in, w->data, (int)in, beta, y->data, (int)out);
    });
    return 0;
}
extern "C" int ssl_cuda_linear_backward(const ssl_tensor *x, const ssl_tensor *w, const ssl_tensor *dy, ssl_tensor *dx,
                                        ssl_tensor *dw, ssl_tensor *db) {
    int64_t rows = ssl_tensor_rows(x), in = w->dim[1], out = w->dim[0];
    SSL__RUN({
        X_.gemm("GEMM linear", 1, 0, (int)out, (int)in, (int)rows, 1.0f, dy->data, (int)out, x->data, (int)in, 1.0f, dw->data, (int)in);
        if (db && db->data) {
            SSL__PROF("bias (linear, conv)", 4.0 * ssl_tensor_numel(dy), 0);
            ssl__bias_grad_x(X_, dy->data, rows, out, db);
        }
        if (dx && dx->data)
            X_.gemm("GEMM linear", 0, 0, (int)rows, (int)in, (int)out, 1.0f, dy->data, (int)out, w->data, (int)in, 0.0f, dx->data,
                    (int)in);
    });
    return 0;
}

extern "C" int ssl_cuda_add(const ssl_tensor *a, const ssl_tensor *b, ssl_tensor *y) {
    SSL__PROF("ReLU, add", 3.0 * ssl__bytes(a), (double)ssl_tensor_numel(a));
    int64_t n = ssl_tensor_numel(a);
    SSL__TYPED(a->dtype, T, SSL__RUN(SSL__EACH_V(X_, ssl__f_add, T, ssl__vec8(n, a->data, b->data, y->data), n,
                                                 (const T *)a->data, (const T *)b->data, (T *)y->data);););
    return 0;
}
extern "C" int ssl_cuda_add_backward(const ssl_tensor *dy, ssl_tensor *da, ssl_tensor *db) {
    SSL__PROF("ReLU, add", ssl__bytes(dy) * (1 + (da && da->data) + (db && db->data)), 0);
    size_t bytes = (size_t)ssl__bytes(dy);
    SSL__RUN({
        if (da && da->data) X_.copy(da->data, dy->data, bytes);
        if (db && db->data) X_.copy(db->data, dy->data, bytes);
    });
    return 0;
}

// ---- optimizers ----------------------------------------------------------------
/* Trainable tensors are cut into chunks of SSL__OPT_CHUNK elements; one
   table drives all three kernels (multi-tensor: one launch each for the
   whole model). */
#define SSL__OPT_CHUNK 4096
struct ssl__opt_chunk {
    int64_t start; /* into the flat buffers */
    int32_t len, tensor;
};
struct ssl__opt_tensor {
    int64_t first, count; /* its chunks */
    int decays;           /* weight decay applies, and under LARS the trust ratio */
};
/* LARS: per chunk, ||w||^2 and ||g + wd w||^2 in double */
struct ssl__f_opt_norms {
    const ssl__opt_chunk *ch;
    const ssl__opt_tensor *ts;
    const float *w, *g;
    double *part; /* [chunk][2] */
    float weight_decay;
    SSL_HD void operator()(int64_t i) const {
        ssl__opt_chunk c = ch[i];
        float wd = weight_decay;
        double wn = 0, un = 0;
        if (ts[c.tensor].decays)
            for (int32_t k = 0; k < c.len; k++) {
                float wv = w[c.start + k];
                double d = (double)g[c.start + k] + (double)wd * wv;
                wn += (double)wv * wv;
                un += d * d;
            }
        part[2 * i] = wn;
        part[2 * i + 1] = un;
    }
};
/* per tensor: the trust ratio (ssl_lars_trust), 1 if the tensor is excluded */
struct ssl__f_opt_trust {
    const ssl__opt_tensor *ts;
    const double *part;
    float *q;
    double eta;
    SSL_HD void operator()(int64_t t) const {
        float r = 1.0f;
        if (ts[t].decays) {
            double wsq = 0, usq = 0;
            for (int64_t c = ts[t].first; c < ts[t].first + ts[t].count; c++) wsq += part[2 * c], usq += part[2 * c + 1];
            r = ssl_lars_trust(eta, wsq, usq);
        }
        q[t] = r;
    }
};
struct ssl__f_opt_apply {
    const ssl__opt_chunk *ch;
    const ssl__opt_tensor *ts;
    const float *q; /* LARS */
    float *w, *g, *m, *v;
    int kind;
    float lr, mom, weight_decay;
    ssl_adamw_scalars adamw;
    SSL_HD void operator()(int64_t i) const {
        ssl__opt_chunk c = ch[i / SSL__OPT_CHUNK];
        int64_t j = i % SSL__OPT_CHUNK;
        if (j >= c.len) return;
        int64_t k = c.start + j;
        float wd = ts[c.tensor].decays ? weight_decay : 0.0f;
        if (kind == SSL_OPTIM_SGD) ssl_sgd_update(&w[k], g[k], &m[k], lr, mom, wd);
        else if (kind == SSL_OPTIM_LARS) ssl_lars_update(&w[k], g[k], &m[k], lr, mom, wd, q[c.tensor]);
        else ssl_adamw_update(&w[k], g[k], &m[k], &v[k], wd != 0, adamw);
    }
};

/* The chunk table of a parameter table (a few hundred entries; it depends
   only on the table's layout, so it is built and uploaded once, when the
   optimizer is made), and room for LARS's per-chunk norms and per-tensor
   trust ratios: one device allocation per optimizer (o->dtab), so a step
   uploads nothing and never waits for the device. */
struct ssl__opt_layout {
    int64_t nch;
    size_t cbytes, tbytes, pbytes, qbytes;
};
static ssl__opt_layout ssl__opt_layout_of(const ssl_param_table *t) {
    ssl__opt_layout l;
    l.nch = 0;
    for (int i = 0; i < t->n; i++)
        if (t->p[i].kind != SSL_PARAM_BUFFER) l.nch += (t->p[i].numel + SSL__OPT_CHUNK - 1) / SSL__OPT_CHUNK;
    l.cbytes = sizeof(ssl__opt_chunk) * (size_t)(l.nch + 1), l.tbytes = sizeof(ssl__opt_tensor) * (size_t)(t->n + 1);
    l.pbytes = sizeof(double) * 2 * (size_t)(l.nch + 1), l.qbytes = sizeof(float) * (size_t)(t->n + 1);
    return l;
}

extern "C" void ssl_cuda_optim_init(ssl_optimizer *o, const ssl_optim_config *c, const ssl_param_table *t) {
    memset(o, 0, sizeof *o);
    o->c = *c;
    o->n = t->total;
    size_t bytes = sizeof(float) * (size_t)(t->total + 1);
    o->dev = SSL_DEV_CUDA;
    o->host_m = (float *)ssl_calloc(bytes, "optimizer state (host copy)");
    if (c->kind == SSL_OPTIM_ADAMW) o->host_v = (float *)ssl_calloc(bytes, "optimizer state (host copy)");
    o->m = (float *)ssl_cuda_malloc(bytes, "optimizer state (momentum)");
    ssl_cuda_memset0(o->m, bytes);
    if (c->kind == SSL_OPTIM_ADAMW) {
        o->v = (float *)ssl_cuda_malloc(bytes, "optimizer state (second moment)");
        ssl_cuda_memset0(o->v, bytes);
    }
    ssl__opt_layout l = ssl__opt_layout_of(t);
    char *h = (char *)ssl_calloc(l.cbytes + l.tbytes, "optimizer chunk table");
    ssl__opt_chunk *hc = (ssl__opt_chunk *)h;
    ssl__opt_tensor *ht = (ssl__opt_tensor *)(h + l.cbytes);
    int64_t k = 0;
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        ht[i].first = k;
        ht[i].count = 0;
        ht[i].decays = ssl_param_decays(p);
        if (p->kind == SSL_PARAM_BUFFER) continue;
        for (int64_t s = 0; s < p->numel; s += SSL__OPT_CHUNK, k++) {
            hc[k].start = p->offset + s;
            hc[k].len = (int32_t)ssl__min64(SSL__OPT_CHUNK, p->numel - s);
            hc[k].tensor = i;
            ht[i].count++;
        }
    }
    o->dtab = ssl_cuda_malloc(l.cbytes + l.tbytes + l.pbytes + l.qbytes, "optimizer chunk table");
    ssl_cuda_to_device(o->dtab, h, l.cbytes + l.tbytes);
    free(h);
}
extern "C" void ssl_cuda_optim_free(ssl_optimizer *o) {
    ssl_cuda_free(o->m);
    ssl_cuda_free(o->v);
    ssl_cuda_free(o->dtab);
    free(o->host_m);
    free(o->host_v);
    memset(o, 0, sizeof *o);
}

template <class X> static void ssl__optim_run(const X &x, ssl_optimizer *o, ssl_param_table *t, double lr) {
    const ssl_optim_config *c = &o->c;
    ssl__opt_layout l = ssl__opt_layout_of(t);
    char *d = (char *)o->dtab;
    const ssl__opt_chunk *dc = (const ssl__opt_chunk *)d;
    const ssl__opt_tensor *dt = (const ssl__opt_tensor *)(d + l.cbytes);
    double *part = (double *)(d + l.cbytes + l.tbytes);
    float *q = (float *)(d + l.cbytes + l.tbytes + l.pbytes);
    float wd = (float)c->weight_decay;
    if (c->kind == SSL_OPTIM_LARS) {
        ssl__f_opt_norms fn = {dc, dt, t->data, t->grad, part, wd};
        x.each(fn, l.nch);
        ssl__f_opt_trust ft = {dt, part, q, c->eta};
        x.each(ft, t->n);
    }
    o->step++;
    ssl__f_opt_apply fa = {dc, dt, q, t->data, t->grad, o->m, o->v, c->kind, (float)lr, (float)c->momentum, wd,
                           ssl_adamw_at(lr, c->weight_decay, c->beta1, c->beta2, c->eps, o->step)};
    x.each(fa, l.nch * SSL__OPT_CHUNK);
}

extern "C" int ssl_cuda_optim_step(ssl_optimizer *o, ssl_param_table *t, double lr) {
    SSL__PROF("optimizer", 4.0 * t->total * (o->c.kind == SSL_OPTIM_ADAMW ? 7 : o->c.kind == SSL_OPTIM_LARS ? 7 : 5), 6.0 * t->total);
    if (o->c.kind != SSL_OPTIM_SGD && o->c.kind != SSL_OPTIM_LARS && o->c.kind != SSL_OPTIM_ADAMW)
        return ssl__fail("ssl_cuda_optim_step: unknown optimizer kind %d", o->c.kind);
    if (o->n != t->total) return ssl__fail("ssl_cuda_optim_step: optimizer made for %lld floats, table has %lld",
                                           (long long)o->n, (long long)t->total);
    SSL__RUN(ssl__optim_run(X_, o, t, lr););
    return 0;
}

// ---- the loader's GPU mode: augmentation of uint8 crops -------------------------
/* What one sample's pipeline needs, flattened from ssl_aug_params on the
   host exactly as ssl_augment_apply_ex reads it: the chain of pointwise ops
   (identities left out), where contrast sits, the blur kernel. */
enum { SSL__AOP_BRIGHTNESS = 0, SSL__AOP_CONTRAST = 1, SSL__AOP_SATURATION = 2, SSL__AOP_HUE = 3, SSL__AOP_GRAY = 4 };
#define SSL__AUG_CHUNK 1024 /* the CPU's SSL__CHUNK: the contrast mean is summed per chunk of this many pixels */
struct ssl__augd {
    int nops, ci, flip, rad, noise, solarize;
    int ops[5];
    float brightness, contrast, saturation, hue, threshold, noise_std;
    uint64_t noise_seed;
    float k[SSL_BLUR_MAX_RADIUS + 1];
};
struct ssl__augb { /* the batch */
    int n, w, h, norm;
    float in_range, mean[3], std[3];
};

static void ssl__augd_make(const ssl_aug_params *p, int w, int h, ssl__augd *a) {
    memset(a, 0, sizeof *a);
    a->nops = ssl_aug_chain(p, a->ops); /* the CPU's chain; SSL__AOP_* are its op numbers */
    a->ci = a->nops;
    for (int k = 0; k < a->nops; k++)
        if (a->ops[k] == SSL__AOP_CONTRAST) a->ci = k;
    a->flip = p->flip;
    a->rad = p->blur_sigma > 0 ? ssl_blur_kernel(p->blur_sigma, w, h, a->k) : 0;
    a->noise = p->noise_std > 0;
    a->solarize = p->solarize;
    a->brightness = p->brightness;
    a->contrast = p->contrast;
    a->saturation = p->saturation;
    a->hue = p->hue;
    a->threshold = p->solarize_threshold;
    a->noise_std = p->noise_std;
    a->noise_seed = p->noise_seed;
}

/* pixel i (output order) of sample s: loaded, scaled, flipped */
static inline SSL_HD void ssl__aug_load(const ssl__augb &b, const ssl__augd &a, const uint8_t *src, int64_t s, int64_t i,
                                        float rgb[3]) {
    int64_t y = i / b.w, x = i % b.w, sx = a.flip ? b.w - 1 - x : x;
    const uint8_t *p = src + ((s * b.h + y) * b.w + sx) * 3;
    for (int c = 0; c < 3; c++) rgb[c] = (float)p[c] / b.in_range;
}
static inline SSL_HD void ssl__aug_op(const ssl__augd &a, int op, float mean_gray, float rgb[3]) {
    switch (op) {
    case SSL__AOP_BRIGHTNESS:
        for (int c = 0; c < 3; c++) rgb[c] = ssl_px_brightness(rgb[c], a.brightness);
        break;
    case SSL__AOP_CONTRAST:
        for (int c = 0; c < 3; c++) rgb[c] = ssl_px_blend(rgb[c], mean_gray, a.contrast);
        break;
    case SSL__AOP_SATURATION: {
        float y = ssl_px_gray(rgb[0], rgb[1], rgb[2]);
        for (int c = 0; c < 3; c++) rgb[c] = ssl_px_blend(rgb[c], y, a.saturation);
        break;
    }
    case SSL__AOP_HUE:
        ssl_px_hue(&rgb[0], &rgb[1], &rgb[2], a.hue);
        break;
    default: /* gray */
        rgb[0] = rgb[1] = rgb[2] = ssl_px_gray(rgb[0], rgb[1], rgb[2]);
    }
}
/* solarize, noise, normalize: the CPU's ssl__finish_px */
static inline SSL_HD void ssl__aug_finish(const ssl__augb &b, const ssl__augd &a, uint32_t pixel, const float rgb[3],
                                          float *out) {
    float z[3] = {0, 0, 0};
    if (a.noise) ssl_px_normal3(a.noise_seed, pixel, z);
    for (int c = 0; c < 3; c++) {
        float x = a.solarize ? ssl_px_solarize(rgb[c], a.threshold) : rgb[c];
        if (a.noise) x = ssl_px_clamp01(x + a.noise_std * z[c]);
        out[c] = b.norm ? (x - b.mean[c]) / b.std[c] : x;
    }
}

/* The gray sum of the image as contrast finds it, in the CPU's order:
   per chunk of 1024 pixels, 16 float lanes (lane l adds pixels l, l + 16,
   ... of the chunk's whole groups of 16), the lanes then the tail in
   double; chunk sums then added in order. One thread per (sample, chunk,
   lane) for the lanes, so that no thread walks 1,024 pixels in a row
   (that serial walk set the augmentation's time whatever the image size).
   Then one per (sample, chunk) adds its lanes and its tail. The same sums in the same order: the same bits. */
struct ssl__f_aug_graylane {
    ssl__augb b;
    const ssl__augd *ad;
    const uint8_t *src;
    float *lanes; /* [n][nch][16] */
    int64_t nch;
    SSL_HD void operator()(int64_t t) const {
        int64_t l = t % 16, sq = t / 16, s = sq / nch, q = sq % nch, hw = (int64_t)b.w * b.h, i0 = q * SSL__AUG_CHUNK;
        const ssl__augd &a = ad[s];
        if (a.ci >= a.nops) return; /* no contrast */
        int m = (int)ssl__min64(SSL__AUG_CHUNK, hw - i0);
        float lane = 0.0f, px[3];
        for (int i = 0; i + 16 <= m; i += 16) {
            ssl__aug_load(b, a, src, s, i0 + i + l, px);
            for (int k = 0; k < a.ci; k++) ssl__aug_op(a, a.ops[k], 0.0f, px);
            lane += ssl_px_gray(px[0], px[1], px[2]);
        }
        lanes[t] = lane;
    }
};
struct ssl__f_aug_graysum {
    ssl__augb b;
    const ssl__augd *ad;
    const uint8_t *src;
    const float *lanes; /* [n][nch][16] */
    double *chunk;      /* [n][nch] */
    int64_t nch;
    SSL_HD void operator()(int64_t t) const {
        int64_t s = t / nch, q = t % nch, hw = (int64_t)b.w * b.h, i0 = q * SSL__AUG_CHUNK;
        const ssl__augd &a = ad[s];
        if (a.ci >= a.nops) return; /* no contrast */
        int m = (int)ssl__min64(SSL__AUG_CHUNK, hw - i0), i = m / 16 * 16;
        float px[3];
        double sum = 0;
        for (int l = 0; l < 16; l++) sum += lanes[t * 16 + l];
        for (; i < m; i++) {
            ssl__aug_load(b, a, src, s, i0 + i, px);
            for (int k = 0; k < a.ci; k++) ssl__aug_op(a, a.ops[k], 0.0f, px);
            sum += ssl_px_gray(px[0], px[1], px[2]);
        }
        chunk[t] = sum;
    }
};
struct ssl__f_aug_mean {
    ssl__augb b;
    const ssl__augd *ad;
    const double *chunk;
    float *mean_gray;
    int64_t nch;
    SSL_HD void operator()(int64_t s) const {
        if (ad[s].ci >= ad[s].nops) { mean_gray[s] = 0.0f; return; }
        double g = 0;
        for (int64_t q = 0; q < nch; q++) g += chunk[s * nch + q];
        mean_gray[s] = (float)(g / ((int64_t)b.w * b.h));
    }
};
/* the pointwise chain for every pixel; without blur also the finish, into
   out; with blur into planes P [n][3][hw] */
struct ssl__f_aug_point {
    ssl__augb b;
    const ssl__augd *ad;
    const uint8_t *src;
    const float *mean_gray;
    float *planes, *out;
    SSL_HD void operator()(int64_t t) const {
        int64_t hw = (int64_t)b.w * b.h, s = t / hw, i = t % hw;
        const ssl__augd &a = ad[s];
        float px[3];
        ssl__aug_load(b, a, src, s, i, px);
        for (int k = 0; k < a.nops; k++) ssl__aug_op(a, a.ops[k], mean_gray[s], px);
        if (a.rad > 0)
            for (int c = 0; c < 3; c++) planes[(s * 3 + c) * hw + i] = px[c];
        else
            ssl__aug_finish(b, a, (uint32_t)i, px, out + t * 3);
    }
};
/* one tap sum of the CPU's ssl__blur_line: c + sum_j k_j ((lo_j - c) + (hi_j - c)) */
struct ssl__f_aug_blur_rows {
    ssl__augb b;
    const ssl__augd *ad;
    const float *planes;
    float *tmp;
    SSL_HD void operator()(int64_t t) const {
        int64_t hw = (int64_t)b.w * b.h, sc = t / hw, s = sc / 3, i = t % hw, y = i / b.w, x = i % b.w;
        const ssl__augd &a = ad[s];
        if (a.rad == 0) return;
        const float *row = planes + sc * hw + y * b.w;
        float c = row[x], acc = 0.0f;
        for (int j = 1; j <= a.rad; j++)
            acc += a.k[j] * ((row[ssl__reflect((int)x - j, b.w)] - c) + (row[ssl__reflect((int)x + j, b.w)] - c));
        tmp[t] = c + acc;
    }
};
struct ssl__f_aug_blur_cols {
    ssl__augb b;
    const ssl__augd *ad;
    const float *tmp;
    float *out;
    SSL_HD void operator()(int64_t t) const {
        int64_t hw = (int64_t)b.w * b.h, s = t / hw, i = t % hw, y = i / b.w, x = i % b.w;
        const ssl__augd &a = ad[s];
        if (a.rad == 0) return;
        float px[3];
        for (int ch = 0; ch < 3; ch++) {
            const float *p = tmp + (s * 3 + ch) * hw + x;
            float c = p[y * b.w], acc = 0.0f;
            for (int j = 1; j <= a.rad; j++)
                acc += a.k[j] * ((p[(int64_t)ssl__reflect((int)y - j, b.h) * b.w] - c) +
                                 (p[(int64_t)ssl__reflect((int)y + j, b.h) * b.w] - c));
            px[ch] = c + acc;
        }
        ssl__aug_finish(b, a, (uint32_t)i, px, out + t * 3);
    }
};

/* The pipeline on executor x: src (n x h x w x 3 uint8), descriptors ad,
   all on x's side; out float NHWC. */
template <class X>
static void ssl__augment_run(const X &x, const ssl__augb &b, const ssl__augd *ad, const uint8_t *src, float *out) {
    int64_t hw = (int64_t)b.w * b.h, nch = (hw + SSL__AUG_CHUNK - 1) / SSL__AUG_CHUNK;
    size_t cb = sizeof(double) * (size_t)(b.n * nch), mb = (sizeof(float) * (size_t)b.n + 15) & ~(size_t)15;
    size_t lb = sizeof(float) * 16 * (size_t)(b.n * nch), pb = sizeof(float) * (size_t)(b.n * 3 * hw);
    char *mem = (char *)ssl__tmp(x, SSL__S_AUG, cb + mb + lb + 2 * pb);
    double *chunk = (double *)mem;
    float *mean_gray = (float *)(mem + cb), *lanes = (float *)(mem + cb + mb), *planes = (float *)(mem + cb + mb + lb),
          *tmp = planes + b.n * 3 * hw;
    { /* the parts as rows of their own in a profile */
        SSL__PROF("augment: contrast's mean", 0, 0);
        ssl__f_aug_graylane gl = {b, ad, src, lanes, nch};
        x.each(gl, b.n * nch * 16);
        ssl__f_aug_graysum gs = {b, ad, src, lanes, chunk, nch};
        x.each(gs, b.n * nch);
        ssl__f_aug_mean mg = {b, ad, chunk, mean_gray, nch};
        x.each(mg, b.n);
    }
    {
        SSL__PROF("augment: crop, flip, colour", 0, 0);
        ssl__f_aug_point pt = {b, ad, src, mean_gray, planes, out};
        x.each(pt, b.n * hw);
    }
    SSL__PROF("augment: blur", 0, 0);
    ssl__f_aug_blur_rows br = {b, ad, planes, tmp};
    x.each(br, b.n * 3 * hw);
    ssl__f_aug_blur_cols bc = {b, ad, tmp, out};
    x.each(bc, b.n * hw);
}

static ssl__augb ssl__augb_make(int n, int w, int h, float in_range, const float mean[3], const float std[3]) {
    ssl__augb b;
    b.n = n, b.w = w, b.h = h, b.in_range = in_range, b.norm = mean && std;
    for (int c = 0; c < 3; c++) b.mean[c] = b.norm ? mean[c] : 0.0f, b.std[c] = b.norm ? std[c] : 1.0f;
    return b;
}

/* The uint8 crops on the device: a few staging slots, each the device copy
   of one host buffer. ssl_cuda_prefetch_u8 starts a buffer's copy on the
   copy stream; from page-locked memory (the loader's batches when ./train
   runs on the GPU) it runs while the GPU computes the step before.
   ssl_cuda_augment_u8 uses the slot its pointer was prefetched into, or
   copies then. A slot's device buffer is overwritten only after the
   augmentation that read it is done (its `done` event, waited for on the
   copy stream, not by the host). */
#define SSL__AUG_SLOTS 4
struct ssl__aug_slot {
    const uint8_t *host; /* the prefetched buffer not yet augmented; NULL: none */
    size_t bytes;
    uint64_t used;       /* least recently used is taken first */
    uint8_t *dsrc;
    size_t src_cap;
    ssl__augd *hdesc, *ddesc; /* hdesc page-locked */
    int desc_cap;
    cudaEvent_t copied, done;
};
static ssl__aug_slot ssl__slot_sets[2][SSL__AUG_SLOTS]; /* the GPU's, the emulation's (their memory differs) */
static ssl__aug_slot *ssl__aug_slots(void) { return ssl__slot_sets[ssl__emu ? 1 : 0]; }
static uint64_t ssl__slot_clock;
static cudaStream_t ssl__copy_stream;

/* In emulation the slots work as on the GPU (which buffer is where, what a
   prefetch leaves behind), the copies are memcpy at once and the streams
   and events are left out. */
static void ssl__aug_init(void) {
    if (ssl__emu || ssl__copy_stream) return;
    SSL_CUDA_CHECK(cudaStreamCreateWithFlags(&ssl__copy_stream, cudaStreamNonBlocking));
    for (int i = 0; i < SSL__AUG_SLOTS; i++) {
        SSL_CUDA_CHECK(cudaEventCreateWithFlags(&ssl__aug_slots()[i].copied, cudaEventDisableTiming));
        SSL_CUDA_CHECK(cudaEventCreateWithFlags(&ssl__aug_slots()[i].done, cudaEventDisableTiming));
    }
}
/* the slot holding a prefetch of (host, bytes), else a slot to copy into:
   a free one (least recently used), else the least recently used */
static ssl__aug_slot *ssl__aug_slot_for(const uint8_t *host, size_t bytes, int *hit) {
    ssl__aug_slot *best = NULL;
    *hit = 0;
    for (int i = 0; i < SSL__AUG_SLOTS; i++) {
        ssl__aug_slot *sl = &ssl__aug_slots()[i];
        if (sl->host == host && sl->bytes == bytes) {
            *hit = 1;
            return sl;
        }
        if (!best || (!sl->host && best->host) || ((!sl->host) == (!best->host) && sl->used < best->used)) best = sl;
    }
    return best;
}
static void ssl__aug_copy(ssl__aug_slot *sl, const uint8_t *host, size_t bytes) {
    if (sl->src_cap < bytes) {
        ssl_cuda_free(sl->dsrc); /* cudaFree waits for the kernels using it */
        sl->dsrc = (uint8_t *)ssl_cuda_malloc(bytes, "uint8 crops (GPU augmentation)");
        sl->src_cap = bytes;
    }
    if (ssl__emu) {
        SSL__GUARD;
        memcpy(sl->dsrc, host, bytes);
    } else {
        SSL_CUDA_CHECK(cudaStreamWaitEvent(ssl__copy_stream, sl->done, 0)); /* its last reader is done */
        SSL_CUDA_CHECK(cudaMemcpyAsync(sl->dsrc, host, bytes, cudaMemcpyHostToDevice, ssl__copy_stream));
        SSL_CUDA_CHECK(cudaEventRecord(sl->copied, ssl__copy_stream));
    }
    sl->host = host, sl->bytes = bytes, sl->used = ++ssl__slot_clock;
}

extern "C" int ssl_cuda_prefetch_u8(const uint8_t *host_u8, size_t bytes) {
    if (!host_u8) { /* forget the prefetches not yet used */
        for (int i = 0; i < SSL__AUG_SLOTS; i++) ssl__aug_slots()[i].host = NULL;
        if (ssl__copy_stream) {
            SSL__BLOCKED;
            SSL_CUDA_CHECK(cudaStreamSynchronize(ssl__copy_stream));
        }
        return 0;
    }
    if (!bytes) return 0;
    ssl__aug_init();
    int hit;
    ssl__aug_slot *sl = ssl__aug_slot_for(host_u8, bytes, &hit);
    if (!hit) ssl__aug_copy(sl, host_u8, bytes);
    return 0;
}

// ---- GPU busy time -------------------------------------------------------------
#define SSL__BUSY_MAX 256
static cudaEvent_t ssl__busy_ev[SSL__BUSY_MAX][2];
static int ssl__busy_n, ssl__busy_open;
static double ssl__busy_s;
/* adds the finished pairs' times (waiting for the last end) */
static void ssl__busy_fold(void) {
    SSL__BLOCKED;
    for (int i = 0; i < ssl__busy_n; i++) {
        float ms = 0;
        SSL_CUDA_CHECK(cudaEventSynchronize(ssl__busy_ev[i][1]));
        SSL_CUDA_CHECK(cudaEventElapsedTime(&ms, ssl__busy_ev[i][0], ssl__busy_ev[i][1]));
        ssl__busy_s += ms / 1e3;
    }
    if (ssl__busy_open && ssl__busy_n) { /* the open begin moves to the first pair, which its end will close */
        cudaEvent_t e = ssl__busy_ev[0][0];
        ssl__busy_ev[0][0] = ssl__busy_ev[ssl__busy_n][0], ssl__busy_ev[ssl__busy_n][0] = e;
    }
    ssl__busy_n = 0;
}
extern "C" void ssl_cuda_busy_mark(int end) {
    if (ssl__emu) return;
    static int made = 0;
    if (!made) {
        for (int i = 0; i < SSL__BUSY_MAX; i++)
            for (int k = 0; k < 2; k++) SSL_CUDA_CHECK(cudaEventCreate(&ssl__busy_ev[i][k]));
        made = 1;
    }
    if (!end) {
        if (ssl__busy_open) return; /* a second begin: the first one stands */
        if (ssl__busy_n == SSL__BUSY_MAX) ssl__busy_fold();
        SSL_CUDA_CHECK(cudaEventRecord(ssl__busy_ev[ssl__busy_n][0], 0));
        ssl__busy_open = 1;
    } else if (ssl__busy_open) {
        SSL_CUDA_CHECK(cudaEventRecord(ssl__busy_ev[ssl__busy_n][1], 0));
        ssl__busy_n++, ssl__busy_open = 0;
    }
}
extern "C" double ssl_cuda_busy_take(void) {
    if (ssl__emu) return -1;
    ssl__busy_fold();
    double s = ssl__busy_s;
    ssl__busy_s = 0;
    return s;
}

extern "C" int ssl_cuda_augment_u8(const uint8_t *host_u8, const ssl_aug_params *params, int n, int w, int h,
                                   float in_range, const float mean[3], const float std[3], float *out) {
    if (n <= 0) return 0;
    if (w <= 0 || h <= 0 || (int64_t)w * h >= (1ll << 31))
        return ssl__fail("ssl_cuda_augment_u8: bad image size %dx%d", w, h);
    ssl__augb b = ssl__augb_make(n, w, h, in_range, mean, std);
    size_t src_bytes = (size_t)n * w * h * 3;
    ssl__aug_init();
    int hit;
    ssl__aug_slot *sl = ssl__aug_slot_for(host_u8, src_bytes, &hit);
    if (!hit) ssl__aug_copy(sl, host_u8, src_bytes);
    if (ssl__emu) { /* the slot's copy, descriptors on the host */
        SSL__GUARD;
        ssl__augd *ad = (ssl__augd *)ssl_malloc(sizeof(ssl__augd) * (size_t)n, "augment descriptors");
        for (int s = 0; s < n; s++) ssl__augd_make(&params[s], w, h, &ad[s]);
        ssl__augment_run(ssl__cpu{}, b, ad, sl->dsrc, out);
        free(ad);
        sl->host = NULL;
        return 0;
    }
    {
        SSL__BLOCKED;
        SSL_CUDA_CHECK(cudaEventSynchronize(sl->done)); /* the descriptors' last copy is done with hdesc */
    }
    if (sl->desc_cap < n) {
        ssl_cuda_host_free(sl->hdesc);
        ssl_cuda_free(sl->ddesc);
        sl->hdesc = (ssl__augd *)ssl_cuda_host_alloc(sizeof(ssl__augd) * (size_t)n, "augment descriptors");
        sl->ddesc = (ssl__augd *)ssl_cuda_malloc(sizeof(ssl__augd) * (size_t)n, "augment descriptors");
        sl->desc_cap = n;
    }
    for (int s = 0; s < n; s++) ssl__augd_make(&params[s], w, h, &sl->hdesc[s]);
    SSL_CUDA_CHECK(cudaMemcpyAsync(sl->ddesc, sl->hdesc, sizeof(ssl__augd) * (size_t)n, cudaMemcpyHostToDevice, 0));
    SSL_CUDA_CHECK(cudaStreamWaitEvent(0, sl->copied, 0));
    { /* after the wait for the copy: the scope times the kernels only */
        SSL__PROF("augment (GPU data)", (double)src_bytes * 9, 0); /* u8 read, float planes written and read twice, out */
        ssl__augment_run(ssl__gpu{}, b, sl->ddesc, sl->dsrc, out);
    }
    SSL_CUDA_CHECK(cudaEventRecord(sl->done, 0));
    sl->host = NULL; /* used: the same pointer later holds other crops */
    /* the crops are on the device when this returns: the caller may reuse
       host_u8 (after a prefetch this wait is over at once) */
    SSL__BLOCKED;
    SSL_CUDA_CHECK(cudaEventSynchronize(sl->copied));
    return 0;
}

// ---- the profile's report ------------------------------------------------------
/* cuBLAS alone on one recorded GEMM shape: TFLOP/s over ten calls on
   zeroed operands (0 in emulation) */
/* the shape's GEMM ten times on zeroed operands of its types */
template <class T, class TC> static void ssl__prof_gemm_run(const ssl__prof_shape *s, void *mem, int reps) {
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N;
    T *a = (T *)mem, *b = a + na;
    TC *c = (TC *)((char *)mem + (sizeof(T) * (na + nb) + 255) / 256 * 256); /* aligned C */
    const ssl__gpu x{};
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    for (int r = 0; r < reps; r++)
        x.gemm("", s->ta, s->tb, s->M, s->N, s->K, 1.0f, a, lda, b, ldb, s->beta ? 1.0f : 0.0f, c, s->N);
}
static double ssl__prof_gemm_alone(const ssl__prof_shape *s) {
    if (ssl__emu) return 0;
    size_t bytes = (ssl_dtype_size(s->tab) * ((size_t)s->M * s->K + (size_t)s->K * s->N) + 255) / 256 * 256 +
                   ssl_dtype_size(s->tc) * (size_t)s->M * s->N;
    void *mem = ssl_cuda_malloc(bytes, "GEMM benchmark");
    SSL_CUDA_CHECK(cudaMemset(mem, 0, bytes));
    int on = ssl__prof_on, bf = ssl__bf16;
    ssl__prof_on = 0, ssl__bf16 = s->bf16;
    cudaEvent_t e0, e1;
    SSL_CUDA_CHECK(cudaEventCreate(&e0));
    SSL_CUDA_CHECK(cudaEventCreate(&e1));
    for (int pass = 0; pass < 2; pass++) { /* a warm-up call, then ten timed */
        if (pass) SSL_CUDA_CHECK(cudaEventRecord(e0, 0));
        int reps = pass ? 10 : 1;
        if (s->tab == SSL_F32) ssl__prof_gemm_run<float, float>(s, mem, reps);
        else if (s->tc == SSL_F32) ssl__prof_gemm_run<ssl_bf16, float>(s, mem, reps);
        else ssl__prof_gemm_run<ssl_bf16, ssl_bf16>(s, mem, reps);
    }
    SSL_CUDA_CHECK(cudaEventRecord(e1, 0));
    SSL_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    SSL_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    SSL_CUDA_CHECK(cudaEventDestroy(e0));
    SSL_CUDA_CHECK(cudaEventDestroy(e1));
    ssl_cuda_free(mem);
    ssl__prof_on = on, ssl__bf16 = bf;
    return ms > 0 ? 10 * 2.0 * s->M * s->N * s->K / (ms / 1e3) / 1e12 : 0;
}


extern "C" int ssl_cuda_profile_kind(const char *kind, double *ms, double *bytes, long long *calls) {
    ssl__prof_fold();
    for (int i = 0; i < ssl__prof_nkinds; i++) {
        const ssl__prof_kind *q = &ssl__prof_kinds[i];
        if (strcmp(q->name, kind) || !q->calls) continue;
        if (ms) *ms = q->ms;
        if (bytes) *bytes = q->bytes;
        if (calls) *calls = q->calls;
        return 1;
    }
    if (ms) *ms = 0;
    if (bytes) *bytes = 0;
    if (calls) *calls = 0;
    return 0;
}

extern "C" int ssl_cuda_profile_report(FILE *f, int steps, double peak_gbs) {
    ssl__user_scopes_drop();
    ssl__prof_fold();
    int order[SSL__PROF_KINDS];
    double total = 0;
    for (int i = 0; i < ssl__prof_nkinds; i++) order[i] = i, total += ssl__prof_kinds[i].ms;
    for (int i = 1; i < ssl__prof_nkinds; i++) /* by time, largest first */
        for (int j = i; j > 0 && ssl__prof_kinds[order[j]].ms > ssl__prof_kinds[order[j - 1]].ms; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    double k = steps > 0 ? steps : 1;
    fprintf(f, "| kind of work | calls/step | ms/step | share | GB/step | GFLOP/step | GB/s | %% of %.0f GB/s | TFLOP/s |\n",
            peak_gbs);
    fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ssl__prof_nkinds; i++) {
        const ssl__prof_kind *q = &ssl__prof_kinds[order[i]];
        if (!q->calls) continue; /* named by a scope that was dropped */
        double s = q->ms / 1e3, gbs = s > 0 ? q->bytes / s / 1e9 : 0, tf = s > 0 ? q->flops / s / 1e12 : 0;
        char tfs[32] = "-";
        if (q->flops > 0) snprintf(tfs, sizeof tfs, "%.2f", tf);
        fprintf(f, "| %s | %.0f | %.3f | %.1f%% | %.3f | %.1f | %.0f | %.0f%% | %s |\n", q->name, q->calls / k, q->ms / k,
                total > 0 ? 100 * q->ms / total : 0, q->bytes / k / 1e9, q->flops / k / 1e9, gbs,
                peak_gbs > 0 ? 100 * gbs / peak_gbs : 0, tfs);
    }
    double tb = 0, tfl = 0;
    for (int i = 0; i < ssl__prof_nkinds; i++) tb += ssl__prof_kinds[i].bytes, tfl += ssl__prof_kinds[i].flops;
    fprintf(f, "| total | | %.3f | | %.3f | %.1f | | | |\n\n", total / k, tb / k / 1e9, tfl / k / 1e9);
    long long l1 = ssl__prof_on ? ssl__launches : ssl__prof_launch1, g1 = ssl__prof_on ? ssl__gemms : ssl__prof_gemm1;
    long long w1 = ssl__prof_on ? ssl__waits : ssl__prof_wait1;
    fprintf(f, "Per step: %.0f kernel launches and %.0f GEMM calls.\n\n", (l1 - ssl__prof_launch0) / k,
            (g1 - ssl__prof_gemm0) / k);
    fprintf(f, "Per step: %.0f host waits for the device (synchronous copies, syncs).\n\n", (w1 - ssl__prof_wait0) / k);
    if (ssl__prof_conv_floor > 0) { /* the GEMM path's convolutions against what an implicit GEMM must move */
        double cols = 0;
        for (int i = 0; i < ssl__prof_nkinds; i++)
            if (!strncmp(ssl__prof_kinds[i].name, "im2col", 6) || !strcmp(ssl__prof_kinds[i].name, "col2im") ||
                !strncmp(ssl__prof_kinds[i].name, "GEMM conv ", 10))
                cols += ssl__prof_kinds[i].bytes;
        fprintf(f, "Convolutions: %.3f GB/step here (im2col, col2im and their GEMMs); as implicit GEMMs (no columns, "
                   "each operand read once) at least %.3f GB/step.\n\n", cols / k / 1e9, ssl__prof_conv_floor / k / 1e9);
    }
    /* the GEMM shapes taking the most time, against cuBLAS alone */
    int sh[SSL__PROF_SHAPES];
    for (int i = 0; i < ssl__prof_nshapes; i++) sh[i] = i;
    for (int i = 1; i < ssl__prof_nshapes; i++)
        for (int j = i; j > 0 && ssl__prof_shapes[sh[j]].ms > ssl__prof_shapes[sh[j - 1]].ms; j--) {
            int t = sh[j];
            sh[j] = sh[j - 1], sh[j - 1] = t;
        }
    fprintf(f, "| GEMM (row-major) | op | M | N | K | calls/step | ms/step | TFLOP/s in the step | cuBLAS alone |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ssl__prof_nshapes && i < 15; i++) {
        const ssl__prof_shape *s = &ssl__prof_shapes[sh[i]];
        double fl = 2.0 * s->M * s->N * s->K * s->calls, tf = s->ms > 0 ? fl / (s->ms / 1e3) / 1e12 : 0;
        double alone = ssl__prof_gemm_alone(s);
        const char *types = s->tab == SSL_BF16 ? (s->tc == SSL_BF16 ? " bf16" : " bf16, fp32 C")
                                               : (s->bf16 ? " fp32 (bf16 math)" : " fp32");
        fprintf(f, "| %s | %c%c%s | %d | %d | %d | %.0f | %.3f | %.1f | %.1f |\n", s->name, s->ta ? 'T' : 'N',
                s->tb ? 'T' : 'N', types, s->M, s->N, s->K, s->calls / k, s->ms / k, tf, alone);
    }
    return ssl__prof_nkinds;
}

