"""The models `primedepth eval --model NAME` knows by name, built from `primedepth.adapters`.

Names: the baselines (Marigold v1-0 with its CVPR protocol, Marigold v1-1, the Depth Anything
models of `--ensemble`), "ensemble" (PrimeDepth + Depth Anything V1 Large, the paper's best row), a user adapter
("module:attr" or "file.py:attr"), or anything else as a PrimeDepth model (hub id, folder, .ckpt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..adapters import (
    DepthAnythingAdapter,
    DepthModel,
    MarigoldAdapter,
    PrimeDepthAdapter,
    load_user_adapter,
)
from ..constants import DEFAULT_ENSEMBLE, ENSEMBLE_MEMBERS, OFFICIAL_REPO_ID
from ..ensemble import EnsembleAdapter

__all__ = ["BASELINE_NAMES", "build_adapter"]

BASELINE_NAMES = ("marigold-v1-0", "marigold-v1-1", "depth-anything-large", "depth-anything-v2-large", "ensemble")


def build_adapter(
    model: str,
    device: Any = "cpu",
    dtype: Any = torch.float32,
    seed: int | None = None,
    primedepth_model: str = OFFICIAL_REPO_ID,
) -> DepthModel:
    """The adapter named by `--model`: a baseline name, 'module:attr', or a PrimeDepth model.

    `primedepth_model` is the PrimeDepth half of `ensemble`.
    """
    if model == "marigold-v1-0":
        return MarigoldAdapter("v1-0", device=device, dtype=dtype, seed=seed)
    if model == "marigold-v1-1":
        return MarigoldAdapter("v1-1", device=device, dtype=dtype, seed=seed)
    if model in ENSEMBLE_MEMBERS:  # the Depth Anything models, by the names --ensemble takes
        return DepthAnythingAdapter(ENSEMBLE_MEMBERS[model], device=device, dtype=dtype, name=model)
    if model == "ensemble":  # the paper's PD + DA row: Depth Anything V1 Large
        return EnsembleAdapter(
            PrimeDepthAdapter(primedepth_model, device=device, dtype=dtype, seed=seed),
            DepthAnythingAdapter(ENSEMBLE_MEMBERS[DEFAULT_ENSEMBLE], device=device, dtype=dtype, name=DEFAULT_ENSEMBLE),
        )
    if ":" in model and not Path(model).exists():
        return load_user_adapter(model)
    return PrimeDepthAdapter(model, device=device, dtype=dtype, seed=seed)
