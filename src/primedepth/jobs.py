"""The job engine: depth for many images and videos, behind `primedepth.predict` and the CLI.

The command line and the Python API share one engine, `run_job`:

1. inputs are expanded into work items (`primedepth.io.expand_inputs`);
2. items whose outputs all exist are skipped (re-running a command resumes it), and nothing
   that exists is ever overwritten unless asked;
3. the model is loaded only if something is left to do;
4. images are read and predicted in batches; a file that cannot be read or predicted is
   reported with its path and reason and the others go on (or the job stops, `fail_fast`);
5. outputs are written atomically (`primedepth.io`); a video is predicted with one prompt and
   one noise draw for the clip, aligned across frames and normalised once for the clip
   (`primedepth.video.job`), resuming at frame granularity.

With `ensemble`, the second model is loaded with the pipeline (step 3) and every depth map goes
through the ensemble post-step (`primedepth.ensemble.DepthEnsemble`) before it is written, marked
as such in the PNG metadata, the results and the summary.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import io
from . import __version__
from .constants import DEFAULT_MAX_SIZE, DEFAULT_SEED, OFFICIAL_REPO_ID, VAE_DOWNSAMPLE
from .devices import auto_batch_size, dtype_label, pipeline_device_and_dtype
from .ensemble import ENSEMBLE_PNG_KEY, DepthEnsemble, load_ensemble
from .errors import InputError, PrimeDepthError
from .geometry.outputs import GeometryOptions, check_geometry_request, geometry_output_paths, write_geometry_outputs
from .io.atomic import discard_temporary, new_temporary_file
from .io.outputs import DEFAULT_OUTPUTS
from .loading import load_pipeline
from .model.forward import seeded_generators
from .processing import to_rgb_uint8
from .video import DEFAULT_SMOOTHING, DEFAULT_WINDOW, check_temporal
from .video.correspondence import flow_available
from .video.job import VideoJob

__all__ = [
    "predict",
    "run_job",
    "collect_items",
    "JobOptions",
    "JobSummary",
    "Prediction",
    "DEFAULT_OUTPUTS",
    "OUTPUT_KINDS",
]

OUTPUT_KINDS = tuple(io.ALL_OUTPUT_SUFFIXES)
MAX_LISTED_FAILURES = 20


@dataclass
class Prediction:
    """The result for one image or video frame.

    `status` is 'done', 'skipped' (its outputs existed) or 'failed' (then `error` says why).
    `depth` is affine-invariant inverse depth (H, W), larger = closer; `segmentation` the
    (H, W) class labels when asked for (the pipeline gives logits, `output_segmentation=True`). Both are None unless the job keeps results in memory.
    `ensemble` describes the ensemble `depth` comes from, None for PrimeDepth alone.
    """

    name: str
    source: Path | None
    status: str
    depth: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    prompt: str | None = None
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)
    ensemble: str | None = None
    geometry: dict | None = None  # the 3D/metric report: alignment fit, intrinsics, warnings
    temporal: dict | None = None  # video frames: mode, the frame's scale and shift, the clip's ranges


@dataclass
class JobOptions:
    """Everything about a job except its inputs and model; see `predict` for the meaning.

    `ensemble` is the second model of the ensemble (see `primedepth.ensemble.load_ensemble`)
    or None; it is loaded with the pipeline, only when something is left to do.
    """

    output_dir: Path | None = None
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    colormap: str = io.DEFAULT_COLORMAP
    batch_size: int | str = "auto"
    max_size: int = DEFAULT_MAX_SIZE
    prompt: str | None = None
    seed: int | None = DEFAULT_SEED
    segmentation: bool = False
    overwrite: bool = False
    fail_fast: bool = False
    keep_results: bool = True
    progress: bool = False
    ensemble: Any = None
    model_name: str | None = None  # what the user named (hub id, folder, .ckpt), for the metadata
    geometry: GeometryOptions = field(default_factory=GeometryOptions)  # camera, alignment, meshes
    prompt_embeds: Any = None  # (1, tokens, dim) conditioning instead of a prompt (models without text encoder)
    temporal: str | None = None  # videos: "none", "align", "flow"; None: flow with OpenCV, else align
    temporal_window: int = DEFAULT_WINDOW  # videos: previous frames each frame is aligned to
    temporal_smoothing: float = DEFAULT_SMOOTHING  # videos: history weight of colour frames and video

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.outputs if kind not in OUTPUT_KINDS]
        if unknown:
            raise InputError(
                f"unknown output kind(s) {', '.join(unknown)}; choose from {', '.join(OUTPUT_KINDS)}"
            )
        if self.segmentation and "seg" not in self.outputs:
            self.outputs = (*self.outputs, "seg")
        self.segmentation = self.segmentation or "seg" in self.outputs
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise InputError(f"batch size must be 'auto' or a whole number >= 1, got {self.batch_size!r}")
        if self.max_size < VAE_DOWNSAMPLE:
            raise InputError(f"max size must be at least {VAE_DOWNSAMPLE} pixels, got {self.max_size}")
        io.check_colormap(self.colormap)
        if self.geometry_kinds:
            check_geometry_request(self.geometry_kinds, self.geometry)
        if self.prompt_embeds is not None and self.prompt is not None:
            raise InputError("give either a prompt or prompt embeddings, not both")
        if self.output_dir is not None:
            self.output_dir = Path(self.output_dir)
        _check_temporal_options(self)

    @property
    def frame_kinds(self) -> tuple[str, ...]:
        """Per-image depth output kinds, written for images and video frames."""
        return tuple(kind for kind in self.outputs if kind in io.FRAME_OUTPUT_KINDS)

    @property
    def geometry_kinds(self) -> tuple[str, ...]:
        """3D and metric output kinds, written for images (`primedepth.geometry`)."""
        return tuple(kind for kind in self.outputs if kind in io.GEOMETRY_OUTPUT_SUFFIXES)


@dataclass
class JobSummary:
    """What a job did: counts per input (an image or a whole video) and every failure."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0  # images and video frames predicted
    seconds: float = 0.0
    stopped: bool = False  # fail_fast stopped the job early
    ensemble: str | None = None  # what the depth maps are when they are an ensemble
    failures: list[tuple[str, str]] = field(default_factory=list)
    results: list[Prediction] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # what produced the outputs (`run_metadata`)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # e.g. video frames that could not be decoded
    videos: list[dict] = field(default_factory=list)  # per clip: temporal settings, ranges, per-frame scale/shift

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0

    def format(self, output_dir: Path | None = None) -> str:
        """The final report: counts, speed, where outputs are, and the failures."""
        rate = f" ({self.images / self.seconds:.2f} images/s)" if self.seconds > 0 and self.images else ""
        lines = [
            f"done {self.done}, skipped {self.skipped} (outputs existed), failed {self.failed}"
            f" in {self.seconds:.1f} s{rate}"
        ]
        if output_dir is not None and (self.done or self.skipped):
            lines.append(f"outputs in {output_dir}")
        if self.ensemble is not None and self.done:
            lines.append(f"depth is the ensemble {self.ensemble}")
        if self.skipped:
            lines.append("existing outputs were kept; use --overwrite to recompute them")
        if self.failures:
            lines.append("failed inputs:")
        for label, reason in self.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"  {label}: {reason}")
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"... and {len(self.failures) - MAX_LISTED_FAILURES} more failures")
        if self.stopped:
            lines.append("stopped at the first failure (--fail-fast)")
        lines += [f"warning: {label}: {message}" for label, message in self.warnings[:MAX_LISTED_FAILURES]]
        return "\n".join(lines)


