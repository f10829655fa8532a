#!/usr/bin/env python3
"""Generate tests/fixtures/engine.sslt: PyTorch reference values that pin the
engine's layers (ssl.h section 7) and losses (section 9) to torch.

Every input is drawn in float32 from a seeded generator; torch then computes
in float64 from those exact values, and results are stored as float32. So the
fixture is the exact answer for the stored inputs, rounded once, and the C
test's difference is the C code's own float32 error.

Layers: out = layer(x); the objective is sum(out * g) for a fixed random g
(g stored), so d objective / d out = g and the stored grads are the layer's
vector-Jacobian products. Tensors are in TORCH's layouts:
  activations NCHW (the C test permutes to NHWC), conv weights OIHW (the C
  test converts with ssl_conv_weight_from_torch), linear weights [out][in]
  (same as ours), BatchNorm1d input [N, C] (same as ours).
Names:
  conv/<case>/{x,w,b?,g,y,dx,dw,db?,cfg}   cfg int32 [stride, pad]
  bn2d/..., bn1d/...: {x,weight,bias,rm0,rv0,g, y,dx,dweight,dbias,rm1,rv1,
                       y_eval,dx_eval}   rm0/rv0 running stats before the
                       training forward, rm1/rv1 after it (momentum 0.1,
                       unbiased variance); *_eval: eval mode with rm1/rv1
  relu/{x,g,y,dx}
  maxpool/<case>/{x,g,y,dx,cfg}            cfg int32 [kernel, stride, pad]
  avgpool/{x,g,y,dx}                       y = adaptive_avg_pool2d(x, 1) as [N, C]
  linear/{x,w,b,g,y,dx,dw,db}
  add/{a,b,g,y}
Losses (value and gradients of the loss itself), N=8, D=16:
  simclr/{z1,z2,tau,loss,dz1,dz2}
  vicreg/{z1,z2,coef=[sim,std,cov],loss,dz1,dz2}
  barlow/{z1,z2,lambd,loss,dz1,dz2}
  byol/{p1,p2,z1,z2,loss,dp1,dp2}

Run with the project venv:  build/venv/bin/python tests/gen_engine_fixtures.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sslt  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "engine.sslt")
gen = torch.Generator().manual_seed(20240611)
T = {}


def randn(*shape, scale=1.0):
    """float32 draw, returned as float64 holding exactly those values."""
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale).double()


def f32(t):
    """Rounds derived inputs to float32, so that the stored inputs are exact."""
    return t.float().double()


def put(name, t):
    if isinstance(t, torch.Tensor):
        t = t.detach().numpy()
    T[name] = np.asarray(t, dtype=np.float32)


def put_int(name, values):
    T[name] = np.asarray(values, dtype=np.int32)


def leaf(t):
    return t.clone().requires_grad_(True)


# ---- conv2d: (case, N, Ci, H, W, Co, KH, KW, stride, pad, bias) ----
CONVS = [
    ("3x3s1p1", 2, 5, 9, 7, 7, 3, 3, 1, 1, False),
    ("7x7s2p3", 2, 3, 13, 11, 4, 7, 7, 2, 3, False),  # the stem, odd size
    ("1x1s2", 2, 6, 7, 9, 5, 1, 1, 2, 0, False),      # downsample shortcut
    ("1x1s1b", 2, 6, 5, 4, 3, 1, 1, 1, 0, True),      # the direct-GEMM path
    ("3x3s2p1b", 1, 4, 8, 6, 6, 3, 3, 2, 1, True),
    ("2x3s1p0", 2, 3, 6, 7, 4, 2, 3, 1, 0, False),    # non-square kernel
]
for case, n, ci, h, w, co, kh, kw, s, p, bias in CONVS:
    x, wt = leaf(randn(n, ci, h, w)), leaf(randn(co, ci, kh, kw, scale=0.3))
    b = leaf(randn(co)) if bias else None
    y = F.conv2d(x, wt, b, stride=s, padding=p)
    g = randn(*y.shape)
    (y * g).sum().backward()
    k = f"conv/{case}/"
    put(k + "x", x); put(k + "w", wt); put(k + "g", g); put(k + "y", y)
    put(k + "dx", x.grad); put(k + "dw", wt.grad)
    if bias:
        put(k + "b", b); put(k + "db", b.grad)
    put_int(k + "cfg", [s, p])


# ---- batch norm, 2D and 1D ----
def batchnorm(name, shape, c):
    x = leaf(f32(randn(*shape, scale=2.0) + 0.5))
    weight, bias = leaf(f32(randn(c) * 0.5 + 1.0)), leaf(randn(c))
    rm0, rv0 = f32(randn(c) * 0.1), f32(torch.rand(c, generator=gen).double() + 0.5)
    mod = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c).double()
    with torch.no_grad():
        mod.weight.copy_(weight); mod.bias.copy_(bias)
        mod.running_mean.copy_(rm0); mod.running_var.copy_(rv0)
    mod.train()
    y = mod(x)
    g = randn(*y.shape)
    (y * g).sum().backward()
    k = name + "/"
    put(k + "x", x); put(k + "weight", weight); put(k + "bias", bias)
    put(k + "rm0", rm0); put(k + "rv0", rv0); put(k + "g", g); put(k + "y", y)
    put(k + "dx", x.grad); put(k + "dweight", mod.weight.grad); put(k + "dbias", mod.bias.grad)
    put(k + "rm1", mod.running_mean); put(k + "rv1", mod.running_var)
    mod.eval()
    xe = leaf(x.detach())
    ye = mod(xe)
    (ye * g).sum().backward()
    put(k + "y_eval", ye); put(k + "dx_eval", xe.grad)


batchnorm("bn2d", (3, 5, 4, 3), 5)
batchnorm("bn1d", (8, 6), 6)

# ---- relu ----
x = leaf(randn(2, 3, 4, 5))
y = F.relu(x)
g = randn(*y.shape)
(y * g).sum().backward()
put("relu/x", x); put("relu/g", g); put("relu/y", y); put("relu/dx", x.grad)

# ---- max pool: (case, shape, kernel, stride, pad) ----
for case, shape, kk, s, p in [("k3s2p1", (2, 3, 9, 7), 3, 2, 1), ("k2s2p0", (1, 2, 6, 5), 2, 2, 0)]:
    x = leaf(randn(*shape))
    y = F.max_pool2d(x, kk, s, p)
    g = randn(*y.shape)
    (y * g).sum().backward()
    k = f"maxpool/{case}/"
    put(k + "x", x); put(k + "g", g); put(k + "y", y); put(k + "dx", x.grad)
    put_int(k + "cfg", [kk, s, p])

# ---- global average pool ----
x = leaf(randn(2, 4, 3, 5))
y = F.adaptive_avg_pool2d(x, 1).flatten(1)
g = randn(*y.shape)
(y * g).sum().backward()
put("avgpool/x", x); put("avgpool/g", g); put("avgpool/y", y); put("avgpool/dx", x.grad)

# ---- linear ----
x, wt, b = leaf(randn(6, 10)), leaf(randn(7, 10, scale=0.3)), leaf(randn(7))
y = F.linear(x, wt, b)
g = randn(*y.shape)
(y * g).sum().backward()
for nm, t in [("x", x), ("w", wt), ("b", b), ("g", g), ("y", y), ("dx", x.grad), ("dw", wt.grad), ("db", b.grad)]:
    put("linear/" + nm, t)

# ---- add ----
a, b = randn(2, 3, 4, 5), randn(2, 3, 4, 5)
put("add/a", a); put("add/b", b); put("add/y", a + b)


# ---- losses ----
def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def simclr(z1, z2, tau):
    """NT-Xent: normalize(cat), z z^T / tau, self-similarity masked, CE to the other view."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """facebookresearch/vicreg main_vicreg.py VICReg.forward, minus the gather."""
    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum().div(num_features) + off_diagonal(cov_y).pow(2).sum().div(num_features)
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def barlow(z1, z2, lambd):
    """facebookresearch/barlowtwins main.py BarlowTwins.forward, minus the all_reduce."""
    bn = torch.nn.BatchNorm1d(z1.shape[1], affine=False).double()
    c = bn(z1).T @ bn(z2)
    c = c / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def byol_fn(p, z):
    p = F.normalize(p, dim=-1, p=2)
    z = F.normalize(z, dim=-1, p=2)
    return 2 - 2 * (p * z).sum(dim=-1)


N, D = 8, 16
z1, z2 = leaf(randn(N, D)), leaf(randn(N, D))
loss = simclr(z1, z2, 0.2)
loss.backward()
put("simclr/z1", z1); put("simclr/z2", z2); put("simclr/tau", [0.2])
put("simclr/loss", [loss.item()]); put("simclr/dz1", z1.grad); put("simclr/dz2", z2.grad)

# per-dimension scales from 0.3 to 1.5: some stds under the hinge, some over
scales = torch.linspace(0.3, 1.5, D, dtype=torch.float64)
z1 = leaf(f32(randn(N, D) * scales))
z2 = leaf(f32(z1.detach() + randn(N, D, scale=0.5)))
loss = vicreg(z1, z2)
loss.backward()
put("vicreg/z1", z1); put("vicreg/z2", z2); put("vicreg/coef", [25.0, 25.0, 1.0])
put("vicreg/loss", [loss.item()]); put("vicreg/dz1", z1.grad); put("vicreg/dz2", z2.grad)

z1 = leaf(f32(randn(N, D, scale=2.0) + 1.0))
z2 = leaf(f32(z1.detach() + randn(N, D)))
loss = barlow(z1, z2, 0.0051)
loss.backward()
put("barlow/z1", z1); put("barlow/z2", z2); put("barlow/lambd", [0.0051])
put("barlow/loss", [loss.item()]); put("barlow/dz1", z1.grad); put("barlow/dz2", z2.grad)

p1, p2 = leaf(randn(N, D)), leaf(randn(N, D))
t1, t2 = randn(N, D), randn(N, D)
loss = byol_fn(p1, t2.detach()).mean() + byol_fn(p2, t1.detach()).mean()
loss.backward()
put("byol/p1", p1); put("byol/p2", p2); put("byol/z1", t1); put("byol/z2", t2)
put("byol/loss", [loss.item()]); put("byol/dp1", p1.grad); put("byol/dp2", p2.grad)

meta = (f"engine fixtures: torch {torch.__version__}, float64 math on float32 inputs, stored float32; "
        "layouts are torch's (NCHW, OIHW); see tests/gen_engine_fixtures.py")
os.makedirs(os.path.dirname(OUT), exist_ok=True)
sslt.write(OUT, T, meta)
print(f"wrote {OUT}: {len(T)} tensors, {os.path.getsize(OUT)} bytes")
