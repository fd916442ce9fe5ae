"""Training data: labelled synthetic sets, pseudo-labelled folders, a ratio mixer, augmentations.

Every dataset yields a dict of tensors (an "item"):

- ``pixel_values``: (3, H, W) float32 in [-1, 1];
- ``disparity``: (1, H, W) float32 target, affine-invariant inverse depth (0 where invalid);
- ``valid_mask``: (1, H, W) bool, where the target may be used;
- ``segmentation`` (optional): (H, W) int64 class indices in [0, 150), ``SEGMENTATION_IGNORE_INDEX``
  where unlabelled.

Labelled sets are read through split lists (one sample per line, whitespace separated, paths
relative to the dataset root): ``RGB DEPTH [SEGMENTATION]``, the format of Marigold's
``data_split/`` files. Lines whose depth is ``None`` are skipped, blank lines and ``#`` comments too.

Segmentation labels follow the ADE20K convention: an 8-bit PNG whose value 0 means "other / not
labelled" and 1..150 are the classes. They are shifted down by one, so classes become 0..149
and 0 becomes ``SEGMENTATION_IGNORE_INDEX``.

Randomness (which source, which sample, which crop) comes from a generator seeded by
``(seed, global sample index)``: the stream of training samples is a pure function of the
index, so resuming at step N reproduces the batches exactly, whatever the worker count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..adapters import DepthAnythingAdapter
from ..constants import VAE_DOWNSAMPLE
from ..errors import InputError
from ..io.images import read_png_uint16

logger = logging.getLogger(__name__)

Item = dict[str, torch.Tensor]

# Hypersim, as preprocessed by Marigold: uint16 PNG in millimetres, rendered at 1024x768 with a
# focal length of 886.81 px. Its raw depth is the distance to the camera centre along the ray.
HYPERSIM_DEPTH_SCALE = 1000.0
HYPERSIM_MIN_DEPTH = 1e-5
HYPERSIM_MAX_DEPTH = 65.0
HYPERSIM_FOCAL_PX = 886.81
HYPERSIM_WIDTH = 1024
HYPERSIM_HEIGHT = 768
# In Marigold's preprocessed files, names with this marker already hold planar depth.
HYPERSIM_PLANAR_MARKER = "depth_plane"

# Virtual KITTI 2: uint16 PNG in centimetres; the sky is 65535 (655.35 m), outside the range.
VKITTI_DEPTH_SCALE = 100.0
VKITTI_MIN_DEPTH = 1e-5
VKITTI_MAX_DEPTH = 80.0
# KITTI benchmark crop, bottom-centred, as used for vKITTI training by Marigold.
KITTI_BENCHMARK_HEIGHT = 352
KITTI_BENCHMARK_WIDTH = 1216

# ADE20K-style segmentation: 150 classes stored as 1..150, 0 = unlabelled.
SEGMENTATION_CLASSES = 150
SEGMENTATION_IGNORE_INDEX = 255

# Unlabelled images: targets from Depth Anything V2, cached as `<stem><suffix>` beside the image.
DEFAULT_TEACHER = "depth-anything/Depth-Anything-V2-Small-hf"
PSEUDO_LABEL_SUFFIX = ".da2.npy"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Default mixing of Hypersim and vKITTI, as Marigold and the paper do.
DEFAULT_MIX_RATIOS = (0.9, 0.1)


# --------------------------------------------------------------------------------------------
# Reading files


def read_rgb(path: Path) -> torch.Tensor:
    """An RGB file as (3, H, W) float32 in [-1, 1], the range the VAE encoder expects."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0


def read_segmentation(path: Path) -> torch.Tensor:
    """An ADE20K-style label PNG as (H, W) int64: value v>0 -> class v-1, 0 -> ignore."""
    with Image.open(path) as image:
        labels = np.asarray(image).astype(np.int64)
    if labels.ndim == 3:  # some exports store the index in every channel
        labels = labels[..., 0]
    if labels.max(initial=0) > SEGMENTATION_CLASSES:
        raise InputError(f"{path}: label {labels.max()} exceeds {SEGMENTATION_CLASSES} classes")
    shifted = labels - 1
    shifted[labels == 0] = SEGMENTATION_IGNORE_INDEX
    return torch.from_numpy(shifted)