class _StopJob(Exception):
    """Raised internally when `fail_fast` ends the job."""


def _check_temporal_options(options: JobOptions) -> None:
    """Refuse bad video settings up front; flow asked for without OpenCV names the extra."""
    check_temporal(options.temporal or "align", options.temporal_window, options.temporal_smoothing)
    if options.temporal == "flow" and not flow_available():
        raise InputError("--temporal flow needs OpenCV: pip install 'primedepth[video]' "
                         "(opencv-python-headless), or use --temporal align")


# --------------------------------------------------------------------------------------------
# The job


def run_job(
    items: Sequence[io.InputItem],
    get_pipeline: Callable[[], Any],
    options: JobOptions,
) -> JobSummary:
    """Predict every item and write its outputs; return what happened.

    `get_pipeline` returns the pipeline; it is called only when something is left to do, so
    re-running a finished job returns at once without loading the model. The ensemble member
    of `options.ensemble` is loaded right after it, on the same device and in the same dtype.
    """
    started = time.perf_counter()
    summary = JobSummary()
    if _record_invalid(items, options, summary):
        summary.stopped = True
        return summary
    todo = [item for item in items if item.kind != "invalid" and not _skip_if_finished(item, options, summary)]
    if not todo:
        summary.seconds = time.perf_counter() - started
        return summary
    pipeline = get_pipeline()
    _check_pipeline(pipeline, options)
    ensemble = _load_ensemble(pipeline, options, summary)
    # Shown only on a terminal (disable=None), with a label saying whose bar it is.
    bar = tqdm(total=_count_images(todo), desc="primedepth predict", unit="img", dynamic_ncols=True,
               file=sys.stderr, disable=None if options.progress else True)
    batch_size = _resolve_batch_size(options, pipeline)
    runner = _Runner(pipeline, ensemble, options, summary, bar, batch_size)
    summary.metadata = runner.png_text
    try:
        for group in _groups(todo, batch_size):
            if group[0].kind == "video":
                runner.video(group[0])
            else:
                runner.images(group)
    except _StopJob:
        summary.stopped = True
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _record_invalid(items: Sequence[io.InputItem], options: JobOptions, summary: JobSummary) -> bool:
    """Report inputs that cannot be processed (missing, unreadable, clashing) as failed, before
    anything runs; True when `fail_fast` must then stop the job."""
    for item in items:
        if item.kind != "invalid":
            continue
        summary.failed += 1
        summary.failures.append((item.label, item.error or "cannot be processed"))
        if options.keep_results:
            summary.results.append(Prediction(name=str(item.name), source=None, status="failed", error=item.error))
        if options.progress:
            print(f"failed: {item.label}: {item.error}", file=sys.stderr)
    return options.fail_fast and summary.failed > 0


