#!/usr/bin/env bash
# ssl.h against FFCV-SSL, the library it reimplements: packing and the
# loader, on the same images and cores, in one run.
#   Imagenette train at 224: both store every image as JPEG at quality 90
#     (./pack mode=jpeg; FFCV's RGBImageField write_mode=jpg);
#   CIFAR-10 train at 32: both store raw pixels (mode=raw; FFCV's default,
#     which its CIFAR example uses).
# Loader recipes (bench/loader_bench.c and bench/ffcv_loader.py say what
# each does): decode, crops, noblur (the SimCLR recipe less the blur, which
# FFCV-SSL's own train_ssl.py runs on the GPU), u8 (crops left as uint8),
# with 1 thread and all cores. Both sides time a second pass: a first,
# untimed one reads every record (FFCV compiles its pipelines there; both
# map the pack's pages), so neither pays a one-time cost in its figure.
# Needs scripts/ffcv_env.sh's venv (FFCV-SSL built from source: see there).
# Every figure is the best of two runs. Writes bench/out/ffcv.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
PY=$(scripts/ffcv_env.sh | tail -1)
build_loader_bench
ALL=$(nproc)
IM=${IM:-3000}
out=bench/out/ffcv.md
{
echo "$(run_header)" \
     "$($PY -c 'import ffcv, numba, numpy, torch; print(f"FFCV-SSL {ffcv.__version__}, numba {numba.__version__}, numpy {numpy.__version__}, torch {torch.__version__}")' 2>/dev/null)"
echo
echo "**Packing** ($ALL threads / workers; images/s of the writer, the process's start-up left out on both sides; best of two runs)"
echo
echo "| dataset | images | stored as | ssl.h ./pack | FFCV-SSL DatasetWriter | ratio | ssl.h file | FFCV file |"
echo "|---|---|---|---|---|---|---|---|"
} | tee $out
for ds in imagenette cifar10; do
    if [ $ds = imagenette ]; then root=$D/imagenette/train; mode=jpeg; fmode=jpg; else root=$D/cifar10/train; mode=raw; fmode=raw; fi
    pack=build/bench-$ds-$mode.ssl; beton=build/bench-$ds-$fmode.beton
    ours=0; theirs=0
    for k in 1 2; do
        line=$(./pack $root $pack mode=$mode threads=$ALL force=1 quiet=1 2>/dev/null | head -1)
        n=$(echo "$line" | sed -E 's/packed ([0-9]+) samples.*/\1/')
        ours=$(best $ours $(echo "$line" | sed -E 's/.*\(([0-9]+) images\/s\).*/\1/'))
        rm -f $beton
        j=$($PY bench/ffcv_loader.py write --root $root --beton $beton --mode $fmode --workers $ALL 2>/dev/null | tail -1)
        theirs=$(best $theirs $(field "$j" images_per_s))
    done
    echo "| $ds | $n | $( [ $mode = jpeg ] && echo 'JPEG q90' || echo raw) | $ours | $theirs | $(ratio $ours $theirs) | $(awk -v s=$(stat -c %s $pack) 'BEGIN{printf "%.1f MB", s/1e6}') | $(awk -v s=$(stat -c %s $beton) 'BEGIN{printf "%.1f MB", s/1e6}') |" | tee -a $out
done
for ds in imagenette cifar10; do
    if [ $ds = imagenette ]; then pack=build/bench-imagenette-jpeg.ssl; beton=build/bench-imagenette-jpg.beton; res=224; n=$IM
    else pack=build/bench-cifar10-raw.ssl; beton=build/bench-cifar10-raw.beton; res=32; n=$((IM * 5)); fi
    {
    echo
    echo "**$ds, 2 views at $res** (source images/s; ratio = ssl.h / FFCV-SSL)"
    echo
    echo "| recipe | ssl.h 1 thread | FFCV-SSL 1 worker | ratio | ssl.h $ALL threads | FFCV-SSL $ALL workers | ratio |"
    echo "|---|---|---|---|---|---|---|"
    } | tee -a $out
    for r in decode crops noblur u8; do
        row="| $r"
        for t in 1 $ALL; do
            o=0; f=0
            for k in 1 2; do
                o=$(best $o $(field "$(WARM=epoch build/loader_bench $pack $res $t $r $n)" images_per_s))
                f=$(best $f $(field "$($PY bench/ffcv_loader.py load --beton $beton --res $res --workers $t --recipe $r --images $n 2>/dev/null | tail -1)" images_per_s))
            done
            row="$row | ${o%.*} | ${f%.*} | $(ratio $o $f)"
        done
        echo "$row |" | tee -a $out
    done
done
