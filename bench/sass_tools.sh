#!/usr/bin/env bash
# cuobjdump and nvdisasm for reading ssl.cu's SASS without a GPU, where the
# toolkit lacks them (this machine's CUDA 13 has nvcc and ptxas only): from
# NVIDIA's PyPI wheels into build/sass-tools. bench/ptx_check.py finds them
# there.
set -euo pipefail
cd "$(dirname "$0")/.."
D=build/sass-tools
if [ -x $D/nvidia/cu13/bin/cuobjdump ]; then echo "$D/nvidia/cu13/bin/cuobjdump"; exit 0; fi
mkdir -p $D/wheels
python3 -m pip download --quiet --no-deps -d $D/wheels nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
for w in $D/wheels/*.whl; do python3 -m zipfile -e "$w" $D; done
chmod +x $D/nvidia/cu13/bin/*
echo "$D/nvidia/cu13/bin/cuobjdump"
