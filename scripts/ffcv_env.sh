#!/usr/bin/env bash
# The FFCV-SSL baseline's Python environment (bench/ffcv_bench.sh): a venv
# at build/ffcv-venv (git-ignored) with FFCV-SSL built from source.
#
# FFCV-SSL is not on PyPI. It is built from FFCV_SSL_SRC: a source tree (a
# checkout of github.com/facebookresearch/FFCV-SSL) or anything pip takes;
# unset, pip fetches it from GitHub. Its C++ part needs the Debian packages
# libopencv-dev, libturbojpeg0-dev and pkg-config, installed here if missing.
# torch and torchvision come from scripts/pyenv.sh's venv (build/venv),
# linked with a .pth file rather than installed a second time.
# Idempotent. Prints the venv's python last.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/build/ffcv-venv"
PY="$VENV/bin/python"
check() {
    "$PY" - <<'PYEOF' 2>/dev/null
import cv2, ffcv, numba, torch
from ffcv.transforms import RandomColorJitter, RandomSolarization
PYEOF
}
if [ -x "$PY" ] && check; then echo "$PY"; exit 0; fi

TORCHPY=$("$ROOT/scripts/pyenv.sh" | tail -1)
if ! pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then SUDO=sudo; else
            echo "ffcv_env: not root and no sudo: run as root: apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config" >&2
            exit 1
        fi
    fi
    echo "ffcv_env: installing libopencv-dev libturbojpeg0-dev pkg-config" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends libopencv-dev libturbojpeg0-dev pkg-config >&2
fi
[ -x "$PY" ] || python3 -m venv "$VENV"
echo "ffcv_env: pip install numba, opencv-python-headless, scipy and FFCV-SSL's other imports" >&2
"$PY" -m pip install -q numba opencv-python-headless scipy terminaltables fastargs pandas assertpy tqdm psutil wheel setuptools >&2
SITE=$("$PY" -c "import site; print(site.getsitepackages()[0])")
"$TORCHPY" -c "import site; print(site.getsitepackages()[0])" > "$SITE/zz_torch_from_build_venv.pth"
SRC=${FFCV_SSL_SRC:-git+https://github.com/facebookresearch/FFCV-SSL}
echo "ffcv_env: building FFCV-SSL from $SRC" >&2
"$PY" -m pip install -q --no-deps --no-build-isolation "$SRC" >&2 || {
    echo "ffcv_env: could not build FFCV-SSL from $SRC (no network to GitHub? set FFCV_SSL_SRC to a checkout)" >&2
    exit 1
}
check || { echo "ffcv_env: FFCV-SSL was built but does not import (cd / && $PY -c 'import ffcv' says why)" >&2; exit 1; }
echo "$PY"