def hypersim_distance_to_planar(distance: np.ndarray, focal_px: float | None = None) -> np.ndarray:
    """Hypersim stores the Euclidean distance to the camera centre; the model learns planar depth.

    A pixel at offset (x, y) from the principal point sees along (x, y, f), so its planar depth
    is ``distance * f / |(x, y, f)|``. Pixel centres sit at half-integers, the principal point in
    the image centre. The focal length scales with the width when the image was resized.
    """
    height, width = distance.shape
    focal = focal_px if focal_px is not None else HYPERSIM_FOCAL_PX * width / HYPERSIM_WIDTH
    x = np.arange(width, dtype=np.float64) - (width - 1) / 2.0
    y = np.arange(height, dtype=np.float64) - (height - 1) / 2.0
    norm = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2 + focal**2)
    return distance * (focal / norm)


def depth_to_disparity(depth: np.ndarray, min_depth: float, max_depth: float) -> Item:
    """Planar depth (m) -> disparity target and valid mask: valid where min < depth < max."""
    valid = np.isfinite(depth) & (depth > min_depth) & (depth < max_depth)
    disparity = np.zeros_like(depth, dtype=np.float32)
    disparity[valid] = (1.0 / depth[valid]).astype(np.float32)
    return {
        "disparity": torch.from_numpy(disparity)[None],
        "valid_mask": torch.from_numpy(valid)[None],
    }


def kitti_benchmark_crop(tensor: torch.Tensor) -> torch.Tensor:
    """Bottom-centred 352x1216 crop of (..., H, W): the KITTI benchmark field of view."""
    height, width = tensor.shape[-2:]
    if height < KITTI_BENCHMARK_HEIGHT or width < KITTI_BENCHMARK_WIDTH:
        return tensor
    top = height - KITTI_BENCHMARK_HEIGHT
    left = (width - KITTI_BENCHMARK_WIDTH) // 2
    return tensor[..., top : top + KITTI_BENCHMARK_HEIGHT, left : left + KITTI_BENCHMARK_WIDTH]


# --------------------------------------------------------------------------------------------
# Split lists and labelled datasets


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split list, paths relative to the dataset root."""

    rgb: str
    depth: str | None
    segmentation: str | None = None


def read_split_list(path: Path) -> list[SplitEntry]:
    """Parse a Marigold-style split list: ``RGB DEPTH [SEGMENTATION]`` per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split list not found: {path}")
    entries: list[SplitEntry] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise InputError(f"{path}:{number}: expected 'RGB DEPTH [SEGMENTATION]', got {line!r}")
        if fields[1] == "None":
            continue
        segmentation = fields[2] if len(fields) > 2 and fields[2] != "None" else None
        entries.append(SplitEntry(fields[0], fields[1], segmentation))
    if not entries:
        raise InputError(f"split list {path} lists no usable samples")
    return entries


class SplitListDepthDataset(Dataset):
    """Common part of the labelled sets: RGB + uint16 depth PNG listed in a split file."""

    depth_scale: float = 1.0
    min_depth: float = 0.0
    max_depth: float = math.inf

    def __init__(self, root: str | Path, split_file: str | Path, segmentation: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"dataset root not found: {self.root}")
        self.entries = read_split_list(Path(split_file))
        self.use_segmentation = segmentation

    def __len__(self) -> int:
        return len(self.entries)

    def read_depth(self, entry: SplitEntry) -> np.ndarray:
        """Planar depth in metres; subclasses decode their own format."""
        raw = read_png_uint16(self.root / str(entry.depth))
        return raw.astype(np.float64) / self.depth_scale

    def crop(self, tensor: torch.Tensor) -> torch.Tensor:
        """Hook for a fixed crop applied to every raster (identity by default)."""
        return tensor

    def __getitem__(self, index: int) -> Item:
        entry = self.entries[index]
        item = {"pixel_values": read_rgb(self.root / entry.rgb)}
        item.update(depth_to_disparity(self.read_depth(entry), self.min_depth, self.max_depth))
        if self.use_segmentation and entry.segmentation is not None:
            item["segmentation"] = read_segmentation(self.root / entry.segmentation)
        _check_same_size(item, self.root / entry.rgb)
        return {key: self.crop(value) for key, value in item.items()}


