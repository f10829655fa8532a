#!/usr/bin/env bash
# Create (if missing) the Python venv used to generate torchvision reference
# fixtures and to run the torchvision baseline benchmark.
#   venv: build/venv (git-ignored)
#   packages: torch, torchvision, numpy, pillow from PyPI.
# The PyPI Linux torch wheel depends on the CUDA runtime wheels (nvidia-*,
# ~5 GB installed); torch cannot even be imported without them, so we install
# the full dependency set. CPU use works without a GPU.
# Idempotent: a venv that already imports everything is left alone.
# Usage: scripts/pyenv.sh            -> prints the venv python path last
#        PYENV_FORCE=1 scripts/pyenv.sh  -> reinstall packages
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/build/venv"
PY="$VENV/bin/python"
PKGS=(torch torchvision numpy pillow)

check() {
  "$PY" - <<'PYEOF' 2>/dev/null
import numpy, PIL, torch, torchvision
x = torch.randn(2) @ torch.randn(2)
print(f"pyenv: torch={torch.__version__} torchvision={torchvision.__version__} "
      f"numpy={numpy.__version__} pillow={PIL.__version__}")
PYEOF
}

if [ ! -x "$PY" ]; then
  echo "pyenv: creating venv at $VENV" >&2
  mkdir -p "$ROOT/build"
  python3 -m venv "$VENV"
fi

if [ "${PYENV_FORCE:-0}" != 1 ] && check >&2; then
  echo "pyenv: venv already complete, nothing to do" >&2
else
  echo "pyenv: pip install ${PKGS[*]} (may take a few minutes)" >&2
  "$PY" -m pip install --quiet "${PKGS[@]}" >&2
  check >&2 || { echo "pyenv: torch import/CPU matmul check FAILED" >&2; exit 1; }
  echo "pyenv: installed" >&2
fi
echo "$PY"