def _load_ensemble(pipeline: Any, options: JobOptions, summary: JobSummary) -> DepthEnsemble | None:
    """The ensemble post-step when asked, its member on the pipeline's device and in its dtype."""
    if options.ensemble is None:
        return None
    ensemble = load_ensemble(options.ensemble, *pipeline_device_and_dtype(pipeline))
    summary.ensemble = ensemble.description
    return ensemble


def _check_pipeline(pipeline: Any, options: JobOptions) -> None:
    """Refuse once, up front, what would otherwise fail for every single image."""
    if options.segmentation and pipeline.segmentation_head is None:
        raise PrimeDepthError("this model has no segmentation head; drop --segmentation / 'seg'")


def _resolve_batch_size(options: JobOptions, pipeline: Any) -> int:
    """The number of images per forward pass: as given, or chosen for the pipeline's device."""
    if options.batch_size != "auto":
        return options.batch_size
    return auto_batch_size(*pipeline_device_and_dtype(pipeline), options.max_size)


def _groups(items: Iterable[io.InputItem], batch_size: int) -> Iterator[list[io.InputItem]]:
    """Consecutive images in groups of `batch_size`; each video alone. Input order is kept."""
    for is_video, run in itertools.groupby(items, key=lambda item: item.kind == "video"):
        yield from ([item] for item in run) if is_video else _chunks(run, batch_size)


def _count_images(items: Iterable[io.InputItem]) -> int | None:
    """Images plus video frames, for the progress bar; None if a video hides its length."""
    total = 0
    for item in items:
        if item.kind == "image":
            total += 1
            continue
        try:
            frames = io.probe_video(item.path).frames
        except InputError:
            frames = 0  # reported when the video is processed
        if frames is None:
            return None
        total += frames
    return total


def item_paths(item: io.InputItem, options: JobOptions) -> dict[str, Path]:
    """Output paths of an item: per-image kinds for images, the depth video for videos."""
    if options.output_dir is None:
        return {}
    if item.kind == "image":
        return {**io.output_paths(options.output_dir, item.name, options.frame_kinds),
                **geometry_output_paths(options.output_dir, item.name, options.geometry_kinds)}
    return io.output_paths(options.output_dir, item.name, ("video",) if "video" in options.outputs else ())