class HypersimDataset(SplitListDepthDataset):
    """Hypersim in Marigold's preprocessed form (PNG / 1000, valid 1e-5 < d < 65 m).

    ``depth_type`` says what the PNG holds: ``"planar"`` depth, ``"distance"`` along the ray
    (converted here with f = 886.81 px at 1024x768), or ``"auto"``: planar when the file name
    contains ``depth_plane`` (Marigold's preprocessing), ray distance otherwise.
    """

    depth_scale = HYPERSIM_DEPTH_SCALE
    min_depth = HYPERSIM_MIN_DEPTH
    max_depth = HYPERSIM_MAX_DEPTH
    DEPTH_TYPES = ("auto", "planar", "distance")

    def __init__(
        self,
        root: str | Path,
        split_file: str | Path,
        depth_type: str = "auto",
        segmentation: bool = True,
    ) -> None:
        if depth_type not in self.DEPTH_TYPES:
            raise InputError(f"Hypersim depth_type must be one of {self.DEPTH_TYPES}, got {depth_type!r}")
        super().__init__(root, split_file, segmentation)
        self.depth_type = depth_type

    def is_ray_distance(self, depth_path: str) -> bool:
        """Whether a depth file holds ray distance rather than planar depth."""
        if self.depth_type == "auto":
            return HYPERSIM_PLANAR_MARKER not in Path(depth_path).name
        return self.depth_type == "distance"

    def read_depth(self, entry: SplitEntry) -> np.ndarray:
        depth = super().read_depth(entry)
        if self.is_ray_distance(str(entry.depth)):
            invalid = depth <= 0  # zero marks missing geometry; keep it invalid
            depth = hypersim_distance_to_planar(depth)
            depth[invalid] = 0.0
        return depth


class VirtualKITTIDataset(SplitListDepthDataset):
    """Virtual KITTI 2 (PNG / 100, valid 1e-5 < d < 80 m), optionally at the KITTI benchmark crop."""

    depth_scale = VKITTI_DEPTH_SCALE
    min_depth = VKITTI_MIN_DEPTH
    max_depth = VKITTI_MAX_DEPTH

    def __init__(
        self,
        root: str | Path,
        split_file: str | Path,
        benchmark_crop: bool = True,
        segmentation: bool = True,
    ) -> None:
        super().__init__(root, split_file, segmentation)
        self.benchmark_crop = benchmark_crop

    def crop(self, tensor: torch.Tensor) -> torch.Tensor:
        return kitti_benchmark_crop(tensor) if self.benchmark_crop else tensor


def _check_same_size(item: Item, where: Path) -> None:
    """Every raster of a sample must share one size, else augmentations would misalign them."""
    sizes = {key: tuple(value.shape[-2:]) for key, value in item.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"{where}: rasters differ in size: {sizes}")


# --------------------------------------------------------------------------------------------
# Unlabelled images with Depth Anything V2 pseudo-labels


class DepthAnythingTeacher(DepthAnythingAdapter):
    """Depth Anything V2 as the pseudo-label teacher: the evaluation adapter (one inference code
    path), taking PIL images. Loads on first use; returns disparity at the image's size."""

    def __init__(self, model: str = DEFAULT_TEACHER, device: str = "cpu") -> None:
        super().__init__(model_id=model, device=device, name="pseudo-label teacher")

    def __call__(self, image: Image.Image) -> np.ndarray:
        return super().__call__(np.asarray(image.convert("RGB")))


