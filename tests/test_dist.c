/* Many ranks (ssl.h section 12): the collectives against hand sums, SyncBN
   and the losses over the ranks against one process and finite
   differences, and ./train under mpirun: the world size changes nothing
   but speed (losses and weights of 5 steps at 1, 2 and 3 ranks), resume
   across world sizes, SIGTERM, a dead or hung rank, bad launches.

   A test that needs several ranks starts itself under mpirun: the same
   test, in this binary, with SSL_TEST_MPI_CHILD=1, runs as each rank. They
   skip with the reason where mpirun or MPI is missing, and under the
   sanitizers (make sanitize covers the one-rank paths). */
#include "test.h"
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define mpirun test_mpirun
#define is_child test_is_child

/* Runs test `name` of this binary as np ranks; checks they all passed. */
static void run_ranks(const char *name, int np) {
    char *out = NULL;
    double t0 = ssl_now();
    int rc = test_launch_ranks(name, np, &out);
    if (rc < 0) return;
    CHECK(rc == 0, "%d ranks of %s: rc %d:\n%s", np, name, rc, out);
    /* what the ranks reported (their indented lines) */
    for (const char *l = out; rc == 0 && l && *l;) {
        const char *e = strchr(l, '\n');
        int len = e ? (int)(e - l) : (int)strlen(l);
        if (!strncmp(l, "    ", 4)) printf("%.*s\n", len, l);
        l = e ? e + 1 : NULL;
    }
    printf("    %s on %d ranks: %.1fs\n", name, np, ssl_now() - t0);
    free(out);
}

/* ---- the collectives ----------------------------------------------------- */
static void collectives_child(void) {
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    int W = c.world, R = c.rank;
    CHECK(W > 1, "not launched as several ranks (world %d)", W);
    /* all-reduce: rank r holds (r+1)(i+1); the sum is (i+1) W(W+1)/2, exact */
    float a[21];
    for (int i = 0; i < 21; i++) a[i] = (float)((R + 1) * (i + 1));
    ssl_tensor ta = ssl_tensor_mat(a, 7, 3);
    CHECK_OK(ssl_all_reduce(&c, &ta));
    int bad = 0;
    for (int i = 0; i < 21; i++) bad += a[i] != (float)((i + 1) * W * (W + 1) / 2);
    CHECK(bad == 0, "all-reduce: %d of 21 sums wrong (a[20] = %g)", bad, a[20]);
    /* all-gather: 5 values a rank, r*100 + i, in rank order */
    float g[5], go[5 * 8];
    for (int i = 0; i < 5; i++) g[i] = (float)(R * 100 + i);
    ssl_tensor tg = ssl_tensor_mat(g, 1, 5), tgo = ssl_tensor_mat(go, W, 5);
    CHECK_OK(ssl_all_gather(&c, &tg, &tgo));
    bad = 0;
    for (int r = 0; r < W; r++)
        for (int i = 0; i < 5; i++) bad += go[r * 5 + i] != (float)(r * 100 + i);
    CHECK(bad == 0, "all-gather: %d values wrong", bad);
    /* reduce-scatter: rank r holds (r+1)*1000 + j of W*4 values; rank R gets
       the sums of its block: 1000 W(W+1)/2 + W (4R + i) */
    float rs[4 * 8], ro[4];
    for (int j = 0; j < 4 * W; j++) rs[j] = (float)((R + 1) * 1000 + j);
    ssl_tensor trs = ssl_tensor_mat(rs, W, 4), tro = ssl_tensor_mat(ro, 1, 4);
    CHECK_OK(ssl_reduce_scatter(&c, &trs, &tro));
    bad = 0;
    for (int i = 0; i < 4; i++) bad += ro[i] != (float)(1000 * W * (W + 1) / 2 + W * (4 * R + i));
    CHECK(bad == 0, "reduce-scatter: %d values wrong (ro[0] = %g)", bad, ro[0]);
    /* broadcast from the last rank */
    float b[3];
    for (int i = 0; i < 3; i++) b[i] = R == W - 1 ? 42.0f + i : -1.0f;
    ssl_tensor tb = ssl_tensor_vec(b, 3);
    CHECK_OK(ssl_broadcast(&c, &tb, W - 1));
    CHECK(b[0] == 42 && b[1] == 43 && b[2] == 44, "broadcast: %g %g %g", b[0], b[1], b[2]);
    /* empty tensors */
    ssl_tensor e0 = ssl_tensor_mat(a, 0, 3), e1 = ssl_tensor_mat(go, 0, 3);
    CHECK_OK(ssl_all_reduce(&c, &e0));
    CHECK_OK(ssl_all_gather(&c, &e0, &e1));
    CHECK_OK(ssl_reduce_scatter(&c, &e1, &e0));
    CHECK_OK(ssl_broadcast(&c, &e0, 0));
    CHECK_OK(ssl_barrier(&c));
    /* host scalars */
    double d[2] = {0.5 * R, 1};
    CHECK_OK(ssl_comm_sum_f64(&c, d, 2));
    CHECK(d[0] == 0.25 * W * (W - 1) && d[1] == W, "sum_f64: %g %g", d[0], d[1]);
    int64_t m = R == 1 ? 7 : R;
    CHECK_OK(ssl_comm_max_i64(&c, &m, 1));
    CHECK_EQ(m, W - 1 > 7 ? W - 1 : 7);
    /* a wrong shape is refused on the spot */
    ssl_tensor small = ssl_tensor_mat(go, W - 1, 5);
    CHECK_ERR(ssl_all_gather(&c, &tg, &small), "ranks x");
    /* the same bytes everywhere, or the rank that differs named */
    CHECK_OK(ssl_comm_same(&c, "bs=12", 5, "config"));
    char cfg[16];
    snprintf(cfg, sizeof cfg, "bs=%d", R == W - 1 ? 13 : 12);
    CHECK_ERR(ssl_comm_same(&c, cfg, strlen(cfg), "config"), "rank");
    if (strstr(ssl_last_error(), "rank")) {
        char want[32];
        snprintf(want, sizeof want, "rank %d has a different", W - 1);
        CHECK_CONTAINS(ssl_last_error(), want);
    }
    /* parameters that diverged: the tensor named */
    ssl_param_table t;
    memset(&t, 0, sizeof t);
    int64_t s1[1] = {4}, s2[2] = {2, 3};
    ssl_params_add(&t, "a.weight", SSL_PARAM_WEIGHT, 1, s1);
    ssl_params_add(&t, "b.bias", SSL_PARAM_BIAS, 2, s2);
    ssl_params_alloc(&t);
    for (int64_t i = 0; i < t.total; i++) t.data[i] = (float)i;
    CHECK_OK(ssl_comm_check_params(&c, &t, "check"));
    if (R == 1) ssl_param_data(&t, 1)[2] = nextafterf(ssl_param_data(&t, 1)[2], 100.0f); /* one ulp */
    CHECK_ERR(ssl_comm_check_params(&c, &t, "check"), "'b.bias' differs between rank 0 and rank 1");
    ssl_params_free(&t);
    CHECK(c.calls > 10 && c.bytes > 0 && c.seconds >= 0, "calls %lld bytes %lld", (long long)c.calls, (long long)c.bytes);
    ssl_comm_free(&c);
}

TEST(dist_collectives_match_hand_sums_on_2_and_3_ranks) {
    if (is_child()) { collectives_child(); return; }
    run_ranks("dist_collectives_match_hand_sums_on_2_and_3_ranks", 2);
    run_ranks("dist_collectives_match_hand_sums_on_2_and_3_ranks", 3);
}

