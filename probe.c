/* probe.c - ./probe: linear, MLP and kNN evaluation of a backbone, and
   export to PyTorch.

     ./probe ckpt=runs/a train=fmnist-train.ssl eval=fmnist-test.ssl
     ./probe ckpt=runs/a train=a.ssl,b.ssl eval=a_test.ssl,b_test.ssl modes=knn k=20,200
     ./probe init=random arch=resnet18 stem=cifar train=... eval=...   (the random-init baseline)
     ./probe import=resnet18.safetensors train=... eval=...            (torchvision weights)
     ./probe ckpt=runs/a export=backbone.safetensors                   (for PyTorch)
     ./probe help                                                      (every option)

   THE BACKBONE comes from exactly one of
     ckpt=DIR|FILE    a ./train checkpoint (DIR means DIR/ckpt.sslt). The model
                      is rebuilt from the checkpoint's meta text (the training
                      config: arch, stem, width) and only the backbone's tensors
                      are read: heads, target, optimizer state are ignored.
                      The file's CRCs are checked; a corrupt or truncated file
                      is refused with a message naming it.
     init=random      torchvision's init of arch/stem/width/seed: the baseline.
     import=FILE      safetensors with torchvision's names and layouts (e.g.
                      torchvision.models.resnet18().state_dict() saved with
                      safetensors.torch.save_file). Architecture, stem and
                      width are read off the tensor shapes; fc.* and
                      *.num_batches_tracked are ignored.

   FEATURES are the backbone's global-average-pooled output, eval-mode BN,
   under the evaluation transform at `res`: images larger than res get the
   usual protocol (resize the shorter side to floor(res*256/224), antialiased,
   then the centre res x res crop, computed as one resample of the crop's
   box); images no larger than res on both sides (CIFAR at 32, MNIST) are
   resized to res x res. Then [0,1] scaling and ImageNet mean/std, as the
   training views. Extraction runs `threads` workers, each with its own copy
   of the model and single-threaded BLAS (faster than one model with
   threaded BLAS on small images; see bench/probe_bench.sh).

   THE FEATURE CACHE (cache=1): OUT/cache/NAME-SPLIT-HASH.sslt, with tensors
   "features" [n, dim] and "labels" [n] and, as meta, the key it was made
   under: the backbone (CRC32 and size of the checkpoint or import file, or
   the init config), the pack (absolute path, size, header CRC), res and the
   transform's version. HASH names (backbone path, pack path, res), so
   probing a retrained checkpoint at the same path finds the old file, sees
   a different key, says so and extracts again.

   RESULTS: one line per probe as it finishes, then a table (dataset x mode:
   top-1, top-5, best epoch, seconds), also written to OUT/probe.json.
   Linear probe: AdamW, cosine decay, on standardized frozen features, no
   augmentation (the paper's offline probe); MLP probe: Linear-BN-ReLU per
   hidden width, early stopping on `val` of the training pack held out
   (patience epochs); kNN: cosine similarity, votes weighted exp(s/T).

   EXPORT writes the backbone in safetensors with torchvision's names, in
   torchvision's state_dict order, conv weights OIHW, BN running statistics,
   and for each BN an int64 scalar "num_batches_tracked" (torchvision has
   it, so load_state_dict(strict=True) needs it): for a checkpoint 2 x the
   optimizer steps (each step runs two training forwards, one per view),
   0 for a random init, the imported value for an import. There is no
   "fc": supply one (or load with strict=False). The CIFAR stem (3x3/1 conv1,
   no max pool) needs torchvision's resnet with conv1 replaced by a 3x3
   stride-1 conv and maxpool by nn.Identity (tests/test_export.py does it).

   dump=FILE writes the first dump_n inputs of the first eval pack (or, with
   no pack, a seeded random input at res) as "input" [n,res,res,3] NHWC,
   their "features" [n,dim] and "labels", for comparing with PyTorch. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/stat.h>

typedef struct {
    char ckpt[SSL_STR], init[SSL_STR], import[SSL_STR];
    char arch[SSL_STR], stem[SSL_STR];
    double width;
    int64_t seed;
    char train[SSL_STR], eval[SSL_STR], modes[SSL_STR];
    char k[SSL_STR];
    double temperature;
    int64_t linear_epochs, linear_bs;
    double linear_lr, linear_wd, linear_val;
    int64_t mlp_epochs, mlp_bs;
    double mlp_lr, mlp_wd;
    char mlp_hidden[SSL_STR];
    double val;
    int64_t patience, probe_seed;
    int64_t res, batch, threads, limit;
    char device[SSL_STR], conv[SSL_STR], out[SSL_STR];
    int cache;
    char export_[SSL_STR], dump[SSL_STR];
    int64_t dump_n;
} probe_cfg;

#define C probe_cfg
static const ssl_opt OPTS[] = {
    SSL_OPT_S(C, ckpt, "", "backbone: a ./train checkpoint (its directory or the .sslt file)"),
    SSL_OPT_C(C, init, "none", "none|random", "backbone: random = torchvision's init of arch/stem/width/seed (the baseline)"),
    SSL_OPT_S(C, import, "", "backbone: torchvision-named safetensors weights (fc ignored; arch read off the shapes)"),
    SSL_OPT_C(C, arch, "resnet18", "resnet18|resnet34|resnet50", "init=random: backbone"),
    SSL_OPT_C(C, stem, "cifar", "cifar|imagenet", "init=random: cifar = 3x3/1 conv, no max pool; imagenet = 7x7/2 + max pool"),
    SSL_OPT_F(C, width, "1", 0.015625, 64, "init=random: width multiplier (base width 64*width)"),
    SSL_OPT_I(C, seed, "0", 0, 1LL << 62, "init=random: the init seed"),
    SSL_OPT_S(C, train, "", "training packs, comma-separated (features the probes and kNN learn from)"),
    SSL_OPT_S(C, eval, "", "evaluation packs, comma-separated, one per training pack"),
    SSL_OPT_S(C, modes, "linear,mlp,knn", "comma-separated: linear, mlp, knn"),
    SSL_OPT_S(C, k, "20,200", "kNN neighbour counts, comma-separated"),
    SSL_OPT_F(C, temperature, "0.07", 1e-6, 100, "kNN vote temperature: weight exp(cos/T)"),
    SSL_OPT_I(C, linear_epochs, "100", 1, 100000, "linear probe epochs"),
    SSL_OPT_I(C, linear_bs, "256", 1, 1 << 20, "linear probe batch size"),
    SSL_OPT_F(C, linear_lr, "0.01", 0, 100, "linear probe AdamW peak lr (cosine to 0)"),
    SSL_OPT_F(C, linear_wd, "0", 0, 10, "linear probe weight decay"),
    SSL_OPT_F(C, linear_val, "0", 0, 0.9, "linear probe: fraction held out for early stopping (0: report the last epoch)"),
    SSL_OPT_I(C, mlp_epochs, "50", 1, 100000, "MLP probe epochs (at most)"),
    SSL_OPT_I(C, mlp_bs, "256", 1, 1 << 20, "MLP probe batch size"),
    SSL_OPT_F(C, mlp_lr, "0.001", 0, 100, "MLP probe AdamW peak lr (cosine to 0)"),
    SSL_OPT_F(C, mlp_wd, "0.0001", 0, 10, "MLP probe weight decay"),
    SSL_OPT_S(C, mlp_hidden, "2048-2048", "MLP probe hidden widths (Linear-BN-ReLU each), 1 to 4"),
    SSL_OPT_F(C, val, "0.1", 0, 0.9, "MLP probe: fraction of the training pack held out for early stopping"),
    SSL_OPT_I(C, patience, "5", 0, 100000, "early stopping: epochs without a better validation top-1 (0: never stop)"),
    SSL_OPT_I(C, probe_seed, "0", 0, 1LL << 62, "seed of the probes' init, split and order"),
    SSL_OPT_I(C, res, "0", 0, 4096, "evaluation resolution (0: the checkpoint's training resolution, 32 without one; see the transform in probe.c's header)"),
    SSL_OPT_I(C, batch, "128", 1, 1 << 16, "feature extraction batch size"),
    SSL_OPT_I(C, threads, "0", 0, 1024, "feature extraction workers (0 = all cores)"),
    SSL_OPT_I(C, limit, "0", 0, 1LL << 40, "use only the first N images of each pack (0 = all)"),
    SSL_OPT_C(C, device, "auto", "auto|cpu|cuda", "where features are extracted (auto: the GPU when there is one)"),
    SSL_OPT_C(C, conv, "gemm", "gemm|cudnn", "GPU: convolutions through im2col + cuBLAS, or cuDNN's kernels (a make CUDNN=1 build)"),
    SSL_OPT_S(C, out, "runs/probe", "output directory: probe.json, cache/"),
    SSL_OPT_B(C, cache, "1", "reuse features cached in OUT/cache (keyed by backbone, pack and res)"),
    {"export", SSL_OPT_STR, "", 0, 0, NULL, "write the backbone as torchvision-named safetensors to this file", offsetof(C, export_)},
    SSL_OPT_S(C, dump, "", "write inputs and features of the first dump_n eval images (SSLT) to this file"),
    SSL_OPT_I(C, dump_n, "8", 1, 4096, "images in dump"),
};
#undef C
#define NOPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

#define TRANSFORM_VERSION "eval-transform v1: shorter side floor(res*256/224) + centre crop, tiny images resized; /255; imagenet mean/std"
#define MAX_PAIRS 32
#define MAX_K 16

static int die(const char *what) {
    fprintf(stderr, "probe: %s%s%s\n", what, *ssl_last_error() ? ": " : "", ssl_last_error());
    return 1;
}

/* ---- small helpers ---- */

