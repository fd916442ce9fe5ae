"""The browser demo (Gradio Blocks) on a `DepthService`: the API's pipeline, batcher and limits.

An image tab (upload or an example photo; input and colour depth side by side in a slider;
16-bit PNG, ``.npy``, point cloud and mesh downloads; the mesh in a 3D viewer; max size, seed,
prompt and colour map) and a video tab for short clips. Depth goes through `DepthService.predict` (images, batched with API requests) or
the job engine on the service's worker thread (videos), and files are written by
`primedepth.io.write_outputs`: what the demo offers is what `primedepth predict` writes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .. import geometry, io
from ..errors import InputError
from ..jobs import JobOptions, run_job
from ..processing import to_rgb_uint8
from .errors import ApiError
from .examples import write_examples
from .options import DepthRequest, parse_request
from .service import DepthResult, DepthService
from .uploads import check_image_size, safe_stem

__all__ = ["build_demo", "mount_demo", "DEMO_COLORMAPS"]

DEMO_COLORMAPS = ("Spectral", "Spectral_r", "viridis", "magma", "inferno", "turbo", "gray")
DOWNLOAD_KINDS = "png16,npy,color"
MIN_DEMO_SIZE = 64  # the smallest max size offered
KEPT_RESULTS = 64  # result folders kept for downloads; older ones are deleted

INTRO = """# PrimeDepth: monocular depth from one Stable Diffusion step
Upload a photo (or pick an example) and press **Predict depth**. The colour map shows
**relative depth**: affine-invariant inverse depth, larger = closer, with unknown scale and shift
(align it to a few known distances before reading metres). The 16-bit PNG stores the range in its
text chunks; the `.npy` holds the raw float32 prediction."""
LICENCE = """Model weights: CreativeML Open RAIL++-M (they derive from Stable Diffusion 2.1), including its
use-based restrictions; PrimeDepth (Zavadski, Kalšan, Rother, ACCV 2024). This code: MIT."""


class _ResultFolders:
    """Per-prediction folders for downloads, under one temporary root; the oldest are deleted."""

    def __init__(self, keep: int = KEPT_RESULTS) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="primedepth-demo-"))
        self.keep = keep
        self.folders: list[Path] = []

    def new(self) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        self.folders.append(folder)
        while len(self.folders) > self.keep:
            shutil.rmtree(self.folders.pop(0), ignore_errors=True)
        return folder


def _request(service: DepthService, outputs: str, max_size: Any, seed: Any, prompt: str | None, colormap: str) -> DepthRequest:
    """The demo's options as an API request (same checks); blank prompt = the model's default."""
    try:
        return parse_request(service.settings, outputs, int(max_size), int(seed), prompt or None, colormap)
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


def _write_3d(folder: Path, stem: str, depth: np.ndarray, image: np.ndarray, source: Path) -> list[Path]:
    """Point cloud and mesh as the 3D outputs write them (unaligned: arbitrary scale, said in the
    files); the GLB needs trimesh (the ``3d`` extra) and is left out without it."""
    kinds = ["ply", "glb"]
    try:
        geometry.check_geometry_request(["glb"], geometry.GeometryOptions())
    except InputError:
        kinds.remove("glb")
    paths = geometry.geometry_output_paths(folder, PurePosixPath(stem), kinds)
    written, _ = geometry.write_geometry_outputs(paths, depth, image, geometry.GeometryOptions(), source=source)
    return written


def _write_downloads(folder: Path, stem: str, result: DepthResult, request: DepthRequest, image: np.ndarray,
                     source: Path) -> tuple[np.ndarray, list[str], str | None]:
    """Write the outputs as the CLI does: the colour PNG is shown, the GLB goes to the 3D view,
    the rest are offered as downloads."""
    paths = io.output_paths(folder, PurePosixPath(stem), request.outputs)
    io.write_outputs(paths, result.prediction.depth, None, request.colormap, png_text=result.png_text)
    with Image.open(paths["color"]) as colour:
        shown = np.asarray(colour.convert("RGB"))
    three_d = _write_3d(folder, stem, result.prediction.depth, image, source)
    mesh = next((str(path) for path in three_d if path.suffix == ".glb"), None)
    return shown, [str(paths[kind]) for kind in ("png16", "npy")] + [str(path) for path in three_d], mesh


def _image_handler(service: DepthService, folders: _ResultFolders) -> Any:
    async def predict_image(path: str | None, max_size: float, seed: float, prompt: str, colormap: str) -> tuple:
        """Depth for one photo: (input, colour depth) for the slider, downloads, the 3D mesh."""
        request = _request(service, DOWNLOAD_KINDS, max_size, seed, prompt, colormap)
        image = await asyncio.to_thread(_read_photo, path, service.settings.max_pixels)
        try:
            [result] = await service.predict([image], request)
        except ApiError as error:
            raise gr.Error(error.message) from None
        colour, downloads, mesh = await asyncio.to_thread(
            _write_downloads, folders.new(), safe_stem(path, "photo"), result, request, image, Path(path))
        return (to_rgb_uint8(image), colour), downloads, mesh

    return predict_image


def _video_job(service: DepthService, path: str, request: DepthRequest, folder: Path) -> Path:
    """The job engine on a video file, as `primedepth predict clip.mp4 --outputs video` runs it."""
    item = io.InputItem(name=PurePosixPath("depth"), path=Path(path), kind="video")
    options = JobOptions(output_dir=folder, outputs=("video",), colormap=request.colormap, batch_size=service.batch_size,
                         max_size=request.max_size, prompt=request.prompt, seed=request.seed, keep_results=False)
    summary = run_job([item], lambda: service.pipeline, options)
    if not summary.ok:
        raise gr.Error(f"the video failed: {summary.failures[0][1]}")
    return folder / "depth_depth.mp4"


def _video_handler(service: DepthService, folders: _ResultFolders) -> Any:
    async def predict_video(path: str | None, max_size: float, seed: float, prompt: str, colormap: str) -> str:
        """A colourised depth video of a short clip (at most `max_video_frames` frames)."""
        if not path:
            raise gr.Error("upload a short video clip first")
        request = _request(service, "png16", max_size, seed, prompt, colormap)
        try:
            frames = io.probe_video(Path(path)).frames
        except InputError as error:
            raise gr.Error(str(error)) from None
        limit = service.settings.max_video_frames
        if frames is None or frames > limit:
            raise gr.Error(f"the demo takes clips of at most {limit} frames (this one: {frames or 'unknown'})")
        try:
            return str(await service.run_exclusive(_video_job, service, path, request, folders.new()))
        except ApiError as error:
            raise gr.Error(error.message) from None

    return predict_video


def _options(service: DepthService) -> list[Any]:
    """Max size, seed, prompt and colour map controls, defaulting to the server's settings."""
    settings = service.settings
    with gr.Accordion("Options", open=False):
        max_size = gr.Slider(min(MIN_DEMO_SIZE, settings.max_size), settings.max_size, value=settings.max_size, step=8,
                             label="Max size (longer side is downscaled to this)")
        seed = gr.Number(value=settings.seed, precision=0, minimum=0, label="Seed")
        prompt = gr.Textbox(value=settings.prompt or "", label="Prompt (blank: the model's default)",
                            max_length=settings.max_prompt_chars)
        colormap = gr.Dropdown(list(dict.fromkeys((settings.colormap, *DEMO_COLORMAPS))), value=settings.colormap,
                               label="Colour map")
    return [max_size, seed, prompt, colormap]


