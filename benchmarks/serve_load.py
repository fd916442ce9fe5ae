"""Latency percentiles and throughput of the HTTP API under a bounded loopback load.

Starts `primedepth serve`'s app on 127.0.0.1 (an ephemeral port) once per batch size, sends
CLIENTS concurrent clients x ROUNDS requests (each client its own image), and prints a table.
Without --model a tiny random model is used: the numbers then measure the serving overhead
(upload, decoding, queueing, batching, encoding), not PrimeDepth itself.

    python benchmarks/serve_load.py --batch-sizes 1,4 --clients 16 --rounds 5
    python benchmarks/serve_load.py --model ./primedepth-model --device cuda --dtype bf16 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from primedepth.serve.app import create_app
from primedepth.serve.load import drive, latency_table
from primedepth.serve.server import BackgroundServer
from primedepth.serve.service import DepthService
from primedepth.serve.settings import ServeSettings
from primedepth.testing import save_tiny_model


def _uploads(clients: int, height: int, width: int) -> list[tuple[str, bytes]]:
    """One distinct PNG per client."""
    rng = np.random.default_rng(0)
    uploads = []
    for client in range(clients):
        path = Path(tempfile.mkdtemp()) / f"client{client}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        uploads.append((path.name, path.read_bytes()))
    return uploads


def _wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server at {url} did not get ready: {httpx.get(f'{url}/readyz').text}")
        time.sleep(0.1)


def _measure(settings: ServeSettings, uploads: list[tuple[str, bytes]], rounds: int) -> list[tuple[str, str]]:
    service = DepthService(settings)
    with BackgroundServer(create_app(service)) as server:
        _wait_ready(server.url)
        results, seconds = drive(server.url, uploads, rounds, fields={"outputs": "npy"}, time_limit_s=1800)
        metrics = httpx.get(f"{server.url}/metrics").text
    count = _metric(metrics, "primedepth_batch_size_count")
    mean_batch = _metric(metrics, "primedepth_batch_size_sum") / count if count else 0.0
    return [*latency_table(results, seconds), ("mean batch (images)", f"{mean_batch:.2f}")]


def _metric(text: str, name: str) -> float:
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or hub id (default: a tiny random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated server batch sizes to compare")
    parser.add_argument("--window-ms", type=float, default=10.0, help="batch window (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="requests per client")
    parser.add_argument("--size", default="48x64", help="image HEIGHTxWIDTH (default: %(default)s)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = args.model or str(save_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    height, width = (int(side) for side in args.size.split("x"))
    uploads = _uploads(args.clients, height, width)
    columns = {}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        settings = ServeSettings(model=model, device=args.device, dtype=args.dtype, batch_size=batch_size,
                                 batch_window_ms=args.window_ms, max_queue=max(64, args.clients))
        columns[f"batch {batch_size}"] = dict(_measure(settings, uploads, args.rounds))
    print(f"model: {args.model or 'tiny random'}; {args.clients} clients x {args.rounds} requests, "
          f"{width}x{height} PNG, outputs=npy, loopback")
    names = list(next(iter(columns.values())))
    print(f"| {'measure':<26} | " + " | ".join(f"{c:>10}" for c in columns) + " |")
    print(f"|{'-' * 28}|" + "|".join("-" * 12 for _ in columns) + "|")
    for name in names:
        print(f"| {name:<26} | " + " | ".join(f"{columns[c][name]:>10}" for c in columns) + " |")


if __name__ == "__main__":
    main()
