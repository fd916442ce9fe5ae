"""Running the app on uvicorn: in the foreground for the CLI, in a thread for tests and benchmarks."""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

import uvicorn

from .app import create_app
from .service import DepthService
from .settings import LOOPBACK_HOST, ServeSettings, check_bind

__all__ = ["build_server", "run_server", "BackgroundServer", "DEMO_PATH"]

DEMO_PATH = "/demo"
START_TIMEOUT_S = 60.0


def build_server(settings: ServeSettings, api: bool = True, demo_path: str | None = None) -> tuple[uvicorn.Server, DepthService]:
    """The uvicorn server of `primedepth serve` / `demo` (not started); it stops itself when
    the model cannot be loaded."""
    check_bind(settings, demo=demo_path is not None)
    service = DepthService(settings)
    app = create_app(service, api=api, demo_path=demo_path)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                                           server_header=False, timeout_graceful_shutdown=5))
    service.on_failure = lambda _: setattr(server, "should_exit", True)
    return server, service


def run_server(settings: ServeSettings, api: bool = True, demo_path: str | None = None) -> int:
    """Serve until interrupted; 1 when the model could not be loaded (the server then stops)."""
    server, service = build_server(settings, api, demo_path)
    where = f"http://{settings.host}:{settings.port}"
    parts = [f"API {where}/v1/depth, docs {where}/docs"] if api else []
    if demo_path is not None:
        parts.append(f"demo {where}{demo_path.rstrip('/')}/")
    print(f"primedepth: loading {settings.model_name}; {', '.join(parts)}", file=sys.stderr, flush=True)
    server.run()
    if service.error:
        print(f"primedepth: error: {service.error}", file=sys.stderr)
        return 1
    return 0


class BackgroundServer:
    """An app on 127.0.0.1 at an ephemeral port, served from a thread (tests, benchmarks).

    `with BackgroundServer(app) as server: httpx.get(server.url + "/healthz")`; on exit the
    server shuts down (lifespan included) and the thread ends.
    """

    def __init__(self, app: Any, host: str = LOOPBACK_HOST) -> None:
        self.app = app
        self.host = host
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", server_header=False, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="primedepth-test-server")
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
