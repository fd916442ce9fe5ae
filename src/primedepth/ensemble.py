"""Ground-truth-free PrimeDepth + Depth Anything ensemble (the paper's best row).

The paper's pixel-wise average of PrimeDepth and Depth Anything is the strongest entry of its
tables. Both models predict disparity up to an unknown scale and shift, so they cannot be
averaged directly; without ground truth we bring Depth Anything into PrimeDepth's frame by a
least-squares scale and shift over the pixels where both are valid, and then average.

The fit is the evaluation protocol's own (`primedepth.eval.alignment.fit_scale_shift`), so the
ensemble users run on their images and the one the benchmark scores are the same computation.
Two entry points use it: `EnsembleAdapter` (benchmark harness) and `EnsemblePipeline`, which
`primedepth predict --ensemble` / `primedepth.predict(ensemble=...)` put around the pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .devices import pipeline_device_and_dtype
from .errors import InputError, PrimeDepthError, WeightsNotFoundError
from .eval.alignment import fit_scale_shift
from .eval.baselines import DEPTH_ANYTHING_V2_LARGE_ID, DepthAnythingV2Adapter

# Names accepted by `--ensemble`, with the weights each stands for.
ENSEMBLE_MEMBERS: dict[str, str] = {"depth-anything-v2-large": DEPTH_ANYTHING_V2_LARGE_ID}
DEFAULT_ENSEMBLE = "depth-anything-v2-large"
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


class EnsemblePipeline:
    """A PrimeDepth pipeline whose depth maps are the ensemble with a second disparity model.

    It is called exactly like the pipeline it wraps, so the prediction job writes every output
    (PNG, npy, colour, video) from the ensemble without knowing about it. Segmentation and
    prompts stay PrimeDepth's.
    """

    def __init__(self, pipeline: Any, other: Any, description: str) -> None:
        _check_disparity_adapter(other)
        self.pipeline, self.other, self.description = pipeline, other, description

    @property
    def segmentation_head(self) -> Any:
        """The wrapped pipeline's head, so the job can still refuse segmentation without one."""
        return getattr(self.pipeline, "segmentation_head", True)

    def __call__(self, image: Any, **kwargs: Any) -> Any:
        """Run the pipeline, then replace each depth map by its ensemble with the other model."""
        from .processing import as_image_list

        images = as_image_list(image)
        output = self.pipeline(images, **kwargs)
        output.depth = [
            ensemble_disparity(depth, self.other(rgb_uint8(item)))
            for depth, item in zip(output.depth, images)
        ]
        return output


def rgb_uint8(image: Any) -> np.ndarray:
    """Any image the pipeline accepts as the (H, W, 3) uint8 array adapters take.

    The pipeline's own validation is reused, so an image is accepted by both models or by none.
    """
    from .processing import to_rgb_float

    rgb, _ = to_rgb_float(image)
    return np.round(rgb * 255.0).astype(np.uint8)


def ensemble_source(member: str | os.PathLike[str]) -> str:
    """The weights of an ensemble member: a name of `ENSEMBLE_MEMBERS`, hub id or model folder."""
    member = str(member)
    return ENSEMBLE_MEMBERS.get(member, member)


def describe_ensemble(source: str) -> str:
    """What a depth output holds when it is an ensemble (PNG metadata and job summary)."""
    return (
        f"PrimeDepth + Depth Anything V2 ({source}): Depth Anything's disparity aligned to "
        "PrimeDepth's by least squares, then averaged"
    )


def load_ensemble_member(source: str, device: str, dtype: str) -> DepthAnythingV2Adapter:
    """Depth Anything V2 from a hub id or a local folder, loaded now so a missing model fails once.

    `dtype` is a torch dtype name (float32, bfloat16, float16), normally the pipeline's.
    """
    is_folder = Path(source).is_dir()
    if not is_folder and not _looks_like_hub_id(source):
        raise InputError(
            f"ensemble model not found: {source} is neither a folder nor a hub repository id "
            f"(ensemble names: {', '.join(ENSEMBLE_MEMBERS)})"
        )
    adapter = DepthAnythingV2Adapter(model_id=source, device=device, dtype=dtype,
                                     name=Path(source.rstrip("/")).name or source)
    try:
        adapter.load()
    except Exception as error:  # noqa: BLE001 - offline, missing, HTTP, bad files: all end here
        # transformers' messages go on with generic advice; their first sentence is the reason
        reason = f"{type(error).__name__}: {error}".splitlines()[0].split(". ")[0]
        if is_folder:
            raise PrimeDepthError(
                f"cannot load the Depth Anything V2 model folder {source} for the ensemble ({reason})"
            ) from error
        raise WeightsNotFoundError(_unavailable_message(source, reason)) from error
    return adapter


def _looks_like_hub_id(source: str) -> bool:
    """'owner/name' with no path prefix: what the hub accepts as a repository id."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and all(source.split("/"))


def _unavailable_message(source: str, reason: str) -> str:
    """What was looked for and how to get it, for a member that is neither local nor downloadable."""
    from huggingface_hub import constants

    known = ", ".join(ENSEMBLE_MEMBERS)
    return (
        f"could not get the Depth Anything V2 weights '{source}' for the ensemble ({reason}). "
        f"Looked for a local model folder '{source}' and for the hub repository in the Hugging Face "
        f"cache {constants.HF_HUB_CACHE}. To fix: connect to the internet and unset HF_HUB_OFFLINE "
        f"(the weights are downloaded once, then cached), or run `hf download {source}` where you "
        "are online and copy the cache, or pass a local model folder with --ensemble-model PATH "
        f"(Python: ensemble=PATH). Known ensemble names: {known}."
    )


def ensemble_pipeline(pipeline: Any, member: Any) -> EnsemblePipeline:
    """Wrap a loaded PrimeDepth pipeline into the ensemble with `member`.

    `member`: a name of `ENSEMBLE_MEMBERS`, a Depth Anything V2 hub id or model folder (loaded
    on the pipeline's device and in its dtype), or an already loaded disparity adapter.
    """
    if not isinstance(member, (str, os.PathLike)):
        name = getattr(member, "model_id", None) or getattr(member, "name", type(member).__name__)
        return EnsemblePipeline(pipeline, member, describe_ensemble(str(name)))
    source = ensemble_source(member)
    device, dtype = pipeline_device_and_dtype(pipeline)  # both models run side by side
    return EnsemblePipeline(pipeline, load_ensemble_member(source, device, dtype), describe_ensemble(source))
