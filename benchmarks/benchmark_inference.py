"""PrimeDepth inference benchmark: per-stage timings, peak memory and baselines, as a table.

Every model is built from its configuration with random weights (speed does not depend on the
values): built on the meta device, cast, materialised with `to_empty` and filled with small
uniform values. Each measured configuration runs in a fresh subprocess, so its peak memory
(RSS on CPU, `torch.cuda.max_memory_allocated` on CUDA) is its own.

Runs ("modes"), all on the same random input of a given size:
- capture:    the UNet walk with preimage capture and the bare UNet forward, interleaved;
- primedepth: our pipeline (`predict_raw`, i.e. `primedepth.model.forward`, segmentation off),
              plus a per-stage breakdown through `primedepth.model`'s stage functions;
- official:   the official-style reference (`primedepth_bench.official_style`): softmax(QK^T)
              materialised in every attention layer and pooled as P @ M, the prompt encoded per
              image, the UNet tail computed, the whole preimage held before the refiner,
              segmentation head on, fp32 (the baseline, ratio column "vs official");
- floor:      VAE encode + bare UNet forward (diffusers' default processors) + depth head
              (ratio column "vs floor");
- marigold:   diffusers' MarigoldDepthPipeline (8-channel UNet, same VAE) at 1 step x 1 member,
              extrapolated to v1-0 (50 x 10) and v1-1 default (4 x 1);
- dav2:       transformers' DepthAnythingForDepthEstimation, V2-Large configuration, at 518.

The code is the package `primedepth_bench` beside this script (see its docstring).

    python benchmarks/benchmark_inference.py --sizes 512 768 --dtypes fp32 bf16 --json out.json
    python benchmarks/benchmark_inference.py --quick
"""

import sys

# The package beside this script: its folder is on sys.path when the script runs.
from primedepth_bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
