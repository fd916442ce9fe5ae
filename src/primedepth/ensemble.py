"""Ground-truth-free PrimeDepth + Depth Anything ensemble (the paper's best row).

The paper's pixel-wise average of PrimeDepth and Depth Anything is the strongest entry of its
tables. Both models predict disparity up to an unknown scale and shift, so they cannot be
averaged directly; without ground truth we bring Depth Anything into PrimeDepth's frame by a
least-squares scale and shift over the pixels where both are valid, and then average.

The fit is the evaluation protocol's own (`primedepth.alignment.fit_scale_shift`), so the
ensemble users run on their images and the one the benchmark scores are the same computation.
It is a post-step on depth maps: `DepthEnsemble.apply` (what `primedepth predict --ensemble` and
`primedepth.predict(ensemble=...)` run after each prediction) and `EnsembleAdapter` (evaluation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import DepthAnythingAdapter
from .alignment import fit_scale_shift
from .constants import ENSEMBLE_MEMBERS, model_licence
from .errors import InputError
from .processing import ImageInput, to_rgb_uint8

# PNG text chunk that marks a depth output as an ensemble (and with which model).
ENSEMBLE_PNG_KEY = "depth_ensemble"


def align_to_reference(
    source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """`source` mapped by the least-squares scale and shift that best matches `reference`.

    Pixels that are non-finite in either map, or outside `mask`, are left out of the fit.
    """
    source = np.asarray(source, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    valid = _fit_pixels(source, reference, mask)
    scale, shift = fit_scale_shift(source, reference, valid)
    return source * scale + shift


def _fit_pixels(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Pixels usable for the fit; refuse fits that would be degenerate rather than guess.

    The protocol's fit tolerates a constant prediction (it then predicts the mean), but an
    ensemble member that is constant carries no information, so averaging it would only
    halve PrimeDepth's contrast.
    """
    if source.shape != reference.shape:
        raise InputError(f"cannot align maps of shapes {source.shape} and {reference.shape}")
    valid = np.isfinite(source) & np.isfinite(reference)
    if mask is not None:
        if mask.shape != source.shape:
            raise InputError(f"mask shape {mask.shape} differs from map shape {source.shape}")
        valid &= mask.astype(bool)
    if np.count_nonzero(valid) < 2 or np.ptp(source[valid]) == 0:
        raise InputError("alignment needs at least 2 valid pixels with varying values")
    return valid


def ensemble_disparity(
    primedepth: np.ndarray, depth_anything: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Pixel-wise mean of PrimeDepth's disparity and Depth Anything's aligned to it (float32).

    The result is in PrimeDepth's (affine-invariant) disparity frame.
    """
    aligned = align_to_reference(depth_anything, primedepth, mask)
    return ((np.asarray(primedepth, dtype=np.float64) + aligned) / 2.0).astype(np.float32)


def _check_disparity_adapter(adapter: Any) -> None:
    """Only disparity maps can be averaged with PrimeDepth's."""
    if getattr(adapter, "output_space", None) != "disparity":
        raise InputError(
            f"the ensemble averages disparity maps; {getattr(adapter, 'name', adapter)!r} "
            f"predicts {getattr(adapter, 'output_space', 'an unknown space')}"
        )


class EnsembleAdapter:
    """An adapter averaging two disparity adapters, the second aligned to the first."""

    output_space = "disparity"

    def __init__(self, reference: Any, other: Any, name: str | None = None) -> None:
        for adapter in (reference, other):
            _check_disparity_adapter(adapter)
        self.reference, self.other = reference, other
        self.name = name or f"{reference.name}+{other.name}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return ensemble_disparity(self.reference(image), self.other(image))


# --------------------------------------------------------------------------------------------
# The ensemble for users' own images (primedepth predict --ensemble)


@dataclass
class DepthEnsemble:
    """The post-step that turns PrimeDepth's depth maps into the ensemble with `member`.

    `description` says what the maps then are (PNG metadata, job summary). Segmentation and
    prompts stay PrimeDepth's.
    """

    member: Any
    description: str

    def __post_init__(self) -> None:
        _check_disparity_adapter(self.member)

    def apply(self, depth: np.ndarray, image: ImageInput) -> np.ndarray:
        """PrimeDepth's `depth` for `image` -> the ensemble's, in PrimeDepth's frame (float32)."""
        return ensemble_disparity(depth, self.member(to_rgb_uint8(image)))


def ensemble_source(member: str | os.PathLike[str]) -> str:
    """The weights of an ensemble member: a name of `ENSEMBLE_MEMBERS`, hub id or model folder."""
    member = str(member)
    return ENSEMBLE_MEMBERS.get(member, member)


def describe_ensemble(source: str) -> str:
    """What a depth output holds when it is an ensemble (PNG metadata and job summary)."""
    return (
        f"PrimeDepth + Depth Anything ({source}; {model_licence(source)}): Depth Anything's disparity "
        "aligned to PrimeDepth's by least squares, then averaged"
    )


def _looks_like_hub_id(source: str) -> bool:
    """'owner/name' with no path prefix: what the hub accepts as a repository id."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and all(source.split("/"))


def load_ensemble(member: Any, device: Any, dtype: Any) -> DepthEnsemble:
    """The ensemble with `member`: a name of `ENSEMBLE_MEMBERS`, a Depth Anything hub id or
    model folder (loaded now, on `device` in `dtype`, so a missing model fails once), or an
    already loaded disparity adapter."""
    if isinstance(member, DepthEnsemble):  # already loaded (e.g. once per Ray actor)
        return member
    if not isinstance(member, (str, os.PathLike)):
        name = getattr(member, "model_id", None) or getattr(member, "name", type(member).__name__)
        return DepthEnsemble(member, describe_ensemble(str(name)))
    source = ensemble_source(member)
    if not Path(source).is_dir() and not _looks_like_hub_id(source):
        raise InputError(
            f"ensemble model not found: {source} is neither a folder nor a hub repository id "
            f"(ensemble names: {', '.join(ENSEMBLE_MEMBERS)})"
        )
    adapter = DepthAnythingAdapter(model_id=source, device=device, dtype=dtype,
                                     name=Path(source.rstrip("/")).name or source)
    adapter.load()
    return DepthEnsemble(adapter, describe_ensemble(source))
