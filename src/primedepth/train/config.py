"""The training configuration: typed dataclasses read from (and written back to) YAML.

Every knob of a run lives here, with the defaults of the single-step recipes we follow
(E2E-FT / Marigold: lr 3e-5, 100 warm-up steps, exponential decay to 1 %, effective batch 32,
Hypersim/vKITTI mixed 0.9/0.1). The paper's own optimiser settings are not published.
Unknown keys and wrong types are errors, reported with their dotted path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..constants import VAE_DOWNSAMPLE
from ..errors import InputError

DATASET_KINDS = ("hypersim", "vkitti", "pseudo_label")
HYPERSIM_DEPTH_TYPES = ("auto", "planar", "distance")
DECAY_KINDS = ("exponential", "cosine", "linear", "constant")
MIXED_PRECISION = ("no", "bf16", "fp16")
SSI_KINDS = ("l1", "l2")
INIT_MODES = ("pretrained", "random")


class ConfigError(InputError):
    """A training configuration that cannot be used."""


@dataclass
class DatasetConfig:
    """One data source: a labelled set read from a split list, or a pseudo-labelled folder."""

    kind: str
    root: str
    # Split list (required for hypersim / vkitti); for pseudo_label an optional image list.
    split: str | None = None
    ratio: float = 1.0
    segmentation: bool = True  # read labels when the split list names them
    depth_type: str = "auto"  # hypersim: auto | planar | distance
    benchmark_crop: bool = True  # vkitti: crop to the KITTI benchmark 352x1216
    teacher: str = "depth-anything/Depth-Anything-V2-Small-hf"  # pseudo_label
    teacher_device: str = "cpu"
    cache: bool = True  # pseudo_label: write computed targets next to the images
    segmentation_root: str | None = None  # pseudo_label: label PNGs mirroring the image tree

    def validate(self, where: str) -> None:
        _choice(self.kind, DATASET_KINDS, f"{where}.kind")
        _choice(self.depth_type, HYPERSIM_DEPTH_TYPES, f"{where}.depth_type")
        if self.kind in ("hypersim", "vkitti") and not self.split:
            raise ConfigError(f"{where}.split: a {self.kind} dataset needs a split list")
        if self.ratio < 0:
            raise ConfigError(f"{where}.ratio must be >= 0, got {self.ratio}")


@dataclass
class DataConfig:
    """Sources, their mixing and the augmentations."""

    train: list[DatasetConfig] = field(default_factory=list)
    val: list[DatasetConfig] = field(default_factory=list)
    crop_size: list[int] = field(default_factory=lambda: [480, 640])  # (H, W), multiples of 8
    min_scale: float = 0.5  # random resized crop covers [min_scale, 1] of the largest window
    flip_p: float = 0.5
    num_workers: int = 4
    val_size: list[int] | None = None  # (H, W) validation images are resized to; default crop_size
    val_max_samples: int = 200

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train: at least one training dataset is required")
        for i, spec in enumerate(self.train):
            spec.validate(f"data.train[{i}]")
        if sum(spec.ratio for spec in self.train) <= 0:
            raise ConfigError("data.train: the ratios sum to zero")
        for i, spec in enumerate(self.val):
            spec.validate(f"data.val[{i}]")
        _check_size(self.crop_size, "data.crop_size")
        if self.val_size is not None:
            _check_size(self.val_size, "data.val_size")
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"data.min_scale must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.flip_p <= 1:
            raise ConfigError(f"data.flip_p must be in [0, 1], got {self.flip_p}")
        _positive(self.num_workers + 1, "data.num_workers + 1")
        _positive(self.val_max_samples, "data.val_max_samples")


@dataclass
class ModelConfig:
    """Where the frozen Stable Diffusion (and, for fine-tuning, the trained parts) come from."""

    pretrained: str = ""  # a PrimeDepth model folder (or hub id) holding vae, unet, refiner, heads
    init: str = "pretrained"  # "random": re-initialise refiner and heads before training
    prompt: str = ""  # text prompt used for every training image
    # Where the frozen text encoder + tokenizer come from (default: `<pretrained>/text_encoder`
    # when that folder exists, else the laion ViT-H/14 weights); unused with `prompt_embeds`.
    text_encoder: str | None = None
    prompt_embeds: str | None = None  # a saved (1, 77, D) context (.pt, .npy or .safetensors)
    train_segmentation_head: bool = True

    def validate(self) -> None:
        if not self.pretrained:
            raise ConfigError("model.pretrained: a model folder or hub id is required")
        _choice(self.init, INIT_MODES, "model.init")


@dataclass
class OptimizerConfig:
    """AdamW on the refiner and heads."""

    lr: float = 3e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-2
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping

    def validate(self) -> None:
        _positive(self.lr, "optimizer.lr")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("optimizer.weight_decay and optimizer.max_grad_norm must be >= 0")


@dataclass
class SchedulerConfig:
    """Linear warm-up from 0, then decay to ``final_lr_ratio`` of the peak at ``max_steps``."""

    warmup_steps: int = 100
    decay: str = "exponential"
    final_lr_ratio: float = 0.01

    def validate(self) -> None:
        _choice(self.decay, DECAY_KINDS, "scheduler.decay")
        if self.warmup_steps < 0:
            raise ConfigError(f"scheduler.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 < self.final_lr_ratio <= 1:
            raise ConfigError(f"scheduler.final_lr_ratio must be in (0, 1], got {self.final_lr_ratio}")


@dataclass
class LossConfig:
    """Terms and weights; a weight of 0 switches its term off."""

    ssi_weight: float = 1.0
    ssi_kind: str = "l1"
    gradient_weight: float = 0.5
    gradient_scales: int = 4
    segmentation_weight: float = 0.1
    ignore_index: int = 255
    min_valid_pixels: int = 16

    def validate(self) -> None:
        _choice(self.ssi_kind, SSI_KINDS, "loss.ssi_kind")
        for name in ("ssi_weight", "gradient_weight", "segmentation_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0")
        if self.ssi_weight == 0 and self.gradient_weight == 0:
            raise ConfigError("loss: ssi_weight and gradient_weight are both 0; depth would not be trained")
        _positive(self.gradient_scales, "loss.gradient_scales")


@dataclass
class EMAConfig:
    """Exponential moving average of the trained weights, saved alongside the raw ones."""

    enabled: bool = False
    decay: float = 0.999
    start_step: int = 0

    def validate(self) -> None:
        if not 0 < self.decay < 1:
            raise ConfigError(f"ema.decay must be in (0, 1), got {self.decay}")


@dataclass
class LoggingConfig:
    """How often to log, validate and checkpoint (in optimiser steps; 0 = never)."""

    log_every: int = 10
    validate_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # most recent resumable checkpoints kept; 0 keeps all
    tensorboard: bool | None = None  # null: when installed; true: required (an error at start without it)

    def validate(self) -> None:
        for name in ("log_every", "validate_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"logging.{name} must be >= 0")


@dataclass
class TrainConfig:
    """A whole training run."""

    output_dir: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    batch_size: int = 2  # per process and micro-step
    gradient_accumulation_steps: int = 16
    max_steps: int = 20000  # optimiser steps
    mixed_precision: str = "bf16"
    seed: int = 0
    resume: str | None = None  # "latest" or a checkpoint folder

    def validate(self) -> TrainConfig:
        if not self.output_dir:
            raise ConfigError("output_dir is required")
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps"):
            _positive(getattr(self, name), name)
        _choice(self.mixed_precision, MIXED_PRECISION, "mixed_precision")
        for section in (self.model, self.data, self.optimizer, self.scheduler, self.loss, self.ema, self.logging):
            section.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Reading and writing


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file into a validated `TrainConfig`; ``overrides`` are dotted keys to set."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build and validate a `TrainConfig` from plain data."""
    config = _build(TrainConfig, raw, "config")
    return config.validate()


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the configuration as YAML (the record kept with every checkpoint)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    """A dataclass from a mapping, each field converted by its annotation."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    values = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check and convert one value against a type annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 3e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is False and where.endswith("mixed_precision"):
            return "no"  # YAML 1.1 reads the accelerate value `no` as false
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {hint!r}")


def _choice(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}")


def _positive(value: float, where: str) -> None:
    if value <= 0:
        raise ConfigError(f"{where} must be > 0, got {value}")


def _check_size(size: list[int], where: str) -> None:
    if len(size) != 2 or any(s <= 0 or s % VAE_DOWNSAMPLE for s in size):
        raise ConfigError(f"{where} must be [H, W], positive multiples of {VAE_DOWNSAMPLE}; got {size}")