def is_finished(item: io.InputItem, options: JobOptions) -> bool:
    """Whether every requested output of a file input already exists.

    A video counts as finished when its depth video exists (it is renamed into place only
    after all frames were written) and, if its length is known, its last frame's outputs.
    """
    if options.output_dir is None or options.overwrite or item.path is None:
        return False
    paths = list(item_paths(item, options).values())
    if item.kind == "video" and options.frame_kinds:
        if "video" not in options.outputs:
            return False
        try:
            frames = io.probe_video(item.path).frames
        except InputError:
            return False
        if frames:
            last = io.frame_name(item.name, frames - 1)
            paths += io.output_paths(options.output_dir, last, options.frame_kinds).values()
    return bool(paths) and all(path.exists() for path in paths)


def _skip_if_finished(item: io.InputItem, options: JobOptions, summary: JobSummary) -> bool:
    """Record a finished item as skipped; True if it was."""
    if not is_finished(item, options):
        return False
    summary.skipped += 1
    if options.keep_results:
        summary.results.append(Prediction(name=str(item.name), source=item.path, status="skipped"))
    return True


class _Runner:
    """Runs groups of items through the pipeline and records the results in a summary."""

    def __init__(self, pipeline: Any, ensemble: DepthEnsemble | None, options: JobOptions,
                 summary: JobSummary, bar: Any, batch_size: int) -> None:
        self.pipeline = pipeline
        self.ensemble = ensemble
        self.options = options
        self.summary = summary
        self.bar = bar
        self.batch_size = batch_size  # lowered for the rest of the job when the GPU runs out of memory
        self.png_text = {**run_metadata(pipeline, options), **_png_text(summary.ensemble)}

    # ---------------------------------------------------------------- reporting

    def fail(self, item: io.InputItem, error: BaseException, images: int = 1) -> None:
        """Record a failed input, tell the user right away, and stop if asked to.

        `images` is how far the progress bar moves (0 for a video: its frames already did).
        """
        self.bar.update(images)
        reason = _reason(error, item)
        self.summary.failed += 1
        self.summary.failures.append((item.label, reason))
        if self.options.keep_results:
            self.summary.results.append(
                Prediction(name=str(item.name), source=item.path, status="failed", error=reason)
            )
        if self.options.progress:
            self.bar.write(f"failed: {item.label}: {reason}", file=sys.stderr)
        if self.options.fail_fast:
            raise _StopJob

    def record(self, name: PurePosixPath, item: io.InputItem, depth: np.ndarray,
               segmentation: np.ndarray | None, prompt: str | None, written: list[Path],
               geometry: dict | None = None, temporal: dict | None = None) -> None:
        """Keep one image's or frame's result when the job keeps results."""
        if self.options.keep_results:
            self.summary.results.append(Prediction(
                name=str(name), source=item.path, status="done", depth=depth,
                segmentation=segmentation, prompt=prompt, outputs=written,
                ensemble=self.summary.ensemble, geometry=geometry, temporal=temporal,
            ))

    # ---------------------------------------------------------------- model calls

    def infer(self, images: list[Any], conditioning: Callable[[int], dict] | None = None) -> Any:
        """Predict a batch of images, at most `batch_size` per pipeline call.

        When the GPU runs out of memory, the batch size is halved for the rest of the job and
        the failed part is predicted again (results do not depend on batching). `conditioning`
        gives the prompt and noise arguments for a call of n images (a video clip's, the same
        for every frame) instead of the job's prompt and seed.
        """
        outputs, start = [], 0
        while start < len(images):
            part = images[start : start + self.batch_size]
            try:
                outputs.append(self._call(part, conditioning))
            except torch.cuda.OutOfMemoryError:
                if len(part) == 1:
                    raise
                self.batch_size = len(part) // 2
                torch.cuda.empty_cache()
                if self.options.progress:
                    self.bar.write(f"out of GPU memory: going on with batches of {self.batch_size}", file=sys.stderr)
                continue
            start += len(part)
        return outputs[0] if len(outputs) == 1 else _joined_outputs(outputs)

    def _call(self, images: list[Any], conditioning: Callable[[int], dict] | None = None) -> Any:
        """One pipeline call, then the ensemble post-step on its depth maps."""
        extra: dict[str, Any] = {"prompt": self.options.prompt} if self.options.prompt is not None else {}
        if self.options.prompt_embeds is not None:
            extra = {"prompt_embeds": self.options.prompt_embeds}
        extra["generator"] = seeded_generators(self.options.seed, len(images))
        if conditioning is not None:
            extra = conditioning(len(images))
        output = self.pipeline(
            images,
            max_size=self.options.max_size,
            output_segmentation="labels" if self.options.segmentation else False,
            **extra,
        )
        if self.ensemble is not None:
            output.depth = [self.ensemble.apply(depth, image) for depth, image in zip(output.depth, images)]
        return output

    def write(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None) -> list[Path]:
        """Write the per-image depth outputs of one prediction, keeping existing files."""
        if self.options.output_dir is None:
            return []
        paths = io.output_paths(self.options.output_dir, name, self.options.frame_kinds)
        return io.write_outputs(
            paths, depth, segmentation, self.options.colormap, self.options.overwrite, png_text=self.png_text
        )

    def write_geometry(self, item: io.InputItem, depth: np.ndarray, image: Any) -> tuple[list[Path], dict | None]:
        """The 3D and metric outputs of an image (after its depth outputs, so a bad known-depth
        file fails the item with its depth already written)."""
        options = self.options
        if options.output_dir is None or not options.geometry_kinds:
            return [], None
        paths = geometry_output_paths(options.output_dir, item.name, options.geometry_kinds)
        written, report = write_geometry_outputs(paths, depth, to_rgb_uint8(image), options.geometry,
                                                 source=item.path, overwrite=options.overwrite, name=item.name)
        for warning in report.get("warnings", []):
            if options.progress:
                self.bar.write(f"{item.label}: {warning}", file=sys.stderr)
        return written, report

    # ---------------------------------------------------------------- images

    def images(self, group: list[io.InputItem]) -> None:
        """Read, predict and write a batch of images; a bad one does not sink the others."""
        loaded = []
        for item in group:
            try:
                loaded.append((item, _load(item)))
            except (InputError, OSError) as error:
                self.fail(item, error)
        if not loaded:
            return
        try:
            batches = [(loaded, self.infer([image for _, image in loaded]))]
        except Exception as error:
            if len(loaded) == 1:
                self.fail(loaded[0][0], error)
                return
            batches = self._one_by_one(loaded)
        for part, output in batches:
            self._finish_images(part, output)

    def _one_by_one(self, loaded: list[tuple[io.InputItem, Any]]) -> list[tuple[list, Any]]:
        """After a failed batch, find which images fail by predicting them singly."""
        results = []
        for item, image in loaded:
            try:
                results.append(([(item, image)], self.infer([image])))
            except Exception as error:
                self.fail(item, error)
        return results

    def _finish_images(self, loaded: list[tuple[io.InputItem, Any]], output: Any) -> None:
        """Write the outputs of a predicted batch and count it."""
        for index, (item, image) in enumerate(loaded):
            depth, segmentation, prompt = _unpack(output, index)
            try:
                written = self.write(item.name, depth, segmentation)
                geometry_files, report = self.write_geometry(item, depth, image)
            except (InputError, OSError) as error:
                self.fail(item, error)
                continue
            self.summary.done += 1
            self.summary.images += 1
            self.bar.update(1)
            self.record(item.name, item, depth, segmentation, prompt, written + geometry_files, report)

    # ---------------------------------------------------------------- videos

    def video(self, item: io.InputItem) -> None:
        """Depth for every frame of a video, with one conditioning, alignment and normalisation
        per clip (`primedepth.video.job`): frame outputs plus a depth video."""
        clip = None
        try:
            clip = VideoJob(self, item, _unpack)
            clip.predict()
            clip.write()
        except BaseException as error:  # also Ctrl-C: never leave a partial video behind
            if clip is not None:
                clip.abort()
            if not isinstance(error, Exception):
                raise
            self.fail(item, error, images=0)
            return
        clip.finish()
        self.summary.videos.append(clip.listing())
        self.summary.done += 1