TEST(dist_world_of_one_pays_nothing) {
    /* no launcher: no MPI, every collective a copy or nothing */
    if (is_child()) return;
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    CHECK_EQ(c.world, 1);
    CHECK_EQ(c.rank, 0);
    CHECK_EQ(c.mpi, 0);
    float a[6] = {1, 2, 3, 4, 5, 6}, o[6] = {0};
    ssl_tensor ta = ssl_tensor_mat(a, 2, 3), to = ssl_tensor_mat(o, 2, 3);
    CHECK_OK(ssl_all_reduce(&c, &ta));
    CHECK_OK(ssl_all_gather(&c, &ta, &to));
    CHECK(o[5] == 6 && a[5] == 6, "gather of one: %g", o[5]);
    memset(o, 0, sizeof o);
    CHECK_OK(ssl_reduce_scatter(&c, &ta, &to));
    CHECK(o[0] == 1 && o[5] == 6, "reduce-scatter of one: %g %g", o[0], o[5]);
    CHECK_OK(ssl_broadcast(&c, &ta, 0));
    CHECK_OK(ssl_barrier(&c));
    CHECK_OK(ssl_all_reduce(NULL, &ta));
    CHECK_EQ(c.calls, 0);
    ssl_comm_free(&c);
}

/* ---- SyncBN and the losses over the ranks: N ranks equal one, and finite
   differences of the global objective ------------------------------------ */
static float gval(uint64_t seed, int64_t i) {
    ssl_rng r = ssl_rng_make(seed, 0, (uint32_t)i, 0, 0);
    return ssl_rng_normal(&r);
}

static void syncbn_child(void) {
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    const int W = c.world, R = c.rank, n = 5, C = 4, N = n * W;
    float *xg = ssl_malloc(sizeof(float) * N * C, "x"), *rg = ssl_malloc(sizeof(float) * N * C, "r");
    for (int i = 0; i < N * C; i++) xg[i] = 2.0f * gval(1, i) + 0.5f, rg[i] = gval(2, i);
    float par[2][4][4]; /* [sync|single][weight, bias, running mean, running var][C] */
    ssl_batchnorm bn[2];
    for (int k = 0; k < 2; k++) {
        bn[k] = ssl_batchnorm_default();
        for (int i = 0; i < C; i++) par[k][0][i] = 1.0f + 0.1f * i, par[k][1][i] = 0.2f * i, par[k][2][i] = 0, par[k][3][i] = 1;
        bn[k].weight = ssl_tensor_vec(par[k][0], C), bn[k].bias = ssl_tensor_vec(par[k][1], C);
        bn[k].running_mean = ssl_tensor_vec(par[k][2], C), bn[k].running_var = ssl_tensor_vec(par[k][3], C);
    }
    bn[0].comm = &c;
    float y[2][64 * 4], dx[2][64 * 4], mean[2][4], istd[2][4], dw[2][4] = {{0}}, db[2][4] = {{0}};
    /* SyncBN on this rank's rows; one process's BN on all of them */
    for (int k = 0; k < 2; k++) {
        int rows = k ? N : n;
        float *x = k ? xg : xg + R * n * C, *r = k ? rg : rg + R * n * C;
        ssl_tensor tx = ssl_tensor_mat(x, rows, C), ty = ssl_tensor_mat(y[k], rows, C), tm = ssl_tensor_vec(mean[k], C),
                   ts = ssl_tensor_vec(istd[k], C), tr = ssl_tensor_mat(r, rows, C), tdx = ssl_tensor_mat(dx[k], rows, C),
                   tdw = ssl_tensor_vec(dw[k], C), tdb = ssl_tensor_vec(db[k], C);
        CHECK_OK(ssl_batchnorm_forward(&bn[k], 1, &tx, &ty, &tm, &ts));
        CHECK_OK(ssl_batchnorm_backward(&bn[k], 1, &tx, &tr, &tm, &ts, &tdx, &tdw, &tdb));
    }
    ssl_tensor tdw = ssl_tensor_vec(dw[0], C), tdb = ssl_tensor_vec(db[0], C);
    CHECK_OK(ssl_all_reduce(&c, &tdw)); /* each rank's share of the parameter gradients, summed */
    CHECK_OK(ssl_all_reduce(&c, &tdb));
    double ey = 0, edx = 0, ep = 0;
    for (int i = 0; i < n * C; i++) {
        ey = fmax(ey, fabs(y[0][i] - y[1][R * n * C + i]));
        edx = fmax(edx, fabs(dx[0][i] - dx[1][R * n * C + i]));
    }
    for (int i = 0; i < C; i++) {
        ep = fmax(ep, fabs(mean[0][i] - mean[1][i]) + fabs(istd[0][i] - istd[1][i]) + fabs(par[0][2][i] - par[1][2][i]) +
                          fabs(par[0][3][i] - par[1][3][i]));
        ep = fmax(ep, fabs(dw[0][i] - dw[1][i]) + fabs(db[0][i] - db[1][i]));
    }
    /* float32: a few ulps of values of order 1 (the sums are in double) */
    CHECK(ey < 1e-5 && edx < 1e-5 && ep < 1e-5, "SyncBN on %d ranks vs one: y %.3g dx %.3g stats/grads %.3g", W, ey, edx, ep);
    /* finite differences of J = sum over every rank of sum(y * r) */
    double emax = 0;
    for (int probe = 0; probe < 6; probe++) {
        int owner = probe % W, idx = (probe * 7) % (n * C);
        float *xl = xg + R * n * C, h = 1e-2f;
        double J[2];
        for (int s = 0; s < 2; s++) {
            float keep = xl[idx];
            if (R == owner) xl[idx] += s ? -h : h;
            float yy[64 * 4], m[4], is[4];
            ssl_tensor tx = ssl_tensor_mat(xl, n, C), ty = ssl_tensor_mat(yy, n, C), tm = ssl_tensor_vec(m, C),
                       ts = ssl_tensor_vec(is, C);
            bn[0].running_mean.data = NULL, bn[0].running_var.data = NULL; /* not tracked here */
            CHECK_OK(ssl_batchnorm_forward(&bn[0], 1, &tx, &ty, &tm, &ts));
            double j = 0;
            for (int i = 0; i < n * C; i++) j += (double)yy[i] * rg[R * n * C + i];
            CHECK_OK(ssl_comm_sum_f64(&c, &j, 1));
            J[s] = j;
            xl[idx] = keep;
        }
        double fd = (J[0] - J[1]) / (2 * h), an = R == owner ? dx[0][idx] : 0;
        CHECK_OK(ssl_comm_sum_f64(&c, &an, 1));
        emax = fmax(emax, fabs(fd - an) / (1 + fabs(an)));
    }
    CHECK(emax < 2e-3, "SyncBN dx vs finite differences across ranks: relative error %.3g", emax);
    free(xg);
    free(rg);
    ssl_comm_free(&c);
}

TEST(dist_syncbn_equals_one_process_and_finite_differences) {
    if (is_child()) { syncbn_child(); return; }
    run_ranks("dist_syncbn_equals_one_process_and_finite_differences", 2);
    run_ranks("dist_syncbn_equals_one_process_and_finite_differences", 3);
}

