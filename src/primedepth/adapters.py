"""Depth models behind one protocol: PrimeDepth, Marigold, Depth Anything V2, or your own.

Evaluation scores them, the ensemble averages them and training uses Depth Anything as a
teacher, all through this interface. An adapter is any object with

- `name`: a short identifier, used for the output folder and in tables;
- `output_space`: "depth" (relative depth, e.g. Marigold) or "disparity" (relative inverse
  depth, e.g. PrimeDepth, Depth Anything); it selects the alignment space;
- `__call__(image: np.ndarray) -> np.ndarray`: an (H, W, 3) uint8 RGB image in, an (H, W)
  float32 map at the same size out, in `output_space`, up to an unknown scale and shift.

Wrap a plain function with `CallableAdapter(fn, name="mine", output_space="disparity")`.
The adapters here load their weights on the first call, so a run whose predictions are all
cached never loads a model.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

import torch
import torch.nn.functional as F
from diffusers import MarigoldDepthPipeline
from PIL import Image
from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

from .alignment import SPACES
from .constants import DEPTH_ANYTHING_V2_LARGE_ID, OFFICIAL_REPO_ID
from .devices import dtype_kwargs, parse_dtype
from .errors import InputError, PrimeDepthError, weights_unavailable
from .loading import load_pipeline
from .model.forward import seeded_generator

MARIGOLD_V1_0_ID = "prs-eth/marigold-depth-v1-0"
MARIGOLD_V1_1_ID = "prs-eth/marigold-depth-v1-1"
# CVPR 2024 protocol of Marigold v1-0: 50 DDIM steps, ensemble of 10 predictions.
MARIGOLD_V1_0_STEPS = 50
MARIGOLD_V1_0_ENSEMBLE = 10


@runtime_checkable
class DepthModel(Protocol):
    """What evaluation, the ensemble and training need from a depth model (see the module docstring)."""

    name: str
    output_space: str

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


DepthAdapter = DepthModel  # the name before 0.2


def check_adapter(adapter: Any) -> DepthModel:
    """Fail early, with a readable message, on objects that are not adapters."""
    missing = [attr for attr in ("name", "output_space") if not hasattr(adapter, attr)]
    if missing or not callable(adapter):
        raise InputError(
            f"{adapter!r} is not a depth adapter: it needs `name`, `output_space` and "
            f"`__call__(image) -> depth map` (missing: {', '.join(missing) or '__call__'})"
        )
    if adapter.output_space not in SPACES:
        raise InputError(
            f"adapter {adapter.name!r} has output_space {adapter.output_space!r}; "
            f"expected one of {', '.join(SPACES)}"
        )
    return adapter


def check_output(prediction: Any, image: np.ndarray, name: str) -> np.ndarray:
    """An adapter's output as a finite float32 (H, W) map of the input image's size."""
    prediction = np.asarray(prediction, dtype=np.float32)
    if prediction.ndim > 2:
        prediction = prediction.squeeze()
    if prediction.shape != image.shape[:2]:
        raise InputError(
            f"model {name!r} returned a map of shape {prediction.shape} for an image of "
            f"shape {image.shape[:2]}; adapters must return (H, W) at the input size"
        )
    if not np.all(np.isfinite(prediction)):
        raise InputError(f"model {name!r} returned NaN or infinite values")
    return prediction


class CallableAdapter:
    """Turns a plain `fn(image) -> map` into an adapter."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str, output_space: str) -> None:
        self.fn = fn
        self.name = name
        self.output_space = output_space
        check_adapter(self)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return check_output(self.fn(image), image, self.name)


