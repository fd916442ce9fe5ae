"""`primedepth serve`: the HTTP API (FastAPI on uvicorn), optionally with the demo, or on Ray Serve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..constants import OFFICIAL_REPO_ID
from ..devices import DEVICE_CHOICES, DTYPE_CHOICES
from ..errors import InputError
from ..serve.settings import API_KEY_ENV, API_KEY_FILE_ENV, MEBIBYTE, ServeSettings, read_key_file
from .predict import _batch_size  # the same 'auto' or N as `primedepth predict --batch-size`

DESCRIPTION = """\
Serve depth over HTTP: POST /v1/depth (multipart images), /healthz, /readyz, /metrics, and
the OpenAPI docs at /docs. The model loads once at start-up; /readyz answers 200 after a
warm-up prediction. Depth is affine-invariant inverse depth (relative: larger = closer).

Answers are one file when one image and one output kind are asked for, else a zip of the
files plus metadata.json; the metadata (model, revision, seed, prompt, processing size) is
also in the PrimeDepth-Metadata header. Concurrent requests are batched (--batch-size,
--batch-window-ms), also when their seeds, prompts and sizes differ.

With a key (--api-key-file FILE, $PRIMEDEPTH_API_KEY or $PRIMEDEPTH_API_KEY_FILE) every route
needs it (Authorization: Bearer KEY or X-API-Key: KEY): the API, the demo and its Gradio API,
/docs, /openapi.json and /metrics (unless --metrics-public); only /healthz and a bare /readyz
stay open. Browser users enter the key once at /login (a session cookie). Only 127.0.0.1 is
bound unless --host is given, and another address needs a key or, loudly, --insecure-no-auth.
"""

EPILOG = f"""\
examples:
  primedepth serve --model ./primedepth-model
  primedepth serve --demo                      # API, plus the browser demo at /demo
  primedepth serve --host 0.0.0.0 --api-key-file /run/secrets/primedepth --demo --device cuda --dtype bf16
  primedepth serve --ray --replicas 2 --gpus-per-replica 1
  curl -F image=@photo.jpg -F outputs=png16 http://127.0.0.1:8000/v1/depth -o photo_depth.png

