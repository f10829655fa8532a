#!/usr/bin/env python3
"""Generate tests/fixtures/model.sslt: PyTorch reference values that pin the
models (ssl.h section 8) and the train step (section 11) to torch.

The network is torchvision's ResNet-18 topology (torchvision's own BasicBlock
modules, so the module names are torchvision's) at base width 8 (1/8 of
torchvision's 64) with the CIFAR stem (3x3 conv, stride 1, pad 1, no max
pool), followed by the projector "32-16": Linear(64,32)-BN1d-ReLU-Linear(32,
16, bias=False) as nn.Sequential, so its names are projector.0/1/3. BYOL adds
the predictor "32-16" (last Linear with a bias) and a target network
(backbone + projector, the online weights plus small noise).

Inputs: two views x1, x2 of 4 images 16x16x3, float32. Parameters: torch's
own init, then BN gamma/beta and running stats randomised so that every
gradient is non-trivial; everything rounded to float32 and then computed in
float64, stored as float32 (the C test's difference is its own fp32 error).
Each view is its own forward (own BN batch statistics), as the reference
code of VICReg/Barlow/BYOL does.

Names (TORCH layouts: activations NCHW, conv weights OIHW):
  x1, x2                       [4,3,16,16]
  param/<name>                 every state_dict tensor but num_batches_tracked
  target/<name>                BYOL target (backbone + projector)
  simclr/{feat1,z1,z2,loss,running/<name>}   features, projector outputs,
                               running stats after the two forwards
  <method>/loss, <method>/grad/<name>  for simclr (tau 0.2), vicreg (25,25,1),
                               barlow (0.0051), byol
  byol/p1, byol/p2             online predictions
  lars/<name>                  params after one LARS step from simclr's grads
                               (lr 0.5, momentum 0.9, wd 1e-3, eta 0.02;
                               biases and BN excluded), hparams in lars/hp
  names/resnet18, names/resnet50   torchvision state_dict keys (uint8 text,
                               one per line, num_batches_tracked removed,
                               fc kept), numel/resnet18, numel/resnet50 int64
  imagenet/...                 ResNet-50 topology (Bottleneck) at base width
                               4, ImageNet stem (7x7/2, max pool), features
                               and gradients of sum(features * g)

Run with the project venv:  build/venv/bin/python tests/gen_model_fixtures.py
"""
import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sslt  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "model.sslt")
torch.manual_seed(20240612)
T = {}


class TinyResNet(nn.Module):
    """torchvision.models.ResNet's layout at base width `base`, CIFAR stem."""

    def __init__(self, base=8, layers=(2, 2, 2, 2), block=BasicBlock, cifar=True):
        super().__init__()
        self.inplanes, self.block, self.cifar = base, block, cifar
        self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False) if cifar else nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(base, layers[0], 1)
        self.layer2 = self._make_layer(base * 2, layers[1], 2)
        self.layer3 = self._make_layer(base * 4, layers[2], 2)
        self.layer4 = self._make_layer(base * 8, layers[3], 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride):  # torchvision's, verbatim in effect
        down, e = None, self.block.expansion
        if stride != 1 or self.inplanes != planes * e:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * e, 1, stride, bias=False), nn.BatchNorm2d(planes * e))
        layers = [self.block(self.inplanes, planes, stride, down)]
        self.inplanes = planes * e
        layers += [self.block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.cifar:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def mlp(dims, last_bias):
    layers = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, predictor=False):
        super().__init__()
        self.backbone = TinyResNet()
        self.projector = mlp([64, 32, 16], False)
        self.predictor = mlp([16, 32, 16], True) if predictor else None

    def forward(self, x):
        f = self.backbone(x)
        z = self.projector(f)
        return f, z, (self.predictor(z) if self.predictor is not None else None)


def ssl_names(net):
    """state_dict with our names: backbone.* -> *, no num_batches_tracked."""
    out = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        out[k[len("backbone."):] if k.startswith("backbone.") else k] = v
    return out


def f32(t):
    return t.float().double()


def randomise(net):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
        for p in net.parameters():
            p.copy_(f32(p))
        for b in net.buffers():
            if b.dtype.is_floating_point:
                b.copy_(f32(b))


def store(t):
    return t.detach().float().numpy()


x1 = torch.randn(4, 3, 16, 16).float()
x2 = torch.randn(4, 3, 16, 16).float()
T["x1"], T["x2"] = x1.numpy(), x2.numpy()
X1, X2 = x1.double(), x2.double()

base = Net(predictor=True)
randomise(base)
base = base.double()
for k, v in ssl_names(base).items():
    T["param/" + k] = store(v)


def grads(net):
    out = {}
    for k, p in net.named_parameters():
        k = k[len("backbone."):] if k.startswith("backbone.") else k
        out[k] = p.grad
    return out


