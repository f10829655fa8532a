#!/usr/bin/env bash
# Everything to run on a machine with a GPU, in as few device calls as
# possible, each phase well inside the device's 10-minute command limit:
#
#   bench/gpu_report.sh test    build; the GPU suite (emu_*, then each gpu_*
#                               test in its own process); ./train and ./probe
#                               on the GPU against the CPU
#   bench/gpu_report.sh memcheck  compute-sanitizer memcheck on each gpu_* test
#   bench/gpu_report.sh step    the training step, ssl.h against PyTorch on the
#                               same GPU in the same run: ResNet-50 SimCLR bs 256
#                               at 224 and 160 (fp32 and bf16), ResNet-18
#                               CIFAR stem at 32 bs 512; a table from the JSON;
#                               then ssl.h's step profiled by kind of work
#   bench/gpu_report.sh cudnn   a CUDNN=1 build (cuDNN from the toolkit or the
#                               nvidia-cudnn wheel); the convolution tests and
#                               the train-step tests through cuDNN; the step
#                               with cuDNN convolutions beside the GEMM path
#                               and PyTorch (into the same steps.jsonl)
#   bench/gpu_report.sh ncu     Nsight Compute over one ResNet-18 CIFAR step:
#                               each kernel's time, DRAM and SM throughput
#   bench/gpu_report.sh all     test, then step with QUICK=1 (the full step list
#                               after the tests would pass a call's 10 minutes)
#   bench/gpu_report.sh brief   for a short lease (one call, ~8 minutes): build
#                               (with cuDNN where it is found; WITH_CUDNN=0 not);
#                               the three headline step pairs (R50 224 and 160,
#                               R18 CIFAR, bf16 throughput), each also through
#                               cuDNN (conv=cudnn; its convolution tests
#                               first), and their table; the profiles (GEMM
#                               path and cuDNN); batch norm's passes
#                               alone per shape (build/bn_bench,
#                               BN_BENCH_ARGS, into bn_bench.md; seconds);
#                               R50 224 and R18 CIFAR with PyTorch's data work
#                               (recipe=crop_flip: flip and normalize only);
#                               then gpu_* tests until BRIEF_S seconds (420)
#   bench/gpu_report.sh prepare (here, not on the device) copies the data the
#                               program tests need into build/gpu-data: pass
#                               carry=["build/gpu-data"] to the device call
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
# appended to every build/gpu_step / gpu_step_torch.py command line (last
# value wins): bench/gpu_rehearse.sh runs the phases here, emulated and tiny
SSL_EXTRA=${SSL_EXTRA:-}
TORCH_EXTRA=${TORCH_EXTRA:-}
REAL_GPU=${REAL_GPU:-1} # 0: ./train and ./probe's device tests in emulation (the rehearsal)
log() { echo "== $*" | tee -a "$OUT/report.log"; }