static void losses_child(void) {
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    const int W = c.world, R = c.rank, n = 3, D = 6, N = n * W;
    float *g[4];
    for (int k = 0; k < 4; k++) {
        g[k] = ssl_malloc(sizeof(float) * N * D, "embeddings");
        for (int i = 0; i < N * D; i++) g[k][i] = gval(10 + k, i) + (k == 1 ? 0.5f * g[0][i] : 0.0f);
    }
    for (int method = 0; method < 4; method++) {
        ssl_train_config tc = ssl_train_config_default(method);
        ssl_buf scratch = {0}, gathered = {0};
        float dl[2][64 * 6], dg[2][64 * 6], loss_l = 0, loss_g = 0;
        ssl_tensor in_l[4], in_g[4];
        for (int k = 0; k < 4; k++) in_l[k] = ssl_tensor_mat(g[k] + R * n * D, n, D), in_g[k] = ssl_tensor_mat(g[k], N, D);
        ssl_tensor d1 = ssl_tensor_mat(dl[0], n, D), d2 = ssl_tensor_mat(dl[1], n, D), e1 = ssl_tensor_mat(dg[0], N, D),
                   e2 = ssl_tensor_mat(dg[1], N, D);
        CHECK_OK(ssl_loss_global(&c, &tc, &in_l[0], &in_l[1], &in_l[2], &in_l[3], &loss_l, &d1, &d2, &scratch, &gathered));
        CHECK_OK(ssl_loss_global(NULL, &tc, &in_g[0], &in_g[1], &in_g[2], &in_g[3], &loss_g, &e1, &e2, &scratch, &gathered));
        double eg = 0;
        for (int v = 0; v < 2; v++)
            for (int i = 0; i < n * D; i++) eg = fmax(eg, fabs(dl[v][i] - dg[v][R * n * D + i]));
        CHECK(fabs(loss_l - loss_g) <= 1e-6 * (1 + fabs(loss_g)) && eg < 1e-6,
              "%s on %d ranks vs one: loss %.9g vs %.9g, gradient %.3g", ssl_method_name(method), W, loss_l, loss_g, eg);
        /* finite differences of the global loss in a few entries of each rank's rows */
        double emax = 0;
        for (int probe = 0; probe < 4; probe++) {
            int owner = probe % W, v = probe / 2 % 2, idx = (probe * 5 + 1) % (n * D);
            float *x = g[v] + R * n * D, h = 1e-2f, L[2];
            for (int s = 0; s < 2; s++) {
                float keep = x[idx];
                if (R == owner) x[idx] += s ? -h : h;
                CHECK_OK(ssl_loss_global(&c, &tc, &in_l[0], &in_l[1], &in_l[2], &in_l[3], &L[s], NULL, NULL, &scratch, &gathered));
                x[idx] = keep;
            }
            double fd = ((double)L[0] - L[1]) / (2 * h), an = R == owner ? dl[v][idx] : 0;
            CHECK_OK(ssl_comm_sum_f64(&c, &an, 1));
            emax = fmax(emax, fabs(fd - an) / (1e-2 + fabs(an)));
        }
        CHECK(emax < 3e-2, "%s: gradient vs finite differences across ranks: relative error %.3g", ssl_method_name(method), emax);
        ssl_buf_free(&scratch);
        ssl_buf_free(&gathered);
    }
    for (int k = 0; k < 4; k++) free(g[k]);
    ssl_comm_free(&c);
}

TEST(dist_losses_over_ranks_equal_one_process_and_finite_differences) {
    if (is_child()) { losses_child(); return; }
    run_ranks("dist_losses_over_ranks_equal_one_process_and_finite_differences", 2);
    run_ranks("dist_losses_over_ranks_equal_one_process_and_finite_differences", 3);
}

/* VICReg and Barlow Twins split over the ranks (each rank its rows' share
   of the statistics, all-reduced; no gather) against the one-process
   ssl_vicreg_loss / ssl_barlow_loss on the concatenated batch: the loss
   and every rank's rows of both gradients. Two shapes: 4 rows a rank of
   16 dimensions, and 1 row a rank (the global batch is then the world:
   N = 2 or 3, the smallest either loss takes). The embeddings have
   per-dimension means from -3 to 3 and scales from 0.5 to 2, so a
   dimension's statistics differ between ranks and a rank's own would be
   wrong. What may differ is float32 summation order (a GEMM's sum over
   rows in parts, added by the all-reduce; VICReg leaves the centring of
   dx out, which removes rounding only): the bounds are 2e-6 relative for
   the loss and 2e-6 of the largest gradient entry (each view's); measured
   at most 1.4e-7 and 4.5e-7. But Barlow Twins' gradient at N = 2, 2e-3
   (measured 6.2e-4): two rows standardize to about +-1, and batch norm's
   backward there is invstd (up to 1/sqrt(eps) = 316 where they are close)
   times a difference of terms of order 1 that nearly cancel, so float32
   rounding of 1e-7 grows by 10^3 in either computation. The test also
   checks what travels: no gathered copy, and exactly the statistics'
   bytes (VICReg: 2 means and 2 covariances of [D, D], and one double;
   Barlow Twins: 2 means, 2 variances, the [D, D] cross-correlation and,
   backward, 4 vectors). */
static void split_child(void) {
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    const int W = c.world, R = c.rank;
    const int shapes[2][2] = {{4, 16}, {1, 5}}; /* n a rank, D */
    for (int sh = 0; sh < 2; sh++) {
        const int n = shapes[sh][0], D = shapes[sh][1], N = n * W;
        float *g[2], *dl[2], *dg[2];
        for (int k = 0; k < 2; k++) {
            g[k] = ssl_malloc(sizeof(float) * N * D, "embeddings");
            dl[k] = ssl_malloc(sizeof(float) * n * D, "gradients");
            dg[k] = ssl_malloc(sizeof(float) * N * D, "gradients");
            for (int i = 0; i < N * D; i++) {
                int j = i % D;
                float mean = -3.0f + 6.0f * j / (D - 1), scale = 0.5f + 1.5f * ((j * 7) % D) / (D - 1);
                g[k][i] = mean + scale * gval(40 + k, i) + (k == 1 ? 0.6f * (g[0][i] - mean) : 0.0f);
            }
        }
        for (int method = SSL_METHOD_VICREG; method <= SSL_METHOD_BARLOW; method++) {
            ssl_train_config tc = ssl_train_config_default(method);
            ssl_buf scratch = {0}, gathered = {0};
            ssl_tensor l1 = ssl_tensor_mat(g[0] + R * n * D, n, D), l2 = ssl_tensor_mat(g[1] + R * n * D, n, D),
                       a1 = ssl_tensor_mat(g[0], N, D), a2 = ssl_tensor_mat(g[1], N, D);
            ssl_tensor d1 = ssl_tensor_mat(dl[0], n, D), d2 = ssl_tensor_mat(dl[1], n, D), e1 = ssl_tensor_mat(dg[0], N, D),
                       e2 = ssl_tensor_mat(dg[1], N, D);
            float loss_split = 0, loss_one = 0;
            int64_t bytes0 = c.bytes, calls0 = c.calls;
            CHECK_OK(ssl_loss_global(&c, &tc, &l1, &l2, &l1, &l2, &loss_split, &d1, &d2, &scratch, &gathered));
            int64_t bytes = c.bytes - bytes0, calls = c.calls - calls0;
            if (method == SSL_METHOD_VICREG)
                CHECK_OK(ssl_vicreg_loss(&a1, &a2, tc.sim, tc.std, tc.cov, &loss_one, &e1, &e2, &scratch));
            else
                CHECK_OK(ssl_barlow_loss(&a1, &a2, tc.lambd, &loss_one, &e1, &e2, &scratch));
            double eg = 0;
            for (int v = 0; v < 2; v++) {
                double big = 0, diff = 0;
                for (int i = 0; i < N * D; i++) big = fmax(big, fabs(dg[v][i]));
                for (int i = 0; i < n * D; i++) diff = fmax(diff, fabs(dl[v][i] - dg[v][R * n * D + i]));
                eg = fmax(eg, diff / big);
            }
            double tol = method == SSL_METHOD_BARLOW && N == 2 ? 2e-3 : 2e-6;
            double el = fabs((double)loss_split - loss_one) / fabs(loss_one);
            CHECK(el <= 2e-6 && eg <= tol, "%s split on %d ranks x %d rows, D %d, vs one process: loss %.9g vs %.9g (%.3g), gradient %.3g",
                  ssl_method_name(method), W, n, D, loss_split, loss_one, el, eg);
            if (R == 0)
                printf("    %s on %d ranks x %d rows, D %d: loss %.7g, vs one process %.2g, gradients %.2g; %lld bytes in %lld collectives\n",
                       ssl_method_name(method), W, n, D, loss_split, el, eg, (long long)bytes, (long long)calls);
            int64_t want = method == SSL_METHOD_VICREG ? 4 * (2 * D + 2 * D * D) + 8 : 4 * (2 * D + 2 * D + D * D + 4 * D);
            CHECK(gathered.cap == 0, "%s: the embeddings were gathered (%zu bytes)", ssl_method_name(method), gathered.cap);
            CHECK(bytes == want && calls == (method == SSL_METHOD_VICREG ? 3 : 4), "%s: %lld bytes in %lld collectives, want %lld",
                  ssl_method_name(method), (long long)bytes, (long long)calls, (long long)want);
            ssl_buf_free(&scratch);
            ssl_buf_free(&gathered);
        }
        for (int k = 0; k < 2; k++) free(g[k]), free(dl[k]), free(dg[k]);
    }
    ssl_comm_free(&c);
}