def _image_tab(service: DepthService, folders: _ResultFolders, examples: list[Path]) -> None:
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"], height=360, elem_id="photo")
            options = _options(service)
            button = gr.Button("Predict depth", variant="primary", elem_id="predict")
            gr.Examples([[str(path)] for path in examples], inputs=[photo], label="Example photos")
        with gr.Column():
            slider = gr.ImageSlider(label="Input | depth", type="numpy", format="png", elem_id="depth")
            downloads = gr.File(label="Downloads: 16-bit PNG, npy, point cloud (PLY), mesh (GLB)",
                                file_count="multiple", elem_id="downloads")
            mesh = gr.Model3D(label="3D mesh (arbitrary scale: relative depth, assumed field of view)", elem_id="mesh")
    button.click(_image_handler(service, folders), [photo, *options], [slider, downloads, mesh], concurrency_limit=None)


def _video_tab(service: DepthService, folders: _ResultFolders) -> None:
    with gr.Row():
        with gr.Column():
            clip = gr.Video(label=f"Short clip (at most {service.settings.max_video_frames} frames)", sources=["upload"])
            options = _options(service)
            button = gr.Button("Predict depth video", variant="primary", elem_id="predict-video")
        with gr.Column():
            result = gr.Video(label="Depth video", elem_id="depth-video")
    button.click(_video_handler(service, folders), [clip, *options], [result], concurrency_limit=1)


def build_demo(service: DepthService) -> gr.Blocks:
    """The demo's Blocks on `service` (example photos are drawn into a temporary folder)."""
    folders = _ResultFolders()
    examples = write_examples(folders.root / "examples")
    with gr.Blocks(title="PrimeDepth demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Image"):
            _image_tab(service, folders, examples)
        with gr.Tab("Video"):
            _video_tab(service, folders)
        gr.Markdown(LICENCE)
    return demo


def mount_demo(app: Any, service: DepthService, path: str) -> None:
    """Mount the demo on a FastAPI app at `path` (the app's lifespan starts the service)."""
    demo = build_demo(service)
    gr.mount_gradio_app(app, demo, path=path, ssr_mode=False, footer_links=["api"],
                        max_file_size=service.settings.max_upload_bytes, show_error=True)
