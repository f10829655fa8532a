#!/usr/bin/env bash
# End to end on a GPU: ./train with the full SimCLR recipe on the Imagenette
# pack, the loader in GPU mode with T CPU threads, at 224 and 160; the same
# with PyTorch (a torchvision DataLoader with T workers feeding the same
# step, bench/gpu_e2e_torch.py). For each: images/s and the share of the
# time the step waited for data (the GPU idle for want of it). The pack
# (3,925 images, 15 steps an epoch at batch 256) is cycled: epochs follow
# each other, the first records are left out as warm-up.
#
#   bash bench/gpu_e2e.sh prepare     here: packs Imagenette val into build/gpu-e2e (carry it)
#   bash bench/gpu_e2e.sh run         on the GPU machine; writes $OUT/gpu_e2e.md
#
# Then progressive resolution (the paper's 160 -> 224): one ./train run with
# the resolution ramped over epochs, with the most loader threads of THREADS;
# per resolution its images/s (beside the fixed-resolution run's), the
# device memory it holds (it must not grow while a size lasts) and the
# plans made (one per size).
#
# Env: THREADS="1 2 4 8", TORCH_THREADS="4 8", RES="224 160", STEPS=30,
# TORCH_STEPS=8 and TORCH_WARMUP=2 (its DataLoader delivers ~100 images/s:
# 30 steps would take over a minute a run),
# TRAIN_ARGS / TORCH_ARGS (the model; default ResNet-50 bs 256 bf16);
# RAMP="160 224 0 4" (res_start res_end ramp_start ramp_end, epochs),
# RAMP_EPOCHS=7, RAMP_PACK (default PACK), RAMP_LOG=3 (steps per record);
# RAMP= (empty) leaves the ramp out.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
PACK=${PACK:-build/gpu-e2e/imagenette-val.ssl}
THREADS=${THREADS:-1 2 4 8}
TORCH_THREADS=${TORCH_THREADS-4 8} # empty: no PyTorch runs
RES=${RES:-224 160}
STEPS=${STEPS:-30}
TORCH_STEPS=${TORCH_STEPS:-8}
TORCH_WARMUP=${TORCH_WARMUP:-2}
TRAIN_ARGS=${TRAIN_ARGS:-arch=resnet50 stem=imagenet bs=256 precision=bf16}
TORCH_ARGS=${TORCH_ARGS:---depth 50 --bs 256 --precision bf16}
PY=${PY:-python3}
RAMP=${RAMP-160 224 0 4}
RAMP_EPOCHS=${RAMP_EPOCHS:-7}
RAMP_PACK=${RAMP_PACK:-$PACK}
RAMP_LOG=${RAMP_LOG:-3}

prepare() {
    # libjpeg-turbo and stb_image as this machine has them (the GPU machine
    # may lack them, and stb_image's JPEG decoder would make the loader
    # several times slower there); `run` builds with them where it lacks them
    bash bench/gpu_deps.sh copy build/gpu-e2e/deps
    mkdir -p build/gpu-e2e/src
    tar xzf ../shared/data/imagenette-val.tar.gz -C build/gpu-e2e/src
    ./pack build/gpu-e2e/src/imagenette/val "$PACK" force=1 quiet=1 && rm -rf build/gpu-e2e/src
    ./pack info "$PACK" | head -5
    du -sh "$PACK"
}

# mean images/s, data wait and GPU busy share of ./train's log records
# after the first two
train_stats() {
    $PY - "$1" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '"img_per_s"' in l][2:]
print(json.dumps(dict(images_per_s=round(sum(x["img_per_s"] for x in r) / max(len(r), 1), 1),
                      data_wait=round(sum(x.get("data_wait", 0) for x in r) / max(len(r), 1), 4),
                      gpu_busy=round(sum(x.get("gpu_busy", -1) for x in r) / max(len(r), 1), 4), records=len(r))))
EOF
}

