#!/usr/bin/env bash
# The paper's Table 2 on this machine: source images/s for 2 views, ssl.h's
# loader against a torchvision DataLoader, same images, same cores, one run.
# Imagenette train at 224 and CIFAR-10 train at 32; 1 thread and all cores.
# Needs the venv of scripts/pyenv.sh for the torchvision side.
# Writes bench/out/loader.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
PY=$(scripts/pyenv.sh)
cc -O3 -march=native -pthread -DSSL_TURBOJPEG -DSSL_LIBJPEG -o build/loader_bench bench/loader_bench.c -lm -lturbojpeg -ljpeg
[ -f build/bench-imagenette-auto.ssl ] || ./pack $D/imagenette/train build/bench-imagenette-auto.ssl quiet=1 >/dev/null 2>&1
[ -f build/bench-cifar10-train.ssl ] || ./pack $D/cifar10/train build/bench-cifar10-train.ssl quiet=1 >/dev/null 2>&1
ALL=$(nproc)
IM_OURS=${IM_OURS:-3000}; IM_TV=${IM_TV:-600}
rate() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['images_per_s']))" "$1"; }
out=bench/out/loader.md
: > $out
for ds in imagenette cifar10; do
    if [ $ds = imagenette ]; then pack=build/bench-imagenette-auto.ssl; root=$D/imagenette/train; res=224; n=$IM_OURS; ntv=$IM_TV
    else pack=build/bench-cifar10-train.ssl; root=$D/cifar10/train; res=32; n=$((IM_OURS * 5)); ntv=$((IM_TV * 5)); fi
    {
    echo
    echo "**$ds, 2 views at $res** (images/s; ratio = ssl.h / torchvision)"
    echo
    echo "| recipe | ssl.h 1 thread | torchvision 1 worker | ratio | ssl.h $ALL threads | torchvision $ALL workers | ratio |"
    echo "|---|---|---|---|---|---|---|"
    } | tee -a $out
    for r in decode crops blur gray sol jitter u8; do
        o1=$(rate "$(build/loader_bench $pack $res 1 $r $n)")
        oa=$(rate "$(build/loader_bench $pack $res $ALL $r $n)")
        if [ $r = u8 ]; then
            echo "| u8 (GPU-path output) | $o1 | | | $oa | | |" | tee -a $out
            continue
        fi
        t1=$(rate "$($PY bench/torchvision_loader.py --root $root --res $res --workers 0 --images $ntv --recipe $r)")
        ta=$(rate "$($PY bench/torchvision_loader.py --root $root --res $res --workers $ALL --images $ntv --recipe $r)")
        echo "| $r | $o1 | $t1 | $(awk -v a=$o1 -v b=$t1 'BEGIN{printf "%.1fx", a/b}') | $oa | $ta | $(awk -v a=$oa -v b=$ta 'BEGIN{printf "%.1fx", a/b}') |" | tee -a $out
    done
done
