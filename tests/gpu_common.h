/* gpu_common.h - what the GPU suite (tests/gpu_*.c) shares.

   Every comparison runs in two modes over the same test body:
     emu_*  ssl.cu's functors run on the host, in strict emulation
            (ssl_cuda_set_emulation(2)): tensors are host memory marked
            SSL_DEV_CUDA, so every public op dispatches to its ssl_cuda_*
            function and the kernels' index math and per-element code are
            checked on any machine; that memory is closed (PROT_NONE)
            outside the backend's calls, so host code reading a device
            pointer stops as it would misbehave on a GPU;
     gpu_*  the real thing on device memory; without a CUDA device each
            fails at once with "no CUDA device".
   Tolerances: |got - want| <= atol + rtol * |want| per element, stated at
   each check; emulation uses the same GEMM (ssl_gemm) as the CPU and is held
   to rounding-level tolerances, the GPU to fp32 ones (cuBLAS sums in a
   different order). */
#ifndef SSL_GPU_COMMON_H
#define SSL_GPU_COMMON_H
#include "test.h"

/* Starts a test in mode gpu (1) or emulation (0); 0 (and a failed check
   saying "no CUDA device") when the GPU mode has no device. */
int g_begin(int gpu);
/* memory on the mode's side: device memory, or host memory in emulation */
float *g_alloc(int gpu, size_t nfloats);
void g_free(int gpu, void *p);
void g_up(int gpu, void *dst, const void *src, size_t bytes);
void g_down(int gpu, void *dst, const void *src, size_t bytes);
/* a copy of host tensor h on the mode's side, marked SSL_DEV_CUDA
   (data NULL stays NULL); while g_misalign is 1, g_tensor and b_tensor
   place the data one element past a 16-byte boundary (the layer kernels'
   16-byte vector paths must then step aside), while it is 2 every other
   tensor they make, and set to 3 the next one only (then it is 0) */
extern int g_misalign;
ssl_tensor g_tensor(int gpu, const ssl_tensor *h);
/* its values back into a new host array (free it) */
float *g_fetch(int gpu, const ssl_tensor *d);
void g_release(int gpu, ssl_tensor *d);
/* random host tensor with values in [lo, hi) (a fixed seed per call site) */
ssl_tensor g_rand(uint64_t seed, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, float lo, float hi);
/* compares n values; reports the worst element and returns its error */
double g_close(const char *file, int line, const char *what, const float *got, const float *want, int64_t n,
               double atol, double rtol);
#define G_CLOSE(what, got, want, n, atol, rtol) g_close(__FILE__, __LINE__, what, got, want, n, atol, rtol)
/* compares device tensor d with host tensor h */
double g_close_t(const char *file, int line, int gpu, const char *what, const ssl_tensor *d, const ssl_tensor *h,
                 double atol, double rtol);
#define G_CLOSE_T(gpu, what, d, h, atol, rtol) g_close_t(__FILE__, __LINE__, gpu, what, d, h, atol, rtol)

/* bf16: a value rounded (r16), a host tensor's values rounded in place
   (round_h), a bf16 copy of a host tensor on the mode's side (b_tensor),
   a bf16 device tensor's values as fp32 (b_fetch; free them), and a bf16
   device tensor compared with a host one (B_CLOSE_T) */
float r16(float v);
ssl_tensor round_h(ssl_tensor t);
ssl_tensor b_tensor(int gpu, const ssl_tensor *h);
float *b_fetch(int gpu, const ssl_tensor *d);
double b_close(const char *file, int line, int gpu, const char *what, const ssl_tensor *d, const ssl_tensor *h,
               double atol, double rtol);
#define B_CLOSE_T(gpu, what, d, h, atol, rtol) b_close(__FILE__, __LINE__, gpu, what, d, h, atol, rtol)
/* one bf16 unit in the last place, relative */
#define G_ULP (1.0 / 128)
/* batch norm forward and backward (fused 0: plain, 1: + ReLU, 2: +
   residual + ReLU) on the device against the CPU's separate ops; bf16:
   the activations stored as bf16 (inputs rounded first, y and dx held to
   one rounding). Frees x. (gpu_ops.c) */
void g_bn_case(int gpu, const char *name, ssl_tensor x, int affine, int training, int fused, int bf16);

/* a convolution forward and backward on the device against the CPU
   (gpu_ops.c): fp32, or bf16 activations (x_f32: fp32 images, as the
   stem; w16: a bf16 weight copy); dw_rtol: the weight gradient's
   tolerance where not fp32's (0) */
typedef struct { int bf16, x_f32, w16; double dw_rtol; } g_conv_kind;
void g_conv_case(int gpu, const char *name, int n, int h, int w, int ci, int co, int k, int stride, int pad, int bias,
                 int with_dx, g_conv_kind kind);
void g_pool_case(int gpu, const ssl_tensor *x, const ssl_tensor *dx, int k, int s, int p, int bf16);

/* ssl.cu's check of its row-major -> cuBLAS column-major GEMM mapping
   (largest relative difference over random calls; 1e30: a refused call) */
double ssl_cuda_gemm_selftest(int trials, uint64_t seed);
/* ssl.cu's 32-bit division by invariant integers against / and %: the
   number of wrong quotients or remainders over random divisors */
int64_t ssl_cuda_fastdiv_selftest(int64_t trials, uint64_t seed);

/* ssl.cu's check of one convolution shape's cuDNN plan through cuDNN's
   getters (0: right; -1: wrong, see ssl_last_error; 1: no cuDNN built in) */
int ssl_cuda_cudnn_plan_check(int n, int h, int w, int ci, int co, int k, int stride, int pad, int bf16);

/* tolerance pairs per mode: (emulation, GPU fp32) */
#define G_TOL(gpu, emu_tol, gpu_tol) ((gpu) ? (gpu_tol) : (emu_tol))

/* One body, two tests. */
#define GPU_TEST(name)                                       \
    static void gbody_##name(int gpu);                       \
    TEST(emu_##name) { if (g_begin(0)) gbody_##name(0); }   \
    TEST(gpu_##name) { if (g_begin(1)) gbody_##name(1); }   \
    static void gbody_##name(int gpu)
#endif