TEST(dist_split_vicreg_barlow_equal_the_one_process_losses) {
    if (is_child()) { split_child(); return; }
    run_ranks("dist_split_vicreg_barlow_equal_the_one_process_losses", 2);
    run_ranks("dist_split_vicreg_barlow_equal_the_one_process_losses", 3);
}

/* The test subset's 500 CIFAR-10 JPEGs, packed once. */
static const char *dist_pack(void) {
    static int made;
    const char *pack = test_tmp("dist500.ssl");
    if (!made) {
        char *out = NULL;
        int rc = test_runf(&out, test_bin("SSL_PACK", "./pack"), "%s %s force=1 quiet=1", test_data("cifar10/test"), pack);
        CHECK(rc == 0, "pack: %s", out);
        free(out);
        made = rc == 0;
    }
    return pack;
}

/* ---- the loader: N ranks' batches side by side are one rank's batch ------ */
TEST(dist_loader_ranks_side_by_side_are_one_batch) {
    if (is_child()) return;
    const char *pack = dist_pack();
    if (test_failures()) return;
    for (int world = 2; world <= 3; world++) {
        const int B = 12, per = B / world;
        ssl_loader *one, *rk[3];
        ssl_loader_config c;
        ssl_loader_config_init(&c, pack, "simclr", 16, B);
        c.seed = 5, c.threads = 1;
        one = ssl_loader_open(&c);
        CHECK(one != NULL, "%s", ssl_last_error());
        for (int r = 0; r < world; r++) {
            ssl_loader_config_init(&c, pack, "simclr", 16, per);
            c.seed = 5, c.threads = 1, c.rank = r, c.world = world;
            rk[r] = ssl_loader_open(&c);
            CHECK(rk[r] != NULL, "%s", ssl_last_error());
        }
        if (test_failures()) return;
        CHECK_EQ(ssl_loader_batches_per_epoch(rk[world - 1]), ssl_loader_batches_per_epoch(one));
        int diff_ids = 0, diff_px = 0, batches = 0;
        for (int epoch = 1; epoch <= 2; epoch++) {
            ssl_loader_start_epoch(one, epoch, 1); /* from batch 1: a resumed epoch too */
            for (int r = 0; r < world; r++) ssl_loader_start_epoch(rk[r], epoch, 1);
            const ssl_batch *b;
            while ((b = ssl_loader_next(one))) {
                for (int r = 0; r < world; r++) {
                    const ssl_batch *p = ssl_loader_next(rk[r]);
                    CHECK(p && p->n == per, "rank %d batch missing", r);
                    if (!p) break;
                    for (int i = 0; i < per; i++) diff_ids += p->ids[i] != b->ids[r * per + i];
                    size_t px = (size_t)per * p->w[0] * p->h[0] * 3;
                    for (int v = 0; v < 2; v++)
                        diff_px += memcmp(p->views[v], b->views[v] + r * px, sizeof(float) * px) != 0;
                    ssl_loader_release(rk[r], p);
                }
                ssl_loader_release(one, b);
                batches++;
            }
        }
        CHECK(batches == 2 * (ssl_loader_batches_per_epoch(one) - 1) && diff_ids == 0 && diff_px == 0,
              "world %d: %d batches, %d ids and %d views differ from one rank's", world, batches, diff_ids, diff_px);
        ssl_loader_close(one);
        for (int r = 0; r < world; r++) ssl_loader_close(rk[r]);
    }
}

/* ---- ./train under mpirun -------------------------------------------------- */
/* A tiny run: ResNet-18 at width 1/8 on 16x16 views; bs global. */
static int train_ranks(char **out, int np, const char *method, int bs, const char *dir, const char *extra) {
    const char *mr = np > 1 ? mpirun() : "";
    if (!mr) return -1;
    char ranks[512] = "";
    /* SSL_CUDA_EMULATE travels to the ranks when set */
    if (np > 1) snprintf(ranks, sizeof ranks, "%s%s -np %d ", mr, getenv("SSL_CUDA_EMULATE") ? " -x SSL_CUDA_EMULATE" : "", np);
    return test_runf(out, NULL,
                     "%s%s %s data=%s bs=%d width=0.125 res=16 projector=32-16%s epochs=1 warmup=0 lr=0.1 "
                     "log_every=1 threads=1 loader_threads=1 device=cpu seed=3 ckpt_every=0 out=%s %s",
                     ranks, test_bin("SSL_TRAIN", "./train"), method, dist_pack(), bs,
                     !strcmp(method, "byol") ? " predictor=32-16" : "", dir, extra);
}

/* the "loss" of each progress record of DIR/log.jsonl */
static int read_losses(const char *dir, double *loss, int cap) {
    char path[SSL_STR], line[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *p = strstr(line, "\"loss\": ");
        if (p && strstr(line, "\"step\": ")) loss[n++] = atof(p + 8);
    }
    fclose(f);
    return n;
}

/* A linear layer's bias that batch norm follows has a zero gradient (the
   normalization removes it): its optimizer state is rounding noise. */
static int zero_grad_bias(const ssl_tfile *f, const char *name) {
    const char *base = strncmp(name, "optim.", 6) ? NULL : strchr(name + 6, '.');
    size_t len = base ? strlen(base + 1) : 0;
    if (!base || len < 6 || strcmp(base + 1 + len - 5, ".bias")) return 0;
    char layer[128], next[160];
    snprintf(layer, sizeof layer, "%.*s", (int)(len - 5), base + 1); /* "projector.0" */
    char *dot = strrchr(layer, '.');
    if (!dot) return 0;
    *dot = 0;
    snprintf(next, sizeof next, "%s.%d.running_mean", layer, atoi(dot + 1) + 1);
    return ssl_tfile_find(f, next) != NULL;
}

