"""One video input of a `primedepth predict` job: conditioning per clip, two streaming passes.

The job engine (`primedepth.engine`) hands each video to a `VideoJob`:

- one conditioning per clip: the prompt is resolved once ("auto": one caption of the middle
  frame, or of the first when the length is unknown) and the noise is drawn once, then both are
  given to every frame, so content changes, not noise or captions, drive the prediction;
- pass 1 predicts the frames in batches and stores each raw prediction at once (`clip.RawStore`),
  the stabiliser running along (`passes.ClipPasses`): the global mode gathers the correspondence
  summaries and solves the whole clip when pass 1 ends, the window modes gather the clip's ranges;
- pass 2 aligns the stored predictions again (the global mode also filters them over time, a
  window of frames held, so each frame is written a few frames after it is read) and writes the
  frame outputs and the depth video with one normalisation for the clip (`clip.write_clip_frame`,
  `DepthVideoWriter`); every frame's result carries its raw prediction (`Prediction.raw_depth`);
- a frame that cannot be decoded is reported with its index and skipped (no outputs for it; the
  depth video keeps the previous frame on screen for its time), and the clip goes on.

With ``--temporal none`` every frame is normalised on its own, as before alignment existed.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import io
from ..io.video import DecodedFrame, probe_video, read_video
from ..model.forward import seeded_generators
from ..pipeline import AUTO_PROMPT, prompt_option
from .clip import RawStore, frame_text, work_folder, write_clip_frame
from .correspondence import resolve_temporal
from .normalize import ClipRange
from .passes import ClipPasses
from .stabilizer import StabilizedFrame

QUEUE_LIMIT = 4  # frames waiting for the stabiliser, in batches: predict early beyond this


class Runner(Protocol):
    """What a `VideoJob` needs from the job engine's runner."""

    pipeline: Any
    options: Any
    summary: Any
    bar: Any
    png_text: dict[str, str]
    batch_size: int

    def infer(self, images: list[Any], conditioning: Callable[[int], dict] | None = None) -> Any: ...

    def record(self, name: Any, item: Any, depth: np.ndarray, segmentation: np.ndarray | None, prompt: str | None,
               written: list[Path], geometry: dict | None = None, temporal: dict | None = None,
               frame: tuple | None = None, raw_depth: np.ndarray | None = None) -> None: ...


