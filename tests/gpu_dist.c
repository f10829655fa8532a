/* Section 12 on the device: the collectives of a world of one on device
   tensors (emulated and real), NCCL's collectives on one rank (a real
   GPU; see gpu_common.h), and SyncBN on 2 ranks (emulated under mpirun;
   on GPUs where a node has two). */
#include "gpu_common.h"

#include <unistd.h>

/* A world of one: all-reduce and broadcast leave the tensor, all-gather
   and reduce-scatter copy it, on the device. */
static void comm_case(int gpu) {
    if (!g_begin(gpu)) return;
    ssl_comm c;
    ssl_comm_single(&c);
    ssl_tensor h = g_rand(71, 2, 5, 7, 1, 1, -1, 1), o = g_rand(72, 2, 5, 7, 1, 1, -1, 1);
    ssl_tensor d = g_tensor(gpu, &h), dout = g_tensor(gpu, &o);
    CHECK_OK(ssl_all_reduce(&c, &d));
    CHECK_OK(ssl_broadcast(&c, &d, 0));
    G_CLOSE_T(gpu, "all-reduce of one", &d, &h, 0, 0);
    CHECK_OK(ssl_all_gather(&c, &d, &dout));
    G_CLOSE_T(gpu, "all-gather of one", &dout, &h, 0, 0);
    g_release(gpu, &dout);
    dout = g_tensor(gpu, &o);
    CHECK_OK(ssl_reduce_scatter(&c, &d, &dout));
    G_CLOSE_T(gpu, "reduce-scatter of one", &dout, &h, 0, 0);
    ssl_tensor wrong = ssl_tensor_row_slice(&dout, 0, 4);
    CHECK_ERR(ssl_all_gather(&c, &d, &wrong), "ranks x");
    g_release(gpu, &d);
    g_release(gpu, &dout);
    free(h.data);
    free(o.data);
}
TEST(emu_comm_world_of_one) { comm_case(0); }
TEST(gpu_comm_world_of_one) { comm_case(1); }

/* NCCL on one rank: a communicator from an id, each collective on device
   memory, the results against the input (one rank: the sum is the input,
   the gather and the scatter copy it). */
TEST(gpu_nccl_one_rank) {
#ifndef SSL_NCCL
    test_skip("this CUDA build has no NCCL (nccl.h not found)");
#else
    if (!g_begin(1)) return;
    unsigned char id[128];
    void *nc = NULL;
    CHECK_OK(ssl_cuda_nccl_id(id));
    CHECK_OK(ssl_cuda_nccl_init(&nc, 1, 0, id));
    if (!nc) return;
    ssl_tensor h = g_rand(73, 2, 33, 17, 1, 1, -2, 2), o = g_rand(74, 2, 33, 17, 1, 1, -2, 2);
    ssl_tensor d = g_tensor(1, &h), dout = g_tensor(1, &o);
    size_t n = (size_t)ssl_tensor_numel(&h);
    for (int op = 0; op < 4; op++) {
        static const char *names[4] = {"all-reduce", "all-gather", "reduce-scatter", "broadcast"};
        CHECK_OK(ssl_cuda_nccl_collective(nc, op, d.data, dout.data, n, 0));
        ssl_cuda_sync();
        G_CLOSE_T(1, names[op], &dout, &h, 0, 0);
    }
    /* in place, as ssl_all_reduce calls it */
    CHECK_OK(ssl_cuda_nccl_collective(nc, 0, d.data, d.data, n, 0));
    ssl_cuda_sync();
    G_CLOSE_T(1, "in-place all-reduce", &d, &h, 0, 0);
    ssl_cuda_nccl_free(nc);
    g_release(1, &d);
    g_release(1, &dout);
    free(h.data);
    free(o.data);
#endif
}

/* The masked diagonal of a block of rows (SimCLR over ranks masks each
   rank's own rows in the global columns): device against the CPU. */
static void diag_at_case(int gpu) {
    if (!g_begin(gpu)) return;
    ssl_tensor h = g_rand(75, 2, 3, 11, 1, 1, -1, 1);
    ssl_tensor d = g_tensor(gpu, &h);
    CHECK_OK(ssl_fill_diagonal_at(&h, 5, -INFINITY));
    CHECK_OK(ssl_fill_diagonal_at(&d, 5, -INFINITY));
    float *got = g_fetch(gpu, &d);
    int bad = 0;
    for (int i = 0; i < 33; i++) bad += !(got[i] == h.data[i]) && !(isinf(got[i]) && isinf(h.data[i]));
    CHECK(bad == 0 && isinf(h.data[0 * 11 + 5]) && isinf(h.data[2 * 11 + 7]), "%d values differ", bad);
    CHECK_ERR(ssl_fill_diagonal_at(&d, 9, 0.0f), "col0 + rows <= cols");
    free(got);
    g_release(gpu, &d);
    free(h.data);
}
TEST(emu_fill_diagonal_at) { diag_at_case(0); }
TEST(gpu_fill_diagonal_at) { diag_at_case(1); }