/* Splits a comma list into at most max items (in place; empty items are an error). */
static int split_list(char *s, char **items, int max, const char *what) {
    int n = 0;
    if (!*s) return 0;
    for (char *p = s;;) {
        char *e = strchr(p, ',');
        if (e) *e = 0;
        if (!*p) return ssl__fail("%s: empty item in the list", what);
        if (n == max) return ssl__fail("%s: more than %d items", what, max);
        items[n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

/* "fmnist-train.ssl" -> "fmnist" */
static void dataset_name(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".ssl")) out[n -= 4] = 0;
    static const char *suffix[] = {"-train", "_train", ".train"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(suffix[i]);
        if (n > l && !strcmp(out + n - l, suffix[i])) { out[n - l] = 0; break; }
    }
}

static int mkdir_p(const char *path) {
    char tmp[SSL_STR];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST) return ssl__fail("cannot create %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST) return ssl__fail("cannot create %s: %s", tmp, strerror(errno));
    return 0;
}

static void abs_path(const char *p, char *out, size_t cap) {
    char buf[PATH_MAX];
    if (realpath(p, buf)) snprintf(out, cap, "%.*s", (int)cap - 1, buf);
    else snprintf(out, cap, "%s", p);
}

/* The value of `key` in "key=value" lines, or NULL. */
static const char *meta_get(const char *meta, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (const char *s = meta; s && *s;) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n > kl && !strncmp(s, key, kl) && s[kl] == '=') {
            size_t vl = n - kl - 1 < cap - 1 ? n - kl - 1 : cap - 1;
            memcpy(out, s + kl + 1, vl);
            out[vl] = 0;
            return out;
        }
        s = e ? e + 1 : NULL;
    }
    return NULL;
}

/* ---- the backbone ---- */
typedef struct {
    ssl_model m;
    char desc[2 * SSL_STR];   /* for the output and the JSON */
    char key[2 * SSL_STR];    /* cache key of the weights */
    char ident[2 * SSL_STR];  /* stable identity (path or "random"), for cache file names */
    int64_t batches_tracked;  /* num_batches_tracked for export */
    char arch[32], stem[16];
    double width;
    int train_res;            /* the resolution a checkpoint was trained at (its last, if progressive); 0: unknown */
} backbone;

static int depth_of(const char *arch) { return !strcmp(arch, "resnet34") ? 34 : !strcmp(arch, "resnet50") ? 50 : 18; }

static int build_model(backbone *b, const char *arch, const char *stem, double width, uint64_t seed) {
    ssl_model_config mc = ssl_model_config_default();
    mc.depth = depth_of(arch);
    mc.cifar_stem = !strcmp(stem, "cifar");
    mc.width = width;
    mc.seed = seed;
    snprintf(b->arch, sizeof b->arch, "%s", arch);
    snprintf(b->stem, sizeof b->stem, "%s", stem);
    b->width = width;
    return ssl_model_init(&b->m, &mc); /* no projector/predictor: the backbone only */
}

