"""The FastAPI app: health, readiness, metrics and `POST /v1/depth` over one `DepthService`.

`create_app` builds the same app for `primedepth serve`, `primedepth demo` (demo mounted, API
off), the tests and Ray Serve (`primedepth.serve.ray_serve`). Interactive docs are at /docs.
Around everything: `CountAnswers` (every answer counted by status), `Authentication` (the key,
for every route but /healthz and a minimal /readyz; browsers sign in at /login) and `BodyLimit`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InputError, first_line
from ..io.names import safe_output_name
from ..io.outputs import DEPTH_QUANTITY, FRAME_OUTPUT_KINDS
from ..processing import MAX_ASPECT_RATIO, MIN_MAX_SIZE
from .auth import AUTHENTICATED, Authentication
from .errors import ApiError
from .limits import BodyLimit
from .metrics import CONTENT_TYPE_LATEST, CountAnswers
from .options import DepthRequest, parse_request
from .responses import build_response, encode_answer, unique_names
from .service import DepthService
from .uploads import decode_upload, safe_stem

__all__ = ["create_app"]

DESCRIPTION = f"""PrimeDepth monocular depth over HTTP. The depth is {DEPTH_QUANTITY}: relative,
with unknown scale and shift. `POST /v1/depth` takes multipart images and returns one file when
one image and one output are asked for, else a zip with `metadata.json`. A server with a key wants
it on every route but /healthz and /readyz: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
OUTPUTS_HELP = f"comma-separated kinds: {', '.join(FRAME_OUTPUT_KINDS)} (default png16)"
IMAGE_FIELD_HELP = ("send each image's bytes as a multipart file part named 'image' "
                    "(server-side paths and URLs are not accepted)")
_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


