#!/usr/bin/env bash
# The paper's claims at a CPU-sized scale: five grids on 5,000 CIFAR-10
# training images (500 a class), judged on 2,000 test images (200 a class):
# ResNet-18 at width 1/8, CIFAR stem, 32 px, 4 epochs, AdamW, projector
# 256-128, one compute thread a cell and two cells at once. About 70
# minutes on 2 cores. Writes OUT/<grid>/sweep.{md,jsonl,png} and prints
# each grid's table.
#   bash bench/paper_small.sh            (OUT=build/paper_small, GRIDS="tau_bs views instance lr_bs projector")
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/paper_small}
GRIDS=${GRIDS:-tau_bs views instance lr_bs projector}
SHARED=${SHARED:-../shared}
mkdir -p "$OUT"
make -s pack train > /dev/null
if [ ! -f "$OUT/c10-5k.ssl" ] || [ ! -f "$OUT/c10-2k.ssl" ]; then
    [ -d "$OUT/cifar10" ] || tar -xzf "$SHARED/data/cifar10-jpg.tar.gz" -C "$OUT"
    # the first N images of each class, in name order, as a list file
    list() {
        local split=$1 n=$2 label=0
        for c in $(ls "$OUT/cifar10/$split"); do
            ls "$OUT/cifar10/$split/$c" | sort | sed -n "1,${n}p" | sed "s|^|$OUT/cifar10/$split/$c/|; s|\$|\t$label|"
            label=$((label + 1))
        done
    }
    list train 500 > "$OUT/c10-5k.list"
    list test 200 > "$OUT/c10-2k.list"
    ./pack "$OUT/c10-5k.list" "$OUT/c10-5k.ssl" force=1 quiet=1
    ./pack "$OUT/c10-2k.list" "$OUT/c10-2k.ssl" force=1 quiet=1
fi
C="data=$OUT/c10-5k.ssl val=$OUT/c10-2k.ssl arch=resnet18 stem=cifar width=0.125 res=32 epochs=4 warmup=0.5
   optimizer=adamw lr_scale=0 wd=1e-4 projector=256-128 log_every=10 knn_train=5000 threads=1 loader_threads=1 parallel=2"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; commit $(git rev-parse --short HEAD), $(date -u +%F)"
grid() {
    local name=$1; shift
    local s; s=$(date +%s)
    # shellcheck disable=SC2086
    ./train simclr $C "$@" out="$OUT/$name" > "$OUT/$name.out" 2>&1 || { echo "paper_small: $name failed: see $OUT/$name.out" >&2; exit 1; }
    echo "== $name: $(( $(date +%s) - s )) s"
    sed -n '/^| /p' "$OUT/$name/sweep.md"
}
for g in $GRIDS; do
    case $g in
        tau_bs) grid tau_bs views=simclr lr=2e-3 bs=32,64,128,256 tau=0.1,0.2,0.5 ;;
        views) grid views bs=128 lr=2e-3 tau=0.2 views=simclr,crop_gray,crop_flip seed=0,1,2 ;;
        instance) # Instance-SimCLR, with two controls: the noise views with the batch's negatives, and the untrained network
            grid instance bs=128 lr=2e-3 negatives=patch tau=0.1,0.2,0.5 patch_scale=0.05,0.1,0.25
            grid noise_batch bs=128 lr=2e-3 views=noise tau=0.1,0.2
            grid random_init bs=128 lr=2e-3 views=simclr epochs=0 seed=0,1 ;;
        lr_bs) grid lr_bs views=simclr tau=0.2 bs=32,128,256 lr=1e-3,2e-3,4e-3,8e-3 ;;
        projector) grid projector views=simclr bs=128 lr=2e-3 tau=0.2 projector=128,256-128,256-256-128,256-256-256-128 seed=0,1 ;;
        *) echo "paper_small: unknown grid '$g'" >&2; exit 2 ;;
    esac
done
