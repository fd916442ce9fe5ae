"""`primedepth predict --engine ray --ray-address` on a real two-node cluster on this machine.

Two `ray start` nodes (see `cluster`), two logical CPUs each, loopback; the CLI runs as its own process,
as a user runs it. The actors spread over both nodes, the outputs equal the local engine's, and
when the second node's raylet is killed mid-job the job still ends with every output written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ..extras import require_extra

require_extra("ray", "ray")
require_extra("psutil", "ray")

from primedepth import cli  # noqa: E402

from .cluster import CLUSTER_ENV, TwoNodeCluster  # noqa: E402

IMAGES = 32


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodeCluster]:
    running = TwoNodeCluster()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """32 small images of one size."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("frames") / "frames"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(folder / f"f{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def reference(frames, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    assert cli.main(["predict", str(frames), "-o", str(out), "--model", str(tiny_model), "--seed", "0",
                     "--outputs", "npy", "--batch-size", "1"]) == 0
    return out


def _start_job(cluster: TwoNodeCluster, frames: Path, model: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "primedepth.cli", "predict", str(frames), "-o", str(out), "--model", str(model),
               "--seed", "0", "--outputs", "npy", "--batch-size", "1", "--engine", "ray",
               "--ray-address", cluster.address, "--actors", "2"]
    env = {**os.environ, **CLUSTER_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _outputs(out: Path) -> list[str]:
    return sorted(path.name for path in out.glob("*_depth.npy")) if out.is_dir() else []


def _assert_complete(out: Path, reference: Path) -> None:
    """Every output, equal to the local engine's to float rounding: each actor runs 2 torch
    threads here (2 CPUs per node), the reference 1, which moves values by ~1e-5 of the range."""
    assert _outputs(out) == [f"f{index:03d}_depth.npy" for index in range(IMAGES)]
    for name in _outputs(out):
        expected = np.load(reference / name)
        np.testing.assert_allclose(np.load(out / name), expected, rtol=0, atol=1e-4 * float(np.ptp(expected)))


def test_actors_on_both_nodes_and_a_node_lost_mid_job_still_every_output(cluster, frames, tiny_model, reference,
                                                                         tmp_path):
    """One job (a job costs a driver and two actors starting): an actor on each node, then the
    second node's raylet killed mid-job, once both actors ran and the first outputs are written;
    the job still ends with every output, equal to the local engine's, and nothing failed."""
    out = tmp_path / "out"
    job = _start_job(cluster, frames, tiny_model, out)
    deadline = time.monotonic() + 300
    seen = {"head": 0, "worker": 0}
    while job.poll() is None and time.monotonic() < deadline and not (min(seen.values()) and _outputs(out)):
        counts = cluster.actors_by_node()
        seen = {node: max(seen[node], counts[node]) for node in seen}
        time.sleep(0.2)
    assert job.poll() is None, job.stdout.read()
    assert seen == {"head": 1, "worker": 1}, seen
    cluster.kill_worker_node()  # mid-job: the first outputs are there, the rest is not
    assert len(_outputs(out)) < IMAGES
    log, _ = job.communicate(timeout=600)
    assert job.returncode == 0, log
    counts = re.search(r"done (\d+), skipped (\d+) \(outputs existed\), failed (\d+)", log)
    assert counts and int(counts[1]) + int(counts[2]) == IMAGES and counts[3] == "0", log
    _assert_complete(out, reference)
