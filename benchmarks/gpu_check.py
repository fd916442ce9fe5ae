"""PrimeDepth GPU check: one command, one markdown table and one JSON to paste back.

Placement memory of `primedepth predict` (768x768, bf16 and fp16), fp16/bf16 vs fp32 stage
differences, interleaved timings against the official-style path, Marigold and Depth Anything
V2-L (512/768/1024, batches 1/4/8), torch.compile on/off; all within a time budget (default
420 s). The code is `primedepth_bench.gpu_check` beside this script.

    python benchmarks/gpu_check.py gpu-check-results
    python benchmarks/gpu_check.py /tmp/smoke --device cpu --scale tiny
"""

import sys

# The package beside this script: its folder is on sys.path when the script runs.
from primedepth_bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
