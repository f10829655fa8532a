#!/usr/bin/env python3
"""Generate tests/fixtures/instance_simclr.sslt: PyTorch's value and gradient
of the Instance-SimCLR loss (FFCV-SSL paper, section 3.4) that
ssl_simclr_patch_loss computes.

Each image i has two views z1_i, z2_i (the positives: the whole image with
noise) and one negative zp_i (a small patch of the same image). All three
normalized, row i of view 1 has logits [z1_i.z2_i, z1_i.zp_i] / tau, row i
of view 2 [z2_i.z1_i, z2_i.zp_i] / tau; the loss is the mean over the 2N
rows of the cross-entropy against the first (the positive). As for
gen_engine_fixtures.py: float32 inputs, float64 math, stored float32.

  instance_simclr/{z1,z2,zp,tau,loss,dz1,dz2,dzp}   N=8, D=16

Run with the project venv:  build/venv/bin/python tests/gen_instance_fixtures.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sslt  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "instance_simclr.sslt")
gen = torch.Generator().manual_seed(20241208)


def randn(*shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32).double()


def instance_simclr(z1, z2, zp, tau):
    z1, z2, zp = (F.normalize(z, dim=1) for z in (z1, z2, zp))
    pos = (z1 * z2).sum(1)
    logits = torch.cat([torch.stack([pos, (z1 * zp).sum(1)], 1), torch.stack([pos, (z2 * zp).sum(1)], 1)]) / tau
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))


N, D, TAU = 8, 16, 0.2
z1 = randn(N, D).requires_grad_(True)
z2 = (z1.detach() * 0.8 + randn(N, D)).float().double().requires_grad_(True)  # correlated views
zp = randn(N, D).requires_grad_(True)
loss = instance_simclr(z1, z2, zp, TAU)
loss.backward()
T = {}
for name, t in [("z1", z1), ("z2", z2), ("zp", zp), ("dz1", z1.grad), ("dz2", z2.grad), ("dzp", zp.grad)]:
    T["instance_simclr/" + name] = np.asarray(t.detach().numpy(), dtype=np.float32)
T["instance_simclr/tau"] = np.asarray([TAU], dtype=np.float32)
T["instance_simclr/loss"] = np.asarray([loss.item()], dtype=np.float32)
meta = f"Instance-SimCLR fixture: torch {torch.__version__}, float64 math on float32 inputs; see tests/gen_instance_fixtures.py"
sslt.write(OUT, T, meta)
print(f"wrote {OUT}: {len(T)} tensors, {os.path.getsize(OUT)} bytes")