def _validation_message(problems: Sequence[Any]) -> str:
    """FastAPI's validation errors as one sentence; an 'image' that is not a file says what to send."""
    parts = []
    for problem in problems:
        location = [str(part) for part in problem.get("loc", ())[1:]]
        if location[:1] == ["image"]:
            parts.append(f"image: {IMAGE_FIELD_HELP}")
        else:
            parts.append(f"{'.'.join(location) or 'request'}: {problem.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def _install_error_handlers(app: FastAPI, service: DepthService) -> None:
    """Every error is JSON naming the problem, and counted by kind."""

    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        service.metrics.errors.labels(error.kind).inc()
        return _error_response(error)

    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(_, ApiError(422, "invalid_request", _validation_message(error.errors())))

    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_KINDS.get(error.status_code, "http_error")
        return await api_error(_, ApiError(error.status_code, kind, str(error.detail)))

    async def internal_error(_: Request, error: Exception) -> JSONResponse:
        service.metrics.errors.labels("internal_error").inc()
        return _error_response(ApiError(500, "internal_error", f"the server failed: {first_line(error)}"))

    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _health_routes(service: DepthService) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (the model may still be loading)."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """The model is loaded and a warm-up prediction ran: send traffic. Without the key (when
        one is set) only the status: no model, device or error text."""
        status = "ready" if service.ready else "failed" if service.error else "loading"
        code = 200 if service.ready else 503
        if not request.scope.get(AUTHENTICATED, False):
            return JSONResponse({"status": status}, status_code=code)
        if service.ready:
            return JSONResponse({"status": status, **service.model_info})
        return JSONResponse({"status": status, "error": service.error}, status_code=code)

    return router


def _output_name(filename: str | None, fallback: str) -> str:
    """An output name from an upload's file name: its stem only (no folders), checked by the one
    name rule of every engine (`primedepth.io.names.safe_output_name`)."""
    try:
        return str(safe_output_name(safe_stem(filename, fallback)))
    except InputError:
        return fallback


def _limits(service: DepthService) -> dict[str, Any]:
    settings = service.settings
    return {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
            "max_images": min(settings.max_images, settings.max_queue), "max_queue": settings.max_queue,
            "max_queue_pixels": settings.max_queue_pixels, "max_size": settings.max_size,
            "min_max_size": MIN_MAX_SIZE, "max_aspect_ratio": MAX_ASPECT_RATIO,
            "timeout_s": settings.timeout_s, "batch_size": service.batch_size,
            "batch_window_ms": settings.batch_window_ms}


async def _read_uploads(service: DepthService, uploads: list[UploadFile]) -> tuple[list[str], list[np.ndarray]]:
    """Decode every upload off the event loop; the first bad one names itself in a 4xx."""
    settings = service.settings
    stems, images = [], []
    for position, upload in enumerate(uploads):
        label = upload.filename or f"image {position + 1}"
        data = await upload.read(settings.max_upload_bytes + 1)
        image = await asyncio.to_thread(decode_upload, data, label, settings.max_pixels, settings.max_upload_bytes)
        stems.append(_output_name(upload.filename, f"image_{position}"))
        images.append(image)
    return unique_names(stems), images


async def _answer(service: DepthService, uploads: list[UploadFile], request: DepthRequest) -> Response:
    """Check, decode, predict (batched with other requests), encode."""
    if not uploads:
        raise ApiError(422, "no_image", "send at least one image as the multipart field 'image'")
    service.check_request(request, len(uploads))  # too many or a busy server: said before decoding anything
    names, images = await _read_uploads(service, uploads)
    predictions = await service.predict(images, request)
    sizes = [service.processing_size(image.shape[0], image.shape[1], request.max_size) for image in images]
    files, metadata = await asyncio.to_thread(encode_answer, service.model_info, request, names, sizes, predictions)
    return build_response(files, metadata)


def _api_routes(service: DepthService) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/depth", tags=["depth"], response_class=Response)
    async def depth(
        image: Annotated[list[UploadFile], File(description="one or more image files (field repeated)")],
        outputs: Annotated[str | None, Form(description=OUTPUTS_HELP)] = None,
        max_size: Annotated[int | None, Form(description="longer side to downscale to (default: the server's)")] = None,
        seed: Annotated[int | None, Form(description="noise seed (default: the server's, 0)")] = None,
        prompt: Annotated[str | None, Form(description="text prompt (default: the model's, a BLIP-2 caption for the "
                                                       "official model, or \"\" where captioning is unavailable)")] = None,
        colormap: Annotated[str | None, Form(description="matplotlib colormap of 'color' (default: the server's, Spectral_r: near is red)")] = None,
    ) -> Response:
        """Depth for uploaded images: a file for one image and one output, else a zip."""
        request = parse_request(service.settings, outputs, max_size, seed, prompt, colormap)
        return await _answer(service, image, request)

    @router.get("/v1/info", tags=["depth"])
    async def info() -> dict[str, Any]:
        """The model, the output kinds and this server's limits."""
        return {**service.model_info, "ready": service.ready, "outputs": list(FRAME_OUTPUT_KINDS),
                "depth": DEPTH_QUANTITY, "captioning": service.captioning_status, "limits": _limits(service)}

    @router.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics: answers by status, errors by kind, queue, batch sizes, latency
        (needs the key unless the server was started with --metrics-public)."""
        return Response(service.metrics.export(), media_type=CONTENT_TYPE_LATEST)

    return router


def _lifespan(service: DepthService) -> Any:
    """Load the model in the background: /healthz answers at once, /readyz once it is warm."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup = asyncio.create_task(service.start())
        try:
            yield
        finally:
            if not startup.done():
                startup.cancel()
            await service.stop()

    return lifespan


def create_app(service: DepthService, api: bool = True, demo_path: str | None = None) -> FastAPI:
    """The server's ASGI app. `api`: the depth API and metrics; `demo_path`: mount the Gradio
    demo there, on the same service (and so the same pipeline and batcher)."""
    app = FastAPI(title="PrimeDepth", version=__version__, description=DESCRIPTION, lifespan=_lifespan(service))
    settings = service.settings
    count_error = service.metrics.errors.labels
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, on_refused=lambda kind: count_error(kind).inc())
    home = (demo_path.rstrip("/") + "/") if demo_path is not None else "/docs"
    app.add_middleware(Authentication, key=settings.api_key, metrics_public=settings.metrics_public,
                       on_refused=lambda kind: count_error(kind).inc(), home=home)
    app.add_middleware(CountAnswers, metrics=service.metrics, demo_path=demo_path)  # outermost: sees every answer
    _install_error_handlers(app, service)
    app.include_router(_health_routes(service))
    if api:
        app.include_router(_api_routes(service))
    if demo_path is not None:
        from .demo import mount_demo  # lazy: gradio takes seconds to import

        mount_demo(app, service, demo_path)
    return app
