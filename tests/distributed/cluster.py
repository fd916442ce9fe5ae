"""A real two-node Ray cluster on one machine, for the tests: `ray start --head` and a second
`ray start --address`, separate processes on loopback, two logical CPUs (one actor and Ray
Data's own tasks) and a small object store each.

Every process of the cluster carries its own temporary folder in its command line; `stop` ends
exactly those processes, by id (never `ray stop`, which would end every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

OBJECT_STORE_BYTES = 80 * 1024**2
# Fast node-death detection (a killed raylet is noticed in seconds, not half a minute), and no
# token authentication: every process is on loopback and started here (a real cluster would
# share RAY_AUTH_TOKEN between its nodes and drivers instead).
CLUSTER_ENV = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
               "RAY_health_check_initial_delay_ms": "1000", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0"}
ACTOR_TITLE = "DepthPredictor"
# Logical CPUs per node: an actor holds one, Ray Data's small tasks (listing, re-blocking) the other.
CPUS_PER_NODE = 2
# Seconds the cluster's processes get to end on SIGTERM before SIGKILL (a test cluster keeps
# nothing worth a clean shutdown).
STOP_GRACE_S = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_binary() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class TwoNodeCluster:
    """Start with `start`; `address` is what `--ray-address` takes; `stop` ends it."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pdray", dir="/tmp")))
    port: int = field(default_factory=free_port)
    worker_node_port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _node_ports(self, node_manager_port: int) -> list[str]:
        """Every port a node opens, chosen free here: two nodes on one machine must not clash."""
        return ["--node-manager-port", str(node_manager_port), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--min-worker-port", "0", "--max-worker-port", "0"]

    def start(self) -> None:
        common = ["--num-cpus", str(CPUS_PER_NODE), "--object-store-memory", str(OBJECT_STORE_BYTES),
                  "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        env = {**os.environ, **CLUSTER_ENV}
        head = [_ray_binary(), "start", "--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
                "--include-dashboard", "false", "--ray-client-server-port", str(free_port()), *common,
                *self._node_ports(free_port())]
        worker = [_ray_binary(), "start", "--address", self.address, *common, *self._node_ports(self.worker_node_port)]
        for command in (head, worker):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
            if done.returncode != 0:
                self.stop()
                raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def processes(self) -> list[psutil.Process]:
        """The cluster's processes: those whose command line names its temporary folder, and
        their descendants (workers and actors)."""
        found: dict[int, psutil.Process] = {}
        for process in psutil.process_iter(["cmdline"]):
            if str(self.temp_dir) in " ".join(process.info["cmdline"] or []):
                found[process.pid] = process
                try:
                    found.update({child.pid: child for child in process.children(recursive=True)})
                except psutil.Error:
                    continue
        return list(found.values())

    def raylet(self, node_manager_port: int) -> psutil.Process | None:
        """The raylet of the node that listens on `node_manager_port`."""
        for process in self.processes():
            try:
                cmdline = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if "raylet" in process.name() and f"--node_manager_port={node_manager_port}" in cmdline:
                return process
        return None

    def actors_by_node(self) -> dict[str, int]:
        """How many of our actors run under each node's raylet ('head' / 'worker')."""
        counts = {"head": 0, "worker": 0}
        worker_raylet = self.raylet(self.worker_node_port)
        below_worker = set()
        if worker_raylet is not None:
            try:
                below_worker = {child.pid for child in worker_raylet.children(recursive=True)}
            except psutil.Error:
                pass
        for process in self.processes():
            try:
                title = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if ACTOR_TITLE in title:
                counts["worker" if process.pid in below_worker else "head"] += 1
        return counts

    def kill_worker_node(self) -> None:
        """SIGKILL the second node's raylet, as a lost machine."""
        raylet = self.raylet(self.worker_node_port)
        if raylet is None:
            raise RuntimeError("the worker node's raylet is not running")
        raylet.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        """End every process of this cluster (SIGTERM, then SIGKILL), by id."""
        processes = self.processes()
        for process in processes:
            try:
                process.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_S)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                pass
        time.sleep(0.5)
        subprocess.run(["rm", "-rf", str(self.temp_dir)], check=False)