def list_images(root: Path, list_file: Path | None = None) -> list[Path]:
    """Images under ``root`` (recursively, sorted), or those named in ``list_file`` (first column)."""
    if list_file is not None:
        lines = [line.split("#", 1)[0].split() for line in Path(list_file).read_text().splitlines()]
        images = [root / fields[0] for fields in lines if fields]
    else:
        images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise InputError(f"no images found under {root}")
    return images


class PseudoLabelFolderDataset(Dataset):
    """A folder of unlabelled images whose targets are Depth Anything V2 disparities.

    The target of ``dir/x.jpg`` is read from ``dir/x.da2.npy`` when it exists; otherwise the
    teacher computes it and (with ``cache=True``) writes it there for the next epoch or run.
    Optional labels come from ``segmentation_root`` mirroring the image tree with ``.png``
    files, the layout of ADE20K (``images/training`` -> ``annotations/training``).
    """

    def __init__(
        self,
        root: str | Path,
        list_file: str | Path | None = None,
        teacher: Callable[[Image.Image], np.ndarray] | None = None,
        cache: bool = True,
        segmentation_root: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder not found: {self.root}")
        self.images = list_images(self.root, Path(list_file) if list_file else None)
        self.teacher = teacher if teacher is not None else DepthAnythingTeacher()
        self.cache = cache
        self.segmentation_root = Path(segmentation_root) if segmentation_root else None

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def cache_path(image_path: Path) -> Path:
        """Where the pseudo-label of an image is cached."""
        return image_path.with_name(image_path.stem + PSEUDO_LABEL_SUFFIX)

    def pseudo_label(self, image_path: Path, image: Image.Image) -> np.ndarray:
        """The cached disparity, or the teacher's (then cached)."""
        cached = self.cache_path(image_path)
        if cached.is_file():
            return np.load(cached).astype(np.float32)
        disparity = np.asarray(self.teacher(image), dtype=np.float32)
        if self.cache:
            np.save(cached, disparity)
        return disparity

    def __getitem__(self, index: int) -> Item:
        path = self.images[index]
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        disparity = self.pseudo_label(path, image)
        if disparity.shape != (image.height, image.width):
            raise InputError(f"{path}: pseudo-label shape {disparity.shape} != image {image.size[::-1]}")
        array = np.asarray(image, dtype=np.float32)
        item = {
            "pixel_values": torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0,
            "disparity": torch.from_numpy(disparity)[None],
            "valid_mask": torch.from_numpy(np.isfinite(disparity))[None],
        }
        item["disparity"] = torch.nan_to_num(item["disparity"], nan=0.0, posinf=0.0, neginf=0.0)
        if self.segmentation_root is not None:
            label = self.segmentation_root / path.relative_to(self.root).with_suffix(".png")
            if label.is_file():
                item["segmentation"] = read_segmentation(label)
        _check_same_size(item, path)
        return item


def cache_pseudo_labels(dataset: PseudoLabelFolderDataset) -> int:
    """Compute and store every missing pseudo-label now; returns how many were computed.

    Needed before training when the teacher runs on a GPU, which forked data-loader workers
    cannot use.
    """
    computed = 0
    for path in dataset.images:
        if dataset.cache_path(path).is_file():
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        np.save(dataset.cache_path(path), np.asarray(dataset.teacher(image), dtype=np.float32))
        computed += 1
    if computed:
        logger.info("cached %d pseudo-labels under %s", computed, dataset.root)
    return computed


# --------------------------------------------------------------------------------------------
# Augmentations


@dataclass(frozen=True)
class CropBox:
    """A crop window in pixels."""

    top: int
    left: int
    height: int
    width: int


class PairedAugmentation:
    """Random resized crop to a fixed size and horizontal flip, the same for every raster.

    The crop keeps the target aspect ratio (no anisotropic stretch), covers a random fraction
    ``[min_scale, 1]`` of the largest such window and sits at a random place. The image is
    resampled bilinearly with antialiasing; disparity, mask and labels by nearest neighbour so
    that invalid pixels never blend into valid ones.
    """

    def __init__(self, size: Sequence[int], min_scale: float = 0.5, flip_p: float = 0.5) -> None:
        height, width = (int(s) for s in size)
        if height <= 0 or width <= 0 or height % VAE_DOWNSAMPLE or width % VAE_DOWNSAMPLE:
            raise InputError(f"crop size must be positive multiples of {VAE_DOWNSAMPLE}, got {tuple(size)}")
        if not 0.0 < min_scale <= 1.0:
            raise InputError(f"min_scale must be in (0, 1], got {min_scale}")
        if not 0.0 <= flip_p <= 1.0:
            raise InputError(f"flip probability must be in [0, 1], got {flip_p}")
        self.size = (height, width)
        self.min_scale = min_scale
        self.flip_p = flip_p

    def sample_box(self, image_size: tuple[int, int], rng: np.random.Generator) -> CropBox:
        """A random window with the target aspect ratio inside an image of (H, W)."""
        image_h, image_w = image_size
        aspect = self.size[1] / self.size[0]
        max_h = min(float(image_h), image_w / aspect)
        scale = rng.uniform(self.min_scale, 1.0)
        crop_h = max(1, min(image_h, round(max_h * scale)))
        crop_w = max(1, min(image_w, round(max_h * scale * aspect)))
        top = int(rng.integers(0, image_h - crop_h + 1))
        left = int(rng.integers(0, image_w - crop_w + 1))
        return CropBox(top, left, crop_h, crop_w)

    def __call__(self, item: Item, rng: np.random.Generator) -> Item:
        box = self.sample_box(tuple(item["pixel_values"].shape[-2:]), rng)
        flip = bool(rng.random() < self.flip_p)
        return {key: self._apply(key, value, box, flip) for key, value in item.items()}

    def _apply(self, key: str, value: torch.Tensor, box: CropBox, flip: bool) -> torch.Tensor:
        cropped = value[..., box.top : box.top + box.height, box.left : box.left + box.width]
        resized = resize_raster(cropped, self.size, smooth=key == "pixel_values")
        return resized.flip(-1) if flip else resized


def resize_raster(value: torch.Tensor, size: tuple[int, int], smooth: bool) -> torch.Tensor:
    """Resize (C, H, W) or (H, W) to ``size``: bilinear+antialias if smooth, else nearest-exact."""
    if tuple(value.shape[-2:]) == tuple(size):
        return value.clone()
    batched = value[None] if value.dim() == 3 else value[None, None]
    if smooth:
        out = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    else:
        out = F.interpolate(batched.float(), size=size, mode="nearest-exact").to(value.dtype)
    return out[0] if value.dim() == 3 else out[0, 0]


# --------------------------------------------------------------------------------------------
# Mixing


def sample_generator(seed: int, index: int) -> np.random.Generator:
    """The generator for one global sample: a pure function of (seed, index)."""
    return np.random.default_rng([int(seed), int(index)])


class RatioMixer(Dataset):
    """An endless-looking stream of samples drawn from several datasets by fixed ratios.

    Sample ``i`` picks its source with probability ``ratios[k]``, then a uniformly random item
    of that source (with replacement), then augments it, all from ``sample_generator(seed, i)``.
    ``length`` is the number of samples a run will draw (steps x batch x accumulation x processes).
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        ratios: Sequence[float] | None = None,
        length: int = 1,
        seed: int = 0,
        augment: Callable[[Item, np.random.Generator], Item] | None = None,
    ) -> None:
        if not datasets:
            raise InputError("the mixer needs at least one dataset")
        ratios = list(ratios) if ratios is not None else _default_ratios(len(datasets))
        if len(ratios) != len(datasets):
            raise InputError(f"{len(datasets)} datasets but {len(ratios)} ratios")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise InputError(f"ratios must be non-negative with a positive sum, got {ratios}")
        if any(len(d) == 0 for d in datasets):  # type: ignore[arg-type]
            raise InputError("a dataset of the mixer is empty")
        self.datasets = list(datasets)
        self.probabilities = np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
        self.length = int(length)
        self.seed = int(seed)
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int, np.random.Generator]:
        """(source, item index, generator for the augmentation) of global sample ``index``."""
        rng = sample_generator(self.seed, index)
        source = int(rng.choice(len(self.datasets), p=self.probabilities))
        item = int(rng.integers(len(self.datasets[source])))  # type: ignore[arg-type]
        return source, item, rng

    def __getitem__(self, index: int) -> Item:
        source, item_index, rng = self.locate(index)
        item = self.datasets[source][item_index]
        return self.augment(item, rng) if self.augment is not None else item


def _default_ratios(count: int) -> list[float]:
    """0.9/0.1 for two sources (Hypersim, vKITTI), uniform otherwise."""
    return list(DEFAULT_MIX_RATIOS) if count == len(DEFAULT_MIX_RATIOS) else [1.0] * count


def collate_items(items: Sequence[Item]) -> Item:
    """Stack items; when only some carry segmentation, the others get all-ignore labels."""
    batch: Item = {}
    keys = {key for item in items for key in item}
    for key in sorted(keys):
        if key == "segmentation":
            batch[key] = torch.stack([_labels_or_ignore(item) for item in items])
            continue
        missing = [i for i, item in enumerate(items) if key not in item]
        if missing:
            raise InputError(f"items {missing} of the batch lack {key!r}")
        batch[key] = torch.stack([item[key] for item in items])
    return batch


def _labels_or_ignore(item: Item) -> torch.Tensor:
    if "segmentation" in item:
        return item["segmentation"]
    height, width = item["pixel_values"].shape[-2:]
    return torch.full((height, width), SEGMENTATION_IGNORE_INDEX, dtype=torch.long)


# --------------------------------------------------------------------------------------------
# Building from the configuration


def build_dataset(spec: Any, teacher: Callable[[Image.Image], np.ndarray] | None = None) -> Dataset:
    """One source from a `DatasetConfig`; ``teacher`` replaces Depth Anything (tests, caching)."""
    if spec.kind == "hypersim":
        return HypersimDataset(spec.root, spec.split, spec.depth_type, spec.segmentation)
    if spec.kind == "vkitti":
        return VirtualKITTIDataset(spec.root, spec.split, spec.benchmark_crop, spec.segmentation)
    if spec.kind == "pseudo_label":
        teacher = teacher or DepthAnythingTeacher(spec.teacher, spec.teacher_device)
        seg_root = spec.segmentation_root if spec.segmentation else None
        return PseudoLabelFolderDataset(spec.root, spec.split, teacher, spec.cache, seg_root)
    raise InputError(f"unknown dataset kind {spec.kind!r}")


def build_train_mixer(data_config: Any, num_samples: int, seed: int) -> RatioMixer:
    """The augmented, ratio-mixed training stream of a `DataConfig`."""
    datasets = [build_dataset(spec) for spec in data_config.train]
    augment = PairedAugmentation(data_config.crop_size, data_config.min_scale, data_config.flip_p)
    ratios = [spec.ratio for spec in data_config.train]
    return RatioMixer(datasets, ratios, num_samples, seed, augment)


class ResizedDataset(Dataset):
    """A dataset with every item resized to one size (validation batches need equal shapes)."""

    def __init__(self, dataset: Dataset, size: Sequence[int]) -> None:
        self.dataset = dataset
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        item = self.dataset[index]
        return {key: resize_raster(value, self.size, smooth=key == "pixel_values") for key, value in item.items()}
