/* train.c - ./train METHOD key=value ...: self-supervised pretraining.

     ./train simclr data=train.ssl bs=256 lr=1.0 tau=0.15
     ./train simclr bs=256 lr=1.0 tau=0.15   (no data=: Fashion-MNIST, packed once into a cache)
     ./train byol data=train.ssl predictor=4096-256 epochs=100
     ./train simclr resume=runs/a            (continues exactly where it stopped)
     ./train simclr lr=0.3,0.6 tau=0.1,0.2 out=runs/g   (a grid: every combination, one run each;
                                              see the grid section above main)
     ./train simclr negatives=patch           (Instance-SimCLR: each image's only negative a patch of it)
     ./train help                             (every option)

   METHOD is simclr, vicreg, barlow or byol. Every option comes from the one
   table below; the run prints its configuration, a progress line every
   log_every steps (epoch, step, loss, online-probe top-1, images/s, ETA),
   and writes OUT/log.jsonl (one JSON object per line: the config, then the
   progress records, then the evaluation). OUT/ckpt.sslt holds everything
   needed to continue (weights, buffers, optimizer state, probe, step, the
   loader position, the config as meta text); it is written atomically
   every ckpt_every epochs, at the end, and on SIGINT/SIGTERM, after which
   the program exits 0. A NaN/Inf loss stops the run (exit 1) naming the
   step and the last good checkpoint, which is left as it was. With `val`,
   the end of the run evaluates the backbone (eval-mode BN, the whole
   image): kNN top-1 (k=knn_k, cosine, weighted votes) using up to
   knn_train training images as the memory bank, and the online probe's
   top-1. epochs=0 evaluates the freshly initialised network.

   MANY RANKS: `mpirun -np N ./train ...` or `srun ./train ...` (a build
   with MPI). bs stays the global batch: each rank takes bs/N of every
   batch, one GPU per rank by its local rank; losses, batch norm
   (sync_bn) and the gradients see the global batch, so the results are
   those of one rank up to float rounding. Rank 0 prints, logs and writes
   the checkpoint (which resumes at any world size); a SIGTERM to any rank
   checkpoints once and every rank exits 0; an error on any rank stops all
   (MPI_Abort), and a collective that waits longer than `watchdog` seconds
   (a rank died or hangs) does too. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

#include <signal.h>
#include <sys/stat.h>
#include <errno.h>
#include <ctype.h>

typedef struct {
    char method[SSL_STR], data[SSL_STR], val[SSL_STR];
    char arch[SSL_STR], stem[SSL_STR];
    double width;
    int zero_init;
    char projector[SSL_STR], predictor[SSL_STR];
    double tau, sim, std, cov, lambd, ema;
    char optimizer[SSL_STR];
    double lr;
    int lr_scale;
    double wd, momentum, eta, warmup, end_lr;
    int64_t epochs, bs;
    char views[SSL_STR], order[SSL_STR];
    double scale_min, scale_max, flip_p, jitter_p, gray_p, blur_p, solarize_p, noise_p;
    int64_t res, res_start, res_end, ramp_start, ramp_end;
    int64_t seed, threads, loader_threads;
    char device[SSL_STR], precision[SSL_STR], conv[SSL_STR], keep_cols[SSL_STR], out[SSL_STR], resume[SSL_STR];
    char dump_views[SSL_STR];
    int64_t ckpt_every, log_every, max_steps, split;
    int64_t parallel; /* a grid's */
    char negatives[SSL_STR];
    double patch_scale;
    int force;
    char probe_optim[SSL_STR];
    double probe_lr;
    int64_t knn_k, knn_train;
    int64_t sync_bn;
    double watchdog;
} train_cfg;

#define C train_cfg
static const ssl_opt OPTS[] = {
    SSL_OPT_C(C, method, "simclr", "simclr|vicreg|barlow|byol", "the method (also the first word: ./train simclr ...)"),
    SSL_OPT_S(C, data, "", "training pack (.ssl, made by ./pack)"),
    SSL_OPT_S(C, val, "", "validation pack: kNN and probe top-1 at the end ('' = none)"),
    SSL_OPT_C(C, arch, "resnet18", "resnet18|resnet34|resnet50", "backbone"),
    SSL_OPT_C(C, stem, "cifar", "cifar|imagenet", "cifar: 3x3 stride-1 conv, no max pool; imagenet: 7x7/2 conv + max pool"),
    SSL_OPT_F(C, width, "1", 0.015625, 64, "width multiplier: base width 64*width"),
    SSL_OPT_B(C, zero_init, "0", "zero-init each residual block's last BN gamma"),
    SSL_OPT_S(C, projector, "2048-2048-128", "projector MLP widths (Linear-BN-ReLU ..., Linear); '' = none"),
    SSL_OPT_S(C, predictor, "", "BYOL predictor widths (byol default: 4096-D, D the projector's output)"),
    SSL_OPT_F(C, tau, "0.15", 1e-4, 100, "SimCLR temperature"),
    SSL_OPT_C(C, negatives, "batch", "batch|patch", "SimCLR's negatives: the batch's other images, or patch: Instance-SimCLR (each image's only negative a small patch of it; views=noise)"),
    SSL_OPT_F(C, patch_scale, "0.1", 0.001, 1, "Instance-SimCLR: the patch's area, a fraction of the image's"),
    SSL_OPT_F(C, sim, "25", 0, 1e6, "VICReg invariance coefficient"),
    SSL_OPT_F(C, std, "25", 0, 1e6, "VICReg variance coefficient"),
    SSL_OPT_F(C, cov, "1", 0, 1e6, "VICReg covariance coefficient"),
    SSL_OPT_F(C, lambd, "0.0051", 0, 1e6, "Barlow Twins off-diagonal weight"),
    SSL_OPT_F(C, ema, "0.996", 0, 1, "BYOL target momentum at step 0 (cosine to 1)"),
    SSL_OPT_C(C, optimizer, "lars", "lars|sgd|adamw", "optimizer (LARS/SGD exclude biases and BN from decay)"),
    SSL_OPT_F(C, lr, "0.3", 0, 1e4, "base learning rate"),
    SSL_OPT_B(C, lr_scale, "1", "scale lr by bs/256"),
    SSL_OPT_F(C, wd, "1e-6", 0, 10, "weight decay"),
    SSL_OPT_F(C, momentum, "0.9", 0, 1, "SGD/LARS momentum, AdamW beta1"),
    SSL_OPT_F(C, eta, "0.001", 0, 10, "LARS trust coefficient"),
    SSL_OPT_F(C, warmup, "10", 0, 1e6, "linear warmup, epochs (fractions allowed)"),
    SSL_OPT_F(C, end_lr, "0.001", 0, 1, "cosine decays to lr * end_lr"),
    SSL_OPT_I(C, epochs, "100", 0, 1 << 20, "epochs (0: evaluate the initial network)"),
    SSL_OPT_I(C, bs, "256", 2, 1 << 20, "batch size (images; each gives two views)"),
    SSL_OPT_C(C, views, "simclr", "simclr|byol|crop_gray|crop_flip|noise", "view recipe preset"),
    SSL_OPT_C(C, order, "random", "random|quasi|sequential", "epoch order"),
    SSL_OPT_F(C, scale_min, "-1", -1, 1, "override: RandomResizedCrop min scale (-1 = preset's)"),
    SSL_OPT_F(C, scale_max, "-1", -1, 1, "override: RandomResizedCrop max scale"),
    SSL_OPT_F(C, flip_p, "-1", -1, 1, "override: flip probability"),
    SSL_OPT_F(C, jitter_p, "-1", -1, 1, "override: colour jitter probability"),
    SSL_OPT_F(C, gray_p, "-1", -1, 1, "override: grayscale probability"),
    SSL_OPT_F(C, blur_p, "-1", -1, 1, "override: Gaussian blur probability"),
    SSL_OPT_F(C, solarize_p, "-1", -1, 1, "override: solarization probability"),
    SSL_OPT_F(C, noise_p, "-1", -1, 1, "override: Gaussian noise probability"),
    SSL_OPT_I(C, res, "32", 8, 4096, "view resolution (when res_start is 0)"),
    SSL_OPT_I(C, res_start, "0", 0, 4096, "progressive resolution: start (0 = off)"),
    SSL_OPT_I(C, res_end, "0", 0, 4096, "progressive resolution: end"),
    SSL_OPT_I(C, ramp_start, "0", 0, 1 << 20, "progressive resolution: first epoch of the ramp"),
    SSL_OPT_I(C, ramp_end, "0", 0, 1 << 20, "progressive resolution: epoch the ramp ends (res multiple of 8)"),
    SSL_OPT_I(C, seed, "0", 0, 1LL << 62, "seed of every random choice (init, order, views)"),
    SSL_OPT_I(C, threads, "0", 0, 1024, "compute threads (0 = all cores)"),
    SSL_OPT_I(C, loader_threads, "0", 0, 1024, "loader worker threads (0 = all cores)"),
    SSL_OPT_C(C, device, "auto", "auto|cpu|cuda", "where the step runs (auto: the GPU when there is one)"),
    SSL_OPT_C(C, precision, "bf16", "bf16|fp32", "GPU: bf16 activations and GEMM operands (fp32 weights and statistics), or fp32 throughout"),
    SSL_OPT_C(C, conv, "gemm", "gemm|cudnn", "GPU: convolutions through im2col + cuBLAS, or cuDNN's kernels (a make CUDNN=1 build; bit-reproducible only within a process: its algorithms are picked by timing)"),
    SSL_OPT_C(C, keep_cols, "auto", "auto|yes|no", "GPU: keep the convolutions' im2col columns from forward to backward (no im2col in the backward; auto: when the plan fits in 3/4 of the GPU's memory)"),
    SSL_OPT_S(C, out, "runs/last", "output directory (log.jsonl, ckpt.sslt)"),
    SSL_OPT_S(C, resume, "", "continue the run in this directory (its config; options given here override)"),
    SSL_OPT_I(C, parallel, "1", 1, 1024, "grid: cells run at once on this machine (the cores shared among them)"),
    SSL_OPT_B(C, force, "0", "grid: run a grid of more than 256 cells"),
    SSL_OPT_I(C, ckpt_every, "10", 0, 1 << 20, "checkpoint every N epochs (and at the end; 0 = end only)"),
    SSL_OPT_I(C, log_every, "50", 1, 1 << 30, "progress line and log record every N steps"),
    SSL_OPT_B(C, split, "0", "GPU: wait for the device after each phase of the step, so the progress line's fwd/loss/bwd/opt shares are device time (slower; without it they are left out)"),
    SSL_OPT_I(C, max_steps, "0", 0, 1LL << 40, "stop (with a checkpoint) after this many steps in all (0 = no limit; not carried over by resume)"),
    SSL_OPT_C(C, probe_optim, "adamw", "adamw|sgd", "optimizer of the online linear probe"),
    SSL_OPT_F(C, probe_lr, "1e-3", 0, 100, "online probe learning rate (constant)"),
    SSL_OPT_I(C, knn_k, "20", 1, 10000, "kNN evaluation: neighbours"),
    SSL_OPT_I(C, knn_train, "10000", 1, 1LL << 40, "kNN evaluation: training images in the memory bank"),
    SSL_OPT_S(C, dump_views, "", "parity checks: write every step's two views and labels to this .sslt file at the end "
                                 "(step.K.view0, step.K.view1 [n,h,w,3] float32 as the step got them, step.K.labels int32; "
                                 "held in memory until then: short runs only; not carried over by resume; bench/ref_train.py views_from= reads it)"),
    SSL_OPT_I(C, sync_bn, "-1", -1, 1, "many ranks: batch norm with the global batch's statistics (-1: 1 when there are several ranks)"),
    SSL_OPT_F(C, watchdog, "300", 0, 1e7, "many ranks: seconds a collective may wait for the others (on GPUs: a whole step may take) before every rank is stopped (0: forever)"),
};
#undef C
#define NOPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

/* the ranks of this run (a world of one without a launcher) */
static ssl_comm g_comm;

/* An error: one rank's stops them all (the others would wait for it). */
static int die(const char *what) {
    if (g_comm.world > 1)
        ssl_comm_abort(&g_comm, 1, "train: %s%s%s", what, *ssl_last_error() ? ": " : "", ssl_last_error());
    fprintf(stderr, "train: %s%s%s\n", what, *ssl_last_error() ? ": " : "", ssl_last_error());
    return 1;
}

/* Resolution of epoch e: constant, or linear from res_start to res_end over
   [ramp_start, ramp_end], rounded down to a multiple of 8. */
