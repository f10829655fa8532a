/* ./train as a program: bad options refused before any work, a NaN loss
   stops the run naming the step and leaving the last checkpoint intact,
   SIGINT writes a checkpoint and exits cleanly, and a run stopped and
   resumed ends with exactly the weights of a run that never stopped. */
#include "test.h"

#include <sys/stat.h>

#define run(out, ...) test_runf(out, NULL, __VA_ARGS__)

/* 512 Fashion-MNIST images, packed once per run. */
static const char *tiny_data(void) { return test_fmnist_pack("fm512.ssl", 512); }

/* A small, fast configuration: ResNet-18 at width 1/8, 16 px, 8 steps an epoch. */
#define TINY "width=0.125 res=16 bs=64 projector=32-16 views=crop_gray threads=1 loader_threads=1 log_every=1 device=cpu"

TEST(train_refuses_bad_options_before_work) {
    const char *t = test_bin("SSL_TRAIN", "./train");
    char *out;
    CHECK(run(&out, "%s simclr data=x.ssl lrr=1", t) != 0);
    CHECK_CONTAINS(out, "did you mean 'lr'?");
    free(out);
    CHECK(run(&out, "%s simclr data=x.ssl bs=0", t) != 0);
    CHECK_CONTAINS(out, "bad value for 'bs'");
    free(out);
    CHECK(run(&out, "%s simclrr data=x.ssl", t) != 0);
    CHECK_CONTAINS(out, "simclrr");
    free(out);
    CHECK(run(&out, "%s simclr data=%s " TINY " out=%s", t, test_tmp("missing.ssl"), test_tmp("run_missing")) != 0);
    CHECK_CONTAINS(out, "missing.ssl");
    free(out);
    struct stat st;
    CHECK(stat(test_tmp("run_missing/ckpt.sslt"), &st) != 0, "a failed start wrote a checkpoint");
}

/* The design card's command, ./train simclr bs=256 lr=1.0 tau=0.15, names
   no data: the run packs Fashion-MNIST once into the cache
   (XDG_CACHE_HOME/ssl.h), says so, takes the small CPU recipe for what the
   command leaves out, and a second run reuses the packs. */
TEST(train_without_data_packs_fashion_mnist_once) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) != 0) {
        test_skip("Fashion-MNIST is not installed (dataset-fashion-mnist)");
        return;
    }
    const char *t = test_bin("SSL_TRAIN", "./train"), *cache = test_tmp("xdg_cache");
    char *out;
    /* one step, so that no evaluation runs; res and width as TINY's */
    const char *cmd = "rm -rf %s/run && XDG_CACHE_HOME=%s %s simclr bs=32 lr=1.0 tau=0.15 max_steps=1 width=0.125 res=16 "
                      "threads=1 loader_threads=1 device=cpu out=%s/run";
    run(NULL, "rm -rf %s", cache); /* a cache left by an earlier run of the suite */
    int rc = run(&out, cmd, cache, cache, t, cache);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "no data= given: Fashion-MNIST");
    CHECK_CONTAINS(out, "packing /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    CHECK_CONTAINS(out, "ssl.h/fashion-mnist-train.ssl");
    CHECK_CONTAINS(out, "./pack DIR train.ssl");
    /* the recipe fills what the command left out, never what it gave */
    CHECK_CONTAINS(out, "epochs=1");
    CHECK_CONTAINS(out, "views=crop_flip");
    CHECK(!strstr(out, "width=0.125 ") && !strstr(out, "res=28") && !strstr(out, "bs=64") && !strstr(out, "tau=0.2"),
          "the recipe overrode given options: %s", out);
    /* lr given: the recipe's optimizer group (AdamW at its own lr) stays out whole */
    CHECK(!strstr(out, "optimizer=adamw") && !strstr(out, "lr_scale=0"), "the recipe split the optimizer group: %s", out);
    free(out);
    char path[SSL_STR + 64];
    snprintf(path, sizeof path, "%s/ssl.h/fashion-mnist-train.ssl", cache);
    ssl_pack p;
    CHECK_OK(ssl_pack_open(path, &p));
    if (p.map) {
        CHECK_EQ(p.h.num_samples, 60000);
        CHECK_EQ(p.h.num_classes, 10);
        CHECK_EQ(p.index[0].width, 28);
        ssl_pack_close(&p);
    }
    rc = run(&out, cmd, cache, cache, t, cache);
    CHECK(rc == 0, "second run: exit %d", rc);
    CHECK(!strstr(out, "packing "), "the second run packed again: %s", out);
    free(out);
}

/* OpenBLAS on its pre-AVX2 kernels (here forced through OPENBLAS_CORETYPE,
   as an unrecognised CPU model gets them) on a CPU with AVX2: ./train says
   so at start-up, with what to set. */
