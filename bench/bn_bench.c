/* bn_bench.c - batch norm's passes alone on a GPU, on the shapes of the
   benchmark steps: what each pass takes and how near the memory's
   bandwidth it runs, per shape, in one short device call.

     build/bn_bench                       every preset, every shape
     build/bn_bench presets=r18_32 reps=20
     build/bn_bench emulate=1 bs=2        the program itself on the host (tiny)

   For each preset (the batch norms of ResNet-50 at 224 and 160, batch 256,
   and ResNet-18 with the CIFAR stem at 32, batch 512, bf16 activations, as
   bench/gpu_step.c runs them: training, the ReLU's mask as bits, the
   residual added in the last batch norm of each block), every layer
   shape's forward and backward run
   `reps` times under the profiler; the profile's rows give each pass's
   device time. Per step is per shape's time x its layers x 2 views. The
   bytes are the profile's (each tensor read or written once: the least
   each pass must move).
   Writes markdown to stdout. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

typedef struct {
    char presets[SSL_STR];
    int64_t reps, bs, emulate;
    double peak_gbs;
} bench_cfg;
static const ssl_opt OPTS[] = {
    SSL_OPT_S(bench_cfg, presets, "r50_224,r50_160,r18_32", "which steps' batch norms (r50_224, r50_160, r18_32)"),
    SSL_OPT_I(bench_cfg, reps, "5", 1, 1000, "timed calls per shape and pass"),
    SSL_OPT_I(bench_cfg, bs, "0", 0, 1 << 16, "batch size (0: each preset's)"),
    SSL_OPT_I(bench_cfg, emulate, "0", 0, 1, "run ssl.cu's emulation on the host (use a tiny bs)"),
    SSL_OPT_F(bench_cfg, peak_gbs, "0", 0, 1e5, "memory bandwidth for the % column (0: the device's own)"),
};
#define NOPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

/* one batch norm shape of a step: side x side x c, how many such layers a
   view has, and what is fused into it */
enum { PLAIN, RELU, RES_RELU };
typedef struct {
    int side, c, layers, kind;
} bn_shape;
typedef struct {
    const char *name;
    int bs;
    bn_shape s[24];
    int n;
} preset;

/* torchvision's ResNet-50 (the stride in the 3x3): the stem's batch norm,
   then per stage the first block's 1x1 at the stage's input size, the
   others', the 3x3s, the expanding 1x1s (+ residual) and the downsample's */
static void r50(preset *p, int res) {
    int s0 = (res - 1) / 2 + 1, s = (s0 - 1) / 2 + 1; /* the stem's convolution, then the max pool */
    int blocks[4] = {3, 4, 6, 3};
    p->n = 0;
    p->s[p->n++] = (bn_shape){s0, 64, 1, RELU};
    for (int st = 0; st < 4; st++) {
        int w = 64 << st, in = s, out = st ? (s - 1) / 2 + 1 : s;
        p->s[p->n++] = (bn_shape){in, w, 1, RELU}; /* the first block's 1x1, before the stride */
        if (blocks[st] > 1) p->s[p->n++] = (bn_shape){out, w, blocks[st] - 1, RELU};
        p->s[p->n++] = (bn_shape){out, w, blocks[st], RELU};
        p->s[p->n++] = (bn_shape){out, 4 * w, blocks[st], RES_RELU};
        p->s[p->n++] = (bn_shape){out, 4 * w, 1, PLAIN}; /* the downsample */
        s = out;
    }
}
/* ResNet-18, the CIFAR stem (3x3, stride 1, no max pool) */
static void r18_cifar(preset *p, int res) {
    p->n = 0;
    p->s[p->n++] = (bn_shape){res, 64, 1, RELU};
    int s = res;
    for (int st = 0; st < 4; st++) {
        int w = 64 << st, out = st ? (s - 1) / 2 + 1 : s;
        p->s[p->n++] = (bn_shape){out, w, 2, RELU};
        p->s[p->n++] = (bn_shape){out, w, 2, RES_RELU};
        if (st) p->s[p->n++] = (bn_shape){out, w, 1, PLAIN};
        s = out;
    }
}

