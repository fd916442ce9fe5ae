"""Benchmarks of PrimeDepth inference: random-weight models, timed runs, tables.

The model itself is never written here: PrimeDepth runs through `primedepth.model` (its
`forward`, or the stage functions for a per-stage breakdown). The one other attention,
`official_style`, is the comparison reference that materialises N x N probabilities as the
official code does.

- `builders`: full-size / tiny architectures with random weights, and the shared input;
- `timing`: medians of timed calls and peak-memory probes;
- `official_style`: the official-style reference path;
- `runners`: one measured run per mode, in this process;
- `worker`: one configuration in a fresh subprocess (its peak memory is its own);
- `suite`: the command line of `benchmark_inference.py` (plan, run, render);
- `tables`: markdown tables and the machine description;
- `tensor_memory`: live-tensor peaks, the command line of `peak_tensor_memory.py`.
"""
