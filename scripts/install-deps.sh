#!/usr/bin/env bash
# Installs the Debian packages ssl.h needs, if they are missing. Called by
# `make test` and `make demo` (and with --fuzz by `make fuzz`), so on a fresh
# machine those commands are all the set-up there is.
set -euo pipefail
# openmpi-bin, libopenmpi-dev: mpirun and mpicc, for training on many ranks
# (and the tests that launch them)
need=(gcc make pkg-config libstb-dev libturbojpeg0-dev libjpeg62-turbo-dev libopenblas-dev dataset-fashion-mnist gnuplot-nox
      openmpi-bin libopenmpi-dev)
# --fuzz: also clang and its libFuzzer runtime (make fuzz), the runtime of
# the clang version Debian's clang is (14 on Debian 12)
if [ "${1:-}" = --fuzz ]; then
    v=$( (clang --version 2>/dev/null || true) | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
    [ -n "$v" ] || v=$(apt-cache depends clang 2>/dev/null | sed -n 's/.*Depends: clang-\([0-9]*\)$/\1/p' | head -1)
    need+=(clang "libclang-rt-${v:-14}-dev")
fi
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "[deps] all present: ${need[*]}"
    exit 0
fi
echo "[deps] installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "[deps] not root and no sudo: run as root: apt-get install -y ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
