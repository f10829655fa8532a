/* Section 12 on the device: the collectives of a world of one on device
   tensors (emulated and real), and NCCL's collectives on one rank (a
   real GPU; see gpu_common.h). Several ranks on GPUs need several GPUs:
   this suite checks what one can. */
#include "gpu_common.h"

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
