#!/usr/bin/env bash
# compare_probes.sh LABEL1 PROBE1.json LABEL2 PROBE2.json ...
# One table of ./probe's results (its probe.json files): a row per backbone,
# a column per probe (linear, kNN k=20, ...), top-1 in %, and for the first
# two rows their difference. make demo ends with it: the trained backbone
# against the same network at its random init.
set -euo pipefail
if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
    echo "usage: scripts/compare_probes.sh LABEL PROBE.json [LABEL PROBE.json ...]" >&2
    exit 2
fi
rows=""
while [ $# -gt 0 ]; do
    [ -f "$2" ] || { echo "compare_probes: $2: no such file" >&2; exit 1; }
    # LABEL<TAB>mode=top1<TAB>mode=top1...
    r=$(grep -o '"mode": "[^"]*", "top1": [0-9.]*' "$2" | sed 's/"mode": "\([^"]*\)", "top1": /\1=/' | paste -sd'\t')
    [ -n "$r" ] || { echo "compare_probes: $2 has no probe results" >&2; exit 1; }
    rows+="$1"$'\t'"$r"$'\n'
    shift 2
done
printf '%s' "$rows" | awk -F'\t' '
{
    label[NR] = $1
    if (length($1) > w) w = length($1)
    for (i = 2; i <= NF; i++) {
        m = $i; sub(/=[^=]*$/, "", m); v = $i; sub(/.*=/, "", v)
        if (!(m in seen)) { seen[m] = 1; modes[++nm] = m }
        top[NR, m] = 100 * v
    }
}
END {
    if (w < 10) w = 10
    printf "%-*s", w + 2, ""; for (j = 1; j <= nm; j++) printf "%12s", modes[j]; printf "\n"
    for (i = 1; i <= NR; i++) {
        printf "%-*s", w + 2, label[i]
        for (j = 1; j <= nm; j++) if ((i, modes[j]) in top) printf "%11.2f%%", top[i, modes[j]]; else printf "%12s", "-"
        printf "\n"
    }
    if (NR >= 2) {
        printf "%-*s", w + 2, "difference"
        for (j = 1; j <= nm; j++) if ((1, modes[j]) in top && (2, modes[j]) in top) printf "%+11.2f ", top[1, modes[j]] - top[2, modes[j]]; else printf "%12s", "-"
        printf "\n"
    }
}'
