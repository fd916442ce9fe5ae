#!/usr/bin/env bash
# The PrimeDepth GPU check (under 8 minutes on one GPU): bash benchmarks/gpu_check.sh [OUT_DIR] [options]; paste OUT_DIR/gpu-check.md back.
HF_HUB_OFFLINE=1 exec python "$(dirname "$0")/gpu_check.py" "${@:-gpu-check-results}"
