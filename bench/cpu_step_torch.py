#!/usr/bin/env python3
"""The step of bench/cpu_step_bench.c in PyTorch on the CPU: torchvision
ResNet-18 with the CIFAR stem (3x3 stride-1 conv1, no max pool, no fc),
projector 2048-2048-128, SimCLR NT-Xent (tau 0.15), LARS (exclude bias and
norm), an online linear probe on detached features with AdamW; two views of
bs images 32x32, each its own forward. Prints the same split.

  build/venv/bin/python bench/cpu_step_torch.py --bs 256 --steps 3 --threads 2
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--bs", type=int, default=256)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--res", type=int, default=32)
ap.add_argument("--channels-last", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

net = torchvision.models.resnet18()
net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
net.maxpool = nn.Identity()
net.fc = nn.Identity()
proj = nn.Sequential(nn.Linear(512, 2048), nn.BatchNorm1d(2048), nn.ReLU(True), nn.Linear(2048, 2048),
                     nn.BatchNorm1d(2048), nn.ReLU(True), nn.Linear(2048, 128, bias=False))
model = nn.Sequential(net, proj)
probe = nn.Linear(512, 10)
fmt = torch.channels_last if a.channels_last else torch.contiguous_format
model = model.to(memory_format=fmt)


class LARS(torch.optim.Optimizer):  # VICReg's reference, exclude_bias_and_norm
    def __init__(self, params, lr, weight_decay=1e-6, momentum=0.9, eta=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    pn, un = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(pn)
                    q = torch.where(pn > 0.0, torch.where(un > 0, g["eta"] * pn / un, one), one)
                    dp = dp.mul(q)
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                mu = st["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


opt = LARS(model.parameters(), lr=1.0)
popt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0)


def simclr(z1, z2, tau=0.15):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / tau
    s.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    return F.cross_entropy(s, torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]))


x1 = torch.randn(a.bs, 3, a.res, a.res).to(memory_format=fmt)
x2 = torch.randn(a.bs, 3, a.res, a.res).to(memory_format=fmt)
y = torch.arange(a.bs) % 10
tot = [0.0] * 5
for s in range(a.steps + 1):
    t0 = time.perf_counter()
    f1 = net(x1); z1 = proj(f1)
    f2 = net(x2); z2 = proj(f2)
    t1 = time.perf_counter()
    loss = simclr(z1, z2)
    t2 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    loss.backward()
    t3 = time.perf_counter()
    pl = F.cross_entropy(probe(f1.detach()), y) + F.cross_entropy(probe(f2.detach()), y)
    popt.zero_grad()
    pl.backward()
    popt.step()
    opt.step()
    t4 = time.perf_counter()
    if s:
        for i, v in enumerate([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]):
            tot[i] += v
k = a.steps
print(f"torch {torch.__version__} resnet18 cifar-stem {a.res}x{a.res}, 2 views x {a.bs}, threads {a.threads}"
      f"{' channels_last' if a.channels_last else ''}: step {tot[4]/k:.3f} s = forward {tot[0]/k:.3f} + loss {tot[1]/k:.4f}"
      f" + backward {tot[2]/k:.3f} + optimizer {tot[3]/k:.4f}  ({a.bs/(tot[4]/k):.1f} img/s)")