class VideoJob:
    """Depth for every frame of one video (see the module docstring)."""

    def __init__(self, runner: Runner, item: io.InputItem, unpack: Callable[[Any, int], tuple]) -> None:
        self.runner, self.item, self.unpack = runner, item, unpack
        self.options = options = runner.options
        self.mode = resolve_temporal(options.temporal)
        self.info = probe_video(item.source)
        self.video_path = None
        if options.output_dir is not None and "video" in options.outputs:
            self.video_path = io.output_paths(options.output_dir, item.name, ("video",))["video"]
        self.store = self._store()
        self.ranges = ClipRange()
        self.times: dict[int, float | None] = {}
        self.written: dict[int, list[Path]] = {}
        self.undecodable: list[str] = []  # what was reported for frames that could not be decoded
        self.prompt: str | None = self.store.read_state().get("prompt")  # a resumed clip's
        self.frames: list[list] = []  # [index, time, scale, shift] per written frame, for the job record
        self.conditioning: Callable[[int], dict] | None = None

    def _store(self) -> RawStore:
        """Raw predictions: in a private spool folder without an output folder, else the ``.npy`` outputs when asked
        for, else the hidden work folder; a work folder made for other settings is emptied."""
        options = self.options
        if options.output_dir is None:  # spooled to a private folder: memory stays bounded by a batch
            return RawStore(Path(tempfile.mkdtemp(prefix="primedepth-clip-")))
        folder = work_folder(options.output_dir, self.item.name)
        store = RawStore(folder, self._npy_path if "npy" in options.frame_kinds else None)
        state = store.read_state()
        if options.overwrite or (state and state.get("produced_by") != self._fingerprint()):
            store.discard()
        return store

    def _npy_path(self, index: int) -> Path:
        """The ``.npy`` output of frame `index`: its raw prediction, as for images."""
        return io.output_paths(self.options.output_dir, io.frame_name(self.item.name, index), ("npy",))["npy"]

    def _fingerprint(self) -> dict[str, str]:
        """What the raw predictions depend on: a stored clip made otherwise is not reused."""
        return {**self.runner.png_text, "ensemble": str(self.runner.summary.ensemble)}

    # ------------------------------------------------------------------ pass 1: predict

    def predict(self) -> None:
        """Store every frame's raw prediction (predicting those not stored yet) and gather the
        clip's ranges with the stabiliser running along (the global mode solves the clip at the end)."""
        stabilizer = self.passes = self.stabilizer()
        queue: list[DecodedFrame] = []
        missing: list[DecodedFrame] = []
        for frame in read_video(self.item.source):
            if frame.image is None:
                self._report_undecodable(frame)
                continue
            self.times[frame.index] = frame.time
            queue.append(frame)
            if not self.store.has(frame.index) or self._fresh(frame.index):
                missing.append(frame)
            if len(missing) >= self.runner.batch_size or len(queue) >= QUEUE_LIMIT * self.runner.batch_size:
                self._predict(missing)
                missing = []
            queue = self._flush(queue, stabilizer, missing)
        self._predict(missing)
        self._flush(queue, stabilizer, [])
        if not self.times:
            raise io.InputError("none of the video's frames could be decoded" if self.undecodable else
                                "the video has no frames")
        self.ranges = stabilizer.ranges()

    def _fresh(self, index: int) -> bool:
        """True when a stored prediction must be made again (overwriting, and not made by this run)."""
        return self.options.overwrite and index not in self.written

    def _flush(self, queue: list[DecodedFrame], stabilizer: ClipPasses, missing: list[DecodedFrame]) -> list[DecodedFrame]:
        """Feed the stabiliser the queued frames whose predictions are stored, in order."""
        waiting = {frame.index for frame in missing}
        while queue and queue[0].index not in waiting:
            frame = queue.pop(0)
            stabilizer.first(self.store.get(frame.index), frame.image)
            self.runner.bar.update(1)
        return queue

    def _predict(self, frames: list[DecodedFrame]) -> None:
        """One batch through the pipeline; each raw prediction is stored as soon as it is made."""
        if not frames:
            return
        if self.conditioning is None:
            self.conditioning = self._clip_conditioning(frames[0].image)
        output = self.runner.infer([frame.image for frame in frames], self.conditioning)
        for row, frame in enumerate(frames):
            depth, segmentation, prompt = self.unpack(output, row)
            self.prompt = prompt or self.prompt
            self.store.put(frame.index, depth)
            self.written[frame.index] = self._write_segmentation(frame.index, segmentation)
        self.runner.summary.images += len(frames)

    def _write_segmentation(self, index: int, segmentation: np.ndarray | None) -> list[Path]:
        """Segmentation does not depend on the clip: written (or kept in memory) in pass 1."""
        options = self.options
        if segmentation is None:
            return []
        if options.keep_results or options.output_dir is None:  # pass 2 hands them on (results, stream, sink)
            self.store.put_labels(index, segmentation)
        if options.output_dir is None or "seg" not in options.frame_kinds:
            return []
        paths = io.output_paths(options.output_dir, io.frame_name(self.item.name, index), ("seg",))
        return io.write_outputs(paths, np.zeros((1, 1), np.float32), segmentation, overwrite=options.overwrite)

    def _report_undecodable(self, frame: DecodedFrame) -> None:
        when = "" if frame.time is None else f" (t = {frame.time:.3f} s)"
        message = (f"frame {frame.index}{when} could not be decoded ({frame.error}); skipped: it has no outputs, "
                   "and the depth video shows the previous frame for its time")
        self.undecodable.append(message)
        self.runner.summary.warnings.append((self.item.label, message))
        if self.options.progress:
            self.runner.bar.write(f"warning: {self.item.label}: {message}")

    def stabilizer(self) -> ClipPasses:
        """The clip's stabilisation for both passes (`passes.ClipPasses`): pass 1 feeds it, the
        ranges come between the passes, pass 2 gets the aligned frames."""
        return ClipPasses(self.mode, self.options.temporal_window, self.options.temporal_smoothing,
                          self.options.temporal_filter)

    # ------------------------------------------------------------------ one conditioning per clip

    def _clip_conditioning(self, image: np.ndarray) -> Callable[[int], dict]:
        """Pipeline arguments for `count` frames: the clip's prompt and the clip's noise, the same
        for every frame. Saved with the stored predictions, so a resumed run uses the same."""
        state = self.store.read_state()
        prompt_args = self._prompt_args(state)
        seed = self.options.seed if self.options.seed is not None else state.get("seed")
        seed = secrets.randbelow(2**63) if seed is None else int(seed)  # "random": drawn once per clip
        self.store.write_state({"produced_by": self._fingerprint(), "prompt": self.prompt, "seed": seed})
        noise = self._noise(image, seed)
        return lambda count: {**prompt_args, **noise(count)}

    def _prompt_args(self, state: dict) -> dict:
        """The clip's prompt (or embeddings): "auto" becomes one caption, of the middle frame."""
        options, pipeline = self.options, self.runner.pipeline
        if options.prompt_embeds is not None:
            return {"prompt_embeds": options.prompt_embeds}
        prompt = prompt_option(options.prompt, pipeline)
        if prompt == AUTO_PROMPT:
            prompt = state.get("prompt") or pipeline.captioner.caption([self._caption_frame()])[0]
        self.prompt = prompt
        return {} if prompt is None else {"prompt": prompt}

    def _caption_frame(self) -> np.ndarray:
        """The middle frame (the first when the container does not know the length)."""
        middle = (self.info.frames or 1) // 2
        chosen = None
        for frame in read_video(self.item.source):
            if frame.image is not None:
                chosen = frame.image
                if frame.index >= middle:
                    break
        if chosen is None:
            raise io.InputError("none of the video's frames could be decoded")
        return chosen

    def _noise(self, image: np.ndarray, seed: int) -> Callable[[int], dict]:
        """The clip's noise, drawn once for the frames' processing size and given explicitly to
        every frame; pipelines that draw their own get one generator per frame with the clip's seed
        (the same draw)."""
        pipeline = self.runner.pipeline
        if not (callable(getattr(pipeline, "draw_noise", None)) and hasattr(pipeline, "unet")):
            return lambda count: {"generator": seeded_generators(seed, count)}
        size = pipeline.processing_size(*image.shape[:2], self.options.max_size)
        noise = pipeline.draw_noise([size], seeded_generators(seed, 1))[0]
        return lambda count: {"posterior_noise": [noise.posterior] * count, "step_noise": [noise.step] * count}

    # ------------------------------------------------------------------ pass 2: write

    def write(self) -> None:
        """Align the stored predictions again and write the frame outputs and the depth video,
        all by the clip's one normalisation."""
        writer = self._video_writer()
        stored = ((frame, self.store.get(frame.index), frame.image) for frame in read_video(self.item.source)
                  if frame.image is not None and frame.index in self.times)
        try:
            for frame, result in self.passes.stream(stored):
                written = self._write_frame(frame.index, result)
                if writer is not None:
                    writer.write(result.display, frame.time if writer.timed else None)
                self._record(frame.index, result, written)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()

    def _video_writer(self) -> io.DepthVideoWriter | None:
        """The depth video's writer (None when not asked for or kept), coloured by the clip's display
        range (per frame with --temporal none) and timed when the frames are not evenly spaced."""
        path = self.video_path
        if path is None or (path.exists() and not self.options.overwrite):
            return None
        value_range = None if self.mode == "none" else (self.ranges.display_low, self.ranges.display_high)
        return io.DepthVideoWriter(path, self.info.fps, self.options.colormap, value_range, timed=self._uneven())

    def _uneven(self) -> bool:
        """Whether frame times differ from index / fps by half a frame (variable frame rate, or
        frames skipped): then the video is written at the source times."""
        times = [(index, time) for index, time in self.times.items() if time is not None]
        if len(times) != len(self.times):
            return False
        if max(self.times) + 1 != len(self.times):  # a frame was skipped: keep its time on screen
            return True
        fps = float(self.info.fps)
        return any(abs(time - index / fps) > 0.5 / fps for index, time in times)

    def _write_frame(self, index: int, result: StabilizedFrame) -> list[Path]:
        """The 16-bit and colour outputs of one frame: by the clip's ranges, or per frame for "none"."""
        options = self.options
        written = self.written.get(index, [])
        if options.output_dir is None:
            return written
        kinds = [kind for kind in options.frame_kinds if kind in ("png16", "color")]
        paths = io.output_paths(options.output_dir, io.frame_name(self.item.name, index), kinds)
        if self.mode == "none":
            return written + io.write_outputs(paths, result.depth, None, options.colormap, options.overwrite,
                                              png_text=self.runner.png_text)
        text = frame_text(self.runner.png_text, result, self.mode, index, self.passes.filter_radius)
        return written + write_clip_frame(paths, result, self.ranges, options.colormap, options.overwrite, text)

    def _record(self, index: int, result: StabilizedFrame, written: list[Path]) -> None:
        self.frames.append([index, self.times.get(index), result.scale, result.shift])
        temporal = {"mode": self.mode, "scale": result.scale, "shift": result.shift, "fitted": result.fitted,
                    "temporal_filter": self.passes.filter_radius if result.filtered else 0,
                    "filter_neighbours": result.neighbours,
                    **{f"clip_{key}": value for key, value in self.ranges.as_dict().items()}}
        segmentation = self.store.pop_labels(index)
        self.runner.record(io.frame_name(self.item.name, index), self.item, result.depth, segmentation, self.prompt,
                           written, temporal=temporal, frame=(index, self.times.get(index)), raw_depth=result.raw)

    # ------------------------------------------------------------------ the end

    def listing(self) -> dict:
        """The clip's entry of the job record: settings, ranges, and per frame its index, time (s),
        scale and shift (``raw = (aligned - shift) / scale`` before the temporal filter, which
        `temporal_filter` > 0 says was applied); frames that could not be decoded."""
        return {"video": str(self.item.name), "temporal": self.mode, "window": self.options.temporal_window,
                "smoothing": self.options.temporal_smoothing, "temporal_filter": self.passes.filter_radius,
                "prompt": self.prompt, "range": self.ranges.as_dict(),
                "frames_fields": ["index", "time_s", "scale", "shift"], "frames": self.frames,
                "undecodable": self.undecodable}

    def finish(self) -> None:
        """The clip is done: its stored predictions are no longer needed (``.npy`` outputs stay)."""
        self.store.discard()

    def abort(self) -> None:
        """The clip stopped (error or Ctrl-C): keep what was predicted for a resumed run when
        per-frame outputs were asked for, since the frame outputs then resume at frame granularity;
        with the depth video alone (or in memory), nothing per-frame is left behind."""
        if not self.options.frame_kinds or self.options.output_dir is None:
            self.store.discard()