TEST(train_warns_when_openblas_runs_old_kernels) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        test_skip("this CPU has no AVX2");
        return;
    }
#endif
    const char *t = test_bin("SSL_TRAIN", "./train");
    char *out;
    run(&out, "OPENBLAS_CORETYPE=Prescott %s simclr data=%s " TINY " max_steps=1 out=%s", t, tiny_data(), test_tmp("run_blas"));
    if (!strstr(out, "OpenBLAS kernels")) {
        free(out);
        test_skip("./train was built without OpenBLAS");
        return;
    }
    CHECK_CONTAINS(out, "OpenBLAS runs its Prescott kernels");
    CHECK_CONTAINS(out, "OPENBLAS_CORETYPE=Haswell");
    free(out);
    run(&out, "OPENBLAS_CORETYPE=Haswell %s simclr data=%s " TINY " max_steps=1 out=%s", t, tiny_data(), test_tmp("run_blas"));
    CHECK(!strstr(out, "kernels are") && !strstr(out, "OpenBLAS runs its"), "warned on AVX2 kernels: %s", out);
    free(out);
}

static uint32_t file_crc(const char *path) {
    uint8_t *b;
    size_t n;
    if (ssl_read_file(path, &b, &n) != 0) return 0;
    uint32_t c = ssl_crc32(0, b, n);
    free(b);
    return c;
}

TEST(train_nan_stops_and_keeps_the_last_checkpoint) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = tiny_data();
    const char *dir = test_tmp("run_nan");
    char *out, ck[SSL_STR + 16];
    CHECK_EQ(run(&out, "rm -rf %s && %s vicreg data=%s " TINY " epochs=1 out=%s", dir, t, data, dir), 0);
    free(out);
    snprintf(ck, sizeof ck, "%s/ckpt.sslt", dir);
    uint32_t before = file_crc(ck);
    CHECK(before != 0, "no checkpoint after one epoch");
    /* resume with an absurd learning rate: the loss blows up (inf, then nan) */
    int rc = run(&out, "%s vicreg resume=%s lr=5000 epochs=3", t, dir);
    CHECK(rc != 0, "a NaN run exited 0");
    CHECK_CONTAINS(out, "stopped before updating the weights"); /* "step N: vicreg loss is inf|nan; ..." */
    CHECK_CONTAINS(out, ": step ");
    CHECK_CONTAINS(out, "ckpt.sslt (left intact)");
    free(out);
    CHECK_EQ(file_crc(ck), before);
}

/* Every tensor but the run's bookkeeping (times) must be equal. */
static int same_weights(const char *a, const char *b, char *why, size_t cap) {
    ssl_tfile x, y;
    if (ssl_tfile_read(a, &x) != 0) { snprintf(why, cap, "%s", ssl_last_error()); return 0; }
    if (ssl_tfile_read(b, &y) != 0) { snprintf(why, cap, "%s", ssl_last_error()); ssl_tfile_free(&x); return 0; }
    int ok = x.count == y.count, compared = 0;
    for (int i = 0; ok && i < x.count; i++) {
        const ssl_tentry *e = &x.entries[i], *f = ssl_tfile_find(&y, e->name);
        if (!strncmp(e->name, "user.", 5) || !strncmp(e->name, "trainer.", 8)) continue;
        if (!f || f->nbytes != e->nbytes || memcmp(f->data, e->data, e->nbytes)) {
            snprintf(why, cap, "tensor '%s' differs", e->name);
            ok = 0;
        }
        compared++;
    }
    if (ok && compared < 20) { snprintf(why, cap, "only %d tensors compared", compared); ok = 0; }
    ssl_tfile_free(&x);
    ssl_tfile_free(&y);
    return ok;
}

TEST(train_stop_and_resume_equals_a_straight_run) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = tiny_data();
    const char *a = test_tmp("run_straight"), *b = test_tmp("run_resumed");
    char *out;
    CHECK_EQ(run(&out, "rm -rf %s %s && %s byol data=%s " TINY " epochs=2 out=%s", a, b, t, data, a), 0);
    free(out);
    /* stopped after 5 steps (mid-epoch), then resumed to the end */
    CHECK_EQ(run(&out, "%s byol data=%s " TINY " epochs=2 max_steps=5 out=%s", t, data, b), 0);
    free(out);
    CHECK_EQ(run(&out, "%s byol resume=%s", t, b), 0);
    free(out);
    char ca[SSL_STR + 16], cb[SSL_STR + 16], why[512] = "";
    snprintf(ca, sizeof ca, "%s/ckpt.sslt", a);
    snprintf(cb, sizeof cb, "%s/ckpt.sslt", b);
    CHECK(same_weights(ca, cb, why, sizeof why), "%s", why);
}

