#!/usr/bin/env bash
# Everything a session with a GPU should run, in as few device calls as
# possible, each phase well inside the device's 10-minute command limit:
#
#   bench/gpu_report.sh test    build; the GPU suite (emu_* and gpu_*);
#                               compute-sanitizer memcheck on the gpu_* tests
#   bench/gpu_report.sh step    the training step, ssl.h against PyTorch on the
#                               same GPU in the same run: ResNet-50 SimCLR bs 256
#                               at 224 and 160 (fp32 and bf16), ResNet-18
#                               CIFAR stem at 32 bs 512; a table from the JSON
#   bench/gpu_report.sh all     both
#
# Logs and gpu_step.md go to $OUT (the device tool's folder) or
# bench/out/gpu. Each command runs under `timeout`, so one hang costs its
# own limit, not the call. STEPS=, QUICK=1 (fewer configurations) tune it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
PHASE=${1:-all}
STEPS=${STEPS:-20}
PY=${PY:-python3}
log() { echo "== $*" | tee -a "$OUT/report.log"; }

build() {
    log "build ($(date -u +%FT%TZ))"
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; nvcc --version | tail -2;
      $PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cudnn", torch.backends.cudnn.version())'; } \
        2>&1 | tee "$OUT/env.txt"
    make -j8 train pack probe build/tests-gpu 2>&1 | tail -20 | tee "$OUT/build.log"
    # the step benchmark (no JPEG or BLAS libraries needed)
    cc -std=gnu11 -O3 -march=native -pthread -DSSL_CUDA -I/usr/local/cuda/include -I. -o build/gpu_step bench/gpu_step.c \
        build/ssl_cuda.o -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -lstdc++ -lm \
        2>&1 | tee -a "$OUT/build.log"
    test -x build/tests-gpu && test -x build/gpu_step
}

tests() {
    log "GPU suite"
    timeout 240 build/tests-gpu > "$OUT/tests-gpu.log" 2>&1; echo "exit $?" >> "$OUT/tests-gpu.log"
    tail -3 "$OUT/tests-gpu.log"; grep -E "^FAIL" "$OUT/tests-gpu.log" | head -30
    log "compute-sanitizer memcheck (gpu_* tests)"
    timeout 240 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --target-processes application-only --error-exitcode 1 \
        build/tests-gpu gpu_ > "$OUT/memcheck.log" 2>&1; echo "exit $?" >> "$OUT/memcheck.log"
    tail -4 "$OUT/memcheck.log"; grep -m5 -E "Invalid|ERROR SUMMARY" "$OUT/memcheck.log"
}

# one configuration, ours then PyTorch's, both JSON lines into steps.jsonl
pair() { # label, ssl.h options, torch options
    log "step: $1"
    timeout 150 build/gpu_step steps=$STEPS $2 2>&1 | tee -a "$OUT/step.log" | tail -1 | grep '^{' >> "$OUT/steps.jsonl"
    timeout 150 $PY bench/gpu_step_torch.py --steps $STEPS $3 2>&1 | tee -a "$OUT/step.log" | tail -1 | grep '^{' >> "$OUT/steps.jsonl"
}

step() {
    : > "$OUT/steps.jsonl"
    pair "R50 224 bf16 throughput" "depth=50 res=224 bs=256 precision=bf16 split=0" "--depth 50 --res 224 --bs 256 --precision bf16 --split 0"
    pair "R50 224 bf16 split" "depth=50 res=224 bs=256 precision=bf16 split=1" "--depth 50 --res 224 --bs 256 --precision bf16 --split 1"
    pair "R18 CIFAR 32 bf16 throughput" "depth=18 stem=cifar res=32 bs=512 precision=bf16 split=0 classes=10" \
        "--depth 18 --stem cifar --res 32 --bs 512 --precision bf16 --split 0 --classes 10"
    if [ "${QUICK:-0}" != 1 ]; then
        pair "R50 224 fp32 split" "depth=50 res=224 bs=256 precision=fp32 split=1" "--depth 50 --res 224 --bs 256 --precision fp32 --split 1"
        pair "R50 160 bf16 throughput" "depth=50 res=160 bs=256 precision=bf16 split=0" "--depth 50 --res 160 --bs 256 --precision bf16 --split 0"
        pair "R18 CIFAR 32 bf16 split" "depth=18 stem=cifar res=32 bs=512 precision=bf16 split=1 classes=10" \
            "--depth 18 --stem cifar --res 32 --bs 512 --precision bf16 --split 1 --classes 10"
        log "PyTorch with LARS through _foreach (the update ssl.h runs)"
        timeout 150 $PY bench/gpu_step_torch.py --steps $STEPS --depth 50 --res 224 --bs 256 --precision bf16 --split 0 --optim lars \
            2>&1 | tee -a "$OUT/step.log" | tail -1 | grep '^{' >> "$OUT/steps.jsonl"
    fi
    $PY bench/gpu_table.py "$OUT/steps.jsonl" "$(head -1 "$OUT/env.txt")" | tee "$OUT/gpu_step.md"
}

case "$PHASE" in
test) build && tests ;;
step) build && step ;;
all) build && { tests; step; } ;;
*) echo "usage: bench/gpu_report.sh test|step|all"; exit 2 ;;
esac
