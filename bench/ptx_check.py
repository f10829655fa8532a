#!/usr/bin/env python3
"""What the compiler made of ssl.cu's layer kernels, without a GPU.

Compiles ssl.cu to PTX for sm_90 and, per kernel of the hot layer ops
(im2col, col2im, batch-norm output and input-gradient passes, ReLU / add),
counts global loads and stores and how many are 16-byte vectors (v4),
integer divisions / remainders (the GPU has no divider: each is tens of
instructions) and multiply-highs (the invariant-integer divisions that
replace them), and local-memory use (registers spilled or arrays
indexed at run time). Then, where cuobjdump is found, the SASS: how
ptxas scheduled each hot kernel's loads. Then ptxas's resource report:
registers, stack frame and spills of every kernel.

  python3 bench/ptx_check.py            (needs nvcc; writes build/ptx/)
"""
import os
import re
import subprocess
import sys

os.makedirs("build/ptx", exist_ok=True)
nvcc = os.environ.get("NVCC", "nvcc")
base = [nvcc, "-O3", "-arch=sm_90", "-std=c++17", "-I.", "ssl.cu"]
subprocess.run(base + ["-ptx", "-o", "build/ptx/ssl.ptx"], check=True)
rep = subprocess.run(base + ["-c", "-o", "build/ptx/ssl.o", "-Xptxas", "-v"], capture_output=True, text=True, check=True).stderr

ptx = open("build/ptx/ssl.ptx").read()
hot = ("im2col", "col2im", "bn_apply", "bn_dx", "map2", "mask_grad", "bn_part", "bn_group", "pool", "bn_fin", "bn_moments")
print("| kernel (functor) | global loads (16-byte) | stores (16-byte) | div/rem | mul.hi | local |")
print("|---|---|---|---|---|---|")
for f in re.split(r"\n(?=\.visible \.entry|\.entry|\.weak \.entry)", ptx):
    m = re.search(r"\.entry _Z16ssl__each_kernelI(\S+?)EvT_l\(", f)
    if not m or not any(k in m.group(1) for k in hot):
        continue
    name = re.sub(r"\d+ssl__", "", m.group(1))
    pats = [r"ld\.global", r"ld\.global(?:\.nc)?\.v4", r"st\.global", r"st\.global\.v4", r"\b(?:div|rem)\.",
            r"mul\.hi", r"\.local"]
    c = [len(re.findall(p, f)) for p in pats]
    print(f"| {name} | {c[0]} ({c[1]}) | {c[2]} ({c[3]}) | {c[4]} | {c[5]} | {c[6]} |")

# The SASS (what ptxas scheduled), where cuobjdump is found (the toolkit's,
# CUOBJDUMP=..., or the nvidia-cuda-cuobjdump wheel: bench/sass_tools.sh):
# per hot kernel, its global loads and the longest run of them issued
# before a floating-point instruction. A run of 1-2 in a loop that loads U
# rows ahead in the source means ptxas interleaved the loads with the
# arithmetic (the BN moments pass was so before ssl__after: 2 loads in
# flight a thread where the source asked for 16).
cuobjdump = os.environ.get("CUOBJDUMP") or next(
    (p for p in ("cuobjdump", "/usr/local/cuda/bin/cuobjdump", "build/sass-tools/nvidia/cu13/bin/cuobjdump")
     if subprocess.run(["sh", "-c", f"command -v {p}"], capture_output=True).returncode == 0), None)
if cuobjdump:
    sass = subprocess.run([cuobjdump, "-sass", "build/ptx/ssl.o"], capture_output=True, text=True).stdout
    print("\n| kernel (functor), SASS | global loads | longest run of loads before a float op | runs of 1-2 loads |")
    print("|---|---|---|---|")
    for f in re.split(r"\n\s*Function : ", sass)[1:]:
        m = re.match(r"_Z16ssl__each_kernelI(\S+?)EvT_l", f)
        if not m or not any(k in m.group(1) for k in hot):
            continue
        runs, run = [], 0
        for line in f.split("\n"):
            op = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)
            if not op:
                continue
            op = op.group(1)
            if op.startswith("LDG"):
                run += 1
            elif op.startswith(("DADD", "DFMA", "DMUL", "FADD", "FFMA", "FMUL", "F2F", "FSET", "FMNMX", "HADD2", "HFMA2")):
                if run:
                    runs.append(run)
                run = 0
        if run:
            runs.append(run)
        loads = sum(runs)
        short = sum(r for r in runs if r <= 2)
        kname = re.sub(r"\d+ssl__", "", m.group(1))
        print(f"| {kname} | {loads} | {max(runs) if runs else 0} | {short} of {loads} |")
else:
    print("\n(no cuobjdump: bash bench/sass_tools.sh fetches it, then the SASS table is printed too)")

regs = [int(x) for x in re.findall(r"Used (\d+) registers", rep)]
frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", rep)
spills = sum(int(s) + int(l) for _, s, l in frames)
stack = sum(1 for f, _, _ in frames if int(f))
print(f"\nptxas: {len(regs)} kernels, at most {max(regs) if regs else 0} registers, "
      f"{stack} with a stack frame, {spills} bytes of spills in all")
sys.exit(0)