/* The largest difference between the float tensors of two checkpoints,
   relative to each tensor's largest magnitude (at least `floor`); the
   optimizer state too if `optim`; the tensor named. */
static double ckpt_diff(const char *a, const char *b, int optim, double floor, char *worst, size_t cap) {
    char pa[SSL_STR + 16], pb[SSL_STR + 16];
    snprintf(pa, sizeof pa, "%s/ckpt.sslt", a);
    snprintf(pb, sizeof pb, "%s/ckpt.sslt", b);
    ssl_tfile fa, fb;
    if (ssl_tfile_read(pa, &fa)) return INFINITY;
    if (ssl_tfile_read(pb, &fb)) { ssl_tfile_free(&fa); return INFINITY; }
    double m = 0;
    snprintf(worst, cap, "(none)");
    for (int i = 0; i < fa.count; i++) {
        const ssl_tentry *ea = &fa.entries[i], *eb = ssl_tfile_find(&fb, ea->name);
        if (!eb || eb->nbytes != ea->nbytes) { m = INFINITY; snprintf(worst, cap, "%s missing", ea->name); break; }
        int is_optim = strstr(ea->name, "optim.") != NULL;
        if (ea->dtype != SSL_F32 || (is_optim && (!optim || zero_grad_bias(&fa, ea->name)))) continue;
        const float *x = ea->data, *y = eb->data;
        int64_t n = ssl_tentry_numel(ea);
        double big = floor, d = 0;
        for (int64_t k = 0; k < n; k++) big = fmax(big, fabs(x[k])), d = fmax(d, fabs((double)x[k] - y[k]));
        if (d / big > m) { m = d / big; snprintf(worst, cap, "%s", ea->name); }
    }
    ssl_tfile_free(&fa);
    ssl_tfile_free(&fb);
    return m;
}

/* THE test of many ranks: for each method with SyncBN (and Instance-SimCLR:
   simclr negatives=patch, "instance" below), 5 steps on 2 ranks
   x 6 and 3 ranks x 4 images are 5 steps on 1 rank x 12 (the same loader
   batches and views), in losses and in every weight, buffer and optimizer
   state of the checkpoint. What may differ is float32 summation order (a
   GEMM's sum over rows split in parts, added by the all-reduce): a few
   ulps at step 1. The bounds follow from that:
   - after 1 step (2 ranks), every tensor, optimizer state included,
     within 1e-5 of its largest magnitude (at least 1e-3); measured 0 but
     for the momentum of biases that batch norm follows, whose gradient is
     zero and whose value is rounding noise (left out);
   - the losses of all 5 steps within 2e-5 relative (measured at most
     6e-6; the log keeps 6 decimals);
   - after 5 steps, every weight and buffer within 2e-2 of its largest
     magnitude (at least 1e-2): by then a ReLU whose input was within
     rounding of 0 may have flipped, which moves its channel's gradient by
     about 1/rows (1/768 in layer 2 of this tiny net: 8 channels, 12 images
     of 16x16), and the steps grow that (measured up to 6e-3 in a
     batch-norm bias, 1e-5 elsewhere).
   A real error is far above: the same run without SyncBN is checked to
   differ by more than 1e-3 at its first loss (it differs by 7%). lr 0.1:
   this tiny batch is chaotic, and at lr 0.3 Barlow Twins grows a
   difference 10x a step. */
static double inv_run(const char *method, int np, int steps, double *loss, int *nl, const char *tag) {
    char dir[SSL_STR], extra[96], *out = NULL;
    snprintf(dir, sizeof dir, "%s", test_tmp(""));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "inv-%s-%d-%s", method, np, tag);
    /* "instance": Instance-SimCLR, simclr with each image's patch its only negative */
    int instance = !strcmp(method, "instance");
    snprintf(extra, sizeof extra, "max_steps=%d sync_bn=1%s", steps, instance ? " negatives=patch" : "");
    double t0 = ssl_now();
    int rc = train_ranks(&out, np, instance ? "simclr" : method, 12, dir, extra);
    CHECK(rc == 0, "%s on %d ranks: rc %d\n%s", method, np, rc, out);
    if (np > 1) CHECK_CONTAINS(out, " ranks (");
    free(out);
    if (loss) *nl = read_losses(dir, loss, 8);
    return ssl_now() - t0;
}
static double inv_diff(const char *method, int np, const char *tag, int optim, double floor, char *worst, size_t cap) {
    char a[SSL_STR], b[SSL_STR];
    snprintf(a, sizeof a, "%s", test_tmp(""));
    snprintf(b, sizeof b, "%s", a);
    snprintf(a + strlen(a), sizeof a - strlen(a), "inv-%s-1-%s", method, tag);
    snprintf(b + strlen(b), sizeof b - strlen(b), "inv-%s-%d-%s", method, np, tag);
    return ckpt_diff(a, b, optim, floor, worst, cap);
}

TEST(dist_world_size_invariance_all_methods) {
    if (is_child() || !mpirun()) return;
    const char *methods[5] = {"simclr", "vicreg", "barlow", "byol", "instance"};
    for (int m = 0; m < 5; m++) {
        const char *me = methods[m];
        char worst[128];
        /* one step: every tensor to float32 rounding */
        inv_run(me, 1, 1, NULL, NULL, "1step");
        inv_run(me, 2, 1, NULL, NULL, "1step");
        double e1 = inv_diff(me, 2, "1step", 1, 1e-3, worst, sizeof worst);
        printf("    %s, 1 step: 2 ranks vs 1: tensors %.2g (%s)\n", me, e1, worst);
        CHECK(e1 <= 1e-5, "%s: after 1 step, 2 ranks' tensor %s differs from one rank's by %.3g relative", me, worst, e1);
        /* five steps */
        double loss[3][8];
        int nl[3];
        double secs[3];
        for (int k = 0; k < 3; k++) secs[k] = inv_run(me, k + 1, 5, loss[k], &nl[k], "5steps");
        printf("    %s, 5 steps: %.1fs on 1 rank, %.1fs on 2, %.1fs on 3 (mpirun's start included)\n", me, secs[0], secs[1], secs[2]);
        for (int k = 1; k < 3; k++) {
            CHECK(nl[k] == 5 && nl[0] == 5, "%s: %d and %d loss records", me, nl[0], nl[k]);
            double el = 0;
            for (int s = 0; s < nl[0] && s < nl[k]; s++) el = fmax(el, fabs(loss[k][s] - loss[0][s]) / fabs(loss[0][s]));
            double ew = inv_diff(me, k + 1, "5steps", 0, 1e-2, worst, sizeof worst);
            printf("    %s, 5 steps: %d ranks vs 1: losses %.2g, tensors %.2g (%s); loss %.4f -> %.4f\n", me, k + 1, el, ew,
                   worst, loss[0][0], loss[0][4]);
            CHECK(el <= 2e-5, "%s: %d ranks' losses differ from one rank's by %.3g relative", me, k + 1, el);
            CHECK(ew <= 2e-2, "%s: %d ranks' tensor %s differs from one rank's by %.3g relative", me, k + 1, worst, ew);
        }
        /* the steps moved the weights: the test could fail */
        CHECK(fabs(loss[0][4] - loss[0][0]) > 1e-3, "%s: the loss did not move (%.6f -> %.6f)", me, loss[0][0], loss[0][4]);
        if (m) continue;
        /* and it can: each rank's own batch-norm statistics change the first loss */
        char dir0[SSL_STR], *out = NULL;
        snprintf(dir0, sizeof dir0, "%s", test_tmp("inv-simclr-nosync"));
        CHECK(train_ranks(&out, 2, me, 12, dir0, "max_steps=1 sync_bn=0") == 0, "%s", out);
        free(out);
        double l0[8];
        CHECK(read_losses(dir0, l0, 8) == 1 && fabs(l0[0] - loss[0][0]) > 1e-3 * fabs(loss[0][0]),
              "2 ranks without SyncBN: first loss %.6f vs one rank's %.6f", l0[0], loss[0][0]);
        printf("    simclr on 2 ranks without SyncBN: first loss %.6f vs %.6f\n", l0[0], loss[0][0]);
    }
}

