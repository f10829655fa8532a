/* Instance-SimCLR's loss (ssl_simclr_patch_loss) on the device: written on
   the primitives that dispatch by device (no kernel of its own), so the
   device gives the CPU's value and gradients of all three views. */
#include "gpu_common.h"

#define IS_A(g) G_TOL(g, 1e-6, 2e-5)
#define IS_R(g) G_TOL(g, 1e-4, 1e-3)

GPU_TEST(instance_simclr_loss) {
    int64_t n = 9, d = 13;
    ssl_tensor z1 = g_rand(90, 2, n, d, 0, 0, -1, 1), z2 = g_rand(91, 2, n, d, 0, 0, -1, 1), zp = g_rand(92, 2, n, d, 0, 0, -1, 1);
    ssl_tensor g1 = g_rand(93, 2, n, d, 0, 0, 0, 1), g2 = g_rand(94, 2, n, d, 0, 0, 0, 1), gp = g_rand(95, 2, n, d, 0, 0, 0, 1);
    ssl_tensor dz1 = g_tensor(gpu, &z1), dz2 = g_tensor(gpu, &z2), dzp = g_tensor(gpu, &zp);
    ssl_tensor dg1 = g_tensor(gpu, &g1), dg2 = g_tensor(gpu, &g2), dgp = g_tensor(gpu, &gp);
    ssl_buf s0 = {0}, s1 = {0};
    float l0 = 0, l1 = 0;
    CHECK_OK(ssl_simclr_patch_loss(&z1, &z2, &zp, 0.15f, &l0, &g1, &g2, &gp, &s0));
    CHECK_OK(ssl_simclr_patch_loss(&dz1, &dz2, &dzp, 0.15f, &l1, &dg1, &dg2, &dgp, &s1));
    CHECK(fabs(l1 - l0) <= G_TOL(gpu, 1e-6, 1e-5) * fabs(l0) + 1e-6, "loss: got %.9g, want %.9g", l1, l0);
    G_CLOSE_T(gpu, "instance-simclr dz1", &dg1, &g1, IS_A(gpu), IS_R(gpu));
    G_CLOSE_T(gpu, "instance-simclr dz2", &dg2, &g2, IS_A(gpu), IS_R(gpu));
    G_CLOSE_T(gpu, "instance-simclr dzp", &dgp, &gp, IS_A(gpu), IS_R(gpu));
    ssl_buf_free(&s0);
    ssl_cuda_buf_free(&s1);
    ssl_tensor *ds[] = {&dz1, &dz2, &dzp, &dg1, &dg2, &dgp}, *hs[] = {&z1, &z2, &zp, &g1, &g2, &gp};
    for (int i = 0; i < 6; i++) g_release(gpu, ds[i]), free(hs[i]->data);
}