build() {
    log "build ($(date -u +%FT%TZ))"
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; nvcc --version | tail -2;
      $PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cudnn", torch.backends.cudnn.version())'; } \
        2>&1 | tee "$OUT/env.txt"
    # what this machine lacks (libjpeg-turbo, stb_image) from the copies `prepare` made
    DEPS=$(bash bench/gpu_deps.sh flags build/gpu-data/deps) # (it warns when a copy it needs is missing)
    [ -n "$DEPS" ] && echo "this machine lacks a dependency: building with$DEPS" | tee -a "$OUT/report.log"
    # WITH_CUDNN=1 (brief's default): a CUDNN=1 build where cuDNN is found.
    # Its engine is still gemm unless conv= names another, so the
    # default's figures are the default build's.
    CUDNN_MAKE=""
    if [ "${WITH_CUDNN:-0}" = 1 ] && cudnn_prefix; then CUDNN_MAKE="CUDNN=1 CUDNN_PREFIX=$CUDNN_PRE"; fi
    log "make $DEPS $CUDNN_MAKE"
    make -j8 $DEPS $CUDNN_MAKE train pack probe build/tests-gpu build/gpu_step build/bn_bench 2>&1 | tail -20 | tee "$OUT/build.log"
    test -x build/tests-gpu && test -x build/gpu_step
}
# cuDNN's prefix into CUDNN_PRE: the toolkit's, else the nvidia-cudnn wheel's
# (PyTorch's); 1 when there is none
cudnn_prefix() {
    CUDNN_PRE=/usr/local/cuda
    if [ ! -f $CUDNN_PRE/include/cudnn.h ]; then
        CUDNN_PRE=$($PY -c 'import nvidia.cudnn as c; print(c.__path__[0])' 2>/dev/null)
        [ -n "$CUDNN_PRE" ] && [ ! -e "$CUDNN_PRE/lib/libcudnn.so" ] && [ -e "$CUDNN_PRE/lib/libcudnn.so.9" ] &&
            ln -sf libcudnn.so.9 "$CUDNN_PRE/lib/libcudnn.so"
    fi
    [ -n "$CUDNN_PRE" ] && [ -f "$CUDNN_PRE/include/cudnn.h" ] || { log "no cuDNN headers found"; return 1; }
}

tests() {
    local deadline=${1:-0} # SECONDS past which no further test starts (0: none)
    # each gpu_* test in its own process: a CUDA error stops a process (and
    # poisons its context), so one failure must not hide the others
    log "GPU suite, one process per test"
    mkdir -p "$OUT/tests"
    timeout 120 build/tests-gpu emu_ > "$OUT/tests/emu.log" 2>&1; tail -1 "$OUT/tests/emu.log"
    : > "$OUT/tests-gpu.txt"
    for t in $(build/tests-gpu --list | grep '^gpu_'); do
        if [ "$deadline" != 0 ] && [ $SECONDS -ge "$deadline" ]; then echo "$t skipped (out of time)" | tee -a "$OUT/report.log"; continue; fi
        timeout 90 build/tests-gpu "=$t" > "$OUT/tests/$t.log" 2>&1; rc=$?
        echo "$t $rc" | tee -a "$OUT/tests-gpu.txt"
        [ $rc = 0 ] && continue
        grep -m4 -E "CHECK|error|off \(|FAIL" "$OUT/tests/$t.log"
        # again with a device sync after every launch: an asynchronous fault
        # is then reported at the op that caused it, not at a later call
        SSL_CUDA_SYNC=1 timeout 90 build/tests-gpu "=$t" > "$OUT/tests/$t.sync.log" 2>&1
        echo "  $t with SSL_CUDA_SYNC=1: exit $?"; grep -m2 -E "CUDA error|CHECK|FAIL" "$OUT/tests/$t.sync.log"
    done
    echo "$(grep -c ' 0$' "$OUT/tests-gpu.txt") of $(wc -l < "$OUT/tests-gpu.txt") gpu_* tests passed" | tee -a "$OUT/report.log"
    # ./train device=cuda and ./probe device=cuda as programs, on the real GPU,
    # against the CPU (needs Fashion-MNIST's t10k file: `prepare` copies it
    # into build/gpu-data, which the device call must carry)
    if [ -f build/gpu-data/t10k-images-idx3-ubyte.gz ] && { [ "$deadline" = 0 ] || [ $SECONDS -lt "$deadline" ]; }; then
        log "./train and ./probe on the GPU against the CPU"
        # (its output kept: a failed build must say why)
        make $DEPS build/tests > "$OUT/build-tests.log" 2>&1 || { echo "build/tests did not build:"; tail -5 "$OUT/build-tests.log"; return 0; }
        rm -rf build/tmp && mkdir -p build/tmp
        SSL_TEST_REAL_GPU=$REAL_GPU SSL_FMNIST=build/gpu-data SSL_TEST_TMP=build/tmp SSL_TEST_DATA=build/data \
            timeout 300 build/tests train_device probe_device > "$OUT/programs-gpu.log" 2>&1
        echo "exit $?" >> "$OUT/programs-gpu.log"; tail -8 "$OUT/programs-gpu.log"
    fi
    return 0
}

