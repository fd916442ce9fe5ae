"""Casting diffusers models to a dtype without diffusers' spurious warning.

diffusers (0.3x-0.42) warns "There are modules in X that should be kept in float32: []" on every
`ModelMixin.to(dtype)`, even when the list is empty (no module needs float32): noise in `train`
and the benchmarks. Our call sites cast inside `quiet_empty_fp32_warning` (or `cast_module`), which
drops exactly that empty-list message; a model that does list float32 modules still warns. The
command line drops it for its whole process (`drop_empty_fp32_warning`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DIFFUSERS_MODELING_LOGGER = "diffusers.models.modeling_utils"
EMPTY_FP32_MESSAGE = "that should be kept in float32: []"


class _EmptyFp32Filter(logging.Filter):
    """Drops the warning when its module list is empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        return EMPTY_FP32_MESSAGE not in record.getMessage()


@contextmanager
def quiet_empty_fp32_warning() -> Iterator[None]:
    """Within the block, diffusers' empty "kept in float32: []" warning is not emitted."""
    logger = logging.getLogger(DIFFUSERS_MODELING_LOGGER)
    quiet = _EmptyFp32Filter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def cast_module(module: Any, dtype: Any) -> Any:
    """`module.to(dtype)` (in place, returned) without the empty float32 warning."""
    with quiet_empty_fp32_warning():
        return module.to(dtype)


_PROCESS_FILTER = _EmptyFp32Filter()


def drop_empty_fp32_warning() -> None:
    """Drop the empty-list warning for the rest of the process (idempotent): what the command
    line does, so that every cast it makes (convert --dtype, train, predict) stays quiet."""
    logger = logging.getLogger(DIFFUSERS_MODELING_LOGGER)
    if _PROCESS_FILTER not in logger.filters:
        logger.addFilter(_PROCESS_FILTER)
