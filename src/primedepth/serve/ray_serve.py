"""`primedepth serve --ray`: the same FastAPI app as a Ray Serve deployment.

Each replica loads one model and builds the app of `primedepth.serve.app` on it; batching is
Ray's `@serve.batch` (up to the batch size, within the batch window) feeding the replica's
worker thread, so a team grows from one process to a cluster on the same code path. Ray's own
request queue is capped at the server's `max_queue` (503 when full), as is each replica's.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from ..errors import InputError
from .app import create_app
from .batching import DepthTask, settle
from .server import DEMO_PATH
from .service import DepthService
from .settings import ServeSettings, check_bind

__all__ = ["RayOptions", "build_application", "serve_on_ray", "check_demo_replicas", "APP_NAME"]

APP_NAME = "primedepth"
DEFAULT_RAY_BATCH = 8  # replaced by the replica's batch size when it starts
STOP_POLL_S = 0.5


@dataclass
class RayOptions:
    """Where and how wide: a cluster address (None: start Ray here), replicas and their resources."""

    address: str | None = None
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0


class RayBatcher:
    """Ray Serve's `@serve.batch` in front of the service's worker thread."""

    def __init__(self, service: DepthService) -> None:
        self.service = service
        self._batched.set_max_batch_size(service.batch_size)
        self._batched.set_batch_wait_timeout_s(service.settings.batch_window_ms / 1000)

    @serve.batch(max_batch_size=DEFAULT_RAY_BATCH, batch_wait_timeout_s=0.005)
    async def _batched(self, tasks: list[DepthTask]) -> list[Any]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.service.executor, self.service.run_batch, tasks)
        finally:
            settle(tasks)  # the worker is done with them: their queue places are free

    async def submit(self, tasks: list[DepthTask]) -> list[Any]:
        """The results of one request's tasks, each batched with other requests' tasks. A request
        that gives up (timeout) leaves its tasks running (shielded), so they stay counted in the
        queue until the worker is done with them."""
        results = await asyncio.gather(*(asyncio.shield(self._batched(task)) for task in tasks))
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
        return list(results)


class RayDepthService(DepthService):
    """A `DepthService` batching with `@serve.batch`, ready as soon as its replica is built."""

    def make_batcher(self) -> RayBatcher:
        return RayBatcher(self)

    def activate(self) -> None:
        """Load, warm up and accept requests (in the replica's constructor, before traffic)."""
        self.prepare()
        self.batcher = self.make_batcher()
        self.ready = True
        self.metrics.ready.set(1)


@serve.ingress()
class PrimeDepthDeployment:
    """One replica: one model, the app of `create_app` on it."""

    def __init__(self, settings: ServeSettings, demo: bool = False) -> None:
        self.service = RayDepthService(settings)
        self.service.activate()
        self.demo = demo

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.service, api=True, demo_path=DEMO_PATH if self.demo else None)

    def check_health(self) -> None:
        """Ray's health check: a replica whose model is not ready is restarted."""
        if not self.service.ready:
            raise RuntimeError(self.service.error or "the model is not ready")


def build_application(settings: ServeSettings, options: RayOptions, demo: bool = False) -> Any:
    """The Ray Serve application: `options.replicas` replicas of the deployment (one with the demo)."""
    check_demo_replicas(options, demo)
    deployment = serve.deployment(PrimeDepthDeployment, name="PrimeDepth").options(
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica},
        max_ongoing_requests=settings.max_queue,
        max_queued_requests=settings.max_queue,
    )
    return deployment.bind(settings, demo)


def check_demo_replicas(options: RayOptions, demo: bool) -> None:
    """The demo needs one process (Gradio's queue, its result files): refuse more replicas."""
    if demo and options.replicas > 1:
        raise InputError(
            f"--ray --demo serves the browser demo from one process, so it needs --replicas 1 (got "
            f"{options.replicas}); scale the API with replicas and run the demo apart "
            "(primedepth serve --ray --replicas N, plus primedepth demo or primedepth serve --demo)"
        )


def serve_on_ray(settings: ServeSettings, options: RayOptions, demo: bool = False,
                 ray_init: dict[str, Any] | None = None, stop: threading.Event | None = None) -> int:
    """Start (or join) Ray, deploy, and serve until interrupted (or until `stop` is set).

    `ray_init`: extra `ray.init` arguments for a local instance (the tests keep it small)."""
    check_bind(settings, demo=demo)
    check_demo_replicas(options, demo)
    if options.address:
        ray.init(address=options.address)
    else:
        ray.init(include_dashboard=False, **(ray_init or {}))
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        print(f"primedepth: Ray Serve on http://{settings.host}:{settings.port} "
              f"({options.replicas} replica(s) of {settings.model_name}{', demo at /demo' if demo else ''})",
              file=sys.stderr, flush=True)
        serve.run(build_application(settings, options, demo), name=APP_NAME, route_prefix="/", blocking=False)
        waiting = stop or threading.Event()
        while not waiting.wait(STOP_POLL_S):
            pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