# one timed run of ssl.h's step / PyTorch's, its JSON line into steps.jsonl
ours() { timeout "${OURS_S:-150}" build/gpu_step steps=$STEPS "$@" $SSL_EXTRA 2>&1 | tee -a "$OUT/step.log" | tail -1 | grep '^{' >> "$OUT/steps.jsonl"; }
theirs() {
    timeout 150 $PY bench/gpu_step_torch.py --steps $STEPS "$@" $TORCH_EXTRA 2>&1 | tee -a "$OUT/step.log" | tail -1 |
        grep '^{' >> "$OUT/steps.jsonl"
}
# one configuration, ours then PyTorch's
pair() { # label, ssl.h options, torch options
    log "step: $1"
    ours $2
    theirs $3
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
        log "step: ssl.h with the im2col columns rebuilt in the backward (keep_cols=no), beside the default"
        for cfg in "depth=50 res=224 bs=256 precision=bf16 split=0" "depth=18 stem=cifar res=32 bs=512 precision=bf16 split=0 classes=10"; do
            ours keep_cols=no $cfg
        done
        log "PyTorch with LARS through _foreach (the update ssl.h runs)"
        theirs --depth 50 --res 224 --bs 256 --precision bf16 --split 0 --optim lars
    fi
    $PY bench/gpu_table.py "$OUT/steps.jsonl" "$(head -1 "$OUT/env.txt")" | tee "$OUT/gpu_step.md"
    log "profile: ssl.h's step by kind of work and GEMM shape (CUDA events)"
    timeout 150 build/gpu_step steps=5 depth=50 res=224 bs=256 precision=bf16 split=0 profile=1 $SSL_EXTRA > "$OUT/profile_r50_224_bf16.md" 2>&1
    timeout 150 build/gpu_step steps=5 depth=18 stem=cifar res=32 bs=512 precision=bf16 split=0 classes=10 profile=1 $SSL_EXTRA \
        > "$OUT/profile_r18_cifar_bf16.md" 2>&1
    head -30 "$OUT/profile_r50_224_bf16.md"
}