/* ---- resume at another world size --------------------------------------- */
/* 3 steps at world a, resumed to step 6 at world b = 6 steps straight at
   one rank (same bounds as the invariance test's 5 steps). */
static void resume_case(int a, int b) {
    char d1[SSL_STR], d2[SSL_STR], ds[SSL_STR], extra[SSL_STR * 2], *out = NULL;
    snprintf(d1, sizeof d1, "%s", test_tmp(""));
    snprintf(d2, sizeof d2, "%s", d1);
    snprintf(ds, sizeof ds, "%s", d1);
    snprintf(d1 + strlen(d1), sizeof d1 - strlen(d1), "resume-%d-%d-first", a, b);
    snprintf(d2 + strlen(d2), sizeof d2 - strlen(d2), "resume-%d-%d-then", a, b);
    snprintf(ds + strlen(ds), sizeof ds - strlen(ds), "resume-straight");
    test_runf(NULL, NULL, "rm -rf %s %s", d1, d2);
    static int straight_done;
    if (!straight_done) {
        test_runf(NULL, NULL, "rm -rf %s", ds);
        CHECK(train_ranks(&out, 1, "simclr", 12, ds, "max_steps=6") == 0, "%s", out);
        free(out);
        straight_done = 1;
    }
    CHECK(train_ranks(&out, a, "simclr", 12, d1, "max_steps=3") == 0, "%s", out);
    free(out);
    snprintf(extra, sizeof extra, "max_steps=6 resume=%s", d1);
    int rc = train_ranks(&out, b, "simclr", 12, d2, extra);
    CHECK(rc == 0, "resume on %d ranks: %s", b, out);
    char said[96];
    snprintf(said, sizeof said, "written by %d rank%s, this run has %d", a, a == 1 ? "" : "s", b);
    CHECK_CONTAINS(out, said);
    free(out);
    double ls[8], lr[8], el = 0;
    int ns = read_losses(ds, ls, 8), nr = read_losses(d2, lr, 8);
    CHECK(ns == 6 && nr == 3, "%d and %d loss records", ns, nr);
    for (int s = 0; s < 3 && nr == 3 && ns == 6; s++) el = fmax(el, fabs(lr[s] - ls[3 + s]) / fabs(ls[3 + s]));
    char worst[128];
    double ew = ckpt_diff(ds, d2, 0, 1e-2, worst, sizeof worst);
    printf("    %d ranks, then %d: steps 4-6 losses %.2g, weights %.2g (%s) from one straight run\n", a, b, el, ew, worst);
    CHECK(el <= 2e-5, "resumed %d -> %d: losses differ by %.3g relative", a, b, el);
    CHECK(ew <= 2e-2, "resumed %d -> %d: tensor %s differs by %.3g relative", a, b, worst, ew);
}

TEST(dist_resume_at_another_world_size) {
    if (is_child() || !mpirun()) return;
    resume_case(2, 1);
    resume_case(1, 2);
}

/* ---- signals and faults ---------------------------------------------------- */
/* Starts a long run on 2 ranks, waits for step 3 in its log, sends `sig`
   to one rank (mpirun's last child: not rank 0, as a rule), and returns
   mpirun's exit code; *secs: from the signal to mpirun's exit. */
static int signal_one_rank(const char *dir, const char *sig, const char *extra, char **out, double *secs) {
    const char *mr = mpirun();
    if (!mr) return -1;
    char script[4 * SSL_STR];
    snprintf(script, sizeof script,
             "rm -rf %s; (%s -np 2 %s simclr data=%s bs=12 width=0.125 res=16 projector=32-16 epochs=100 warmup=0 lr=0.1 "
             "log_every=1 threads=1 loader_threads=1 device=cpu seed=3 ckpt_every=0 out=%s %s > %s.out 2>&1 & M=$!; "
             "for i in $(seq 600); do grep -q '\"step\": 3,' %s/log.jsonl 2>/dev/null && break; sleep 0.05; done; "
             "K=$(pgrep -P $M | tail -1); t0=$(date +%%s.%%N); kill -%s $K; wait $M; rc=$?; t1=$(date +%%s.%%N); "
             "kill -KILL $K 2>/dev/null; echo \"secs $(echo \"$t1 - $t0\" | bc)\"; cat %s.out; exit $rc)",
             dir, mr, test_bin("SSL_TRAIN", "./train"), dist_pack(), dir, extra, dir, dir, sig, dir);
    int rc = test_run(script, out);
    const char *s = *out ? strstr(*out, "secs ") : NULL;
    *secs = s ? atof(s + 5) : -1;
    return rc;
}

