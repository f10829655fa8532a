"""Optimizer fixtures: three steps of SGD (momentum), LARS and AdamW as
PyTorch computes them, on weight matrices (one all zero, one of large
magnitude), a bias and a BN weight, with
biases and 1-d parameters excluded from weight decay (and from LARS
adaptation), as the VICReg / Barlow Twins reference code does.

LARS is the reference implementation's algorithm (facebookresearch/vicreg
main_vicreg.py, class LARS), written out here in torch:
    for each p:  dp = grad
                 if p.ndim > 1: dp = dp + wd * p
                                q = eta * ||p|| / ||dp||  (1 if either norm is 0)
                                dp = dp * q
                 mu = momentum * mu + dp ;  p -= lr * mu

Writes tests/fixtures/optim.sslt. Run with the venv python (tests/gen_fixtures.sh).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import sslt  # noqa: E402

torch.manual_seed(0)
# w: a weight; b, bn: excluded from decay and LARS; z: an all-zero weight
# (LARS's fallback trust ratio of 1); big: a weight and gradients of large
# magnitude (1e3 and 1e2), where a rounding of the step's scalars shows most
shapes = {"w": (8, 5), "b": (8,), "bn": (8,), "z": (4, 3), "big": (6, 4)}
init = {k: torch.randn(*s, dtype=torch.float64).float() for k, s in shapes.items()}
init["bn"] = init["bn"].abs() + 0.5
init["z"] = torch.zeros(shapes["z"])
init["big"] = init["big"] * 1e3
grad_scale = {"w": 0.1, "b": 1.0, "bn": 1.0, "z": 0.1, "big": 100.0}
grads = [{k: torch.randn(*s).float() * grad_scale[k] for k, s in shapes.items()} for _ in range(3)]
lrs = [0.1, 0.05, 0.2]
WD, MOM, ETA = 0.01, 0.9, 0.001
out = {}
for k in shapes:
    out[f"init/{k}"] = init[k].numpy()
    for s in range(3):
        out[f"grad/{s}/{k}"] = grads[s][k].numpy()
out["lrs"] = np.array(lrs, dtype=np.float32)
out["hparams"] = np.array([WD, MOM, ETA, 0.9, 0.999, 1e-8], dtype=np.float32)


def params():
    return {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}


def run(make_opt, name):
    p = params()
    opt = make_opt(p)
    for s in range(3):
        for k in p:
            p[k].grad = grads[s][k].clone()
        for g in opt.param_groups:
            g["lr"] = lrs[s]
        opt.step()
        for k in p:
            out[f"{name}/{s}/{k}"] = p[k].detach().numpy().copy()


def groups(p):
    return [{"params": [p["w"], p["z"], p["big"]], "weight_decay": WD},
            {"params": [p["b"], p["bn"]], "weight_decay": 0.0}]


run(lambda p: torch.optim.SGD(groups(p), lr=0.1, momentum=MOM), "sgd")
run(lambda p: torch.optim.AdamW(groups(p), lr=0.1, betas=(0.9, 0.999), eps=1e-8), "adamw")


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr, weight_decay, momentum, eta):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    pn, un = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(pn)
                    q = torch.where(pn > 0.0, torch.where(un > 0, (g["eta"] * pn / un), one), one)
                    dp = dp.mul(q)
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                mu = st["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


run(lambda p: LARS(list(p.values()), lr=0.1, weight_decay=WD, momentum=MOM, eta=ETA), "lars")
path = os.path.join(os.path.dirname(__file__), "fixtures", "optim.sslt")
sslt.write(path, out, f"generator=gen_optim_fixtures.py torch={torch.__version__}")
print(f"wrote {path}: {len(out)} tensors")
