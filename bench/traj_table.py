#!/usr/bin/env python3
"""bench/traj_table.py OUT: the markdown tables of bench/ref_trajectory.sh's
OUT/RUN/summary.json files (bench/RESULTS.md, "Trajectory: 100 steps").
Per run, ./train against ref_train.py in float32 and, where measured, the
reference in float32 against itself in float64 (the rounding yardstick)."""
import json
import os
import sys

out = sys.argv[1]
runs = [r for r in ("simclr", "vicreg", "barlow", "byol", "simclr_adamw") if os.path.exists(f"{out}/{r}/summary.json")]
S = {r: json.load(open(f"{out}/{r}/summary.json")) for r in runs}
pairs = [("c_vs_ref", "./train vs ref (fp32)"), ("ref32_vs_ref64", "ref fp32 vs ref fp64")]


def g(d, grp, key, fmt="{:.1e}"):
    return fmt.format(d[grp][key]) if grp in d and key in d[grp] else "-"


def each_pair():
    """(run, label, summary) for every pair a run has"""
    for r in runs:
        for key, label in pairs:
            if key in S[r]:
                yield r, label, S[r][key]


print("| run | pair | loss rel max / median | weights max abs / max rel / median rel | BN stats max rel / median | BYOL target max rel / median | probe max rel / median |")
print("|---|---|---|---|---|---|---|")
for r, label, s in each_pair():
    f = s["states"][str(S[r]["steps"])]
    print(f"| {r} | {label} | {s['loss_max_rel']:.1e} / {s['loss_median_rel']:.1e} "
          f"| {g(f, 'weights', 'max_abs')} / {g(f, 'weights', 'max_rel')} / {g(f, 'weights', 'median_rel')} "
          f"| {g(f, 'bn_stats', 'max_rel')} / {g(f, 'bn_stats', 'median_rel')} "
          f"| {g(f, 'target', 'max_rel')} / {g(f, 'target', 'median_rel')} "
          f"| {g(f, 'probe', 'max_rel')} / {g(f, 'probe', 'median_rel')} |")
print()
print("| run | pair | weights median rel at step 1 / 10 / 50 / 100 | weights max rel at 1 / 10 / 50 / 100 | loss rel at 1 / 10 / 50 / 100 |")
print("|---|---|---|---|---|")
for r, label, s in each_pair():
    ks = [str(k) for k in (1, 10, 50, S[r]["steps"])]
    print(f"| {r} | {label} | " + " / ".join(g(s["states"][k], "weights", "median_rel") for k in ks)
          + " | " + " / ".join(g(s["states"][k], "weights", "max_rel") for k in ks)
          + " | " + " / ".join(f"{s['loss_rel_at'][k]:.1e}" for k in ks) + " |")
