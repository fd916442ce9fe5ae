"""Server settings: what `primedepth serve` and `primedepth demo` are started with.

Every limit of the HTTP API lives here, with a safe default, so that the CLI, the tests, the
benchmark and the Ray Serve deployment configure the same server the same way. Nothing in this
module imports torch or a web framework: the CLI's `--help` stays fast.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import DEFAULT_MAX_SIZE, DEFAULT_SEED, OFFICIAL_REPO_ID
from ..errors import InputError
from ..io.outputs import DEFAULT_COLORMAP
from ..option_checks import check_common_options

__all__ = ["ServeSettings", "is_loopback", "check_bind", "read_key_file", "API_KEY_ENV", "API_KEY_FILE_ENV",
           "LOOPBACK_HOST"]

LOOPBACK_HOST = "127.0.0.1"
API_KEY_ENV = "PRIMEDEPTH_API_KEY"
API_KEY_FILE_ENV = "PRIMEDEPTH_API_KEY_FILE"
MEBIBYTE = 1024 * 1024

INSECURE_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! primedepth: serving on {host} WITHOUT AUTHENTICATION (--insecure-no-auth).
!! Anyone who can reach this address can use the model and your compute.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


@dataclass
class ServeSettings:
    """Model, batching and limits of one server; see the README's "Serving" section.

    `batch_size` is images per forward pass ("auto": 1 on the CPU, by free memory on a GPU);
    `batch_window_ms` how long the first request of a batch waits for others. `max_queue`
    counts images waiting or running, `max_queue_pixels` their input pixels; beyond either,
    requests get 503 with Retry-After, and a request that could never fit (more images than
    `max_queue`, more pixels than `max_queue_pixels`) gets 413 at once. `max_size` is the
    default and the largest processing size a request may ask for; `seed` the seed used when a
    request gives none (so equal requests get equal answers). `api_key` (never printed: not in
    the repr) protects every route but /healthz and a minimal /readyz, /metrics too unless
    `metrics_public`. `max_demo_bytes` bounds the demo's result files on disk (oldest evicted),
    `max_display_points` the points of its PLY and the vertices of its GLB.
    """

    model: str | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: str = "fp32"
    offload: bool = False
    host: str = LOOPBACK_HOST
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    metrics_public: bool = False
    insecure_no_auth: bool = False
    batch_size: int | str = "auto"
    batch_window_ms: float = 5.0
    max_queue: int = 64
    max_queue_pixels: int = 200_000_000
    max_upload_bytes: int = 20 * MEBIBYTE
    max_pixels: int = 40_000_000
    max_images: int = 8
    timeout_s: float = 120.0
    max_size: int = DEFAULT_MAX_SIZE
    seed: int = DEFAULT_SEED
    prompt: str | None = None
    colormap: str = DEFAULT_COLORMAP
    max_prompt_chars: int = 300
    max_video_frames: int = 300
    max_demo_bytes: int = 1024 * MEBIBYTE
    max_display_points: int = 500_000
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        positive = {
            "max_queue": self.max_queue, "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels, "max_images": self.max_images, "timeout_s": self.timeout_s,
            "max_video_frames": self.max_video_frames, "retry_after_s": self.retry_after_s,
            "max_queue_pixels": self.max_queue_pixels, "max_demo_bytes": self.max_demo_bytes,
            "max_display_points": self.max_display_points,
        }
        for name, value in positive.items():
            if value <= 0:
                raise InputError(f"{name.replace('_', '-')} must be positive, got {value}")
        if self.batch_window_ms < 0:
            raise InputError(f"batch window must be >= 0 ms, got {self.batch_window_ms}")
        check_common_options(self.batch_size, self.max_size, self.colormap)
        self.api_key = self.api_key or None

    @property
    def model_name(self) -> str:
        """How responses name the model: the given source, or the official repository."""
        return str(self.model) if self.model is not None else OFFICIAL_REPO_ID

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: every allowed image at the size limit, plus form fields."""
        return self.max_upload_bytes * self.max_images + MEBIBYTE

    def with_env_key(self, environ: Any = os.environ) -> ServeSettings:
        """Take the API key from $PRIMEDEPTH_API_KEY, else from the file $PRIMEDEPTH_API_KEY_FILE
        names, when none was given (keeps it out of `ps` and shell history)."""
        if self.api_key is None and environ.get(API_KEY_ENV):
            self.api_key = environ[API_KEY_ENV].strip() or None
        if self.api_key is None and environ.get(API_KEY_FILE_ENV):
            self.api_key = read_key_file(environ[API_KEY_FILE_ENV])
        return self


def read_key_file(path: str | os.PathLike) -> str:
    """The API key in a file (one line; surrounding whitespace ignored). The key is never echoed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the API key file {path}: {getattr(error, 'strerror', None) or error}") from None
    key = text.strip()
    if not key or any(character.isspace() for character in key):
        raise InputError(f"the API key file {path} must hold one key on one line (no spaces)")
    return key


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServeSettings, demo: bool = False) -> None:
    """Refuse to expose the model beyond this machine without a key, unless told loudly.

    The key protects the API and the demo alike (browser users sign in at /login), so `demo`
    no longer changes the rule; it is kept for callers.
    """
    del demo
    if is_loopback(settings.host) or settings.api_key is not None:
        return
    if settings.insecure_no_auth:
        print(INSECURE_BANNER.format(host=settings.host), file=sys.stderr, flush=True)
        return
    raise InputError(
        f"binding {settings.host} exposes the model beyond this machine: set --api-key-file FILE "
        f"(or ${API_KEY_ENV}, ${API_KEY_FILE_ENV}), or pass --insecure-no-auth to serve without authentication"
    )