static int res_at(const train_cfg *c, int64_t e) {
    if (!c->res_start) return (int)c->res;
    if (e <= c->ramp_start) return (int)c->res_start;
    if (e >= c->ramp_end) return (int)c->res_end;
    double t = (double)(e - c->ramp_start) / (double)(c->ramp_end - c->ramp_start);
    int r = (int)(c->res_start + t * (c->res_end - c->res_start));
    return r / 8 * 8 > 0 ? r / 8 * 8 : r;
}

static int opt_kind(const char *s) { return !strcmp(s, "sgd") ? SSL_OPTIM_SGD : !strcmp(s, "adamw") ? SSL_OPTIM_ADAMW : SSL_OPTIM_LARS; }

/* ---- evaluation: features of a pack, kNN, probe ----
   On the trainer's device: on the GPU the loader gives uint8 images
   (page-locked) and ssl_cuda_augment_u8 normalizes them there, as in
   training; the features come back to the host for the kNN and the probe. */
static int eval_views(const train_cfg *c, const char *path, int res, int on_gpu, ssl_loader_config *lc) {
    ssl_loader_config_init(lc, path, "simclr", res, (int)(c->bs < 256 ? c->bs : 256));
    ssl_view_recipe *r = &lc->views[0];
    /* the whole image, resized, normalized: no random op */
    r->scale_min = r->scale_max = 1.0f;
    r->ratio_min = r->ratio_max = 0.0f;
    r->flip_p = r->jitter_p = r->gray_p = r->blur_p = r->solarize_p = r->noise_p = 0.0f;
    lc->num_views = 1;
    lc->order = SSL_ORDER_SEQUENTIAL;
    lc->drop_last = 0;
    lc->threads = (int)c->loader_threads;
#ifdef SSL_CUDA
    if (on_gpu) lc->output_u8 = 1, lc->u8_alloc = ssl_cuda_host_alloc, lc->u8_free = ssl_cuda_host_free;
#else
    (void)on_gpu;
#endif
    return 0;
}

/* Eval-mode backbone features of up to `limit` images (raw: as the probe
   sees them; normalize_rows turns them into the kNN's). */
static float *extract(ssl_trainer *t, const train_cfg *c, const char *path, int res, int64_t limit, int64_t *count,
                      uint32_t **labels) {
    const int on_gpu = t->c.device == SSL_DEV_CUDA;
    ssl_loader_config lc;
    eval_views(c, path, res, on_gpu, &lc);
    ssl_loader *l = ssl_loader_open(&lc);
    if (!l) return NULL;
    ssl_loader_start_epoch(l, 0, 0);
    int64_t total = ssl_loader_samples_per_epoch(l);
    if (total > limit) total = limit;
    int d = t->online.feat_dim;
    float *f = ssl_malloc(sizeof(float) * (size_t)(total * d), "eval features");
    *labels = ssl_malloc(sizeof(uint32_t) * (size_t)total, "eval labels");
#ifdef SSL_CUDA
    float *dview = on_gpu ? ssl_cuda_malloc(sizeof(float) * (size_t)lc.batch_size * res * res * 3, "eval views") : NULL;
#endif
    int64_t n = 0;
    const ssl_batch *b;
    int rc = 0;
    while (n < total && (b = ssl_loader_next(l))) {
        const float *x = b->views[0];
#ifdef SSL_CUDA
        if (on_gpu) {
            ssl_cuda_augment_u8(b->views_u8[0], b->params[0], b->n, b->w[0], b->h[0], 255.0f, lc.views[0].mean,
                                lc.views[0].std, dview);
            x = dview;
        }
#endif
        if (ssl_model_plan(&t->online, b->n, b->h[0], b->w[0], 1) || ssl_model_forward(&t->online, 0, x, 0)) {
            ssl_loader_release(l, b);
            rc = -1;
            break;
        }
        ssl_tensor ft = ssl_model_features(&t->online, 0);
        int take = (int)(total - n < b->n ? total - n : b->n);
#ifdef SSL_CUDA
        if (on_gpu) ssl_cuda_to_host(f + n * d, ft.data, sizeof(float) * (size_t)take * d);
        else
#endif
            memcpy(f + n * d, ft.data, sizeof(float) * (size_t)take * d);
        for (int i = 0; i < take; i++) (*labels)[n + i] = b->labels[i];
        n += take;
        ssl_loader_release(l, b);
    }
    ssl_loader_close(l);
#ifdef SSL_CUDA
    if (dview) ssl_cuda_free(dview);
#endif
    if (rc) {
        free(f);
        free(*labels);
        return NULL;
    }
    *count = n;
    return f;
}

/* each row divided by its L2 norm (+1e-12) */
static void normalize_rows(float *f, int64_t n, int d) {
    for (int64_t i = 0; i < n; i++) {
        float *r = f + i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        float inv = (float)(1.0 / (sqrt(s) + 1e-12));
        for (int j = 0; j < d; j++) r[j] *= inv;
    }
}

/* kNN top-1: weights exp(cos/0.07) summed per class over the k nearest. */
static double knn_top1(const float *bank, const uint32_t *bl, int64_t nb, const float *q, const uint32_t *ql, int64_t nq,
                       int d, int k, int classes) {
    if (k > nb) k = (int)nb;
    float *sims = ssl_malloc(sizeof(float) * (size_t)nb, "kNN");
    int64_t *top = ssl_malloc(sizeof(int64_t) * (size_t)k, "kNN");
    double *votes = ssl_malloc(sizeof(double) * (size_t)classes, "kNN");
    int64_t correct = 0;
    for (int64_t i = 0; i < nq; i++) {
        ssl_gemm(0, 1, 1, (int)nb, d, 1.0f, q + i * d, d, bank, d, 0.0f, sims, (int)nb);
        int m = 0;
        for (int64_t j = 0; j < nb; j++) { /* insertion into a sorted top-k */
            if (m == k && sims[j] <= sims[top[m - 1]]) continue;
            int p = m < k ? m++ : k - 1;
            while (p > 0 && sims[top[p - 1]] < sims[j]) { top[p] = top[p - 1]; p--; }
            top[p] = j;
        }
        memset(votes, 0, sizeof(double) * (size_t)classes);
        for (int j = 0; j < m; j++)
            if (bl[top[j]] < (uint32_t)classes) votes[bl[top[j]]] += exp(sims[top[j]] / 0.07);
        int best = 0;
        for (int cl = 1; cl < classes; cl++)
            if (votes[cl] > votes[best]) best = cl;
        correct += (uint32_t)best == ql[i];
    }
    free(sims);
    free(top);
    free(votes);
    return nq ? (double)correct / (double)nq : 0;
}

static int evaluate(ssl_trainer *t, const train_cfg *c, int res, int classes, FILE *log) {
    double t0 = ssl_now();
    int64_t nb = 0, nq = 0;
    uint32_t *bl = NULL, *ql = NULL;
    float *bank = extract(t, c, c->data, res, c->knn_train, &nb, &bl);
    if (!bank) return -1;
    float *q = extract(t, c, c->val, res, INT64_MAX, &nq, &ql);
    if (!q) { free(bank); free(bl); return -1; }
    int d = t->online.feat_dim;
    /* the online probe on the raw eval features */
    double probe = -1;
    if (t->probe.n) {
        ssl_params_download(&t->probe); /* a device table's values into its host copy */
        const float *pw = t->probe.dev ? t->probe.host : t->probe.data;
        const float *w = pw + t->probe.p[0].offset, *bias = pw + t->probe.p[1].offset;
        int64_t correct = 0;
        for (int64_t i = 0; i < nq; i++) {
            int best = 0;
            double bestv = -INFINITY;
            for (int cl = 0; cl < classes; cl++) {
                double s = bias[cl];
                for (int j = 0; j < d; j++) s += (double)w[(int64_t)cl * d + j] * q[i * d + j];
                if (s > bestv) bestv = s, best = cl;
            }
            correct += (uint32_t)best == ql[i];
        }
        probe = nq ? (double)correct / nq : 0;
    }
    normalize_rows(bank, nb, d);
    normalize_rows(q, nq, d);
    double knn = knn_top1(bank, bl, nb, q, ql, nq, d, (int)c->knn_k, classes);
    printf("eval: kNN top-1 %.2f%% (k=%d, bank %lld train images, %lld val images)", 100 * knn, (int)c->knn_k,
           (long long)nb, (long long)nq);
    if (probe >= 0) printf(", online probe top-1 %.2f%%", 100 * probe);
    printf(" (%.1fs)\n", ssl_now() - t0);
    if (log) {
        fprintf(log, "{\"eval\": {\"step\": %lld, \"knn_top1\": %.6f, \"probe_top1\": %.6f, \"knn_k\": %d, \"bank\": %lld, \"val\": %lld}}\n",
                (long long)t->step, knn, probe, (int)c->knn_k, (long long)nb, (long long)nq);
        fflush(log);
    }
    free(bank); free(bl); free(q); free(ql);
    return 0;
}

/* ---- checkpoints: user state = [epoch, next batch in it, seed] ---- */
/* A batch fetched ahead whose crops were prefetched to the GPU, given back
   unused (the run stops): the copies are forgotten first. */
static void drop_prefetch(ssl_loader *l, const ssl_batch *nb) {
    if (!nb) return;
#ifdef SSL_CUDA
    ssl_cuda_prefetch_u8(NULL, 0);
#endif
    ssl_loader_release(l, nb);
}

/* Every rank checks that the ranks' fp32 weights are the same (a
   mismatch stops naming the tensor); rank 0 writes. user state: [epoch,
   next global batch, seed, world size]. */
static int save(ssl_trainer *t, const train_cfg *c, const char *path, int64_t epoch, int64_t batch) {
    static char meta[1 << 16];
    if (g_comm.world > 1) {
        /* without SyncBN each rank's running statistics are its own: rank 0's are kept (as DDP's broadcast buffers) */
        ssl_param_table *pt = &t->online.params;
        for (int i = 0; i < pt->n && !t->online.comm; i++) {
            if (pt->p[i].kind != SSL_PARAM_BUFFER) continue;
            ssl_tensor b = ssl_tensor_on(ssl_tensor_vec(ssl_param_data(pt, i), pt->p[i].numel), pt->dev);
            if (ssl_broadcast(&g_comm, &b, 0)) return -1;
        }
        ssl_params_download(&t->online.params);
        if (ssl_comm_check_params(&g_comm, &t->online.params, "checkpoint")) return -1;
        if (t->has_target) { /* BYOL's EMA target: the same update of the same weights on every rank */
            ssl_params_download(&t->target.params);
            if (ssl_comm_check_params(&g_comm, &t->target.params, "checkpoint (BYOL target)")) return -1;
        }
    }
    if (g_comm.rank != 0) return 0;
    ssl_config_dump(OPTS, NOPTS, c, meta, sizeof meta);
    int64_t user[4] = {epoch, batch, c->seed, g_comm.world};
    return ssl_trainer_save(t, path, meta, user, 4);
}

/* Applies the key=value lines of a checkpoint's meta. */
static int apply_meta(train_cfg *c, const char *meta) {
    char line[2 * SSL_STR];
    const char *s = meta;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= sizeof line) n = sizeof line - 1;
        memcpy(line, s, n);
        line[n] = 0;
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = 0;
            if (strcmp(line, "resume") && strcmp(line, "out") && strcmp(line, "max_steps") && strcmp(line, "dump_views") &&
                ssl_config_set(OPTS, NOPTS, c, line, eq + 1)) return -1;
        }
        s += n + (e ? 1 : 0);
    }
    return 0;
}