static int load_ckpt(backbone *b, const char *arg) {
    char path[SSL_STR + 16];
    struct stat st;
    if (stat(arg, &st)) return ssl__fail("ckpt=%s: %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/ckpt.sslt", arg);
    else snprintf(path, sizeof path, "%s", arg);
    ssl_tfile f;
    if (ssl_tfile_read(path, &f)) return ssl__fail_ctx("ckpt=%s: refusing the checkpoint", arg);
    char arch[64], stem[64], width[64], seed[64], method[64];
    if (!meta_get(f.meta, "arch", arch, sizeof arch) || !meta_get(f.meta, "stem", stem, sizeof stem) ||
        !meta_get(f.meta, "width", width, sizeof width)) {
        ssl_tfile_free(&f);
        return ssl__fail("checkpoint %s: its meta text has no arch/stem/width (not written by ./train?)", path);
    }
    if (!meta_get(f.meta, "seed", seed, sizeof seed)) snprintf(seed, sizeof seed, "0");
    if (!meta_get(f.meta, "method", method, sizeof method)) snprintf(method, sizeof method, "?");
    char res[64], res_start[64], res_end[64];
    int progressive = meta_get(f.meta, "res_start", res_start, sizeof res_start) && atoi(res_start) > 0 &&
                      meta_get(f.meta, "res_end", res_end, sizeof res_end);
    if (progressive) snprintf(res, sizeof res, "%s", res_end);
    else if (!meta_get(f.meta, "res", res, sizeof res)) res[0] = 0;
    if (strcmp(arch, "resnet18") && strcmp(arch, "resnet34") && strcmp(arch, "resnet50")) {
        ssl_tfile_free(&f);
        return ssl__fail("checkpoint %s: arch=%s in its config is not resnet18|resnet34|resnet50", path, arch);
    }
    if (build_model(b, arch, stem, atof(width), strtoull(seed, NULL, 10))) { ssl_tfile_free(&f); return -1; }
    b->train_res = atoi(res) >= 8 ? atoi(res) : 0;
    ssl_param_table *t = &b->m.params;
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        const ssl_tentry *e = ssl_tfile_find(&f, p->name);
        int ok = e && e->dtype == SSL_F32 && e->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = e->dims[d] == p->shape[d];
        if (!ok) {
            ssl__fail("checkpoint %s: tensor '%s' is %s (expected float32 of the %s/%s/width %s backbone its config names)",
                      path, p->name, e ? "of another dtype or shape" : "missing", arch, stem, width);
            ssl_tfile_free(&f);
            ssl_model_free(&b->m);
            return -1;
        }
        memcpy(ssl_param_data(t, i), e->data, e->nbytes);
    }
    const ssl_tentry *ts = ssl_tfile_find(&f, "trainer.state");
    int64_t step = 0;
    if (ts && ts->dtype == SSL_I64 && ts->nbytes >= 8) memcpy(&step, ts->data, 8);
    b->batches_tracked = 2 * step;
    /* the CRC of everything before the trailer (= the trailer, checked by
       ssl_tfile_read): a CRC over the whole file including its own CRC is
       the same constant for every file */
    uint32_t crc = ssl_crc32(0, f.bytes, f.size - 4);
    char ap[SSL_STR];
    abs_path(path, ap, sizeof ap);
    snprintf(b->desc, sizeof b->desc, "%.1024s (%s, %s, %s stem, width %s, step %lld)", path, method, arch, stem, width, (long long)step);
    snprintf(b->key, sizeof b->key, "weights=ckpt %s size=%zu crc=%08x", ap, f.size, crc);
    snprintf(b->ident, sizeof b->ident, "ckpt:%s", ap);
    ssl_tfile_free(&f);
    return 0;
}

static int load_import(backbone *b, const char *path) {
    ssl_tfile f;
    if (ssl_safetensors_read(path, &f)) return ssl__fail_ctx("import=%s", path);
    const ssl_tentry *c1 = ssl_tfile_find(&f, "conv1.weight");
    if (!c1 || c1->ndim != 4 || c1->dims[2] != c1->dims[3] || (c1->dims[2] != 3 && c1->dims[2] != 7) || c1->dims[1] != 3) {
        ssl_tfile_free(&f);
        return ssl__fail("import=%s: no torchvision ResNet conv1.weight [O,3,7,7] or [O,3,3,3] (OIHW)", path);
    }
    const char *stem = c1->dims[2] == 3 ? "cifar" : "imagenet";
    const char *arch = ssl_tfile_find(&f, "layer1.0.conv3.weight") ? "resnet50"
                       : ssl_tfile_find(&f, "layer3.5.conv1.weight") ? "resnet34" : "resnet18";
    double width = (double)c1->dims[0] / 64.0;
    if (build_model(b, arch, stem, width, 0)) { ssl_tfile_free(&f); return -1; }
    ssl_param_table *t = &b->m.params;
    float *tmp = NULL;
    int used = 0;
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        const ssl_tentry *e = ssl_tfile_find(&f, p->name);
        int64_t want[4];
        int conv = p->kind == SSL_PARAM_WEIGHT && p->ndim == 4;
        for (int d = 0; d < p->ndim; d++) want[d] = p->shape[d];
        if (conv) want[1] = p->shape[3], want[2] = p->shape[1], want[3] = p->shape[2]; /* OIHW */
        int ok = e && (e->dtype == SSL_F32 || e->dtype == SSL_BF16 || e->dtype == SSL_F64) && e->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = e->dims[d] == want[d];
        if (!ok) {
            ssl__fail("import=%s: tensor '%s' is %s (expected float32 [%lld%s%lld%s%lld%s%lld] for %s %s stem width %g)", path,
                      p->name, e ? "of another dtype or shape" : "missing", (long long)want[0], p->ndim > 1 ? "," : "",
                      p->ndim > 1 ? (long long)want[1] : 0LL, p->ndim > 2 ? "," : "", p->ndim > 2 ? (long long)want[2] : 0LL,
                      p->ndim > 3 ? "," : "", p->ndim > 3 ? (long long)want[3] : 0LL, arch, stem, width);
            free(tmp);
            ssl_tfile_free(&f);
            ssl_model_free(&b->m);
            return -1;
        }
        tmp = ssl_realloc(tmp, sizeof(float) * (size_t)p->numel, "import");
        for (int64_t k = 0; k < p->numel; k++) {
            if (e->dtype == SSL_F32) tmp[k] = ((const float *)e->data)[k];
            else if (e->dtype == SSL_F64) tmp[k] = (float)((const double *)e->data)[k];
            else { uint32_t u = (uint32_t)((const uint16_t *)e->data)[k] << 16; memcpy(&tmp[k], &u, 4); }
        }
        ssl_params_from_torch(t, i, tmp, ssl_param_data(t, i));
        used++;
    }
    free(tmp);
    int ignored = 0;
    b->batches_tracked = 0;
    for (int i = 0; i < f.count; i++) {
        const char *n = f.entries[i].name;
        const char *nbt = strstr(n, "num_batches_tracked");
        if (nbt && f.entries[i].dtype == SSL_I64 && f.entries[i].nbytes == 8 && !b->batches_tracked)
            memcpy(&b->batches_tracked, f.entries[i].data, 8);
        if (ssl_params_find(t, n) < 0 && !nbt && strncmp(n, "fc.", 3)) ignored++;
    }
    if (ignored) ssl_warn("import=%s: %d tensors are not part of the %s backbone and were ignored", path, ignored, arch);
    char ap[SSL_STR];
    abs_path(path, ap, sizeof ap);
    snprintf(b->desc, sizeof b->desc, "%s (imported: %s, %s stem, width %g, %d tensors)", path, arch, stem, width, used);
    snprintf(b->key, sizeof b->key, "weights=import %s size=%zu crc=%08x", ap, f.size, ssl_crc32(0, f.bytes, f.size));
    snprintf(b->ident, sizeof b->ident, "import:%s", ap);
    ssl_tfile_free(&f);
    return 0;
}

static int load_backbone(backbone *b, const probe_cfg *c) {
    memset(b, 0, sizeof *b);
    if (c->ckpt[0]) return load_ckpt(b, c->ckpt);
    if (c->import[0]) return load_import(b, c->import);
    if (build_model(b, c->arch, c->stem, c->width, (uint64_t)c->seed)) return -1;
    snprintf(b->desc, sizeof b->desc, "random init (%.64s, %.64s stem, width %g, seed %lld)", c->arch, c->stem, c->width,
             (long long)c->seed);
    snprintf(b->key, sizeof b->key, "weights=random arch=%.64s stem=%.64s width=%.10g seed=%lld", c->arch, c->stem, c->width,
             (long long)c->seed);
    snprintf(b->ident, sizeof b->ident, "%s", b->key);
    b->batches_tracked = 0;
    return 0;
}