/* the profile's rows for a batch norm, in the order printed */
enum { F_STATS, F_GROUPS, F_APPLY, B_STATS, B_GROUPS, B_DX, NPASS };
static const char *const pass_name[NPASS] = {"fwd stats", "fwd groups", "fwd out", "bwd stats", "bwd groups", "bwd dx"};
static void pass_times(double ms[NPASS], double gb[NPASS]) {
    static const char *const rows[][3] = { /* (through cuDNN, a call is one row: its "out" and "dx" columns) */
        {"BN statistics (forward)", NULL},
        {"BN statistics (forward): groups, finish", NULL},
        {"BN forward (+add, ReLU)", "BN forward", "BN forward through cuDNN"},
        {"BN statistics (backward)", NULL},
        {"BN statistics (backward): groups, finish", NULL},
        {"BN backward (ReLU)", "BN backward", "BN backward through cuDNN"},
    };
    for (int k = 0; k < NPASS; k++) {
        ms[k] = gb[k] = 0;
        for (int j = 0; j < 3 && rows[k][j]; j++) {
            double m, b;
            ssl_cuda_profile_kind(rows[k][j], &m, &b, NULL);
            ms[k] += m, gb[k] += b / 1e9;
        }
    }
}

static uint64_t rng_state = 88172645463325252ull;
static float rnd(float lo, float hi) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)(rng_state >> 40) / (float)(1 << 24);
}
/* n bf16 values in [lo, hi) on the device */
static void *dev_bf16(size_t n, float lo, float hi) {
    ssl_bf16 *h = (ssl_bf16 *)ssl_malloc(sizeof(ssl_bf16) * n, "bf16 staging");
    for (size_t i = 0; i < n; i++) h[i] = ssl_bf16_from_float(rnd(lo, hi));
    void *d = ssl_cuda_malloc(sizeof(ssl_bf16) * n, "bn_bench tensor");
    ssl_cuda_to_device(d, h, sizeof(ssl_bf16) * n);
    free(h);
    return d;
}
static ssl_tensor dev_tensor(void *data, int n, int side, int c, ssl_dtype dt) {
    ssl_tensor t = ssl_tensor_as(ssl_tensor_make((float *)data, 4, n, side, side, c), dt);
    t.device = SSL_DEV_CUDA;
    return t;
}

typedef struct {
    void *x, *res, *y, *dy, *dx, *mask;
    float *par; /* gamma, beta, running mean, running var, mean, invstd, dgamma, dbeta: 8 x 2048 */
} buffers;

/* one shape's forward and backward, reps times each, under the profiler:
   each pass's ms per call into ms[] (and GB per call into gb[]) */
