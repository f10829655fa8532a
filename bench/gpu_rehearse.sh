#!/usr/bin/env bash
# A rehearsal of the GPU measurements, on a machine without a GPU: the phases of
# bench/gpu_report.sh and bench/gpu_e2e.sh run here as they will run on the
# device, with ssl.h's side through ssl.cu's emulation at tiny sizes
# (width 1/16, batch 2-4, one timed step) and PyTorch's side on the CPU
# (build/venv; left out where there is no torch). Then it checks what they
# wrote: every JSON line each phase must produce, the tables built from
# them, the profiles, the end-to-end rows. Device minutes are few, so a
# script that breaks on the device costs the measurements it was to take;
# this finds it here.
# The figures it produces are of emulation and mean nothing.
#
#   bash bench/gpu_rehearse.sh          step, e2e and test phases
#   bash bench/gpu_rehearse.sh full     also the cuDNN phase (CUDNN=1 build:
#                                       it rebuilds ssl.cu twice)
#   NO_TORCH=1 ...                      ssl.h's side only
#
# Exit status 0 when every check passes; each failure is named.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-quick}
case "$MODE" in quick | full) ;; *) echo "usage: bash bench/gpu_rehearse.sh [quick|full]"; exit 2 ;; esac
R=build/rehearse
rm -rf "$R" && mkdir -p "$R"
export OUT=$R/out
fails=0 passes=0
ok() { echo "rehearsal: ok   $*"; passes=$((passes + 1)); }
bad() { echo "rehearsal: FAIL $*"; fails=$((fails + 1)); }
# count of lines of FILE matching PATTERN (0 when the file is missing)
count() {
    local n
    n=$(grep -c -- "$2" "$1" 2> /dev/null)
    echo "${n:-0}"
}

command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "rehearsal: needs nvcc (the CUDA toolkit), none here"; exit 0; }
export PATH=$PATH:/usr/local/cuda/bin

for s in bench/gpu_report.sh bench/gpu_e2e.sh bench/gpu_deps.sh; do
    bash -n "$s" && ok "$s parses" || bad "$s does not parse"
done

TORCH=0
if [ "${NO_TORCH:-0}" != 1 ] && [ -x build/venv/bin/python ] && build/venv/bin/python -c 'import torch, torchvision' 2> /dev/null; then
    TORCH=1
    export PY=build/venv/bin/python
else
    export PY=python3
    [ "${NO_TORCH:-0}" = 1 ] && echo "rehearsal: NO_TORCH=1: PyTorch's side left out" \
        || echo "rehearsal: no torch in build/venv (scripts/pyenv.sh makes it): PyTorch's side left out"
fi

# ssl.h: emulated, tiny; PyTorch: the CPU, tiny (the same keys of the table:
# depth, stem, res and precision are the phases' own)
export SSL_EXTRA="emulate=1 bs=2 width=0.0625 projector=64-64-16 classes=10 steps=1 warmup=1"
export TORCH_EXTRA="--device cpu --bs 2 --projector 64-64-16 --classes 10 --steps 1 --warmup 1"
export REAL_GPU=0

# ---- the step phase (and the build it starts with); without torch its
# commands fail at the import and add no line, and ssl.h's side is checked ----
bash bench/gpu_report.sh step > "$R/step.txt" 2>&1
echo "rehearsal: step phase exit $?"
J=$OUT/steps.jsonl
n_ours=$(count "$J" '"impl": "ssl.h"')
[ "$n_ours" = 8 ] && ok "step: 8 ssl.h results" || bad "step: $n_ours ssl.h results in $J, 8 expected (see $R/step.txt)"
if [ "$TORCH" = 1 ]; then
    n_torch=$(count "$J" '"impl": "torch"')
    [ "$n_torch" = 7 ] && ok "step: 7 PyTorch results" || bad "step: $n_torch PyTorch results in $J, 7 expected (see $OUT/step.log)"
    # one row per configuration, each with both sides and a ratio
    rows=$(count "$OUT/gpu_step.md" '^| .* | [0-9.]*x |')
    [ "$rows" -ge 7 ] && ok "step: gpu_step.md has $rows rows with a ratio" || bad "step: gpu_step.md has $rows rows with a ratio, 7 or more expected"
    grep -q '^| PyTorch | [0-9.]* | [0-9.]* |' "$OUT/gpu_step.md" && ok "step: ImageNet projection for PyTorch at 224 and 160" \
        || bad "step: no ImageNet projection row for PyTorch in gpu_step.md"
    rows=$(count "$OUT/gpu_step.md" '^| ResNet-[0-9].* | \*\*[0-9.]*x\*\* | 1\.[25]x | \(yes\|no\) |$')
    [ "$rows" = 3 ] && ok "step: gpu_step.md sets the three headline steps against the issue's targets" ||
        bad "step: gpu_step.md has $rows of the 3 rows against the issue's targets"
