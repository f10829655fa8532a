#!/usr/bin/env bash
# Packing and reading throughput (issue: the pack file). Extracts CIFAR-10 (60,000
# JPEGs) and Imagenette train (9,469 JPEGs) from ../shared/data into
# build/bench-data, packs each with 1 thread and all cores in auto and jpeg
# modes, then reads raw packs back in random order. Writes a markdown table
# to bench/out/pack.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
cc -O3 -march=native -pthread -DSSL_TURBOJPEG -o build/read_bench bench/read_bench.c -lm -lturbojpeg
# CIFAR-10 train and test together: one list file of all 60,000
if [ ! -f $D/cifar10-all.txt ]; then
    (cd $D && for s in train test; do for c in $(ls cifar10/$s); do
        for f in cifar10/$s/$c/*.jpg; do printf '%s\t%s\n' "$f" "$c"; done; done; done) > $D/cifar10-all.txt
fi
ALL=$(nproc)
out=bench/out/pack.md
{
echo "| dataset | images | mode | threads | images/s | seconds | file size |"
echo "|---|---|---|---|---|---|---|"
for ds in cifar10 imagenette; do
    if [ $ds = cifar10 ]; then src=$D/cifar10-all.txt; else src=$D/imagenette/train; fi
    for mode in auto jpeg; do
        for t in 1 $ALL; do
            o=build/bench-$ds-$mode.ssl
            # warm the page cache of the sources once
            [ -f build/.warm-$ds ] || { cat $(find ${src%/*} -name '*.jpg' -o -name '*.JPEG' | head -100000) > /dev/null 2>&1 || true; touch build/.warm-$ds; }
            # best of two runs (the first also warms file-system metadata)
            l1=$(./pack $src $o mode=$mode threads=$t force=1 quiet=1 2>/dev/null | head -1)
            l2=$(./pack $src $o mode=$mode threads=$t force=1 quiet=1 2>/dev/null | head -1)
            s1=$(echo "$l1" | sed -E 's/.* in ([0-9.]+)s .*/\1/'); s2=$(echo "$l2" | sed -E 's/.* in ([0-9.]+)s .*/\1/')
            line=$(awk -v a=$s1 -v b=$s2 'BEGIN{exit !(a<=b)}' && echo "$l1" || echo "$l2")
            n=$(echo "$line" | sed -E 's/packed ([0-9]+) samples.*/\1/')
            secs=$(echo "$line" | sed -E 's/.* in ([0-9.]+)s .*/\1/')
            rate=$(echo "$line" | sed -E 's/.*\(([0-9]+) images\/s\).*/\1/')
            size=$(stat -c %s $o)
            echo "| $ds | $n | $mode | $t | $rate | $secs | $(awk -v s=$size 'BEGIN{printf "%.1f MB", s/1e6}') |"
        done
    done
done
} | tee $out
# raw packs for reading
./pack $D/cifar10-all.txt build/bench-cifar10-raw.ssl mode=raw force=1 quiet=1 >/dev/null 2>&1
./pack $D/imagenette/train build/bench-imagenette-raw.ssl mode=raw force=1 quiet=1 >/dev/null 2>&1
{
echo
echo "| raw pack | records | threads | records/s | GB/s |"
echo "|---|---|---|---|---|"
for ds in cifar10 imagenette; do
    for t in 1 $ALL; do
        j=$(build/read_bench build/bench-$ds-raw.ssl $t 3)
        python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"| $ds ({d['bytes']/1e6:.0f} MB) | {d['records']} | {d['threads']} | {d['records_per_s']:.0f} | {d['GB_per_s']:.2f} |\")" "$j"
    done
done
} | tee -a $out