/* With no data=, the run trains on Fashion-MNIST as Debian's
   dataset-fashion-mnist installs it (make deps does), packed once into a
   cache: $XDG_CACHE_HOME/ssl.h, else ~/.cache/ssl.h. */
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
static const char *const FMNIST_CLASSES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static int cache_dir(char *dir, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(dir, n, "%s/ssl.h", xdg);
    else if (home && *home) snprintf(dir, n, "%s/.cache/ssl.h", home);
    else return ssl__fail("neither XDG_CACHE_HOME nor HOME is set: no cache directory; pass data=PACK");
    for (char *p = dir + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = 0;
        int r = mkdir(dir, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return ssl__fail("cannot create '%s': %s", dir, strerror(errno));
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return ssl__fail("cannot create '%s': %s", dir, strerror(errno));
    return 0;
}

/* The cached pack of one split ("train" or "t10k"), made when missing or
   unreadable. */
static int fmnist_pack(const char *dir, const char *split, char *path, size_t n) {
    snprintf(path, n, "%s/fashion-mnist-%s.ssl", dir, split);
    ssl_pack p;
    if (ssl_pack_open(path, &p) == 0) {
        ssl_pack_close(&p);
        return 0;
    }
    char images[SSL_STR];
    snprintf(images, sizeof images, FMNIST_DIR "/%s-images-idx3-ubyte.gz", split);
    struct stat st;
    if (stat(images, &st) != 0)
        return ssl__fail("no data= given and Fashion-MNIST is not installed (%s is missing): "
                         "apt-get install dataset-fashion-mnist, or pass data=PACK", images);
    printf("train: packing %s into %s (once)\n", images, path);
    ssl_idx d;
    if (ssl_idx_load(images, NULL, &d) != 0) return -1;
    int r = ssl_pack_idx(&d, path, FMNIST_CLASSES, 10, 0);
    ssl_idx_free(&d);
    return r;
}

/* On the CPU the table's defaults (a full-width ResNet-18, 100 epochs) would
   take days on Fashion-MNIST; there the default data comes with the demo's
   small recipe for every option the command line leaves out. The optimizer
   group goes in whole or not at all: AdamW's learning rate given to LARS
   (or the reverse) would be a recipe nobody chose. */
static const char *const FMNIST_CPU_RECIPE[][2] = {
    {"width", "0.125"}, {"res", "28"}, {"bs", "64"}, {"epochs", "1"}, {"warmup", "0.1"}, {"views", "crop_flip"},
    {"scale_min", "0.3"}, {"tau", "0.2"}, {"projector", "256-128"}, {"probe_lr", "0.01"},
};
static const char *const FMNIST_CPU_OPTIMIZER[][2] = {
    {"optimizer", "adamw"}, {"lr", "2e-3"}, {"lr_scale", "0"}, {"wd", "1e-4"},
};

static int given(int argc, char **argv, const char *key) {
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], key, n) && argv[i][n] == '=') return 1;
    return 0;
}

static int default_data(train_cfg *c, int on_gpu, int argc, char **argv) {
    char dir[SSL_STR - 64];
    if (cache_dir(dir, sizeof dir) != 0) return -1;
    if (fmnist_pack(dir, "train", c->data, sizeof c->data) != 0) return -1;
    if (!c->val[0] && fmnist_pack(dir, "t10k", c->val, sizeof c->val) != 0) return -1;
    printf("train: no data= given: Fashion-MNIST's 60,000 training images (%s), evaluated on its test split (%s).\n"
           "       Your own images: ./pack DIR train.ssl, then ./train %s data=train.ssl ...\n",
           c->data, c->val, c->method);
    if (on_gpu) return 0;
    char said[512] = "";
    size_t nr = sizeof FMNIST_CPU_RECIPE / sizeof FMNIST_CPU_RECIPE[0];
    size_t no = sizeof FMNIST_CPU_OPTIMIZER / sizeof FMNIST_CPU_OPTIMIZER[0];
    int any_opt = 0;
    for (size_t i = 0; i < no; i++) any_opt |= given(argc, argv, FMNIST_CPU_OPTIMIZER[i][0]);
    for (size_t i = 0; i < nr + no; i++) {
        const char *const *kv = i < nr ? FMNIST_CPU_RECIPE[i] : FMNIST_CPU_OPTIMIZER[i - nr];
        if (given(argc, argv, kv[0]) || (i >= nr && any_opt)) continue;
        if (ssl_config_set(OPTS, NOPTS, c, kv[0], kv[1]) != 0) return -1;
        snprintf(said + strlen(said), sizeof said - strlen(said), " %s=%s", kv[0], kv[1]);
    }
    if (said[0]) printf("       On the CPU, the small recipe of make demo for what the command leaves out:%s\n", said);
    return 0;
}

/* dump_views=FILE: each step's views and labels, copied as the step gets
   them (from the GPU on a CUDA run), written as one SSLT file at the end */
typedef struct {
    ssl_tentry *e;
    int n, cap;
} view_dump;

static void dump_add(view_dump *d, int64_t step, const char *what, int dtype, const void *src, int ndim, const int64_t *dims,
                     int on_gpu) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 96;
        d->e = ssl_realloc(d->e, sizeof(ssl_tentry) * (size_t)d->cap, "dumped views");
    }
    ssl_tentry *e = &d->e[d->n++];
    memset(e, 0, sizeof *e);
    char name[64];
    snprintf(name, sizeof name, "step.%lld.%s", (long long)step, what);
    e->name = strdup(name);
    e->dtype = dtype, e->ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) e->dims[i] = dims[i], numel *= dims[i];
    e->nbytes = (size_t)numel * ssl_dtype_size(dtype);
    void *copy = ssl_malloc(e->nbytes, "dumped views");
#ifdef SSL_CUDA
    if (on_gpu) ssl_cuda_to_host(copy, src, e->nbytes);
    else
#endif
        memcpy(copy, src, e->nbytes);
    (void)on_gpu;
    e->data = copy;
}

static int dump_write(view_dump *d, const char *path) {
    int r = d->n ? ssl_tfile_write(path, d->e, d->n, "./train dump_views: each step's views (NHWC, normalized) and labels") : 0;
    for (int i = 0; i < d->n; i++) free((void *)d->e[i].name), free((void *)d->e[i].data);
    free(d->e);
    memset(d, 0, sizeof *d);
    return r;
}

static int run(int argc, char **argv);

/* ==== grids: several values of an option run every combination ==========
   ./train simclr data=train.ssl lr=0.3,0.5 tau=0.1,0.2 epochs=100 out=runs/g
   Every option given a comma list is an axis; each combination (a cell) is
   an ordinary run of this same program, re-executed with that cell's values
   and out=OUT/CELL (CELL named by the values, e.g. lr=0.3_tau=0.1), its
   output in OUT/CELL/output.txt. Every cell's options are checked with the
   table before the first starts. A cell's state is read from its
   log.jsonl: an "eval" record (or, without val, the last checkpoint at the
   last epoch) means done, an "error" record diverged, anything else is
   resumed from OUT/CELL/ckpt.sslt, so the same command again continues the
   grid. parallel=N runs N cells at once (the cores shared among them); a
   Slurm job array (SLURM_ARRAY_TASK_ID/COUNT) or the ranks of an mpirun
   (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/SIZE) each take every COUNT-th cell.
   After each cell, OUT/sweep.md, OUT/sweep.jsonl and the gnuplot figures
   (OUT/sweep.png, ...) are rebuilt from every cell's log; ./train summary
   out=OUT rebuilds them alone. The command's words are kept in
   OUT/sweep.args for that. */
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#define SWEEP_MAX_AXES 16
#define SWEEP_CELL_LIMIT 256 /* more cells than this need force=1 */

typedef struct {
    int arg;     /* the word of the command that lists the values */
    char key[64];
    int n;
    char **v;    /* the values (into a copy of the word) */
    char *copy;
} sweep_axis;

typedef struct {
    int argc;
    char **argv;  /* the command's words after ./train */
    int nax;
    sweep_axis ax[SWEEP_MAX_AXES];
    int64_t cells;
    char out[SSL_STR];
    int64_t parallel, threads_given;
    train_cfg *cfg; /* each cell's options */
} sweep_grid;

enum { CELL_PENDING, CELL_UNFINISHED, CELL_RUNNING, CELL_DONE, CELL_DIVERGED, CELL_FAILED };
static const char *const CELL_STATUS[] = {"pending", "unfinished", "running", "done", "diverged", "failed"};

typedef struct {
    int status;
    double knn, probe, loss, wall; /* -1 / NAN: not known */
    int64_t step;
} sweep_cell;

static int sweep_key_is(const char *arg, const char *key) {
    size_t n = strlen(key);
    return !strncmp(arg, key, n) && arg[n] == '=';
}

/* the index of each axis's value in cell c (the last axis varies fastest) */
static void sweep_digits(const sweep_grid *g, int64_t c, int *d) {
    for (int a = g->nax - 1; a >= 0; a--) d[a] = (int)(c % g->ax[a].n), c /= g->ax[a].n;
}

static void sweep_cell_name(const sweep_grid *g, int64_t c, char *name, size_t cap) {
    int d[SWEEP_MAX_AXES];
    sweep_digits(g, c, d);
    size_t len = 0;
    name[0] = 0;
    for (int a = 0; a < g->nax; a++) {
        len += (size_t)snprintf(name + len, len < cap ? cap - len : 0, "%s%s=%s", a ? "_" : "", g->ax[a].key, g->ax[a].v[d[a]]);
        if (len >= cap) break;
    }
    for (char *p = name; *p; p++) /* a file name: no separators or shell-special characters */
        if (!(isalnum((unsigned char)*p) || strchr("._+-=", *p))) *p = '_';
}

static void sweep_free(sweep_grid *g) {
    for (int a = 0; a < g->nax; a++) free(g->ax[a].v), free(g->ax[a].copy);
    free(g->cfg);
    g->nax = 0, g->cfg = NULL;
}

/* Cell c's words: the command's, each axis word replaced by the cell's
   value, without the grid's own options and out=, then out=OUT/CELL. Words
   are written into buf; returns the count. */
static int sweep_cell_args(const sweep_grid *g, int64_t c, char **words, int cap, char *buf, size_t bufcap) {
    int d[SWEEP_MAX_AXES], n = 0;
    size_t used = 0;
    sweep_digits(g, c, d);
    for (int i = 0; i < g->argc && n < cap - 1; i++) {
        const char *w = g->argv[i];
        if (sweep_key_is(w, "out") || sweep_key_is(w, "parallel") || sweep_key_is(w, "force")) continue;
        char tmp[2 * SSL_STR];
        snprintf(tmp, sizeof tmp, "%s", w);
        for (int a = 0; a < g->nax; a++)
            if (g->ax[a].arg == i) snprintf(tmp, sizeof tmp, "%s=%s", g->ax[a].key, g->ax[a].v[d[a]]);
        size_t l = strlen(tmp) + 1;
        if (used + l > bufcap) break;
        memcpy(buf + used, tmp, l);
        words[n++] = buf + used, used += l;
    }
    char name[SSL_STR];
    sweep_cell_name(g, c, name, sizeof name);
    if (n < cap) {
        size_t l = (size_t)snprintf(buf + used, bufcap > used ? bufcap - used : 0, "out=%s/%s", g->out, name) + 1;
        if (used + l <= bufcap) words[n++] = buf + used;
    }
    return n;
}

/* Reads the command's words into a grid: its axes, its cell count, every
   cell's options checked. Returns 0, 1 when no word is a list (not a grid),
   -1 on an error (printed). */