fi
grep -q '^| ssl.h | [0-9.]* | [0-9.]* |' "$OUT/gpu_step.md" 2> /dev/null && ok "step: ImageNet projection for ssl.h at 224 and 160" \
    || bad "step: no ImageNet projection row for ssl.h in gpu_step.md"
rows=$(count "$OUT/gpu_step.md" '^| \(50\|18\).* | [0-9][0-9.]* |$')
[ "$rows" -ge 8 ] && ok "step: gpu_step.md has ssl.h's host time on $rows rows" || bad "step: gpu_step.md has ssl.h's host time on $rows rows, 8 or more expected"
grep -q 'im2col columns rebuilt' "$OUT/gpu_step.md" 2> /dev/null && ok "step: keep_cols=no rows named" || bad "step: no keep_cols=no row in gpu_step.md"
for p in profile_r50_224_bf16 profile_r18_cifar_bf16; do
    grep -q '^| kind of work' "$OUT/$p.md" 2> /dev/null && grep -q '^| total' "$OUT/$p.md" && ok "step: $p.md has the profile table" \
        || bad "step: $p.md has no profile table"
done

# ---- the test phase: the gpu_* tests cannot run here (each fails at once,
# no CUDA device); the script must still list one result per test, and the
# programs' device tests run in strict emulation ----
mkdir -p build/gpu-data
[ -f build/gpu-data/t10k-images-idx3-ubyte.gz ] || bash bench/gpu_report.sh prepare > "$R/prepare.txt" 2>&1
bash bench/gpu_report.sh test > "$R/test.txt" 2>&1
echo "rehearsal: test phase exit $?"
n_list=$(build/tests-gpu --list | grep -c '^gpu_')
n_res=$(count "$OUT/tests-gpu.txt" '^gpu_')
[ "$n_list" -gt 0 ] && [ "$n_res" = "$n_list" ] && ok "test: a result for each of the $n_list gpu_* tests" \
    || bad "test: $n_res results in tests-gpu.txt for $n_list gpu_* tests"
grep -q 'emu_.*passed\|passed' "$OUT/tests/emu.log" 2> /dev/null && ! grep -q '[1-9][0-9]* failed' "$OUT/tests/emu.log" \
    && ok "test: emu_* suite ran and passed" || bad "test: emu_* suite: $(tail -1 "$OUT/tests/emu.log" 2> /dev/null)"
grep -q '^exit 0' "$OUT/programs-gpu.log" 2> /dev/null && ok "test: ./train and ./probe device tests (emulated) pass" \
    || bad "test: ./train and ./probe device tests: $(tail -3 "$OUT/programs-gpu.log" 2> /dev/null | tr '\n' ' ')"

