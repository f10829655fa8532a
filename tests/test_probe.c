/* test_probe.c - ./probe as a program: options, checkpoints, the feature
   cache, the results table and JSON, export (checked byte by byte without
   Python) and import. Runs ./probe, ./train and ./pack as subprocesses
   (SSL_PROBE, SSL_TRAIN, SSL_PACK name them) on small Fashion-MNIST packs
   (SSL_FMNIST, default /usr/share/datasets/fashion-mnist) and one tiny
   checkpoint made once for all the tests here. The PyTorch side of export
   and import is tests/test_export.py. */
#include "test.h"

#include <stdio.h>
#include <sys/stat.h>


#define run_bin(bin, out, ...) test_runf(out, bin, __VA_ARGS__)
#define PROBE test_bin("SSL_PROBE", "./probe")
#define TRAIN test_bin("SSL_TRAIN", "./train")
#define PACK test_bin("SSL_PACK", "./pack")

/* Paths of the shared fixture (in the test tmp dir). */
static char fx_dir[SSL_STR], fx_train[SSL_STR + 32], fx_eval[SSL_STR + 32], fx_run[SSL_STR + 32], fx_ckpt[SSL_STR + 64];

static int make_ckpt(const char *out, int seed) {
    char *o = NULL;
    int rc = run_bin(TRAIN, &o, "simclr data=%s epochs=1 width=0.125 projector=32-16 bs=32 res=16 threads=2 seed=%d device=cpu out=%s",
                     fx_train, seed, out);
    if (rc) test_fail(__FILE__, __LINE__, "./train failed (%d): %.2000s", rc, o ? o : "");
    free(o);
    return rc;
}

/* A 512-image training pack, a 256-image eval pack, a 16-step checkpoint:
   made once, about a second. 0 if the test should stop. */
