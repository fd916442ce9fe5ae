"""The models `primedepth eval --model NAME` knows by name, built from `primedepth.adapters`.

Names: the baselines (Marigold v1-0 with its CVPR protocol, Marigold v1-1, the Depth Anything
models of `--ensemble`), "ensemble" (PrimeDepth + Depth Anything V1 Large, the paper's best row), a user adapter
("module:attr" or "file.py:attr"), or anything else as a PrimeDepth model (hub id, folder, .ckpt).
"""

from __future__ import annotations

import hashlib
import re
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


def prompt_tag(prompt: str) -> str:
    """A short folder-safe tag for a prompt, so that predictions with different prompts are
    cached apart: "none" for "", "auto", else the first words plus a hash of the whole text."""
    if prompt == "":
        return "none"
    if prompt == "auto":
        return "auto"
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:24] or "text"
    return f"{words}-{hashlib.sha256(prompt.encode()).hexdigest()[:8]}"


def _primedepth(model: str, device: Any, dtype: Any, seed: int | None, prompt: str | None) -> PrimeDepthAdapter:
    """A PrimeDepth adapter; an explicit prompt is part of its name (and cache folder)."""
    adapter = PrimeDepthAdapter(model, device=device, dtype=dtype, seed=seed, prompt=prompt)
    if prompt is not None:
        adapter.name = f"{adapter.name}-prompt-{prompt_tag(prompt)}"
    return adapter


class CaptionerChecked:
    """An adapter whose first prediction is preceded by `check_captioner`: a run that needs BLIP-2
    captions stops at once (CaptionerUnavailableError, exit code 3) before its model loads,
    while a run whose predictions are all cached never needs the captioner."""

    def __init__(self, adapter: DepthModel) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.output_space = adapter.output_space
        self._checked = False

    def __call__(self, image: Any) -> Any:
        if not self._checked:
            from ..errors import CaptionerUnavailableError
            from ..text.captioning import check_captioner  # lazy: torch, huggingface_hub

            reason = check_captioner()
            if reason is not None:
                raise CaptionerUnavailableError.from_reason(reason)
            self._checked = True
        return self.adapter(image)


def uses_official_primedepth(model: str, primedepth_model: str = OFFICIAL_REPO_ID) -> bool:
    """Whether `--model` runs the official PrimeDepth weights (whose default prompt is "auto")."""
    return model == OFFICIAL_REPO_ID or (model == "ensemble" and primedepth_model == OFFICIAL_REPO_ID)


def build_adapter(
    model: str,
    device: Any = "cpu",
    dtype: Any = torch.float32,
    seed: int | None = None,
    primedepth_model: str = OFFICIAL_REPO_ID,
    prompt: str | None = None,
) -> DepthModel:
    """The adapter named by `--model`: a baseline name, 'module:attr', or a PrimeDepth model.

    `primedepth_model` is the PrimeDepth half of `ensemble`. `prompt` conditions PrimeDepth
    (None: the model's default, "auto" for the official weights; "" needs no captioner).
    """
    if model == "marigold-v1-0":
        return MarigoldAdapter("v1-0", device=device, dtype=dtype, seed=seed)
    if model == "marigold-v1-1":
        return MarigoldAdapter("v1-1", device=device, dtype=dtype, seed=seed)
    if model in ENSEMBLE_MEMBERS:  # the Depth Anything models, by the names --ensemble takes
        return DepthAnythingAdapter(ENSEMBLE_MEMBERS[model], device=device, dtype=dtype, name=model)
    if model == "ensemble":  # the paper's PD + DA row: Depth Anything V1 Large
        return EnsembleAdapter(
            _primedepth(primedepth_model, device, dtype, seed, prompt),
            DepthAnythingAdapter(ENSEMBLE_MEMBERS[DEFAULT_ENSEMBLE], device=device, dtype=dtype, name=DEFAULT_ENSEMBLE),
        )
    if ":" in model and not Path(model).exists():
        return load_user_adapter(model)
    return _primedepth(model, device, dtype, seed, prompt)