/* ---- export ---- */
static int export_backbone(const backbone *b, const char *path) {
    const ssl_param_table *t = &b->m.params;
    int cap = 2 * t->n, n = 0;
    ssl_tentry *e = ssl_calloc(sizeof(ssl_tentry) * (size_t)cap, "export entries");
    char **names = ssl_calloc(sizeof(char *) * (size_t)cap, "export names");
    float *data = ssl_malloc(sizeof(float) * (size_t)(t->total + 16), "export data");
    int64_t nbt = b->batches_tracked;
    for (int i = 0; i < t->n; i++) {
        const ssl_param *p = &t->p[i];
        float *dst = data + p->offset;
        ssl_params_to_torch(t, i, NULL, dst);
        ssl_tentry *x = &e[n++];
        x->name = p->name;
        x->dtype = SSL_F32;
        x->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) x->dims[d] = p->shape[d];
        if (p->kind == SSL_PARAM_WEIGHT && p->ndim == 4) x->dims[1] = p->shape[3], x->dims[2] = p->shape[1], x->dims[3] = p->shape[2];
        x->data = dst;
        x->nbytes = sizeof(float) * (size_t)p->numel;
        size_t l = strlen(p->name);
        if (l > 12 && !strcmp(p->name + l - 12, ".running_var")) {
            /* torchvision's order: ..., running_mean, running_var, num_batches_tracked */
            names[n] = ssl_malloc(l + 16, "export name");
            snprintf(names[n], l + 16, "%.*s.num_batches_tracked", (int)(l - 12), p->name);
            ssl_tentry *y = &e[n++];
            y->name = names[n - 1];
            y->dtype = SSL_I64;
            y->ndim = 0;
            y->data = &nbt;
            y->nbytes = 8;
        }
    }
    char meta[512];
    snprintf(meta, sizeof meta,
             "{\"format\":\"pt\",\"producer\":\"ssl.h probe " SSL_VERSION_STRING "\",\"arch\":\"%s\",\"stem\":\"%s\",\"width\":\"%g\","
             "\"layout\":\"torchvision state_dict, conv OIHW, no fc\"}",
             b->arch, b->stem, b->width);
    int rc = ssl_safetensors_write(path, e, n, meta);
    for (int i = 0; i < cap; i++) free(names[i]);
    free(names);
    free(e);
    free(data);
    if (rc) return ssl__fail_ctx("export=%s", path);
    printf("probe: exported %d tensors (%s, %s stem, width %g; num_batches_tracked=%lld) to %s\n", n, b->arch, b->stem,
           b->width, (long long)nbt, path);
    return 0;
}

/* ---- the evaluation transform ---- */
typedef struct {
    int res;
    float mean[3], std[3];
} transform;

/* One image into out [res,res,3] (normalized). */
static void eval_transform(const transform *tf, const uint8_t *px, int w, int h, float *out, ssl_buf *scratch) {
    int res = tf->res;
    double bx = 0, by = 0, bw = w, bh = h;
    if (w > res || h > res) {
        /* torchvision Resize(S) then CenterCrop(res): S on the shorter side,
           the longer int(S * long / short), crop offset int(round((L - res) / 2)) */
        int S = (int)floor(res * 256.0 / 224.0);
        int W = w <= h ? S : (int)((double)S * w / h), H = w <= h ? (int)((double)S * h / w) : S;
        double sx = (double)w / W, sy = (double)h / H;
        int left = (int)lround((W - res) / 2.0), top = (int)lround((H - res) / 2.0);
        bx = left * sx, by = top * sy, bw = res * sx, bh = res * sy;
    }
    ssl__resample_gain(px, w, h, 3, bx, by, bw, bh, NULL, out, res, res, SSL_FILTER_BILINEAR, 1.0f / 255.0f, scratch);
    ssl_normalize(out, res, res, tf->mean, tf->std);
}

/* ---- feature extraction ---- */
typedef struct {
    const ssl_pack *pack;
    const backbone *bb;
    const transform *tf;
    int64_t n;          /* images */
    int batch, workers, failed;
    ssl_model *models;  /* one per worker */
    float **inputs;
    ssl_buf *dec, *scratch;
    float *features;    /* n x dim */
    uint32_t *labels;
    _Atomic int64_t done;
    ssl_progress prog;
    char err[4096];
    int dim;
} extract_job;

static void extract_batch(void *ctx, int64_t bi, int worker) {
    extract_job *j = ctx;
    if (j->failed) return;
    int64_t s = bi * j->batch, n = j->n - s < j->batch ? j->n - s : j->batch;
    int res = j->tf->res;
    float *in = j->inputs[worker];
    for (int64_t i = 0; i < n; i++) {
        int w, h, c;
        if (ssl_pack_decode(j->pack, (uint64_t)(s + i), 3, &j->dec[worker], &w, &h, &c)) {
            snprintf(j->err, sizeof j->err, "sample %lld: %s", (long long)(s + i), ssl_last_error());
            j->failed = 1;
            return;
        }
        eval_transform(j->tf, j->dec[worker].p, w, h, in + i * res * res * 3, &j->scratch[worker]);
        j->labels[s + i] = j->pack->index[s + i].label;
    }
    ssl_model *m = &j->models[worker];
    if (ssl_model_plan(m, (int)n, res, res, 1) || ssl_model_forward(m, 0, in, 0)) {
        snprintf(j->err, sizeof j->err, "%s", ssl_last_error());
        j->failed = 1;
        return;
    }
    ssl_tensor f = ssl_model_features(m, 0);
    memcpy(j->features + s * j->dim, f.data, sizeof(float) * (size_t)(n * j->dim));
    int64_t d = atomic_fetch_add(&j->done, n) + n;
    if (worker == 0) ssl_progress_update(&j->prog, d);
}