default model: {OFFICIAL_REPO_ID} (downloaded once, then cached).
"""

_DEFAULTS = ServeSettings.__dataclass_fields__
INTERRUPTED_EXIT, TERMINATED_EXIT = 130, 143  # as `primedepth.cli`


def _default(name: str) -> object:
    return _DEFAULTS[name].default


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model, where, in which precision."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH_OR_ID", help=f"model folder, official .ckpt or hub id (default: {OFFICIAL_REPO_ID})")
    group.add_argument("--revision", help="hub branch, tag or commit of --model")
    group.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    group.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES, help="precision (default: fp32; bf16 on GPUs)")
    group.add_argument("--offload", action="store_true", help="keep models in CPU memory, move each stage to the GPU")


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """Defaults and caps of what one request may ask for."""
    group = parser.add_argument_group("requests")
    group.add_argument("--max-size", type=int, default=_default("max_size"), metavar="PIXELS",
                       help="default processing size (longer side), also the largest a request may ask (default: %(default)s)")
    group.add_argument("--seed", type=int, default=_default("seed"), help="seed when a request gives none (default: %(default)s)")
    group.add_argument("--prompt", help="prompt when a request gives none (default: the model's)")
    group.add_argument("--colormap", default=_default("colormap"), metavar="NAME", help="default colour map (default: %(default)s)")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Address, batching and the limits every upload is checked against."""
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=_default("host"), help="address to bind (default: %(default)s, this machine only)")
    group.add_argument("--port", type=int, default=_default("port"), help="port (default: %(default)s)")
    group.add_argument("--insecure-no-auth", action="store_true", help="allow another address without an API key (loud warning)")
    group.add_argument("--batch-size", type=_batch_size, default=_default("batch_size"), metavar="N",
                       help="images per forward pass; auto = 1 on the CPU, by free memory on a GPU (default: auto)")
    group.add_argument("--batch-window-ms", type=float, default=_default("batch_window_ms"), metavar="MS",
                       help="how long a batch waits for more requests (default: %(default)s)")
    group.add_argument("--max-queue", type=int, default=_default("max_queue"), metavar="IMAGES",
                       help="images waiting or running before 503 + Retry-After (default: %(default)s)")
    group.add_argument("--max-queue-megapixels", type=float, default=_default("max_queue_pixels") / 1e6, metavar="MP",
                       help="input megapixels waiting or running before 503; a request above it gets 413 "
                            "(default: %(default)s)")
    group.add_argument("--max-upload-mb", type=float, default=_default("max_upload_bytes") / MEBIBYTE, metavar="MB",
                       help="largest image upload (default: %(default)s)")
    group.add_argument("--max-megapixels", type=float, default=_default("max_pixels") / 1e6, metavar="MP",
                       help="largest image in pixels, refused from its header (default: %(default)s)")
    group.add_argument("--max-images", type=int, default=_default("max_images"), metavar="N",
                       help="images per request (default: %(default)s)")
    group.add_argument("--timeout", type=float, default=_default("timeout_s"), metavar="SECONDS",
                       help="per-request limit, then 504 (default: %(default)s)")
    group.add_argument("--demo-max-mb", type=float, default=_default("max_demo_bytes") / MEBIBYTE, metavar="MB",
                       help="disk for the demo's result files; the oldest are deleted beyond it (default: %(default)s)")
    group.add_argument("--demo-max-points", type=int, default=_default("max_display_points"), metavar="N",
                       help="points of the demo's PLY and faces of its GLB (default: %(default)s)")
    keys = parser.add_argument_group("authentication")
    keys.add_argument("--api-key-file", metavar="FILE",
                      help=f"require the key in FILE (one line) on every route but /healthz and /readyz; "
                           f"default: ${API_KEY_ENV}, or the file ${API_KEY_FILE_ENV} names")
    keys.add_argument("--api-key", help="the key itself (visible to other users in `ps`: prefer --api-key-file)")
    keys.add_argument("--metrics-public", action="store_true", help="serve /metrics without the key")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` sub-command."""
    parser = subparsers.add_parser("serve", help="HTTP API for depth (FastAPI), optionally with the demo or on Ray Serve",
                                   description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_request_arguments(parser)
    add_server_arguments(parser)
    parser.add_argument("--demo", action="store_true", help="also serve the browser demo at /demo (same model)")
    ray = parser.add_argument_group("Ray Serve (pip install 'ray[serve]')")
    ray.add_argument("--ray", action="store_true", help="deploy the same app on Ray Serve (one model per replica)")
    ray.add_argument("--ray-address", metavar="ADDRESS", help="existing Ray cluster (default: start a local one)")
    ray.add_argument("--replicas", type=int, default=1, help="replicas (default: %(default)s)")
    ray.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica (default: %(default)s)")
    ray.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (default: %(default)s)")
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """ServeSettings from the parsed options (the API key also from the environment)."""
    if args.api_key_file and args.api_key:
        raise InputError("give either --api-key-file or --api-key, not both")
    key = read_key_file(args.api_key_file) if args.api_key_file else args.api_key
    return ServeSettings(
        model=args.model, revision=args.revision, device=args.device, dtype=args.dtype, offload=args.offload,
        host=args.host, port=args.port, api_key=key, insecure_no_auth=args.insecure_no_auth,
        metrics_public=args.metrics_public, max_queue_pixels=int(args.max_queue_megapixels * 1e6),
        max_demo_bytes=int(args.demo_max_mb * MEBIBYTE), max_display_points=args.demo_max_points,
        batch_size=args.batch_size, batch_window_ms=args.batch_window_ms, max_queue=args.max_queue,
        max_upload_bytes=int(args.max_upload_mb * MEBIBYTE), max_pixels=int(args.max_megapixels * 1e6),
        max_images=args.max_images, timeout_s=args.timeout, max_size=args.max_size, seed=args.seed,
        prompt=args.prompt, colormap=args.colormap,
    ).with_env_key()


def serve_until_stopped(command: str, serve: Callable[[], int]) -> int:
    """Run a server; a signal ends it after uvicorn's graceful shutdown (which re-raises it: the
    CLI turns SIGTERM into `Terminated`, a KeyboardInterrupt). Says what stopping a server means:
    it wrote no partial outputs, its requests in flight were answered or cancelled."""
    try:
        return serve()
    except KeyboardInterrupt as stop:
        terminated = type(stop) is not KeyboardInterrupt  # the CLI's Terminated (SIGTERM)
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"primedepth {command}: {how}; the server stopped after answering or cancelling the requests in flight",
              file=sys.stderr, flush=True)
        return TERMINATED_EXIT if terminated else INTERRUPTED_EXIT


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    settings = settings_from_args(args)
    if args.ray:
        from ..serve.ray_serve import RayOptions, serve_on_ray  # lazy: ray is an optional extra

        options = RayOptions(args.ray_address, args.replicas, args.gpus_per_replica, args.cpus_per_replica)
        return serve_until_stopped("serve", lambda: serve_on_ray(settings, options, demo=args.demo))
    from ..serve.server import DEMO_PATH, run_server  # lazy: fastapi, uvicorn, torch

    return serve_until_stopped("serve", lambda: run_server(settings, api=True, demo_path=DEMO_PATH if args.demo else None))