static int sweep_parse(sweep_grid *g, int argc, char **argv, int force_check) {
    static const char *const single[] = {"out", "resume", "data", "val", "config", "parallel", "force", "threads", "loader_threads"};
    memset(g, 0, sizeof *g);
    g->argc = argc, g->argv = argv;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || !strchr(eq + 1, ',')) continue;
        size_t kl = (size_t)(eq - argv[i]);
        if (kl == 0 || kl >= sizeof g->ax[0].key) {
            fprintf(stderr, "train: bad option name in '%s'\n", argv[i]);
            return sweep_free(g), -1;
        }
        for (size_t k = 0; k < sizeof single / sizeof single[0]; k++)
            if (sweep_key_is(argv[i], single[k])) {
                fprintf(stderr, "train: %s: '%s' takes one value, not a list (a grid's axes are the training options)\n",
                        argv[i], single[k]);
                return sweep_free(g), -1;
            }
        if (g->nax == SWEEP_MAX_AXES) {
            fprintf(stderr, "train: %s: more than %d options with several values\n", argv[i], SWEEP_MAX_AXES);
            return sweep_free(g), -1;
        }
        sweep_axis *a = &g->ax[g->nax++];
        a->arg = i;
        memcpy(a->key, argv[i], kl);
        a->key[kl] = 0;
        a->copy = strdup(eq + 1);
        int n = 1;
        for (const char *p = eq + 1; *p; p++) n += *p == ',';
        a->v = ssl_malloc(sizeof(char *) * (size_t)n, "grid values");
        for (char *s = a->copy, *e; s; s = e) {
            e = strchr(s, ',');
            if (e) *e++ = 0;
            if (!*s) {
                fprintf(stderr, "train: %s: an empty value in the list of '%s'\n", argv[i], a->key);
                return sweep_free(g), -1;
            }
            for (int k = 0; k < a->n; k++)
                if (!strcmp(a->v[k], s)) {
                    fprintf(stderr, "train: %s: '%s' is listed twice for '%s'\n", argv[i], s, a->key);
                    return sweep_free(g), -1;
                }
            a->v[a->n++] = s;
        }
        for (int b = 0; b < g->nax - 1; b++)
            if (!strcmp(g->ax[b].key, a->key)) {
                fprintf(stderr, "train: '%s' is given two lists\n", a->key);
                return sweep_free(g), -1;
            }
    }
    if (!g->nax) return 1;
    for (int i = 0; i < argc; i++)
        if (sweep_key_is(argv[i], "resume")) {
            fprintf(stderr, "train: %s: a grid resumes its cells itself (the same command again); 'resume' names one run\n", argv[i]);
            return sweep_free(g), -1;
        }
    /* the grid's own options: out, parallel, force (from the first cell's parse below) */
    train_cfg base;
    ssl_config_defaults(OPTS, NOPTS, &base);
    int force = 0;
    g->cells = 1;
    for (int a = 0; a < g->nax; a++) {
        if (g->cells > ((int64_t)1 << 40) / g->ax[a].n) g->cells = (int64_t)1 << 40; /* no overflow: refused anyway */
        else g->cells *= g->ax[a].n;
    }
    /* every cell parsed by the table, before any runs */
    char *words[512], buf[1 << 16];
    const char *pos[2];
    for (int64_t c = 0; c < g->cells; c++) {
        train_cfg cc;
        ssl_config_defaults(OPTS, NOPTS, &cc);
        int n = sweep_cell_args(g, c, words, 512, buf, sizeof buf), npos = 0;
        char name[SSL_STR];
        sweep_cell_name(g, c, name, sizeof name);
        if (ssl_config_parse(OPTS, NOPTS, &cc, n, words, pos, 1, &npos) ||
            (npos == 1 && ssl_config_set(OPTS, NOPTS, &cc, "method", pos[0]))) {
            fprintf(stderr, "train: grid cell %lld of %lld (%s): %s\n", (long long)c + 1, (long long)g->cells, name, ssl_last_error());
            return sweep_free(g), -1;
        }
        if (c == 0) {
            /* the grid's own options, from the whole command (out= included) */
            train_cfg whole;
            ssl_config_defaults(OPTS, NOPTS, &whole);
            for (int i = 0; i < argc; i++)
                if (sweep_key_is(argv[i], "out") || sweep_key_is(argv[i], "parallel") || sweep_key_is(argv[i], "force"))
                    if (ssl_config_parse(OPTS, NOPTS, &whole, 1, argv + i, pos, 0, NULL)) {
                        fprintf(stderr, "train: %s\n", ssl_last_error());
                        return sweep_free(g), -1;
                    }
            snprintf(g->out, sizeof g->out, "%s", whole.out);
            g->parallel = whole.parallel;
            force = whole.force;
            for (int i = 0; i < argc; i++) g->threads_given |= sweep_key_is(argv[i], "threads");
            if (force_check && g->cells > SWEEP_CELL_LIMIT && !force) {
                fprintf(stderr, "train: a grid of %lld cells (", (long long)g->cells);
                for (int a = 0; a < g->nax; a++) fprintf(stderr, "%s%s: %d values", a ? ", " : "", g->ax[a].key, g->ax[a].n);
                fprintf(stderr, ") is more than %d; force=1 runs it\n", SWEEP_CELL_LIMIT);
                return sweep_free(g), -1;
            }
            g->cfg = ssl_malloc(sizeof(train_cfg) * (size_t)g->cells, "grid cells");
            /* out= now names the grid: cells' names are relative to it */
            n = sweep_cell_args(g, c, words, 512, buf, sizeof buf);
            ssl_config_parse(OPTS, NOPTS, &cc, n, words, pos, 1, &npos);
        }
        g->cfg[c] = cc;
    }
    return 0;
}

/* "key": number in a line of JSON (NAN: absent) */
static double sweep_json_num(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(line, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* A cell's state from OUT/CELL/log.jsonl: the records after its last
   config record are its last start's. */
static sweep_cell sweep_read_cell(const sweep_grid *g, int64_t c) {
    sweep_cell s = {CELL_PENDING, -1, -1, NAN, 0, 0};
    const train_cfg *cc = &g->cfg[c];
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/log.jsonl", cc->out);
    FILE *f = fopen(path, "r");
    if (!f) return s;
    char *line = NULL;
    size_t cap = 0;
    int eval = 0, err = 0, exitc = 0, starts = 0;
    double ck_epoch = -1, ck_step = -1, block_wall = 0, block_elapsed = 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strncmp(line, "{\"config\"", 9)) {
            s.wall += block_wall > 0 ? block_wall : block_elapsed;
            block_wall = block_elapsed = 0;
            eval = err = exitc = 0, starts++;
        } else if (!strncmp(line, "{\"eval\"", 7)) {
            eval = 1;
            s.knn = sweep_json_num(line, "knn_top1"), s.probe = sweep_json_num(line, "probe_top1");
        } else if (!strncmp(line, "{\"error\"", 8)) {
            err = 1;
            s.step = (int64_t)sweep_json_num(line, "step");
        } else if (!strncmp(line, "{\"checkpoint\"", 13)) {
            ck_epoch = sweep_json_num(line, "epoch"), ck_step = sweep_json_num(line, "step");
        } else if (!strncmp(line, "{\"sweep\"", 8)) {
            block_wall += sweep_json_num(line, "wall_s");
            exitc = (int)sweep_json_num(line, "exit");
        } else if (!strncmp(line, "{\"epoch\"", 8)) {
            s.loss = sweep_json_num(line, "loss");
            s.step = (int64_t)sweep_json_num(line, "step");
            block_elapsed = sweep_json_num(line, "elapsed");
        }
    }
    s.wall += block_wall > 0 ? block_wall : block_elapsed;
    free(line);
    fclose(f);
    if (!starts) return s;
    if (err) s.status = CELL_DIVERGED;
    else if (eval || (!cc->val[0] && ck_epoch >= (double)cc->epochs) || (cc->max_steps && ck_step >= (double)cc->max_steps))
        s.status = CELL_DONE;
    else s.status = exitc ? CELL_FAILED : CELL_UNFINISHED;
    return s;
}

/* the figure's value of a cell: kNN top-1 when the grid has one, else the
   probe's, else the final loss (lower is better) */
typedef struct { int which; const char *title; } sweep_metric;
static double sweep_value(const sweep_cell *s, sweep_metric m) {
    if (s->status != CELL_DONE) return NAN;
    double v = m.which == 0 ? s->knn : m.which == 1 ? s->probe : s->loss;
    return m.which < 2 ? (v >= 0 ? 100 * v : NAN) : v;
}
static int sweep_better(sweep_metric m, double a, double b) { /* a better than b (NAN: worst) */
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    return m.which == 2 ? a < b : a > b;
}

/* A figure's cell: the value (mean over seeds when seed is an axis not
   plotted; the other axes not plotted at their best), or diverged. */
static void sweep_aggregate(const sweep_grid *g, const sweep_cell *st, sweep_metric m, int a0, int i0, int a1, int i1,
                            double *value, int *diverged, int *any) {
    int seed = -1;
    for (int a = 0; a < g->nax; a++)
        if (!strcmp(g->ax[a].key, "seed") && a != a0 && a != a1) seed = a;
    double best = NAN;
    *diverged = 0, *any = 0;
    for (int64_t c = 0; c < g->cells; c++) {
        int d[SWEEP_MAX_AXES];
        sweep_digits(g, c, d);
        if (d[a0] != i0 || (a1 >= 0 && d[a1] != i1) || (seed >= 0 && d[seed] != 0)) continue;
        /* the mean over the seeds of this combination */
        double sum = 0;
        int n = 0;
        int64_t stride = 1;
        for (int a = g->nax - 1; a > seed && seed >= 0; a--) stride *= g->ax[a].n;
        for (int k = 0; k < (seed >= 0 ? g->ax[seed].n : 1); k++) {
            const sweep_cell *s = &st[c + k * stride];
            double v = sweep_value(s, m);
            if (s->status == CELL_DIVERGED) *diverged = 1;
            if (s->status != CELL_PENDING) *any = 1;
            if (!isnan(v)) sum += v, n++;
        }
        double mean = n ? sum / n : NAN;
        if (sweep_better(m, mean, best)) best = mean;
    }
    *value = best;
}

static int sweep_gnuplot(const char *script, char *why, size_t cap) {
    pid_t p = fork();
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY); /* its warnings too (an empty colour range, a grid with no value yet) */
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) < 0) return snprintf(why, cap, "cannot start gnuplot"), -1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) return snprintf(why, cap, "gnuplot not found (apt-get install gnuplot-nox)"), -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return snprintf(why, cap, "gnuplot failed on %.900s (run it to see why)", script), -1;
    return 0;
}

static void sweep_tics(FILE *f, const char *axis, const sweep_axis *a) {
    fprintf(f, "set %stics (", axis);
    for (int i = 0; i < a->n; i++) fprintf(f, "%s\"%s\" %d", i ? ", " : "", a->v[i], i);
    /* noenhanced: an underscore in a value or a key (crop_gray, patch_scale) is not a subscript */
    fprintf(f, ") noenhanced\nset %srange [-0.5:%d.5]\nset %slabel \"%s\" noenhanced\n", axis, a->n - 1, axis, a->key);
}

/* One figure: a heatmap of axes a0 (rows) x a1 (columns), or a line plot of
   a0 when a1 < 0, written to png; its gnuplot script is kept beside it
   (gnuplot OUT/sweep.gp remakes it). */
static int sweep_figure(const sweep_grid *g, const sweep_cell *st, sweep_metric m, int a0, int a1, const char *png, char *why,
                        size_t cap) {
    char *body = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&body, &blen);
    if (!f) return snprintf(why, cap, "out of memory"), -1;
    const sweep_axis *A = &g->ax[a0], *B = a1 >= 0 ? &g->ax[a1] : NULL;
    int seed = 0;
    for (int a = 0; a < g->nax; a++) seed |= !strcmp(g->ax[a].key, "seed") && a != a0 && a != a1;
    int others = g->nax - (B ? 2 : 1) - seed;
    fprintf(f, "set title \"%s%s%s%s%s\"\nunset key\n", m.title, seed || others > 0 ? "\\n{/*0.8 " : "", seed ? "mean over seeds" : "",
            others > 0 ? (seed ? "; the other options at their best" : "the other options at their best") : "", seed || others > 0 ? "}" : "");
    int nbad = 0, nok = 0;
    double lo = INFINITY;
    if (B) {
        fprintf(f, "set palette defined (0 \"#fff7bc\", 0.5 \"#fdae6b\", 1 \"#d94801\")\nset tics scale 0\n");
        sweep_tics(f, "x", B);
        sweep_tics(f, "y", A);
    } else {
        sweep_tics(f, "x", A);
        fprintf(f, "set ylabel \"%s\"\nset grid\nset offsets 0, 0, graph 0.15, graph 0.15\n", m.title);
    }
    /* $ok: x y value label; $bad: x y of the diverged */
    for (int pass = 0; pass < 2; pass++) {
        fprintf(f, "%s << EOD\n", pass ? "$bad" : "$ok");
        for (int i = 0; i < A->n; i++)
            for (int j = 0; j < (B ? B->n : 1); j++) {
                double v;
                int div, any;
                sweep_aggregate(g, st, m, a0, i, a1, j, &v, &div, &any);
                int x = B ? j : i, y = B ? i : 0;
                if (!pass && !isnan(v)) {
                    if (B) fprintf(f, "%d %d \"%.*f\" %.6g\n", x, y, m.which == 2 ? 3 : 1, v, v);
                    else fprintf(f, "%d %.6g \"%.*f\"\n", x, v, m.which == 2 ? 3 : 1, v);
                    nok++;
                    if (v < lo) lo = v;
                }
                if (pass && isnan(v) && div) fprintf(f, "%d %d\n", x, y), nbad++;
            }
        fprintf(f, "EOD\n");
    }
    if (B) {
        /* $ok rows: x y "label" value */
        fprintf(f, "plot $ok using 1:2:(0.5):(0.5):4 with boxxyerror fc palette fs solid 1.0 border lc rgb \"white\", "
                   "$ok using 1:2:3 with labels font \",11\"");
        if (nbad)
            fprintf(f, ", $bad using 1:2:(0.5):(0.5) with boxxyerror fc rgb \"#bbbbbb\" fs pattern 4 border lc rgb \"white\", "
                       "$bad using 1:2:(\"diverged\") with labels font \",10\" tc rgb \"#b00000\"");
    } else {
        fprintf(f, "plot ");
        if (nok) fprintf(f, "$ok using 1:2 with linespoints pt 7 lw 2, $ok using 1:2:3 with labels offset 0,1%s", nbad ? ", " : "");
        if (nbad) fprintf(f, "$bad using 1:(%.6g):(\"diverged\") with labels tc rgb \"#b00000\"", nok ? lo : 0.0);
        if (!nok && !nbad) fprintf(f, "0 with lines lc rgb \"white\"");
    }
    fprintf(f, "\nset output\n");
    fclose(f);
    int w = B ? 160 + 110 * B->n : 200 + 90 * A->n, h = B ? 140 + 80 * A->n : 480;
    char script[SSL_STR + 16], tscript[SSL_STR + 32], tpng[SSL_STR + 32];
    snprintf(script, sizeof script, "%.*s.gp", (int)(strlen(png) - 4), png);
    snprintf(tscript, sizeof tscript, "%s.%d.tmp", script, (int)getpid());
    snprintf(tpng, sizeof tpng, "%s.%d.tmp", png, (int)getpid());
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) { /* the temporary script draws the temporary PNG; the kept one names the PNG */
        const char *sp = k ? script : tscript;
        FILE *o = fopen(sp, "w");
        if (!o) { snprintf(why, cap, "cannot write %s: %s", sp, strerror(errno)), rc = -1; break; }
        fprintf(o, "# a grid's figure, made by ./train; gnuplot %s remakes %s\n", script, png);
        fprintf(o, "set terminal pngcairo size %d,%d font \",10\" enhanced\nset output \"%s\"\n", w < 520 ? 520 : w,
                h < 400 ? 400 : h, k ? png : tpng);
        fwrite(body, 1, blen, o);
        if (fclose(o)) snprintf(why, cap, "cannot write %s", sp), rc = -1;
        if (!k && !rc) {
            rc = sweep_gnuplot(tscript, why, cap);
            unlink(tscript);
            if (!rc && rename(tpng, png)) snprintf(why, cap, "cannot write %s: %s", png, strerror(errno)), rc = -1;
            if (rc) unlink(tpng);
        }
    }
    free(body);
    return rc;
}