TEST(train_sigint_writes_a_checkpoint_and_exits_cleanly) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = tiny_data();
    const char *dir = test_tmp("run_sigint");
    char *out;
    /* long enough to be interrupted: 50 epochs; SIGINT after 3 s */
    int rc = run(&out, "rm -rf %s; %s simclr data=%s " TINY " epochs=50 out=%s & pid=$!; sleep 3; kill -INT $pid; wait $pid",
                 dir, t, data, dir);
    CHECK_EQ(rc, 0);
    free(out);
    char ck[SSL_STR + 16];
    snprintf(ck, sizeof ck, "%s/ckpt.sslt", dir);
    ssl_tfile f;
    CHECK_OK(ssl_tfile_read(ck, &f));
    if (f.bytes) ssl_tfile_free(&f);
}

/* The first logged loss of a run's log.jsonl, or NAN. */
/* the first value of "key" in the run's log.jsonl (NAN: none) */
static double log_value(const char *dir, const char *key) {
    char path[SSL_STR + 16], k[64];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    snprintf(k, sizeof k, "\"%s\": ", key);
    uint8_t *b;
    size_t n;
    if (ssl_read_file(path, &b, &n) != 0) return NAN;
    double v = NAN;
    const char *p = strstr((const char *)b, k);
    if (p) v = atof(p + strlen(k));
    free(b);
    return v;
}
static double first_loss(const char *dir) { return log_value(dir, "loss"); }

/* "eval: kNN top-1 X%" and "online probe top-1 Y%" from ./train's output */
static int eval_line(const char *out, double *knn, double *probe) {
    const char *k = out ? strstr(out, "kNN top-1 ") : NULL, *p = out ? strstr(out, "online probe top-1 ") : NULL;
    if (!k || !p) return -1;
    *knn = atof(k + 10), *probe = atof(p + 19);
    return 0;
}

/* ./train device=cuda: the loader's uint8 crops (in page-locked memory,
   each batch's copy started while the step before runs), the GPU
   augmentation, the device trainer, checkpoints from device memory, the
   evaluation on the device. Without a GPU it runs through the CUDA
   backend's emulation (SSL_CUDA_EMULATE=1: the same code with host memory),
   against the same run on the CPU: the first step's loss agrees (the
   augmentation and the step are the same math; GCC fuses multiply-adds that
   the emulation does not, hence 1e-4; later steps drift apart by rounding,
   so the two runs' weights are not compared), the evaluation on the device
   gives the kNN and probe top-1 that the CPU gives for the same checkpoint
   (within one image of 512), and the run ends with a checkpoint. */
/* conv= naming an unknown convolution engine is an error of the option
   table (in every build); conv=cudnn in a CUDA build without cuDNN stops
   ./train before any work, saying why */
TEST(train_bad_conv_engine_is_an_error) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = tiny_data(), *d = test_tmp("run_bad_conv");
    char *out;
    int rc = run(&out, "rm -rf %s && SSL_CUDA_EMULATE=2 %s simclr data=%s " TINY " epochs=1 device=cuda conv=winograd out=%s",
                 d, t, data, d);
    CHECK(rc != 0 && strstr(out, "'conv'") && strstr(out, "'winograd'") && strstr(out, "gemm|cudnn"), "bad conv: rc %d, %s", rc,
          out);
    CHECK(!strstr(out, "epoch 1/"), "./train trained with a bad conv: %s", out);
    free(out);
    rc = run(&out, "rm -rf %s && SSL_CUDA_EMULATE=2 %s simclr data=%s " TINY " epochs=1 device=cuda conv=cudnn out=%s", d, t,
             data, d);
    if (rc != 0 && strstr(out, "built without CUDA")) {
        free(out);
        test_skip("./train was built without CUDA");
        return;
    }
    if (strstr(out, "no cuDNN"))
        CHECK(rc != 0 && strstr(out, "conv=cudnn") && strstr(out, "CUDNN=1") && !strstr(out, "epoch 1/"),
              "conv=cudnn without cuDNN: rc %d, %s", rc, out);
    else /* a cuDNN build: emulation has no cuDNN and runs the GEMM path */
        CHECK(rc == 0, "conv=cudnn in emulation: rc %d, %s", rc, out);
    free(out);
}

