#!/usr/bin/env python3
"""Many ranks on paper: the bytes a step moves between GPUs and the time
that takes at NVLink and InfiniBand bandwidths, against the measured
single-GPU step (bench/RESULTS.md, H200). These are PROJECTIONS from a
simple model, not measurements: no multi-GPU machine has run ssl.h.

Model, per GPU and step, for N GPUs of b images each (global batch N b):
  gradients   one all-reduce of 4 P bytes (P trainable floats), after the
              backward (as written: no overlap)
  SyncBN      per batch-norm layer and view: forward 2 all-reduces of C
              doubles (sum, then squared deviations), backward 1 of 2C
              doubles: 6 collectives a layer a step, latency-bound
              (sync_bn=0 moves none of it)
  loss        SimCLR: all-gathers of the views' embeddings [N b, D],
              every rank receiving all, and a reduce-scatter of the
              columns' gradients [2 N b, D]; each rank its 2b rows against
              the 2Nb columns (the extra compute over one GPU's loss, at
              FP32_TFLOPS).
              VICReg, Barlow Twins: split, each rank its b rows' share of
              the statistics, all-reduced: VICReg the views' means [2, D]
              and covariances [2, D, D] (and the invariance term's double);
              Barlow Twins the means [2, D], the variances [2, D], the
              cross-correlation [D, D] and backward batch norm's sums
              [4, D]. A rank's loss compute is one GPU's (b rows): no
              extra.
              BYOL: 4 all-gathers of [N b, D], its per-row loss whole on
              every rank (O(N b D), left out).
  all-reduce of S bytes:  alpha + 2 (N-1)/N S / busbw
  all-gather receiving R: alpha + (N-1)/N R / busbw
  efficiency = T1 / (T1 + communication + extra loss), nothing overlapped
Parameter and channel counts are ssl.h's tables (ssl_model_init).
usage: python3 bench/dist_paper.py [gathered]
  gathered: VICReg and Barlow Twins as they were before the split, the
  embeddings all-gathered and the whole O(N b D^2) loss on every rank
  (for comparison)"""
import sys

GATHERED = "gathered" in sys.argv[1:]

NETS = {
    # name: (trainable floats, BN layers, BN channels (sum), images per GPU, H200 step ms, embedding D, projector)
    "ResNet-18 CIFAR, SimCLR": (16_686_144, 22, 8_896, 512, 1000 * 512 / 18_805, 128, "2048-2048-128", "simclr"),
    "ResNet-50 224, SimCLR": (32_171_072, 55, 30_656, 256, 1000 * 256 / 2_443, 128, "2048-2048-128", "simclr"),
    "ResNet-50 224, VICReg": (174_552_128, 55, 42_944, 256, 1000 * 256 / 2_443, 8192, "8192-8192-8192", "vicreg"),
    "ResNet-50 224, Barlow Twins": (174_552_128, 55, 42_944, 256, 1000 * 256 / 2_443, 8192, "8192-8192-8192", "barlow"),
}
LINKS = {  # (GPUs, bus bandwidth GB/s per GPU, latency per collective s)
    "8 GPUs, NVLink (one node)": (8, 360.0, 20e-6),
    "64 GPUs, InfiniBand NDR 400 Gb/s a GPU": (64, 45.0, 60e-6),
}
FP32_TFLOPS = 50.0  # cuBLAS fp32 on an H200, for the loss's GEMMs


def loss_flops(kind, b, n, d):
    """The loss's GEMM flops on one rank of n with b images each."""
    if kind == "simclr":  # s = z g^T: 2b rows x 2Nb columns, then two GEMMs back
        return 3 * 2 * (2 * b) * (2 * n * b) * d
    rows = n * b if GATHERED else b  # gathered: the whole batch on every rank
    if kind == "vicreg":  # per view c = x^T x and dx = x dc
        return 8 * rows * d * d
    if kind == "barlow":  # c = zn1^T zn2, dzn1 = zn2 dc^T, dzn2 = zn1 dc
        return 6 * rows * d * d
    return 0  # BYOL: per row, O(b D)


def loss_comm(kind, b, n, d, bw, alpha):
    """(bytes, collectives, seconds) of the loss's communication a step."""
    def all_reduce(s):
        return alpha + 2 * (n - 1) / n * s / (bw * 1e9)

    def all_gather(r):  # r: bytes received
        return alpha + (n - 1) / n * r / (bw * 1e9)
    if kind in ("simclr", "byol") or GATHERED:
        gathers = 4 if kind == "byol" else 2
        e = n * b * d * 4  # one view's gathered embeddings
        t = gathers * all_gather(e)
        if kind == "simclr":  # the columns' gradients back: as many bytes, reduce-scattered
            t += gathers * all_gather(e)
            return 2 * gathers * e, 2 * gathers, t
        return gathers * e, gathers, t
    if kind == "vicreg":  # means [2, D], covariances [2, D, D], the invariance term's double
        sizes = [4 * 2 * d, 4 * 2 * d * d, 8]
    else:  # barlow: means, variances [2, D], c [D, D], backward sums [4, D]
        sizes = [4 * 2 * d, 4 * 2 * d, 4 * d * d, 4 * 4 * d]
    return sum(sizes), len(sizes), sum(all_reduce(s) for s in sizes)


def main():
    print("| network (images a GPU, one H200's step) | GPUs, link | gradients | SyncBN | loss's collectives "
          "| extra loss compute | communication + extra loss | efficiency (sync_bn=1) | efficiency (sync_bn=0) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (p, nbn, chans, b, t1_ms, d, proj, kind) in NETS.items():
        for link, (n, bw, alpha) in LINKS.items():
            t1 = t1_ms / 1000
            g_bytes = 4 * p
            t_g = alpha + 2 * (n - 1) / n * g_bytes / (bw * 1e9)
            bn_bytes = 2 * (8 * chans + 8 * chans + 16 * chans)  # two views
            bn_calls = 2 * 3 * nbn
            t_bn = bn_calls * alpha + 2 * (n - 1) / n * bn_bytes / (bw * 1e9)
            l_bytes, l_calls, t_l = loss_comm(kind, b, n, d, bw, alpha)
            t_loss = (loss_flops(kind, b, n, d) - loss_flops(kind, b, 1, d)) / (FP32_TFLOPS * 1e12)
            total = t_g + t_bn + t_l + t_loss
            eff = t1 / (t1 + total)
            eff0 = t1 / (t1 + total - t_bn)
            what = "gathered, and back" if kind == "simclr" else "all-reduced" if kind != "byol" and not GATHERED else "gathered"
            print(f"| {name} ({b}, {t1_ms:.1f} ms) | {link} | {g_bytes / 1e6:.0f} MB, {1000 * t_g:.2f} ms "
                  f"| {bn_bytes / 1e6:.2f} MB in {bn_calls} calls, {1000 * t_bn:.2f} ms "
                  f"| {l_bytes / 1e6:.1f} MB {what} in {l_calls} calls, {1000 * t_l:.2f} ms | {1000 * t_loss:.1f} ms "
                  f"| {1000 * total:.1f} ms | {100 * eff:.0f}% | {100 * eff0:.0f}% |")


if __name__ == "__main__":
    main()
