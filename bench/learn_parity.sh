#!/usr/bin/env bash
# Learning parity: the same recipe trained by ./train and by the PyTorch
# reference (bench/ref_train.py), each from its own seeds (its own initial
# weights, crops and order), then both end-of-run evaluations (kNN top-1 and
# the online probe's top-1 on VAL) and the loss curves side by side: mean
# and spread over seeds, per method. Writes OUT/NAME.md and prints it.
#
#   bash bench/learn_parity.sh TRAIN.ssl VAL.ssl NAME
#   METHODS="simclr byol" SEEDS="0 1 2" RES=32 EXTRA="epochs=4" bash bench/learn_parity.sh ...
#   PY=build/venv/bin/python (scripts/pyenv.sh makes it)  OUT=build/learn_parity
#
# The recipe (COMMON, and each method's own below) is CPU-sized: width 1/8,
# batch 64, AdamW, crops of 30-100% with flips; EXTRA overrides any of it
# (for a GPU: EXTRA="device=cuda width=1 ..." on ./train's side; the
# reference's device=cuda is untested).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${1:?usage: bench/learn_parity.sh TRAIN.ssl VAL.ssl NAME}
VAL=${2:?usage: bench/learn_parity.sh TRAIN.ssl VAL.ssl NAME}
NAME=${3:?usage: bench/learn_parity.sh TRAIN.ssl VAL.ssl NAME}
METHODS=${METHODS:-simclr vicreg barlow byol}
SEEDS=${SEEDS:-0 1}
RES=${RES:-28}
EXTRA=${EXTRA:-}
PY=${PY:-build/venv/bin/python}
OUT=${OUT:-build/learn_parity}
COMMON="data=$TRAIN val=$VAL width=0.125 res=$RES bs=64 epochs=2 warmup=0.5 optimizer=adamw lr_scale=0 wd=1e-4
        views=crop_flip scale_min=0.3 projector=256-128 log_every=10 knn_train=5000 threads=1 loader_threads=1"
recipe() {
    case "$1" in
        simclr) echo "lr=2e-3 tau=0.2" ;;
        vicreg) echo "lr=1e-3" ;;
        barlow) echo "lr=1e-3" ;;
        byol) echo "lr=2e-3 ema=0.99 predictor=256-128" ;;
    esac
}
mkdir -p "$OUT/$NAME"
for m in $METHODS; do
    for s in $SEEDS; do
        O="$COMMON $(recipe "$m") seed=$s $EXTRA"
        d="$OUT/$NAME/$m-s$s"
        # the two sides side by side, one compute thread each (on 2 cores that
        # beats one after the other with two threads each at this size)
        pids=""
        if [ ! -f "$d-c/log.jsonl" ] || ! grep -q '"eval"' "$d-c/log.jsonl"; then
            echo "== $NAME $m seed $s: ./train"
            # shellcheck disable=SC2086
            ./train "$m" $O out="$d-c" > "$d-c.out" 2>&1 &
            pids+=" $!"
        fi
        if [ ! -f "$d-py/log.jsonl" ] || ! grep -q '"eval"' "$d-py/log.jsonl"; then
            echo "== $NAME $m seed $s: bench/ref_train.py"
            # shellcheck disable=SC2086
            "$PY" bench/ref_train.py "$m" $O out="$d-py" > "$d-py.out" 2>&1 &
            pids+=" $!"
        fi
        for p in $pids; do wait "$p" || { echo "learn_parity: a run failed: see $d-c.out, $d-py.out" >&2; exit 1; }; done
    done
done
"$PY" - "$OUT/$NAME" "$NAME" "$METHODS" "$SEEDS" > "$OUT/$NAME.md" << 'PYEOF'
import json, statistics as st, sys
root, name, methods, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
def read(path):
    recs = [json.loads(l) for l in open(path)]
    ev = [r["eval"] for r in recs if "eval" in r][-1]
    curve = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    return ev, curve
def ms(xs):  # mean +- standard deviation over seeds, in percent
    return f"{100 * st.mean(xs):.1f} +- {100 * st.stdev(xs):.1f}" if len(xs) > 1 else f"{100 * xs[0]:.1f}"
print(f"| {name} | ./train kNN | ref kNN | ./train probe | ref probe | loss at 10% / 50% / end: ./train | ref |")
print("|---|---|---|---|---|---|---|")
for m in methods:
    row = {}
    for side in ("c", "py"):
        runs = [read(f"{root}/{m}-s{s}-{side}/log.jsonl") for s in seeds]
        knn = [r[0]["knn_top1"] for r in runs]
        probe = [r[0]["probe_top1"] for r in runs]
        n = min(len(r[1]) for r in runs)
        at = lambda f: st.mean(r[1][min(n - 1, int(f * (n - 1)))][1] for r in runs)
        end = [r[1][n - 1][1] for r in runs]
        sd = f" +- {st.stdev(end):.3f}" if len(end) > 1 else ""
        row[side] = (ms(knn), ms(probe), f"{at(0.1):.3f} / {at(0.5):.3f} / {at(1.0):.3f}{sd}")
    print(f"| {m} | {row['c'][0]} | {row['py'][0]} | {row['c'][1]} | {row['py'][1]} | {row['c'][2]} | {row['py'][2]} |")
print(f"\nmean +- standard deviation over seeds {' '.join(seeds)}, top-1 in %; losses: the mean over seeds at the logged step nearest each fraction of the run")
PYEOF
cat "$OUT/$NAME.md"