JOB_RECORD = "primedepth_job.json"


def run_metadata(pipeline: Any, options: JobOptions) -> dict[str, str]:
    """What produced the outputs (PNG text chunks and the job record): enough to redo it."""
    model = options.model_name or str(getattr(pipeline, "name_or_path", "") or "in-memory pipeline")
    return {
        "primedepth_version": __version__,
        "model": model,
        "dtype": dtype_label(pipeline_device_and_dtype(pipeline)[1]),
        "seed": "none (fresh noise)" if options.seed is None else str(options.seed),
        "max_size": str(options.max_size),
        "prompt_option": "model default" if options.prompt is None else options.prompt,
        "depth_quantity": io.DEPTH_QUANTITY,
    }


def prepare_output_dir(options: JobOptions, items: Sequence[io.InputItem]) -> None:
    """Check, before any model is loaded, that the job can write what it is asked to, and remove
    temporaries that a killed earlier run left (once per job, before any writer starts)."""
    if options.output_dir is None:
        return
    folder = options.output_dir
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: output path exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        discard_temporary(new_temporary_file(folder / "write-check"))
    except OSError as error:
        raise InputError(f"cannot write to the output folder {folder}: {error.strerror or error}") from None
    io.remove_stale_temporaries(folder)
    if options.outputs == ("video",) and not any(item.kind == "video" for item in items):
        raise InputError("--outputs video writes depth videos, and none of the inputs is a video")


