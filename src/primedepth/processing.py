"""Image pre-processing and prediction post-processing of the pipeline.

Pre-processing follows the official inference (spec §1): RGB in [0, 1], downscaled with
antialiased bilinear resampling only when the longer side exceeds `max_size`, mapped to [-1, 1].
8-bit images are resized with PIL exactly as the official code (torchvision on PIL) does;
16-bit and float images are resized in float with torch's antialiased bilinear filter, so no
precision is lost.

Post-processing differs on purpose: the official code silently drops up to 7 trailing rows and
columns (the VAE works on multiples of 8). Here the prediction is first extended to the processed
size by repeating its last row/column, then resized to the input size, so outputs always match
the input and stay pixel-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .constants import DEFAULT_MAX_SIZE, MIN_MAX_SIZE, VAE_DOWNSAMPLE
from .errors import InputError
from .io.outputs import DEFAULT_COLORMAP, colorize_depth, depth_to_png16, labels_to_image

__all__ = ["ImageInput", "PreparedImage", "processed_size", "processing_size", "check_aspect_ratio",
           "MAX_ASPECT_RATIO", "MIN_MAX_SIZE", "MIN_IMAGE_SIDE", "to_rgb_float", "to_rgb_uint8", "prepare_image", "as_image_list", "restore_size",
           "PrimeDepthImageProcessor"]

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor

# The smallest image accepted: anything smaller than the model can process is upscaled first
# (see `smallest_processable_side`) and its depth resized back to the input size.
MIN_IMAGE_SIDE = 2
# The most elongated image accepted (longer side / shorter side). Thinner images would need a
# longer side above 64 * 64 = 4096 pixels once their shorter side is at the model's minimum.
MAX_ASPECT_RATIO = 64
_FLOAT_RANGE_SLACK = 1e-3


@dataclass
class PreparedImage:
    """One image ready for the model: pixels (1, 3, h, w) in [-1, 1] and the size it came in."""

    pixel_values: torch.Tensor
    input_size: tuple[int, int]

    @property
    def processed_size(self) -> tuple[int, int]:
        return tuple(self.pixel_values.shape[-2:])


def processed_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(height, width) the official inference runs at (spec §1 step 3).

    Not resized when the longer side is <= max_size. Square images become max_size squared.
    Otherwise torchvision's Resize(size=max_size - 1, max_size=max_size) rule applies, whose
    int() truncations are reproduced (1300x600 -> 1024x472). No side ever becomes 0 (the
    truncation would make one of very elongated images): it is kept at 1 at least.
    """
    if max(height, width) <= max_size:
        return height, width
    if height == width:
        return max_size, max_size
    short, long = min(height, width), max(height, width)
    new_short, new_long = max_size - 1, int((max_size - 1) * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_short = max(1, new_short)
    return (new_long, new_short) if height > width else (new_short, new_long)


def aspect_ratio(height: int, width: int) -> float:
    """Longer side over shorter side (1 for squares)."""
    return max(height, width) / max(1, min(height, width))


def check_aspect_ratio(height: int, width: int) -> None:
    """Refuse, with the reason, images more elongated than `MAX_ASPECT_RATIO`:1: with its shorter
    side at the model's minimum such an image would cost more than a normal photo at full size."""
    ratio = aspect_ratio(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise InputError(
            f"image of {width}x{height} pixels is too elongated to process: its aspect ratio is "
            f"{ratio:.4g}:1, beyond the {MAX_ASPECT_RATIO}:1 this model accepts; crop it into parts"
        )


def smallest_processable_side(unet_config: Any) -> int:
    """The shortest image side the UNet can walk: every downsampling but the last level's must
    leave more than one latent position (a 1 x 1 map at a level with one channel per GroupNorm
    group breaks the norm: 16 x 16 images did on small models). 64 for Stable Diffusion."""
    downsamplings = len(unet_config.down_block_types) - 1  # the last level does not downsample
    return VAE_DOWNSAMPLE * 2**downsamplings


def as_image_list(images: ImageInput | list[ImageInput] | tuple) -> list[ImageInput]:
    """Split the accepted batch forms into single images (a 4-D array/tensor is a batch)."""
    if isinstance(images, (list, tuple)):
        items = list(images)
    elif isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        items = list(images)
    else:
        items = [images]
    if not items:
        raise InputError("no images given (empty batch)")
    return items


def _pil_to_array(image: PIL.Image.Image) -> np.ndarray:
    """PIL image -> HxWx3 array, uint8 for 8-bit images, float in [0, 1] for 16-bit/float ones."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image, dtype=np.float64) / 65535.0
    if image.mode == "F":
        return np.asarray(image, dtype=np.float64)
    return np.asarray(image.convert("RGB"))


def _to_hwc_array(image: ImageInput) -> np.ndarray:
    """Any accepted single image -> HxWxC numpy array (uint8, or float in [0, 1])."""
    if isinstance(image, PIL.Image.Image):
        return _pil_to_array(image)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
            raise InputError(f"a tensor image must be (3, H, W) (or (1|4, H, W)); got shape {tuple(image.shape)}")
        return image.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        return image
    raise InputError(f"unsupported image type {type(image).__name__}: use a PIL image, numpy array or torch tensor")


def _to_rgb_float(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate and convert to HxWx3 float32 in [0, 1]; also tell whether it was 8-bit."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"an image must be HxW, HxWx1, HxWx3 or HxWx4; got shape {array.shape}")
    height, width = array.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InputError(f"image of {width}x{height} pixels is too small: both sides must be >= {MIN_IMAGE_SIDE}")
    if array.shape[2] == 4:
        array = array[:, :, :3]  # alpha is not depth information
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, True
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0, False
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"unsupported image dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -_FLOAT_RANGE_SLACK or high > 1 + _FLOAT_RANGE_SLACK:
        raise InputError(f"float image values must lie in [0, 1]; got [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0), False


def to_rgb_float(image: ImageInput) -> tuple[np.ndarray, bool]:
    """Validate any accepted single image: (HxWx3 float32 in [0, 1], whether it was 8-bit).

    Every model fed from the pipeline's inputs (e.g. an ensemble member) uses this, so an image
    is accepted by all of them or by none.
    """
    return _to_rgb_float(_to_hwc_array(image))


def to_rgb_uint8(image: ImageInput) -> np.ndarray:
    """Any accepted single image as (H, W, 3) uint8 RGB, for models that take 8-bit images (BLIP-2,
    ensemble members); 8-bit inputs come back exactly, others rounded."""
    rgb, _ = to_rgb_float(image)
    return np.round(rgb * 255.0).astype(np.uint8)


def _resize(rgb: np.ndarray, size: tuple[int, int], is_8bit: bool) -> torch.Tensor:
    """Antialiased bilinear resize to (h, w); PIL for 8-bit data (official), torch otherwise."""
    if is_8bit:
        pil = PIL.Image.fromarray(np.round(rgb * 255.0).astype(np.uint8))
        resized = np.asarray(pil.resize((size[1], size[0]), PIL.Image.BILINEAR), dtype=np.float32) / 255.0
        return torch.from_numpy(resized).permute(2, 0, 1)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def processing_size(height: int, width: int, max_size: int, min_size: int = VAE_DOWNSAMPLE) -> tuple[int, int]:
    """(height, width) an image is run at: the one sizing rule of the pipeline, the CLI and the server.

    1. images beyond `MAX_ASPECT_RATIO`:1 are refused (`InputError` naming the ratio);
    2. the official downscale to `max_size` (taken as at least `min_size`: a smaller one would be
       undone by step 3), see `processed_size`;
    3. when the shorter side is then below `min_size`, the input scaled so that it is `min_size`, the shortest side the model can process
       (see `smallest_processable_side`). A thin image's longer side may then exceed `max_size`;
       its pixels stay below min_size**2 * MAX_ASPECT_RATIO, a normal photo's cost.

    Any image of at least `MIN_IMAGE_SIDE` pixels a side within the ratio gets a size whose sides are
    >= min_size; nothing divides by zero.
    """
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InputError(f"image of {width}x{height} pixels is too small: both sides must be >= {MIN_IMAGE_SIDE}")
    check_aspect_ratio(height, width)
    size = processed_size(height, width, max(max_size, min_size))
    if min(size) >= min_size:
        return size
    # From the input size: the downscale's int() truncations would distort a thin image's shape.
    scale = min_size / min(height, width)
    return tuple(max(min_size, round(side * scale)) for side in (height, width))  # type: ignore[return-value]


def prepare_image(image: ImageInput, max_size: int, min_size: int = VAE_DOWNSAMPLE) -> PreparedImage:
    """Validate one image and turn it into model input (official pre-processing); its size comes
    from `processing_size` (thin or tiny images are upscaled, beyond MAX_ASPECT_RATIO refused)."""
    rgb, is_8bit = to_rgb_float(image)
    input_size = rgb.shape[:2]
    size = processing_size(*input_size, max_size, min_size)
    if size == input_size:
        pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    else:
        pixels = _resize(rgb, size, is_8bit)
    return PreparedImage(pixel_values=(pixels * 2.0 - 1.0)[None].contiguous(), input_size=input_size)


def restore_size(
    prediction: torch.Tensor, processed: tuple[int, int], target: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Bring a (B, C, h, w) prediction of a `processed`-size image to the `target` (input) size
    (`mode` "nearest" for class labels)."""
    missing_rows, missing_cols = processed[0] - prediction.shape[-2], processed[1] - prediction.shape[-1]
    if missing_rows or missing_cols:
        prediction = F.pad(prediction, (0, missing_cols, 0, missing_rows), mode="replicate")
    if tuple(prediction.shape[-2:]) != tuple(target):
        corners = {} if mode == "nearest" else {"align_corners": False}
        prediction = F.interpolate(prediction, size=target, mode=mode, **corners)
    return prediction


class PrimeDepthImageProcessor:
    """Pre- and post-processing of `PrimeDepthPipeline` (`pipe.image_processor`), and turning
    predictions into images, in the manner of diffusers' `MarigoldImageProcessor`."""

    def preprocess(self, image: ImageInput, max_size: int = DEFAULT_MAX_SIZE, min_size: int = VAE_DOWNSAMPLE) -> PreparedImage:
        """One image -> model input (official pre-processing; see `prepare_image`)."""
        if max_size < VAE_DOWNSAMPLE:
            raise InputError(f"max_size must be >= {VAE_DOWNSAMPLE}")
        return prepare_image(image, max_size, min_size)

    def postprocess(
        self, raw: Any, row: int, prepared: PreparedImage, labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Row `row` of a raw prediction at the input size: depth (H, W) as the mean of the depth
        head's 3 channels (float32), and segmentation logits (C, H, W) float32, or with `labels`
        their argmax taken at the processing size and resized nearest (H, W) int16 (150 classes
        at full resolution would need 600 bytes per pixel); None without segmentation."""
        mean_depth = raw.depth[row : row + 1].float().mean(dim=1, keepdim=True)
        depth = restore_size(mean_depth, prepared.processed_size, prepared.input_size)[0, 0].cpu()
        if raw.segmentation is None:
            return depth, None
        logits = raw.segmentation[row : row + 1]
        if labels:
            classes = logits.argmax(dim=1, keepdim=True).float()
            return depth, restore_size(classes, prepared.processed_size, prepared.input_size, "nearest")[0, 0].to(torch.int16).cpu()
        return depth, restore_size(logits.float(), prepared.processed_size, prepared.input_size)[0].cpu()

    def convert_depth(self, depth: list[torch.Tensor], output_type: str) -> list[Any]:
        """Depth maps as numpy ("np"), torch ("pt") or 16-bit PIL images ("pil")."""
        if output_type == "pt":
            return list(depth)
        arrays = [d.numpy() for d in depth]
        return self.export_depth_to_16bit_png(arrays) if output_type == "pil" else arrays

    def convert_labels(self, logits: list[torch.Tensor], output_type: str) -> list[Any]:
        """Segmentation logits as numpy ("np"), torch ("pt") or palette label images ("pil")."""
        if output_type == "pt":
            return list(logits)
        arrays = [item.numpy() for item in logits]
        return [labels_to_image(a) for a in arrays] if output_type == "pil" else arrays

    @staticmethod
    def visualize_depth(depth: Any, colormap: str = DEFAULT_COLORMAP) -> list[PIL.Image.Image]:
        """Colour images of depth maps (one map or a list), each min-max normalised."""
        maps = depth if isinstance(depth, (list, tuple)) else [depth]
        return [PIL.Image.fromarray(colorize_depth(np.asarray(d, dtype=np.float32), colormap)) for d in maps]

    @staticmethod
    def export_depth_to_16bit_png(depth: Any) -> list[PIL.Image.Image]:
        """16-bit grayscale images of depth maps (one map or a list), each min-max normalised."""
        maps = depth if isinstance(depth, (list, tuple)) else [depth]
        return [PIL.Image.fromarray(depth_to_png16(np.asarray(d, dtype=np.float32))[0]) for d in maps]
