#!/usr/bin/env python3
"""The least memory traffic and the floating-point work of one training step,
by kind of work, from the profiler's bookkeeping (no GPU needed).

ssl.cu's profiler counts for every op the bytes it must move at the least
(each input read once, each output written once, at the stored element
sizes) and its floating-point operations. Those counts do not depend on the
GPU, so they are taken from emulated runs of build/gpu_step (emulate=1
profile=1) at two small batches and extrapolated linearly to the target
batch (every count is a + b * batch: weights and per-channel work are the
constant, activations the slope).

  python3 bench/traffic.py depth=50 res=224 bs=256 precision=bf16
  python3 bench/traffic.py depth=18 stem=cifar res=32 bs=512 small=4,8
  (keep_cols=auto|yes|no: the columns kept as the model would on a GPU
  of gpu_gb=85 GB, or as given)

Prints a markdown table: GB and GFLOP per step per kind of work, and the
milliseconds each would take at the GPU's full memory bandwidth
(peak_gbs=3350, the H100 SXM) and the GEMMs at its dense bf16 / fp32 peaks;
then the same step's bound with the convolutions as implicit GEMMs (their
bytes as cuDNN's profile entries count them).
"""
import json
import os
import re
import subprocess
import sys

args = dict(a.split("=", 1) for a in sys.argv[1:])
bs = int(args.pop("bs", "256"))
small = [int(b) for b in args.pop("small", "2,4").split(",")]
peak = float(args.pop("peak_gbs", "3350"))
tflops = {"bf16": 989.0, "fp32": 67.0}
prec = args.get("precision", "bf16")
exe = args.pop("exe", "build/gpu_step")

gpu_gb = float(args.pop("gpu_gb", "85"))  # the GPU's free memory at the plan (H100 SXM: 80 GiB = 85.9 GB in all)
keep = args.pop("keep_cols", "auto")


def emulated(b, keep_cols):
    cmd = [exe, f"bs={b}", "emulate=1", "profile=1", "steps=1", "warmup=1", "split=0", f"keep_cols={keep_cols}"] + \
          [f"{k}={v}" for k, v in args.items()]
    # im2col blocks as on the GPU (emulation otherwise blocks as the CPU)
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, SSL_EMU_GPU_BLOCKS="1"))
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}{out.stdout[-2000:]}")
    return out, cmd


# keep_cols=auto: the model keeps the convolutions' im2col columns when the
# plan with them takes at most 3/4 of the GPU's memory; the emulated runs'
# small batches always fit, so decide from their plans extrapolated to bs
if keep == "auto":
    plans = []
    for b in small:
        for line in emulated(b, "yes")[0].stdout.splitlines():
            if line.startswith("{"):  # the model's own measure: both slots with the columns + 3 gradient buffers
                plans.append((b, json.loads(line)["plan_gb"]))
    (p1, a1), (p2, a2) = plans
    act = a1 + (a2 - a1) / (p2 - p1) * (bs - p1)
    keep = "yes" if act <= 0.75 * gpu_gb else "no"
    keep_note = (f"im2col columns {'kept' if keep == 'yes' else 'rebuilt in the backward'}: the plan with them takes "
                 f"{act:.1f} GB, {'within' if keep == 'yes' else 'over'} 3/4 of the GPU's {gpu_gb:.0f} GB")
else:
    keep_note = f"im2col columns {'kept' if keep == 'yes' else 'rebuilt in the backward'} (keep_cols={keep})"

runs = []
for b in small:
    out, cmd = emulated(b, keep)
    rows, launches, conv, waits = {}, None, None, None
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and re.match(r"^\d+$", cells[1]):  # kind, calls, ms, share, GB, GFLOP, ...
            rows[cells[0]] = (float(cells[4]), float(cells[5]))
        m = re.match(r"Per step: (\d+) kernel launches and (\d+) GEMM calls", line)
        if m:
            launches = (int(m.group(1)), int(m.group(2)))
        m = re.match(r"Per step: (\d+) host waits", line)
        if m:
            waits = int(m.group(1))
        m = re.match(r"Convolutions: ([\d.]+) GB/step here .* at least ([\d.]+) GB/step", line)
        if m:
            conv = (float(m.group(1)), float(m.group(2)))
    if not rows:
        sys.exit(f"no profile table in the output of {' '.join(cmd)}")
    runs.append((b, rows, launches, conv, waits))

(b1, r1, l1, c1, w1), (b2, r2, l2, c2, w2) = runs


def at(v1, v2):
    return v1 + (v2 - v1) / (b2 - b1) * (bs - b1)


table = []
for kind in r1:
    g1, f1 = r1[kind]
    g2, f2 = r2.get(kind, (g1, f1))
    table.append((kind, at(g1, g2), at(f1, f2)))
table.sort(key=lambda t: -t[1])
gb = sum(t[1] for t in table)
gf = sum(t[2] for t in table)
desc = " ".join(f"{k}={v}" for k, v in args.items())
print(f"{desc}: extrapolated to batch {bs} (two views) from emulated runs at batch {b1} and {b2}; {keep_note}\n")
print(f"| kind of work | GB/step | GFLOP/step | ms at {peak:.0f} GB/s |")
print("|---|---|---|---|")
for kind, g, f in table:
    if g >= 0.05 or f >= 0.5:
        print(f"| {kind} | {g:.1f} | {f:.0f} | {g / peak * 1e3:.1f} |")
print(f"| total | {gb:.1f} | {gf:.0f} | {gb / peak * 1e3:.1f} |")
peak_f = tflops["bf16" if prec == "bf16" else "fp32"]
print(f"\nGEMM work: {gf / 1e3:.2f} TFLOP/step = {gf / peak_f:.1f} ms at {peak_f:.0f} dense {prec} TFLOP/s; "
      f"memory bound {gb / peak * 1e3:.1f} ms -> at most {bs / max(gb / peak, gf / 1e3 / peak_f):.0f} images/s (two views)")
if l1 and l2 and l1 == l2:
    print(f"Per step: {l1[0]} kernel launches and {l1[1]} GEMM calls (the same at both batches)"
          + (f", {w1} host waits for the device" if w1 is not None and w1 == w2 else ""))
if c1 and c2:
    here, floor = at(c1[0], c2[0]), at(c1[1], c2[1])
    gb_i = gb - here + floor
    print(f"Convolutions as implicit GEMMs (no im2col/col2im columns, each operand read once: what cuDNN or an own "
          f"kernel must move at least): {floor:.1f} GB instead of {here:.1f} GB -> step {gb_i:.1f} GB, "
          f"{gb_i / peak * 1e3:.1f} ms at {peak:.0f} GB/s, at most {bs / max(gb_i / peak, gf / 1e3 / peak_f):.0f} images/s (two views)")