static void set_blas_threads(int n) {
#ifdef SSL_OPENBLAS
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ---- the same on the GPU: the CPU's workers decode and transform one
   batch, the GPU runs the backbone (fp32: features within rounding of the
   CPU's) ---- */
static int g_on_gpu;
#ifdef SSL_CUDA
typedef struct {
    extract_job *j;
    int64_t s;   /* first image of the batch */
    float *in;   /* host input of the batch */
} decode_job;
static void decode_one(void *ctx, int64_t i, int worker) {
    decode_job *d = ctx;
    extract_job *j = d->j;
    int w, h, c, res = j->tf->res;
    if (j->failed) return;
    if (ssl_pack_decode(j->pack, (uint64_t)(d->s + i), 3, &j->dec[worker], &w, &h, &c)) {
        snprintf(j->err, sizeof j->err, "sample %lld: %s", (long long)(d->s + i), ssl_last_error());
        j->failed = 1;
        return;
    }
    eval_transform(j->tf, j->dec[worker].p, w, h, d->in + i * res * res * 3, &j->scratch[worker]);
    j->labels[d->s + i] = j->pack->index[d->s + i].label;
}
#endif
static void extract_on_gpu(extract_job *j, int threads) {
#ifdef SSL_CUDA
    int res = j->tf->res;
    size_t in_floats = (size_t)j->batch * res * res * 3;
    ssl_model m;
    SSL_ASSERT(ssl_model_init(&m, &j->bb->m.c) == 0, "model copy: %s", ssl_last_error());
    memcpy(m.params.data, j->bb->m.params.data, sizeof(float) * (size_t)j->bb->m.params.total);
    if (ssl_model_to_device(&m)) {
        snprintf(j->err, sizeof j->err, "%s", ssl_last_error());
        j->failed = 1;
        ssl_model_free(&m);
        return;
    }
    float *hin = ssl_cuda_host_alloc(sizeof(float) * in_floats, "extraction input");
    float *din = ssl_cuda_malloc(sizeof(float) * in_floats, "extraction input");
    j->dec = ssl_calloc(sizeof(ssl_buf) * (size_t)threads, "extraction buffers");
    j->scratch = ssl_calloc(sizeof(ssl_buf) * (size_t)threads, "extraction buffers");
    for (int64_t s = 0; s < j->n && !j->failed; s += j->batch) {
        int64_t n = j->n - s < j->batch ? j->n - s : j->batch;
        decode_job d = {j, s, hin};
        ssl_parallel_for(n, threads, decode_one, &d);
        if (j->failed) break;
        ssl_cuda_to_device(din, hin, sizeof(float) * (size_t)n * res * res * 3);
        if (ssl_model_plan(&m, (int)n, res, res, 1) || ssl_model_forward(&m, 0, din, 0)) {
            snprintf(j->err, sizeof j->err, "%s", ssl_last_error());
            j->failed = 1;
            break;
        }
        ssl_tensor f = ssl_model_features(&m, 0);
        ssl_cuda_to_host(j->features + s * j->dim, f.data, sizeof(float) * (size_t)(n * j->dim));
        ssl_progress_update(&j->prog, s + n);
    }
    for (int w = 0; w < threads; w++) ssl_buf_free(&j->dec[w]), ssl_buf_free(&j->scratch[w]);
    free(j->dec), free(j->scratch);
    ssl_cuda_host_free(hin);
    ssl_cuda_free(din);
    ssl_model_free(&m);
#else
    (void)threads;
    snprintf(j->err, sizeof j->err, "this ./probe was built without CUDA");
    j->failed = 1;
#endif
}

/* Features of the first n images of a pack. */
/* The CPU's workers, each running its own model copy on whole batches. */
static void extract_on_cpu(extract_job *j, int threads) {
    const backbone *bb = j->bb;
    int64_t nb = (j->n + j->batch - 1) / j->batch;
    j->workers = threads > nb ? (int)nb : threads;
    if (j->workers < 1) j->workers = 1;
    j->models = ssl_calloc(sizeof(ssl_model) * (size_t)j->workers, "extraction models");
    j->inputs = ssl_calloc(sizeof(float *) * (size_t)j->workers, "extraction inputs");
    j->dec = ssl_calloc(sizeof(ssl_buf) * (size_t)j->workers, "extraction buffers");
    j->scratch = ssl_calloc(sizeof(ssl_buf) * (size_t)j->workers, "extraction buffers");
    for (int w = 0; w < j->workers; w++) {
        SSL_ASSERT(ssl_model_init(&j->models[w], &bb->m.c) == 0, "model copy: %s", ssl_last_error());
        memcpy(j->models[w].params.data, bb->m.params.data, sizeof(float) * (size_t)bb->m.params.total);
        j->inputs[w] = ssl_malloc(sizeof(float) * (size_t)j->batch * j->tf->res * j->tf->res * 3, "extraction input");
    }
    atomic_init(&j->done, 0);
    /* several workers: each runs its own model with single-threaded BLAS */
    set_blas_threads(j->workers > 1 ? 1 : threads);
    ssl_parallel_for(nb, j->workers, extract_batch, j);
    set_blas_threads(threads);
    for (int w = 0; w < j->workers; w++) {
        ssl_model_free(&j->models[w]);
        free(j->inputs[w]);
        ssl_buf_free(&j->dec[w]);
        ssl_buf_free(&j->scratch[w]);
    }
    free(j->models); free(j->inputs); free(j->dec); free(j->scratch);
}

/* Features of the first n images of a pack (on the GPU when g_on_gpu). */
static float *extract(const backbone *bb, const ssl_pack *p, int64_t n, const transform *tf, int batch, int threads,
                      const char *label, uint32_t **labels_out, double *seconds) {
    extract_job j;
    memset(&j, 0, sizeof j);
    j.pack = p, j.bb = bb, j.tf = tf, j.n = n, j.dim = bb->m.feat_dim;
    j.batch = batch;
    j.features = ssl_malloc(sizeof(float) * (size_t)(n * j.dim + 1), "features");
    j.labels = ssl_malloc(sizeof(uint32_t) * (size_t)(n + 1), "labels");
    double t0 = ssl_now();
    ssl_progress_start(&j.prog, label, n);
    if (g_on_gpu) extract_on_gpu(&j, threads);
    else extract_on_cpu(&j, threads);
    if (!j.failed) ssl_progress_end(&j.prog, n);
    *seconds = ssl_now() - t0;
    if (j.failed) {
        free(j.features);
        free(j.labels);
        ssl__fail("%s: %s", p->path, j.err);
        return NULL;
    }
    *labels_out = j.labels;
    return j.features;
}

/* ---- one pack's features, through the cache ---- */
typedef struct {
    char name[256], split[8], path[SSL_STR];
    ssl_pack pack;
    int64_t n;
    float *features;
    uint32_t *labels;
    int cached;
    double seconds, images_per_s;
} split_features;

static int features_for(const probe_cfg *c, const backbone *bb, const transform *tf, split_features *s, int threads) {
    ssl_pack *p = &s->pack;
    s->n = (int64_t)p->h.num_samples;
    if (c->limit && c->limit < s->n) s->n = c->limit;
    int dim = bb->m.feat_dim;
    char ap[SSL_STR], key[5 * SSL_STR], file[2 * SSL_STR + 64], ident[4 * SSL_STR];
    abs_path(s->path, ap, sizeof ap);
    snprintf(key, sizeof key, "probe feature cache v1\n%s\npack=%s size=%llu header_crc=%08x samples=%lld\nres=%d\n%s\n",
             bb->key, ap, (unsigned long long)p->h.file_size, p->h.header_crc, (long long)s->n, tf->res, TRANSFORM_VERSION);
    snprintf(ident, sizeof ident, "%s|%s|%d|%lld", bb->ident, ap, tf->res, (long long)s->n);
    snprintf(file, sizeof file, "%s/cache/%s-%s-%08x.sslt", c->out, s->name, s->split, ssl_crc32(0, ident, strlen(ident)));
    char label[300];
    snprintf(label, sizeof label, "features %s %s", s->name, s->split);
    if (c->cache) {
        struct stat st;
        if (!stat(file, &st)) {
            ssl_tfile f;
            if (ssl_tfile_read(file, &f)) {
                printf("probe: %s: cache %s unreadable (%s): extracting again\n", label, file, ssl_last_error());
            } else {
                const ssl_tentry *fe = ssl_tfile_find(&f, "features"), *le = ssl_tfile_find(&f, "labels");
                if (strcmp(f.meta, key)) {
                    const char *why = "the key";
                    char *a = strstr(f.meta, "\nweights="), *b2 = strstr(key, "\nweights=");
                    if (a && b2 && strncmp(a, b2, strcspn(b2 + 1, "\n") + 1)) why = "the weights (checkpoint or import file changed)";
                    else if (strstr(f.meta, "\npack=") && strncmp(strstr(f.meta, "\npack="), strstr(key, "\npack="), strcspn(strstr(key, "\npack=") + 1, "\n") + 1)) why = "the pack";
                    else why = "the resolution or transform";
                    printf("probe: %s: cache %s is stale (%s differ): extracting again\n", label, file, why);
                } else if (fe && le && fe->dtype == SSL_F32 && fe->ndim == 2 && fe->dims[0] == s->n && fe->dims[1] == dim &&
                           le->dtype == SSL_I32 && le->ndim == 1 && le->dims[0] == s->n) {
                    s->features = ssl_malloc(fe->nbytes + 4, "features");
                    s->labels = ssl_malloc(le->nbytes + 4, "labels");
                    memcpy(s->features, fe->data, fe->nbytes);
                    memcpy(s->labels, le->data, le->nbytes);
                    s->cached = 1;
                    printf("probe: %s: %lld x %d reused from cache %s\n", label, (long long)s->n, dim, file);
                    ssl_tfile_free(&f);
                    return 0;
                } else {
                    printf("probe: %s: cache %s has the wrong shapes: extracting again\n", label, file);
                }
                ssl_tfile_free(&f);
            }
        }
    }
    s->features = extract(bb, p, s->n, tf, (int)c->batch, threads, label, &s->labels, &s->seconds);
    if (!s->features) return -1;
    s->images_per_s = s->seconds > 0 ? s->n / s->seconds : 0;
    printf("probe: %s: %lld images, %d features each, %.1fs (%.0f images/s, %d workers)\n", label, (long long)s->n, dim,
           s->seconds, s->images_per_s, threads);
    if (c->cache) {
        char dir[SSL_STR + 16];
        snprintf(dir, sizeof dir, "%s/cache", c->out);
        if (mkdir_p(dir)) return -1;
        ssl_tentry e[2];
        memset(e, 0, sizeof e);
        e[0].name = "features", e[0].dtype = SSL_F32, e[0].ndim = 2, e[0].dims[0] = s->n, e[0].dims[1] = dim;
        e[0].data = s->features, e[0].nbytes = sizeof(float) * (size_t)(s->n * dim);
        e[1].name = "labels", e[1].dtype = SSL_I32, e[1].ndim = 1, e[1].dims[0] = s->n;
        e[1].data = s->labels, e[1].nbytes = sizeof(uint32_t) * (size_t)s->n;
        if (ssl_tfile_write(file, e, 2, key)) return ssl__fail_ctx("feature cache %s", file);
        printf("probe: %s: cached in %s\n", label, file);
    }
    return 0;
}

/* ---- dump (inputs and features, for comparing with PyTorch) ---- */
static int dump_features(const probe_cfg *c, const backbone *bb, const transform *tf, const ssl_pack *p) {
    int n = (int)c->dump_n, res = tf->res;
    if (p && (int64_t)p->h.num_samples < n) n = (int)p->h.num_samples;
    size_t per = (size_t)res * res * 3;
    float *in = ssl_malloc(sizeof(float) * per * n, "dump input");
    int32_t *labels = ssl_calloc(sizeof(int32_t) * n, "dump labels");
    ssl_buf dec = {0}, scratch = {0};
    for (int i = 0; i < n; i++) {
        if (p) {
            int w, h, ch;
            if (ssl_pack_decode(p, (uint64_t)i, 3, &dec, &w, &h, &ch)) { free(in); free(labels); return -1; }
            eval_transform(tf, dec.p, w, h, in + i * per, &scratch);
            labels[i] = (int32_t)p->index[i].label;
        } else {
            ssl_rng r = ssl_rng_make((uint64_t)c->seed, 0, (uint32_t)i, 0, SSL_RNG_NOISE);
            for (size_t k = 0; k < per; k++) in[i * per + k] = ssl_rng_normal(&r);
        }
    }
    ssl_buf_free(&dec);
    ssl_buf_free(&scratch);
    ssl_model m;
    SSL_ASSERT(ssl_model_init(&m, &bb->m.c) == 0, "model copy: %s", ssl_last_error());
    memcpy(m.params.data, bb->m.params.data, sizeof(float) * (size_t)bb->m.params.total);
    int rc = ssl_model_plan(&m, n, res, res, 1) || ssl_model_forward(&m, 0, in, 0) ? -1 : 0;
    if (!rc) {
        ssl_tensor f = ssl_model_features(&m, 0);
        ssl_tentry e[3];
        memset(e, 0, sizeof e);
        e[0].name = "input", e[0].dtype = SSL_F32, e[0].ndim = 4;
        e[0].dims[0] = n, e[0].dims[1] = res, e[0].dims[2] = res, e[0].dims[3] = 3;
        e[0].data = in, e[0].nbytes = sizeof(float) * per * n;
        e[1].name = "features", e[1].dtype = SSL_F32, e[1].ndim = 2, e[1].dims[0] = n, e[1].dims[1] = m.feat_dim;
        e[1].data = f.data, e[1].nbytes = sizeof(float) * (size_t)n * m.feat_dim;
        e[2].name = "labels", e[2].dtype = SSL_I32, e[2].ndim = 1, e[2].dims[0] = n;
        e[2].data = labels, e[2].nbytes = sizeof(int32_t) * n;
        char meta[3 * SSL_STR];
        snprintf(meta, sizeof meta, "%s\narch=%s\nstem=%s\nwidth=%g\nres=%d\n", bb->key, bb->arch, bb->stem, bb->width, res);
        rc = ssl_tfile_write(c->dump, e, 3, meta);
        if (!rc) printf("probe: dumped %d inputs and their %d features to %s\n", n, m.feat_dim, c->dump);
    }
    ssl_model_free(&m);
    free(in);
    free(labels);
    return rc ? ssl__fail_ctx("dump=%s", c->dump) : 0;
}

/* ---- results ---- */
typedef struct {
    char dataset[256], mode[32];
    ssl_probe_result r;
    int64_t ntrain, neval;
    int probe; /* has epochs */
} result_row;

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static int write_json(const probe_cfg *c, const backbone *bb, const split_features *sf, int nsplits, const result_row *rows,
                      int nrows) {
    char path[SSL_STR + 32], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/probe.json", c->out);
    FILE *f = open_memstream(&buf, &len);
    if (!f) return ssl__fail("open_memstream: %s", strerror(errno));
    static char cfg[1 << 16];
    ssl_config_json(OPTS, NOPTS, c, cfg, sizeof cfg);
    fprintf(f, "{\"backbone\": ");
    json_str(f, bb->desc);
    fprintf(f, ", \"arch\": \"%s\", \"stem\": \"%s\", \"width\": %g, \"feature_dim\": %d,\n \"config\": %s,\n \"features\": [", bb->arch,
            bb->stem, bb->width, bb->m.feat_dim, cfg);
    for (int i = 0; i < nsplits; i++) {
        fprintf(f, "%s\n  {\"dataset\": ", i ? "," : "");
        json_str(f, sf[i].name);
        fprintf(f, ", \"split\": \"%s\", \"pack\": ", sf[i].split);
        json_str(f, sf[i].path);
        fprintf(f, ", \"images\": %lld, \"cached\": %s, \"seconds\": %.3f, \"images_per_s\": %.1f}", (long long)sf[i].n,
                sf[i].cached ? "true" : "false", sf[i].seconds, sf[i].images_per_s);
    }
    fprintf(f, "],\n \"results\": [");
    for (int i = 0; i < nrows; i++) {
        const result_row *r = &rows[i];
        fprintf(f, "%s\n  {\"dataset\": ", i ? "," : "");
        json_str(f, r->dataset);
        fprintf(f, ", \"mode\": \"%s\", \"top1\": %.6f, \"top5\": %.6f, \"best_epoch\": %d, \"epochs_run\": %d, \"seconds\": %.3f, "
                   "\"train\": %lld, \"eval\": %lld}",
                r->mode, r->r.top1, r->r.top5, r->probe ? r->r.best_epoch + 1 : 0, r->probe ? r->r.epochs_run : 0, r->r.seconds,
                (long long)r->ntrain, (long long)r->neval);
    }
    fprintf(f, "]}\n");
    fclose(f);
    int rc = ssl_write_file_atomic(path, buf, len);
    free(buf);
    if (!rc) printf("probe: results written to %s\n", path);
    return rc;
}

static void print_table(const result_row *rows, int n) {
    printf("\n| dataset | mode | top-1 | top-5 | best epoch | seconds |\n|---|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const result_row *r = &rows[i];
        char be[32];
        if (r->probe) snprintf(be, sizeof be, "%d/%d", r->r.best_epoch + 1, r->r.epochs_run);
        else snprintf(be, sizeof be, "-");
        printf("| %s | %s | %.2f%% | %.2f%% | %s | %.1f |\n", r->dataset, r->mode, 100 * r->r.top1, 100 * r->r.top5, be,
               r->r.seconds);
    }
    printf("best epoch: the epoch reported, of the epochs run; a probe without a held-out split (linear_val=0) reports its last\n"
           "epoch and names here the epoch whose eval top-1 was best, for information.\n\n");
}

/* What main allocates, reachable from here so that an early error exit
   (return die(...)) leaves nothing LeakSanitizer calls lost. */
split_features *g_splits; /* not static: a store to an unread static is optimized away */
result_row *g_rows;
static backbone g_bb;

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* our lines and the progress (stderr) in order */
    probe_cfg cfg;
    ssl_config_defaults(OPTS, NOPTS, &cfg);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: ./probe (ckpt=RUN | init=random | import=W.safetensors) train=A.ssl[,B.ssl] eval=A_test.ssl[,B_test.ssl] [key=value ...]\n"
               "       ./probe ckpt=RUN export=backbone.safetensors\n\n");
        ssl_config_usage(stdout, OPTS, NOPTS);
        return argc < 2 ? 1 : 0;
    }
    /* ---- every option is checked before any work ---- */
    if (ssl_config_parse(OPTS, NOPTS, &cfg, argc - 1, argv + 1, NULL, 0, NULL)) return die("bad option");
    int sources = !!cfg.ckpt[0] + !!cfg.import[0] + !strcmp(cfg.init, "random");
    if (sources != 1) {
        fprintf(stderr, "probe: give exactly one backbone: ckpt=RUN, init=random or import=FILE.safetensors (got %d)\n", sources);
        return 1;
    }
    g_on_gpu = !strcmp(cfg.device, "cuda");