# the headline pairs (and, in a cuDNN build, the same steps through
# cuDNN), their profiles, then what time allows: the BN passes alone, the
# gpu_* tests. The most telling first: a call cut at its
# limit keeps what $OUT holds by then.
brief() {
    : > "$OUT/steps.jsonl"
    local r224="depth=50 res=224 bs=256 precision=bf16 split=0" r160="depth=50 res=160 bs=256 precision=bf16 split=0"
    local c32="depth=18 stem=cifar res=32 bs=512 precision=bf16 split=0 classes=10"
    mkdir -p "$OUT/tests"
    if [ -n "$CUDNN_MAKE" ]; then # the engines' own convolution tests first: their figures mean nothing if these fail
        for t in gpu_conv2d_cudnn gpu_bf16_conv2d_cudnn gpu_train_step_cudnn; do
            timeout 60 build/tests-gpu "=$t" > "$OUT/tests/$t.log" 2>&1; echo "$t $?" | tee -a "$OUT/tests-engines.txt"
        done
    fi
    pair "R50 224 bf16 throughput" "$r224" "--depth 50 --res 224 --bs 256 --precision bf16 --split 0"
    [ -n "$CUDNN_MAKE" ] && { log "step: R50 224 through cuDNN"; ours conv=cudnn $r224; }
    pair "R50 160 bf16 throughput" "$r160" "--depth 50 --res 160 --bs 256 --precision bf16 --split 0"
    [ -n "$CUDNN_MAKE" ] && { log "step: R50 160 through cuDNN"; ours conv=cudnn $r160; }
    pair "R18 CIFAR 32 bf16 throughput" "$c32" "--depth 18 --stem cifar --res 32 --bs 512 --precision bf16 --split 0 --classes 10"
    [ -n "$CUDNN_MAKE" ] && { log "step: R18 CIFAR through cuDNN"; ours conv=cudnn $c32; }
    $PY bench/gpu_table.py "$OUT/steps.jsonl" "$(head -1 "$OUT/env.txt")" | tee "$OUT/gpu_step.md"
    log "profile: ssl.h's step by kind of work (CUDA events), at ${SECONDS}s"
    timeout 100 build/gpu_step steps=5 $r224 profile=1 $SSL_EXTRA > "$OUT/profile_r50_224_bf16.md" 2>&1
    [ -n "$CUDNN_MAKE" ] && timeout 100 build/gpu_step steps=5 conv=cudnn $r224 profile=1 $SSL_EXTRA > "$OUT/profile_r50_224_bf16_cudnn.md" 2>&1
    timeout 60 build/gpu_step steps=5 $c32 profile=1 $SSL_EXTRA > "$OUT/profile_r18_cifar_bf16.md" 2>&1
    [ -n "$CUDNN_MAKE" ] && timeout 60 build/gpu_step steps=5 conv=cudnn $c32 profile=1 $SSL_EXTRA > "$OUT/profile_r18_cifar_bf16_cudnn.md" 2>&1
    log "brief: steps and profiles done at ${SECONDS}s"
    # batch norm's passes alone on the three steps' shapes (seconds)
    log "bn_bench: batch norm's passes per shape"
    timeout 90 build/bn_bench $BN_BENCH_ARGS > "$OUT/bn_bench.md" 2> "$OUT/bn_bench.err"; log "bn_bench exit $? at ${SECONDS}s"
    # the same data work as PyTorch's step (crop_flip: flip and normalize, no
    # colour op; the headline rows apply the whole SimCLR recipe on the GPU)
    log "step: R50 224 and R18 CIFAR with PyTorch's data work (recipe=crop_flip)"
    ours recipe=crop_flip $r224
    ours recipe=crop_flip $c32
    $PY bench/gpu_table.py "$OUT/steps.jsonl" "$(head -1 "$OUT/env.txt")" > "$OUT/gpu_step.md"
    tests "${BRIEF_S:-420}"
}

# cuDNN's convolutions (the issue allows a CUDNN=1 build; the default is
# to be chosen by these figures): where cuDNN is, build with it, test it,
# time it beside the GEMM path
cudnn_phase() {
    cudnn_prefix || return 0
    local pre=$CUDNN_PRE
    log "cudnn: build with CUDNN=1 CUDNN_PREFIX=$pre"
    make -j8 $DEPS CUDNN=1 CUDNN_PREFIX="$pre" build/tests-gpu build/gpu_step 2>&1 | tail -5 | tee -a "$OUT/build.log"
    mkdir -p "$OUT/tests"
    for t in gpu_conv2d_cudnn gpu_bf16_conv2d_cudnn; do
        timeout 120 build/tests-gpu "=$t" > "$OUT/tests/$t.log" 2>&1; echo "$t $?" | tee -a "$OUT/tests-gpu.txt"
    done
    timeout 240 build/tests-gpu "=gpu_train_step_cudnn" > "$OUT/tests/gpu_train_step_cudnn.log" 2>&1
    echo "gpu_train_step_cudnn $?" | tee -a "$OUT/tests-gpu.txt"
    [ -f "$OUT/steps.jsonl" ] || : > "$OUT/steps.jsonl"
    for cfg in "depth=50 res=224 bs=256 precision=bf16 split=0" "depth=50 res=160 bs=256 precision=bf16 split=0" \
               "depth=18 stem=cifar res=32 bs=512 precision=bf16 split=0 classes=10"; do
        log "step with cuDNN convolutions: $cfg"
        ours conv=cudnn $cfg
    done
    timeout 150 build/gpu_step steps=5 conv=cudnn depth=50 res=224 bs=256 precision=bf16 split=0 profile=1 $SSL_EXTRA \
        > "$OUT/profile_r50_224_bf16_cudnn.md" 2>&1
    $PY bench/gpu_table.py "$OUT/steps.jsonl" "$(head -1 "$OUT/env.txt" 2>/dev/null)" | tee "$OUT/gpu_step.md"
    make -j8 $DEPS build/tests-gpu build/gpu_step > /dev/null 2>&1 # back to the default build
}

