#!/usr/bin/env python3
"""The step of bench/gpu_step.c in PyTorch on the GPU, the baseline a user
would pick: torchvision ResNet (fc removed), projector Linear-BN-ReLU x2 +
Linear without bias (2048-2048-128), SimCLR NT-Xent (tau 0.15), an online
linear probe on detached features (AdamW), bf16 autocast, channels_last,
cudnn.benchmark, a fused optimizer. Two views of bs images, each its own
forward (its own BN statistics), as ssl.h does.

Data: the two views' uint8 crops from pinned host memory, copied with
non_blocking, turned into float, divided by 255, flipped per sample and
normalized on the GPU. That is less than ssl.h's data phase does (it also
applies colour jitter, grayscale, blur and solarize per sample), so the
comparison favours PyTorch there.

Optimizer: --optim sgd (default: torch.optim.SGD(momentum, fused=True), the
cheapest update, favouring PyTorch) or lars (LARS through torch._foreach_*
multi-tensor ops, the update ssl.h runs).

--split 1 synchronizes at each phase's end and times the phases (data,
forward, loss, backward, probe+optimizer); --split 0 synchronizes only at
the end and gives the throughput. The last line is one JSON object.
bench/gpu_e2e_torch.py imports the model and the step from here.

  python3 bench/gpu_step_torch.py --depth 50 --res 224 --bs 256 --precision bf16
  python3 bench/gpu_step_torch.py --depth 18 --stem cifar --res 32 --bs 512
  python3 bench/gpu_step_torch.py --device cpu --depth 18 --stem cifar --res 16 --bs 8 --steps 1 (checks the script)
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def options(argv=None, extra=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=50, choices=[18, 34, 50])
    ap.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--optim", default="sgd", choices=["sgd", "lars"])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--projector", default="2048-2048-128")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone and projector (not eager)")
    ap.add_argument("--device", default="cuda")
    if extra:
        extra(ap)
    return ap.parse_args(argv)


class Setup:
    """The networks, optimizers and the step, as ssl.h's trainer has them."""

    def __init__(self, a):
        self.a = a
        self.dev = dev = torch.device(a.device)
        torch.manual_seed(0)
        torch.backends.cudnn.benchmark = True
        # fp32 means fp32 (ssl.h's fp32 mode uses no TF32 either)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        net = getattr(torchvision.models, f"resnet{a.depth}")()
        if a.stem == "cifar":
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        feat = net.fc.in_features
        net.fc = nn.Identity()
        widths = [int(x) for x in a.projector.split("-")]
        layers, d = [], feat
        for i, wd in enumerate(widths):
            last = i == len(widths) - 1
            layers.append(nn.Linear(d, wd, bias=not last))
            if not last:
                layers += [nn.BatchNorm1d(wd), nn.ReLU(True)]
            d = wd
        self.net, self.proj = net, nn.Sequential(*layers)
        nn.Sequential(self.net, self.proj).to(dev, memory_format=torch.channels_last)
        self.probe = nn.Linear(feat, max(a.classes, 1)).to(dev)
        fused = dev.type == "cuda"
        self.params = list(self.net.parameters()) + list(self.proj.parameters())
        self.opt = None
        if a.optim == "sgd":
            self.opt = torch.optim.SGD(self.params, lr=0.1, momentum=0.9, weight_decay=1e-6, fused=fused)
        else:
            self.mom = [torch.zeros_like(p) for p in self.params]
        self.popt = torch.optim.AdamW(self.probe.parameters(), lr=1e-3, weight_decay=0, fused=fused)
        self.run_net, self.run_proj = self.net, self.proj
        if a.compile:
            self.run_net, self.run_proj = torch.compile(self.net), torch.compile(self.proj)
        self.ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1) * 255
        self.std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1) * 255

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def lars_step(self, lr=0.1, wd=1e-6, m=0.9, eta=1e-3):
        """LARS (exclude bias and norm) as multi-tensor ops: one launch per
        op over all parameters, not one per tensor."""
        params = self.params
        grads = [p.grad for p in params]
        mats = [i for i, p in enumerate(params) if p.ndim > 1]
        P = [params[i] for i in mats]
        G = torch._foreach_add([grads[i] for i in mats], P, alpha=wd)
        pn = torch._foreach_norm(P)
        gn = torch._foreach_norm(G)
        q = [torch.where((x > 0) & (y > 0), eta * x / y, torch.ones_like(x)) for x, y in zip(pn, gn)]
        torch._foreach_mul_(G, q)
        for j, i in enumerate(mats):
            grads[i] = G[j]
        torch._foreach_mul_(self.mom, m)
        torch._foreach_add_(self.mom, grads)
        torch._foreach_add_(params, self.mom, alpha=-lr)

    @staticmethod
    def simclr(z1, z2, tau=0.15):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        s = z @ z.t() / tau
        s.fill_diagonal_(float("-inf"))
        n = z1.shape[0]
        t = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
        return F.cross_entropy(s, t)

    def normalize(self, x_u8_nhwc, flip=None):
        """uint8 NHWC on the device -> normalized float, channels_last"""
        x = x_u8_nhwc.permute(0, 3, 1, 2).float()  # NHWC storage = channels_last
        if flip is not None:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def step(self, x1, x2, y, times=None):
        """One step on two normalized views; times (a list) gets the phase
        ends when --split 1. Returns the loss tensor."""
        a, mark = self.a, (lambda: (self.sync(), times.append(time.perf_counter())) if times is not None else None)
        with self.ac:
            f1 = self.run_net(x1); z1 = self.run_proj(f1)
            f2 = self.run_net(x2); z2 = self.run_proj(f2)
        mark()
        with self.ac:
            loss = self.simclr(z1, z2)
        mark()
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
        else:
            for p in self.params:
                p.grad = None
        loss.backward()
        mark()
        with self.ac:
            pl = F.cross_entropy(self.probe(f1.detach()), y) + F.cross_entropy(self.probe(f2.detach()), y)
        self.popt.zero_grad(set_to_none=True)
        pl.backward()
        self.popt.step()
        if self.opt is not None:
            self.opt.step()
        else:
            self.lars_step()
        mark()
        return loss


