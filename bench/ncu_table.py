#!/usr/bin/env python3
"""Nsight Compute's CSV (ncu --csv --metrics gpu__time_duration.sum,
dram__throughput...pct_of_peak_sustained_elapsed, sm__throughput...) as a
markdown table: per kernel (ssl.h's functor name, or cuBLAS's kernel name),
launches, device time, share, and the time-weighted DRAM and SM throughput
as % of the GPU's peak. Used by bench/gpu_report.sh ncu.

  python3 bench/ncu_table.py ncu_r18.csv
"""
import collections
import csv
import re
import sys

lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = list(csv.reader(lines))
if len(rows) < 2:
    sys.exit("no ncu rows in " + sys.argv[1])
head, rows = rows[0], rows[1:]
ki, mi, vi, idi = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value"), head.index("ID")
kern = collections.defaultdict(dict)
for r in rows:
    try:
        kern[(r[idi], r[ki])][r[mi]] = float(r[vi].replace(",", ""))
    except ValueError:
        pass
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # launches, ns, ns*dram%, ns*sm%
for (_, name), m in kern.items():
    f = re.search(r"ssl__f_\w+", name) or re.search(r"ssl__chunk_sum<\w+", name) or re.search(r"ssl__\w+_kernel", name)
    key = f.group(0) if f else name[:70]
    t = m.get("gpu__time_duration.sum", 0.0)
    a = agg[key]
    a[0] += 1
    a[1] += t
    a[2] += t * m.get("dram__throughput.avg.pct_of_peak_sustained_elapsed", 0.0)
    a[3] += t * m.get("sm__throughput.avg.pct_of_peak_sustained_elapsed", 0.0)
total = sum(a[1] for a in agg.values()) or 1.0
print(f"{sum(a[0] for a in agg.values())} kernels, {total / 1e6:.2f} ms of device time\n")
print("| kernel | launches | time (us) | share | DRAM % of peak | SM % of peak |")
print("|---|---|---|---|---|---|")
for key, a in sorted(agg.items(), key=lambda x: -x[1][1])[:30]:
    w = max(a[1], 1.0)
    print(f"| `{key}` | {a[0]} | {a[1] / 1e3:.0f} | {100 * a[1] / total:.1f}% | {a[2] / w:.0f} | {a[3] / w:.0f} |")
