"""Server settings: what `primedepth serve` and `primedepth demo` are started with.

Every limit of the HTTP API lives here, with a safe default, so that the CLI, the tests, the
benchmark and the Ray Serve deployment configure the same server the same way. Nothing in this
module imports torch or a web framework: the CLI's `--help` stays fast.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from typing import Any

from ..constants import DEFAULT_MAX_SIZE, DEFAULT_SEED, OFFICIAL_REPO_ID, VAE_DOWNSAMPLE
from ..errors import InputError
from ..io.outputs import DEFAULT_COLORMAP, check_colormap

__all__ = ["ServeSettings", "is_loopback", "check_bind", "API_KEY_ENV", "LOOPBACK_HOST"]

LOOPBACK_HOST = "127.0.0.1"
API_KEY_ENV = "PRIMEDEPTH_API_KEY"
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
    counts images waiting or running; beyond it requests get 503 with Retry-After. `max_size`
    is the default and the largest processing size a request may ask for; `seed` the seed
    used when a request gives none (so equal requests get equal answers).
    """

    model: str | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: str = "fp32"
    offload: bool = False
    host: str = LOOPBACK_HOST
    port: int = 8000
    api_key: str | None = None
    insecure_no_auth: bool = False
    batch_size: int | str = "auto"
    batch_window_ms: float = 5.0
    max_queue: int = 64
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
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        positive = {
            "max_queue": self.max_queue, "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels, "max_images": self.max_images, "timeout_s": self.timeout_s,
            "max_video_frames": self.max_video_frames, "retry_after_s": self.retry_after_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise InputError(f"{name.replace('_', '-')} must be positive, got {value}")
        if self.batch_window_ms < 0:
            raise InputError(f"batch window must be >= 0 ms, got {self.batch_window_ms}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise InputError(f"batch size must be 'auto' or a whole number >= 1, got {self.batch_size!r}")
        if self.max_size < VAE_DOWNSAMPLE:
            raise InputError(f"max size must be at least {VAE_DOWNSAMPLE} pixels, got {self.max_size}")
        check_colormap(self.colormap)
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
        """Take the API key from $PRIMEDEPTH_API_KEY when none was given (keeps it out of `ps`)."""
        if self.api_key is None and environ.get(API_KEY_ENV):
            self.api_key = environ[API_KEY_ENV]
        return self


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

    The browser demo has no API key, so a demo on another address needs --insecure-no-auth.
    """
    if is_loopback(settings.host):
        return
    if settings.insecure_no_auth:
        print(INSECURE_BANNER.format(host=settings.host), file=sys.stderr, flush=True)
        return
    if demo:
        raise InputError(
            f"the browser demo has no authentication: to serve it on {settings.host} add "
            "--insecure-no-auth (or keep the default 127.0.0.1 behind your own proxy)"
        )
    if settings.api_key is None:
        raise InputError(
            f"binding {settings.host} exposes the model beyond this machine: set --api-key "
            f"(or ${API_KEY_ENV}), or pass --insecure-no-auth to serve without authentication"
        )
