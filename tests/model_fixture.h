/* model_fixture.h - tests/fixtures/model.sslt (made by
   tests/gen_model_fixtures.py: a ResNet-18 at base width 8 with the CIFAR
   stem, its weights, two views, each method's loss and gradients, one LARS
   step) and the helpers that compare a trainer with it. Shared by the CPU
   suite (test_model.c) and the GPU suite (gpu_train.c). */
#ifndef SSL_MODEL_FIXTURE_H
#define SSL_MODEL_FIXTURE_H
#include "test.h"

static inline const ssl_tentry *fxe(const ssl_tfile *f, const char *name) {
    const ssl_tentry *e = ssl_tfile_find(f, name);
    if (!e) test_fail(__FILE__, __LINE__, "fixture tensor '%s' missing", name);
    return e;
}
static inline const float *fx(const ssl_tfile *f, const char *name) {
    const ssl_tentry *e = fxe(f, name);
    return e ? (const float *)e->data : NULL;
}

/* The fixture's net: ResNet-18 topology, base width 8, CIFAR stem,
   projector 32-16 (+ predictor 32-16 for BYOL). */
static inline ssl_model_config fixture_config(int byol) {
    ssl_model_config c = ssl_model_config_default();
    c.depth = 18;
    c.width = 0.125;
    c.cifar_stem = 1;
    snprintf(c.projector, sizeof c.projector, "32-16");
    if (byol) snprintf(c.predictor, sizeof c.predictor, "32-16");
    return c;
}

/* Loads prefix<name> for every tensor of t (torch layout) into ours. */
static inline int load_params(const ssl_tfile *f, const char *prefix, ssl_param_table *t) {
    for (int i = 0; i < t->n; i++) {
        char n[256];
        snprintf(n, sizeof n, "%s%s", prefix, t->p[i].name);
        const ssl_tentry *e = fxe(f, n);
        if (!e) return -1;
        if (ssl_tentry_numel(e) != t->p[i].numel) {
            test_fail(__FILE__, __LINE__, "%s: %lld values in the fixture, %lld in the table", n,
                      (long long)ssl_tentry_numel(e), (long long)t->p[i].numel);
            return -1;
        }
        ssl_params_from_torch(t, i, (const float *)e->data, ssl_param_data(t, i));
    }
    return 0;
}

/* NCHW -> NHWC */
static inline float *to_nhwc(const float *x, int n, int c, int h, int w) {
    float *y = malloc(sizeof(float) * n * c * h * w);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < h * w; i++) y[(b * h * w + i) * c + ch] = x[(b * c + ch) * h * w + i];
    return y;
}

/* max |a - b| / (atol + max |b|) over one tensor: the error relative to the
   tensor's scale, so tiny entries of a big tensor do not dominate. */
static inline double scaled_err_floor(const float *a, const float *b, int64_t n, double floor) {
    double mx = floor, md = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN wins */
    }
    return md / (1e-6 + mx);
}
static inline double scaled_err(const float *a, const float *b, int64_t n) { return scaled_err_floor(a, b, n, 0); }

/* Compares every tensor of t (ours: grads or values) with prefix<name>. */
static inline double compare_table(const ssl_tfile *f, const char *prefix, const ssl_param_table *t, int grads, int skip_buffers,
                            char *worst_name) {
    /* a tensor whose true values are ~0 (the bias of a Linear feeding a
       BN: its gradient is exactly 0) is measured against 1e-3 of the
       largest value of the whole table instead of its own */
    double global = 0;
    for (int i = 0; i < t->n; i++) {
        char n[256];
        snprintf(n, sizeof n, "%s%s", prefix, t->p[i].name);
        const ssl_tentry *e = ssl_tfile_find(f, n);
        for (int64_t k = 0; e && k < ssl_tentry_numel(e); k++) global = fmax(global, fabs(((const float *)e->data)[k]));
    }
    double worst = 0;
    float *tmp = NULL;
    for (int i = 0; i < t->n; i++) {
        if (skip_buffers && t->p[i].kind == SSL_PARAM_BUFFER) continue;
        char n[256];
        snprintf(n, sizeof n, "%s%s", prefix, t->p[i].name);
        const float *want = fx(f, n);
        if (!want) return INFINITY;
        tmp = realloc(tmp, sizeof(float) * t->p[i].numel);
        ssl_params_to_torch(t, i, grads ? ssl_param_grad(t, i) : ssl_param_data(t, i), tmp);
        double e = scaled_err_floor(tmp, want, t->p[i].numel, 1e-3 * global);
        if (!(e <= worst)) { worst = e; snprintf(worst_name, 128, "%s", t->p[i].name); }
    }
    free(tmp);
    return worst;
}