# ---- the cuDNN phase (full only): the CUDNN=1 build, its tests' loop, the
# steps with conv=cudnn (emulation runs them through the GEMM path) ----
if [ "$MODE" = full ]; then
    bash bench/gpu_report.sh cudnn > "$R/cudnn.txt" 2>&1
    echo "rehearsal: cudnn phase exit $?"
    if grep -q 'no cuDNN headers found' "$R/cudnn.txt"; then
        echo "rehearsal: cudnn: no cuDNN headers in /usr/local/cuda or the nvidia-cudnn wheel here; phase not rehearsed"
    else
        n_cudnn=$(count "$J" '"impl": "ssl.h+cudnn"')
        [ "$n_cudnn" = 3 ] && ok "cudnn: 3 ssl.h+cudnn results" || bad "cudnn: $n_cudnn ssl.h+cudnn results, 3 expected (see $R/cudnn.txt)"
    fi
    # ---- brief, the short lease's one call: a cuDNN build where there is
    # one, each headline step also through cuDNN, the profiles, then tests
    # (none here: BRIEF_S=1 has passed before they start) ----
    BRIEF_S=1 BN_BENCH_ARGS="emulate=1 bs=1 reps=1 presets=r50_224,r18_32" bash bench/gpu_report.sh brief > "$R/brief.txt" 2>&1
    echo "rehearsal: brief phase exit $?"
    n_ours=$(count "$J" '"impl": "ssl.h"')
    [ "$n_ours" = 5 ] && ok "brief: 5 ssl.h results (2 of them crop_flip)" || bad "brief: $n_ours ssl.h results, 5 expected (see $R/brief.txt)"
    n_flip=$(count "$J" '"recipe": "crop_flip"')
    [ "$n_flip" = 2 ] && grep -q "PyTorch's data work" "$OUT/gpu_step.md" 2> /dev/null && ok "brief: 2 crop_flip results, named in gpu_step.md" ||
        bad "brief: $n_flip crop_flip results (2 expected), or gpu_step.md does not name them"
    for p in profile_r50_224_bf16 profile_r18_cifar_bf16; do
        grep -q '^| total' "$OUT/$p.md" 2> /dev/null && ok "brief: $p.md has the profile table" || bad "brief: $p.md has no profile table"
    done
    if grep -q 'CUDNN=1' "$OUT/report.log"; then
        n_cudnn=$(count "$J" '"impl": "ssl.h+cudnn"')
        [ "$n_cudnn" = 3 ] && ok "brief: 3 cudnn results" || bad "brief: $n_cudnn cudnn results, 3 expected (see $R/brief.txt)"
        [ "$(count "$OUT/tests-engines.txt" '^gpu_\(bf16_\)\?conv2d_cudnn')" = 2 ] && ok "brief: cuDNN's 2 convolution tests ran first" ||
            bad "brief: tests-engines.txt lacks cuDNN's convolution tests"
        for p in profile_r50_224_bf16_cudnn profile_r18_cifar_bf16_cudnn; do
            grep -q '^| total' "$OUT/$p.md" 2> /dev/null && ok "brief: $p.md has the profile table" || bad "brief: $p.md has no profile table"
        done
        grep -q 'cuDNN convolutions' "$OUT/gpu_step.md" 2> /dev/null && ok "brief: gpu_step.md names the cuDNN rows" ||
            bad "brief: gpu_step.md has no cuDNN row"
    fi
    rows=$(count "$OUT/bn_bench.md" '^|\( [0-9.]* |\)\{6\} \*\*[0-9.]*\*\* |')
    [ "$rows" = 2 ] && ok "brief: bn_bench.md has the passes' totals for both presets" ||
        bad "brief: bn_bench.md has $rows complete total rows, 2 expected (see $OUT/bn_bench.err)"
fi

# ---- end to end: ./train device=cuda (emulated) with the loader's GPU mode
# on a small pack, then PyTorch's DataLoader feeding its step on the CPU ----
PK=$R/e2e.ssl
./pack build/data/cifar10/test "$PK" quiet=1 > "$R/pack.txt" 2>&1 || bad "e2e: could not pack build/data/cifar10/test (make test extracts it)"
# the progressive-resolution run's pack: 3 classes x 8 images (6 steps an epoch at batch 4)
for c in airplane automobile bird; do
    mkdir -p "$R/ramp-src/$c" && cp build/data/cifar10/test/$c/000[0-7].jpg "$R/ramp-src/$c/" 2> /dev/null
