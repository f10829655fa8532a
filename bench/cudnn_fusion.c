/* bench/cudnn_fusion.c: does cuDNN fuse batch norm's neighbours into a
   convolution on this GPU, and what does the fused call cost beside the
   convolution alone?

   Why: ssl.h's forward is, per convolution, the convolution (cuDNN or
   im2col + cuBLAS), then batch norm's statistics pass over its output (one
   read), then BN's output pass (a read and a write) whose result the next
   convolution reads. On the GPU profiles that is about 40 ms of a ~105 ms
   ResNet-50 step at 224, and most of what stands between ResNet-18 CIFAR
   and 1.5x PyTorch. cuDNN's graph API can, where an engine supports it,
   (a) compute the per-channel sums of the output in the convolution's
   epilogue (GenStats; or Reduction ops), removing the statistics pass, and
   (b) apply the previous BN's scale, shift and ReLU to the input as it is
   loaded (a pointwise prologue), removing the output pass: the pattern
   NVIDIA's own ResNet training uses. Whether this cuDNN, on this GPU, in
   bf16, has engines for these graphs, and at what cost, is not written
   anywhere we can read without a GPU; this program asks it.

   cuDNN's documentation answers part of it: its pattern engines for these
   fusions (ConvBNfprop: scale + bias + ReLU + conv + GenStats, and conv +
   GenStats; ConvBNwgrad) take fp16 tensors only, while ssl.h's step, as
   the target, is bf16. Its runtime-fused batch norm (NormAddRelu
   forward, DReluForkDNorm backward) takes bf16. So this program measures
   two things:

   1. Batch norm through cuDNN (bn_section below, first): the forward with
      the residual add, ReLU and the ReLU's mask as bits, and the backward
      after the mask's dReLU, on batch norm shapes of the headline steps,
      with GB/s beside bench/bn_bench.c's rows for ssl.h's own passes.
   2. The convolution fusions: for a few convolution shapes of the
      headline steps (ResNet-50 at 224, batch 256; ResNet-18 CIFAR, batch
      512), in fp16 then bf16, each graph:
     conv              X -> conv -> Y                      (the baseline)
     conv+stats        ... then GenStats(Y) -> sum, sum of squares
     conv+reduce       ... then Reduction(add) of Y and of Y*Y
     sbr+conv+stats    relu(X * scale + bias) -> conv -> GenStats
     wgrad             dW from X and dY                    (the baseline)
     sbr+wgrad         dW from relu(X * scale + bias) and dY: the backward
                       then needs no stored normalized tensor
   For each graph it builds the operation graph, asks the heuristics (mode
   A, then fallback) for engine configurations, finalizes a plan for each
   (up to PLANS), times each (3 warm-up and 10 timed runs, CUDA events) and
   keeps the fastest. It checks the fastest plan's results against the host
   in double: for the convolutions, Y at 512 sampled points (dW at 64) (over
   the prologue's output, for sbr) and every channel's sum and sum of
   squares against the host's sums of the Y it read back; for batch norm,
   see the checks under its table. A row says what failed where nothing
   ran.

     build/cudnn_fusion [seconds=120] [plans=6] [only=all|bn|conv]
                        [shapes=all|r18|r50] [types=both|fp16|bf16]

   only=all gives batch norm the first half of the seconds; shapes= and
   types= choose the convolutions' rows (both: each shape in fp16, then in
   bf16; batch norm is bf16).

   Writes markdown on stdout: a table per part, a row per shape and pass
   (or type and graph). */
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
#define CUDA_OK(call)                                                                                  \
    do {                                                                                               \
        cudaError_t e_ = (call);                                                                       \
        if (e_ != cudaSuccess) {                                                                       \
            fprintf(stderr, "cudnn_fusion: %s: %s (line %d)\n", #call, cudaGetErrorString(e_), __LINE__); \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

/* ---- host values in bf16 / fp16 (round to nearest even) ---- */
static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static uint16_t to_bf16(float f) {
    uint32_t u = f_bits(f);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
static float from_bf16(uint16_t h) { return bits_f((uint32_t)h << 16); }
static uint16_t to_fp16(float f) { /* normal and subnormal halves; no NaN or overflow in this program's values */
    uint32_t u = f_bits(f), sign = (u >> 16) & 0x8000;
    float a = fabsf(f);
    if (a >= 65504.0f) return (uint16_t)(sign | 0x7bff);
    if (a < 6.103515625e-05f) return (uint16_t)(sign | (uint16_t)lrintf(a * 16777216.0f)); /* subnormal: units of 2^-24 */
    int e;
    float m = frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) */
    uint32_t mant = (uint32_t)lrintf((m * 2.0f - 1.0f) * 1024.0f); /* rint: nearest even */
    int ee = e - 1 + 15;
    if (mant == 1024) mant = 0, ee++;
    return (uint16_t)(sign | (uint32_t)ee << 10 | mant);
}
static float from_fp16(uint16_t h) {
    uint32_t sign = h & 0x8000, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e ? ldexpf((float)(m | 0x400), (int)e - 25) : ldexpf((float)m, -24);
    return sign ? -v : v;
}
static int g_fp16; /* the type of the run: 0 bf16, 1 fp16 */
static uint16_t to_h(float f) { return g_fp16 ? to_fp16(f) : to_bf16(f); }
static float from_h(uint16_t h) { return g_fp16 ? from_fp16(h) : from_bf16(h); }

/* ---- the backend API: every descriptor made goes into one list, freed per graph ---- */
static cudnnBackendDescriptor_t g_made[512];
static int g_nmade;
static char g_why[512]; /* what failed first, for the row */
static cudnnBackendDescriptor_t mk(cudnnBackendDescriptorType_t t) {
    cudnnBackendDescriptor_t d = NULL;
    if (g_nmade == 512 || cudnnBackendCreateDescriptor(t, &d) != CUDNN_STATUS_SUCCESS) return NULL;
    return g_made[g_nmade++] = d;
}
static void free_made(void) {
    while (g_nmade > 0) cudnnBackendDestroyDescriptor(g_made[--g_nmade]);
}
#define TRY(call)                                                                                      \
    do {                                                                                               \
        cudnnStatus_t s_ = (call);                                                                     \
        if (s_ != CUDNN_STATUS_SUCCESS) {                                                              \
            if (!g_why[0]) snprintf(g_why, sizeof g_why, "%s: %s", #call, cudnnGetErrorString(s_));    \
            return -1;                                                                                 \
        }                                                                                              \
    } while (0)
#define SET(d, attr, type, n, p) TRY(cudnnBackendSetAttribute(d, attr, type, n, p))
#define NEW(var, type)                                                                                 \
    do {                                                                                               \
        if (!(var = mk(type))) {                                                                       \
            if (!g_why[0]) snprintf(g_why, sizeof g_why, "cannot create a descriptor of type %d", (int)type); \
            return -1;                                                                                 \
        }                                                                                              \
    } while (0)

/* an NHWC tensor of logical dims n, c, h, w (a filter: k, c, r, s, KRSC);
   byval: passed by value (its pointer in the variant pack is host memory) */
static int tensor_of(cudnnBackendDescriptor_t *t, int64_t uid, cudnnDataType_t dt, int64_t n, int64_t c, int64_t h,
                     int64_t w, bool virt, bool byval) {
    int64_t dims[4] = {n, c, h, w}, str[4] = {h * w * c, 1, w * c, c}, align = 16;
    NEW(*t, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    SET(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    SET(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SET(*t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str);
    SET(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    SET(*t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    if (byval) SET(*t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byval);
    TRY(cudnnBackendFinalize(*t));
    return 0;
}
static int tensor(cudnnBackendDescriptor_t *t, int64_t uid, cudnnDataType_t dt, int64_t n, int64_t c, int64_t h,
                  int64_t w, bool virt) {
    return tensor_of(t, uid, dt, n, c, h, w, virt, false);
}
static int pointwise(cudnnBackendDescriptor_t *op, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x,
                     cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t pw;
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    NEW(pw, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    TRY(cudnnBackendFinalize(pw));
    NEW(*op, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b) SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    TRY(cudnnBackendFinalize(*op));
    return 0;
}
static int reduce_add(cudnnBackendDescriptor_t *op, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t r;
    cudnnReduceTensorOp_t add = CUDNN_REDUCE_TENSOR_ADD;
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    NEW(r, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    SET(r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &add);
    SET(r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    TRY(cudnnBackendFinalize(r));
    NEW(*op, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    SET(*op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(*op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    SET(*op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &r);
    TRY(cudnnBackendFinalize(*op));
    return 0;
}

/* the operation graph of ops, on handle h */
static int op_graph(cudnnHandle_t h, cudnnBackendDescriptor_t *ops, int nops, cudnnBackendDescriptor_t *graph) {
    NEW(*graph, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    TRY(cudnnBackendFinalize(*graph));
    return 0;
}

typedef struct { int n, h, w, c, k, r, s, stride, pad; const char *name; } shape;
static int oh_of(const shape *p) { return (p->h + 2 * p->pad - p->r) / p->stride + 1; }
static int ow_of(const shape *p) { return (p->w + 2 * p->pad - p->s) / p->stride + 1; }
enum { G_CONV, G_STATS, G_REDUCE, G_SBR, G_WGRAD, G_SBR_WGRAD, G_COUNT };
static const char *const g_names[G_COUNT] = {"conv", "conv+stats", "conv+reduce", "sbr+conv+stats", "wgrad", "sbr+wgrad"};
static int is_sbr(int g) { return g == G_SBR || g == G_SBR_WGRAD; }   /* relu(x scale + bias) as x is loaded */
static int is_wgrad(int g) { return g >= G_WGRAD; }                   /* dW from x and dy (dy in Y's buffer) */
static int has_sums(int g) { return g == G_STATS || g == G_REDUCE || g == G_SBR; }
enum { U_X = 1, U_W, U_Y, U_SUM, U_SQ, U_SCALE, U_BIAS, U_V1, U_V2, U_V3, U_V4 };

/* the operation graph of kind g on shape p; io: the tensors' type; aff:
   the type of scale and bias (sbr), v3 that of the prologue's output (the
   convolution's input) */
static int build(cudnnHandle_t h, const shape *p, int g, cudnnDataType_t io, cudnnDataType_t aff, cudnnDataType_t v3,
                 cudnnBackendDescriptor_t *graph) {
    int oh = oh_of(p), ow = ow_of(p);
    cudnnBackendDescriptor_t X, W, Y, S, Q, SC, BI, V1, V2, V3, V4, conv, cop, ops[8];
    int nops = 0;
    if (tensor(&X, U_X, io, p->n, p->c, p->h, p->w, false) || tensor(&W, U_W, io, p->k, p->c, p->r, p->s, false) ||
        tensor(&Y, U_Y, io, p->n, p->k, oh, ow, false))
        return -1;
    cudnnBackendDescriptor_t xin = X;
    if (is_sbr(g)) { /* relu(X * scale + bias), in float, then the convolution's input type */
        if (tensor(&SC, U_SCALE, aff, 1, p->c, 1, 1, false) || tensor(&BI, U_BIAS, aff, 1, p->c, 1, 1, false) ||
            tensor(&V1, U_V1, CUDNN_DATA_FLOAT, p->n, p->c, p->h, p->w, true) ||
            tensor(&V2, U_V2, CUDNN_DATA_FLOAT, p->n, p->c, p->h, p->w, true) ||
            tensor(&V3, U_V3, v3, p->n, p->c, p->h, p->w, true))
            return -1;
        if (pointwise(&ops[nops++], CUDNN_POINTWISE_MUL, X, SC, V1) || pointwise(&ops[nops++], CUDNN_POINTWISE_ADD, V1, BI, V2) ||
            pointwise(&ops[nops++], CUDNN_POINTWISE_RELU_FWD, V2, NULL, V3))
            return -1;
        xin = V3;
    }
    int64_t two = 2, one2[2] = {1, 1}, st[2] = {p->stride, p->stride}, pad[2] = {p->pad, p->pad};
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    NEW(conv, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
    SET(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    SET(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    SET(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &two);
    SET(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, one2);
    SET(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, st);
    SET(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    SET(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    TRY(cudnnBackendFinalize(conv));
    /* the forward (X, W -> Y) or the weight gradient (X, dY in Y's tensor -> dW in W's): the same attributes */
    static const struct {
        cudnnBackendDescriptorType_t type;
        cudnnBackendAttributeName_t x, w, y, desc, alpha, beta;
    } kinds[2] = {{CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
                  {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};
    const int kd = is_wgrad(g);
    float alpha = 1.0f, beta = 0.0f;
    NEW(cop, kinds[kd].type);
    SET(cop, kinds[kd].x, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xin);
    SET(cop, kinds[kd].w, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &W);
    SET(cop, kinds[kd].y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Y);
    SET(cop, kinds[kd].desc, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
    SET(cop, kinds[kd].alpha, CUDNN_TYPE_FLOAT, 1, &alpha);
    SET(cop, kinds[kd].beta, CUDNN_TYPE_FLOAT, 1, &beta);
    TRY(cudnnBackendFinalize(cop));
    ops[nops++] = cop;
    if (has_sums(g)) {
        if (tensor(&S, U_SUM, CUDNN_DATA_FLOAT, 1, p->k, 1, 1, false) || tensor(&Q, U_SQ, CUDNN_DATA_FLOAT, 1, p->k, 1, 1, false))
            return -1;
    }
    if (g == G_STATS || g == G_SBR) {
        cudnnBackendDescriptor_t gs;
        cudnnGenStatsMode_t gm = CUDNN_GENSTATS_SUM_SQSUM;
        cudnnDataType_t prec = CUDNN_DATA_FLOAT;
        NEW(gs, CUDNN_BACKEND_OPERATION_GEN_STATS_DESCRIPTOR);
        SET(gs, CUDNN_ATTR_OPERATION_GENSTATS_MODE, CUDNN_TYPE_GENSTATS_MODE, 1, &gm);
        SET(gs, CUDNN_ATTR_OPERATION_GENSTATS_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
        SET(gs, CUDNN_ATTR_OPERATION_GENSTATS_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Y);
        SET(gs, CUDNN_ATTR_OPERATION_GENSTATS_SUMDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &S);
        SET(gs, CUDNN_ATTR_OPERATION_GENSTATS_SQSUMDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Q);
        TRY(cudnnBackendFinalize(gs));
        ops[nops++] = gs;
    }
    if (g == G_REDUCE) { /* sum Y; Y*Y (float, virtual), summed */
        if (tensor(&V4, U_V4, CUDNN_DATA_FLOAT, p->n, p->k, oh, ow, true) || reduce_add(&ops[nops++], Y, S) ||
            pointwise(&ops[nops++], CUDNN_POINTWISE_MUL, Y, Y, V4) || reduce_add(&ops[nops++], V4, Q))
            return -1;
    }
    return op_graph(h, ops, nops, graph);
}

/* the device buffers of one shape and type */
typedef struct {
    void *x, *w, *y, *sum, *sq, *scale, *bias, *scale_h, *bias_h, *ws;
    size_t ws_cap;
    int aff_h; /* sbr: scale and bias in the tensors' type (scale_h, bias_h), else float */
} bufs;

/* a graph's tensors by unique id and their buffers (device, or host for a
   by-value scalar), the workspace added when the pack is made */
typedef struct {
    int64_t uids[24];
    void *ptrs[24];
    int n;
} io_list;
static void io_add(io_list *l, int64_t uid, void *ptr) { l->uids[l->n] = uid, l->ptrs[l->n++] = ptr; }
static int varpack(const io_list *l, void *ws, cudnnBackendDescriptor_t *vp) {
    NEW(*vp, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, l->n, l->uids);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, l->n, l->ptrs);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    TRY(cudnnBackendFinalize(*vp));
    return 0;
}
/* the convolution graph kind g's tensors over b's buffers */
static io_list conv_io(int g, const bufs *b) {
    io_list l = {{0}, {0}, 0};
    io_add(&l, U_X, b->x), io_add(&l, U_W, b->w), io_add(&l, U_Y, b->y);
    if (has_sums(g)) io_add(&l, U_SUM, b->sum), io_add(&l, U_SQ, b->sq);
    if (is_sbr(g)) io_add(&l, U_SCALE, b->aff_h ? b->scale_h : b->scale), io_add(&l, U_BIAS, b->aff_h ? b->bias_h : b->bias);
    return l;
}

/* engine configurations for graph (mode A, then fallback), plans finalized
   (at most plans), each timed; the fastest plan's time into *ms and the
   plan into *best (its workspace fits in b->ws, which only grows). Returns
   the count of plans that ran, or -1. */
static double g_build_s; /* tune's plan finalizations, seconds (runtime-fused engines compile their kernels there) */
static int tune(cudnnHandle_t h, cudnnBackendDescriptor_t graph, const io_list *io, void **ws, size_t *ws_cap, int plans,
                double deadline, float *ms, cudnnBackendDescriptor_t *best, int *tried) {
    cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    int ran = 0;
    *ms = 1e30f, *best = NULL, *tried = 0;
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    for (int m = 0; m < 2 && ran == 0; m++) {
        cudnnBackendDescriptor_t heur;
        NEW(heur, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        SET(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
        SET(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[m]);
        cudnnStatus_t hs = cudnnBackendFinalize(heur);
        if (hs != CUDNN_STATUS_SUCCESS) {
            if (!g_why[0]) snprintf(g_why, sizeof g_why, "heuristics (mode %s): %s", m ? "fallback" : "A", cudnnGetErrorString(hs));
            continue;
        }
        int64_t n = 0;
        if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &n, NULL) !=
                CUDNN_STATUS_SUCCESS || n <= 0)
            continue;
        if (n > 32) n = 32;
        cudnnBackendDescriptor_t cfg[32];
        for (int64_t i = 0; i < n; i++) NEW(cfg[i], CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        int64_t got = 0;
        TRY(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &got, cfg));
        for (int64_t i = 0; i < got && ran < plans && now_s() < deadline; i++) {
            cudnnBackendDescriptor_t plan, vp;
            NEW(plan, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
            SET(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
            SET(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
            ++*tried;
            double t0 = now_s();
            cudnnStatus_t fs = cudnnBackendFinalize(plan);
            g_build_s += now_s() - t0;
            if (fs != CUDNN_STATUS_SUCCESS) {
                if (!g_why[0]) snprintf(g_why, sizeof g_why, "plan finalize: %s", cudnnGetErrorString(fs));
                continue;
            }
            int64_t wsz = 0, cnt = 0;
            TRY(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &cnt, &wsz));
            if ((size_t)wsz > *ws_cap) {
                void *nw = NULL;
                if (cudaMalloc(&nw, (size_t)wsz) != cudaSuccess) { /* too big: the next configuration */
                    (void)cudaGetLastError();
                    continue;
                }
                if (*ws) CUDA_OK(cudaFree(*ws));
                *ws = nw, *ws_cap = (size_t)wsz;
            }
            if (varpack(io, *ws, &vp)) return -1;
            int ok = 1;
            for (int r = 0; r < 3 && ok; r++) ok = cudnnBackendExecute(h, plan, vp) == CUDNN_STATUS_SUCCESS;
            if (!ok || cudaDeviceSynchronize() != cudaSuccess) {
                (void)cudaGetLastError();
                if (!g_why[0]) snprintf(g_why, sizeof g_why, "cudnnBackendExecute failed");
                continue;
            }
            CUDA_OK(cudaEventRecord(e0, 0));
            for (int r = 0; r < 10; r++) cudnnBackendExecute(h, plan, vp);
            CUDA_OK(cudaEventRecord(e1, 0));
            CUDA_OK(cudaEventSynchronize(e1));
            float t = 0;
            CUDA_OK(cudaEventElapsedTime(&t, e0, e1));
            t /= 10;
            ran++;
            if (t < *ms) *ms = t, *best = plan;
        }
    }
    CUDA_OK(cudaEventDestroy(e0));
    CUDA_OK(cudaEventDestroy(e1));
    return ran;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* [0, 1) */
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)(g_rng >> 40) / 16777216.0f;
}

/* the convolution's input at (n, y, x, c) as the host models it: x, or
   for sbr relu(x scale + bias) (scale and bias rounded to the type when
   the graph took them so, aff_h), rounded to the type unless the
   prologue's output was fp32 (form 2) */
static double xin_at(const shape *p, const uint16_t *hx, const float *sc, const float *bi, int sbr, int aff_h, int form,
                     int n, int y, int x, int c) {
    double xv = from_h(hx[(((size_t)n * p->h + y) * p->w + x) * p->c + c]);
    if (!sbr) return xv;
    float scv = aff_h ? from_h(to_h(sc[c])) : sc[c], biv = aff_h ? from_h(to_h(bi[c])) : bi[c];
    float v = (float)xv * scv + biv;
    v = v > 0 ? v : 0;
    return form == 2 ? v : from_h(to_h(v));
}

/* ---- batch norm through cuDNN: NormForward and NormBackward ----
   cuDNN's runtime-fused batch norm (its documentation's NormAddRelu and
   DReluForkDNorm patterns) takes bf16 tensors, unlike its convolution
   fusions (fp16 only). If it moves a tensor nearer the memory's bandwidth
   than ssl.h's own passes (bench/bn_bench.c on the same shapes), ssl.cu
   can hand it its batch norms. Per shape of the headline steps:
     forward    x -> batch norm (training: mean, 1/std; the running
                statistics are ssl.cu's own small pass, as in SSL_BN=cudnn)
                [+ residual z] -> ReLU -> y, with the ReLU's mask as bits
                (input > 0, cuDNN's packed BOOLEAN: ssl.h's own layout)
     backward   dy * mask -> dz [kept where the block has a residual: its
                gradient] -> batch norm's backward -> dx, dscale, dbias */
typedef struct { int n, h, w, c, add; const char *name; } bnshape;
enum { B_X = 40, B_Z, B_Y, B_MASK, B_SCALE, B_BIAS, B_MEAN, B_INV, B_EPS, B_ZERO,
       B_DY, B_DZ, B_DX, B_DSCALE, B_DBIAS, B_V1, B_V2 };
static const char *const bn_forms[3] = {"mask from the ReLU's input", "mask from y", "no mask"};

/* a float passed by value */
static int scalar(cudnnBackendDescriptor_t *t, int64_t uid) { return tensor_of(t, uid, CUDNN_DATA_FLOAT, 1, 1, 1, 1, false, true); }
static int per_channel(cudnnBackendDescriptor_t *t, int64_t uid, int c) {
    return tensor(t, uid, CUDNN_DATA_FLOAT, 1, c, 1, 1, false);
}
/* the forward; form: where the mask's comparison reads (bn_forms) */
static int build_bn_fwd(cudnnHandle_t h, const bnshape *p, int form, cudnnDataType_t io, cudnnBackendDescriptor_t *graph) {
    cudnnBackendDescriptor_t X, Z, Y, M, SC, BI, ME, IV, EP, ZE, V1, V2, op, ops[4];
    int nops = 0;
    if (tensor(&X, B_X, io, p->n, p->c, p->h, p->w, false) || tensor(&Y, B_Y, io, p->n, p->c, p->h, p->w, false) ||
        tensor(&V1, B_V1, CUDNN_DATA_FLOAT, p->n, p->c, p->h, p->w, true) || per_channel(&SC, B_SCALE, p->c) ||
        per_channel(&BI, B_BIAS, p->c) || per_channel(&ME, B_MEAN, p->c) || per_channel(&IV, B_INV, p->c) ||
        scalar(&EP, B_EPS))
        return -1;
    cudnnBackendNormMode_t mode = CUDNN_BATCH_NORM;
    cudnnBackendNormFwdPhase_t phase = CUDNN_NORM_FWD_TRAINING;
    NEW(op, CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR);
    SET(op, CUDNN_ATTR_OPERATION_NORM_FWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode);
    SET(op, CUDNN_ATTR_OPERATION_NORM_FWD_PHASE, CUDNN_TYPE_NORM_FWD_PHASE, 1, &phase);
    static const cudnnBackendAttributeName_t names[] = {
        CUDNN_ATTR_OPERATION_NORM_FWD_XDESC, CUDNN_ATTR_OPERATION_NORM_FWD_MEAN_DESC,
        CUDNN_ATTR_OPERATION_NORM_FWD_INV_VARIANCE_DESC, CUDNN_ATTR_OPERATION_NORM_FWD_SCALE_DESC,
        CUDNN_ATTR_OPERATION_NORM_FWD_BIAS_DESC, CUDNN_ATTR_OPERATION_NORM_FWD_EPSILON_DESC,
        CUDNN_ATTR_OPERATION_NORM_FWD_YDESC};
    cudnnBackendDescriptor_t vals[] = {X, ME, IV, SC, BI, EP, V1};
    for (int i = 0; i < 7; i++) SET(op, names[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &vals[i]);
    TRY(cudnnBackendFinalize(op));
    ops[nops++] = op;
    cudnnBackendDescriptor_t pre = V1;
    if (p->add) {
        if (tensor(&Z, B_Z, io, p->n, p->c, p->h, p->w, false) ||
            tensor(&V2, B_V2, CUDNN_DATA_FLOAT, p->n, p->c, p->h, p->w, true) ||
            pointwise(&ops[nops++], CUDNN_POINTWISE_ADD, V1, Z, V2))
            return -1;
        pre = V2;
    }
    if (pointwise(&ops[nops++], CUDNN_POINTWISE_RELU_FWD, pre, NULL, Y)) return -1;
    if (form < 2 && (tensor(&M, B_MASK, CUDNN_DATA_BOOLEAN, p->n, p->c, p->h, p->w, false) || scalar(&ZE, B_ZERO) ||
                     pointwise(&ops[nops++], CUDNN_POINTWISE_CMP_GT, form == 0 ? pre : Y, ZE, M)))
        return -1;
    return op_graph(h, ops, nops, graph);
}
/* the backward: dz = dy * mask (kept where the shape has a residual), then batch norm's */
static int build_bn_bwd(cudnnHandle_t h, const bnshape *p, cudnnDataType_t io, cudnnBackendDescriptor_t *graph) {
    cudnnBackendDescriptor_t DY, M, DZ, X, DX, SC, ME, IV, DSC, DBI, op, ops[2];
    if (tensor(&DY, B_DY, io, p->n, p->c, p->h, p->w, false) ||
        tensor(&M, B_MASK, CUDNN_DATA_BOOLEAN, p->n, p->c, p->h, p->w, false) ||
        tensor(&DZ, B_DZ, p->add ? io : CUDNN_DATA_FLOAT, p->n, p->c, p->h, p->w, !p->add) ||
        tensor(&X, B_X, io, p->n, p->c, p->h, p->w, false) || tensor(&DX, B_DX, io, p->n, p->c, p->h, p->w, false) ||
        per_channel(&SC, B_SCALE, p->c) || per_channel(&ME, B_MEAN, p->c) || per_channel(&IV, B_INV, p->c) ||
        per_channel(&DSC, B_DSCALE, p->c) || per_channel(&DBI, B_DBIAS, p->c) ||
        pointwise(&ops[0], CUDNN_POINTWISE_MUL, DY, M, DZ))
        return -1;
    cudnnBackendNormMode_t mode = CUDNN_BATCH_NORM;
    NEW(op, CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR);
    SET(op, CUDNN_ATTR_OPERATION_NORM_BWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode);
    static const cudnnBackendAttributeName_t names[] = {
        CUDNN_ATTR_OPERATION_NORM_BWD_XDESC, CUDNN_ATTR_OPERATION_NORM_BWD_MEAN_DESC,
        CUDNN_ATTR_OPERATION_NORM_BWD_INV_VARIANCE_DESC, CUDNN_ATTR_OPERATION_NORM_BWD_DYDESC,
        CUDNN_ATTR_OPERATION_NORM_BWD_SCALE_DESC, CUDNN_ATTR_OPERATION_NORM_BWD_DSCALE_DESC,
        CUDNN_ATTR_OPERATION_NORM_BWD_DBIAS_DESC, CUDNN_ATTR_OPERATION_NORM_BWD_DXDESC};
    cudnnBackendDescriptor_t vals[] = {X, ME, IV, DZ, SC, DSC, DBI, DX};
    for (int i = 0; i < 8; i++) SET(op, names[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &vals[i]);
    TRY(cudnnBackendFinalize(op));
    ops[1] = op;
    return op_graph(h, ops, 2, graph);
}

static double peak_gbs(void) {
    int khz = 0, bits = 0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return 2.0 * khz * 1e3 * (bits / 8) / 1e9;
}
static int get_bit(const uint8_t *m, size_t i) { return (m[i >> 3] >> (i & 7)) & 1; }

/* every shape's forward and backward in bf16, until the deadline */
static void bn_section(cudnnHandle_t h, int plans, double deadline, double seconds) {
    static const bnshape shapes[] = { /* the most telling first */
        {512, 32, 32, 64, 0, "R18 CIFAR 32x32x64"},
        {256, 56, 56, 256, 1, "R50 224 56x56x256 +res"},
        {256, 56, 56, 64, 0, "R50 224 56x56x64"},
        {512, 32, 32, 64, 1, "R18 CIFAR 32x32x64 +res"},
        {256, 14, 14, 1024, 1, "R50 224 14x14x1024 +res"},
        {512, 8, 8, 256, 0, "R18 CIFAR 8x8x256"},
        {256, 112, 112, 64, 0, "R50 224 stem 112x112x64"},
        {512, 4, 4, 512, 1, "R18 CIFAR 4x4x512 +res"},
    };
    static float eps = 1e-5f, zero = 0.0f;
    double peak = peak_gbs();
    printf("## Batch norm through cuDNN (NormForward / NormBackward, bf16)\n\n");
    printf("Per call, the fastest of the plans that ran (3 warm-up, 10 timed runs). GB/s: the least traffic (each "
           "tensor read or written once: x, z, y and the mask's bits forward; dy, the mask, x, dx and dz backward) over "
           "the time; %% of %.0f GB/s. Compare bench/bn_bench.c's rows for ssl.h's own passes on the same shapes.\n\n",
           peak);
    printf("| shape | pass | form | plans ran / tried | plans built, s | ms | GB/s | %% of peak | checks (max error) | note |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    g_fp16 = 0;
    for (int si = 0; si < ns; si++) {
        const bnshape *p = &shapes[si];
        size_t nx = (size_t)p->n * p->h * p->w * p->c, nb = (nx + 7) / 8, C = (size_t)p->c;
        if (now_s() >= deadline) {
            printf("| %s | - | - | - | - | - | - | - | - | out of time (seconds=%g) |\n", p->name, seconds);
            continue;
        }
        uint16_t *hx = malloc(2 * nx), *hz = malloc(2 * nx), *hy = malloc(2 * nx), *hdy = malloc(2 * nx);
        uint8_t *hm = malloc(nb), *hm2 = malloc(nb);
        float *pc = malloc(4 * 8 * C); /* scale, bias, mean, inv, dscale, dbias, host mean, host inv */
        double *s0 = calloc(C, sizeof(double)), *s1 = calloc(C, sizeof(double));
        if (!hx || !hz || !hy || !hdy || !hm || !hm2 || !pc || !s0 || !s1) { fprintf(stderr, "cudnn_fusion: out of host memory\n"); exit(1); }
        float *sc = pc, *bi = pc + C, *me = pc + 2 * C, *iv = pc + 3 * C, *dsc = pc + 4 * C, *dbi = pc + 5 * C,
              *hme = pc + 6 * C, *hiv = pc + 7 * C;
        /* x with a per-channel offset and spread (as a convolution's output), z and dy in [-1, 1), the mask random */
        for (size_t i = 0; i < nx; i++) {
            size_t c = i % C;
            hx[i] = to_h((2 * urand() - 1) * (0.5f + (float)(c % 7) * 0.25f) + 0.1f * (float)(c % 5));
            hz[i] = to_h(2 * urand() - 1), hdy[i] = to_h(2 * urand() - 1);
        }
        for (size_t i = 0; i < nb; i++) hm[i] = (uint8_t)(urand() * 256);
        for (size_t c = 0; c < C; c++) sc[c] = 0.5f + urand(), bi[c] = urand() - 0.5f;
        for (size_t i = 0; i < nx; i++) { double v = from_h(hx[i]); s0[i % C] += v, s1[i % C] += v * v; }
        double N = (double)nx / C;
        for (size_t c = 0; c < C; c++) {
            double m = s0[c] / N, var = s1[c] / N - m * m;
            hme[c] = (float)m, hiv[c] = (float)(1.0 / sqrt(var + eps));
            s1[c] = var; /* the biased variance, from here */
        }
        void *x = NULL, *z = NULL, *y = NULL, *m = NULL, *dy = NULL, *dz = NULL, *dxv = NULL, *pcd = NULL, *ws = NULL;
        size_t ws_cap = 0;
        void **bufs_[] = {&x, &z, &y, &dy, &dz, &dxv};
        for (int i = 0; i < 6; i++) CUDA_OK(cudaMalloc(bufs_[i], 2 * nx));
        CUDA_OK(cudaMalloc(&m, nb));
        CUDA_OK(cudaMalloc(&pcd, 4 * 8 * C));
        CUDA_OK(cudaMemcpy(x, hx, 2 * nx, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(z, hz, 2 * nx, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(dy, hdy, 2 * nx, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(pcd, pc, 4 * 8 * C, cudaMemcpyHostToDevice));
        float *d = (float *)pcd;
        for (int pass = 0; pass < 2; pass++) {
            io_list il = {{0}, {0}, 0};
            g_build_s = 0;
            cudnnBackendDescriptor_t graph = NULL, best = NULL, vp = NULL;
            float ms = 0;
            int tried = 0, ran = -1, form = 0;
            g_why[0] = 0;
            if (pass == 0) {
                io_add(&il, B_X, x), io_add(&il, B_Y, y), io_add(&il, B_SCALE, d), io_add(&il, B_BIAS, d + C);
                io_add(&il, B_MEAN, d + 2 * C), io_add(&il, B_INV, d + 3 * C), io_add(&il, B_EPS, &eps);
                if (p->add) io_add(&il, B_Z, z);
                for (; form < 3 && ran <= 0; form++) {
                    io_list f = il;
                    if (form < 2) io_add(&f, B_MASK, m), io_add(&f, B_ZERO, &zero);
                    if (form) free_made();
                    if (build_bn_fwd(h, p, form, CUDNN_DATA_BFLOAT16, &graph) == 0)
                        ran = tune(h, graph, &f, &ws, &ws_cap, plans, deadline, &ms, &best, &tried);
                    if (ran > 0) il = f;
                }
                form--;
            } else {
                /* the backward from the host's mean and 1/std, and a random mask */
                CUDA_OK(cudaMemcpy(m, hm, nb, cudaMemcpyHostToDevice));
                CUDA_OK(cudaMemcpy(d + 2 * C, hme, 4 * C, cudaMemcpyHostToDevice));
                CUDA_OK(cudaMemcpy(d + 3 * C, hiv, 4 * C, cudaMemcpyHostToDevice));
                io_add(&il, B_DY, dy), io_add(&il, B_MASK, m), io_add(&il, B_X, x), io_add(&il, B_DX, dxv);
                io_add(&il, B_SCALE, d), io_add(&il, B_MEAN, d + 2 * C), io_add(&il, B_INV, d + 3 * C);
                io_add(&il, B_DSCALE, d + 4 * C), io_add(&il, B_DBIAS, d + 5 * C);
                if (p->add) io_add(&il, B_DZ, dz);
                if (build_bn_bwd(h, p, CUDNN_DATA_BFLOAT16, &graph) == 0)
                    ran = tune(h, graph, &il, &ws, &ws_cap, plans, deadline, &ms, &best, &tried);
            }
            const char *pname = pass ? (p->add ? "backward (dReLU, dz kept)" : "backward (dReLU)")
                                     : (p->add ? "forward (+z, ReLU)" : "forward (ReLU)");
            if (ran <= 0) {
                printf("| %s | %s | - | 0 / %d | %.2f | - | - | - | - | %s |\n", p->name, pname, tried, g_build_s,
                       g_why[0] ? g_why : now_s() >= deadline ? "out of time before a plan ran" : "no engine configuration");
                free_made();
                fflush(stdout);
                continue;
            }
            g_why[0] = 0;
            CUDA_OK(cudaMemset(pass ? dxv : y, 0, 2 * nx));
            cudnnStatus_t es = varpack(&il, ws, &vp) ? CUDNN_STATUS_BAD_PARAM : cudnnBackendExecute(h, best, vp);
            CUDA_OK(cudaDeviceSynchronize());
            CUDA_OK(cudaMemcpy(hy, pass ? dxv : y, 2 * nx, cudaMemcpyDeviceToHost));
            CUDA_OK(cudaMemcpy(pc, pcd, 4 * 6 * C, cudaMemcpyDeviceToHost)); /* (the host's mean and 1/std stay) */
            char checks[200];
            double bytes;
            if (pass == 0) {
                /* mean and 1/std against the host's, y at 512 points, every mask bit where the input is not within
                   1e-3 of 0 */
                double em = 0, ei = 0, ey = 0;
                long bad = 0;
                for (size_t c = 0; c < C; c++) {
                    double sd = sqrt(s1[c]);
                    em = fmax(em, fabs(me[c] - s0[c] / N) / sd), ei = fmax(ei, fabs(iv[c] * sd - 1.0));
                }
                if (form < 2) CUDA_OK(cudaMemcpy(hm2, m, nb, cudaMemcpyDeviceToHost));
                for (size_t i = 0; i < nx; i++) {
                    size_t c = i % C;
                    double pre = (from_h(hx[i]) - s0[c] / N) / sqrt(s1[c] + eps) * sc[c] + bi[c] + (p->add ? from_h(hz[i]) : 0);
                    if (form < 2 && fabs(pre) > 1e-3 && get_bit(hm2, i) != (pre > 0)) bad++;
                    if (i % (nx / 512 + 1) == 0) {
                        double ref = pre > 0 ? pre : 0;
                        ey = fmax(ey, fabs(from_h(hy[i]) - ref) / (fabs(ref) + 1e-2));
                    }
                }
                snprintf(checks, sizeof checks, "mean %.1e, 1/std %.1e, y %.1e, mask %s", em, ei, ey,
                         form < 2 ? (bad ? "WRONG" : "ok") : "-");
                if (bad) snprintf(checks + strlen(checks), sizeof checks - strlen(checks), " (%ld bits)", bad);
                bytes = nx * (p->add ? 6.0 : 4.0) + (form < 2 ? nb : 0);
            } else {
                /* dbias, dscale per channel; dx at 512 points; dz (kept) at the same points */
                double *g0 = calloc(C, sizeof(double)), *g1 = calloc(C, sizeof(double)), *a0 = calloc(C, sizeof(double)),
                       *a1 = calloc(C, sizeof(double));
                for (size_t i = 0; i < nx; i++) {
                    size_t c = i % C;
                    double g = get_bit(hm, i) ? from_h(hdy[i]) : 0, xh = (from_h(hx[i]) - hme[c]) * hiv[c];
                    g0[c] += g, g1[c] += g * xh, a0[c] += fabs(g), a1[c] += fabs(g * xh);
                }
                double eb = 0, es2 = 0, edx = 0, edz = 0;
                for (size_t c = 0; c < C; c++)
                    eb = fmax(eb, fabs(dbi[c] - g0[c]) / (a0[c] + 1e-9)), es2 = fmax(es2, fabs(dsc[c] - g1[c]) / (a1[c] + 1e-9));
                uint16_t *hdz = p->add ? malloc(2 * nx) : NULL;
                if (hdz) CUDA_OK(cudaMemcpy(hdz, dz, 2 * nx, cudaMemcpyDeviceToHost));
                for (size_t i = 0; i < nx; i += nx / 512 + 1) {
                    size_t c = i % C;
                    double g = get_bit(hm, i) ? from_h(hdy[i]) : 0, xh = (from_h(hx[i]) - hme[c]) * hiv[c];
                    double ref = sc[c] * hiv[c] * (g - g0[c] / N - xh * g1[c] / N);
                    edx = fmax(edx, fabs(from_h(hy[i]) - ref) / (fabs(ref) + 1e-2 * sc[c] * hiv[c]));
                    if (hdz) edz = fmax(edz, fabs(from_h(hdz[i]) - g));
                }
                free(hdz), free(g0), free(g1), free(a0), free(a1);
                snprintf(checks, sizeof checks, "dbias %.1e, dscale %.1e, dx %.1e", eb, es2, edx);
                if (p->add) snprintf(checks + strlen(checks), sizeof checks - strlen(checks), ", dz %.1e", edz);
                bytes = nx * (p->add ? 8.0 : 6.0) + nb;
            }
            double gbs = bytes / (ms * 1e-3) / 1e9;
            printf("| %s | %s | %s | %d / %d | %.2f | %.4f | %.0f | %.0f%% | %s | %s |\n", p->name, pname,
                   pass ? "-" : bn_forms[form], ran, tried, g_build_s, ms, gbs, peak > 0 ? 100 * gbs / peak : 0, checks,
                   es != CUDNN_STATUS_SUCCESS ? cudnnGetErrorString(es) : g_why[0] ? g_why : "");
            fflush(stdout);
            free_made();
        }
        cudaFree(x), cudaFree(z), cudaFree(y), cudaFree(m), cudaFree(dy), cudaFree(dz), cudaFree(dxv), cudaFree(pcd);
        if (ws) cudaFree(ws);
        free(hx), free(hz), free(hy), free(hdy), free(hm), free(hm2), free(pc), free(s0), free(s1);
    }
    printf("\nChecks: mean (error over the channel's std), 1/std (relative), y at 512 points (over |y| + 1e-2), "
           "the mask's bits where the ReLU's "
           "input is not within 1e-3 of 0; backward from the host's mean and 1/std and a random mask: dbias and dscale "
           "over the sums of the terms' magnitudes, dx at 512 points (over |dx| + 1e-2 scale/std), dz = dy * mask "
           "exactly. bf16 values: errors near 2^-8 (4e-3) are the rounding; 1 is wrong.\n\n");
}

static void usage(void) {
    fprintf(stderr, "usage: build/cudnn_fusion [seconds=120] [plans=6 (1-32)] [shapes=all|r18|r50] [types=both|fp16|bf16] [only=all|bn|conv]\n");
    exit(2);
}

int main(int argc, char **argv) {
    double seconds = 120;
    int plans = 6;
    const char *which = "all", *types = "both", *only = "all";
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strncmp(argv[i], "seconds=", 8)) seconds = strtod(argv[i] + 8, &end);
        else if (!strncmp(argv[i], "plans=", 6)) plans = (int)strtol(argv[i] + 6, &end, 10);
        else if (!strncmp(argv[i], "shapes=", 7)) which = argv[i] + 7;
        else if (!strncmp(argv[i], "types=", 6)) types = argv[i] + 6;
        else if (!strncmp(argv[i], "only=", 5)) only = argv[i] + 5;
        else usage();
        if (end && (end == strchr(argv[i], '=') + 1 || *end)) usage(); /* a number, and nothing after it */
    }
    if (!(seconds > 0) || plans < 1 || plans > 32 || (strcmp(which, "all") && strcmp(which, "r18") && strcmp(which, "r50")) ||
        (strcmp(types, "both") && strcmp(types, "bf16") && strcmp(types, "fp16")) ||
        (strcmp(only, "all") && strcmp(only, "bn") && strcmp(only, "conv")))
        usage();
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "cudnn_fusion: no CUDA device is visible\n");
        return 1;
    }
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    cudnnHandle_t h;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "cudnn_fusion: cudnnCreate failed\n");
        return 1;
    }
    double deadline = now_s() + seconds;
    static const shape shapes[] = { /* the most telling first: a run cut at seconds= keeps them */
        {512, 32, 32, 64, 64, 3, 3, 1, 1, "R18 CIFAR layer1 3x3"},
        {256, 56, 56, 64, 64, 3, 3, 1, 1, "R50 224 stage1 3x3"},
        {256, 56, 56, 64, 256, 1, 1, 1, 0, "R50 224 stage1 1x1 up"},
        {512, 8, 8, 256, 256, 3, 3, 1, 1, "R18 CIFAR layer3 3x3"},
        {256, 56, 56, 256, 64, 1, 1, 1, 0, "R50 224 stage1 1x1 down"},
        {512, 16, 16, 128, 128, 3, 3, 1, 1, "R18 CIFAR layer2 3x3"},
        {256, 14, 14, 256, 256, 3, 3, 1, 1, "R50 224 stage3 3x3"},
        {512, 4, 4, 512, 512, 3, 3, 1, 1, "R18 CIFAR layer4 3x3"},
    };
    printf("cuDNN %zu on %s (%d SMs)\n\n", cudnnGetVersion(), prop.name, prop.multiProcessorCount);
    if (strcmp(only, "conv")) bn_section(h, plans, strcmp(only, "bn") ? now_s() + seconds / 2 : deadline, seconds);
    if (!strcmp(only, "bn")) {
        cudnnDestroy(h);
        return 0;
    }
    printf("## Convolutions with batch norm's neighbours fused\n\n%s\n\n",
           "Times per call in ms, the fastest of the plans that ran (3 warm-up, 10 timed runs each).");
    printf("| shape | type | graph | plans ran / tried | plans built, s | ms | x the plain call | output at sampled points (max err) | "
           "sums (max rel. err) | note |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < nshapes; si++) {
        const shape *p = &shapes[si];
        if (!strcmp(which, "r18") && strncmp(p->name, "R18", 3)) continue;
        if (!strcmp(which, "r50") && strncmp(p->name, "R50", 3)) continue;
        int oh = oh_of(p), ow = ow_of(p);
        size_t nx = (size_t)p->n * p->h * p->w * p->c, nw = (size_t)p->k * p->r * p->s * p->c, ny = (size_t)p->n * oh * ow * p->k;
        /* fp16 first: cuDNN's documentation gives its ConvBNfprop and
           ConvBNwgrad pattern engines fp16 tensors only, so a run cut at
           seconds= has measured the type that can fuse; bf16 (ssl.h's)
           after it, for its rows to say whether this cuDNN fuses it at all */
        int types_n = strcmp(types, "both") ? 1 : 2;
        for (int ti = 0; ti < types_n; ti++) {
            int ty = strcmp(types, "bf16") ? (ti == 0) : 0; /* both: fp16, then bf16 */
            g_fp16 = ty;
            cudnnDataType_t io = ty ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
            /* host data: x in [-1, 1), w scaled by 1/sqrt(fan-in), scale in [0.5, 1.5), bias in [-0.5, 0.5) */
            uint16_t *hx = malloc(2 * nx), *hw = malloc(2 * nw), *hy = malloc(2 * ny), *hdy = malloc(2 * ny), *hdw = malloc(2 * nw);
            float *sc = malloc(4 * (size_t)p->c), *bi = malloc(4 * (size_t)p->c), *hs = malloc(4 * (size_t)p->k),
                  *hq = malloc(4 * (size_t)p->k);
            if (!hx || !hw || !hy || !hdy || !hdw || !sc || !bi || !hs || !hq) { fprintf(stderr, "cudnn_fusion: out of host memory\n"); return 1; }
            float wsc = 1.0f / sqrtf((float)(p->r * p->s * p->c));
            for (size_t i = 0; i < nx; i++) hx[i] = to_h(2 * urand() - 1);
            for (size_t i = 0; i < nw; i++) hw[i] = to_h((2 * urand() - 1) * wsc);
            for (int i = 0; i < p->c; i++) sc[i] = 0.5f + urand(), bi[i] = urand() - 0.5f;
            for (size_t i = 0; i < ny; i++) hdy[i] = to_h(2 * urand() - 1); /* the wgrad graphs' dy */
            bufs b = {0};
            CUDA_OK(cudaMalloc(&b.x, 2 * nx));
            CUDA_OK(cudaMalloc(&b.w, 2 * nw));
            CUDA_OK(cudaMalloc(&b.y, 2 * ny));
            CUDA_OK(cudaMalloc(&b.sum, 4 * (size_t)p->k));
            CUDA_OK(cudaMalloc(&b.sq, 4 * (size_t)p->k));
            CUDA_OK(cudaMalloc(&b.scale, 4 * (size_t)p->c));
            CUDA_OK(cudaMalloc(&b.bias, 4 * (size_t)p->c));
            CUDA_OK(cudaMemcpy(b.x, hx, 2 * nx, cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(b.w, hw, 2 * nw, cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(b.scale, sc, 4 * (size_t)p->c, cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(b.bias, bi, 4 * (size_t)p->c, cudaMemcpyHostToDevice));
            {
                uint16_t *t = malloc(4 * (size_t)p->c);
                if (!t) { fprintf(stderr, "cudnn_fusion: out of host memory\n"); return 1; }
                for (int i = 0; i < p->c; i++) t[i] = to_h(sc[i]), t[p->c + i] = to_h(bi[i]);
                CUDA_OK(cudaMalloc(&b.scale_h, 2 * (size_t)p->c));
                CUDA_OK(cudaMalloc(&b.bias_h, 2 * (size_t)p->c));
                CUDA_OK(cudaMemcpy(b.scale_h, t, 2 * (size_t)p->c, cudaMemcpyHostToDevice));
                CUDA_OK(cudaMemcpy(b.bias_h, t + p->c, 2 * (size_t)p->c, cudaMemcpyHostToDevice));
                free(t);
            }
            float conv_ms = 0, wgrad_ms = 0;
            for (int g = 0; g < G_COUNT; g++) {
                g_why[0] = 0;
                if (now_s() >= deadline) {
                    printf("| %s | %s | %s | - | - | - | - | - | - | out of time (seconds=%g) |\n", p->name, ty ? "fp16" : "bf16",
                           g_names[g], seconds);
                    continue;
                }
                cudnnBackendDescriptor_t graph = NULL, best = NULL, vp = NULL;
                float ms = 0;
                int tried = 0, ran = -1, att = 0;
                char form[48] = "";
                g_build_s = 0;
                /* sbr: scale and bias in float, the prologue's output in the
                   tensors' type; else scale and bias in that type; else the
                   output in float (the first that runs is kept) */
                if (is_wgrad(g)) CUDA_OK(cudaMemcpy(b.y, hdy, 2 * ny, cudaMemcpyHostToDevice)); /* dy */
                for (; att < (is_sbr(g) ? 3 : 1) && ran <= 0; att++) {
                    cudnnDataType_t aff = att == 1 ? io : CUDNN_DATA_FLOAT, v3 = att == 2 ? CUDNN_DATA_FLOAT : io;
                    b.aff_h = att == 1;
                    if (att) free_made();
                    io_list il = conv_io(g, &b);
                    if (build(h, p, g, io, aff, v3, &graph) == 0)
                        ran = tune(h, graph, &il, &b.ws, &b.ws_cap, plans, deadline, &ms, &best, &tried);
                }
                if (is_sbr(g) && ran > 0)
                    snprintf(form, sizeof form, "; scale, bias %s, prologue out %s", att - 1 == 1 ? "as x" : "fp32",
                             att - 1 == 2 ? "fp32" : "as x");
                if (ran <= 0) {
                    printf("| %s | %s | %s | 0 / %d | %.2f | - | - | - | - | %s |\n", p->name, ty ? "fp16" : "bf16", g_names[g], tried,
                           g_build_s,
                           g_why[0] ? g_why : now_s() >= deadline ? "out of time before a plan ran" : "no engine configuration");
                    free_made();
                    fflush(stdout);
                    continue;
                }
                g_why[0] = 0; /* (what failed on the way is not this row's result) */
                if (g == G_CONV) conv_ms = ms;
                if (g == G_WGRAD) wgrad_ms = ms;
                float base_ms = is_wgrad(g) ? wgrad_ms : conv_ms;
                /* the fastest plan once more, then its results checked */
                CUDA_OK(cudaMemset(is_wgrad(g) ? b.w : b.y, 0, is_wgrad(g) ? 2 * nw : 2 * ny));
                CUDA_OK(cudaMemset(b.sum, 0, 4 * (size_t)p->k));
                CUDA_OK(cudaMemset(b.sq, 0, 4 * (size_t)p->k));
                io_list il = conv_io(g, &b);
                cudnnStatus_t es = varpack(&il, b.ws, &vp) ? CUDNN_STATUS_BAD_PARAM : cudnnBackendExecute(h, best, vp);
                CUDA_OK(cudaDeviceSynchronize());
                CUDA_OK(cudaMemcpy(hy, b.y, 2 * ny, cudaMemcpyDeviceToHost));
                CUDA_OK(cudaMemcpy(hdw, b.w, 2 * nw, cudaMemcpyDeviceToHost));
                if (is_wgrad(g)) CUDA_OK(cudaMemcpy(b.w, hw, 2 * nw, cudaMemcpyHostToDevice)); /* W back for the forward graphs */
                CUDA_OK(cudaMemcpy(hs, b.sum, 4 * (size_t)p->k, cudaMemcpyDeviceToHost));
                CUDA_OK(cudaMemcpy(hq, b.sq, 4 * (size_t)p->k, cudaMemcpyDeviceToHost));
                /* the output at sampled points against the host, in double:
                   the forward's Y (n, y, x, k), or dW (k, r, s, c) */
                double yerr = 0;
                int att_v = att - 1; /* the sbr form kept: 0 as planned, 1 scale and bias rounded, 2 prologue out in fp32 */
                for (int t = 0; t < (is_wgrad(g) ? 64 : 512); t++) {
                    double ref = 0, sq = 0, got;
                    if (!is_wgrad(g)) {
                        int n = (int)(urand() * p->n), oy = (int)(urand() * oh), ox = (int)(urand() * ow), k = (int)(urand() * p->k);
                        for (int r = 0; r < p->r; r++)
                            for (int s2 = 0; s2 < p->s; s2++) {
                                int iy = oy * p->stride - p->pad + r, ix = ox * p->stride - p->pad + s2;
                                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                                for (int c = 0; c < p->c; c++) {
                                    double term = xin_at(p, hx, sc, bi, is_sbr(g), b.aff_h, att_v, n, iy, ix, c) *
                                                  from_h(hw[(((size_t)k * p->r + r) * p->s + s2) * p->c + c]);
                                    ref += term, sq += term * term;
                                }
                            }
                        got = from_h(hy[(((size_t)n * oh + oy) * ow + ox) * p->k + k]);
                    } else {
                        int k = (int)(urand() * p->k), r = (int)(urand() * p->r), s2 = (int)(urand() * p->s), c = (int)(urand() * p->c);
                        for (int n = 0; n < p->n; n++)
                            for (int oy = 0; oy < oh; oy++)
                                for (int ox = 0; ox < ow; ox++) {
                                    int iy = oy * p->stride - p->pad + r, ix = ox * p->stride - p->pad + s2;
                                    if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                                    double term = xin_at(p, hx, sc, bi, is_sbr(g), b.aff_h, att_v, n, iy, ix, c) *
                                                  from_h(hdy[(((size_t)n * oh + oy) * ow + ox) * p->k + k]);
                                    ref += term, sq += term * term;
                                }
                        got = from_h(hdw[(((size_t)k * p->r + r) * p->s + s2) * p->c + c]);
                    }
                    double e = fabs(got - ref) / (fabs(ref) + 1e-3 * sqrt(sq) + 1e-12);
                    if (e > yerr) yerr = e;
                }
                char sums[64] = "-";
                if (has_sums(g)) { /* each channel's sums of the Y read back, in double */
                    double serr = 0;
                    double *s0 = calloc((size_t)p->k, sizeof(double)), *s1 = calloc((size_t)p->k, sizeof(double)),
                           *sa = calloc((size_t)p->k, sizeof(double));
                    for (size_t i = 0; i < ny; i++) {
                        double v = from_h(hy[i]);
                        int k = (int)(i % (size_t)p->k);
                        s0[k] += v, s1[k] += v * v, sa[k] += fabs(v);
                    }
                    for (int k = 0; k < p->k; k++) {
                        /* Y's rounding (2^-8 of a value in bf16) is in the read-back sums, not in cuDNN's */
                        double e0 = fabs(hs[k] - s0[k]) / (sa[k] * 1e-2 + 1e-6), e1 = fabs(hq[k] - s1[k]) / (s1[k] + 1e-6);
                        if (e0 > serr) serr = e0;
                        if (e1 > serr) serr = e1;
                    }
                    snprintf(sums, sizeof sums, "%.2e", serr);
                    free(s0), free(s1), free(sa);
                }
                printf("| %s | %s | %s | %d / %d | %.2f | %.4f | %.2f | %.2e | %s | %s%s |\n", p->name, ty ? "fp16" : "bf16",
                       g_names[g], ran, tried, g_build_s, ms, base_ms > 0 ? ms / base_ms : 0, yerr, sums,
                       es != CUDNN_STATUS_SUCCESS ? cudnnGetErrorString(es) : g_why[0] ? g_why : "", form);
                fflush(stdout);
                free_made();
            }
            cudaFree(b.x), cudaFree(b.w), cudaFree(b.y), cudaFree(b.sum), cudaFree(b.sq), cudaFree(b.scale), cudaFree(b.bias);
            cudaFree(b.scale_h), cudaFree(b.bias_h);
            if (b.ws) cudaFree(b.ws);
            free(hx), free(hw), free(hy), free(hdy), free(hdw), free(sc), free(bi), free(hs), free(hq);
        }
    }
    printf("\nOutput error: |cuDNN - host| / (|host| + 1e-3 sqrt(sum of the terms' squares)), the largest over 512 "
           "sampled values of Y (forward graphs) or 64 of dW (wgrad graphs); the host sums in double over the same "
           "rounded inputs, so about 2^-8 (the output's bf16 rounding) is right, 1 is wrong. Sums: the sum's error over "
           "1e-2 of the sum of |Y|, and the sum of squares' relative error, against the host's sums of the Y read back "
           "(rounded to the type). sbr: relu(x scale + bias) applied as the input is loaded. x the plain call: the time "
           "over the convolution alone (forward graphs) or the weight gradient alone (wgrad graphs).\n");
    cudnnDestroy(h);
    return 0;
}
