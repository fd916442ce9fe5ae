"""The option values every front end shares (CLI and `predict` through `JobOptions`, the
server's settings, the Ray job), checked by one function with one set of messages.

Outside `primedepth.engine` on purpose: importing the engine package loads torch, and the
server's settings are read by `primedepth serve --help`, which must stay fast.
"""

from __future__ import annotations

from .constants import MIN_MAX_SIZE
from .errors import InputError
from .io.outputs import check_colormap

__all__ = ["check_common_options"]


def check_common_options(batch_size: int | str, max_size: int, colormap: str) -> None:
    """Refuse a bad batch size, processing size or colour map with the one message for each."""
    if batch_size != "auto" and not (isinstance(batch_size, int) and not isinstance(batch_size, bool)
                                     and batch_size >= 1):
        raise InputError(f"batch size must be 'auto' or a whole number >= 1, got {batch_size!r}")
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < MIN_MAX_SIZE:
        raise InputError(f"max size must be at least {MIN_MAX_SIZE} pixels (the shortest side the UNet "
                         f"processes), got {max_size}")
    check_colormap(colormap)
