"""A bounded load on loopback: 16 concurrent clients, each with its own image, 4 requests each.

No request may be lost, fail, or get another request's depth, and the server must have grouped
requests into batches. Latency numbers are for `benchmarks/serve_load.py`, not for assertions.
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
ROUNDS = 4
BATCH = 4


def batch_sizes(metrics_text: str) -> tuple[float, float]:
    """(batches, images) of the batch-size histogram."""
    [family] = [f for f in text_string_to_metric_families(metrics_text) if f.name == "primedepth_batch_size"]
    values = {sample.name: sample.value for sample in family.samples}
    return values["primedepth_batch_size_count"], values["primedepth_batch_size_sum"]


def test_concurrent_clients_get_their_own_depth_in_shared_batches(live_server, reference):
    server = live_server(batch_size=BATCH, batch_window_ms=20, max_queue=CLIENTS)
    images = [random_image(100 + i) for i in range(CLIENTS)]
    expected = [p.depth for p in primedepth.predict(images, model=reference, batch_size=BATCH)]
    results, _ = drive(server.url, [(f"client{i}.png", png_bytes(image)) for i, image in enumerate(images)], ROUNDS,
                       fields={"outputs": "npy"}, time_limit_s=150)
    assert len(results) == CLIENTS * ROUNDS and all(r.status == 200 for r in results), {r.status for r in results}
    for result in results:
        depth = np.load(io.BytesIO(result.content))
        errors = [float(np.abs(depth - candidate).mean()) for candidate in expected]
        # Its own image's depth, up to the float rounding of other batch compositions.
        assert int(np.argmin(errors)) == result.client and errors[result.client] < 1e-3, errors
    batches, images_predicted = batch_sizes(http.get(f"{server.url}/metrics").text)
    assert images_predicted == CLIENTS * ROUNDS and batches < images_predicted  # some batch held several images