class MarigoldAdapter:
    """Marigold through diffusers' `MarigoldDepthPipeline`; predicts affine-invariant depth.

    `variant="v1-0"` reproduces the CVPR protocol (50 steps x 10 members); `"v1-1"` uses the
    checkpoint's own defaults (its configured step count, one member). The harness resizes
    images to the dataset's processing resolution, so the pipeline runs at the given size.
    """

    output_space = "depth"

    def __init__(
        self,
        variant: str = "v1-1",
        model_id: str | None = None,
        device: Any = "cpu",
        dtype: Any = torch.float32,
        seed: int | None = None,
        num_inference_steps: int | None = None,
        ensemble_size: int | None = None,
        pipeline: Any = None,
    ) -> None:
        if variant not in ("v1-0", "v1-1"):
            raise InputError(f"unknown Marigold variant {variant!r}; expected v1-0 or v1-1")
        v1_0 = variant == "v1-0"
        self.name = f"marigold-{variant}"
        self.model_id = model_id or (MARIGOLD_V1_0_ID if v1_0 else MARIGOLD_V1_1_ID)
        self.num_inference_steps = num_inference_steps or (MARIGOLD_V1_0_STEPS if v1_0 else None)
        self.ensemble_size = ensemble_size or (MARIGOLD_V1_0_ENSEMBLE if v1_0 else 1)
        self.device, self.dtype, self.seed = torch.device(device), parse_dtype(dtype), seed
        self._pipeline = pipeline

    def load(self) -> None:
        """Load the weights now (otherwise on the first call)."""
        pipe = MarigoldDepthPipeline.from_pretrained(self.model_id, torch_dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        self._pipeline = pipe.to(self.device)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._pipeline is None:
            self.load()
        output = self._pipeline(
            Image.fromarray(image),
            num_inference_steps=self.num_inference_steps,
            ensemble_size=self.ensemble_size,
            processing_resolution=0,  # native: the harness already applied the protocol's size
            match_input_resolution=True,
            generator=seeded_generator(self.seed, "cpu" if self.device.type == "mps" else self.device),
            output_type="np",
        )
        return check_output(output.prediction, image, self.name)


class DepthAnythingAdapter:
    """Depth Anything (V1 or V2, any size) through transformers; predicts affine-invariant disparity."""

    output_space = "disparity"

    def __init__(
        self,
        model_id: str = DEPTH_ANYTHING_V2_LARGE_ID,
        device: Any = "cpu",
        dtype: Any = torch.float32,
        name: str = "depth-anything-v2-large",
        model: Any = None,
        processor: Any = None,
    ) -> None:
        self.name, self.model_id = name, str(model_id)
        self.device, self.dtype = torch.device(device), parse_dtype(dtype)
        self._model, self._processor = model, processor

    def load(self) -> None:
        """Load the weights now (otherwise on the first call); a missing model fails with the one
        offline message (or names the broken local folder)."""
        try:
            self._processor = AutoImageProcessor.from_pretrained(self.model_id)
            model = DepthAnythingForDepthEstimation.from_pretrained(self.model_id, **dtype_kwargs(self.dtype))
        except Exception as error:  # noqa: BLE001 - offline, missing, HTTP, bad files: all end here
            if Path(self.model_id).is_dir():
                raise PrimeDepthError(f"cannot load the Depth Anything model folder {self.model_id} ({error})") from error
            raise weights_unavailable(
                "Depth Anything weights", self.model_id, error,
                alternatives="pass a local model folder (--ensemble-model PATH; Python: a folder path)",
            ) from error
        self._model = model.to(self.device).eval()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        inputs = self._processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, dtype=next(self._model.parameters()).dtype)
        with torch.inference_mode():
            disparity = self._model(pixel_values=pixels).predicted_depth  # (1, h, w)
        disparity = F.interpolate(
            disparity[:, None].float(), size=image.shape[:2], mode="bilinear", align_corners=False
        )
        return check_output(disparity[0, 0].cpu().numpy(), image, self.name)


DepthAnythingV2Adapter = DepthAnythingAdapter  # the name before 0.2


class PrimeDepthAdapter:
    """PrimeDepth through `primedepth.PrimeDepthPipeline`; predicts affine-invariant disparity,
    returned min-max normalised to [0, 1] (see `_unit_range`).

    `prompt=None` keeps the model's default text conditioning; the seed is re-applied for
    every image (PrimeDepth adds noise at t = 1, so unseeded runs differ slightly).
    """

    output_space = "disparity"

    def __init__(
        self,
        model: str = OFFICIAL_REPO_ID,
        device: Any = "cpu",
        dtype: Any = torch.float32,
        seed: int | None = None,
        prompt: str | None = None,
        name: str | None = None,
        pipeline: Any = None,
    ) -> None:
        self.model, self.device, self.seed, self.prompt = model, device, seed, prompt
        self.dtype = parse_dtype(dtype)
        self.name = name or _primedepth_name(model)
        self._pipeline = pipeline

    def load(self) -> None:
        """Load the weights now (otherwise on the first call)."""
        self._pipeline = load_pipeline(self.model, device=self.device, dtype=self.dtype)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._pipeline is None:
            self.load()
        kwargs: dict[str, Any] = {"generator": seeded_generator(self.seed)}
        if self.prompt is not None:
            kwargs["prompt"] = self.prompt
        output = self._pipeline(image, **kwargs)
        return check_output(_unit_range(output.depth[0]), image, self.name)


def _unit_range(disparity: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]. PrimeDepth's raw output has an arbitrary shift and can be negative,
    while the disparity protocol fits on pred > 0 only; an affine map changes nothing else."""
    low, high = float(disparity.min()), float(disparity.max())
    if not high > low:
        return np.zeros_like(disparity, dtype=np.float32)
    return ((disparity - low) / (high - low)).astype(np.float32)


def _primedepth_name(model: str) -> str:
    """Folder-safe name of a PrimeDepth model path or hub id."""
    if model == OFFICIAL_REPO_ID:
        return "primedepth"
    return "primedepth-" + safe_name(Path(model.rstrip("/")).name or model)


def safe_name(name: str) -> str:
    """A name usable as one path component."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "model"


# ------------------------------------------------------------------------------- your own


def load_user_adapter(spec: str) -> DepthModel:
    """A user adapter from 'package.module:attr' or 'path/to/file.py:attr'.

    `attr` is an adapter object, an adapter class, or a zero-argument factory returning one.
    """
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"expected 'module:attribute' or 'file.py:attribute', got {spec!r}")
    module = _import_target(target)
    if not hasattr(module, attr):
        raise InputError(f"{target} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "output_space")):
        try:
            obj = obj()
        except TypeError as error:
            raise InputError(f"cannot create the adapter {spec!r} without arguments: {error}") from None
    return check_adapter(obj)


def _import_target(target: str) -> Any:
    """Import a module by dotted name or from a .py file path."""
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"adapter file not found: {path}")
        module_name = f"_primedepth_user_adapter_{safe_name(path.stem)}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise InputError(f"cannot import adapter module {target!r}: {error}") from None
