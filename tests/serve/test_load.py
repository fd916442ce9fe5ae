"""A bounded load on loopback: 16 concurrent clients, each with its own image and its own seed.

No request may be lost, fail, or get another request's depth; requests with different seeds
must share forward passes, and each answer must equal the answer to the same request sent
alone. Latency numbers are for `benchmarks/serve_load.py`, not for assertions.
"""

from __future__ import annotations

import io

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

import primedepth
from primedepth.serve.load import drive

from .helpers import http, live_server, png_bytes, random_image

__all__ = ["live_server"]  # the fixture, imported for pytest

CLIENTS = 16
ROUNDS = 2
BATCH = 4


def histogram(metrics_text: str, name: str) -> dict[str, float]:
    """The samples of one histogram: buckets by upper bound ('le'), plus 'count' and 'sum'."""
    [family] = [f for f in text_string_to_metric_families(metrics_text) if f.name == name]
    values = {}
    for sample in family.samples:
        key = sample.labels.get("le") if sample.name.endswith("_bucket") else sample.name.rsplit("_", 1)[-1]
        values[key] = sample.value
    return values


def test_concurrent_clients_with_their_own_seeds_share_batches_and_get_their_own_depth(live_server, reference):
    server = live_server(batch_size=BATCH, batch_window_ms=50, max_queue=CLIENTS)
    images = [random_image(100 + i) for i in range(CLIENTS)]
    seeds = [1000 + 7 * i for i in range(CLIENTS)]
    alone = [primedepth.predict(image, model=reference, seed=seed)[0].depth for image, seed in zip(images, seeds)]
    results, _ = drive(server.url, [(f"client{i}.png", png_bytes(image)) for i, image in enumerate(images)], ROUNDS,
                       fields=[{"outputs": "npy", "seed": str(seed)} for seed in seeds], time_limit_s=150)
    assert len(results) == CLIENTS * ROUNDS and all(r.status == 200 for r in results), {r.status for r in results}
    for result in results:
        depth = np.load(io.BytesIO(result.content))
        errors = [float(np.abs(depth - candidate).max()) for candidate in alone]
        # Its own image and seed: the single-request answer, up to the float rounding of batching.
        assert int(np.argmin(errors)) == result.client and errors[result.client] < 1e-4, errors
    text = http.get(f"{server.url}/metrics").text
    sizes, requests = histogram(text, "primedepth_batch_size"), histogram(text, "primedepth_batch_requests")
    assert sizes["sum"] == CLIENTS * ROUNDS and sizes["count"] < sizes["sum"]  # some batch held several images
    assert requests["count"] - requests["1.0"] > 0  # ... of different requests, with different seeds