done
./pack "$R/ramp-src" "$R/ramp.ssl" quiet=1 > "$R/pack-ramp.txt" 2>&1 || bad "e2e: could not pack the ramp's 24 images"
if [ -f "$PK" ]; then
    SSL_CUDA_EMULATE=1 PACK=$PK THREADS="1 2" TORCH_THREADS=$([ "$TORCH" = 1 ] && echo 1) RES="32 24" STEPS=9 \
        RAMP="16 32 0 2" RAMP_EPOCHS=4 RAMP_PACK=$R/ramp.ssl \
        TRAIN_ARGS="arch=resnet18 stem=cifar bs=4 precision=bf16 width=0.0625 projector=64-64-16" \
        TORCH_ARGS="--device cpu --depth 18 --stem cifar --bs 4 --precision bf16 --projector 64-64-16 --classes 10 --warmup 1 --steps 3" \
        bash bench/gpu_e2e.sh run > "$R/e2e.txt" 2>&1
    echo "rehearsal: e2e phase exit $?"
    E=$OUT/e2e.jsonl
    n_e2e=$(grep '"impl": "ssl.h"' "$E" 2> /dev/null | grep -vc '"records": 0' || true)
    [ "$n_e2e" = 4 ] && ok "e2e: 4 ssl.h runs with log records" || bad "e2e: $n_e2e ssl.h runs with log records, 4 expected (see $R/e2e.txt)"
    if [ "$TORCH" = 1 ]; then
        n_te=$(count "$E" '"impl": "torch"')
        [ "$n_te" = 2 ] && ok "e2e: 2 PyTorch runs" || bad "e2e: $n_te PyTorch runs, 2 expected (see $R/e2e.txt)"
        rows=$(count "$OUT/gpu_e2e.md" '^| [0-9]* | 1 | [0-9]* | .* | [0-9.]*x |$')
        [ "$rows" = 2 ] && ok "e2e: gpu_e2e.md compares both at 1 thread" || bad "e2e: gpu_e2e.md has $rows rows with a ratio, 2 expected"
    fi
    grep -q '^| 32 | 2 | [0-9]' "$OUT/gpu_e2e.md" 2> /dev/null && ok "e2e: gpu_e2e.md has ssl.h's rows" || bad "e2e: gpu_e2e.md lacks ssl.h's rows"
    grep -q '^At 32: \(.* keeps\? the GPU fed\|no thread count\)' "$OUT/gpu_e2e.md" 2> /dev/null && ok "e2e: gpu_e2e.md names the fewest threads that feed the GPU" ||
        bad "e2e: gpu_e2e.md lacks the fewest-threads line"
    # the ramp: 16, 24, 32 (then 32 again), each with timed records, the
    # device memory steady while a size lasts, one plan per size
    python3 - "$E" << 'EOF' && ok "e2e: progressive resolution 16 -> 24 -> 32, one plan per size, memory steady within each" ||
import json, sys
x = [json.loads(l) for l in open(sys.argv[1]) if '"ssl.h ramp"' in l]
assert len(x) == 1, f"{len(x)} ramp lines"
g = x[0]["by_res"]
assert [r["res"] for r in g] == [16, 24, 32], [r["res"] for r in g]
assert all(r["records"] > 0 and r["images_per_s"] > 0 for r in g), g
assert all(0 < r["dev_gb_min"] == r["dev_gb_max"] for r in g), g
assert g[0]["dev_gb_max"] < g[1]["dev_gb_min"] < g[2]["dev_gb_min"], g
assert x[0]["plans"] == 3, x[0]["plans"]
EOF
        bad "e2e: the progressive-resolution line is missing or wrong (see $R/e2e.txt and $E)"
    rows=$(count "$OUT/gpu_e2e.md" '^| \(16\|24\|32\) | [0-9]* | [0-9]* | [0-9-]* | [0-9.x-]* | [0-9.]*-[0-9.]* |$')
    [ "$rows" = 3 ] && ok "e2e: gpu_e2e.md has the ramp's 3 sizes" || bad "e2e: gpu_e2e.md has $rows ramp rows, 3 expected"
fi

if [ "$fails" = 0 ]; then
    echo "rehearsal: every check passed (the figures are emulation's and mean nothing; outputs in $OUT)"
else
    echo "rehearsal: $fails check(s) failed (outputs and logs in $R)"
fi
echo "rehearsal: $passes passed, $fails failed"
[ "$fails" = 0 ]