TEST(dist_sigterm_to_one_rank_checkpoints_once_and_all_exit_0) {
    if (is_child() || !mpirun()) return;
    char *out = NULL, dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", test_tmp("sigterm"));
    double secs;
    int rc = signal_one_rank(dir, "TERM", "", &out, &secs);
    CHECK(rc == 0, "rc %d after SIGTERM to one rank:\n%s", rc, out);
    CHECK_CONTAINS(out, "terminated (SIGTERM)");
    char path[SSL_STR + 16], line[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    int ckpts = 0;
    while (f && fgets(line, sizeof line, f)) ckpts += strstr(line, "\"checkpoint\"") != NULL;
    if (f) fclose(f);
    CHECK_EQ(ckpts, 1);
    snprintf(path, sizeof path, "%s/ckpt.sslt", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0, "no checkpoint after SIGTERM");
    printf("    SIGTERM to one rank: every rank out %.1fs later, rc 0\n", secs);
    free(out);
}

/* A rank killed mid-run: mpirun stops the other and names the dead one. */
TEST(dist_killed_rank_stops_the_other_within_10s) {
    if (is_child() || !mpirun()) return;
    char *out = NULL, dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", test_tmp("killed"));
    double secs;
    int rc = signal_one_rank(dir, "KILL", "", &out, &secs);
    CHECK(rc != 0, "rc 0 after a rank was killed:\n%s", out);
    CHECK(strstr(out, "rank 1") || strstr(out, "rank 0"), "the dead rank is not named:\n%s", out);
    CHECK_CONTAINS(out, "signal 9");
    CHECK(secs >= 0 && secs < 10, "the other rank went on %.1fs after the kill", secs);
    printf("    a rank killed: mpirun out %.1fs later, rc %d\n", secs, rc);
    free(out);
}

/* A rank that hangs (SIGSTOP): the other's collective waits past
   watchdog=2 s and every rank is stopped, the wait named. */
TEST(dist_hung_rank_trips_the_watchdog) {
    if (is_child() || !mpirun()) return;
    char *out = NULL, dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", test_tmp("hung"));
    double secs;
    int rc = signal_one_rank(dir, "STOP", "watchdog=2", &out, &secs);
    CHECK(rc != 0, "rc 0 after a rank hung:\n%s", out);
    CHECK_CONTAINS(out, "watchdog=2 s");
    CHECK(secs >= 2 && secs < 12, "the watchdog stopped the run %.1fs after the hang (watchdog 2s)", secs);
    printf("    a rank hung: stopped %.1fs later (watchdog=2), rc %d\n", secs, rc);
    free(out);
}

/* Work whose waits no collective sees (a GPU step: NCCL's collectives are
   queued and waited for in the next device read) is timed as a whole:
   rank 1 marks such a stretch and never ends it, rank 0 makes no call at
   all, and the watchdog (1 s) stops both, naming the stretch. */
TEST(dist_watchdog_times_a_watched_stretch) {
    if (is_child()) {
        ssl_comm c;
        CHECK_OK(ssl_comm_init(&c, 1.0));
        if (c.rank == 1) ssl_comm_watch(&c, "a GPU step");
        sleep(20);
        CHECK(0, "rank %d: still running 20 s after the watched stretch began (watchdog 1 s)", c.rank);
        ssl_comm_free(&c);
        return;
    }
    char *out = NULL;
    double t0 = ssl_now();
    int rc = test_launch_ranks("dist_watchdog_times_a_watched_stretch", 2, &out);
    if (rc < 0) return;
    double secs = ssl_now() - t0;
    CHECK(rc != 0, "rc 0 with a stretch that never ended:\n%s", out);
    CHECK_CONTAINS(out, "a GPU step has run");
    CHECK_CONTAINS(out, "watchdog=1 s");
    CHECK(secs < 15, "the watchdog stopped the ranks after %.1fs (watchdog 1 s; the ranks sleep 20 s)", secs);
    printf("    a watched stretch that never ends: stopped after %.1fs (watchdog=1), rc %d\n", secs, rc);
    free(out);
}

/* Launches that cannot work are refused before any step, saying why. */
TEST(dist_bad_launches_are_refused_before_work) {
    if (is_child() || !mpirun()) return;
    char *out = NULL, dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", test_tmp("badlaunch"));
    CHECK(train_ranks(&out, 2, "simclr", 13, dir, "max_steps=1") != 0, "bs=13 on 2 ranks ran");
    CHECK_CONTAINS(out, "bs=13 is the global batch: it must be a multiple of the 2 ranks");
    CHECK(!strstr(out, "step 1/"), "a step ran:\n%s", out);
    free(out);
    CHECK(train_ranks(&out, 3, "simclr", 2, dir, "max_steps=1") != 0, "bs=2 on 3 ranks ran");
    CHECK_CONTAINS(out, "must be a multiple of the 3 ranks");
    free(out);
    /* a rank started with another config (MPMD: two commands, one world) */
    const char *mr = mpirun();
    char cmd[3 * SSL_STR];
    snprintf(cmd, sizeof cmd, "%s -np 1 %s simclr data=%s bs=12 out=%s max_steps=1 : -np 1 %s simclr data=%s bs=12 out=%s max_steps=1 seed=4",
             mr, test_bin("SSL_TRAIN", "./train"), dist_pack(), dir, test_bin("SSL_TRAIN", "./train"), dist_pack(), dir);
    CHECK(test_run(cmd, &out) != 0, "ranks with different configs ran");
    CHECK_CONTAINS(out, "rank 1 has a different configuration");
    free(out);
    /* more ranks on a node than GPUs (none here, or a build without CUDA) */
    CHECK(train_ranks(&out, 2, "simclr", 12, dir, "max_steps=1 device=cuda sync_bn=0") != 0, "2 ranks ran on the GPUs there are not");
    CHECK(strstr(out, "2 ranks on this node but 0 GPUs") || strstr(out, "needs a build with the CUDA backend") ||
          strstr(out, "GPU ranks need a build"), "%s", out);
    free(out);
}

/* The GPU trainer's path on 2 ranks (./train device=cuda in emulation: its
   device tensors are host memory, so MPI carries what NCCL would):
   gradients all-reduced on the device side, the losses over the ranks
   (SimCLR, VICReg, Barlow Twins, Instance-SimCLR), the weight check at the
   checkpoint; its first loss is the CPU's on 2 ranks without SyncBN to
   1e-5 (with SyncBN: dist_emulated_gpu_syncbn_world_size_invariance). */
TEST(dist_emulated_gpu_ranks_train_like_cpu_ranks) {
    if (is_child() || !mpirun()) return;
    char dg[SSL_STR], dc[SSL_STR], *out = NULL;
    snprintf(dg, sizeof dg, "%s", test_tmp("emu-gpu-2"));
    snprintf(dc, sizeof dc, "%s", test_tmp("cpu-2-nosync"));
    setenv("SSL_CUDA_EMULATE", "1", 1);
    int rc = train_ranks(&out, 2, "simclr", 12, dg, "max_steps=3 device=cuda precision=fp32 sync_bn=0");
    unsetenv("SSL_CUDA_EMULATE");
    if (rc && strstr(out, "needs a build with the CUDA backend")) {
        test_skip("./train has no CUDA backend (nvcc was not found when it was built)");
        free(out);
        return;
    }
    CHECK(rc == 0, "emulated GPU on 2 ranks: %s", out);
    free(out);
    CHECK(train_ranks(&out, 2, "simclr", 12, dc, "max_steps=3 sync_bn=0") == 0, "%s", out);
    free(out);
    /* the first loss to float rounding; then the engines' different
       summation orders, grown by this tiny batch (about 10x a step) */
    double lg[8], lc[8], el[3] = {0, 0, 0};
    int ng = read_losses(dg, lg, 8), nc = read_losses(dc, lc, 8);
    CHECK(ng == 3 && nc == 3, "%d and %d loss records", ng, nc);
    for (int s = 0; s < 3 && ng == 3 && nc == 3; s++) el[s] = fabs(lg[s] - lc[s]) / fabs(lc[s]);
    printf("    emulated GPU vs CPU, 2 ranks: losses of steps 1, 2, 3 differ by %.2g, %.2g, %.2g relative\n", el[0], el[1], el[2]);
    CHECK(el[0] <= 1e-5 && el[1] <= 1e-2 && el[2] <= 1e-2, "the emulated GPU's losses on 2 ranks differ from the CPU's by %.3g, %.3g, %.3g",
          el[0], el[1], el[2]);
    /* the split losses and Instance-SimCLR on device tensors (their
       per-dimension passes are batch norm's CUDA code): the first loss, and
       the second after a step of their gradients, as the CPU's on 2 ranks */
    const char *more[3][2] = {{"vicreg", ""}, {"barlow", ""}, {"simclr", " negatives=patch"}};
    for (int m = 0; m < 3; m++) {
        char extra[160];
        snprintf(dg, sizeof dg, "%s", test_tmp("emu-gpu-2-"));
        snprintf(dg + strlen(dg), sizeof dg - strlen(dg), "%s%s", more[m][0], more[m][1][0] ? "-patch" : "");
        snprintf(dc, sizeof dc, "%s-cpu", dg);
        snprintf(extra, sizeof extra, "max_steps=2 device=cuda precision=fp32 sync_bn=0%s", more[m][1]);
        setenv("SSL_CUDA_EMULATE", "1", 1);
        rc = train_ranks(&out, 2, more[m][0], 12, dg, extra);
        unsetenv("SSL_CUDA_EMULATE");
        CHECK(rc == 0, "emulated GPU, %s%s on 2 ranks: %s", more[m][0], more[m][1], out);
        free(out);
        snprintf(extra, sizeof extra, "max_steps=2 sync_bn=0%s", more[m][1]);
        CHECK(train_ranks(&out, 2, more[m][0], 12, dc, extra) == 0, "%s", out);
        free(out);
        ng = read_losses(dg, lg, 8), nc = read_losses(dc, lc, 8);
        CHECK(ng == 2 && nc == 2, "%s: %d and %d loss records", more[m][0], ng, nc);
        for (int s = 0; s < 2 && ng == 2 && nc == 2; s++) el[s] = fabs(lg[s] - lc[s]) / fabs(lc[s]);
        printf("    emulated GPU vs CPU, %s%s on 2 ranks: losses of steps 1, 2 differ by %.2g, %.2g relative\n", more[m][0],
               more[m][1], el[0], el[1]);
        CHECK(el[0] <= 1e-5 && el[1] <= 1e-2, "%s%s: the emulated GPU's losses on 2 ranks differ from the CPU's by %.3g, %.3g",
              more[m][0], more[m][1], el[0], el[1]);
    }
}

/* SyncBN on the GPU path (./train device=cuda in emulation, fp32: batch
   norm's double sums all-reduced on the device side, which MPI carries
   here and NCCL on GPUs): 2 ranks x 6 images are 1 rank x 12, with the
   invariance test's bounds and for its reasons (dist_world_size_invariance_all_methods):
   after 1 step every tensor, optimizer state included, within 1e-5 of its
   largest magnitude; over 5 steps the losses within 2e-5 relative and
   every weight and buffer within 2e-2. SimCLR; BYOL, whose target
   network's batch norms sync too; VICReg and Barlow Twins, whose losses
   are split over the ranks on device tensors. It can fail: the same 2 ranks without
   SyncBN differ from one rank at the first loss by more than 1e-3. With
   bf16 activations (the default precision) a value within rounding of a
   bf16 boundary may round the other way (2^-8 relative): SimCLR's 5
   losses are held to 1e-3 relative there (measured equal to the log's 6
   decimals). */
static double emu_sync_run(const char *method, int np, int steps, int sync, double *loss, int *nl, const char *tag) {
    char dir[SSL_STR], extra[128], *out = NULL;
    snprintf(dir, sizeof dir, "%s", test_tmp(""));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "inv-%s-%d-%s", method, np, tag);
    snprintf(extra, sizeof extra, "max_steps=%d device=cuda precision=%s sync_bn=%d", steps,
             strstr(tag, "bf16") ? "bf16" : "fp32", sync);
    test_runf(NULL, NULL, "rm -rf %s", dir); /* no earlier run's log or checkpoint read as this one's */
    double t0 = ssl_now();
    int rc = train_ranks(&out, np, method, 12, dir, extra);
    CHECK(rc == 0, "%s on %d emulated GPUs: rc %d\n%s", method, np, rc, out);
    if (np > 1 && sync) CHECK_CONTAINS(out, ", SyncBN");
    free(out);
    if (loss) *nl = read_losses(dir, loss, 8);
    return ssl_now() - t0;
}

