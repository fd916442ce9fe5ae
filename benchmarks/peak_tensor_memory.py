"""Peak memory of live tensors during one depth prediction, measured on any device.

Counts, op by op, the bytes of all tensors alive at once during one prediction (PrimeDepth, and
the official-style reference path with materialised attention) and prints them next to the
weights used: what a GPU would need, estimated on any machine (see
`primedepth_bench.tensor_memory`).

    python benchmarks/peak_tensor_memory.py --sizes 512 768 --dtype bf16
    python benchmarks/peak_tensor_memory.py --sizes 768 --dtype bf16 --stages
"""

import sys

# The package beside this script: its folder is on sys.path when the script runs.
from primedepth_bench.tensor_memory import main

if __name__ == "__main__":
    sys.exit(main())
