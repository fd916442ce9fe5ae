"""Latency percentiles, throughput and batch sharing of the HTTP API under a bounded loopback load.

Starts `primedepth serve`'s app on 127.0.0.1 (an ephemeral port) once per batch size, sends
CLIENTS concurrent clients x ROUNDS requests (each client its own image and its own seed), and
prints a table: latency, throughput, the batch-size histogram from /metrics (images per
forward pass, and how many of those passes held images of several requests), and how far each
answer is from the same request sent alone (max |difference|: batching must not change answers
beyond float rounding). Without --model a tiny random model is used: the numbers then measure
the serving overhead (upload, decoding, queueing, batching, encoding), not PrimeDepth itself.

    python benchmarks/serve_load.py --batch-sizes 1,4 --clients 16 --rounds 1
    python benchmarks/serve_load.py --model ./primedepth-model --device cuda --dtype bf16 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

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


def _fields(seeds: list[int]) -> list[dict[str, str]]:
    return [{"outputs": "npy", "seed": str(seed)} for seed in seeds]


def _alone(url: str, uploads: list[tuple[str, bytes]], seeds: list[int]) -> list[np.ndarray]:
    """Each client's request sent alone, one after the other (no batch company)."""
    answers = []
    for (name, data), fields in zip(uploads, _fields(seeds)):
        answer = httpx.post(f"{url}/v1/depth", files=[("image", (name, data, "image/png"))], data=fields, timeout=600)
        answer.raise_for_status()
        answers.append(np.load(io.BytesIO(answer.content)))
    return answers


def _histogram(text: str, name: str) -> dict[str, float]:
    """Cumulative bucket counts by upper bound, plus 'count' and 'sum'."""
    [family] = [f for f in text_string_to_metric_families(text) if f.name == name]
    return {s.labels["le"] if s.name.endswith("_bucket") else s.name.rsplit("_", 1)[-1]: s.value for s in family.samples}


def _batch_rows(text: str) -> list[tuple[str, str]]:
    """Images per forward pass (histogram) and passes shared by several requests."""
    sizes, requests = _histogram(text, "primedepth_batch_size"), _histogram(text, "primedepth_batch_requests")
    bounds = [bound for bound in sizes if bound not in ("count", "sum", "+Inf")]
    counts, previous, parts = {}, 0.0, []
    for bound in bounds:
        counts[bound], previous = sizes[bound] - previous, sizes[bound]
    parts = [f"{float(b):g}:{int(c)}" for b, c in counts.items() if c]
    mean = sizes["sum"] / sizes["count"] if sizes["count"] else 0.0
    shared = int(requests["count"] - requests.get("1.0", 0.0))
    return [("forward passes", f"{int(sizes['count'])}"), ("images per pass (histogram)", " ".join(parts) or "-"),
            ("mean images per pass", f"{mean:.2f}"), ("passes shared by >1 request", str(shared))]


def _measure(settings: ServeSettings, uploads: list[tuple[str, bytes]], rounds: int) -> list[tuple[str, str]]:
    seeds = [1000 + 7 * client for client in range(len(uploads))]
    service = DepthService(settings)
    with BackgroundServer(create_app(service)) as server:
        _wait_ready(server.url)
        alone = _alone(server.url, uploads, seeds)
        before = httpx.get(f"{server.url}/metrics").text
        results, seconds = drive(server.url, uploads, rounds, fields=_fields(seeds), time_limit_s=1800,
                                 request_timeout_s=1800)
        metrics = httpx.get(f"{server.url}/metrics").text
    difference = max((float(np.abs(np.load(io.BytesIO(r.content)) - alone[r.client]).max())
                      for r in results if r.status == 200), default=float("nan"))
    batch = _batch_rows(_minus(metrics, before))
    return [*latency_table(results, seconds), *batch, ("max |answer - alone|", f"{difference:.1e}")]


def _minus(after: str, before: str) -> str:
    """The batch histograms of the load only (the single requests before it subtracted)."""
    lines = []
    old = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in before.splitlines()
           if line.startswith("primedepth_batch_")}
    for line in after.splitlines():
        if line.startswith("primedepth_batch_"):
            name, value = line.rsplit(" ", 1)
            line = f"{name} {float(value) - old.get(name, 0.0)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or hub id (default: a tiny random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated server batch sizes to compare")
    parser.add_argument("--window-ms", type=float, default=10.0, help="batch window (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="requests per client (default: %(default)s)")
    parser.add_argument("--size", default="48x64", help="image HEIGHTxWIDTH (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = args.model or str(save_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    height, width = (int(side) for side in args.size.split("x"))
    uploads = _uploads(args.clients, height, width)
    columns = {}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        settings = ServeSettings(model=model, device=args.device, dtype=args.dtype, batch_size=batch_size,
                                 batch_window_ms=args.window_ms, max_queue=max(64, args.clients))
        columns[f"batch {batch_size}"] = dict(_measure(settings, uploads, args.rounds))
    print(f"model: {args.model or 'tiny random'}; {args.clients} clients x {args.rounds} requests, one seed each, "
          f"{width}x{height} PNG, outputs=npy, loopback")
    names = list(next(iter(columns.values())))
    width_ = max(10, *(len(columns[c][n]) for c in columns for n in names))
    print(f"| {'measure':<28} | " + " | ".join(f"{c:>{width_}}" for c in columns) + " |")
    print(f"|{'-' * 30}|" + "|".join("-" * (width_ + 2) for _ in columns) + "|")
    for name in names:
        print(f"| {name:<28} | " + " | ".join(f"{columns[c][name]:>{width_}}" for c in columns) + " |")


if __name__ == "__main__":
    main()
