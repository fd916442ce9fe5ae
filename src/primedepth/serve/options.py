"""What one depth request asks for, checked against the server's settings before any work.

Only values are accepted (output kinds, sizes, a seed, a prompt, a colormap name), never a
path or a URL. Each image of a request becomes an `ImageJob`; images of any requests share a
forward pass when their processed sizes match (`primedepth.serve.forward.Bucket`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..io.outputs import FRAME_OUTPUT_KINDS, check_colormap
from ..processing import MIN_MAX_SIZE
from .errors import ApiError
from .forward import ImageJob
from .settings import ServeSettings

__all__ = ["BatchKey", "DepthRequest", "parse_request", "SEED_LIMIT"]

BatchKey = ImageJob  # the former name (it no longer decides who shares a forward pass)

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes 64-bit seeds
DEFAULT_REQUEST_OUTPUTS = ("png16",)


@dataclass(frozen=True)
class DepthRequest:
    """The checked options of one request (see `parse_request`)."""

    outputs: tuple[str, ...]
    max_size: int
    seed: int
    prompt: str | None
    colormap: str

    @property
    def job(self) -> ImageJob:
        """The options each image of the request is predicted with."""
        return ImageJob(self.seed, self.max_size, self.prompt, "seg" in self.outputs)

    @property
    def key(self) -> ImageJob:
        return self.job


def _outputs(text: str | None) -> tuple[str, ...]:
    """Comma-separated output kinds, in the order given, without repeats."""
    kinds = tuple(dict.fromkeys(k.strip() for k in (text or "").split(",") if k.strip()))
    if not kinds:
        return DEFAULT_REQUEST_OUTPUTS
    unknown = [kind for kind in kinds if kind not in FRAME_OUTPUT_KINDS]
    if unknown:
        raise ApiError(422, "bad_outputs",
                       f"unknown output kind(s) {', '.join(unknown)}; choose from {', '.join(FRAME_OUTPUT_KINDS)}")
    return kinds


def _max_size(value: int | None, settings: ServeSettings) -> int:
    if value is None:
        return settings.max_size
    if not MIN_MAX_SIZE <= value <= settings.max_size:
        raise ApiError(422, "bad_max_size",
                       f"max_size must be between {MIN_MAX_SIZE} (the smallest accepted) and this server's limit "
                       f"{settings.max_size}, got {value}")
    return value


def _seed(value: int | None, settings: ServeSettings) -> int:
    if value is None:
        return settings.seed
    if not 0 <= value < SEED_LIMIT:
        raise ApiError(422, "bad_seed", f"seed must be between 0 and 2**63 - 1, got {value}")
    return value


def _prompt(value: str | None, settings: ServeSettings) -> str | None:
    if value is None:
        return settings.prompt
    if len(value) > settings.max_prompt_chars:
        raise ApiError(422, "bad_prompt", f"prompt is {len(value)} characters, more than the limit {settings.max_prompt_chars}")
    return value


def _colormap(value: str | None, settings: ServeSettings) -> str:
    if not value:
        return settings.colormap
    try:
        check_colormap(value)
    except InputError as error:
        raise ApiError(422, "bad_colormap", str(error)) from None
    return value


def parse_request(
    settings: ServeSettings,
    outputs: str | None = None,
    max_size: int | None = None,
    seed: int | None = None,
    prompt: str | None = None,
    colormap: str | None = None,
) -> DepthRequest:
    """Check one request's options; missing ones take the server's defaults. Raises `ApiError` 422."""
    return DepthRequest(
        outputs=_outputs(outputs), max_size=_max_size(max_size, settings), seed=_seed(seed, settings),
        prompt=_prompt(prompt, settings), colormap=_colormap(colormap, settings),
    )
