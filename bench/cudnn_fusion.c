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

   For each of a few convolution shapes of the headline steps (ResNet-50 at
   224, batch 256; ResNet-18 CIFAR, batch 512), in bf16 and fp16, and each
   graph:
     conv              X -> conv -> Y                      (the baseline)
     conv+stats        ... then GenStats(Y) -> sum, sum of squares
     conv+reduce       ... then Reduction(add) of Y and of Y*Y
     sbr+conv+stats    relu(X * scale + bias) -> conv -> GenStats
     wgrad             dW from X and dY                    (the baseline)
     sbr+wgrad         dW from relu(X * scale + bias) and dY: the backward
                       then needs no stored normalized tensor
   it builds the operation graph, asks the heuristics (mode A, then
   fallback) for engine configurations, finalizes a plan for each (up to
   PLANS), times each (3 warm-up and 10 timed runs, CUDA events) and keeps
   the fastest. It checks the fastest plan's results: Y at 512 sampled
   points (dW at 64) against a double-precision sum on the host (over the
   prologue's output, for sbr), and every channel's sum and sum of squares
   against the host's sums of the Y it read back. A row says what failed
   where nothing ran.

     build/cudnn_fusion [seconds=120] [plans=6] [shapes=all|r18|r50] [types=both|bf16]

   Writes a markdown table on stdout; one row per shape, type and graph. */
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

/* an NHWC tensor of logical dims n, c, h, w (a filter: k, c, r, s, KRSC) */
static int tensor(cudnnBackendDescriptor_t *t, int64_t uid, cudnnDataType_t dt, int64_t n, int64_t c, int64_t h,
                  int64_t w, bool virt) {
    int64_t dims[4] = {n, c, h, w}, str[4] = {h * w * c, 1, w * c, c}, align = 16;
    NEW(*t, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    SET(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    SET(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SET(*t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str);
    SET(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    SET(*t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    TRY(cudnnBackendFinalize(*t));
    return 0;
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
    NEW(*graph, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    TRY(cudnnBackendFinalize(*graph));
    return 0;
}

/* the device buffers of one shape and type */
typedef struct {
    void *x, *w, *y, *sum, *sq, *scale, *bias, *scale_h, *bias_h, *ws;
    size_t ws_cap;
    int aff_h; /* sbr: scale and bias in the tensors' type (scale_h, bias_h), else float */
} bufs;

/* the variant pack of graph kind g over b's buffers */
static int varpack(int g, const bufs *b, cudnnBackendDescriptor_t *vp) {
    int64_t uids[8] = {U_X, U_W, U_Y};
    void *ptrs[8] = {b->x, b->w, b->y}, *ws = b->ws;
    int nu = 3;
    if (has_sums(g)) uids[nu] = U_SUM, ptrs[nu++] = b->sum, uids[nu] = U_SQ, ptrs[nu++] = b->sq;
    if (is_sbr(g)) {
        uids[nu] = U_SCALE, ptrs[nu++] = b->aff_h ? b->scale_h : b->scale;
        uids[nu] = U_BIAS, ptrs[nu++] = b->aff_h ? b->bias_h : b->bias;
    }
    NEW(*vp, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, nu, uids);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, nu, ptrs);
    SET(*vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    TRY(cudnnBackendFinalize(*vp));
    return 0;
}

/* engine configurations for graph (mode A, then fallback), plans finalized
   (at most plans), each timed; the fastest plan's time into *ms and the
   plan into *best (its workspace fits in b->ws, which only grows). Returns
   the count of plans that ran, or -1. */
static int tune(cudnnHandle_t h, cudnnBackendDescriptor_t graph, int g, bufs *b, int plans, double deadline, float *ms,
                cudnnBackendDescriptor_t *best, int *tried) {
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
            cudnnStatus_t fs = cudnnBackendFinalize(plan);
            if (fs != CUDNN_STATUS_SUCCESS) {
                if (!g_why[0]) snprintf(g_why, sizeof g_why, "plan finalize: %s", cudnnGetErrorString(fs));
                continue;
            }
            int64_t wsz = 0, cnt = 0;
            TRY(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &cnt, &wsz));
            if ((size_t)wsz > b->ws_cap) {
                void *nw = NULL;
                if (cudaMalloc(&nw, (size_t)wsz) != cudaSuccess) { /* too big: the next configuration */
                    (void)cudaGetLastError();
                    continue;
                }
                if (b->ws) CUDA_OK(cudaFree(b->ws));
                b->ws = nw, b->ws_cap = (size_t)wsz;
            }
            if (varpack(g, b, &vp)) return -1;
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

static void usage(void) {
    fprintf(stderr, "usage: build/cudnn_fusion [seconds=120] [plans=6 (1-32)] [shapes=all|r18|r50] [types=both|bf16]\n");
    exit(2);
}

int main(int argc, char **argv) {
    double seconds = 120;
    int plans = 6;
    const char *which = "all", *types = "both";
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strncmp(argv[i], "seconds=", 8)) seconds = strtod(argv[i] + 8, &end);
        else if (!strncmp(argv[i], "plans=", 6)) plans = (int)strtol(argv[i] + 6, &end, 10);
        else if (!strncmp(argv[i], "shapes=", 7)) which = argv[i] + 7;
        else if (!strncmp(argv[i], "types=", 6)) types = argv[i] + 6;
        else usage();
        if (end && (end == strchr(argv[i], '=') + 1 || *end)) usage(); /* a number, and nothing after it */
    }
    if (!(seconds > 0) || plans < 1 || plans > 32 || (strcmp(which, "all") && strcmp(which, "r18") && strcmp(which, "r50")) ||
        (strcmp(types, "both") && strcmp(types, "bf16")))
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
    printf("cuDNN %zu on %s (%d SMs), %s\n\n", cudnnGetVersion(), prop.name, prop.multiProcessorCount,
           "times per call in ms, the fastest of the plans that ran (3 warm-up, 10 timed runs each)");
    printf("| shape | type | graph | plans ran / tried | ms | x the plain call | output at sampled points (max err) | sums (max rel. err) | note |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < nshapes; si++) {
        const shape *p = &shapes[si];
        if (!strcmp(which, "r18") && strncmp(p->name, "R18", 3)) continue;
        if (!strcmp(which, "r50") && strncmp(p->name, "R50", 3)) continue;
        int oh = oh_of(p), ow = ow_of(p);
        size_t nx = (size_t)p->n * p->h * p->w * p->c, nw = (size_t)p->k * p->r * p->s * p->c, ny = (size_t)p->n * oh * ow * p->k;
        for (int ty = 0; ty < (strcmp(types, "bf16") ? 2 : 1); ty++) {
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
                    printf("| %s | %s | %s | - | - | - | - | - | out of time (seconds=%g) |\n", p->name, ty ? "fp16" : "bf16",
                           g_names[g], seconds);
                    continue;
                }
                cudnnBackendDescriptor_t graph = NULL, best = NULL, vp = NULL;
                float ms = 0;
                int tried = 0, ran = -1, att = 0;
                char form[48] = "";
                /* sbr: scale and bias in float, the prologue's output in the
                   tensors' type; else scale and bias in that type; else the
                   output in float (the first that runs is kept) */
                if (is_wgrad(g)) CUDA_OK(cudaMemcpy(b.y, hdy, 2 * ny, cudaMemcpyHostToDevice)); /* dy */
                for (; att < (is_sbr(g) ? 3 : 1) && ran <= 0; att++) {
                    cudnnDataType_t aff = att == 1 ? io : CUDNN_DATA_FLOAT, v3 = att == 2 ? CUDNN_DATA_FLOAT : io;
                    b.aff_h = att == 1;
                    if (att) free_made();
                    if (build(h, p, g, io, aff, v3, &graph) == 0) ran = tune(h, graph, g, &b, plans, deadline, &ms, &best, &tried);
                }
                if (is_sbr(g) && ran > 0)
                    snprintf(form, sizeof form, "; scale, bias %s, prologue out %s", att - 1 == 1 ? "as x" : "fp32",
                             att - 1 == 2 ? "fp32" : "as x");
                if (ran <= 0) {
                    printf("| %s | %s | %s | 0 / %d | - | - | - | - | %s |\n", p->name, ty ? "fp16" : "bf16", g_names[g], tried,
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
                cudnnStatus_t es = varpack(g, &b, &vp) ? CUDNN_STATUS_BAD_PARAM : cudnnBackendExecute(h, best, vp);
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
                printf("| %s | %s | %s | %d / %d | %.4f | %.2f | %.2e | %s | %s%s |\n", p->name, ty ? "fp16" : "bf16", g_names[g],
                       ran, tried, ms, base_ms > 0 ? ms / base_ms : 0, yerr, sums,
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
