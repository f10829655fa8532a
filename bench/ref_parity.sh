#!/bin/sh
# ./train against bench/ref_train.py on the same weights and the same views:
# each method's initial weights from ./train (epochs=0), views with no random
# op (the whole image resized, order sequential), then STEPS steps of both;
# prints the logged losses side by side with their relative difference.
#   bench/ref_parity.sh PACK [RES] [STEPS]   (TRAIN=./train PY=python3 OUT=/tmp/ref_parity
#                                             EXTRA="warmup=0 epochs=1 optimizer=sgd" more options)
# At RES = the pack's own size no resampling happens and the two agree to
# 6-7 digits; below it, ./train's uint8 fixed-point crops differ (~1e-3).
set -e
PACK=${1:?usage: bench/ref_parity.sh PACK [RES] [STEPS]}
RES=${2:-28}
STEPS=${3:-5}
TRAIN=${TRAIN:-./train}
PY=${PY:-python3}
OUT=${OUT:-/tmp/ref_parity}
HERE=$(dirname "$0")
O="data=$PACK width=0.125 res=$RES bs=64 projector=32-16 views=noise noise_p=0 order=sequential threads=1 log_every=1 seed=0 $EXTRA"
mkdir -p "$OUT"
for m in simclr vicreg barlow byol; do
    "$TRAIN" $m $O loader_threads=1 device=cpu epochs=0 out="$OUT/init_$m" >/dev/null
    "$TRAIN" $m $O loader_threads=1 device=cpu max_steps="$STEPS" out="$OUT/c_$m" >/dev/null
    "$PY" "$HERE/ref_train.py" $m $O max_steps="$STEPS" init="$OUT/init_$m/ckpt.sslt" out="$OUT/py_$m" >/dev/null
    "$PY" - "$OUT/c_$m/log.jsonl" "$OUT/py_$m/log.jsonl" $m <<'PYEOF'
import json, sys
def losses(p):
    return [(r["loss"], r["probe_acc"]) for r in map(json.loads, open(p)) if "loss" in r]
c, p = losses(sys.argv[1]), losses(sys.argv[2])
for i, ((a, pa), (b, pb)) in enumerate(zip(c, p)):
    print(f"{sys.argv[3]:7s} step {i + 1}: ./train {a:.6f}  ref {b:.6f}  rel {abs(a - b) / abs(a):.1e}"
          f"  probe {pa:.4f} {pb:.4f}")
PYEOF
done
