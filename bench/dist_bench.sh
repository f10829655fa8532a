#!/usr/bin/env bash
# The CPU step on 1 and 2 ranks, per method: ./train on a pack of the
# test subset's 500 CIFAR-10 JPEGs, ResNet-18 (CIFAR stem) at width 0.25,
# 32x32 views, global batch 64, projector 256-128. Per configuration the
# median step time over steps 2..STEPS (the first plans the buffers), the
# share of it rank 0 spent in collectives (waiting for the other rank
# included) and the bytes it sent into them a step.
#   1 rank,  threads=1 : the baseline per core
#   1 rank,  threads=2 : both cores to one process
#   2 ranks, threads=1 : both cores, one rank each (mpirun)
# usage: bash bench/dist_bench.sh [STEPS]   (make train pack first)
set -euo pipefail
STEPS=${1:-7}
B=build/dist-bench
mkdir -p $B
[ -f $B/c500.ssl ] || ./pack build/data/cifar10/test $B/c500.ssl force=1 quiet=1 > /dev/null
MPIRUN="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
printf '| method | 1 rank x 1 thread | 1 rank x 2 threads | 2 ranks x 1 thread | 2 ranks: in collectives | 2 ranks: MB sent a step (rank 0) |\n|---|---|---|---|---|---|\n'
for m in simclr vicreg barlow byol; do
    extra=""; [ $m = byol ] && extra="predictor=256-128"
    row="| $m"
    for cfg in "1 1" "1 2" "2 1"; do
        set -- $cfg
        np=$1 th=$2 out=$B/$m-$np-$th
        rm -rf $out
        launch=""; [ $np -gt 1 ] && launch="$MPIRUN -np $np"
        $launch ./train $m data=$B/c500.ssl bs=64 width=0.25 res=32 projector=256-128 $extra epochs=1 warmup=0 \
            max_steps=$STEPS log_every=1 threads=$th loader_threads=1 device=cpu out=$out > $out.txt 2>&1
        # per step: seconds = 64 / img_per_s, t_comm, comm_mb; the median of steps 2..
        stats=$(grep '"step"' $out/log.jsonl | tail -n +2 | sed 's/.*"img_per_s": \([0-9.]*\).*"t_comm": \([0-9.]*\), "comm_mb": \([0-9.]*\).*/\1 \2 \3/')
        med() { sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] }'; }
        stats="$(echo "$stats" | awk '{ print 64 / $1 }' | med) $(echo "$stats" | awk '{ print $2 }' | med) $(echo "$stats" | awk '{ print $3 }' | med)"
        set -- $stats
        row="$row | $1 s"
        [ $np -gt 1 ] && row="$row | $2 s ($(awk -v a=$2 -v b=$1 'BEGIN { printf "%.0f%%", 100 * a / b }')) | $3"
    done
    echo "$row |"
done
