/* Optimizers and schedules against PyTorch (tests/fixtures/optim.sslt, made
   by tests/gen_optim_fixtures.py), and the parameter table's rules. */
#include "test.h"

static const float *fx(const ssl_tfile *f, const char *name) {
    const ssl_tentry *e = ssl_tfile_find(f, name);
    if (!e) { test_fail(__FILE__, __LINE__, "fixture tensor '%s' missing", name); return NULL; }
    return (const float *)e->data;
}

TEST(optimizers_match_pytorch) {
    ssl_tfile f;
    CHECK_OK(ssl_tfile_read("tests/fixtures/optim.sslt", &f));
    if (!f.bytes) return;
    enum { NT = 5 };
    const char *names[NT] = {"w", "b", "bn", "z", "big"};
    const int64_t shapes[NT][2] = {{8, 5}, {8, 0}, {8, 0}, {4, 3}, {6, 4}};
    const int kinds[NT] = {SSL_PARAM_WEIGHT, SSL_PARAM_BIAS, SSL_PARAM_BN_WEIGHT, SSL_PARAM_WEIGHT, SSL_PARAM_WEIGHT};
    const float *hp = fx(&f, "hparams"), *lrs = fx(&f, "lrs");
    if (!hp || !lrs) { ssl_tfile_free(&f); return; }
    const char *opt_names[3] = {"sgd", "lars", "adamw"};
    for (int kind = 0; kind < 3; kind++) {
        ssl_param_table t = {0};
        for (int k = 0; k < NT; k++) ssl_params_add(&t, names[k], kinds[k], shapes[k][1] ? 2 : 1, shapes[k]);
        ssl_params_alloc(&t);
        for (int k = 0; k < NT; k++) {
            char n[64];
            snprintf(n, sizeof n, "init/%s", names[k]);
            const float *init = fx(&f, n);
            if (init) memcpy(ssl_param_data(&t, k), init, sizeof(float) * t.p[k].numel);
        }
        /* the generator's hyper-parameters as the doubles it used (the
           fixture holds them rounded to float, which would move 1 - beta2
           by 1.3e-5 relative) */
        const double hyper[6] = {0.01, 0.9, 0.001, 0.9, 0.999, 1e-8}; /* wd, momentum, eta, beta1, beta2, eps */
        for (int k = 0; k < 6; k++) CHECK(hp[k] == (float)hyper[k], "hparams[%d] %g, want %g", k, hp[k], hyper[k]);
        ssl_optim_config c = {kind, hyper[1], hyper[0], hyper[2], hyper[3], hyper[4], hyper[5]};
        ssl_optimizer o;
        ssl_optim_init(&o, &c, &t);
        double worst = 0;
        float before[256]; /* the table's weights before the step */
        for (int s = 0; s < 3; s++) {
            for (int k = 0; k < NT; k++) {
                char n[64];
                snprintf(n, sizeof n, "grad/%d/%s", s, names[k]);
                const float *g = fx(&f, n);
                if (g) memcpy(ssl_param_grad(&t, k), g, sizeof(float) * t.p[k].numel);
            }
            CHECK(t.total <= 256, "the table holds %lld floats, more than the copy's 256", (long long)t.total);
            if (t.total > 256) break;
            memcpy(before, t.data, sizeof(float) * (size_t)t.total);
            ssl_optim_step(&o, &t, lrs[s]);
            /* relative to the larger of the result and the weight the step
               started from: a step's rounding is relative to its operands,
               and where the update nearly cancels the weight the result's
               own size would magnify it (fused multiply-adds, which the C
               compiler may use and torch's loop may not, round once) */
            for (int k = 0; k < NT; k++) {
                const float *prev = before + t.p[k].offset;
                char n[64];
                snprintf(n, sizeof n, "%s/%d/%s", opt_names[kind], s, names[k]);
                const float *want = fx(&f, n), *got = ssl_param_data(&t, k);
                for (int64_t i = 0; want && i < t.p[k].numel; i++) {
                    double d = fabs(got[i] - want[i]) / (1e-30 + fmax(fabs(want[i]), fabs(prev[i])));
                    if (d > worst) worst = d;
                }
            }
        }
        printf("    %-5s: max relative difference from torch over 3 steps %.2e\n", opt_names[kind], worst);
        /* float32's rounding of a few operations a step, over three steps */
        CHECK(worst < 1e-6, "%s differs from torch by %.3g (relative)", opt_names[kind], worst);
        ssl_optim_free(&o);
        ssl_params_free(&t);
    }
    ssl_tfile_free(&f);
}

TEST(lr_schedule_warmup_then_cosine) {
    /* 10 warmup steps to 1.0, cosine to 0.01 at step 110 */
    CHECK_NEAR(ssl_lr_at(1.0, 0, 10, 110, 0.01), 0.1, 1e-12);
    CHECK_NEAR(ssl_lr_at(1.0, 9, 10, 110, 0.01), 1.0, 1e-12);
    CHECK_NEAR(ssl_lr_at(1.0, 10, 10, 110, 0.01), 1.0, 1e-12);
    CHECK_NEAR(ssl_lr_at(1.0, 60, 10, 110, 0.01), 0.505, 1e-12); /* half-way: mean of 1 and 0.01 */
    CHECK_NEAR(ssl_lr_at(1.0, 110, 10, 110, 0.01), 0.01, 1e-12);
    CHECK_NEAR(ssl_lr_at(1.0, 500, 10, 110, 0.01), 0.01, 1e-12);
    double prev = 2;
    int mono = 1;
    for (int s = 10; s <= 110; s++) { double v = ssl_lr_at(1.0, s, 10, 110, 0.01); mono &= v <= prev; prev = v; }
    CHECK(mono, "cosine phase must not increase");
}

TEST(param_table_layout_and_exclusion_rule) {
    ssl_param_table t = {0};
    int64_t conv[4] = {64, 3, 7, 7}, vec[1] = {64};
    int a = ssl_params_add(&t, "conv1.weight", SSL_PARAM_WEIGHT, 4, conv);
    int b = ssl_params_add(&t, "bn1.weight", SSL_PARAM_BN_WEIGHT, 1, vec);
    int c = ssl_params_add(&t, "bn1.running_mean", SSL_PARAM_BUFFER, 1, vec);
    ssl_params_alloc(&t);
    CHECK_EQ(t.p[a].numel, 64 * 3 * 7 * 7);
    CHECK_EQ(t.p[b].offset % 16, 0);
    CHECK(t.p[b].offset >= t.p[a].offset + t.p[a].numel && t.p[c].offset >= t.p[b].offset + 64, "tensors overlap");
    CHECK_EQ(ssl_params_find(&t, "bn1.running_mean"), c);
    CHECK_EQ(ssl_params_find(&t, "nope"), -1);
    CHECK(ssl_param_decays(&t.p[a]) && !ssl_param_decays(&t.p[b]) && !ssl_param_decays(&t.p[c]));
    /* buffers are never touched by the optimizer */
    for (int64_t i = 0; i < 64; i++) { ssl_param_data(&t, c)[i] = 3; ssl_param_grad(&t, c)[i] = 1; }
    ssl_optim_config oc = {SSL_OPTIM_ADAMW, 0.9, 0.1, 0.001, 0.9, 0.999, 1e-8};
    ssl_optimizer o;
    ssl_optim_init(&o, &oc, &t);
    ssl_optim_step(&o, &t, 0.5);
    CHECK_EQ(ssl_param_data(&t, c)[7], 3);
    ssl_optim_free(&o);
    ssl_params_free(&t);
}