TEST(dist_emulated_gpu_syncbn_world_size_invariance) {
    if (is_child() || !mpirun()) return;
    char *out = NULL;
    int rc = test_runf(&out, NULL, "SSL_CUDA_EMULATE=1 %s simclr device=cuda data=x 2>&1", test_bin("SSL_TRAIN", "./train"));
    int no_cuda = rc && strstr(out, "needs a build with the CUDA backend");
    free(out);
    if (no_cuda) {
        test_skip("./train has no CUDA backend (nvcc was not found when it was built)");
        return;
    }
    setenv("SSL_CUDA_EMULATE", "1", 1);
    const char *methods[4] = {"simclr", "byol", "vicreg", "barlow"};
    for (int m = 0; m < 4; m++) {
        const char *me = methods[m];
        char worst[128];
        emu_sync_run(me, 1, 1, 1, NULL, NULL, "emu-1step");
        emu_sync_run(me, 2, 1, 1, NULL, NULL, "emu-1step");
        double e1 = inv_diff(me, 2, "emu-1step", 1, 1e-3, worst, sizeof worst);
        printf("    %s, emulated GPU, 1 step: 2 ranks vs 1: tensors %.2g (%s)\n", me, e1, worst);
        CHECK(e1 <= 1e-5, "%s: after 1 step, 2 emulated GPUs' tensor %s differs from one's by %.3g relative", me, worst, e1);
        double loss[2][8];
        int nl[2];
        double secs[2];
        for (int k = 0; k < 2; k++) secs[k] = emu_sync_run(me, k + 1, 5, 1, loss[k], &nl[k], "emu-5steps");
        CHECK(nl[0] == 5 && nl[1] == 5, "%s: %d and %d loss records", me, nl[0], nl[1]);
        double el = 0;
        for (int s = 0; s < nl[0] && s < nl[1]; s++) el = fmax(el, fabs(loss[1][s] - loss[0][s]) / fabs(loss[0][s]));
        double ew = inv_diff(me, 2, "emu-5steps", 0, 1e-2, worst, sizeof worst);
        printf("    %s, emulated GPU, 5 steps (%.1fs, %.1fs): 2 ranks vs 1: losses %.2g, tensors %.2g (%s); loss %.4f -> %.4f\n", me,
               secs[0], secs[1], el, ew, worst, loss[0][0], loss[0][4]);
        CHECK(el <= 2e-5, "%s: 2 emulated GPUs' losses differ from one's by %.3g relative", me, el);
        CHECK(ew <= 2e-2, "%s: 2 emulated GPUs' tensor %s differs from one's by %.3g relative", me, worst, ew);
        CHECK(fabs(loss[0][4] - loss[0][0]) > 1e-3, "%s: the loss did not move (%.6f -> %.6f)", me, loss[0][0], loss[0][4]);
        if (m) continue;
        double l0[8];
        int n0 = 0;
        emu_sync_run(me, 2, 1, 0, l0, &n0, "emu-nosync");
        CHECK(n0 == 1 && fabs(l0[0] - loss[0][0]) > 1e-3 * fabs(loss[0][0]),
              "2 emulated GPUs without SyncBN: first loss %.6f vs one's %.6f", l0[0], loss[0][0]);
        printf("    simclr on 2 emulated GPUs without SyncBN: first loss %.6f vs %.6f\n", l0[0], loss[0][0]);
        for (int k = 0; k < 2; k++) emu_sync_run(me, k + 1, 5, 1, loss[k], &nl[k], "emu-bf16");
        CHECK(nl[0] == 5 && nl[1] == 5, "bf16: %d and %d loss records", nl[0], nl[1]);
        el = 0;
        for (int s = 0; s < nl[0] && s < nl[1]; s++) el = fmax(el, fabs(loss[1][s] - loss[0][s]) / fabs(loss[0][s]));
        printf("    simclr, emulated GPU, bf16, 5 steps: 2 ranks vs 1: losses %.2g\n", el);
        CHECK(el <= 1e-3, "bf16: 2 emulated GPUs' losses differ from one's by %.3g relative", el);
    }
    unsetenv("SSL_CUDA_EMULATE");
}
