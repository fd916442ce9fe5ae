"""The options of a job: one definition and one validation for every front end.

`JobOptions` is what the engine runs by. The command line builds it from its flags, `predict`
and `primedepth.distributed.predict_dataset` from their keywords (`job_options`, whose names
and defaults are `JOB_KEYWORDS`, read off `JobOptions` itself, so the two entry points never
type the list twice), and the server's settings check their shared values with the same
`check_common_options` (in `primedepth.option_checks`, which imports no torch).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import io
from ..constants import DEFAULT_MAX_SIZE, DEFAULT_SEED
from ..errors import InputError
from ..option_checks import check_common_options
from ..geometry.outputs import GeometryOptions, check_geometry_request
from ..io.outputs import DEFAULT_OUTPUTS
from ..video.stabilizer import DEFAULT_SMOOTHING, DEFAULT_WINDOW, check_filter, check_temporal
from ..video.temporal_filter import DEFAULT_RADIUS

__all__ = ["JobOptions", "OUTPUT_KINDS", "JOB_KEYWORDS", "job_options", "takes_job_keywords",
           "check_common_options", "check_items"]

OUTPUT_KINDS = tuple(io.ALL_OUTPUT_SUFFIXES)


@dataclass
class JobOptions:
    """Everything about a job except its inputs and model; see `primedepth.predict` for the meaning.

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
    temporal_filter: int = DEFAULT_RADIUS  # videos, "global": frames each side the aligned depth is filtered over (0: off)

    def __post_init__(self) -> None:
        self.outputs = tuple(self.outputs)
        unknown = [kind for kind in self.outputs if kind not in OUTPUT_KINDS]
        if unknown:
            raise InputError(
                f"unknown output kind(s) {', '.join(unknown)}; choose from {', '.join(OUTPUT_KINDS)}"
            )
        if self.segmentation and "seg" not in self.outputs:
            self.outputs = (*self.outputs, "seg")
        self.segmentation = self.segmentation or "seg" in self.outputs
        check_common_options(self.batch_size, self.max_size, self.colormap)
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


def _check_temporal_options(options: JobOptions) -> None:
    """Refuse bad video settings up front; flow asked for without OpenCV names the extra."""
    from ..video.correspondence import flow_available  # lazy: OpenCV probing

    check_temporal(options.temporal or "align", options.temporal_window, options.temporal_smoothing)
    check_filter(options.temporal_filter)
    if options.temporal == "flow" and not flow_available():
        raise InputError("--temporal flow needs OpenCV: pip install 'primedepth[video]' "
                         "(opencv-python-headless), or use --temporal align")


def check_items(options: JobOptions, items: Sequence[io.InputItem]) -> None:
    """Refuse, before any model loads, requests the inputs cannot satisfy."""
    videos = [item for item in items if item.kind == "video"]
    if videos and options.geometry_kinds:
        raise InputError(
            f"--outputs {','.join(options.geometry_kinds)} (3D and metric outputs) are written for images only, "
            f"and {videos[0].label} is a video; run the video without them, or give its frames as images"
        )
    if options.output_dir is not None and options.outputs == ("video",) and not videos:
        raise InputError("--outputs video writes depth videos, and none of the inputs is a video")


# --------------------------------------------------------------------------------------------
# Keywords of the Python entry points

# JobOptions fields the front end sets itself, never a keyword of `predict`/`predict_dataset`.
_NOT_KEYWORDS = frozenset({"output_dir", "fail_fast", "keep_results", "progress", "model_name"})
JOB_KEYWORDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(JobOptions) if f.name not in _NOT_KEYWORDS
)


def _default(name: str) -> Any:
    spec = next(f for f in dataclasses.fields(JobOptions) if f.name == name)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return None  # a factory default (geometry): None means "the default" to `job_options`


def job_options(keywords: dict[str, Any], **fixed: Any) -> JobOptions:
    """`JobOptions` from an entry point's job keywords (unknown names are a TypeError, as for any
    function) plus what the entry point sets itself (`fixed`: output folder, error mode...)."""
    unknown = sorted(set(keywords) - set(JOB_KEYWORDS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    values = {name: value for name, value in keywords.items() if not (name == "geometry" and value is None)}
    return JobOptions(**values, **fixed)


def takes_job_keywords(function: Callable) -> Callable:
    """Give a function taking ``**job`` the signature of its job keywords (help(), IDEs, inspect):
    the names and defaults of `JOB_KEYWORDS`, after its own keyword-only parameters."""
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_default(name))
             for name in JOB_KEYWORDS if name not in signature.parameters]
    function.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return function