/* ---- SyncBN on the device, 2 ranks ---------------------------------------
   A test that needs ranks starts this binary under mpirun, each rank
   running the same test with SSL_TEST_MPI_CHILD=1 (as tests/test_dist.c
   does): emulated, on any machine with MPI; on GPUs, where a node has two. */
#define g_is_child test_is_child
static void g_run_ranks(const char *name, int np) {
    char *out = NULL;
    int rc = test_launch_ranks(name, np, &out);
    CHECK(rc <= 0, "%d ranks of %s: rc %d:\n%s", np, name, rc, out);
    free(out);
}

/* Rank R's batch norm with SyncBN over its n rows of the global N = n W
   (training: forward, backward) against the same device path without a
   communicator over all N rows, in this process: y, mean, invstd, the
   running statistics, dx (and dy through the ReLU), and dweight, dbias
   summed over the ranks (each rank keeps its share). fused: the residual
   add and the ReLU with its bit mask, as the model's block outputs. Both
   sides sum in double in another order (blocks, ranks), and round to float
   at the same places: fp32 is held to 1e-5 (values of order 1), bf16 to a
   bf16 rounding. Without the ranks' sums the statistics are those of n
   rows, off by O(1/sqrt(n)). */
static void syncbn_case(int gpu, ssl_comm *cm, int n, int C, int fused, int bf16) {
    const int W = cm->world, R = cm->rank, N = n * W;
    ssl_tensor (*dev)(int, const ssl_tensor *) = bf16 ? b_tensor : g_tensor;
    float *(*fetch)(int, const ssl_tensor *) = bf16 ? b_fetch : g_fetch;
    ssl_tensor x = g_rand(80, 2, N, C, 0, 0, -2, 4), r = g_rand(81, 2, N, C, 0, 0, -1, 1), gy = g_rand(82, 2, N, C, 0, 0, -1, 1);
    if (bf16) x = round_h(x), r = round_h(r), gy = round_h(gy);
    ssl_tensor gam = g_rand(83, 1, C, 0, 0, 0, 0.5f, 1.5f), bet = g_rand(84, 1, C, 0, 0, 0, -1, 1);
    ssl_tensor rm = g_rand(85, 1, C, 0, 0, 0, -1, 1), rv = g_rand(86, 1, C, 0, 0, 0, 0.5f, 2), zc = g_rand(87, 1, C, 0, 0, 0, 0, 0);
    ssl_batchnorm bn[2]; /* [SyncBN on this rank's rows, one process on all rows] */
    ssl_tensor dxin[2], dres[2], dgy[2], dy[2], ddx[2], ddyr[2], dmean[2], dinv[2], ddw[2], ddb[2], dmask[2];
    for (int k = 0; k < 2; k++) {
        int64_t rows = k ? N : n, off = k ? 0 : (int64_t)R * n * C;
        ssl_tensor hx = ssl_tensor_mat(x.data + off, rows, C), hr = ssl_tensor_mat(r.data + off, rows, C),
                   hg = ssl_tensor_mat(gy.data + off, rows, C);
        bn[k] = ssl_batchnorm_default();
        bn[k].weight = g_tensor(gpu, &gam), bn[k].bias = g_tensor(gpu, &bet);
        bn[k].running_mean = g_tensor(gpu, &rm), bn[k].running_var = g_tensor(gpu, &rv);
        bn[k].comm = k ? NULL : cm;
        dxin[k] = dev(gpu, &hx), dres[k] = dev(gpu, &hr), dgy[k] = dev(gpu, &hg);
        dy[k] = dev(gpu, &hx), ddx[k] = dev(gpu, &hx), ddyr[k] = dev(gpu, &hx);
        dmean[k] = g_tensor(gpu, &zc), dinv[k] = g_tensor(gpu, &zc), ddw[k] = g_tensor(gpu, &zc), ddb[k] = g_tensor(gpu, &zc);
        int64_t nb = (rows * C + 7) / 8;
        dmask[k] = ssl_tensor_as(ssl_tensor_vec(g_alloc(gpu, (size_t)(nb + 3) / 4), nb), SSL_U8);
        dmask[k].device = SSL_DEV_CUDA;
        if (fused) {
            CHECK_OK(ssl_batchnorm_forward_mask(&bn[k], 1, &dxin[k], &dres[k], &dy[k], &dmean[k], &dinv[k], &dmask[k]));
            CHECK_OK(ssl_batchnorm_backward_ex(&bn[k], 1, &dxin[k], &dmask[k], &dgy[k], &dmean[k], &dinv[k], &ddx[k], &ddw[k],
                                               &ddb[k], &ddyr[k]));
        } else {
            CHECK_OK(ssl_batchnorm_forward(&bn[k], 1, &dxin[k], &dy[k], &dmean[k], &dinv[k]));
            CHECK_OK(ssl_batchnorm_backward(&bn[k], 1, &dxin[k], &dgy[k], &dmean[k], &dinv[k], &ddx[k], &ddw[k], &ddb[k]));
        }
    }
    char what[128];
    double atol = 1e-5, rtol = bf16 ? G_ULP : 1e-5;
    const int64_t off = (int64_t)R * n * C, m = (int64_t)n * C;
    ssl_tensor *acts[3][2] = {{&dy[0], &dy[1]}, {&ddx[0], &ddx[1]}, {&ddyr[0], &ddyr[1]}};
    const char *act_names[3] = {"y", "dx", "dy through the ReLU"};
    for (int a = 0; a < (fused ? 3 : 2); a++) {
        float *got = fetch(gpu, acts[a][0]), *want = fetch(gpu, acts[a][1]);
        snprintf(what, sizeof what, "SyncBN%s%s, %d channels, rank %d: %s", bf16 ? " bf16" : "", fused ? " +residual+relu" : "", C, R,
                 act_names[a]);
        G_CLOSE(what, got, want + off, m, atol, rtol);
        free(got), free(want);
    }
    ssl_tensor *vecs[4][2] = {{&dmean[0], &dmean[1]}, {&dinv[0], &dinv[1]}, {&bn[0].running_mean, &bn[1].running_mean},
                              {&bn[0].running_var, &bn[1].running_var}};
    const char *vec_names[4] = {"mean", "invstd", "running_mean", "running_var"};
    for (int v = 0; v < 4; v++) {
        float *got = g_fetch(gpu, vecs[v][0]), *want = g_fetch(gpu, vecs[v][1]);
        snprintf(what, sizeof what, "SyncBN%s%s, %d channels, rank %d: %s", bf16 ? " bf16" : "", fused ? " +residual+relu" : "", C, R,
                 vec_names[v]);
        G_CLOSE(what, got, want, C, 1e-6, 1e-6);
        free(got), free(want);
    }
    /* the parameters' gradients: each rank's share, summed over the ranks */
    for (int p = 0; p < 2; p++) {
        float *got = g_fetch(gpu, p ? &ddb[0] : &ddw[0]), *want = g_fetch(gpu, p ? &ddb[1] : &ddw[1]);
        double s[256];
        for (int i = 0; i < C; i++) s[i] = got[i];
        CHECK_OK(ssl_comm_sum_f64(cm, s, C));
        for (int i = 0; i < C; i++) got[i] = (float)s[i];
        snprintf(what, sizeof what, "SyncBN%s%s, %d channels: %s summed over the ranks", bf16 ? " bf16" : "",
                 fused ? " +residual+relu" : "", C, p ? "dbias" : "dweight");
        G_CLOSE(what, got, want, C, atol, 1e-5);
        free(got), free(want);
    }
    for (int k = 0; k < 2; k++) {
        ssl_tensor *ds[] = {&dxin[k], &dres[k], &dgy[k], &dy[k], &ddx[k], &ddyr[k], &dmean[k], &dinv[k], &ddw[k], &ddb[k],
                            &dmask[k], &bn[k].weight, &bn[k].bias, &bn[k].running_mean, &bn[k].running_var};
        for (int i = 0; i < 15; i++) g_release(gpu, ds[i]);
    }
    ssl_tensor *hs[] = {&x, &r, &gy, &gam, &bet, &rm, &rv, &zc};
    for (int i = 0; i < 8; i++) free(hs[i]->data);
}