static void sweep_fmt_pct(char *s, size_t cap, double v) {
    if (v >= 0) snprintf(s, cap, "%.2f%%", 100 * v);
    else snprintf(s, cap, "-");
}

/* OUT/sweep.md, OUT/sweep.jsonl and the figures, from every cell's log
   (running[c]: cells this process runs now). Returns 0, -1 when a file
   could not be written. */
static int sweep_summary(const sweep_grid *g, const char *running, int quiet) {
    sweep_cell *st = ssl_malloc(sizeof(sweep_cell) * (size_t)g->cells, "grid summary");
    int64_t count[6] = {0};
    int has_knn = 0, has_probe = 0;
    for (int64_t c = 0; c < g->cells; c++) {
        st[c] = sweep_read_cell(g, c);
        if (running && running[c] && st[c].status != CELL_DONE && st[c].status != CELL_DIVERGED) st[c].status = CELL_RUNNING;
        count[st[c].status]++;
        has_knn |= st[c].status == CELL_DONE && st[c].knn >= 0;
        has_probe |= st[c].status == CELL_DONE && st[c].probe >= 0;
    }
    sweep_metric m = has_knn ? (sweep_metric){0, "kNN top-1 (%) on val"}
                   : has_probe ? (sweep_metric){1, "online probe top-1 (%) on val"} : (sweep_metric){2, "final training loss"};
    size_t cap = 4096 + (size_t)g->cells * (512 + 64 * (size_t)g->nax), mn = 0, jn = 0;
    char *md = ssl_malloc(cap, "sweep.md"), *js = ssl_malloc(cap, "sweep.jsonl");
#define MD(...) mn += (size_t)snprintf(md + mn, mn < cap ? cap - mn : 0, __VA_ARGS__)
#define JS(...) jn += (size_t)snprintf(js + jn, jn < cap ? cap - jn : 0, __VA_ARGS__)
    MD("# Grid %s\n\n`./train", g->out);
    for (int i = 0; i < g->argc; i++) MD(" %s", g->argv[i]);
    MD("`\n\n%lld cells: %lld done, %lld diverged, %lld failed, %lld running, %lld unfinished, %lld pending.\n\n", (long long)g->cells,
       (long long)count[CELL_DONE], (long long)count[CELL_DIVERGED], (long long)count[CELL_FAILED], (long long)count[CELL_RUNNING],
       (long long)count[CELL_UNFINISHED], (long long)count[CELL_PENDING]);
    MD("|");
    for (int a = 0; a < g->nax; a++) MD(" %s |", g->ax[a].key);
    MD(" kNN top-1 | probe top-1 | final loss | wall | status | cell |\n|");
    for (int a = 0; a < g->nax; a++) MD("---:|");
    MD("---:|---:|---:|---:|:---|:---|\n");
    int64_t best = -1;
    for (int64_t c = 0; c < g->cells; c++) {
        const sweep_cell *s = &st[c];
        int d[SWEEP_MAX_AXES];
        char name[SSL_STR], knn[32], probe[32], loss[32] = "-", wall[32] = "-";
        sweep_digits(g, c, d);
        sweep_cell_name(g, c, name, sizeof name);
        sweep_fmt_pct(knn, sizeof knn, s->status == CELL_DONE ? s->knn : -1);
        sweep_fmt_pct(probe, sizeof probe, s->status == CELL_DONE ? s->probe : -1);
        if (!isnan(s->loss)) snprintf(loss, sizeof loss, fabs(s->loss) < 1e4 ? "%.4f" : "%.3g", s->loss);
        if (s->status != CELL_PENDING) ssl_format_duration(s->wall, wall, sizeof wall);
        if (sweep_better(m, sweep_value(s, m), best >= 0 ? sweep_value(&st[best], m) : NAN)) best = c;
        MD("|");
        for (int a = 0; a < g->nax; a++) MD(" %s |", g->ax[a].v[d[a]]);
        MD(" %s | %s | %s | %s | %s", knn, probe, loss, wall, CELL_STATUS[s->status]);
        if (s->status == CELL_DIVERGED) MD(" (non-finite loss at step %lld)", (long long)s->step);
        MD(" | %s |\n", name);
        JS("{\"cell\": \"%s\", \"values\": {", name);
        for (int a = 0; a < g->nax; a++) JS("%s\"%s\": \"%s\"", a ? ", " : "", g->ax[a].key, g->ax[a].v[d[a]]);
        JS("}, \"status\": \"%s\", \"knn_top1\": ", CELL_STATUS[s->status]);
        if (s->status == CELL_DONE && s->knn >= 0) JS("%.6f", s->knn); else JS("null");
        JS(", \"probe_top1\": ");
        if (s->status == CELL_DONE && s->probe >= 0) JS("%.6f", s->probe); else JS("null");
        JS(", \"loss\": ");
        if (!isnan(s->loss)) JS("%.6f", s->loss); else JS("null");
        JS(", \"step\": %lld, \"wall_s\": %.1f}\n", (long long)s->step, s->wall);
    }
    if (best >= 0) {
        char name[SSL_STR];
        sweep_cell_name(g, best, name, sizeof name);
        MD("\nBest by %s: %s (%.*f).\n", m.title, name, m.which == 2 ? 4 : 2, sweep_value(&st[best], m));
    }
    /* the figures: the axes but seed (repeats: averaged) */
    int plot[SWEEP_MAX_AXES], np = 0, rc = 0;
    for (int a = 0; a < g->nax; a++)
        if (strcmp(g->ax[a].key, "seed")) plot[np++] = a;
    if (np == 0 && g->nax) plot[np++] = 0;
    char why[SSL_STR + 64] = "", png[SSL_STR + 64];
    MD("\n");
    if (np <= 2) {
        snprintf(png, sizeof png, "%s/sweep.png", g->out);
        if (sweep_figure(g, st, m, plot[0], np == 2 ? plot[1] : -1, png, why, sizeof why) == 0)
            MD("![%s](sweep.png)\n", m.title);
    } else {
        for (int i = 0; i < np && !why[0]; i++)
            for (int j = i + 1; j < np && !why[0]; j++) {
                snprintf(png, sizeof png, "%s/sweep_%s_%s.png", g->out, g->ax[plot[i]].key, g->ax[plot[j]].key);
                if (sweep_figure(g, st, m, plot[i], plot[j], png, why, sizeof why) == 0)
                    MD("![%s x %s](sweep_%s_%s.png)\n", g->ax[plot[i]].key, g->ax[plot[j]].key, g->ax[plot[i]].key, g->ax[plot[j]].key);
            }
    }
    if (why[0]) {
        MD("No figure: %s.\n", why);
        if (!quiet) fprintf(stderr, "train: no grid figure: %s; sweep.md and sweep.jsonl are written\n", why);
    }
#undef MD
#undef JS
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/sweep.md", g->out);
    if (ssl_write_file_atomic(path, md, mn < cap ? mn : cap - 1)) rc = -1;
    snprintf(path, sizeof path, "%s/sweep.jsonl", g->out);
    if (ssl_write_file_atomic(path, js, jn < cap ? jn : cap - 1)) rc = -1;
    if (rc) fprintf(stderr, "train: cannot write the grid's summary in %s: %s\n", g->out, ssl_last_error());
    free(md);
    free(js);
    free(st);
    return rc;
}

/* This process's share of the cells: a Slurm array task or an mpirun rank
   takes every count-th cell from its index. */