def write_job_record(options: JobOptions, summary: JobSummary) -> None:
    """Append this job to OUT/primedepth_job.json (settings, counts): the sidecar of the outputs.

    Once per job, by whoever ran it (the CLI, `predict`, the Ray driver), never by a worker."""
    if options.output_dir is None or not summary.metadata:
        return
    path = options.output_dir / JOB_RECORD
    runs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    runs.append({**summary.metadata, "outputs": list(options.outputs), "done": summary.done, "failed": summary.failed,
                 "skipped": summary.skipped, "ensemble": summary.ensemble})
    if summary.videos:  # per clip: temporal settings, clip ranges, each frame's time, scale and shift
        runs[-1]["videos"] = summary.videos
    with io.atomic_path(path) as temporary:
        temporary.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


def _png_text(ensemble: str | None) -> dict[str, str]:
    """Extra text chunks of the depth PNGs: the ensemble marker when there is one."""
    return {} if ensemble is None else {ENSEMBLE_PNG_KEY: ensemble}


def _load(item: io.InputItem) -> Any:
    """The image of an item: decoded from its file, or the in-memory image as given."""
    return io.read_image(item.path) if item.path is not None else item.image


@dataclass
class _JoinedOutput:
    """The outputs of consecutive pipeline calls as one: what `_unpack` reads."""

    depth: list[Any]
    segmentation: list[Any] | None
    prompts: list[str] | None


def _joined_outputs(outputs: list[Any]) -> _JoinedOutput:
    def joined(name: str) -> list[Any] | None:
        parts = [getattr(output, name, None) for output in outputs]
        return None if any(part is None for part in parts) else [value for part in parts for value in part]

    return _JoinedOutput(depth=joined("depth"), segmentation=joined("segmentation"), prompts=joined("prompts"))


def _unpack(output: Any, index: int) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Depth, segmentation labels and prompt of one image of a pipeline output."""
    depth = np.asarray(output.depth[index], dtype=np.float32)
    segmentation = None
    if getattr(output, "segmentation", None) is not None:
        segmentation = np.asarray(output.segmentation[index])
    prompts = getattr(output, "prompts", None)
    return depth, segmentation, prompts[index] if prompts else None


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` elements (the last may be shorter)."""
    chunk: list[Any] = []
    for element in iterable:
        chunk.append(element)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _reason(error: BaseException, item: io.InputItem) -> str:
    """A one-line reason for a failure, without repeating the item's path."""
    message = str(error).strip() or type(error).__name__
    if item.path is not None and message.startswith(f"{item.path}: "):
        message = message[len(f"{item.path}: "):]
    if not isinstance(error, (PrimeDepthError, OSError)):
        message = f"{type(error).__name__}: {message}"
    return message.splitlines()[0]


# --------------------------------------------------------------------------------------------
# The Python API