# compute-sanitizer memcheck on each gpu_* test (its own process, its own
# time limit: the sanitizer slows kernels many times)
memcheck() {
    log "compute-sanitizer memcheck, one process per gpu_* test"
    mkdir -p "$OUT/tests"
    : > "$OUT/memcheck.txt"
    for t in $(build/tests-gpu --list | grep '^gpu_'); do
        timeout 150 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --target-processes application-only \
            --error-exitcode 1 build/tests-gpu "=$t" > "$OUT/tests/$t.memcheck.log" 2>&1; mc=$?
        echo "$t $mc" | tee -a "$OUT/memcheck.txt"
        [ $mc = 0 ] || grep -m4 -E "Invalid|ERROR SUMMARY|error" "$OUT/tests/$t.memcheck.log"
    done
    echo "$(grep -c ' 0$' "$OUT/memcheck.txt") of $(wc -l < "$OUT/memcheck.txt") gpu_* tests clean under memcheck" | tee -a "$OUT/report.log"
}

# Nsight Compute on one ResNet-18 CIFAR step (after a warm-up step): per
# kernel, device time and DRAM / SM throughput as % of peak, summed by
# kernel (ssl.h's kernels are ssl__each_kernel<functor>, so the functor
# names the op); cuBLAS's kernels appear under their own names.
ncu_phase() {
    log "Nsight Compute: one ResNet-18 CIFAR step, every kernel"
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    [ -n "$NCU" ] || { echo "no ncu on this machine"; return 0; }
    timeout 540 "$NCU" --csv --launch-skip "${NCU_SKIP:-900}" --launch-count "${NCU_COUNT:-900}" \
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        build/gpu_step depth=18 stem=cifar res=32 bs=512 steps=1 warmup=1 split=0 classes=10 > "$OUT/ncu_r18.csv" 2> "$OUT/ncu_r18.log"
    echo "exit $?" >> "$OUT/ncu_r18.log"
    $PY bench/ncu_table.py "$OUT/ncu_r18.csv" | tee "$OUT/ncu_r18.md"
}

# on this machine, before the device call: the data the GPU-side program
# tests read (the device has no ../shared and no Debian datasets)
prepare() {
    mkdir -p build/gpu-data
    cp /usr/share/datasets/fashion-mnist/t10k-*-idx?-ubyte.gz build/gpu-data/
    # the probe test's second pack reads train-images; t10k stands in for it
    cp build/gpu-data/t10k-images-idx3-ubyte.gz build/gpu-data/train-images-idx3-ubyte.gz
    cp build/gpu-data/t10k-labels-idx1-ubyte.gz build/gpu-data/train-labels-idx1-ubyte.gz
    bash bench/gpu_deps.sh copy build/gpu-data/deps # libjpeg-turbo, stb_image: the GPU machine may lack them
    du -sh build/gpu-data
}

case "$PHASE" in
prepare) prepare ;;
ncu) build && ncu_phase ;;
cudnn) build && cudnn_phase ;;
memcheck) build && memcheck ;;
test) build && tests ;;
step) build && step ;;
all) build && { tests; QUICK=1 step; } ;;
brief) WITH_CUDNN=${WITH_CUDNN:-1} build && brief ;;
*) echo "usage: bench/gpu_report.sh prepare|test|memcheck|step|cudnn|ncu|all|brief"; exit 2 ;;
esac