typedef struct {
    ssl_tfile f;
    float *x1, *x2;
} fixture;

static inline int fixture_open(fixture *fx_) {
    memset(fx_, 0, sizeof *fx_);
    if (ssl_tfile_read("tests/fixtures/model.sslt", &fx_->f)) {
        test_fail(__FILE__, __LINE__, "%s", ssl_last_error());
        return -1;
    }
    fx_->x1 = to_nhwc(fx(&fx_->f, "x1"), 4, 3, 16, 16);
    fx_->x2 = to_nhwc(fx(&fx_->f, "x2"), 4, 3, 16, 16);
    return 0;
}
static inline void fixture_close(fixture *fx_) {
    free(fx_->x1);
    free(fx_->x2);
    ssl_tfile_free(&fx_->f);
}

/* The fixture's model and step configuration for `method`: LARS with the
   fixture's hyper-parameters, lr constant at hp[0] for step 0. */
static inline void fixture_configs(fixture *F, int method, ssl_model_config *mc, ssl_train_config *tc) {
    *mc = fixture_config(method == SSL_METHOD_BYOL);
    *tc = ssl_train_config_default(method);
    tc->tau = 0.2f;
    tc->optim.kind = SSL_OPTIM_LARS;
    const float *hp = fx(&F->f, "lars/hp");
    tc->lr = hp[0], tc->optim.momentum = hp[1], tc->optim.weight_decay = hp[2], tc->optim.eta = hp[3];
    tc->warmup_steps = 0, tc->total_steps = 1000000, tc->end_ratio = 1.0;
}

/* A trainer for `method` with the fixture's weights. */
static inline int fixture_trainer(fixture *F, int method, ssl_trainer *t) {
    ssl_model_config mc;
    ssl_train_config tc;
    fixture_configs(F, method, &mc, &tc);
    if (ssl_trainer_init(t, &mc, &tc)) { test_fail(__FILE__, __LINE__, "%s", ssl_last_error()); return -1; }
    if (load_params(&F->f, "param/", &t->online.params)) return -1;
    if (t->has_target && load_params(&F->f, "target/", &t->target.params)) return -1;
    return 0;
}

#ifdef SSL_CUDA
/* The same trainer on the device: the weights reach it the public way,
   through a checkpoint (ckpt: a scratch path). */
static inline int fixture_trainer_on_device(fixture *F, int method, ssl_trainer *t, const char *ckpt) {
    ssl_trainer cpu;
    if (fixture_trainer(F, method, &cpu)) return -1;
    int rc = ssl_trainer_save(&cpu, ckpt, "fixture", NULL, 0);
    ssl_trainer_free(&cpu);
    if (rc) { test_fail(__FILE__, __LINE__, "%s", ssl_last_error()); return -1; }
    ssl_model_config mc;
    ssl_train_config tc;
    fixture_configs(F, method, &mc, &tc);
    tc.device = SSL_DEV_CUDA;
    if (ssl_trainer_init(t, &mc, &tc) || ssl_trainer_load(t, ckpt, NULL, 0)) {
        test_fail(__FILE__, __LINE__, "%s", ssl_last_error());
        return -1;
    }
    return 0;
}
#endif
#endif