static int sweep_share(int64_t *index, int64_t *count, char *who, size_t cap) {
    static const char *const env[][3] = {{"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"},
                                         {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", NULL},
                                         {"PMI_RANK", "PMI_SIZE", NULL}};
    *index = 0, *count = 1, who[0] = 0;
    for (int k = 0; k < 3; k++) {
        const char *i = getenv(env[k][0]), *n = getenv(env[k][1]), *lo = env[k][2] ? getenv(env[k][2]) : NULL;
        if (!i || !n) continue;
        char *e1, *e2;
        long long vi = strtoll(i, &e1, 10), vn = strtoll(n, &e2, 10), vlo = lo ? atoll(lo) : 0;
        if (*e1 || *e2 || !*i || !*n || vn < 1 || vi - vlo < 0 || vi - vlo >= vn) {
            fprintf(stderr, "train: %s=%s %s=%s%s%s: not an index below the count\n", env[k][0], i, env[k][1], n,
                    lo ? " SLURM_ARRAY_TASK_MIN=" : "", lo ? lo : "");
            return -1;
        }
        *index = vi - vlo, *count = vn;
        snprintf(who, cap, "%s %lld of %lld", k == 0 ? "Slurm array task" : "mpirun rank", vi - vlo, vn);
        return 0;
    }
    return 0;
}

/* A cell's run, started: this program again with the cell's words, its
   output to OUT/CELL/output.txt, without the launcher's rank variables (a
   cell is a run of its own). */
/* The GPUs a grid's cells are spread over, one cell per GPU: the ids in
   CUDA_VISIBLE_DEVICES when it is set, else every GPU the machine has.
   Fewer than two: the cells are left to choose (none is set). */
static int sweep_gpus(const sweep_grid *g, char ids[][16], int cap) {
    if (!strcmp(g->cfg[0].device, "cpu")) return 0;
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    int n = 0;
    if (v && *v) {
        for (const char *p = v; *p && n < cap;) {
            size_t k = strcspn(p, ",");
            if (k > 0 && k < 16) snprintf(ids[n++], 16, "%.*s", (int)k, p);
            p += k + (p[k] == ',');
        }
    }
#ifdef SSL_CUDA
    else if (!ssl_cuda_emulation()) {
        n = ssl_cuda_device_count();
        if (n > cap) n = cap;
        for (int i = 0; i < n; i++) snprintf(ids[i], 16, "%d", i);
    }
#endif
    return n > 1 ? n : 0;
}

static pid_t sweep_start(const sweep_grid *g, int64_t c, int resume, int64_t threads, const char *gpu) {
    static char buf[1 << 16];
    char *words[520];
    words[0] = "train";
    int n = 1 + sweep_cell_args(g, c, words + 1, 512, buf, sizeof buf - 2 * SSL_STR - 64);
    char extra[2 * SSL_STR + 64], *x = extra;
    if (resume) {
        words[n++] = x;
        x += sprintf(x, "resume=%s", g->cfg[c].out) + 1;
    }
    if (threads) {
        words[n++] = x;
        x += sprintf(x, "threads=%lld", (long long)threads) + 1;
        words[n++] = x;
        x += sprintf(x, "loader_threads=%lld", (long long)threads) + 1;
    }
    words[n] = NULL;
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/output.txt", g->cfg[c].out);
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p != 0) return p;
    static const char *const scrub[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                        "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "PMIX_SIZE", "SLURM_PROCID",
                                        "SLURM_STEP_NUM_TASKS",
                                        "SLURM_NTASKS", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"};
    for (size_t k = 0; k < sizeof scrub / sizeof scrub[0]; k++) unsetenv(scrub[k]);
    if (gpu) setenv("CUDA_VISIBLE_DEVICES", gpu, 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
    execv("/proc/self/exe", words);
    fprintf(stderr, "train: cannot run /proc/self/exe: %s\n", strerror(errno));
    _exit(127);
}

/* The grid's run: this process's share of the cells, parallel at a time.
   Returns 0 when each of them is done or diverged. */
static int sweep_run(sweep_grid *g) {
    int64_t index, count;
    char who[128];
    if (sweep_share(&index, &count, who, sizeof who)) return 1;
    /* OUT (mkdir -p), the command's words kept for ./train summary */
    for (char *p = g->out + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(g->out, 0777); *p = '/'; }
    if (mkdir(g->out, 0777) && errno != EEXIST) {
        fprintf(stderr, "train: cannot create %s: %s\n", g->out, strerror(errno));
        return 1;
    }
    {
        size_t cap = 1024, n = 0;
        for (int i = 0; i < g->argc; i++) cap += strlen(g->argv[i]) + 1;
        char *t = ssl_malloc(cap, "sweep.args");
        for (int i = 0; i < g->argc; i++) n += (size_t)sprintf(t + n, "%s\n", g->argv[i]);
        char path[SSL_STR + 32];
        snprintf(path, sizeof path, "%s/sweep.args", g->out);
        int bad = ssl_write_file_atomic(path, t, n);
        free(t);
        if (bad) { fprintf(stderr, "train: %s\n", ssl_last_error()); return 1; }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t par = g->parallel, threads = 0;
    if (!g->threads_given && par > 1) threads = cores / par > 1 ? cores / par : 1;
    int64_t mine = 0;
    for (int64_t c = index; c < g->cells; c += count) mine++;
    /* several GPUs: slot k of this process's parallel ones on GPU
       (local * parallel + k) mod G, local this task's index on its node */
    char gpus[256][16];
    int ngpu = sweep_gpus(g, gpus, 256);
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK") ? getenv("OMPI_COMM_WORLD_LOCAL_RANK") : getenv("SLURM_LOCALID");
    int64_t local = lr ? atoll(lr) : 0;
    printf("train: a grid of %lld cells in %s (", (long long)g->cells, g->out);
    for (int a = 0; a < g->nax; a++) printf("%s%s: %d", a ? " x " : "", g->ax[a].key, g->ax[a].n);
    printf(")%s%s: %lld to run here, %lld at a time%s", who[0] ? "; " : "", who, (long long)mine, (long long)par,
           threads ? ", the cores shared among them" : "");
    if (ngpu) printf(", one GPU each of %d", ngpu);
    printf("\n");
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns to pass the signal on */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char *running = calloc((size_t)g->cells, 1);
    pid_t *pid = calloc((size_t)(par > 0 ? par : 1), sizeof(pid_t));
    int64_t *cell = calloc((size_t)(par > 0 ? par : 1), sizeof(int64_t));
    double *t0 = calloc((size_t)(par > 0 ? par : 1), sizeof(double));
    int64_t next = index, live = 0, done = 0, failed = 0, forwarded = 0;
    sweep_summary(g, running, 0);
    for (;;) {
        /* start cells while there is room */
        while (!g_stop && live < par && next < g->cells) {
            int64_t c = next;
            next += count;
            sweep_cell s = sweep_read_cell(g, c);
            char name[SSL_STR];
            sweep_cell_name(g, c, name, sizeof name);
            if (s.status == CELL_DONE || s.status == CELL_DIVERGED) {
                printf("sweep: %s: %s already; skipped\n", name, CELL_STATUS[s.status]);
                done++;
                continue;
            }
            char ck[SSL_STR + 32];
            snprintf(ck, sizeof ck, "%s/ckpt.sslt", g->cfg[c].out);
            int resume = access(ck, R_OK) == 0;
            if (mkdir(g->cfg[c].out, 0777) && errno != EEXIST) {
                fprintf(stderr, "train: cannot create %s: %s\n", g->cfg[c].out, strerror(errno));
                failed++;
                continue;
            }
            int slot = 0;
            while (pid[slot]) slot++;
            const char *gpu = ngpu ? gpus[(local * par + slot) % ngpu] : NULL;
            pid[slot] = sweep_start(g, c, resume, threads, gpu);
            if (pid[slot] < 0) {
                fprintf(stderr, "train: cannot start cell %s: %s\n", name, strerror(errno));
                pid[slot] = 0;
                failed++;
                continue;
            }
            cell[slot] = c, t0[slot] = ssl_now(), running[c] = 1, live++;
            printf("sweep: %s: %s%s%s (output in %s/output.txt)\n", name, resume ? "resumed from its checkpoint" : "started",
                   gpu ? " on GPU " : "", gpu ? gpu : "", g->cfg[c].out);
            fflush(stdout);
            sweep_summary(g, running, 1);
        }
        if (!live) break;
        if (g_stop && !forwarded) { /* the running cells checkpoint and stop */
            for (int64_t k = 0; k < par; k++)
                if (pid[k]) kill(pid[k], g_stop);
            forwarded = 1;
            printf("sweep: %s: the running cells checkpoint and stop; the same command continues the grid\n",
                   g_stop == SIGINT ? "interrupted" : "terminated");
            fflush(stdout);
        }
        int wst;
        pid_t p = waitpid(-1, &wst, 0);
        if (p < 0) {
            if (errno == ECHILD) break;
            continue; /* EINTR: a signal, passed on above */
        }
        int slot = 0;
        while (slot < par && pid[slot] != p) slot++;
        if (slot == par) continue;
        int64_t c = cell[slot];
        double wall = ssl_now() - t0[slot];
        int code = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst);
        pid[slot] = 0, running[c] = 0, live--;
        char path[SSL_STR + 32], name[SSL_STR];
        snprintf(path, sizeof path, "%s/log.jsonl", g->cfg[c].out);
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "{\"sweep\": {\"exit\": %d, \"wall_s\": %.2f}}\n", code, wall);
            fclose(f);
        }
        sweep_cell s = sweep_read_cell(g, c);
        sweep_cell_name(g, c, name, sizeof name);
        char knn[32], probe[32];
        sweep_fmt_pct(knn, sizeof knn, s.knn);
        sweep_fmt_pct(probe, sizeof probe, s.probe);
        if (s.status == CELL_DONE) printf("sweep: %s: done in %.1fs (kNN top-1 %s, probe top-1 %s, loss %.4f)\n", name, wall, knn, probe, s.loss), done++;
        else if (s.status == CELL_DIVERGED) printf("sweep: %s: diverged (non-finite loss at step %lld); the grid goes on\n", name, (long long)s.step), done++;
        else if (g_stop) printf("sweep: %s: stopped at step %lld; resumes from its checkpoint\n", name, (long long)s.step);
        else printf("sweep: %s: failed (exit %d; see %s/output.txt)\n", name, code, g->cfg[c].out), failed++;
        fflush(stdout);
        sweep_summary(g, running, 1);
    }
    sweep_summary(g, running, 0);
    printf("sweep: %lld of %lld cells here finished (done or diverged)%s; summary in %s/sweep.md\n", (long long)done, (long long)mine,
           failed ? ", some failed" : g_stop ? ", stopped early" : "", g->out);
    free(running), free(pid), free(cell), free(t0);
    return failed ? 1 : 0;
}

/* The hook in main: a grid, or ./train summary out=DIR; -1 when the command
   is a single run. */
static int sweep_main(int argc, char **argv) {
    sweep_grid g;
    if (!strcmp(argv[1], "summary")) {
        train_cfg c;
        ssl_config_defaults(OPTS, NOPTS, &c);
        if (ssl_config_parse(OPTS, NOPTS, &c, argc - 2, argv + 2, NULL, 0, NULL)) return die("summary");
        char path[SSL_STR + 32];
        snprintf(path, sizeof path, "%s/sweep.args", c.out);
        uint8_t *b;
        size_t n;
        if (ssl_read_file(path, &b, &n)) {
            fprintf(stderr, "train: summary: %s: no grid here (%s)\n", c.out, ssl_last_error());
            return 1;
        }
        char **words = ssl_malloc(sizeof(char *) * (n + 1), "sweep.args");
        int nw = 0;
        for (char *s = (char *)b, *e; s < (char *)b + n; s = e + 1) {
            e = memchr(s, '\n', (size_t)((char *)b + n - s));
            if (!e) break;
            *e = 0;
            words[nw++] = s;
        }
        int r = sweep_parse(&g, nw, words, 0);
        if (r == 0) {
            snprintf(g.out, sizeof g.out, "%s", c.out); /* the grid where it is now */
            for (int64_t k = 0; k < g.cells; k++) {
                char name[SSL_STR];
                sweep_cell_name(&g, k, name, sizeof name);
                snprintf(g.cfg[k].out, sizeof g.cfg[k].out, "%.511s/%.511s", c.out, name);
            }
            r = sweep_summary(&g, NULL, 0);
            if (!r) printf("train: summary of %lld cells written to %s/sweep.md and %s/sweep.jsonl\n", (long long)g.cells, c.out, c.out);
            sweep_free(&g);
        } else if (r == 1) fprintf(stderr, "train: summary: %s has no option with several values\n", path);
        free(words);
        free(b);
        return r ? 1 : 0;
    }
    int r = sweep_parse(&g, argc - 1, argv + 1, 1);
    if (r == 1) return -1;
    if (r < 0) return 1;
    r = sweep_run(&g);
    sweep_free(&g);
    return r;
}
/* ==== end of grids ======================================================= */

int main(int argc, char **argv) {
    train_cfg cfg;
    ssl_config_defaults(OPTS, NOPTS, &cfg);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: ./train METHOD key=value ...   (METHOD: simclr, vicreg, barlow, byol)\n\n");
        ssl_config_usage(stdout, OPTS, NOPTS);
        printf("\ngrids: an option given a comma list (lr=0.3,0.5 tau=0.1,0.2) runs every combination, each cell a run in\n"
               "OUT/CELL (named by its values); the same command again skips finished cells and resumes the others.\n"
               "parallel=N runs N at once; Slurm array tasks and mpirun ranks each take their share. OUT/sweep.md,\n"
               "OUT/sweep.jsonl and OUT/sweep.png summarize it; ./train summary out=OUT rebuilds them from the cells' logs.\n");
        return argc < 2 ? 1 : 0;
    }
    { /* a grid, or ./train summary out=DIR: the grid section above */
        int r = sweep_main(argc, argv);
        if (r >= 0) return r;
    }
    /* under mpirun or srun: MPI, this rank, the world; else a world of one */
    if (ssl_comm_init(&g_comm, cfg.watchdog)) return die("launch");
    if (g_comm.rank > 0 && !freopen("/dev/null", "w", stdout)) return die("stdout"); /* rank 0 speaks */
    int rc = run(argc, argv);
    fflush(stdout);
    ssl_comm_free(&g_comm);
    return rc;
}

