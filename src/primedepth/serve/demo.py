"""The browser demo (Gradio Blocks) on a `DepthService`: the API's pipeline, batcher and limits.

An image tab (upload or an example photo; input and colour depth side by side in a slider;
16-bit PNG, ``.npy``, point cloud and mesh downloads; the mesh in a 3D viewer; max size, seed,
prompt and colour map) and a video tab for short clips. Depth goes through `DepthService.predict` (images, batched with API requests) or
the job engine on the service's worker thread (videos), and files are written by
`primedepth.io.write_outputs`: what the demo offers is what `primedepth predict` writes.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import math
import shutil
import tempfile
import threading
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .. import geometry, io
from ..errors import InputError
from ..io.video import read_video
from ..jobs import JobOptions, run_job
from ..processing import MIN_MAX_SIZE, to_rgb_uint8
from .auth import LOGOUT_PATH
from .errors import ApiError
from .examples import write_examples
from .options import DepthRequest, parse_request
from .service import DepthResult, DepthService
from .uploads import check_image_size, safe_stem

__all__ = ["build_demo", "mount_demo", "ResultFolders", "DEMO_COLORMAPS", "display_options", "count_frames", "prompt_of",
           "page_state", "PROMPT_MODES", "PROMPT_NONE", "PROMPT_DEFAULT", "PROMPT_TEXT"]

DEMO_COLORMAPS = ("Spectral", "Spectral_r", "viridis", "magma", "inferno", "turbo", "gray")
DOWNLOAD_KINDS = "png16,npy,color"
GRADIO_CACHE = (600, 3600)  # every 10 minutes, delete Gradio's copies older than an hour

INTRO = """# PrimeDepth: monocular depth from one Stable Diffusion step
Upload a photo (or pick an example) and press **Predict depth**. The colour map shows
**relative depth**: affine-invariant inverse depth, larger = closer, with unknown scale and shift
(align it to a few known distances before reading metres). The 16-bit PNG stores the range in its
text chunks; the `.npy` holds the raw float32 prediction."""
LICENCE = """Model weights: CreativeML Open RAIL++-M (they derive from Stable Diffusion 2.1), including its
use-based restrictions; PrimeDepth (Zavadski, Kalšan, Rother, ACCV 2024). This code: MIT."""


class ResultFolders:
    """Per-prediction folders for downloads under one temporary root, within a byte budget.

    After each result is written, the oldest folders are deleted until the total fits
    `max_bytes` (the newest always stays, so a result larger than the budget still reaches its
    user). `close` removes the whole root; it runs when the server stops and at exit.
    """

    def __init__(self, max_bytes: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="primedepth-demo-"))
        self.max_bytes = max_bytes
        self.folders: collections.OrderedDict[Path, int] = collections.OrderedDict()
        self._lock = threading.Lock()
        atexit.register(self.close)

    def new(self) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        with self._lock:
            self.folders[folder] = 0
        return folder

    def written(self, folder: Path) -> None:
        """Account for what `folder` now holds, then evict the oldest folders over the budget."""
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        with self._lock:
            if folder in self.folders:
                self.folders[folder] = size
            while len(self.folders) > 1 and self.total > self.max_bytes:
                oldest, _ = self.folders.popitem(last=False)
                shutil.rmtree(oldest, ignore_errors=True)

    @property
    def total(self) -> int:
        return sum(self.folders.values())

    def close(self) -> None:
        """Remove every result and the root (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self.folders.clear()


_ResultFolders = ResultFolders  # the former name


PROMPT_DEFAULT = "the model's default"
PROMPT_NONE = "no caption (empty prompt)"
PROMPT_TEXT = "my text"
PROMPT_MODES = (PROMPT_DEFAULT, PROMPT_NONE, PROMPT_TEXT)


def prompt_of(mode: str, text: str | None) -> str | None:
    """The request's prompt from the demo's prompt choice: None is the server's default."""
    if mode == PROMPT_NONE:
        return ""
    if mode == PROMPT_TEXT:
        return text or ""
    return None


def _request(service: DepthService, outputs: str, max_size: Any, seed: Any, mode: str, text: str | None,
             colormap: str) -> DepthRequest:
    """The demo's options as an API request (same checks)."""
    try:
        return parse_request(service.settings, outputs, int(max_size), int(seed), prompt_of(mode, text), colormap)
    except (ApiError, TypeError, ValueError) as error:
        raise gr.Error(str(error)) from None


def _read_photo(path: str | None, max_pixels: int) -> np.ndarray:
    """The uploaded photo read as `primedepth predict` reads files, with the API's size checks."""
    if not path:
        raise gr.Error("upload a photo or pick an example first")
    try:
        image = io.read_image(path, max_pixels=max_pixels)
        check_image_size(image.shape[1], image.shape[0], "the photo")
    except (InputError, ApiError) as error:
        raise gr.Error(str(error).replace(f"{path}: ", "")) from None
    return image


def display_options(height: int, width: int, max_points: int) -> geometry.GeometryOptions:
    """3D outputs thinned evenly to at most `max_points` points (PLY) and faces (GLB): the demo
    shows and offers them for display; full resolution stays with the API and the CLI."""
    step = max(1, math.ceil(math.sqrt(height * width / max_points)))
    while math.ceil(height / step) * math.ceil(width / step) > max_points:
        step += 1
    # Samples along the longer side; rounding down makes the writers' stride at least `step`.
    samples = None if step == 1 else max(1, max(height, width) // step)
    return geometry.GeometryOptions(points_max_size=samples, mesh_max_size=samples, mesh_max_faces=max_points)


def _write_3d(folder: Path, stem: str, depth: np.ndarray, image: np.ndarray, source: Path, max_points: int) -> list[Path]:
    """Point cloud and mesh as the 3D outputs write them (unaligned: relative shape, said in the
    files), within the display budget; the GLB needs trimesh (the ``3d`` extra) and is left out without it."""
    kinds = ["ply", "glb"]
    try:
        geometry.check_geometry_request(["glb"], geometry.GeometryOptions())
    except InputError:
        kinds.remove("glb")
    paths = geometry.geometry_output_paths(folder, PurePosixPath(stem), kinds)
    options = display_options(*depth.shape, max_points)
    written, _ = geometry.write_geometry_outputs(paths, depth, image, options, source=source)
    return written


def _write_downloads(folder: Path, stem: str, result: DepthResult, request: DepthRequest, image: np.ndarray,
                     source: Path, max_points: int) -> tuple[np.ndarray, list[str], str | None]:
    """Write the outputs as the CLI does: the colour PNG is shown, the GLB goes to the 3D view,
    the rest are offered as downloads."""
    paths = io.output_paths(folder, PurePosixPath(stem), request.outputs)
    io.write_outputs(paths, result.prediction.depth, None, request.colormap, png_text=result.png_text)
    with Image.open(paths["color"]) as colour:
        shown = np.asarray(colour.convert("RGB"))
    three_d = _write_3d(folder, stem, result.prediction.depth, image, source, max_points)
    mesh = next((str(path) for path in three_d if path.suffix == ".glb"), None)
    return shown, [str(paths[kind]) for kind in ("png16", "npy")] + [str(path) for path in three_d], mesh


def _image_handler(service: DepthService, folders: ResultFolders) -> Any:
    async def predict_image(path: str | None, max_size: float, seed: float, mode: str, text: str,
                            colormap: str) -> tuple:
        """Depth for one photo: (input, colour depth) for the slider, downloads, the 3D mesh."""
        request = _request(service, DOWNLOAD_KINDS, max_size, seed, mode, text, colormap)
        image = await asyncio.to_thread(_read_photo, path, service.settings.max_pixels)
        try:
            [result] = await service.predict([image], request)
        except ApiError as error:
            raise gr.Error(error.message) from None
        folder = folders.new()
        colour, downloads, mesh = await asyncio.to_thread(
            _write_downloads, folder, safe_stem(path, "photo"), result, request, image, Path(path),
            service.settings.max_display_points)
        await asyncio.to_thread(folders.written, folder)
        return (to_rgb_uint8(image), colour), downloads, mesh

    return predict_image


def count_frames(path: Path, limit: int) -> int:
    """Frames of a video counted by decoding it, stopping at `limit` + 1 (a container's frame
    count can be missing or wrong, so the demo never trusts it)."""
    count = 0
    for _ in read_video(path):
        count += 1
        if count > limit:
            break
    return count


def _video_job(service: DepthService, path: str, request: DepthRequest, folder: Path) -> Path:
    """The job engine on a video file, as `primedepth predict clip.mp4 --outputs video` runs it."""
    item = io.InputItem(name=PurePosixPath("depth"), path=Path(path), kind="video")
    prompt = service.resolved_prompt(request.prompt)
    options = JobOptions(output_dir=folder, outputs=("video",), colormap=request.colormap, batch_size=service.batch_size,
                         max_size=request.max_size, prompt=prompt, seed=request.seed, keep_results=False)
    summary = run_job([item], lambda: service.pipeline, options)
    if not summary.ok:
        raise gr.Error(f"the video failed: {summary.failures[0][1]}")
    return folder / "depth_depth.mp4"


def _video_handler(service: DepthService, folders: ResultFolders) -> Any:
    async def predict_video(path: str | None, max_size: float, seed: float, mode: str, text: str, colormap: str) -> str:
        """A colourised depth video of a short clip (at most `max_video_frames` decoded frames)."""
        if not path:
            raise gr.Error("upload a short video clip first")
        request = _request(service, "png16", max_size, seed, mode, text, colormap)
        limit = service.settings.max_video_frames
        try:
            frames = await asyncio.to_thread(count_frames, Path(path), limit)
        except InputError as error:
            raise gr.Error(str(error)) from None
        if frames > limit:
            raise gr.Error(f"the demo takes clips of at most {limit} frames (this one has more); trim it first")
        if frames == 0:
            raise gr.Error("no frame of this clip could be decoded")
        folder = folders.new()
        try:
            video = await service.run_exclusive(_video_job, service, path, request, folder)
        except ApiError as error:
            raise gr.Error(error.message) from None
        await asyncio.to_thread(folders.written, folder)
        return str(video)

    return predict_video


def _options(service: DepthService) -> list[Any]:
    """Max size, seed, prompt choice and text, and colour map, defaulting to the server's settings."""
    settings = service.settings
    with gr.Accordion("Options", open=False):
        max_size = gr.Slider(MIN_MAX_SIZE, settings.max_size, value=settings.max_size, step=8,
                             label=f"Max size (longer side is downscaled to this; at least {MIN_MAX_SIZE})")
        seed = gr.Number(value=settings.seed, precision=0, minimum=0, label="Seed")
        unavailable = bool(service.captioning_unavailable)
        mode = gr.Radio(list(PROMPT_MODES), value=PROMPT_NONE if unavailable else PROMPT_DEFAULT,
                        label="Prompt" + (" (captioning unavailable: the default is the empty prompt)" if unavailable else ""),
                        elem_classes="prompt-mode")
        text = gr.Textbox(value=settings.prompt or "", label="Prompt text (with 'my text')",
                          max_length=settings.max_prompt_chars)
        colormap = gr.Dropdown(list(dict.fromkeys((settings.colormap, *DEMO_COLORMAPS))), value=settings.colormap,
                               label="Colour map")
    return [max_size, seed, mode, text, colormap]


def _image_tab(service: DepthService, folders: ResultFolders, examples: list[Path]) -> Any:
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"], height=360, elem_id="photo")
            options = _options(service)
            button = gr.Button("Predict depth", variant="primary", elem_id="predict")
            gr.Examples([[str(path)] for path in examples], inputs=[photo], label="Example photos")
        with gr.Column():
            slider = gr.ImageSlider(label="Input | depth", type="numpy", format="png", elem_id="depth")
            points = service.settings.max_display_points
            downloads = gr.File(label=f"Downloads: 16-bit PNG, npy, point cloud (PLY) and mesh (GLB), the 3D files "
                                      f"thinned to at most {points:,} points for display (the API gives full resolution)",
                                file_count="multiple", elem_id="downloads")
            mesh = gr.Model3D(label="3D mesh (relative shape: assumed far:near ratio 10:1 and field of view)", elem_id="mesh")
    button.click(_image_handler(service, folders), [photo, *options], [slider, downloads, mesh], concurrency_limit=None)
    return options[2]


def _video_tab(service: DepthService, folders: ResultFolders) -> Any:
    with gr.Row():
        with gr.Column():
            clip = gr.Video(label=f"Short clip (at most {service.settings.max_video_frames} frames)", sources=["upload"])
            options = _options(service)
            button = gr.Button("Predict depth video", variant="primary", elem_id="predict-video")
        with gr.Column():
            result = gr.Video(label="Depth video", elem_id="depth-video")
    button.click(_video_handler(service, folders), [clip, *options], [result], concurrency_limit=1)
    return options[2]


def page_state(service: DepthService) -> tuple[str, Any, Any]:
    """What the page shows when it loads (the model may have loaded since the page was built):
    the status line, and both prompt choices defaulting to "no caption" without captioning."""
    unavailable = bool(service.captioning_unavailable)
    label = "Prompt" + (" (captioning unavailable: the default is the empty prompt)" if unavailable else "")
    mode = gr.update(value=PROMPT_NONE if unavailable else PROMPT_DEFAULT, label=label)
    return _status(service), mode, mode


def _status(service: DepthService) -> str:
    """The line under the intro: captioning, and how to leave a keyed server."""
    lines = []
    if service.captioning_unavailable:
        lines.append(f"**Captioning unavailable**: {service.captioning_unavailable}. Photos are predicted with "
                     "the empty prompt unless you give a text.")
    if service.settings.api_key:
        lines.append(f"Signed in with this server's key ([sign out]({LOGOUT_PATH})).")
    return "\n\n".join(lines)


def build_demo(service: DepthService, folders: ResultFolders | None = None) -> gr.Blocks:
    """The demo's Blocks on `service` (example photos are drawn into the results' temporary root).

    Gradio keeps its own copies of uploads and results: they are deleted after an hour."""
    folders = folders or ResultFolders(service.settings.max_demo_bytes)
    examples = write_examples(folders.root / "examples")
    with gr.Blocks(title="PrimeDepth demo", analytics_enabled=False, delete_cache=GRADIO_CACHE) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown(_status(service), elem_id="status")
        with gr.Tab("Image"):
            image_mode = _image_tab(service, folders, examples)
        with gr.Tab("Video"):
            video_mode = _video_tab(service, folders)
        gr.Markdown(LICENCE)
        demo.load(lambda: page_state(service), None, [status, image_mode, video_mode])
    return demo


def mount_demo(app: Any, service: DepthService, path: str) -> ResultFolders:
    """Mount the demo on a FastAPI app at `path` (the app's lifespan starts the service and, when
    it stops, removes the demo's files)."""
    folders = ResultFolders(service.settings.max_demo_bytes)
    demo = build_demo(service, folders)
    service.on_stop.append(folders.close)
    gr.mount_gradio_app(app, demo, path=path, ssr_mode=False, footer_links=["api"], enable_monitoring=False,
                        mcp_server=False, pwa=False, max_file_size=service.settings.max_upload_bytes, show_error=True)
    return folders
