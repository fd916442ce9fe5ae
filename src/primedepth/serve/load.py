"""A bounded load generator for the HTTP API: the load test and `benchmarks/serve_load.py`.

`drive` runs `clients` concurrent clients, each sending `rounds` requests with its own image
(and, if given, its own form fields: a seed each, say), and stops by itself (a fixed count, an
overall time limit). It is meant for a server on this
machine (loopback), never for someone else's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import numpy as np

__all__ = ["LoadResult", "drive", "latency_table"]


@dataclass
class LoadResult:
    """One request of the load: who sent which image, what came back, how long it took."""

    client: int
    round: int
    status: int
    seconds: float
    content: bytes


async def _client(http: httpx.AsyncClient, url: str, client: int, upload: tuple[str, bytes], rounds: int,
                  fields: dict[str, str]) -> list[LoadResult]:
    results = []
    for round_ in range(rounds):
        started = time.perf_counter()
        answer = await http.post(f"{url}/v1/depth", files=[("image", (*upload, "application/octet-stream"))], data=fields)
        results.append(LoadResult(client, round_, answer.status_code, time.perf_counter() - started, answer.content))
    return results


async def _drive(url: str, uploads: Sequence[tuple[str, bytes]], rounds: int, fields: Sequence[dict[str, str]],
                 headers: dict[str, str], request_timeout_s: float) -> list[LoadResult]:
    limits = httpx.Limits(max_connections=len(uploads), max_keepalive_connections=len(uploads))
    async with httpx.AsyncClient(timeout=request_timeout_s, limits=limits, headers=headers) as http:
        groups = await asyncio.gather(*(_client(http, url, i, upload, rounds, fields[i])
                                        for i, upload in enumerate(uploads)))
    return [result for group in groups for result in group]


def drive(url: str, uploads: Sequence[tuple[str, bytes]], rounds: int,
          fields: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
          headers: dict[str, str] | None = None, time_limit_s: float = 300.0,
          request_timeout_s: float = 120.0) -> tuple[list[LoadResult], float]:
    """One client per (file name, bytes) upload, `rounds` requests each; (results, wall seconds).
    `fields`: form fields for every client, or a list with each client's own."""
    started = time.perf_counter()
    per_client = [dict(f) for f in fields] if isinstance(fields, Sequence) else [dict(fields or {})] * len(uploads)
    if len(per_client) != len(uploads):
        raise ValueError(f"{len(per_client)} sets of fields for {len(uploads)} clients")
    coroutine = _drive(url, uploads, rounds, per_client, headers or {}, request_timeout_s)
    results = asyncio.run(asyncio.wait_for(coroutine, time_limit_s))
    return results, time.perf_counter() - started


def latency_table(results: Sequence[LoadResult], seconds: float) -> list[tuple[str, str]]:
    """(measure, value) rows: request count, errors, latency percentiles, throughput."""
    latencies = np.array([r.seconds for r in results if r.status == 200]) * 1000
    rows = [("requests", str(len(results))), ("errors", str(sum(r.status != 200 for r in results)))]
    if latencies.size:
        for percentile in (50, 90, 95, 99):
            rows.append((f"latency p{percentile} (ms)", f"{np.percentile(latencies, percentile):.1f}"))
        rows.append(("latency max (ms)", f"{latencies.max():.1f}"))
    rows.append(("throughput (requests/s)", f"{len(results) / seconds:.2f}" if seconds > 0 else "-"))
    return rows