static int fixture(void) {
    static int state; /* 0 not made, 1 ready, -1 failed */
    if (state) return state > 0;
    state = -1;
    const char *fm = test_bin("SSL_FMNIST", "/usr/share/datasets/fashion-mnist");
    char src[SSL_STR + 64];
    snprintf(src, sizeof src, "%s/t10k-images-idx3-ubyte.gz", fm);
    struct stat st;
    if (stat(src, &st)) { test_fail(__FILE__, __LINE__, "test data missing: %s (set SSL_FMNIST)", src); return 0; }
    snprintf(fx_dir, sizeof fx_dir, "%s", test_tmp("probe"));
    test_mkdirs(fx_dir);
    snprintf(fx_train, sizeof fx_train, "%s/fm-train.ssl", fx_dir);
    snprintf(fx_eval, sizeof fx_eval, "%s/fm-test.ssl", fx_dir);
    snprintf(fx_run, sizeof fx_run, "%s/run", fx_dir);
    snprintf(fx_ckpt, sizeof fx_ckpt, "%s/ckpt.sslt", fx_run);
    for (int k = 0; k < 2; k++) {
        char *o = NULL;
        int rc = k == 0 ? run_bin(PACK, &o, "%s %s limit=512 force=1", src, fx_train)
                        : run_bin(PACK, &o, "%s/train-images-idx3-ubyte.gz %s limit=256 force=1", fm, fx_eval);
        if (rc) test_fail(__FILE__, __LINE__, "./pack failed: %.2000s", o ? o : "");
        free(o);
        if (rc) return 0;
    }
    if (make_ckpt(fx_run, 0)) return 0;
    state = 1;
    return 1;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The number after `"mode": "MODE", "top1": ` in probe.json (-1 if absent). */
static double json_top1(const char *json, const char *mode) {
    char key[128];
    snprintf(key, sizeof key, "\"mode\": \"%s\", \"top1\": ", mode);
    const char *p = strstr(json, key);
    return p ? atof(p + strlen(key)) : -1;
}

static char *slurp_text(const char *path) {
    uint8_t *b = NULL;
    size_t n;
    if (ssl_read_file(path, &b, &n)) return NULL;
    char *s = malloc(n + 1);
    memcpy(s, b, n);
    s[n] = 0;
    free(b);
    return s;
}

TEST(probe_rejects_bad_options_before_work) {
    if (!fixture()) return;
    struct { const char *args, *needle; } cases[] = {
        {"ckpt=%s traim=x.ssl", "train"},                          /* typo: the nearest key is named */
        {"train=%s eval=%s", "exactly one backbone"},               /* (ckpt left out below) */
        {"ckpt=%s init=random train=a eval=b", "exactly one backbone"},
        {"ckpt=%s train=a.ssl,b.ssl eval=c.ssl", "one evaluation pack per training pack"},
        {"ckpt=%s train=%s eval=%s modes=linear,svm", "'svm' is not one of"},
        {"ckpt=%s train=%s eval=%s k=20,many", "not a neighbour count"},
        {"ckpt=%s train=%s eval=%s mlp_hidden=64-", "mlp_hidden"},
        {"ckpt=%s train=%s eval=%s device=tpu", "expected one of auto|cpu|cuda"},
        {"ckpt=%s train=%s eval=%s res=4", "res"},
        {"ckpt=%s train=%s eval=%s/missing.ssl", "missing.ssl"},
        {"ckpt=%s", "nothing to do"},
        {"import=%s train=%s eval=%s", "safetensors"},             /* a pack is not a safetensors file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[4 * SSL_STR];
        if (i == 1) snprintf(args, sizeof args, cases[i].args, fx_train, fx_eval);
        else if (i == 9) snprintf(args, sizeof args, cases[i].args, fx_run, fx_train, fx_dir);
        else if (i == 11) snprintf(args, sizeof args, cases[i].args, fx_train, fx_train, fx_eval);
        else snprintf(args, sizeof args, cases[i].args, fx_run, fx_train, fx_eval);
        char *o = NULL;
        int rc = run_bin(PROBE, &o, "%s out=%s/bad", args, fx_dir);
        CHECK(rc != 0, "case %zu (%s) must fail", i, args);
        CHECK_CONTAINS(o, cases[i].needle);
        CHECK(!strstr(o, "features fm"), "case %zu extracted features before failing: %.400s", i, o);
        free(o);
    }
}

TEST(probe_refuses_corrupt_or_truncated_checkpoint) {
    if (!fixture()) return;
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK_OK(ssl_read_file(fx_ckpt, &b, &n));
    if (!b) return;
    char bad[SSL_STR + 32];
    /* one flipped bit in the middle of the tensor data */
    snprintf(bad, sizeof bad, "%s/flipped.sslt", fx_dir);
    b[n / 2] ^= 0x10;
    CHECK_OK(test_write(bad, b, n));
    b[n / 2] ^= 0x10;
    char *o = NULL;
    CHECK(run_bin(PROBE, &o, "ckpt=%s train=%s eval=%s out=%s/bad", bad, fx_train, fx_eval, fx_dir) != 0, "a flipped bit must be refused");
    CHECK_CONTAINS(o, "flipped.sslt");
    CHECK_CONTAINS(o, "checksum mismatch");
    CHECK(!strstr(o, "features fm"), "no work on a bad checkpoint");
    free(o);
    /* truncated to 60% */
    snprintf(bad, sizeof bad, "%s/truncated.sslt", fx_dir);
    CHECK_OK(test_write(bad, b, n * 6 / 10));
    CHECK(run_bin(PROBE, &o, "ckpt=%s export=%s/x.safetensors", bad, fx_dir) != 0, "a truncated checkpoint must be refused");
    CHECK_CONTAINS(o, "truncated.sslt");
    CHECK_CONTAINS(o, "truncated or corrupt");
    free(o);
    /* not a checkpoint at all, and a directory without one */
    CHECK(run_bin(PROBE, &o, "ckpt=%s export=%s/x.safetensors", fx_train, fx_dir) != 0, "a pack is not a checkpoint");
    CHECK_CONTAINS(o, "not an SSLT file");
    free(o);
    CHECK(run_bin(PROBE, &o, "ckpt=%s export=%s/x.safetensors", fx_dir, fx_dir) != 0, "a directory without ckpt.sslt");
    CHECK_CONTAINS(o, "ckpt.sslt");
    free(o);
    free(b);
}

TEST(probe_feature_cache_reused_and_invalidated) {
    if (!fixture()) return;
    char run[SSL_STR + 32], out[SSL_STR + 32];
    snprintf(run, sizeof run, "%s/cache_run", fx_dir);
    snprintf(out, sizeof out, "%s/cache_out", fx_dir);
    if (make_ckpt(run, 0)) return;
    char *o = NULL;
    const char *args = "ckpt=%s train=%s eval=%s out=%s modes=knn k=5 res=16";
    /* first run extracts and writes both caches */
    CHECK_EQ(run_bin(PROBE, &o, args, run, fx_train, fx_eval, out), 0);
    CHECK_EQ(count_of(o, "cached in"), 2);
    CHECK_EQ(count_of(o, "reused from cache"), 0);
    char *first = strstr(o, "knn k=5: top-1") ? strdup(strstr(o, "knn k=5: top-1")) : NULL;
    free(o);
    /* second run: both reused, same answer */
    CHECK_EQ(run_bin(PROBE, &o, args, run, fx_train, fx_eval, out), 0);
    CHECK_EQ(count_of(o, "reused from cache"), 2);
    CHECK_EQ(count_of(o, "images/s"), 0);
    if (first) CHECK(strstr(o, first) != NULL, "cached features gave another kNN result: %s vs %.800s", first, o);
    free(first);
    free(o);
    /* without res=: the checkpoint's training resolution (16), so the same caches */
    CHECK_EQ(run_bin(PROBE, &o, "ckpt=%s train=%s eval=%s out=%s modes=knn k=5", run, fx_train, fx_eval, out), 0);
    CHECK_CONTAINS(o, "evaluation at res=16 (the checkpoint's training resolution)");
    CHECK_EQ(count_of(o, "reused from cache"), 2);
    free(o);
    char json[SSL_STR + 64];
    snprintf(json, sizeof json, "%s/probe.json", out);
    char *js = slurp_text(json);
    CHECK_CONTAINS(js, "\"cached\": true");
    free(js);
    /* the checkpoint changes (retrained with another seed, same path): stale, extracted again */
    if (make_ckpt(run, 1)) return;
    CHECK_EQ(run_bin(PROBE, &o, args, run, fx_train, fx_eval, out), 0);
    CHECK_EQ(count_of(o, "is stale (the weights"), 2);
    CHECK_EQ(count_of(o, "cached in"), 2);
    free(o);
}

TEST(probe_table_linear_mlp_knn_two_datasets) {
    if (!fixture()) return;
    char second[SSL_STR + 32], second_eval[SSL_STR + 32], out[SSL_STR + 32];
    snprintf(second, sizeof second, "%s/other_train.ssl", fx_dir);
    snprintf(second_eval, sizeof second_eval, "%s/other_test.ssl", fx_dir);
    snprintf(out, sizeof out, "%s/table_out", fx_dir);
    uint8_t *b;
    size_t n;
    CHECK_OK(ssl_read_file(fx_eval, &b, &n));
    CHECK_OK(test_write(second, b, n));
    CHECK_OK(test_write(second_eval, b, n));
    free(b);
    char *o = NULL;
    int rc = run_bin(PROBE, &o,
                     "ckpt=%s train=%s,%s eval=%s,%s out=%s modes=linear,mlp,knn k=5,20 linear_epochs=30 linear_bs=64 "
                     "mlp_epochs=20 mlp_bs=64 mlp_hidden=64-64 patience=5 res=16 cache=0",
                     fx_run, fx_train, second, fx_eval, second_eval, out);
    CHECK_EQ(rc, 0);
    CHECK_CONTAINS(o, "| dataset | mode | top-1 | top-5 | best epoch | seconds |");
    CHECK_CONTAINS(o, "| fm | linear |");
    CHECK_CONTAINS(o, "| fm | mlp 64-64 |");
    CHECK_CONTAINS(o, "| fm | knn k=5 |");
    CHECK_CONTAINS(o, "| fm | knn k=20 |");
    CHECK_CONTAINS(o, "| other | linear |");
    CHECK_CONTAINS(o, "| other | knn k=20 |");
    CHECK_CONTAINS(o, "images/s");
    CHECK(!strstr(o, "cache/"), "cache=0 must not touch the cache: %.600s", o);
    free(o);
    char json[SSL_STR + 64];
    snprintf(json, sizeof json, "%s/probe.json", out);
    char *js = slurp_text(json);
    CHECK(js != NULL, "probe.json written");
    if (!js) return;
    CHECK_EQ(count_of(js, "\"dataset\": \"fm\", \"mode\""), 4);
    CHECK_EQ(count_of(js, "\"dataset\": \"other\", \"mode\""), 4);
    /* 10 classes, 256 eval images: chance is 10% +- 1.9%. This backbone
       (16 steps) measured linear 43%, MLP 30%, kNN 42-44%; above 20% is
       5 standard deviations from chance, and every score is a fraction */
    double lin = json_top1(js, "linear"), knn = json_top1(js, "knn k=5"), mlp = json_top1(js, "mlp 64-64");
    CHECK(lin > 0.2 && lin <= 1, "linear top-1 %g", lin);
    CHECK(knn > 0.2 && knn <= 1, "knn top-1 %g", knn);
    CHECK(mlp > 0.2 && mlp <= 1, "mlp top-1 %g", mlp);
    CHECK_CONTAINS(js, "\"best_epoch\": ");
    CHECK_CONTAINS(js, "\"feature_dim\": 64");
    free(js);
}

/* ours [O,KH,KW,I] vs torch's [O,I,KH,KW] */
static int conv_matches(const ssl_tentry *ours, const ssl_tentry *torch) {
    if (ours->ndim != 4 || torch->ndim != 4) return 0;
    int64_t O = ours->dims[0], KH = ours->dims[1], KW = ours->dims[2], I = ours->dims[3];
    if (torch->dims[0] != O || torch->dims[1] != I || torch->dims[2] != KH || torch->dims[3] != KW) return 0;
    const float *a = ours->data, *b = torch->data;
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t y = 0; y < KH; y++)
                for (int64_t x = 0; x < KW; x++)
                    if (a[((o * KH + y) * KW + x) * I + i] != b[((o * I + i) * KH + y) * KW + x]) return 0;
    return 1;
}

TEST(probe_export_safetensors_layout) {
    if (!fixture()) return;
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/backbone.safetensors", fx_dir);
    char *o = NULL;
    CHECK_EQ(run_bin(PROBE, &o, "ckpt=%s export=%s", fx_run, path), 0);
    CHECK_CONTAINS(o, "exported");
    free(o);
    /* the bytes, by the format's specification */
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK_OK(ssl_read_file(path, &b, &n));
    if (!b || n < 16) return;
    uint64_t hl;
    memcpy(&hl, b, 8);
    CHECK(hl + 8 <= n, "header length %llu fits the %zu-byte file", (unsigned long long)hl, n);
    CHECK_EQ((8 + hl) % 8, 0); /* data 8-aligned */
    CHECK_EQ(b[8], '{');
    char *hdr = strndup((const char *)b + 8, hl);
    CHECK_CONTAINS(hdr, "\"__metadata__\":{\"format\":\"pt\"");
    /* width 1/8: 8 channels; conv1 is OIHW [8,3,3,3], the first tensor at offset 0 */
    CHECK_CONTAINS(hdr, "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[8,3,3,3],\"data_offsets\":[0,864]}");
    CHECK_CONTAINS(hdr, "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],");
    CHECK_CONTAINS(hdr, "\"layer4.1.bn2.running_var\":{\"dtype\":\"F32\",\"shape\":[64],");
    CHECK_CONTAINS(hdr, "\"layer2.0.downsample.0.weight\":{\"dtype\":\"F32\",\"shape\":[16,8,1,1],");
    CHECK(!strstr(hdr, "\"projector.") && !strstr(hdr, "\"optim.") && !strstr(hdr, "\"fc.") && !strstr(hdr, "\"probe.") &&
              !strstr(hdr, "\"target.") && !strstr(hdr, "\"trainer."),
          "only the backbone is exported");
    free(hdr);
    /* the tensors, through the reader, against the checkpoint's */
    ssl_tfile st, ck;
    CHECK_OK(ssl_safetensors_read(path, &st));
    CHECK_OK(ssl_tfile_read(fx_ckpt, &ck));
    if (!st.entries || !ck.entries) { free(b); return; }
    uint64_t covered = 0;
    for (int i = 0; i < st.count; i++) covered += st.entries[i].nbytes;
    CHECK_EQ(8 + hl + covered, n); /* tensors back to back, nothing else */
    int weights = 0, nbt = 0, convs = 0;
    for (int i = 0; i < ck.count; i++) {
        const ssl_tentry *c = &ck.entries[i];
        if (strchr("optpu", c->name[0]) && (!strncmp(c->name, "optim.", 6) || !strncmp(c->name, "projector", 9) ||
                                            !strncmp(c->name, "probe", 5) || !strncmp(c->name, "target.", 7) ||
                                            !strncmp(c->name, "trainer.", 8) || !strncmp(c->name, "user.", 5) ||
                                            !strncmp(c->name, "predictor", 9)))
            continue;
        weights++;
        const ssl_tentry *e = ssl_tfile_find(&st, c->name);
        CHECK(e != NULL, "export lacks '%s'", c->name);
        if (!e) continue;
        CHECK(e->dtype == SSL_F32 && e->nbytes == c->nbytes, "'%s' dtype/size", c->name);
        if (c->ndim == 4) {
            convs++;
            CHECK(conv_matches(c, e), "'%s' is not the checkpoint's OHWI tensor permuted to OIHW", c->name);
        } else {
            CHECK(e->ndim == c->ndim && !memcmp(e->data, c->data, c->nbytes), "'%s' differs from the checkpoint", c->name);
        }
    }
    const ssl_tentry *state = ssl_tfile_find(&ck, "trainer.state");
    int64_t steps = state ? ((const int64_t *)state->data)[0] : -1;
    for (int i = 0; i < st.count; i++) {
        const ssl_tentry *e = &st.entries[i];
        if (!strstr(e->name, "num_batches_tracked")) continue;
        nbt++;
        CHECK(e->dtype == SSL_I64 && e->ndim == 0 && e->nbytes == 8, "'%s' is an int64 scalar", e->name);
        CHECK_EQ(*(const int64_t *)e->data, 2 * steps); /* two training forwards per step */
    }
    CHECK_EQ(steps, 16);
    CHECK_EQ(convs, 20);                 /* resnet18: stem, 16 block convs, 3 downsamples */
    CHECK_EQ(nbt, 20);                   /* one BN per conv */
    CHECK_EQ(st.count, weights + nbt);   /* nothing else */
    ssl_tfile_free(&st);
    ssl_tfile_free(&ck);
    free(b);
}

TEST(probe_import_of_export_gives_the_same_features) {
    if (!fixture()) return;
    char exp[SSL_STR + 32], d1[SSL_STR + 32], d2[SSL_STR + 32];
    snprintf(exp, sizeof exp, "%s/roundtrip.safetensors", fx_dir);
    snprintf(d1, sizeof d1, "%s/dump_ckpt.sslt", fx_dir);
    snprintf(d2, sizeof d2, "%s/dump_import.sslt", fx_dir);
    char *o1 = NULL, *o2 = NULL;
    const char *common = "train=%s eval=%s modes=knn k=5 cache=0 res=16 dump_n=16 out=%s/rt_out";
    char fmt[512];
    snprintf(fmt, sizeof fmt, "ckpt=%%s export=%%s dump=%%s %s", common);
    CHECK_EQ(run_bin(PROBE, &o1, fmt, fx_run, exp, d1, fx_train, fx_eval, fx_dir), 0);
    snprintf(fmt, sizeof fmt, "import=%%s dump=%%s %s", common);
    CHECK_EQ(run_bin(PROBE, &o2, fmt, exp, d2, fx_train, fx_eval, fx_dir), 0);
    CHECK_CONTAINS(o2, "imported: resnet18, cifar stem, width 0.125");
    const char *k1 = o1 ? strstr(o1, "knn k=5: top-1") : NULL, *k2 = o2 ? strstr(o2, "knn k=5: top-1") : NULL;
    CHECK(k1 && k2 && !strncmp(k1, k2, 40), "kNN differs: %.60s vs %.60s", k1 ? k1 : "", k2 ? k2 : "");
    free(o1);
    free(o2);
    ssl_tfile a, b;
    CHECK_OK(ssl_tfile_read(d1, &a));
    CHECK_OK(ssl_tfile_read(d2, &b));
    if (!a.entries || !b.entries) return;
    const ssl_tentry *fa = ssl_tfile_find(&a, "features"), *fb = ssl_tfile_find(&b, "features");
    const ssl_tentry *ia = ssl_tfile_find(&a, "input"), *ib = ssl_tfile_find(&b, "input");
    CHECK(fa && fb && ia && ib, "dumps have input and features");
    if (fa && fb && ia && ib) {
        CHECK_EQ(fa->dims[0], 16);
        CHECK_EQ(fa->dims[1], 64);
        CHECK(ia->nbytes == ib->nbytes && !memcmp(ia->data, ib->data, ia->nbytes), "same inputs");
        CHECK(fa->nbytes == fb->nbytes && !memcmp(fa->data, fb->data, fa->nbytes), "imported weights give other features");
        double s = 0;
        for (int64_t i = 0; i < ssl_tentry_numel(fa); i++) s += fabs(((const float *)fa->data)[i]);
        CHECK(s > 0, "features are not all zero");
    }
    ssl_tfile_free(&a);
    ssl_tfile_free(&b);
}

TEST(probe_random_init_baseline) {
    if (!fixture()) return;
    char *o = NULL;
    int rc = run_bin(PROBE, &o, "init=random arch=resnet18 stem=cifar width=0.125 train=%s eval=%s modes=knn k=5 res=16 out=%s/rand_out",
                     fx_train, fx_eval, fx_dir);
    CHECK_EQ(rc, 0);
    CHECK_CONTAINS(o, "random init (resnet18, cifar stem, width 0.125, seed 0)");
    CHECK_CONTAINS(o, "| fm | knn k=5 |");
    free(o);
}

/* device=cuda: the GPU extracts the features (the CPU's workers decode and
   transform). Without a GPU (SSL_TEST_REAL_GPU unset), through the CUDA
   backend's emulation (SSL_CUDA_EMULATE=1). The cached features of both packs agree with the
   CPU's to fp32 rounding (1e-4 absolute on features of size ~1), and so do
   the kNN results. */
static float *cached_features(const char *dir, const char *prefix, int64_t *n) {
    char cmd[SSL_STR * 2], *o = NULL;
    snprintf(cmd, sizeof cmd, "ls %s/cache/%s-*.sslt", dir, prefix);
    if (test_run(cmd, &o) != 0) { free(o); return NULL; }
    o[strcspn(o, "\n")] = 0;
    ssl_tfile f;
    float *out = NULL;
    if (ssl_tfile_read(o, &f) == 0) {
        const ssl_tentry *e = ssl_tfile_find(&f, "features");
        if (e && e->dtype == SSL_F32) {
            *n = (int64_t)(e->nbytes / sizeof(float));
            out = malloc(e->nbytes);
            memcpy(out, e->data, e->nbytes);
        }
        ssl_tfile_free(&f);
    }
    free(o);
    return out;
}
TEST(probe_device_cuda_features_match_cpu) {
    if (!fixture()) return;
    char *o = NULL, dc[SSL_STR + 32], dg[SSL_STR + 32];
    snprintf(dc, sizeof dc, "%s/dev_cpu", fx_dir);
    snprintf(dg, sizeof dg, "%s/dev_cuda", fx_dir);
    CHECK_EQ(run_bin(PROBE, &o, "ckpt=%s train=%s eval=%s modes=knn k=5 res=16 cache=0 device=cpu out=%s", fx_run, fx_train,
                     fx_eval, dc), 0);
    free(o);
    char cmd[8 * SSL_STR];
    const char *gpu = getenv("SSL_TEST_REAL_GPU"); /* 1: a real GPU (bench/gpu_report.sh sets it) */
    snprintf(cmd, sizeof cmd, "rm -rf %s && SSL_CUDA_EMULATE=%s %s ckpt=%s train=%s eval=%s modes=knn k=5 res=16 device=cuda out=%s",
             dg, gpu && *gpu == '1' ? "0" : "2", PROBE, fx_run, fx_train, fx_eval, dg);
    int rc = test_run(cmd, &o);
    if (rc && strstr(o, "built without CUDA")) {
        free(o);
        test_skip("./probe was built without CUDA");
        return;
    }
    CHECK(rc == 0, "probe device=cuda failed: %.2000s", o);
    free(o);
    /* the CPU run again, now writing its cache, for the comparison */
    CHECK_EQ(run_bin(PROBE, &o, "ckpt=%s train=%s eval=%s modes=knn k=5 res=16 device=cpu out=%s", fx_run, fx_train, fx_eval, dc), 0);
    free(o);
    const char *which[2] = {"fm-train", "fm-eval"};
    for (int k = 0; k < 2; k++) {
        int64_t nc = 0, ng = 0;
        float *fc = cached_features(dc, which[k], &nc), *fg = cached_features(dg, which[k], &ng);
        CHECK(fc && fg && nc == ng && nc > 0, "%s: features missing or of different sizes (%lld vs %lld)", which[k],
              (long long)nc, (long long)ng);
        if (fc && fg && nc == ng) {
            double worst = 0;
            for (int64_t i = 0; i < nc; i++) worst = fmax(worst, fabs((double)fc[i] - fg[i]));
            printf("    %s: %lld features, max |cuda - cpu| = %.3g\n", which[k], (long long)nc, worst);
            CHECK(worst <= 1e-4, "%s features differ by %.3g", which[k], worst);
        }
        free(fc), free(fg);
    }
    char pc[SSL_STR + 64], pg[SSL_STR + 64];
    snprintf(pc, sizeof pc, "%s/probe.json", dc);
    snprintf(pg, sizeof pg, "%s/probe.json", dg);
    char *jc = slurp_text(pc), *jg = slurp_text(pg);
    CHECK(jc && jg, "probe.json missing");
    if (jc && jg) CHECK(fabs(json_top1(jc, "knn") - json_top1(jg, "knn")) <= 1.0 / 256 + 1e-9, "kNN top-1 differs");
    free(jc), free(jg);
}