static int run_shape(const buffers *b, int bs, const bn_shape *s, int reps, double ms[NPASS], double gb[NPASS]) {
    int c = s->c;
    ssl_tensor x = dev_tensor(b->x, bs, s->side, c, SSL_BF16), res = dev_tensor(b->res, bs, s->side, c, SSL_BF16);
    ssl_tensor y = dev_tensor(b->y, bs, s->side, c, SSL_BF16), dy = dev_tensor(b->dy, bs, s->side, c, SSL_BF16);
    ssl_tensor dx = dev_tensor(b->dx, bs, s->side, c, SSL_BF16);
    int64_t nb = (ssl_tensor_numel(&x) + 7) / 8;
    ssl_tensor mask = ssl_tensor_as(ssl_tensor_vec((float *)b->mask, nb), SSL_U8);
    mask.device = SSL_DEV_CUDA;
    ssl_tensor p[8];
    for (int k = 0; k < 8; k++) {
        p[k] = ssl_tensor_vec(b->par + (size_t)k * 2048, c);
        p[k].device = SSL_DEV_CUDA;
    }
    ssl_batchnorm bn = ssl_batchnorm_default();
    bn.weight = p[0], bn.bias = p[1], bn.running_mean = p[2], bn.running_var = p[3];
    ssl_cuda_profile(1);
    for (int r = 0; r < reps; r++) {
        int rc = s->kind == PLAIN ? ssl_batchnorm_forward_act(&bn, 1, &x, NULL, 0, &y, &p[4], &p[5])
                                  : ssl_batchnorm_forward_mask(&bn, 1, &x, s->kind == RES_RELU ? &res : NULL, &y, &p[4], &p[5], &mask);
        if (rc) return -1;
    }
    for (int r = 0; r < reps; r++) { /* the residual block's output gradient stored in place, as the model does */
        int rc = s->kind == PLAIN ? ssl_batchnorm_backward_act(&bn, 1, &x, NULL, &dy, &p[4], &p[5], &dx, &p[6], &p[7])
                 : s->kind == RELU ? ssl_batchnorm_backward_act(&bn, 1, &x, &mask, &dy, &p[4], &p[5], &dx, &p[6], &p[7])
                                   : ssl_batchnorm_backward_ex(&bn, 1, &x, &mask, &dy, &p[4], &p[5], &dx, &p[6], &p[7], &dy);
        if (rc) return -1;
    }
    pass_times(ms, gb);
    ssl_cuda_profile(0);
    for (int k = 0; k < NPASS; k++) ms[k] /= reps, gb[k] /= reps;
    return 0;
}