run() {
    mkdir -p "$OUT"
    : > "$OUT/e2e.jsonl"
    flags=$(bash bench/gpu_deps.sh flags build/gpu-e2e/deps) || exit 1
    [ -n "$flags" ] && echo "== this machine lacks a dependency: building with$flags (copies in build/gpu-e2e/deps)"
    rm -f train pack
    make -j8 train pack $flags > "$OUT/e2e-build.log" 2>&1
    grep -E "turbojpeg" "$OUT/e2e-build.log"
    # a failed build must stop here, not after every run has failed
    [ -x ./train ] && [ -x ./pack ] || { echo "== ./train or ./pack did not build:"; tail -20 "$OUT/e2e-build.log"; exit 1; }
    for r in $RES; do
        for t in $THREADS; do
            d=$(mktemp -d)
            echo "== ssl.h res $r, $t loader threads"
            timeout 240 ./train simclr data="$PACK" $TRAIN_ARGS res=$r loader_threads=$t epochs=1000 max_steps=$STEPS \
                log_every=3 device=cuda out="$d" > "$d/stdout" 2>&1
            tail -2 "$d/stdout"
            echo "{\"impl\": \"ssl.h\", \"res\": $r, \"threads\": $t, \"stats\": $(train_stats "$d/log.jsonl")}" >> "$OUT/e2e.jsonl"
            rm -rf "$d"
        done
        for t in $TORCH_THREADS; do
            echo "== PyTorch res $r, $t DataLoader workers"
            timeout 240 $PY bench/gpu_e2e_torch.py --pack "$PACK" --threads $t --res $r --steps $TORCH_STEPS --warmup $TORCH_WARMUP $TORCH_ARGS \
                2>&1 | tail -2 | tee /dev/stderr | grep '^{' >> "$OUT/e2e.jsonl"
        done
    done
    [ -n "$RAMP" ] && ramp
    $PY - "$OUT/e2e.jsonl" <<'EOF' | tee "$OUT/gpu_e2e.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs = [x for x in rows if x["impl"] in ("ssl.h", "torch")]
print("| res | CPU threads | ssl.h img/s | ssl.h waits for data | GPU busy (ssl.h) | PyTorch img/s | PyTorch waits | ratio |")
print("|---|---|---|---|---|---|---|---|")
for r in sorted({x["res"] for x in runs}, reverse=True):
    for t in sorted({x["threads"] for x in runs if x["res"] == r}):
        o = next((x["stats"] for x in runs if x["impl"] == "ssl.h" and x["res"] == r and x["threads"] == t), None)
        p = next((x for x in runs if x["impl"] == "torch" and x["res"] == r and x["threads"] == t), None)
        f = lambda v, k, pct=False: "-" if v is None or v.get(k, -1) < 0 else (f"{100 * v[k]:.0f}%" if pct else f"{v[k]:.0f}")
        ratio = f"{o['images_per_s'] / p['images_per_s']:.2f}x" if o and p else "-"
        print(f"| {r} | {t} | {f(o, 'images_per_s')} | {f(o, 'data_wait', True)} | {f(o, 'gpu_busy', True)} | {f(p, 'images_per_s')} | "
              f"{f(p, 'data_wait', True)} | {ratio} |")
# the fewest loader threads that keep the GPU fed at each resolution: the
# step waits for data at most 1% of the time, and images/s are within 3% of
# the best any thread count reached (more threads then buy nothing)
print()
for r in sorted({x["res"] for x in runs}, reverse=True):
    ours = sorted(((x["threads"], x["stats"]) for x in runs if x["impl"] == "ssl.h" and x["res"] == r and x["stats"]["records"]),
                  key=lambda y: y[0])
    if not ours:
        continue
    best = max(st["images_per_s"] for _, st in ours)
    fed = [t for t, st in ours if st["data_wait"] <= 0.01 and st["images_per_s"] >= 0.97 * best]
    print(f"At {r}: " + (f"{fed[0]} loader thread{'s keep' if fed[0] > 1 else ' keeps'} the GPU fed "
                        f"(waits for data <= 1%, images/s within 3% of the best, {best:.0f})" if fed else
                        f"no thread count tried ({', '.join(str(t) for t, _ in ours)}) keeps the GPU fed"))
for x in (x for x in rows if x["impl"] == "ssl.h ramp"):
    a = x["ramp"].split()
    print(f"\nProgressive resolution {a[0]} -> {a[1]} over epochs {a[2]}..{a[3]}, {x['threads']} loader threads "
          f"(each size's first record left out): {x['plans']} plans in all\n")
    print("| res | records | img/s in the ramp | img/s at this res alone | ratio | device GB held (min-max) |")
    print("|---|---|---|---|---|---|")
    for g in x["by_res"]:
        o = next((y["stats"] for y in runs if y["impl"] == "ssl.h" and y["res"] == g["res"] and y["threads"] == x["threads"]), None)
        alone = f"{o['images_per_s']:.0f}" if o and o["records"] else "-"
        ratio = f"{g['images_per_s'] / o['images_per_s']:.2f}x" if o and o["records"] and g["records"] else "-"
        print(f"| {g['res']} | {g['records']} | {g['images_per_s']:.0f} | {alone} | {ratio} | {g['dev_gb_min']:.3f}-{g['dev_gb_max']:.3f} |")
EOF
}

# progressive resolution: one run ramped over RAMP, summarized per size
ramp() {
    set -- $RAMP
    [ $# -eq 4 ] || { echo "== RAMP='$RAMP': want res_start res_end ramp_start ramp_end"; return 1; }
    local t d
    t=$(echo $THREADS | tr ' ' '\n' | sort -n | tail -1)
    d=$(mktemp -d)
    echo "== ssl.h progressive resolution $1 -> $2 over epochs $3..$4, $t loader threads"
    timeout 300 ./train simclr data="$RAMP_PACK" $TRAIN_ARGS res_start=$1 res_end=$2 ramp_start=$3 ramp_end=$4 epochs=$RAMP_EPOCHS \
        loader_threads=$t log_every=$RAMP_LOG device=cuda out="$d" > "$d/stdout" 2>&1
    tail -2 "$d/stdout"
    $PY - "$d/log.jsonl" "$t" "$RAMP" >> "$OUT/e2e.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"img_per_s"' in l]
by = []
for r in recs:  # groups in the order the sizes came
    if not by or by[-1]["res"] != r["res"]:
        by.append(dict(res=r["res"], recs=[]))
    by[-1]["recs"].append(r)
out = []
for g in by:
    rs = g["recs"][1:]  # the first record of a size holds its planning
    mem = [r.get("dev_gb", -1) for r in g["recs"]]
    out.append(dict(res=g["res"], records=len(rs), images_per_s=round(sum(r["img_per_s"] for r in rs) / max(len(rs), 1), 1),
                    dev_gb_min=min(mem), dev_gb_max=max(mem)))
print(json.dumps({"impl": "ssl.h ramp", "threads": int(sys.argv[2]), "ramp": sys.argv[3], "by_res": out,
                  "plans": recs[-1].get("plans", -1) if recs else -1}))
EOF
    rm -rf "$d"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: bench/gpu_e2e.sh prepare|run"; exit 2 ;;
esac
