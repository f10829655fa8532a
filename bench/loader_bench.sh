#!/usr/bin/env bash
# The paper's Table 2 on this machine: source images/s for 2 views, ssl.h's
# loader against a torchvision DataLoader, same images, same cores, one run.
# Imagenette train at 224 and CIFAR-10 train at 32; 1 thread and all cores.
# ssl.h times a second pass (WARM=epoch: an untimed first pass reads every
# record, as ffcv_bench.sh does); torchvision times what follows its first
# 2 batches, the JPEG files already in the page cache from the runs before.
# Every figure is the best of two runs. Needs the venv of scripts/pyenv.sh
# for the torchvision side. Writes bench/out/loader.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
PY=$(scripts/pyenv.sh)
build_loader_bench
[ -f build/bench-imagenette-auto.ssl ] || ./pack $D/imagenette/train build/bench-imagenette-auto.ssl quiet=1 >/dev/null 2>&1
[ -f build/bench-cifar10-train.ssl ] || ./pack $D/cifar10/train build/bench-cifar10-train.ssl quiet=1 >/dev/null 2>&1
ALL=$(nproc)
IM_OURS=${IM_OURS:-3000}; IM_TV=${IM_TV:-600}
ours() { WARM=epoch build/loader_bench "$@"; }
# the torchvision side: TV_PIPELINE=official (transforms with PIL's blur, as
# VICReg and solo-learn run it; the default) or v2 (transforms.v2, 23-tap blur)
TV_PIPELINE=${TV_PIPELINE:-official}
tv() { $PY bench/torchvision_loader.py --pipeline $TV_PIPELINE "$@"; }
rate2() { local a b; a=$(field "$("$@")" images_per_s); b=$(field "$("$@")" images_per_s); best $a $b | awk '{printf "%d", $1}'; }
# a / b against a bound: "yes" or "no"
met() { awk -v a=$1 -v b=$2 -v op=$3 -v x=$4 'BEGIN{r = a / b; print ((op == ">=" ? r >= x : r <= x) ? "yes" : "no")}'; }
declare -A O1 OA T1 TA  # images/s by recipe: ssl.h and torchvision, 1 thread and all
out=bench/out/loader.md
echo "$(run_header) $($PY -c 'import torch, torchvision, PIL; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}")'), torchvision pipeline $TV_PIPELINE" | tee $out
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
        o1=$(rate2 ours $pack $res 1 $r $n)
        oa=$(rate2 ours $pack $res $ALL $r $n)
        O1[$r]=$o1 OA[$r]=$oa
        if [ $r = u8 ]; then
            echo "| u8 (GPU-path output) | $o1 | | | $oa | | |" | tee -a $out
            continue
        fi
        t1=$(rate2 tv --root $root --res $res --workers 0 --images $ntv --recipe $r)
        ta=$(rate2 tv --root $root --res $res --workers $ALL --images $ntv --recipe $r)
        T1[$r]=$t1 TA[$r]=$ta
        echo "| $r | $o1 | $t1 | $(ratio $o1 $t1) | $oa | $ta | $(ratio $oa $ta) |" | tee -a $out
    done
    [ $ds = imagenette ] || continue
    { # the loader issue's targets, per core on 224 JPEGs, from this run's figures
    echo
    echo "| target (imagenette, 224) | 1 thread | $ALL threads | met? |"
    echo "|---|---|---|---|"
    # met on the 1-thread figures (the targets are per core); ratios to 2 places, as 1.46x is not 1.5x
    echo "| full recipe >= 5x torchvision | $(ratio ${O1[jitter]} ${T1[jitter]} 2) | $(ratio ${OA[jitter]} ${TA[jitter]} 2) | $(met ${O1[jitter]} ${T1[jitter]} '>=' 5) |"
    echo "| full recipe >= 300 images/s (1 thread) | ${O1[jitter]} | ${OA[jitter]} | $(met ${O1[jitter]} 1 '>=' 300) |"
    echo "| crops within 1.5x of decode-only | $(ratio ${O1[decode]} ${O1[crops]} 2) | $(ratio ${OA[decode]} ${OA[crops]} 2) | $(met ${O1[decode]} ${O1[crops]} '<=' 1.5) |"
    echo "| uint8 output within 1.3x of decode-only | $(ratio ${O1[decode]} ${O1[u8]} 2) | $(ratio ${OA[decode]} ${OA[u8]} 2) | $(met ${O1[decode]} ${O1[u8]} '<=' 1.3) |"
    } | tee -a $out
done
