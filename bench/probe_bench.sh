#!/usr/bin/env bash
# probe_bench.sh - ./probe on Fashion-MNIST (train pack -> test pack), CPU:
#   1. feature-extraction images/s with 1 and with THREADS workers (random init,
#      no cache, EXTRACT_N test images);
#   2. probe wall times and accuracies (linear, MLP, kNN) of a random-init
#      backbone and of a short-trained one (TRAIN_STEPS SimCLR steps), every
#      stage timed: extraction, each probe, the whole command;
# and prints the figures as markdown tables (machine, date, commit, load).
#
#   bench/probe_bench.sh                       (defaults below, ~10 min on 2 cores)
#   WIDTH=1 RES=32 LIMIT=10000 bench/probe_bench.sh
#
# Knobs (environment): WIDTH (0.25) RES (28) THREADS (all cores) EXTRACT_N (2000)
# LIMIT (0 = the whole 60000/10000 packs) TRAIN_STEPS (100, 0 = skip the
# trained backbone) LINEAR_EPOCHS (100) MLP_EPOCHS (10) MLP_HIDDEN (2048-2048)
# OUT (build/bench-probe). Needs ./pack ./train ./probe (make pack train probe).
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=${WIDTH:-0.25} RES=${RES:-28} THREADS=${THREADS:-$(nproc)} EXTRACT_N=${EXTRACT_N:-2000}
LIMIT=${LIMIT:-0} TRAIN_STEPS=${TRAIN_STEPS:-100} LINEAR_EPOCHS=${LINEAR_EPOCHS:-100} MLP_EPOCHS=${MLP_EPOCHS:-10}
MLP_HIDDEN=${MLP_HIDDEN:-2048-2048} OUT=${OUT:-build/bench-probe}
FM=${SSL_FMNIST:-/usr/share/datasets/fashion-mnist}
for p in pack train probe; do [ -x ./$p ] || { echo "probe_bench: ./$p missing (make pack train probe)" >&2; exit 1; }; done
mkdir -p "$OUT"
[ -f "$OUT/fmnist-train.ssl" ] || ./pack "$FM/train-images-idx3-ubyte.gz" "$OUT/fmnist-train.ssl" force=1 >/dev/null
[ -f "$OUT/fmnist-test.ssl" ] || ./pack "$FM/t10k-images-idx3-ubyte.gz" "$OUT/fmnist-test.ssl" force=1 >/dev/null
json() { # FILE KEY-REGEX: the first number after it
    grep -o "$2[^,}]*" "$1" | head -1 | sed 's/.*: *//'
}
now() { date +%s.%N; }

# ---- 1. extraction throughput ----------------------------------------------
declare -A IPS
for t in 1 "$THREADS"; do
    ./probe init=random width="$WIDTH" res="$RES" train="$OUT/fmnist-test.ssl" eval="$OUT/fmnist-test.ssl" \
        limit="$EXTRACT_N" modes=knn k=20 cache=0 threads="$t" out="$OUT/extract-$t" >"$OUT/extract-$t.log" 2>&1
    IPS[$t]=$(json "$OUT/extract-$t/probe.json" '"images_per_s": ')
done

# ---- 2. probes: random init, and a short-trained backbone --------------------
probe_run() { # NAME BACKBONE-ARGS
    local name=$1; shift
    local t0; t0=$(now)
    ./probe "$@" res="$RES" train="$OUT/fmnist-train.ssl" eval="$OUT/fmnist-test.ssl" limit="$LIMIT" \
        modes=linear,mlp,knn k=20,200 linear_epochs="$LINEAR_EPOCHS" mlp_epochs="$MLP_EPOCHS" mlp_hidden="$MLP_HIDDEN" \
        cache=0 threads="$THREADS" out="$OUT/$name" >"$OUT/$name.log" 2>&1
    echo "$(now) - $t0" | bc >"$OUT/$name.wall"
}
probe_run random init=random width="$WIDTH"
TRAINED=""
if [ "$TRAIN_STEPS" -gt 0 ]; then
    t0=$(now)
    ./train simclr data="$OUT/fmnist-train.ssl" width="$WIDTH" res="$RES" bs=128 epochs=1 max_steps="$TRAIN_STEPS" \
        views=crop_gray projector=512-128 warmup=0.1 out="$OUT/run" threads="$THREADS" >"$OUT/train.log" 2>&1
    TRAIN_S=$(echo "$(now) - $t0" | bc)
    probe_run trained ckpt="$OUT/run"
    TRAINED=trained
fi

# ---- tables -------------------------------------------------------------------
echo
echo "## ./probe on Fashion-MNIST (CPU)"
echo
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "ResNet-18, CIFAR stem, width $WIDTH ($(json "$OUT/random/probe.json" '"feature_dim": ') features), res $RES."
echo
echo "| feature extraction ($EXTRACT_N images, random init) | images/s |"
echo "|---|---:|"
echo "| 1 worker | ${IPS[1]} |"
[ "$THREADS" != 1 ] && echo "| $THREADS workers | ${IPS[$THREADS]} |"
echo
echo "| backbone | stage | top-1 | top-5 | best epoch | seconds |"
echo "|---|---|---:|---:|---:|---:|"
for name in random $TRAINED; do
    label=$name; [ "$name" = trained ] && label="SimCLR $TRAIN_STEPS steps (train ${TRAIN_S%.*}s)"
    for split in train eval; do
        echo "| $label | extract $split ($(grep -o "\"split\": \"$split\"[^}]*" "$OUT/$name/probe.json" | grep -o '"images": [0-9]*' | cut -d' ' -f2) images, $(grep -o "\"split\": \"$split\"[^}]*" "$OUT/$name/probe.json" | grep -o '"images_per_s": [0-9.]*' | cut -d' ' -f2)/s) | | | | $(grep -o "\"split\": \"$split\"[^}]*" "$OUT/$name/probe.json" | grep -o '"seconds": [0-9.]*' | cut -d' ' -f2) |"
    done
    grep '^| fmnist |' "$OUT/$name.log" | sed "s/^| fmnist |/| $label |/"
    echo "| $label | whole command | | | | $(printf %.1f "$(cat "$OUT/$name.wall")") |"
done
echo
echo "linear: $LINEAR_EPOCHS epochs AdamW lr 0.01 cosine, no held-out split (last epoch reported);"
echo "MLP $MLP_HIDDEN: at most $MLP_EPOCHS epochs, early stopping on 10% of the train pack (patience 5); kNN: cosine, T=0.07."
