#!/usr/bin/env bash
# plot.sh LOG.jsonl [OUT.png] [LOG2.jsonl LABEL2 ...]
# Turns ./train's JSON-lines log into one PNG: training loss and online-probe
# accuracy against epochs and against wall-clock time (the FFCV-SSL paper's
# Figure 1 view). More logs can be overlaid as LOG LABEL pairs after OUT.
# Needs gnuplot (Debian: gnuplot-nox; scripts/install-deps.sh installs it).
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: scripts/plot.sh LOG.jsonl [OUT.png] [LOG2.jsonl LABEL2 ...]" >&2; exit 2; fi
log=$1; out=${2:-${log%.jsonl}.png}; shift; [ $# -gt 0 ] && shift
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# pull epochs done, step, loss, probe_acc, elapsed out of the step lines
extract() {
    awk '
    function field(name,   m) {
        if (match($0, "\"" name "\": *-?[0-9.eE+-]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m }
        return "nan"
    }
    # x: epochs done, fractional (step / steps per epoch); logs without the
    # field fall back to the whole epoch
    /"step":/ && /"loss":/ && !/"eval"/ {
        x = field("epochs_done"); if (x == "nan") x = field("epoch")
        print x, field("step"), field("loss"), field("probe_acc"), field("elapsed")
    }
    ' "$1"
}
extract "$log" > "$tmp/0.tsv"
[ -s "$tmp/0.tsv" ] || { echo "plot.sh: no step lines in $log" >&2; exit 1; }
series=("$tmp/0.tsv"); labels=("$(basename "$(dirname "$log")")")
i=1
while [ $# -ge 2 ]; do extract "$1" > "$tmp/$i.tsv"; series+=("$tmp/$i.tsv"); labels+=("$2"); shift 2; i=$((i + 1)); done
plots() { # column of x, column of y
    local s="" k
    for k in "${!series[@]}"; do s+="${s:+, }'${series[$k]}' using $1:$2 with lines lw 2 title '${labels[$k]}'"; done
    echo "$s"
}
gnuplot <<GP
set terminal pngcairo size 1200,800 font ",10"
set output '$out'
set multiplot layout 2,2 title "ssl.h training: $(basename "$log")"
set grid
set xlabel 'epochs'; set xrange [0:*]; set ylabel 'training loss'; plot $(plots 1 3)
set xlabel 'wall-clock (s)'; set xrange [0:*]; set ylabel 'training loss'; plot $(plots 5 3)
set xlabel 'epochs'; set xrange [0:*]; set ylabel 'online probe top-1'; set yrange [0:1]; plot $(plots 1 4)
set xlabel 'wall-clock (s)'; set ylabel 'online probe top-1'; plot $(plots 5 4)
unset multiplot
GP
echo "plot: $out"