TEST(train_device_cuda_path_matches_cpu) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = tiny_data();
    const char *dg = test_tmp("run_cuda"), *dc = test_tmp("run_cuda_ref");
    char *out, *outc;
    const char *gpu = getenv("SSL_TEST_REAL_GPU"); /* 1: a real GPU (bench/gpu_report.sh sets it) */
    int rc = run(&out, "rm -rf %s && SSL_CUDA_EMULATE=%s %s simclr data=%s val=%s knn_train=512 " TINY
                 " epochs=1 device=cuda precision=fp32 out=%s",
                 dg, gpu && *gpu == '1' ? "0" : "2", t, data, data, dg);
    if (rc != 0 && strstr(out, "built without CUDA")) {
        free(out);
        test_skip("./train was built without CUDA");
        return;
    }
    CHECK(rc == 0, "./train device=cuda failed: %s", out);
    CHECK_EQ(run(&outc, "rm -rf %s && %s simclr data=%s " TINY " epochs=1 max_steps=2 out=%s", dc, t, data, dc), 0);
    free(outc);
    double lg = first_loss(dg), lc = first_loss(dc);
    printf("    first step's loss: device=cuda %.7f, cpu %.7f\n", lg, lc);
    CHECK(fabs(lg - lc) <= 1e-4 * fabs(lc), "device=cuda loss %.7f vs cpu %.7f", lg, lc);
    /* the GPU's busy share: measured on a GPU, -1 (not measured) in emulation */
    double busy = log_value(dg, "gpu_busy");
    printf("    GPU busy: %.3f\n", busy);
    if (gpu && *gpu == '1') CHECK(busy > 0 && busy <= 1.05, "GPU busy share %.3f", busy);
    else CHECK(busy == -1, "GPU busy share %.3f in emulation (want -1: not measured)", busy);
    /* without split=1 the GPU step does not wait between phases: the
       progress line leaves the split out, the log has -1 */
    CHECK(strstr(out, "epoch 1/1") && !strstr(out, " fwd "), "the GPU progress line shows a split without split=1: %s", out);
    CHECK(log_value(dg, "t_forward") == -1, "t_forward %.4f without split=1 (want -1)", log_value(dg, "t_forward"));
    /* the device memory held is logged on the device (-1 on the CPU), and one plan was made */
    CHECK(log_value(dg, "dev_gb") > 0 && log_value(dc, "dev_gb") == -1, "dev_gb %.4f on the device, %.4f on the cpu",
          log_value(dg, "dev_gb"), log_value(dc, "dev_gb"));
    CHECK(log_value(dg, "plans") == 1, "plans %.0f after steps at one size", log_value(dg, "plans"));
    /* the device run's checkpoint evaluated on the CPU (resumed at its end) */
    CHECK_EQ(run(&outc, "%s resume=%s device=cpu", t, dg), 0);
    double kg = -1, pg = -1, kc = -2, pc = -2;
    CHECK(eval_line(out, &kg, &pg) == 0, "no eval line from the device=cuda run: %s", out);
    CHECK(eval_line(outc, &kc, &pc) == 0, "no eval line from the cpu run: %s", outc);
    printf("    eval of one checkpoint: kNN top-1 %.2f%% / %.2f%%, probe top-1 %.2f%% / %.2f%% (device=cuda / cpu)\n", kg, kc, pg, pc);
    CHECK(fabs(kg - kc) <= 100.0 / 512 + 1e-9, "kNN top-1 %.2f%% on the device vs %.2f%% on the cpu", kg, kc);
    CHECK(fabs(pg - pc) <= 100.0 / 512 + 1e-9, "probe top-1 %.2f%% on the device vs %.2f%% on the cpu", pg, pc);
    free(out);
    free(outc);
    char ck[SSL_STR + 16];
    snprintf(ck, sizeof ck, "%s/ckpt.sslt", dg);
    struct stat st;
    CHECK(stat(ck, &st) == 0, "no checkpoint from the device=cuda run");
    /* the same path at bf16 (activations stored as bf16, end-of-run
       evaluation included): it runs, and its first loss is the fp32 one's
       up to bf16 rounding */
    const char *db = test_tmp("run_cuda_bf16");
    rc = run(&out, "rm -rf %s && SSL_CUDA_EMULATE=%s %s simclr data=%s val=%s knn_train=512 " TINY
             " epochs=1 device=cuda precision=bf16 out=%s",
             db, gpu && *gpu == '1' ? "0" : "2", t, data, data, db);
    CHECK(rc == 0, "./train device=cuda precision=bf16 failed: %s", out);
    double lb = first_loss(db);
    printf("    first step's loss at bf16: %.7f (fp32 %.7f)\n", lb, lg);
    CHECK(fabs(lb - lg) <= 0.05 * fabs(lg), "bf16 first loss %.7f vs fp32 %.7f", lb, lg);
    CHECK(eval_line(out, &kg, &pg) == 0, "no eval line from the bf16 run: %s", out);
    free(out);
    /* split=1: the device waited after each phase, the split is shown */
    rc = run(&out, "rm -rf %s && SSL_CUDA_EMULATE=%s %s simclr data=%s " TINY " epochs=1 max_steps=1 device=cuda split=1 out=%s",
             db, gpu && *gpu == '1' ? "0" : "2", t, data, db);
    CHECK(rc == 0 && strstr(out, " fwd ") && log_value(db, "t_forward") >= 0, "split=1: rc %d, t_forward %.4f, %s", rc,
          log_value(db, "t_forward"), out);
    free(out);
}