static void syncbn_child(int gpu) {
    if (!g_begin(gpu)) return;
    ssl_comm c;
    CHECK_OK(ssl_comm_init(&c, 60));
    CHECK(c.world > 1, "not launched as several ranks (world %d)", c.world);
    CHECK_OK(ssl_comm_init_gpu(&c)); /* a GPU a rank and NCCL; emulation: MPI carries device tensors */
    if (test_failures()) return;
    syncbn_case(gpu, &c, 37, 5, 0, 0);  /* one channel a thread, 37 row blocks of a row, 6 groups */
    syncbn_case(gpu, &c, 37, 16, 1, 0); /* 8 channels a work item, the bit mask, dy through the ReLU stored */
    syncbn_case(gpu, &c, 37, 16, 1, 1); /* bf16 activations */
    syncbn_case(gpu, &c, 3001, 64, 1, 1); /* blocks of several rows (the loads 16 and 2 at a time), 45 groups */
    /* a forward and its backward: 3 all-reduces (the mean, the deviations,
       the gradient's sums); and each case's 2 sums of the checks */
    CHECK(c.calls == 4 * (3 + 2), "%lld collectives for 4 cases", (long long)c.calls);
    ssl_comm_free(&c);
}
/* emulation: MPI carries the double sums, on host memory */
TEST(emu_syncbn_2_ranks_equals_one_process) {
    if (g_is_child()) { syncbn_child(0); return; }
    g_run_ranks("emu_syncbn_2_ranks_equals_one_process", 2);
}
/* GPUs: NCCL carries them, on device memory (two GPUs on this node) */
TEST(gpu_syncbn_2_ranks_equals_one_process) {
    if (g_is_child()) { syncbn_child(1); return; }
#ifndef SSL_NCCL
    test_skip("this CUDA build has no NCCL (nccl.h not found)");
#else
    if (!g_begin(1)) return;
    if (ssl_cuda_device_count() < 2) {
        test_skip("needs two GPUs on this node");
        return;
    }
    g_run_ranks("gpu_syncbn_2_ranks_equals_one_process", 2);
#endif
}
