#!/usr/bin/env bash
# Cells per hour of a grid: a 2x2 grid (lr x tau) of tiny SimCLR runs
# (ResNet-18 at width 1/4, CIFAR stem, 32 px, 2 epochs of 500 CIFAR-10
# test images, kNN and probe on them at the end), run with parallel=1, 2
# and 4 (PARALLEL="1 2" for fewer) on this machine.
#   bash bench/sweep_bench.sh [PACK]   (default: the 500 CIFAR-10 JPEGs make test extracts, packed)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/sweep_bench}
mkdir -p "$OUT"
PACK=${1:-$OUT/cifar500.ssl}
if [ ! -f "$PACK" ]; then
  make -s build/data/.cifar-subset pack train > /dev/null
  ./pack build/data/cifar10/test "$PACK" force=1 > /dev/null
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit $(git rev-parse --short HEAD), $(date -u +%F)"
for P in ${PARALLEL:-1 2 4}; do
  rm -rf "$OUT/g$P"
  s=$(date +%s.%N)
  ./train simclr data="$PACK" val="$PACK" knn_train=500 arch=resnet18 width=0.25 res=32 bs=64 projector=256-64 \
    views=crop_gray epochs=2 log_every=10 lr=0.3,0.6 tau=0.1,0.2 parallel=$P out="$OUT/g$P" > "$OUT/g$P.out" 2>&1
  e=$(date +%s.%N)
  awk -v p=$P -v s="$s" -v e="$e" 'BEGIN { w = e - s; printf "parallel=%d: 4 cells in %.1f s, %.0f cells/hour\n", p, w, 4 * 3600 / w }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
