"""Where a self-attention layer's capture time goes: bare attention against both capture kernels,
and the chunked kernel split into its operations, on the UNet's largest self-attention layer.

The UNet walk's capture overhead (`benchmark_inference.py --modes capture`) is the sum, over its
self-attention layers, of (capture kernel - plain fused attention). The full-resolution layers
(latent side = image side / 8, 5 heads of 64 in SD 2.1) dominate it, so this times one such layer
in interleaved rounds (CPU and wall seconds, best of the rounds), with the same shapes as the
UNet: query/key/value (1, 5, N, 64) with N = (side / 8)^2.

Rows: `bare SDPA` (what the plain UNet runs), `padded SDPA capture` (the reference kernel: the
fused kernel at head dim 128), `chunked capture` (the whole chunked kernel), and the chunked
kernel's operations summed over its blocks: Q K^T, softmax, P V, pooling P -> 8x8 (column factor,
then row factor).

    python benchmarks/capture_kernel_profile.py --sizes 512 768 --dtypes fp32 bf16 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from primedepth.model.attention_maps import (
    PoolingFactors,
    _pool_block,
    capture_block_shape,
    chunked_capture,
    padded_sdpa_capture,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HEADS, HEAD_DIM = 5, 64


def clocks(action: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.process_time() - cpu, time.perf_counter() - wall


def operations(side: int, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    """The timed calls for one layer of side x side tokens."""
    tokens = side * side
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, HEADS, tokens, HEAD_DIM, generator=generator).to(dtype) for _ in range(3))
    factors = PoolingFactors.build(side, side, dtype=dtype)
    factors.matrix()
    scale = HEAD_DIM**-0.5
    groups, queries = capture_block_shape(HEADS, tokens, dtype)
    blocks = (HEADS // groups) * -(-tokens // queries)
    q = query[0, :groups, :queries] * scale
    k_t = key[0, :groups].transpose(1, 2)
    scores = torch.matmul(q, k_t)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)

    def repeated(action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(blocks):
                action()
        return run

    return {
        "bare SDPA": lambda: F.scaled_dot_product_attention(query, key, value, scale=scale),
        "padded SDPA capture": lambda: padded_sdpa_capture(query, key, value, scale, factors),
        "chunked capture": lambda: chunked_capture(query, key, value, scale, factors),
        "  chunked: Q K^T": repeated(lambda: torch.matmul(q, k_t)),
        "  chunked: softmax": repeated(lambda: torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)),
        "  chunked: P V": repeated(lambda: torch.matmul(probs, value[0, :groups])),
        "  chunked: pooling": repeated(lambda: _pool_block(probs, factors)),
    }


def profile(side: int, dtype: torch.dtype, rounds: int) -> dict[str, tuple[float, float]]:
    """Best (CPU, wall) seconds of each operation over `rounds` interleaved rounds (one warm-up)."""
    calls = operations(side, dtype)
    for action in calls.values():
        action()
    best = {name: (float("inf"), float("inf")) for name in calls}
    for round_index in range(rounds):
        names = list(calls)
        names = names[round_index % len(names):] + names[: round_index % len(names)]  # rotate the order
        for name in names:
            cpu, wall = clocks(calls[name])
            best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768], help="image sides (multiples of 8)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [f"Machine: {torch.__version__}, {args.threads} threads, {datetime.now(timezone.utc):%Y-%m-%dT%H:%M}+00:00; "
             f"command: `benchmarks/capture_kernel_profile.py {' '.join(sys.argv[1:])}`", ""]
    for size in args.sizes:
        side = size // 8
        for name in args.dtypes:
            best = profile(side, DTYPES[name], args.rounds)
            bare = best["bare SDPA"][0]
            section = [f"### {size}x{size} ({side}x{side} = {side * side} tokens, {HEADS} heads), {name}", "",
                       "| operation | CPU s (best) | wall s (best) | CPU / bare SDPA |", "|---|---|---|---|"]
            section += [f"| {op} | {cpu:.3f} | {wall:.3f} | {cpu / bare:.2f}x |" for op, (cpu, wall) in best.items()]
            lines += [*section, ""]
            print("\n".join(section), flush=True)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