def predict(
    inputs: Any,
    model: Any = None,
    *,
    output_dir: str | Path | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    device: str = "auto",
    dtype: str = "fp32",
    offload: bool = False,
    batch_size: int | str = "auto",
    max_size: int = DEFAULT_MAX_SIZE,
    prompt: str | None = None,
    seed: int | None = DEFAULT_SEED,
    segmentation: bool = False,
    colormap: str = io.DEFAULT_COLORMAP,
    overwrite: bool = False,
    recursive: bool = False,
    errors: str = "raise",
    progress: bool = False,
    ensemble: Any = None,
    geometry: GeometryOptions | None = None,
    prompt_embeds: Any = None,
    temporal: str | None = None,
    temporal_window: int = DEFAULT_WINDOW,
    temporal_smoothing: float = DEFAULT_SMOOTHING,
) -> list[Prediction]:
    """Depth for images, folders, glob patterns, list files and videos, in one call.

    `inputs`: one or a list of paths (as the CLI takes) and/or in-memory images (PIL, HxWx3
    numpy, 3xHxW tensor). `model`: a loaded `PrimeDepthPipeline`, or a hub id, model folder or
    official ``.ckpt`` (default: the official weights); `device`, `dtype` and `offload` as in
    `load_pipeline`. `batch_size`: images per forward pass, or
    "auto" (1 on the CPU; on a GPU as many as fit in its free memory, see
    `primedepth.devices.auto_batch_size`). With `output_dir`, the `outputs`
    (png16, npy, color, seg, video; see `primedepth.io`) are written there, existing files are
    kept unless `overwrite`, and inputs whose outputs all exist are skipped. `prompt`: None
    for the model's default, a text, or "auto" to caption each image; `prompt_embeds`: a
    (1, tokens, D) conditioning tensor instead (models without a text encoder). `seed`: fixes the
    noise, per image. `errors`: "raise" stops at the first bad input with its error; "skip"
    goes on and marks it failed in the results. `ensemble`: None for PrimeDepth alone, or the
    paper's ensemble with Depth Anything V2: "depth-anything-v2-large", another Depth Anything
    V2 hub id or model folder, or a loaded disparity adapter (`primedepth.eval`); its
    disparity is aligned to PrimeDepth's by least squares and averaged, for every output.
    Outputs of an earlier run without the ensemble are skipped unless `overwrite`. `geometry`:
    camera, known-depth alignment and mesh settings of the 3D and metric outputs (ply, glb,
    obj, normals, metric, metric_png16; see `primedepth.geometry.GeometryOptions`). `temporal`,
    `temporal_window`, `temporal_smoothing`: how video frames are aligned across the clip
    (`primedepth.video`; default: "flow" when OpenCV is installed, else "align"); a frame's
    `depth` is then the aligned prediction and `temporal` its scale and shift.

    Returns one `Prediction` per image or video frame, in input order.
    """
    if errors not in ("raise", "skip"):
        raise InputError(f"errors must be 'raise' or 'skip', got '{errors}'")
    options = JobOptions(
        output_dir=Path(output_dir) if output_dir is not None else None,
        outputs=tuple(outputs), colormap=colormap, batch_size=batch_size, max_size=max_size,
        prompt=prompt, seed=seed, segmentation=segmentation, overwrite=overwrite,
        fail_fast=errors == "raise", keep_results=True, progress=progress, ensemble=ensemble,
        geometry=geometry or GeometryOptions(), prompt_embeds=prompt_embeds,
        temporal=temporal, temporal_window=temporal_window, temporal_smoothing=temporal_smoothing,
    )
    items = collect_items(inputs, recursive=recursive, output_dir=options.output_dir)
    prepare_output_dir(options, items)
    if model is not None and not isinstance(model, (str, Path)):
        summary = run_job(items, lambda: model, options)  # an already loaded pipeline
    else:
        options.model_name = str(model) if model is not None else OFFICIAL_REPO_ID
        summary = run_job(items, lambda: load_pipeline(model, device, dtype, offload), options)
    write_job_record(options, summary)
    if errors == "raise" and summary.failures:
        label, reason = summary.failures[0]
        raise InputError(f"{label}: {reason}")
    return summary.results


def collect_items(inputs: Any, recursive: bool = False, output_dir: Path | None = None) -> list[io.InputItem]:
    """Work items for a mix of paths and in-memory images (named image_0000, image_0001, ...)."""
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    items: list[io.InputItem] = []
    for position, value in enumerate(inputs):
        if isinstance(value, (str, Path)):
            items.extend(io.expand_inputs([value], recursive, output_dir))
        else:
            items.append(io.InputItem(name=PurePosixPath(f"image_{position:04d}"), image=value))
    items = io.deduplicate(items)
    invalid = [item for item in items if item.kind == "invalid"]
    if len(invalid) == len(items):
        problems = "; ".join(f"{item.label}: {item.error}" for item in invalid[:MAX_LISTED_FAILURES])
        raise InputError(
            "no images or videos found in the given inputs "
            "(folders are read without their sub-folders unless recursive)" + (f": {problems}" if problems else "")
        )
    return items
