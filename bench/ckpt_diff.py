#!/usr/bin/env python3
"""bench/ckpt_diff.py: two training states compared tensor by tensor.

    build/venv/bin/python bench/ckpt_diff.py A.sslt B.sslt [INIT.sslt] [--json] [--all]

A and B: ./train's OUT/ckpt.sslt or bench/ref_train.py's OUT/final.sslt /
state_K.sslt (the same names; conv weights in the same layout). B is the
reference. Tensors present in both are compared, in groups:
  weights   the online net's trained tensors (conv/linear/BN weights, biases)
  bn_stats  its BN running_mean / running_var
  target    BYOL's target network (target.*: EMA weights and its own BN stats)
  probe     the online probe (probe.weight, probe.bias)
  optim     the optimizers' moments (optim.m/v.*, probe_optim.*)
Per group: max |a - b| (abs), the worst tensor's max |a - b| / max |b| (rel),
the median over the group's tensors of that per-tensor rel; with INIT (the
state both started from), also max |a - b| / max |b - init| per tensor: the
error as a share of what training did to the tensor (change), worst and
median. --all prints every tensor; --json one JSON object.
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_train import load_sslt  # noqa: E402


def group(name):
    if name.startswith("target."):
        return "target"
    if name.startswith(("optim.", "probe_optim.")):
        return "optim"
    if name.startswith("probe."):
        return "probe"
    if name.endswith(("running_mean", "running_var")):
        return "bn_stats"
    return "weights"


def diff(a, b, init=None):
    rows = []
    for name in b:
        if name not in a or not b[name].is_floating_point() or a[name].shape != b[name].shape:
            continue
        x, y = a[name].double(), b[name].double()
        d = (x - y).abs().max().item() if y.numel() else 0.0
        row = dict(name=name, group=group(name), abs=d, rel=d / max(y.abs().max().item(), 1e-30))
        src = init.get(name[len("target."):] if name.startswith("target.") and name not in init else name) if init else None
        if src is not None and src.shape == y.shape:
            row["change"] = d / max((y - src.double()).abs().max().item(), 1e-3 * y.abs().max().item(), 1e-30)
        rows.append(row)
    out = {}
    for g in ("weights", "bn_stats", "target", "probe", "optim"):
        rs = [r for r in rows if r["group"] == g]
        if not rs:
            continue
        worst = max(rs, key=lambda r: r["rel"])
        s = dict(tensors=len(rs), max_abs=max(r["abs"] for r in rs), max_rel=worst["rel"], worst=worst["name"],
                 median_rel=statistics.median(r["rel"] for r in rs))
        if all("change" in r for r in rs):
            wc = max(rs, key=lambda r: r["change"])
            s.update(max_change=wc["change"], worst_change=wc["name"], median_change=statistics.median(r["change"] for r in rs))
        out[g] = s
    return out, rows


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    a, b = load_sslt(args[0]), load_sslt(args[1])
    init = load_sslt(args[2]) if len(args) == 3 else None
    out, rows = diff(a, b, init)
    if "--json" in sys.argv:
        print(json.dumps(out))
        return
    if "--all" in sys.argv:
        for r in rows:
            print(f"{r['name']:48s} abs {r['abs']:.2e} rel {r['rel']:.2e}" + (f" change {r['change']:.2e}" if "change" in r else ""))
    for g, s in out.items():
        line = f"{g:9s} {s['tensors']:3d} tensors: max abs {s['max_abs']:.2e}, max rel {s['max_rel']:.2e} ({s['worst']}), median rel {s['median_rel']:.2e}"
        if "max_change" in s:
            line += f"; of the change: max {s['max_change']:.2e} ({s['worst_change']}), median {s['median_change']:.2e}"
        print(line)


if __name__ == "__main__":
    main()
