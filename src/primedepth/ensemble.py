"""Ground-truth-free PrimeDepth + Depth Anything ensemble (the paper's best row).

The paper's pixel-wise average of PrimeDepth and Depth Anything is the strongest entry of its
tables. Both models predict disparity up to an unknown scale and shift, so they cannot be
averaged directly; without ground truth we bring Depth Anything into PrimeDepth's frame by a
least-squares scale and shift over the pixels where both are valid, and then average.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError


def align_to_reference(
    source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """`source` mapped by the least-squares scale and shift that best matches `reference`."""
    source = np.asarray(source, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if source.shape != reference.shape:
        raise InputError(f"cannot align maps of shapes {source.shape} and {reference.shape}")
    valid = np.isfinite(source) & np.isfinite(reference)
    if mask is not None:
        if mask.shape != source.shape:
            raise InputError(f"mask shape {mask.shape} differs from map shape {source.shape}")
        valid &= mask.astype(bool)
    x, y = source[valid], reference[valid]
    if x.size < 2 or np.ptp(x) == 0:
        raise InputError("alignment needs at least 2 valid pixels with varying values")
    design = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, y, rcond=None)
    return source * scale + shift


def ensemble_disparity(
    primedepth: np.ndarray, depth_anything: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Pixel-wise mean of PrimeDepth's disparity and Depth Anything's aligned to it (float32).

    The result is in PrimeDepth's (affine-invariant) disparity frame.
    """
    aligned = align_to_reference(depth_anything, primedepth, mask)
    return ((np.asarray(primedepth, dtype=np.float64) + aligned) / 2.0).astype(np.float32)


class EnsembleAdapter:
    """An adapter averaging two disparity adapters, the second aligned to the first."""

    output_space = "disparity"

    def __init__(self, reference: Any, other: Any, name: str | None = None) -> None:
        for adapter in (reference, other):
            if getattr(adapter, "output_space", None) != "disparity":
                raise InputError(
                    f"the ensemble averages disparity maps; {getattr(adapter, 'name', adapter)!r} "
                    f"predicts {getattr(adapter, 'output_space', 'an unknown space')}"
                )
        self.reference, self.other = reference, other
        self.name = name or f"{reference.name}+{other.name}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return ensemble_disparity(self.reference(image), self.other(image))
