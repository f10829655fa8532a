#!/usr/bin/env python3
"""What the compiler made of ssl.cu's layer kernels, without a GPU.

Compiles ssl.cu to PTX for sm_90 and, per kernel of the hot layer ops
(im2col, col2im, batch-norm output and input-gradient passes, ReLU / add),
counts global loads and stores and how many are 16-byte vectors (v4),
integer divisions / remainders (the GPU has no divider: each is tens of
instructions) and multiply-highs (the invariant-integer divisions that
replace them), and local-memory use (registers spilled or arrays
indexed at run time). Then ptxas's resource report: registers, stack
frame and spills of every kernel.

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
hot = ("im2col", "col2im", "bn_apply", "bn_dx", "map2", "mask_grad", "bn_part", "bn_group")
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

regs = [int(x) for x in re.findall(r"Used (\d+) registers", rep)]
frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", rep)
spills = sum(int(s) + int(l) for _, s, l in frames)
stack = sum(1 for f, _, _ in frames if int(f))
print(f"\nptxas: {len(regs)} kernels, at most {max(regs) if regs else 0} registers, "
      f"{stack} with a stack frame, {spills} bytes of spills in all")
sys.exit(0)