def simclr(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / tau
    s.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


def vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(0)
    y = y - y.mean(0)
    std_x = torch.sqrt(x.var(0) + 1e-4)
    std_y = torch.sqrt(y.var(0) + 1e-4)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cx = (x.T @ x) / (n - 1)
    cy = (y.T @ y) / (n - 1)

    def off(m):
        return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()

    cov_loss = off(cx).pow(2).sum() / d + off(cy).pow(2).sum() / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


def barlow(z1, z2, lambd=0.0051):
    n, d = z1.shape
    bn = nn.BatchNorm1d(d, affine=False, track_running_stats=False).double()
    c = bn(z1).T @ bn(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    offd = c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten().pow(2).sum()
    return on + lambd * offd


def byol_fn(p, z):
    return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(-1)


for method in ["simclr", "vicreg", "barlow", "byol"]:
    net = copy.deepcopy(base)
    if method != "byol":
        net.predictor = None
    net.train()
    net.zero_grad()
    f1, z1, p1 = net(X1)
    f2, z2, p2 = net(X2)
    if method == "simclr":
        loss = simclr(z1, z2, 0.2)
    elif method == "vicreg":
        loss = vicreg(z1, z2)
    elif method == "barlow":
        loss = barlow(z1, z2)
    else:
        target = copy.deepcopy(base)
        target.predictor = None
        g = torch.Generator().manual_seed(11)
        with torch.no_grad():
            for p in target.parameters():
                p.add_(f32(torch.randn(p.shape, generator=g).double() * 0.01 * (p.abs().mean() + 1e-3)))
                p.copy_(f32(p))
        for k, v in ssl_names(target).items():
            T["target/" + k] = store(v)
        with torch.no_grad():
            _, t1, _ = target(X1)
            _, t2, _ = target(X2)
        loss = byol_fn(p1, t2).mean() + byol_fn(p2, t1).mean()
        T["byol/p1"], T["byol/p2"] = store(p1), store(p2)
    loss.backward()
    T[method + "/loss"] = np.array([loss.item()], dtype=np.float32)
    for k, g in grads(net).items():
        T[f"{method}/grad/{k}"] = store(g)
    if method == "simclr":
        T["simclr/feat1"], T["simclr/z1"], T["simclr/z2"] = store(f1), store(z1), store(z2)
        for k, v in ssl_names(net).items():
            if "running" in k:
                T["simclr/running/" + k] = store(v)
        # one LARS step (VICReg's reference LARS, exclude_bias_and_norm)
        lr, mom, wd, eta = 0.5, 0.9, 1e-3, 0.02
        T["lars/hp"] = np.array([lr, mom, wd, eta], dtype=np.float32)
        lr, mom, wd, eta = [float(np.float32(v)) for v in (lr, mom, wd, eta)]
        for k, p in net.named_parameters():
            k = k[len("backbone."):] if k.startswith("backbone.") else k
            dp = p.grad.clone()
            if p.ndim != 1:
                dp = dp + wd * p.detach()
                pn, un = torch.norm(p.detach()), torch.norm(dp)
                q = torch.where(pn > 0, torch.where(un > 0, eta * pn / un, torch.ones_like(pn)), torch.ones_like(pn))
                dp = dp * q
            T["lars/" + k] = store(p.detach() - lr * dp)  # momentum buffer starts at dp

# ResNet-50's topology (torchvision's Bottleneck) at base width 4 with the
# ImageNet stem (7x7/2 conv, 3x3/2 max pool), no head; objective
# sum(features * g): imagenet/{x [4,3,32,32], g, feat, param/<name>, grad/<name>}
r50 = TinyResNet(base=4, layers=(3, 4, 6, 3), block=Bottleneck, cifar=False)
randomise(r50)
r50 = r50.double().train()
xi = torch.randn(4, 3, 32, 32).float()
gi = torch.randn(4, 4 * 8 * 4).float()
T["imagenet/x"], T["imagenet/g"] = xi.numpy(), gi.numpy()
for k, v in r50.state_dict().items():
    if not k.endswith("num_batches_tracked"):
        T["imagenet/param/" + k] = store(v)
feat = r50(xi.double())
(feat * gi.double()).sum().backward()
T["imagenet/feat"] = store(feat)
for k, p in r50.named_parameters():
    T["imagenet/grad/" + k] = store(p.grad)

for arch in ["resnet18", "resnet50"]:
    sd = getattr(torchvision.models, arch)().state_dict()
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    T["names/" + arch] = np.frombuffer("\n".join(keys).encode(), dtype=np.uint8).copy()
    T["numel/" + arch] = np.array([sd[k].numel() for k in keys], dtype=np.int64)

sslt.write(OUT, T, meta="gen_model_fixtures.py torch %s torchvision %s" % (torch.__version__, torchvision.__version__))
print(f"wrote {OUT}: {len(T)} tensors, {os.path.getsize(OUT)} bytes")