def main():
    a = options()
    S = Setup(a)
    dev = S.dev
    pin = dev.type == "cuda"
    u8 = [torch.randint(0, 256, (a.bs, a.res, a.res, 3), dtype=torch.uint8) for _ in range(2)]
    if pin:
        u8 = [t.pin_memory() for t in u8]
    flips = [torch.rand(a.bs, device=dev) < 0.5 for _ in range(2)]
    y = (torch.arange(a.bs) % max(a.classes, 1)).to(dev)
    tot = [0.0] * 6
    best = 1e30
    loss = torch.zeros(())
    tstart = 0
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            S.sync()
            tstart = time.perf_counter()
        t0 = time.perf_counter()
        x1, x2 = [S.normalize(u8[v].to(dev, non_blocking=True), flips[v]) for v in range(2)]
        times = None
        if a.split:
            S.sync()
            times = [time.perf_counter()]
        loss = S.step(x1, x2, y, times)
        if s >= a.warmup and a.split:
            t1, t2, t3, t4, t5 = times
            d = [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0]
            for i in range(6):
                tot[i] += d[i]
            best = min(best, d[5])
    S.sync()
    k = a.steps
    step = (time.perf_counter() - tstart) / k
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    msg = (f"torch {torch.__version__} resnet{a.depth} {a.stem}-stem {a.res}x{a.res}, 2 views x {a.bs}, {a.precision} autocast, "
           f"channels_last, cudnn.benchmark, {a.optim}{' compiled' if a.compile else ''}, {name}, split={a.split}: "
           f"step {1e3 * step:.2f} ms")
    if a.split:
        msg += (f" (best {1e3 * best:.2f}) = data {1e3 * tot[0] / k:.2f} + forward {1e3 * tot[1] / k:.2f}"
                f" + loss {1e3 * tot[2] / k:.2f} + backward {1e3 * tot[3] / k:.2f} + probe/optimizer {1e3 * tot[4] / k:.2f}")
    msg += f"  -> {a.bs / step:.0f} images/s ({2 * a.bs / step:.0f} views/s); last loss {loss.item():.4f}"
    print(msg)
    print(json.dumps(dict(impl="torch", method="simclr", depth=a.depth, stem=a.stem, res=a.res, bs=a.bs, precision=a.precision,
                          split=a.split, optim=a.optim, compiled=a.compile, step_ms=round(1e3 * step, 3),
                          best_ms=round(1e3 * best, 3) if a.split else None, data_ms=round(1e3 * tot[0] / k, 3),
                          forward_ms=round(1e3 * tot[1] / k, 3), loss_ms=round(1e3 * tot[2] / k, 3),
                          backward_ms=round(1e3 * tot[3] / k, 3), optim_ms=round(1e3 * tot[4] / k, 3),
                          images_per_s=round(a.bs / step, 1), loss=round(loss.item(), 5))))


if __name__ == "__main__":
    main()