#ifdef SSL_CUDA
    if (!strcmp(cfg.device, "auto")) g_on_gpu = ssl_cuda_device_count() > 0;
    if (g_on_gpu) {
        const char *emu = getenv("SSL_CUDA_EMULATE"); /* tests: the GPU code path on the host */
        if (emu && (*emu == '1' || *emu == '2')) ssl_cuda_set_emulation(*emu - '0'); /* 2: strict */
        else if (ssl_cuda_device_count() < 1) {
            fprintf(stderr, "probe: device=cuda: no CUDA device is visible (nvidia-smi?); use device=cpu\n");
            return 1;
        }
        ssl_cuda_set_precision(0); /* fp32: features within rounding of the CPU's (the cache is shared) */
        if (ssl_cuda_set_conv(cfg.conv)) {
            fprintf(stderr, "probe: conv=%s: %s\n", cfg.conv, ssl_last_error());
            return 2;
        }
    }
#else
    if (g_on_gpu) {
        fprintf(stderr, "probe: device=cuda: this ./probe was built without CUDA (nvcc was not found by make); use device=cpu\n");
        return 1;
    }
    g_on_gpu = 0;
#endif
    if (!g_on_gpu && *ssl_blas_warning()) fprintf(stderr, "probe: warning: %s\n", ssl_blas_warning());
    char trains[SSL_STR], evals[SSL_STR], modes[SSL_STR], ks[SSL_STR];
    char *tr[MAX_PAIRS], *ev[MAX_PAIRS], *md[8], *kk[MAX_K];
    snprintf(trains, sizeof trains, "%s", cfg.train);
    snprintf(evals, sizeof evals, "%s", cfg.eval);
    snprintf(modes, sizeof modes, "%s", cfg.modes);
    snprintf(ks, sizeof ks, "%s", cfg.k);
    int ntr = split_list(trains, tr, MAX_PAIRS, "train"), nev = split_list(evals, ev, MAX_PAIRS, "eval");
    if (ntr < 0 || nev < 0) return die("bad option");
    if (ntr != nev) {
        fprintf(stderr, "probe: train= names %d pack(s) and eval= %d: give one evaluation pack per training pack\n", ntr, nev);
        return 1;
    }
    if (!ntr && !cfg.export_[0] && !cfg.dump[0]) {
        fprintf(stderr, "probe: nothing to do: give train=PACKS eval=PACKS, export=FILE or dump=FILE\n");
        return 1;
    }
    int nmodes = split_list(modes, md, 8, "modes");
    if (nmodes < 0) return die("bad option");
    int want_linear = 0, want_mlp = 0, want_knn = 0;
    for (int i = 0; i < nmodes; i++) {
        if (!strcmp(md[i], "linear")) want_linear = 1;
        else if (!strcmp(md[i], "mlp")) want_mlp = 1;
        else if (!strcmp(md[i], "knn")) want_knn = 1;
        else { fprintf(stderr, "probe: modes=%s: '%s' is not one of linear, mlp, knn\n", cfg.modes, md[i]); return 1; }
    }
    if (ntr && !nmodes) { fprintf(stderr, "probe: modes is empty: give linear, mlp and/or knn\n"); return 1; }
    int kv[MAX_K], nk = split_list(ks, kk, MAX_K, "k");
    if (nk < 0) return die("bad option");
    for (int i = 0; i < nk; i++) {
        char *e;
        long v = strtol(kk[i], &e, 10);
        if (*e || v < 1 || v > 100000) { fprintf(stderr, "probe: k=%s: '%s' is not a neighbour count in [1, 100000]\n", cfg.k, kk[i]); return 1; }
        kv[i] = (int)v;
    }
    if (cfg.res > 0 && cfg.res < 8) { fprintf(stderr, "probe: res=%lld: give 0 (the checkpoint's) or at least 8\n", (long long)cfg.res); return 1; }
    if (want_knn && !nk) { fprintf(stderr, "probe: modes has knn but k is empty\n"); return 1; }
    int hidden[8], nh = ssl_mlp_spec_parse(cfg.mlp_hidden, hidden, 8);
    if (nh < 0) return die("mlp_hidden");
    if (want_mlp && (nh < 1 || nh > 4)) { fprintf(stderr, "probe: mlp_hidden=%s: give 1 to 4 widths (e.g. 2048-2048)\n", cfg.mlp_hidden); return 1; }
    /* the packs: opened (and validated) now, before any extraction */
    split_features *sf = g_splits = ssl_calloc(sizeof(split_features) * (size_t)(2 * ntr + 1), "splits");
    for (int i = 0; i < ntr; i++) {
        for (int s = 0; s < 2; s++) {
            split_features *x = &sf[2 * i + s];
            snprintf(x->path, sizeof x->path, "%s", s ? ev[i] : tr[i]);
            snprintf(x->split, sizeof x->split, "%s", s ? "eval" : "train");
            dataset_name(tr[i], x->name, sizeof x->name);
            for (int j = 0; j < i; j++)
                if (!strcmp(sf[2 * j].name, x->name)) { size_t l = strlen(x->name); snprintf(x->name + (l < 200 ? l : 200), 16, "#%d", i + 1); break; }
            if (ssl_pack_open(x->path, &x->pack)) return die(s ? "eval pack" : "train pack");
        }
        if (!sf[2 * i].pack.h.num_classes) {
            fprintf(stderr, "probe: %s has no classes (labels are needed to probe)\n", tr[i]);
            return 1;
        }
    }
    int threads = cfg.threads ? (int)cfg.threads : ssl_num_cores();
    if (cfg.out[0] && (ntr || cfg.cache) && ntr && mkdir_p(cfg.out)) return die("out");

    /* ---- the backbone ---- */
    backbone *const bbp = &g_bb;
