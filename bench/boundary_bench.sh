#!/usr/bin/env bash
# Does the step wait for data at epoch boundaries? bench/boundary_bench.c on
# the Imagenette val pack (3,925 images: 15 batches of 256 an epoch, as in
# bench/gpu_e2e.sh), a consumer standing in for the GPU step (it sleeps for
# the step's time: 105 ms at 224 and 59 ms at 160, the measured H200 step in
# bench/RESULTS.md), with the next epoch queued or not. Writes bench/out/boundary.md.
#   Env: THREADS (default: all cores), EPOCHS=4, STEPS="224:105 160:59"
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
D=build/bench-data
mkdir -p $D bench/out
make -s pack >/dev/null
[ -d $D/imagenette/val ] || tar xzf $SHARED/data/imagenette-val.tar.gz -C $D
PACK=build/bench-imagenette-val.ssl
[ -f $PACK ] || ./pack $D/imagenette/val $PACK quiet=1 >/dev/null
cc -O3 -march=native -pthread -DSSL_TURBOJPEG -DSSL_LIBJPEG -o build/boundary_bench bench/boundary_bench.c -lm -lturbojpeg -ljpeg
THREADS=${THREADS:-$(nproc)}
EPOCHS=${EPOCHS:-4}
out=bench/out/boundary.md
{
echo "| res | step (ms) | loader threads | next epoch queued | images/s | waits for data | of which at epoch starts |"
echo "|---|---|---|---|---|---|---|"
} | tee $out
for rs in ${STEPS:-224:105 160:59}; do
    res=${rs%%:*} ms=${rs##*:}
    for q in 0 1; do
        j=$(build/boundary_bench $PACK $res $THREADS 256 $ms $EPOCHS $q)
        python3 - "$j" <<'PY' | tee -a $out
import json, sys
x = json.loads(sys.argv[1])
print(f"| {x['res']} | {x['step_ms']:.0f} | {x['threads']} | {'yes' if x['queue'] else 'no'} | {x['images_per_s']:.0f} | "
      f"{100 * x['wait_share']:.2f}% | {100 * x['wait_share_at_epoch_start']:.2f}% |")
PY
    done
done
