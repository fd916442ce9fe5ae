#!/usr/bin/env bash
# The PrimeDepth GPU check (under 8 minutes on one GPU), one command on a fresh GPU machine:
#   bash benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options]      # then paste OUT_DIR/gpu-check.md back
# It installs the checkout (pip install -e, once) when primedepth or a baseline's library is not
# importable, then runs benchmarks/gpu_check.py with HF_HUB_OFFLINE=1 (random weights: no download).
# PYTHON=/path/to/python picks the interpreter (default: python, else python3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
if ! "$PYTHON" -c "import primedepth, diffusers, transformers, torch" 2>/dev/null; then
    echo "gpu_check: installing the checkout into $("$PYTHON" -c 'import sys; print(sys.prefix)') (pip install -e $ROOT)" >&2
    "$PYTHON" -m pip install --quiet -e "$ROOT"
fi
"$PYTHON" - <<'EOF' >&2
import torch
if not torch.cuda.is_available():
    print("gpu_check: torch", torch.__version__, "sees no CUDA GPU; the check runs on the CPU only with --device cpu --scale tiny")
else:
    print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__)
EOF
HF_HUB_OFFLINE=1 exec "$PYTHON" "$HERE/gpu_check.py" "${@:-gpu-check-results}"