static int run(int argc, char **argv) {
    train_cfg cfg;
    ssl_config_defaults(OPTS, NOPTS, &cfg);
    /* everything is checked before any work: the method, every key=value */
    const char *pos[2];
    int npos = 0;
    if (ssl_config_parse(OPTS, NOPTS, &cfg, argc - 1, argv + 1, pos, 1, &npos)) return die("bad option");
    if (npos == 1 && ssl_config_set(OPTS, NOPTS, &cfg, "method", pos[0])) return die("bad method");
    if (cfg.resume[0]) {
        /* the run's own config, then what this command line says */
        char path[SSL_STR + 32];
        snprintf(path, sizeof path, "%s/ckpt.sslt", cfg.resume);
        ssl_tfile f;
        if (ssl_tfile_read(path, &f)) return die("resume");
        train_cfg saved;
        ssl_config_defaults(OPTS, NOPTS, &saved);
        int r = apply_meta(&saved, f.meta);
        ssl_tfile_free(&f);
        if (r) return die("resume: the checkpoint's config");
        char resume[SSL_STR], out[SSL_STR];
        snprintf(resume, sizeof resume, "%s", cfg.resume);
        saved.resume[0] = 0;
        snprintf(saved.out, sizeof saved.out, "%s", resume);
        if (ssl_config_parse(OPTS, NOPTS, &saved, argc - 1, argv + 1, pos, 1, &npos)) return die("bad option");
        if (npos == 1) ssl_config_set(OPTS, NOPTS, &saved, "method", pos[0]);
        snprintf(out, sizeof out, "%s", saved.out);
        cfg = saved;
        snprintf(cfg.resume, sizeof cfg.resume, "%s", resume);
        snprintf(cfg.out, sizeof cfg.out, "%s", out);
    }
    int on_gpu = !strcmp(cfg.device, "cuda");
#ifdef SSL_CUDA
    if (!strcmp(cfg.device, "auto")) on_gpu = ssl_cuda_device_count() > 0;
#endif
    if (!strcmp(cfg.device, "auto")) printf("device: %s (device=auto)\n", on_gpu ? "cuda" : "cpu");
    /* many ranks: every rank the same config, the batch shared evenly, a
       GPU each; all checked before any work */
    const int world = g_comm.world;
    g_comm.watchdog_s = cfg.watchdog;
    /* resolved here, not in cfg: a checkpoint keeps -1 and resumes at any world size */
    const int sync_bn = cfg.sync_bn < 0 ? world > 1 : (int)cfg.sync_bn;
    if (world > 1) {
        static char mine[1 << 16];
        ssl_config_dump(OPTS, NOPTS, &cfg, mine, sizeof mine);
        if (ssl_comm_same(&g_comm, mine, strlen(mine), "configuration (command line)")) return die("launch");
        if (cfg.bs < world || cfg.bs % world) {
            ssl__fail("bs=%lld is the global batch: it must be a multiple of the %d ranks (each rank takes bs/%d)",
                      (long long)cfg.bs, world, world);
            return die("launch");
        }
        if (cfg.dump_views[0]) { /* each rank holds a slice of each batch: the dump is a one-process check */
            ssl__fail("dump_views= writes one process's batches; run it on one rank");
            return die("launch");
        }
        printf("train: %d ranks (%d on this node), %lld images a rank of each global batch of %lld%s\n", world,
               g_comm.local_world, (long long)cfg.bs / world, (long long)cfg.bs, sync_bn ? ", SyncBN" : "");
    }
    if (!on_gpu && *ssl_blas_kernels())
        printf("device: OpenBLAS kernels %s\n", ssl_blas_kernels());
    if (!on_gpu && *ssl_blas_warning()) fprintf(stderr, "train: warning: %s\n", ssl_blas_warning());
    if (on_gpu) {
#ifdef SSL_CUDA
        /* SSL_CUDA_EMULATE=1: the GPU code path on the host (tests) */
        const char *emu = getenv("SSL_CUDA_EMULATE");
        if (emu && (*emu == '1' || *emu == '2')) ssl_cuda_set_emulation(*emu - '0'); /* 2: strict */
        /* many ranks: a GPU each (its local rank's), NCCL between them */
        if (ssl_comm_init_gpu(&g_comm)) return die("launch");
        if (!ssl_cuda_emulation() && ssl_cuda_device_count() < 1) {
            fprintf(stderr, "train: device=cuda: no CUDA device is visible (nvidia-smi?); use device=cpu\n");
            return 1;
        }
        ssl_cuda_set_precision(!strcmp(cfg.precision, "bf16"));
        if (ssl_cuda_set_conv(cfg.conv)) {
            fprintf(stderr, "train: conv=%s: %s\n", cfg.conv, ssl_last_error());
            return 2;
        }
        if (!strcmp(cfg.keep_cols, "yes") && strcmp(cfg.conv, "gemm")) {
            /* kept columns are the GEMM path's: every convolution that needs them would leave cuDNN */
            fprintf(stderr, "train: keep_cols=yes keeps im2col columns for the GEMM path, which then takes every convolution "
                            "that needs them: conv=%s would be the GEMM path in name only; use keep_cols=auto or no\n",
                    cfg.conv);
            return 2;
        }
#else
        fprintf(stderr, "train: device=cuda: this ./train was built without CUDA (nvcc was not found by make); use device=cpu\n");
        return 1;
#endif
    }
    if (!cfg.data[0] && default_data(&cfg, on_gpu, argc, argv) != 0) return die("data");
    int method = ssl_method_parse(cfg.method);
    if (method == SSL_METHOD_BYOL && !cfg.predictor[0]) { /* 4096-(the projector's output) */
        const char *last = strrchr(cfg.projector, '-');
        snprintf(cfg.predictor, sizeof cfg.predictor, "4096-%.32s", last ? last + 1 : cfg.projector);
    }
    if (!strcmp(cfg.negatives, "patch")) { /* Instance-SimCLR: the positives are the noise views */
        if (method != SSL_METHOD_SIMCLR) {
            fprintf(stderr, "train: negatives=patch (Instance-SimCLR) is an option of simclr, not %s\n", cfg.method);
            return 1;
        }
        if (strcmp(cfg.views, "noise") && given(argc, argv, "views")) {
            fprintf(stderr, "train: negatives=patch (Instance-SimCLR) takes the whole image with noise as its positives "
                            "(views=noise), not views=%s\n", cfg.views);
            return 1;
        }
        snprintf(cfg.views, sizeof cfg.views, "noise");
    }
    if (method != SSL_METHOD_BYOL && cfg.predictor[0]) {
        fprintf(stderr, "train: predictor=%s: only byol uses a predictor\n", cfg.predictor);
        return 1;
    }
    if (cfg.res_start && (!cfg.res_end || cfg.ramp_end <= cfg.ramp_start)) {
        fprintf(stderr, "train: progressive resolution needs res_end and ramp_end > ramp_start (got res_start=%lld res_end=%lld ramp %lld..%lld)\n",
                (long long)cfg.res_start, (long long)cfg.res_end, (long long)cfg.ramp_start, (long long)cfg.ramp_end);
        return 1;
    }
    ssl_model_config mc = ssl_model_config_default();
    mc.depth = !strcmp(cfg.arch, "resnet34") ? 34 : !strcmp(cfg.arch, "resnet50") ? 50 : 18;
    mc.cifar_stem = !strcmp(cfg.stem, "cifar");
    mc.width = cfg.width;
    mc.zero_init_residual = cfg.zero_init;
    mc.seed = (uint64_t)cfg.seed;
    if (strlen(cfg.projector) >= sizeof mc.projector || strlen(cfg.predictor) >= sizeof mc.predictor) {
        fprintf(stderr, "train: projector/predictor spec too long\n");
        return 1;
    }
    snprintf(mc.projector, sizeof mc.projector, "%.255s", cfg.projector); /* lengths checked above */
    snprintf(mc.predictor, sizeof mc.predictor, "%.255s", cfg.predictor);
    int w[64];
    if (ssl_mlp_spec_parse(mc.projector, w, 64) < 0 || ssl_mlp_spec_parse(mc.predictor, w, 64) < 0) return die("bad option");

    /* the loader, with the view overrides */
    int res = res_at(&cfg, 0);
    ssl_loader_config lc;
    ssl_loader_config_init(&lc, cfg.data, cfg.views, res, (int)(cfg.bs / world));
    lc.rank = g_comm.rank, lc.world = world; /* this rank's slice of every global batch */
    for (int v = 0; v < 2; v++) {
        ssl_view_recipe *r = &lc.views[v];
#define OVR(f) if (cfg.f >= 0) r->f = (float)cfg.f
        OVR(scale_min); OVR(scale_max); OVR(flip_p); OVR(jitter_p); OVR(gray_p); OVR(blur_p); OVR(solarize_p); OVR(noise_p);
#undef OVR
        if (ssl_view_recipe_check(r)) return die("bad view override");
    }
    if (!strcmp(cfg.negatives, "patch")) { /* the third view: each image's patch, its only negative */
        if (ssl_view_patch(res, (float)cfg.patch_scale, &lc.views[2])) return die("patch view");
        lc.num_views = 3;
    }
    lc.order = !strcmp(cfg.order, "quasi") ? SSL_ORDER_QUASI : !strcmp(cfg.order, "sequential") ? SSL_ORDER_SEQUENTIAL : SSL_ORDER_RANDOM;
    lc.threads = (int)cfg.loader_threads;
    lc.seed = (uint64_t)cfg.seed;
    lc.output_u8 = on_gpu; /* uint8 crops; the colour ops run on the GPU */
#ifdef SSL_CUDA
    if (on_gpu) {
        lc.u8_alloc = ssl_cuda_host_alloc, lc.u8_free = ssl_cuda_host_free; /* page-locked: asynchronous copies */
        lc.batches_ahead = 4; /* the step holds two (this one and the next, being copied): two more being filled */
    }
#endif
    ssl_loader *loader = ssl_loader_open(&lc);
    if (!loader) return die("data");
    /* an epoch's size is known from the pack (the loader computes it when an
       epoch starts): drop_last batches of bs, one rank */
    int64_t per_epoch = (int64_t)(ssl_loader_pack(loader)->h.num_samples / (uint64_t)cfg.bs);
    if (per_epoch < 1) {
        fprintf(stderr, "train: %s has %lld samples, fewer than one batch of %lld\n", cfg.data,
                (long long)ssl_loader_pack(loader)->h.num_samples, (long long)cfg.bs);
        return 1;
    }
    int classes = (int)ssl_loader_pack(loader)->h.num_classes;

    ssl_train_config tc = ssl_train_config_default(method);
    tc.patch_negatives = lc.num_views == 3;
    tc.tau = (float)cfg.tau, tc.sim = (float)cfg.sim, tc.std = (float)cfg.std, tc.cov = (float)cfg.cov;
    tc.lambd = (float)cfg.lambd, tc.ema_base = cfg.ema;
    tc.optim.kind = opt_kind(cfg.optimizer);
    tc.optim.momentum = cfg.momentum, tc.optim.beta1 = cfg.momentum;
    tc.optim.weight_decay = cfg.wd, tc.optim.eta = cfg.eta;
    tc.lr = cfg.lr * (cfg.lr_scale ? (double)cfg.bs / 256.0 : 1.0);
    tc.total_steps = cfg.epochs * per_epoch;
    tc.warmup_steps = (int64_t)(cfg.warmup * (double)per_epoch);
    tc.end_ratio = cfg.end_lr;
    tc.probe_classes = classes > 1 ? classes : 0;
    tc.probe_optim.kind = opt_kind(cfg.probe_optim);
    tc.probe_optim.momentum = 0.9;
    tc.probe_lr = cfg.probe_lr;
#ifdef SSL_OPENBLAS
    if (cfg.threads) openblas_set_num_threads((int)cfg.threads);
#endif
    tc.device = on_gpu ? SSL_DEV_CUDA : SSL_DEV_CPU;
    tc.sync_phases = (int)cfg.split; /* else the host queues the next work while the GPU runs */
    ssl_trainer t;
    if (ssl_trainer_init(&t, &mc, &tc)) return die("model");
    if (ssl_trainer_set_comm(&t, &g_comm, sync_bn)) return die("model");
    t.online.keep_cols = !strcmp(cfg.keep_cols, "yes") ? 1 : !strcmp(cfg.keep_cols, "no") ? 0 : -1;
    int64_t plans_seen = 0;
#ifdef SSL_CUDA
    float *gview[3] = {NULL, NULL, NULL}; /* the views on the GPU */
    if (on_gpu) {
        int rmax = (int)(cfg.res_end > res ? cfg.res_end : res);
        for (int v = 0; v < lc.num_views; v++)
            gview[v] = (float *)ssl_cuda_malloc(sizeof(float) * (size_t)(cfg.bs / world) * rmax * rmax * 3, "augmented views");
    }
#endif

    char ckpt[SSL_STR + 32], logpath[SSL_STR + 32];
    if (g_comm.rank == 0 && mkdir(cfg.out, 0777) && errno != EEXIST) { ssl__fail("cannot create %s: %s", cfg.out, strerror(errno)); return die("out"); }
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.sslt", cfg.out);
    snprintf(logpath, sizeof logpath, "%s/log.jsonl", cfg.out);
    int64_t epoch = 0, batch = 0;
    int have_ckpt = 0;
    if (cfg.resume[0]) {
        char path[SSL_STR + 32];
        snprintf(path, sizeof path, "%s/ckpt.sslt", cfg.resume);
        int64_t user[4] = {0, 0, 0, 1};
        if (ssl_trainer_load(&t, path, user, 4)) return die("resume");
        epoch = user[0], batch = user[1];
        if (user[3] != world) printf("train: the checkpoint was written by %lld rank%s, this run has %d: the same global batches follow\n",
                                     (long long)user[3], user[3] == 1 ? "" : "s", world);
        if (batch >= per_epoch) epoch++, batch = 0;
        have_ckpt = 1;
    }
    FILE *log = g_comm.rank == 0 ? fopen(logpath, cfg.resume[0] ? "a" : "w") : fopen("/dev/null", "w"); /* rank 0 logs */
    if (!log) { ssl__fail("cannot write %s: %s", logpath, strerror(errno)); return die("log"); }

    printf("train: %s, %s (%s stem, width %g: %lld weights), projector %s%s%s\n", cfg.method, cfg.arch, cfg.stem, cfg.width,
           (long long)ssl_model_num_weights(&t.online), cfg.projector[0] ? cfg.projector : "none",
           cfg.predictor[0] ? ", predictor " : "", cfg.predictor);
    printf("train: %s: %lld samples, %d classes, %lld steps/epoch; lr %g (peak), %s\n", cfg.data,
           (long long)ssl_loader_pack(loader)->h.num_samples, classes, (long long)per_epoch, tc.lr, cfg.optimizer);
    if (tc.patch_negatives)
        printf("train: Instance-SimCLR: positives the whole image with noise, each image's only negative a patch of %g of it\n",
               cfg.patch_scale);
    ssl_config_print(stdout, OPTS, NOPTS, &cfg);
    if (cfg.resume[0]) printf("train: resumed from %s at epoch %lld, batch %lld (step %lld)\n", cfg.resume, (long long)epoch, (long long)batch, (long long)t.step);
    {
        static char json[1 << 16];
        ssl_config_json(OPTS, NOPTS, &cfg, json, sizeof json);
        fprintf(log, "{\"config\": %s, \"resumed_at_step\": %lld}\n", json, (long long)t.step);
        fflush(log);
    }
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    int64_t total = tc.total_steps, at_start = t.step;
    double t0 = ssl_now(), tlast = t0, sum_loss = 0, sum_acc = 0;
    double split[4] = {0, 0, 0, 0};
    int64_t nsum = 0, imgs = 0;
    double wait_last = 0; /* the loader's wait_s at the last progress line */
    double comm_last = g_comm.seconds; /* and the communicator's seconds and bytes */
    int64_t bytes_last = g_comm.bytes;
    int cur_res = -1, rc = 0, stopped = 0;
    view_dump dump = {0};
    while (epoch < cfg.epochs && !stopped) {
        int r = res_at(&cfg, epoch);
        if (r != cur_res) { ssl_loader_set_resolution(loader, r); cur_res = r; }
        if (ssl_loader_start_epoch(loader, (int)epoch, batch)) { rc = die("loader"); goto done; }
        /* the workers go on into the next epoch as this one ends: the step
           does not wait at the boundary (1 = it needs bigger buffers, and
           that epoch's start drains the ring instead) */
        if (epoch + 1 < cfg.epochs && ssl_loader_queue_epoch(loader, (int)epoch + 1, res_at(&cfg, epoch + 1)) < 0) {
            rc = die("loader");
            goto done;
        }
        const ssl_batch *b = ssl_loader_next(loader), *nb = NULL;
        for (; b; b = nb ? nb : ssl_loader_next(loader), nb = NULL) {
            ssl_step_stats st;
            const float *v0 = b->views[0], *v1 = b->views[1], *vp = lc.num_views > 2 ? b->views[2] : NULL;
#ifdef SSL_CUDA
            if (on_gpu) { /* the crops' colour ops, flip and normalize, on the GPU */
                ssl_cuda_busy_mark(0);
                for (int v = 0; v < lc.num_views; v++)
                    ssl_cuda_augment_u8(b->views_u8[v], b->params[v], b->n, b->w[v], b->h[v], 255.0f, lc.views[v].mean,
                                        lc.views[v].std, gview[v]);
                v0 = gview[0], v1 = gview[1], vp = gview[2];
                /* the next batch's crops (page-locked) copy while this step
                   computes; waiting for the loader is not GPU time */
                ssl_cuda_busy_mark(1);
                nb = ssl_loader_next(loader);
                ssl_cuda_busy_mark(0);
                if (nb)
                    for (int v = 0; v < lc.num_views; v++) ssl_cuda_prefetch_u8(nb->views_u8[v], (size_t)nb->n * nb->w[v] * nb->h[v] * 3);
            }
#endif
            if (cfg.dump_views[0]) {
                int64_t vd[4] = {b->n, b->h[0], b->w[0], 3}, ld[1] = {b->n};
                dump_add(&dump, t.step, "view0", SSL_F32, v0, 4, vd, on_gpu);
                dump_add(&dump, t.step, "view1", SSL_F32, v1, 4, vd, on_gpu);
                dump_add(&dump, t.step, "labels", SSL_I32, b->labels, 1, ld, 0);
            }
            if (ssl_train_step3(&t, v0, v1, vp, b->labels, b->n, b->h[0], b->w[0], &st)) {
                fprintf(stderr, "train: %s\n", ssl_last_error());
                if (have_ckpt) fprintf(stderr, "train: stopped; the last good checkpoint is %s (left intact)\n", ckpt);
                else fprintf(stderr, "train: stopped; no checkpoint was written before this step\n");
                fprintf(log, "{\"error\": \"non-finite loss\", \"step\": %lld}\n", (long long)t.step);
                ssl_loader_release(loader, b);
                drop_prefetch(loader, nb);
                rc = 1;
                goto done;
            }
#ifdef SSL_CUDA
            if (on_gpu) ssl_cuda_busy_mark(1);
#endif
            if (on_gpu && t.online.plans != plans_seen) { /* a new batch or resolution: what it takes on the device */
                const ssl_model *m = &t.online;
                plans_seen = m->plans;
                printf("device: planned batch %d at %dx%d: %.2f GB of activations for the %s views, im2col columns %s (%.2f GB)\n",
                       m->n, m->h, m->w, (double)m->slots * m->slot_bytes / 1e9,
                       strcmp(cfg.negatives, "patch") ? "two" : "three", m->planned_cols ? "kept" : "rebuilt in the backward",
                       (double)m->slots * m->cols_bytes / 1e9);
            }
            imgs += b->n;
            batch++;
            ssl_loader_release(loader, b);
            sum_loss += st.loss, sum_acc += st.probe_acc, nsum++;
            split[0] += st.t_forward, split[1] += st.t_loss, split[2] += st.t_backward, split[3] += st.t_optim;
            int last = batch == per_epoch && epoch == cfg.epochs - 1;
            /* the run's first step is logged too, so curves start at its initial weights */
            if (t.step % cfg.log_every == 0 || t.step == at_start + 1 || last) {
                double now = ssl_now(), ips = (double)imgs * world / (now - tlast) /* the global batch's images */, el = now - t0;
                /* the share of the time the step waited for the loader (the GPU idle for want of data) */
                double wait_now = ssl_loader_get_stats(loader).wait_s, waited = (wait_now - wait_last) / (now - tlast);
                wait_last = wait_now;
                /* the share of the time the GPU had work (-1: not measured) */
                double busy = -1;
                char busys[32] = "";
#ifdef SSL_CUDA
                if (on_gpu && (busy = ssl_cuda_busy_take()) >= 0) {
                    busy /= now - tlast;
                    snprintf(busys, sizeof busys, "GPU busy %.0f%% ", 100 * busy);
                }
#endif
                double eta = (double)(total - t.step) * el / (double)(t.step - at_start);
                char etas[32];
                ssl_format_duration(eta, etas, sizeof etas);
                /* the step's split: exact on the CPU and with split=1; on the GPU
                   otherwise only host time, so left out (-1 in the log) */
                char splits[96] = "";
                if (!on_gpu || cfg.split)
                    snprintf(splits, sizeof splits, " fwd %.0f%% loss %.0f%% bwd %.0f%% opt %.0f%%", 100 * split[0] / (now - tlast),
                             100 * split[1] / (now - tlast), 100 * split[2] / (now - tlast), 100 * split[3] / (now - tlast));
                else
                    for (int k = 0; k < 4; k++) split[k] = -nsum;
                /* many ranks: the share of the time in collectives (this rank's wait included) */
                double comm_s = g_comm.seconds - comm_last, comm_mb = (double)(g_comm.bytes - bytes_last) / 1e6;
                comm_last = g_comm.seconds, bytes_last = g_comm.bytes;
                char comms[48] = "";
                if (world > 1) snprintf(comms, sizeof comms, " comm %.0f%% x%d ranks", 100 * comm_s / (now - tlast), world);
                printf("epoch %lld/%lld step %lld/%lld loss %.4f probe %.1f%% lr %.4g %.0f img/s ETA %s (%sdata wait %.0f%%%s%s)\n",
                       (long long)epoch + 1, (long long)cfg.epochs, (long long)t.step, (long long)total, sum_loss / nsum,
                       100 * sum_acc / nsum, st.lr, ips, etas, busys, 100 * waited, splits, comms);
                /* device memory held (a run whose figure keeps growing leaks; -1 on the CPU) and plans made so far */
                double dev_gb = -1;
#ifdef SSL_CUDA
                if (on_gpu) dev_gb = (double)ssl_cuda_live_bytes() / 1e9;
#endif
                fprintf(log, "{\"epoch\": %lld, \"epochs_done\": %.4f, \"step\": %lld, \"loss\": %.6f, \"probe_acc\": %.4f, \"lr\": %.6g, \"ema_tau\": %.6f, \"res\": %d, \"img_per_s\": %.1f, \"data_wait\": %.4f, \"gpu_busy\": %.4f, \"t_forward\": %.4f, \"t_loss\": %.4f, \"t_backward\": %.4f, \"t_optim\": %.4f, \"dev_gb\": %.4f, \"plans\": %lld, \"world\": %d, \"t_comm\": %.4f, \"comm_mb\": %.4f, \"elapsed\": %.1f}\n",
                        (long long)epoch, (double)t.step / (double)per_epoch, (long long)t.step, sum_loss / nsum, sum_acc / nsum, st.lr, st.ema_tau, cur_res, ips, waited, busy,
                        split[0] / nsum, split[1] / nsum, split[2] / nsum, split[3] / nsum, dev_gb, (long long)t.online.plans, world, comm_s / nsum, comm_mb / nsum, el);
                fflush(log);
                fflush(stdout);
                sum_loss = sum_acc = 0, nsum = 0, imgs = 0, tlast = now;
                memset(split, 0, sizeof split);
            }
            /* a signal to any rank stops every rank after the same step: the
               decision is the all-reduced flag, never a rank's own (a signal
               landing on one rank during or after the all-reduce waits for
               the next step's; overwriting it with the 0 sent would lose it) */
            int64_t stop_sig = g_stop;
            if (world > 1) {
                if (ssl_comm_max_i64(&g_comm, &stop_sig, 1)) { rc = die("stop flag"); goto done; }
                if (stop_sig) g_stop = (sig_atomic_t)stop_sig;
            }
            if (stop_sig || (cfg.max_steps && t.step >= cfg.max_steps)) {
                drop_prefetch(loader, nb);
                stopped = 1;
                break;
            }
        }
        if (!stopped) epoch++, batch = 0;
        int every = cfg.ckpt_every && epoch % cfg.ckpt_every == 0;
        if (stopped || every || epoch == cfg.epochs) {
            if (save(&t, &cfg, ckpt, epoch, batch)) { rc = die("checkpoint"); goto done; }
            have_ckpt = 1;
            fprintf(log, "{\"checkpoint\": \"%s\", \"epoch\": %lld, \"batch\": %lld, \"step\": %lld}\n", ckpt, (long long)epoch,
                    (long long)batch, (long long)t.step);
            fflush(log);
            if (stopped)
                printf("train: %s at step %lld; checkpoint written to %s (continue with resume=%s)\n",
                       g_stop ? (g_stop == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)") : "max_steps reached",
                       (long long)t.step, ckpt, cfg.out);
        }
    }
    if (cfg.epochs == 0 && save(&t, &cfg, ckpt, 0, 0)) { rc = die("checkpoint"); goto done; }
    ssl_loader_close(loader);
    loader = NULL;
    if (!stopped && cfg.val[0] && g_comm.rank == 0) { /* rank 0 alone, on the whole of both packs */
        /* on the trainer's device (the GPU when it trained there) */
        if (evaluate(&t, &cfg, res_at(&cfg, cfg.epochs ? cfg.epochs - 1 : 0), classes, log)) rc = die("evaluation");
    }
done:
    if (cfg.dump_views[0] && dump_write(&dump, cfg.dump_views)) rc = die("dump_views");
    if (loader) ssl_loader_close(loader);
    fclose(log);
    ssl_trainer_free(&t);
#ifdef SSL_CUDA
    for (int v = 0; v < 3; v++)
        if (gview[v]) ssl_cuda_free(gview[v]);
#endif
    return rc;
}
