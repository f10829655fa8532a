#!/usr/bin/env python3
"""Generate tests/fixtures/traj.sslt: 20-step training trajectories of the
four methods as bench/ref_train.py (PyTorch, the reviewer's reading of the
papers' code) computes them, for tests/test_traj.c to replay through
ssl_trainer_init + ssl_train_step, the path ./train takes.

The run, in ./train's options (train.c turns them into ssl_train_config):
  arch=resnet18 stem=cifar width=0.046875 (base width 3) projector=16-8
  (byol: predictor=16-8) bs=16 res=8 epochs=1 on a pack of 320 images
  (20 steps an epoch) warmup=0.25 (5 steps of linear warmup, then cosine
  to end_lr=0.01 over the other 15) lr_scale=0 wd=1e-4 momentum=0.9
  eta=0.02 tau=0.2 ema=0.99 probe (AdamW, lr 0.01) over 4 classes;
  LARS at each method's lr below, and simclr once more with AdamW.
The learning rates are small on purpose: float32 rounding (ours and
torch's differ at ~1e-7 per operation) grows along a trajectory through
ReLU masks that flip (a flipped element changes a gradient by a whole
element's share, not by the rounding), and at the lr a real run takes, a
net this small and a batch of 16 turn that into O(1) differences within 20
steps. At these rates the same script in float64 stays within 1.1e-5 of
float32 in the losses and 5.4e-4 of each tensor's change in the final
weights over the 20 steps (measured by --check; weights moved by 1e-6
relative before the run already give 3.5e-2 and 0.33: the margin is the
rounding's size), while each fault the test is meant to catch (warmup one
step longer, momentum 0.89, BYOL's ema 0.991) moves a loss by 4e-3 or
more and some tensor by 0.2 to 6 times its change.

Inputs: the initial weights are ref_train's torch init (seed 1), the BYOL
target a copy of the online net, the probe U(+-1/sqrt(feat)); the views are
uint8 arrays u (x = (u - 128) / 64 exactly, in both float32 and double),
a coarse random image per sample (2x2 per channel, bilinear to 8x8) plus
independent noise in each view, and labels in [0, 4).

Names (torch layouts: views NCHW, conv weights OIHW):
  views        uint8 [20, 2, 16, 3, 8, 8]      labels  int32 [20, 16]
  hp           float64 [lr per run (5), momentum, wd, eta, warmup_steps,
               total_steps, end_lr, ema, tau, probe_lr]
  init/<name>  every tensor of ./train's checkpoint naming: the online
               net (with BYOL's predictor), probe.weight, probe.bias
  <run>/loss   float64 [20]: each step's loss, before its update
  <run>/lr, <run>/ema_tau  float64 [20]: the schedule as the step used it
  <run>/final/<name>  after 20 steps: online weights and BN running
               statistics, target.* (byol), probe.*
  runs: simclr vicreg barlow byol (LARS), simclr_adamw (AdamW, lr 1e-3)

Run with the project venv:  build/venv/bin/python tests/gen_traj_fixtures.py
           --check: also the float64 run and the faults, as figures
"""
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import sslt  # noqa: E402
import ref_train as R  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "traj.sslt")
STEPS, BS, RES, CLASSES, WIDTH = 20, 16, 8, 4, 0.046875
WARMUP = 5  # int(0.25 * 20), as train.c computes warmup_steps
RUNS = {  # run -> (method, optimizer, lr)
    "simclr": ("simclr", "lars", 0.002),
    "vicreg": ("vicreg", "lars", 0.002),
    "barlow": ("barlow", "lars", 0.001),
    "byol": ("byol", "lars", 0.002),
    "simclr_adamw": ("simclr", "adamw", 0.001),
}
HP = dict(momentum=0.9, wd=1e-4, eta=0.02, end_lr=0.01, ema=0.99, tau=0.2, probe_lr=0.01)


def config(method, optimizer, lr, **over):
    c = dict(R.DEFAULTS, method=method, arch="resnet18", stem="cifar", width=WIDTH, projector="16-8",
             predictor="16-8" if method == "byol" else "", bs=BS, res=RES, epochs=1, warmup=WARMUP / STEPS,
             lr=lr, lr_scale=0, optimizer=optimizer, probe_optim="adamw", **HP)
    c.update(over)
    return c