#define bb (*bbp)
    if (load_backbone(&bb, &cfg)) return die("backbone");
    printf("probe: backbone %s: %lld weights, %d features\n", bb.desc, (long long)ssl_model_num_weights(&bb.m), bb.m.feat_dim);
    if (!cfg.res) { /* evaluate at the resolution the backbone was trained at (its BN statistics are of it) */
        cfg.res = bb.train_res ? bb.train_res : 32;
        printf("probe: evaluation at res=%lld (%s)\n", (long long)cfg.res,
               bb.train_res ? "the checkpoint's training resolution" : "the default without a checkpoint");
    }
    set_blas_threads(threads);
    if (cfg.export_[0] && export_backbone(&bb, cfg.export_)) return die("export");
    transform tf;
    {
        ssl_view_recipe r;
        if (ssl_view_preset("simclr", 0, (int)cfg.res, &r)) return die("normalization");
        tf.res = (int)cfg.res;
        memcpy(tf.mean, r.mean, sizeof tf.mean);
        memcpy(tf.std, r.std, sizeof tf.std);
    }
    if (cfg.dump[0] && dump_features(&cfg, &bb, &tf, ntr ? &sf[1].pack : NULL)) return die("dump");
    if (!ntr) { ssl_model_free(&bb.m); free(sf); return 0; }

    /* ---- features, then the probes, pair by pair ---- */
    int maxrows = ntr * (2 + nk), nrows = 0;
    result_row *rows = g_rows = ssl_calloc(sizeof(result_row) * (size_t)maxrows, "results");
    for (int i = 0; i < ntr; i++) {
        split_features *a = &sf[2 * i], *b = &sf[2 * i + 1];
        if (features_for(&cfg, &bb, &tf, a, threads) || features_for(&cfg, &bb, &tf, b, threads)) return die("features");
        int classes = (int)(a->pack.h.num_classes > b->pack.h.num_classes ? a->pack.h.num_classes : b->pack.h.num_classes);
        int dim = bb.m.feat_dim;
        for (int64_t r = 0; r < b->n; r++)
            if (b->labels[r] >= (uint32_t)classes) {
                fprintf(stderr, "probe: %s: label %u of sample %lld >= %d classes\n", b->path, b->labels[r], (long long)r, classes);
                return 1;
            }
        for (int m = 0; m < nmodes; m++) {
            if (!strcmp(md[m], "knn")) {
                for (int q = 0; q < nk; q++) {
                    result_row *row = &rows[nrows++];
                    snprintf(row->dataset, sizeof row->dataset, "%s", a->name);
                    snprintf(row->mode, sizeof row->mode, "knn k=%d", kv[q]);
                    row->ntrain = a->n, row->neval = b->n;
                    if (ssl_knn_eval(a->features, a->labels, a->n, b->features, b->labels, b->n, dim, classes, kv[q],
                                     (float)cfg.temperature, &row->r))
                        return die("knn");
                    printf("probe: %s %s: top-1 %.2f%% top-5 %.2f%% (%.1fs)\n", row->dataset, row->mode, 100 * row->r.top1,
                           100 * row->r.top5, row->r.seconds);
                    fflush(stdout);
                }
                continue;
            }
            int mlp = !strcmp(md[m], "mlp");
            ssl_probe_config pc;
            if (mlp) {
                ssl_probe_config_mlp(&pc);
                pc.nhidden = nh;
                for (int h = 0; h < nh; h++) pc.hidden[h] = hidden[h];
                pc.epochs = (int)cfg.mlp_epochs, pc.batch_size = (int)cfg.mlp_bs;
                pc.lr = cfg.mlp_lr, pc.weight_decay = cfg.mlp_wd, pc.val_fraction = cfg.val;
                pc.patience = cfg.val > 0 ? (int)cfg.patience : 0;
            } else {
                ssl_probe_config_linear(&pc);
                pc.epochs = (int)cfg.linear_epochs, pc.batch_size = (int)cfg.linear_bs;
                pc.lr = cfg.linear_lr, pc.weight_decay = cfg.linear_wd, pc.val_fraction = cfg.linear_val;
                pc.patience = cfg.linear_val > 0 ? (int)cfg.patience : 0;
            }
            pc.seed = (uint64_t)cfg.probe_seed;
            result_row *row = &rows[nrows++];
            snprintf(row->dataset, sizeof row->dataset, "%s", a->name);
            if (mlp) snprintf(row->mode, sizeof row->mode, "mlp %.20s", cfg.mlp_hidden);
            else snprintf(row->mode, sizeof row->mode, "linear");
            row->ntrain = a->n, row->neval = b->n, row->probe = 1;
            if (ssl_probe_train_eval(&pc, a->features, a->labels, a->n, b->features, b->labels, b->n, dim, classes, &row->r))
                return die(mlp ? "mlp probe" : "linear probe");
            printf("probe: %s %s: top-1 %.2f%% top-5 %.2f%%, best epoch %d of %d (%.1fs)\n", row->dataset, row->mode,
                   100 * row->r.top1, 100 * row->r.top5, row->r.best_epoch + 1, row->r.epochs_run, row->r.seconds);
            fflush(stdout);
        }
        (void)want_linear; (void)want_mlp;
    }
    print_table(rows, nrows);
    int rc = write_json(&cfg, &bb, sf, 2 * ntr, rows, nrows) ? die("results") : 0;
    for (int i = 0; i < 2 * ntr; i++) {
        free(sf[i].features);
        free(sf[i].labels);
        ssl_pack_close(&sf[i].pack);
    }
    free(sf);
    free(rows);
    ssl_model_free(&bb.m);
#undef bb
    return rc;
}
