#!/bin/bash
# Trajectory parity: ./train against bench/ref_train.py over a whole short
# run, on the same initial weights and the SAME augmented batches (./train's
# loader output, dumped with dump_views=), fp32 on the CPU.
#   bench/ref_trajectory.sh PACK [STEPS]    (TRAIN=./train PY=python3 OUT=/tmp/ref_trajectory
#                                             RUNS="simclr vicreg barlow byol simclr_adamw"
#                                             F64=1: also ref_train in float64, the rounding yardstick
#                                             VIEWS=simclr RES=28 EXTRA="more options")
# bs = the pack's size / STEPS, epochs=1, warmup=0.2: the linear warmup and
# the cosine decay both happen inside the STEPS steps. Each run:
#   ./train epochs=0             the initial weights (seed 0)
#   ./train max_steps=K, resumed at K = 1, 10, 50, STEPS (a stop and resume
#                                is bit-exact), its state copied at each K
#                                and each segment's views dumped
#   ref_train.py init=... views_from=(the dumps) save_at=1,10,50
# then prints, per run, the loss per step compared, the states at each K
# compared (bench/ckpt_diff.py) and writes OUT/RUN/summary.json; at the end
# the tables of bench/RESULTS.md (bench/traj_table.py). About 25 min with
# F64=1 on 2 busy cores for a pack of 3,200 28x28 images (bs 32).
# simclr_adamw is simclr with optimizer=adamw lr=0.002 lr_scale=0 wd=0.05.
set -e
PACK=${1:?usage: bench/ref_trajectory.sh PACK [STEPS]}
STEPS=${2:-100}
TRAIN=${TRAIN:-./train}
PY=${PY:-python3}
OUT=${OUT:-/tmp/ref_trajectory}
RUNS=${RUNS:-simclr vicreg barlow byol simclr_adamw}
HERE=$(dirname "$0")
N=$("$(dirname "$TRAIN")/pack" info "$PACK" | awk '$1 == "samples" {print $2}')
BS=$((N / STEPS))
[ "$BS" -ge 2 ] || { echo "ref_trajectory: $PACK has $N images, too few for $STEPS steps" >&2; exit 1; }
O="data=$PACK width=0.125 res=${RES:-28} bs=$BS projector=32-16 views=${VIEWS:-simclr} epochs=1 warmup=0.2 threads=1 log_every=1 seed=0 $EXTRA"
KS="1 10 50 $STEPS"
for run in $RUNS; do
    m=${run%_adamw}
    X=""
    [ "$run" != "$m" ] && X="optimizer=adamw lr=0.002 lr_scale=0 wd=0.05"
    D="$OUT/$run"
    rm -rf "$D" && mkdir -p "$D"
    "$TRAIN" $m $O $X loader_threads=1 device=cpu epochs=0 out="$D/init" >/dev/null
    views=""
    for K in $KS; do
        if [ -z "$views" ]; then
            "$TRAIN" $m $O $X loader_threads=1 device=cpu max_steps=$K dump_views="$D/views_$K.sslt" out="$D/c" >/dev/null
        else
            "$TRAIN" $m resume="$D/c" max_steps=$K dump_views="$D/views_$K.sslt" >/dev/null
        fi
        cp "$D/c/ckpt.sslt" "$D/c/state_$K.sslt"
        views="$views${views:+,}$D/views_$K.sslt"
    done
    "$PY" "$HERE/ref_train.py" $m $O $X max_steps=$STEPS save_at=1,10,50 init="$D/init/ckpt.sslt" views_from="$views" out="$D/py" >/dev/null
    [ "${F64:-0}" = 1 ] && "$PY" "$HERE/ref_train.py" $m $O $X max_steps=$STEPS save_at=1,10,50 dtype=float64 \
        init="$D/init/ckpt.sslt" views_from="$views" out="$D/py64" >/dev/null
    rm -f "$D"/views_*.sslt
    "$PY" - "$D" "$run" "$STEPS" "$HERE" <<'PYEOF'
import json, os, statistics, sys
sys.path.insert(0, sys.argv[4])
from ckpt_diff import diff
from ref_train import load_sslt
D, run, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
def losses(p):
    return [r["loss"] for r in map(json.loads, open(p)) if "loss" in r]
init = load_sslt(f"{D}/init/ckpt.sslt")
S = dict(run=run, steps=steps)
pairs = [("c_vs_ref", "c", "py")] + ([("ref32_vs_ref64", "py", "py64")] if os.path.isdir(f"{D}/py64") else [])
for label, a, b in pairs:
    la, lb = losses(f"{D}/{a}/log.jsonl"), losses(f"{D}/{b}/log.jsonl")
    rel = [abs(x - y) / abs(y) for x, y in zip(la, lb)]
    S[label] = dict(loss_max_rel=max(rel), loss_median_rel=statistics.median(rel),
                    loss_rel_at={k: rel[k - 1] for k in (1, 10, 50, steps)}, states={})
    for k in (1, 10, 50, steps):
        fa = f"{D}/{a}/state_{k}.sslt" if a == "c" or k != steps else f"{D}/{a}/final.sslt"
        fb = f"{D}/{b}/state_{k}.sslt" if k != steps else f"{D}/{b}/final.sslt"
        S[label]["states"][k] = diff(load_sslt(fa), load_sslt(fb), init)[0]
    print(f"{run} {label}: loss rel max {max(rel):.1e} median {statistics.median(rel):.1e}; at steps 1/10/50/{steps}: "
          + " ".join(f"{rel[k - 1]:.1e}" for k in (1, 10, 50, steps)))
    for k, g in S[label]["states"].items():
        print(f"   step {k:3d}: " + "; ".join(f"{n} max rel {s['max_rel']:.1e} median {s['median_rel']:.1e}"
                                              + (f" (of change {s['max_change']:.1e})" if 'max_change' in s else "")
                                              for n, s in g.items() if n != "optim"))
json.dump(S, open(f"{D}/summary.json", "w"), indent=1)
PYEOF
done
"$PY" "$HERE/traj_table.py" "$OUT"
