"""The runner: work items through the pipeline in batches, results to the sink.

`run_job` is the engine behind the CLI, `predict`, the server, the demo and the Ray actors:

1. items whose outputs are all complete are skipped (`resume`), so re-running a command
   resumes it, and nothing that exists is overwritten unless asked;
2. the model is loaded only if something is left to do; a job that needs captions checks once
   that the captioner is there (`primedepth.text.captioning.check_captioner`);
3. images are read and predicted in batches (halved for the rest of the job when the GPU runs out
   of memory); a file that cannot be read or predicted is reported with its reason and the
   others go on (or the job stops, `fail_fast`); missing weights stop the whole job;
4. each result goes to the sink (`sinks`); the ensemble post-step and the 3D outputs run on
   the depth map first; a video is predicted with one prompt and one noise draw for the clip,
   aligned across frames and normalised once (`primedepth.video.job`).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from .. import io
from ..devices import auto_batch_size, pipeline_device_and_dtype
from ..ensemble import ENSEMBLE_PNG_KEY, DepthEnsemble, load_ensemble
from ..errors import CaptionerUnavailableError, InputError, PrimeDepthError, WeightsNotFoundError
from ..geometry.outputs import geometry_output_paths, write_geometry_outputs
from ..model.forward import seeded_generators
from ..pipeline import AUTO_PROMPT, prompt_option
from ..processing import to_rgb_uint8
from ..video.job import VideoJob
from .options import JobOptions
from .progress import Progress
from .record import run_metadata
from .resume import is_finished
from .sinks import Sink, sink_for
from .summary import JobSummary, Prediction

__all__ = ["run_job", "unpack"]


class StopJob(Exception):
    """Raised internally when `fail_fast` ends the job."""


def run_job(items: Sequence[io.InputItem], get_pipeline: Callable[[], Any], options: JobOptions,
            sink: Sink | None = None) -> JobSummary:
    """Predict every item and hand its results to `sink` (default: the job's output folder, or
    none); return what happened.

    `get_pipeline` returns the pipeline; it is called only when something is left to do, so
    re-running a finished job returns at once without loading the model. The ensemble member
    of `options.ensemble` is loaded right after it, on the same device and in the same dtype.
    """
    started = time.perf_counter()
    summary = JobSummary()
    sink = sink if sink is not None else sink_for(options)
    try:
        if _record_invalid(items, options, summary):
            summary.stopped = True
            return summary
        todo = [item for item in items if item.kind != "invalid" and not _skip_if_finished(item, options, summary, sink)]
        if todo:
            _run(todo, get_pipeline, options, summary, sink)
    finally:
        sink.close()
        summary.seconds = time.perf_counter() - started
    return summary


def _run(todo: list[io.InputItem], get_pipeline: Callable[[], Any], options: JobOptions, summary: JobSummary,
         sink: Sink) -> None:
    pipeline = get_pipeline()
    _check_pipeline(pipeline, options)
    ensemble = _load_ensemble(pipeline, options, summary)
    progress = Progress(_count_images(todo), options.progress)
    runner = Runner(pipeline, ensemble, options, summary, progress, _resolve_batch_size(options, pipeline), sink)
    summary.metadata = runner.png_text
    try:
        for group in _groups(todo, runner.batch_size):
            if group[0].kind == "video":
                runner.video(group[0])
            else:
                runner.images(group)
    except StopJob:
        summary.stopped = True
    finally:
        progress.close()


def _record_invalid(items: Sequence[io.InputItem], options: JobOptions, summary: JobSummary) -> bool:
    """Report inputs that cannot be processed (missing, unreadable, clashing, badly named) as
    failed, before anything runs; True when `fail_fast` must then stop the job."""
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


def _skip_if_finished(item: io.InputItem, options: JobOptions, summary: JobSummary, sink: Sink) -> bool:
    """Record a finished item as skipped; True if it was."""
    if not is_finished(item, options, sink):
        return False
    summary.skipped += 1
    if options.keep_results:
        summary.results.append(Prediction(name=str(item.name), source=item.path, status="skipped"))
    return True


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
    if needs_captions(options, pipeline):
        require_captioner(pipeline)


def needs_captions(options: JobOptions, pipeline: Any = None) -> bool:
    """Whether the job's prompt is the automatic one (BLIP-2 captions): "auto" asked for, or no
    prompt and a model whose default is "auto"; never with prompt embeddings."""
    return options.prompt_embeds is None and prompt_option(options.prompt, pipeline) == AUTO_PROMPT


def require_captioner(pipeline: Any = None) -> None:
    """Raise `CaptionerUnavailableError` once, before the first image, when BLIP-2 cannot be had.
    A pipeline whose captioner is loaded or is not BLIP-2 (set by the caller), or that has no
    captioner at all (it handles "auto" itself), needs no check."""
    from ..text.captioning import Blip2Captioner  # lazy: start-up speed

    captioner = getattr(pipeline, "captioner", None)
    if not isinstance(captioner, Blip2Captioner) or captioner.is_loaded:
        return
    if captioner.failure is not None:
        raise captioner.failure
    reason = captioner.check()  # remembered: the load that follows asks the hub no more
    if reason is not None:
        raise CaptionerUnavailableError.from_reason(reason)


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
            frames = io.probe_video(item.source).frames
        except InputError:
            frames = 0  # reported when the video is processed
        if frames is None:
            return None
        total += frames
    return total


def _png_text(ensemble: str | None) -> dict[str, str]:
    """Extra text chunks of the depth PNGs: the ensemble marker when there is one."""
    return {} if ensemble is None else {ENSEMBLE_PNG_KEY: ensemble}


class Runner:
    """Runs groups of items through the pipeline and records the results in a summary."""

    def __init__(self, pipeline: Any, ensemble: DepthEnsemble | None, options: JobOptions,
                 summary: JobSummary, bar: Progress, batch_size: int, sink: Sink | None = None) -> None:
        self.pipeline = pipeline
        self.ensemble = ensemble
        self.options = options
        self.summary = summary
        self.bar = bar
        self.sink = sink if sink is not None else sink_for(options)
        self.batch_size = batch_size  # lowered for the rest of the job when the GPU runs out of memory
        self.png_text = {**run_metadata(pipeline, options), **_png_text(summary.ensemble)}

    # ---------------------------------------------------------------- reporting

    def fail(self, item: io.InputItem, error: BaseException, images: int = 1) -> None:
        """Record a failed input, tell the user right away, and stop if asked to. Missing
        weights (the captioner's included) end the whole job: every other input would fail alike.

        `images` is how far the progress bar moves (0 for a video: its frames already did).
        """
        if isinstance(error, WeightsNotFoundError):
            raise error
        self.bar.update(images)
        reason = _reason(error, item)
        self.summary.failed += 1
        self.summary.failures.append((item.label, reason))
        if self.options.keep_results:
            self.summary.results.append(
                Prediction(name=str(item.name), source=item.path, status="failed", error=reason)
            )
        if self.options.progress:
            self.bar.write(f"failed: {item.label}: {reason}")
        if self.options.fail_fast:
            raise StopJob

    def record(self, name: PurePosixPath, item: io.InputItem, depth: np.ndarray,
               segmentation: np.ndarray | None, prompt: str | None, written: list[Path],
               geometry: dict | None = None, temporal: dict | None = None, frame: tuple | None = None,
               raw_depth: np.ndarray | None = None) -> None:
        """One image's or frame's final result: to the sink, and kept when the job keeps results.
        `frame`: (index, time) of a video frame; `raw_depth`: its own prediction before alignment."""
        index, seconds = frame if frame is not None else (None, None)
        prediction = Prediction(
            name=str(name), source=item.path, status="done", depth=depth,
            segmentation=segmentation, prompt=prompt, outputs=written,
            ensemble=self.summary.ensemble, geometry=geometry, temporal=temporal,
            video=str(item.name) if frame is not None else None, frame_index=index, time=seconds,
            raw_depth=raw_depth,
        )
        self.sink.add(prediction)
        if self.options.keep_results:
            self.summary.results.append(prediction)

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
                    self.bar.write(f"out of GPU memory: going on with batches of {self.batch_size}")
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

    def write(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None) -> list[Any]:
        """Write the per-image depth outputs of one prediction, keeping existing files."""
        return self.sink.write_image(name, depth, segmentation, self.options, self.png_text)

    def write_geometry(self, item: io.InputItem, depth: np.ndarray, image: Any) -> tuple[list[Path], dict | None]:
        """The 3D and metric outputs of an image (after its depth outputs, so a bad known-depth
        file fails the item with its depth already written). Their warnings (a guessed field of
        view...) are shown once per job."""
        options, folder = self.options, self.sink.folder
        if folder is None or not options.geometry_kinds:
            return [], None
        paths = geometry_output_paths(folder, item.name, options.geometry_kinds)
        written, report = write_geometry_outputs(paths, depth, to_rgb_uint8(image), options.geometry,
                                                 source=item.path if item.data is None else None,
                                                 overwrite=options.overwrite, name=item.name)
        for warning in report.get("warnings", []):
            if self.bar.warn(item.label, warning):
                self.summary.warnings.append((item.label, warning))
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
        except WeightsNotFoundError:
            raise
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
            depth, segmentation, prompt = unpack(output, index)
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
            clip = VideoJob(self, item, unpack)
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
        self.sink.finish_clip(str(item.name))
        self.summary.videos.append(clip.listing())
        self.summary.done += 1
        self.summary.clips += 1
        self.summary.frames += len(clip.frames)


def _load(item: io.InputItem) -> Any:
    """The image of an item: decoded from its file or bytes, or the in-memory image as given."""
    if item.data is not None:
        return io.read_image(item.data, label=item.label)
    if item.path is not None:
        return io.read_image(item.path)
    return item.image


@dataclass
class _JoinedOutput:
    """The outputs of consecutive pipeline calls as one: what `unpack` reads."""

    depth: list[Any]
    segmentation: list[Any] | None
    prompts: list[str] | None


def _joined_outputs(outputs: list[Any]) -> _JoinedOutput:
    def joined(name: str) -> list[Any] | None:
        parts = [getattr(output, name, None) for output in outputs]
        return None if any(part is None for part in parts) else [value for part in parts for value in part]

    return _JoinedOutput(depth=joined("depth"), segmentation=joined("segmentation"), prompts=joined("prompts"))


def unpack(output: Any, index: int) -> tuple[np.ndarray, np.ndarray | None, str | None]:
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
    """A one-line reason for a failure, without repeating the item's label."""
    message = str(error).strip() or type(error).__name__
    if message.startswith(f"{item.label}: "):
        message = message[len(f"{item.label}: "):]
    if not isinstance(error, (PrimeDepthError, OSError)):
        message = f"{type(error).__name__}: {message}"
    return message.splitlines()[0]
