#!/usr/bin/env bash
# CPU step of SimCLR ResNet-18 (CIFAR stem, 32x32, 2 views, batch BS): ssl.h
# against PyTorch on the same CPU and threads, one after the other in one
# run. Writes bench/out/cpu_step.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BS=${BS:-256}; STEPS=${STEPS:-3}; T=${THREADS:-$(nproc)}
PY=$(scripts/pyenv.sh)
cc -std=gnu11 -O3 -march=native -pthread -DSSL_TURBOJPEG -DSSL_OPENBLAS $(pkg-config --cflags openblas) -I. \
   -o build/cpu_step_bench bench/cpu_step_bench.c -lm -lturbojpeg $(pkg-config --libs openblas)
mkdir -p bench/out
{
echo "ssl.h:"
build/cpu_step_bench bs=$BS steps=$STEPS threads=$T
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then # this environment forces OpenBLAS's kernels: also OpenBLAS's own choice
    echo "ssl.h with OpenBLAS's own choice of kernels (OPENBLAS_CORETYPE unset):"
    env -u OPENBLAS_CORETYPE build/cpu_step_bench bs=$BS steps=$STEPS threads=$T
fi
echo "PyTorch:"
$PY bench/cpu_step_torch.py --bs $BS --steps $STEPS --threads $T
echo "PyTorch, channels_last:"
$PY bench/cpu_step_torch.py --bs $BS --steps $STEPS --threads $T --channels-last
} 2>&1 | tee bench/out/cpu_step.txt