def inputs():
    g = torch.Generator().manual_seed(2)
    coarse = torch.randint(0, 256, (STEPS * BS, 3, 2, 2), generator=g).float()
    coarse = torch.nn.functional.interpolate(coarse, size=(RES, RES), mode="bilinear", align_corners=False)
    coarse = coarse.view(STEPS, 1, BS, 3, RES, RES)
    noise = torch.randint(-40, 41, (STEPS, 2, BS, 3, RES, RES), generator=g)
    u = (coarse + noise).clamp(0, 255).round().to(torch.uint8)
    y = torch.randint(0, CLASSES, (STEPS, BS), generator=g)
    return u, y


def initial(method):
    """The trainer with the common initial weights (online net incl. BYOL's
    predictor, seed 1; the probe drawn after them)."""
    torch.manual_seed(1)
    return R.RefTrainer(config(method, "lars", 0.0), CLASSES, STEPS, WARMUP, torch.device("cpu"))


def run(name, dtype=torch.float32, warmup=WARMUP, perturb=0.0, **over):
    method, optimizer, lr = RUNS[name]
    cfg = config(method, optimizer, lr, **over)
    torch.manual_seed(1)
    tr = R.RefTrainer(cfg, CLASSES, STEPS, warmup, torch.device("cpu"))
    with torch.no_grad():  # the probe drew its init after the predictor's: every run takes byol's
        common = initial("byol").probe
        tr.probe.weight.copy_(common.weight)
        tr.probe.bias.copy_(common.bias)
    init = {k: v.clone() for k, v in tr.state().items()}
    if perturb:  # every weight moved by ~perturb relative: rounding's size
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in list(tr.online.parameters()):
                p.mul_(1 + perturb * torch.randn(p.shape, generator=g))
    tr.to(dtype)
    u, y = inputs()
    loss, lrs, taus = [], [], []
    for k in range(STEPS):
        x1, x2 = ((u[k, v].to(dtype) - 128) / 64 for v in range(2))
        lo, _, lr_k, tau = tr.step(x1, x2, y[k])
        loss.append(lo), lrs.append(lr_k), taus.append(tau)
    return dict(loss=np.array(loss), lr=np.array(lrs), ema_tau=np.array(taus), init=init,
                final={k: v.detach().double() for k, v in tr.state().items() if not k.startswith(("optim.", "probe_optim."))})


def diff(a, b):
    """(max loss rel diff, worst tensor's max |a - b| / its update's max |b - init|
    (floored at 1e-3 of the tensor's max |b|), its name)"""
    lrel = float(np.max(np.abs(a["loss"] - b["loss"]) / np.abs(b["loss"])))
    worst, wn = 0.0, ""
    for n, t in b["final"].items():
        d = (a["final"][n] - t).abs().max().item()
        scale = max((t - b["init"][n].double()).abs().max().item(), 1e-3 * t.abs().max().item(), 1e-12)
        if d / scale > worst:
            worst, wn = d / scale, n
    return lrel, worst, wn


def check():
    for name in RUNS:
        base = run(name)
        rows = [("float64", run(name, torch.float64))] + [
            (f"perturb {p:g}", run(name, perturb=p)) for p in (1e-7, 1e-6)]
        rows += [("warmup+1", run(name, warmup=WARMUP + 1)), ("momentum .89", run(name, momentum=0.89))]
        if RUNS[name][0] == "byol":
            rows.append(("ema .991", run(name, ema=0.991)))
        for label, r in rows:
            lrel, w, wn = diff(r, base)
            print(f"{name:13s} {label:13s} loss {lrel:.1e}  update {w:.1e} ({wn})")


def main():
    if "--check" in sys.argv:
        check()
        return
    u, y = inputs()
    T = {"views": u.numpy(), "labels": y.int().numpy()}
    T["hp"] = np.array([RUNS[r][2] for r in RUNS] + [HP["momentum"], HP["wd"], HP["eta"], WARMUP, STEPS,
                                                      HP["end_lr"], HP["ema"], HP["tau"], HP["probe_lr"]], np.float64)
    init = initial("byol").state()  # the online net with the predictor: every run's weights are a subset
    for n, t in init.items():
        if not n.startswith(("optim.", "probe_optim.", "target.")):
            T["init/" + n] = t.float().numpy()
    for name in RUNS:
        r = run(name)
        T[name + "/loss"], T[name + "/lr"], T[name + "/ema_tau"] = r["loss"], r["lr"], r["ema_tau"]
        for n, t in r["final"].items():
            T[f"{name}/final/{n}"] = t.float().numpy()
        print(f"{name:13s} loss {r['loss'][0]:.4f} -> {r['loss'][-1]:.4f}")
    sslt.write(OUT, T, meta="tests/gen_traj_fixtures.py: 20-step trajectories of ref_train.py")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