int main(int argc, char **argv) {
    bench_cfg cfg;
    ssl_config_defaults(OPTS, NOPTS, &cfg);
    if (ssl_config_parse(OPTS, NOPTS, &cfg, argc - 1, argv + 1, NULL, 0, NULL)) {
        fprintf(stderr, "bn_bench: %s\n", ssl_last_error());
        return 1;
    }
    if (cfg.emulate) ssl_cuda_set_emulation(1);
    else if (ssl_cuda_device_count() < 1) {
        fprintf(stderr, "bn_bench: no CUDA device is visible (emulate=1 runs the code on the host)\n");
        return 1;
    }
    double peak = cfg.peak_gbs > 0 ? cfg.peak_gbs : cfg.emulate ? 3350 : ssl_cuda_peak_gbs(0);
    char dev[256] = "emulation on the host";
    if (!cfg.emulate) ssl_cuda_describe(0, dev, sizeof dev);

    preset ps[3];
    int np = 0;
    for (char *tok = strtok(cfg.presets, ","); tok && np < 3; tok = strtok(NULL, ",")) {
        preset *p = &ps[np];
        if (!strcmp(tok, "r50_224")) r50(p, 224), p->bs = 256;
        else if (!strcmp(tok, "r50_160")) r50(p, 160), p->bs = 256;
        else if (!strcmp(tok, "r18_32")) r18_cifar(p, 32), p->bs = 512;
        else { fprintf(stderr, "bn_bench: preset \"%s\": want r50_224, r50_160 or r18_32\n", tok); return 1; }
        p->name = tok;
        if (cfg.bs) p->bs = (int)cfg.bs;
        np++;
    }
    size_t most = 0;
    for (int i = 0; i < np; i++)
        for (int j = 0; j < ps[i].n; j++) {
            size_t n = (size_t)ps[i].bs * ps[i].s[j].side * ps[i].s[j].side * ps[i].s[j].c;
            if (n > most) most = n;
        }
    buffers b;
    b.x = dev_bf16(most, -1, 3), b.res = dev_bf16(most, -1, 1), b.dy = dev_bf16(most, -1, 1);
    b.y = ssl_cuda_malloc(2 * most, "y"), b.dx = ssl_cuda_malloc(2 * most, "dx"), b.mask = ssl_cuda_malloc(most / 8 + 16, "mask");
    float par[8 * 2048];
    for (int k = 0; k < 8 * 2048; k++) par[k] = k < 2048 ? rnd(0.5f, 1.5f) : k < 3 * 2048 ? rnd(-1, 1) : k < 4 * 2048 ? 1.0f : 0.0f;
    b.par = (float *)ssl_cuda_malloc(sizeof par, "BN parameters");
    ssl_cuda_to_device(b.par, par, sizeof par);

    printf("# Batch norm's passes alone (`build/bn_bench`)\n\n%s, %.0f GB/s peak, %d timed calls per shape and pass, bf16 activations, training.\n\n",
           dev, peak, (int)cfg.reps);
    for (int pi = 0; pi < np; pi++) {
        const preset *p = &ps[pi];
        printf("## %s, batch %d: batch norm per step (two views)\n\n", p->name, p->bs);
        printf("|");
        for (int k = 0; k < NPASS; k++) printf(" %s ms |", pass_name[k]);
        printf(" total ms | GB/s of the passes over the tensors |\n|");
        for (int k = 0; k < NPASS + 2; k++) printf("---|");
        printf("\n");
        static double shape_ms[24][NPASS], shape_gb[24][NPASS];
        double tot[NPASS] = {0}, bytes = 0, tensor_ms = 0;
        /* a warm-up call of each shape first (first-use work out of the timing) */
        for (int s = 0; s < p->n; s++) {
            if (run_shape(&b, p->bs, &p->s[s], 1, shape_ms[s], shape_gb[s]) ||
                run_shape(&b, p->bs, &p->s[s], (int)cfg.reps, shape_ms[s], shape_gb[s])) {
                fprintf(stderr, "bn_bench: %s\n", ssl_last_error());
                return 1;
            }
            for (int k = 0; k < NPASS; k++) {
                double per_step = shape_ms[s][k] * p->s[s].layers * 2;
                tot[k] += per_step;
                if (k != F_GROUPS && k != B_GROUPS) bytes += shape_gb[s][k] * p->s[s].layers * 2, tensor_ms += per_step;
            }
        }
        double all = 0;
        printf("|");
        for (int k = 0; k < NPASS; k++) printf(" %.3f |", tot[k]), all += tot[k];
        printf(" **%.3f** | %.0f (%.0f%%) |\n\n", all, tensor_ms > 0 ? bytes / (tensor_ms / 1e3) : 0,
               tensor_ms > 0 ? 100 * bytes / (tensor_ms / 1e3) / peak : 0);
        printf("Per shape (us a call; %% of %.0f GB/s):\n\n", peak);
        printf("| side x side x c | layers/view | kind |");
        for (int k = 0; k < NPASS; k++) printf(" %s |", pass_name[k]);
        printf("\n|---|---|---|");
        for (int k = 0; k < NPASS; k++) printf("---|");
        printf("\n");
        for (int s = 0; s < p->n; s++) {
            const bn_shape *q = &p->s[s];
            printf("| %dx%dx%d | %d | %s |", q->side, q->side, q->c, q->layers,
                   q->kind == PLAIN ? "plain" : q->kind == RELU ? "ReLU" : "+res, ReLU");
            for (int k = 0; k < NPASS; k++) {
                double m = shape_ms[s][k];
                if (k == F_GROUPS || k == B_GROUPS) printf(" %.1f |", 1e3 * m);
                else printf(" %.1f (%.0f%%) |", 1e3 * m, m > 0 ? 100 * shape_gb[s][k] / (m / 1e3) / peak : 0);
            }
            printf("\n");
        }
        printf("\n");
    }
    ssl_cuda_free(b.x), ssl_cuda_free(b.res), ssl_cuda_free(b.dy), ssl_cuda_free(b.y), ssl_cuda_free(b.dx);
    ssl_cuda_free(b.mask), ssl_cuda_free(b.par);
    return 0;
}
