#!/usr/bin/env bash
# lightly's Imagenette benchmark with ./train: ResNet-18 (ImageNet stem),
# batch 256, 128-pixel views, 200 epochs, then a kNN probe (k=200, T=0.1)
# of the whole training set against the validation set, as lightly's
# benchmarks/imagenette_benchmark.py evaluates. Writes OUT/imagenette.md:
# each method's kNN top-1 and wall-clock minutes beside lightly's figures.
#
#   bash bench/imagenette_bench.sh                 all four methods, 200 epochs (a GPU)
#   METHODS="simclr" bash bench/imagenette_bench.sh        one method
#   EPOCHS=800 bash bench/imagenette_bench.sh              lightly's long table
#   TOY=1 bash bench/imagenette_bench.sh           a rehearsal on the CPU (make test runs
#                                                  it): 480 images at 32 px, width 1/16,
#                                                  one epoch; the figures mean nothing, the
#                                                  run checks every phase and the table
#
# Data: SHARED/imagenette-{train,val}.tar.gz (../shared/data), extracted and
# packed once into OUT/ at 160 px (lightly trains on the 160-pixel
# Imagenette, random crops resized to 128; it evaluates on Resize(128) +
# CenterCrop(128), which for these square images is the whole image resized,
# as ./probe evaluates). Packs already in OUT (train.ssl, val.ssl) are used
# as they are. EXTRA="..." appends ./train options to every method.
#
# The recipes are ./train's: LARS, warmup 10 epochs, cosine, each method's
# usual heads and views (below). lightly's script trains SGD at lr 0.06 x
# bs/256 with its own heads; its table is copied here as published (A6000,
# results dated 2023-05-04 in the script's header).
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=${METHODS:-simclr byol vicreg barlow}
EPOCHS=${EPOCHS:-200}
TOY=${TOY:-0}
OUT=${OUT:-build/imagenette}
SHARED=${SHARED:-../shared/data}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"

# lightly's 200- and 800-epoch kNN top-1 and minutes (A6000, batch 256)
lightly() { # METHOD EPOCHS -> "acc minutes"
    case "$1:$2" in
        simclr:200) echo "83.5 49.7" ;; byol:200) echo "70.5 54.4" ;;
        vicreg:200) echo "76.3 53.2" ;; barlow:200) echo "65.1 85.0" ;;
        simclr:800) echo "88.9 193.5" ;; byol:800) echo "88.7 214.8" ;;
        vicreg:800) echo "84.5 205.6" ;; barlow:800) echo "85.2 298.5" ;;
        *) echo "n/a n/a" ;;
    esac
}

recipe() { # METHOD -> ./train options
    case "$1" in
        simclr) echo "lr=1.0 tau=0.15 projector=2048-2048-128 views=simclr" ;;
        byol) echo "lr=1.0 ema=0.99 projector=4096-256 predictor=4096-256 views=byol" ;;
        vicreg) echo "lr=0.3 projector=2048-2048-2048 views=byol" ;;
        barlow) echo "lr=0.2 projector=2048-2048-2048 views=byol" ;;
        *) echo "imagenette_bench: unknown method '$1' (simclr, byol, vicreg, barlow)" >&2; return 1 ;;
    esac
}

if [ "$TOY" = 1 ]; then
    SIZE="arch=resnet18 stem=imagenet width=0.0625 bs=32 res=32 epochs=1 warmup=0.5 device=cpu"
    PACKRES=40 PROBERES=32 EPOCHS=1
    # heads shrunk with the network: the toy checks phases, not accuracy
    small() { sed -e 's/2048-2048-2048/64-64-64/; s/2048-2048-128/64-64-16/; s/4096-256/64-16/g'; }
else
    SIZE="arch=resnet18 stem=imagenet bs=256 res=128 epochs=$EPOCHS warmup=10"
    PACKRES=160 PROBERES=128
    small() { cat; }
fi

pack_split() { # SPLIT
    local s=$1 tgz="$SHARED/imagenette-$1.tar.gz"
    [ -f "$OUT/$s.ssl" ] && return 0
    [ -f "$tgz" ] || { echo "imagenette_bench: missing $tgz (or put $OUT/$s.ssl there)" >&2; exit 1; }
    rm -rf "$OUT/src"
    mkdir -p "$OUT/src"
    if [ "$TOY" = 1 ]; then # a few per class (this copy's train names end in 3-9, val's in 0-2)
        local pat=9 keep=48
        [ "$s" = val ] && pat=0 keep=24
        tar xzf "$tgz" -C "$OUT/src" --wildcards "imagenette/$s/*/*$pat.JPEG"
        for d in "$OUT/src/imagenette/$s"/*/; do ls "$d" | tail -n +$((keep + 1)) | sed "s|^|$d|" | xargs -r rm -f; done
    else
        tar xzf "$tgz" -C "$OUT/src"
    fi
    ./pack "$OUT/src/imagenette/$s" "$OUT/$s.ssl" max_res=$PACKRES mode=jpeg quality=90 quiet=1 force=1
    rm -rf "$OUT/src"
}
pack_split train
pack_split val
ls -l "$OUT/train.ssl" "$OUT/val.ssl"

TABLE=$OUT/imagenette.md
{
    echo "| method | epochs | ssl.h kNN top-1 | ssl.h minutes | lightly kNN top-1 | lightly minutes (A6000) | recipe |"
    echo "|---|---|---|---|---|---|---|"
} > "$TABLE"
for m in $METHODS; do
    R=$(recipe "$m" | small)
    run="$OUT/run_$m"
    rm -rf "$run"
    echo "== $m: ./train $m data=$OUT/train.ssl $SIZE $R $EXTRA"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    ./train "$m" data="$OUT/train.ssl" $SIZE $R $EXTRA log_every=20 out="$run"
    t1=$(date +%s)
    ./probe ckpt="$run" train="$OUT/train.ssl" eval="$OUT/val.ssl" modes=knn k=200 temperature=0.1 \
        res=$PROBERES out="$run/probe"
    acc=$(grep -o '"mode": "knn k=200", "top1": [0-9.]*' "$run/probe/probe.json" | grep -o '[0-9.]*$')
    [ -n "$acc" ] || { echo "imagenette_bench: no kNN top-1 in $run/probe/probe.json" >&2; exit 1; }
    read -r lacc lmin <<< "$(lightly "$m" "$EPOCHS")"
    awk -v m="$m" -v e="$EPOCHS" -v a="$acc" -v s=$((t1 - t0)) -v la="$lacc" -v lm="$lmin" -v r="$R" \
        'BEGIN { printf "| %s | %s | %.1f%% | %.1f | %s%s | %s | %s |\n", m, e, 100 * a, s / 60, la, la == "n/a" ? "" : "%", lm, r }' \
        >> "$TABLE"
done
echo
echo "== $TABLE ($(uname -n), $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'))"
cat "$TABLE"
if [ "$TOY" = 1 ]; then # the rehearsal's checks, in make test's closing-line form
    n=0
    for m in $METHODS; do grep -Eq "^\| $m \| 1 \| [0-9.]+% \|" "$TABLE" && n=$((n + 1)); done
    nm=$(echo $METHODS | wc -w)
    echo "imagenette: $n passed, $((nm - n)) failed"
    [ "$n" = "$nm" ]
fi
