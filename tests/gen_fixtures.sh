#!/usr/bin/env bash
# Regenerate the torchvision reference fixtures under tests/fixtures/.
# Sets up build/venv (scripts/pyenv.sh: torch, torchvision, numpy, pillow
# from PyPI) on first use, then runs each generator with the venv python.
# Needs ../shared/data (the CIFAR-10 / Imagenette archives).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$("$ROOT/scripts/pyenv.sh")"
for gen in "$ROOT"/tests/gen_*_fixtures.py; do
  echo "== $gen" >&2
  "$PY" "$gen"
done
