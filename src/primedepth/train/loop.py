"""The training engine: refiner and heads learn on the preimage of a frozen Stable Diffusion.

Per micro-batch: the frozen VAE and UNet (eval mode, no autograd, optionally in bf16) turn the
pixels into the preimage once; the trainable part (refiner + depth head + segmentation head)
runs on it under autocast; the loss is `PrimeDepthLoss`. Accelerate provides single/multi-GPU
and multi-node runs (`accelerate launch -m primedepth.cli train --config ...`), mixed precision
and gradient accumulation.

Exact resume: the sample stream is a pure function of (seed, sample index) (see `data`), the
latent noise of micro-batch k on process r is drawn from a generator seeded by (seed, r, k), and
a checkpoint stores weights, optimiser, scheduler, EMA and RNG states plus the step. Resuming
at step N therefore replays steps N+1... bit for bit on the same hardware.

Output folder::

    training_config.yaml       the configuration of the run
    base_model/                the model at the start (frozen parts are linked from here)
    checkpoints/step-000500/   model/ (a complete model folder), state/ (resume), train_state.json
    model/                     the final model folder, for PrimeDepthPipeline.from_pretrained
    metrics.jsonl              one JSON line per log or validation event
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader

from ..casting import cast_module
from ..devices import parse_dtype
from ..eval.alignment import align
from ..eval.metrics import average_metrics, compute_metrics
from ..io.atomic import atomic_directory
from ..model.forward import Preimage, compute_preimage, predict_labels, seeded_noise
from ..pipeline import PrimeDepthPipeline
from ..errors import InputError, WeightsNotFoundError
from ..text.encoder import PromptEncoder, load_text_encoder, load_tokenizer, read_prompt_embeds
from .config import ConfigError, TrainConfig, save_config
from .data import ResizedDataset, build_dataset, build_train_mixer, cache_pseudo_labels, collate_items
from .losses import PrimeDepthLoss, ssi_loss

logger = logging.getLogger(__name__)

TRAINED_COMPONENTS = ("refiner", "depth_head", "segmentation_head")
FROZEN_COMPONENTS = ("vae", "unet")
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
TRAIN_STATE_FILE = "train_state.json"
METRICS_FILE = "metrics.jsonl"
TRACKER_PROJECT = "primedepth"
# Validation noise comes from its own seed stream, so it never depends on the training step.
VALIDATION_STREAM = 1_000_003
# Depth metrics logged at validation (a subset of the evaluation metrics).
VALIDATION_METRICS = ("abs_rel", "delta1")


# --------------------------------------------------------------------------------------------
# Schedule and EMA


def learning_rate_factor(step: int, warmup_steps: int, max_steps: int, decay: str, final_ratio: float) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (the first step already moves), then a decay that
    reaches ``final_ratio`` at ``max_steps``: exponential, cosine, linear, or none.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, max_steps - warmup_steps)))
    if decay == "exponential":
        return final_ratio**progress
    if decay == "cosine":
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if decay == "linear":
        return 1.0 - (1.0 - final_ratio) * progress
    if decay == "constant":
        return 1.0
    raise ConfigError(f"unknown decay {decay!r}")


class ParameterEMA:
    """Exponential moving average of parameters, kept in float32; checkpointable by Accelerate."""

    def __init__(self, parameters: Sequence[nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in parameters]

    @torch.no_grad()
    def update(self, parameters: Sequence[nn.Parameter]) -> None:
        for shadow, param in zip(self.shadow, parameters, strict=True):
            shadow.lerp_(param.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def reset(self, parameters: Sequence[nn.Parameter]) -> None:
        """Start averaging from the current weights (at ``ema.start_step``)."""
        for shadow, param in zip(self.shadow, parameters, strict=True):
            shadow.copy_(param.detach().float())

    @contextmanager
    def applied(self, parameters: Sequence[nn.Parameter]) -> Iterator[None]:
        """Temporarily load the averaged weights into ``parameters``."""
        saved = [p.detach().clone() for p in parameters]
        with torch.no_grad():
            for shadow, param in zip(self.shadow, parameters, strict=True):
                param.copy_(shadow.to(param.device, param.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for original, param in zip(saved, parameters, strict=True):
                    param.copy_(original)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.shadow = [s.to(old.device) for s, old in zip(state["shadow"], self.shadow, strict=True)]


# --------------------------------------------------------------------------------------------
# Model parts


class TrainableParts(nn.Module):
    """Refiner and heads as one module, so Accelerate wraps (DDP) and checkpoints them together."""

    def __init__(self, refiner: nn.Module, depth_head: nn.Module, segmentation_head: nn.Module | None) -> None:
        super().__init__()
        self.refiner = refiner
        self.depth_head = depth_head
        self.segmentation_head = segmentation_head

    def forward(self, preimage: Preimage, segmentation: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The trained half of `primedepth.model.forward` (with gradients)."""
        head = self.segmentation_head if segmentation else None
        raw = predict_labels(self.refiner, self.depth_head, preimage, head)
        return raw.depth, raw.segmentation


# The flags other commands name in weights errors, and what `train` takes instead.
TRAIN_FLAGS = {
    "--model PATH": "--set model.pretrained=PATH",
    "--prompt-embeds": "--set model.prompt_embeds=FILE",
}


def with_train_flags(error: WeightsNotFoundError, key: str) -> WeightsNotFoundError:
    """The same missing-weights error (exit code 3), prefixed with the config key and naming
    `train`'s own flags instead of other commands' (`train` has no --model)."""
    message = str(error)
    for other, ours in TRAIN_FLAGS.items():
        message = message.replace(other, ours)
    return type(error)(f"{key}: {message}")


def use_tensorboard(setting: bool | None) -> bool:
    """Whether to log to TensorBoard: `null` when the package is installed, `true` requires it
    (an error at start rather than a run that silently logs nothing), `false` never."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting and not installed:
        raise ConfigError(
            "logging.tensorboard is true but the tensorboard package is not installed: "
            "pip install 'primedepth[train]', or run without it (--set logging.tensorboard=false)"
        )
    return installed if setting is None else setting


def reinitialise(module: nn.Module, seed: int) -> nn.Module:
    """A fresh module of the same class and config with random weights (``model.init: random``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(module).from_config(module.config)


def load_prompt_embeds(config: TrainConfig) -> torch.Tensor:
    """The (1, 77, D) context every training image is conditioned on."""
    model = config.model
    if model.prompt_embeds:
        try:
            return read_prompt_embeds(Path(model.prompt_embeds))
        except InputError as error:
            raise ConfigError(f"model.prompt_embeds: {error}") from None
    local = Path(model.pretrained) / "text_encoder"
    source = model.text_encoder or (str(local) if local.is_dir() else None)
    encoder = load_text_encoder(source) if source else load_text_encoder()
    tokenizer_dir = Path(model.pretrained) / "tokenizer"
    tokenizer = load_tokenizer(model.text_encoder or (tokenizer_dir if tokenizer_dir.is_dir() else None))
    embeds = PromptEncoder(encoder, tokenizer).encode(model.prompt).float().cpu()
    del encoder
    return embeds


# --------------------------------------------------------------------------------------------
# Model folders and checkpoints


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a file (no extra disk for the frozen weights), copying across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def write_model_folder(target: Path, base: Path, trained: dict[str, nn.Module]) -> Path:
    """A complete model folder, written atomically: ``trained`` components saved, everything else
    linked from ``base``."""
    with atomic_directory(target, overwrite=True) as staging:
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if path.is_file() and relative.parts[0] not in trained:
                link_or_copy(path, staging / relative)
        for name, module in trained.items():
            module.save_pretrained(staging / name, safe_serialization=True)
    return target


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (their train_state.json is written last), oldest first."""
    found = []
    for path in (output_dir / "checkpoints").glob("step-*"):
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and (path / TRAIN_STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from: ``latest`` (None when there is none yet) or a folder."""
    output_dir = Path(config.output_dir)
    if config.resume is None:
        if list_checkpoints(output_dir):
            raise ConfigError(
                f"{output_dir} already holds checkpoints: set `resume: latest` to continue, or use a new output_dir"
            )
        return None
    if config.resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    path = Path(config.resume)
    if not (path / TRAIN_STATE_FILE).is_file():
        raise ConfigError(f"resume: {path} is not a complete checkpoint (no {TRAIN_STATE_FILE})")
    return path


# --------------------------------------------------------------------------------------------
# The trainer


@dataclass
class TrainResult:
    """What a run leaves: the last step, the final model folder, per-step training losses."""

    step: int
    model_dir: Path
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """One training run of a `TrainConfig`.

    ``pipeline``, ``prompt_embeds`` and ``train_dataset`` may be given to bypass loading
    (tests, notebooks); by default everything comes from the configuration.
    """

    def __init__(
        self,
        config: TrainConfig,
        pipeline: Any | None = None,
        prompt_embeds: torch.Tensor | None = None,
        train_dataset: Any | None = None,
    ) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.resume_from = resolve_resume(config)
        tensorboard = use_tensorboard(config.logging.tensorboard)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with="tensorboard" if tensorboard else None,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")
            ),
        )
        set_seed(config.seed)
        self.pipeline = pipeline if pipeline is not None else self._load_pipeline()
        self.context = prompt_embeds if prompt_embeds is not None else self._load_prompt_embeds()
        self._check_context()
        self.trained_names = self._select_trained()
        self._prepare_model()
        self.loss_fn = PrimeDepthLoss(config.loss)
        self.step = 0
        self._build_optimisation(train_dataset)
        if tensorboard:
            self.accelerator.init_trackers(TRACKER_PROJECT)

    # ---------------------------------------------------------------- setup

    def _load_pipeline(self) -> Any:
        try:
            return PrimeDepthPipeline.from_pretrained(self.config.model.pretrained)
        except WeightsNotFoundError as error:
            raise with_train_flags(error, "model.pretrained") from error
        except (OSError, ValueError) as error:
            raise ConfigError(f"model.pretrained: cannot load {self.config.model.pretrained!r}: {error}") from error

    def _load_prompt_embeds(self) -> torch.Tensor:
        try:
            return load_prompt_embeds(self.config)
        except WeightsNotFoundError as error:
            raise with_train_flags(error, "model.text_encoder") from error

    def _check_context(self) -> None:
        width = self.pipeline.unet.config.cross_attention_dim
        if self.context.dim() != 3 or self.context.shape[0] != 1 or self.context.shape[-1] != width:
            raise ConfigError(f"prompt embedding must be (1, tokens, {width}); got {tuple(self.context.shape)}")

    def _select_trained(self) -> list[str]:
        """Refiner and depth head always; the segmentation head when it exists and has a loss."""
        names = ["refiner", "depth_head"]
        seg = self.pipeline.segmentation_head
        if seg is not None and self.config.model.train_segmentation_head and self.config.loss.segmentation_weight > 0:
            names.append("segmentation_head")
        return names

    def _prepare_model(self) -> None:
        """Save the starting model, freeze and cast the frozen parts, assemble the trained ones."""
        pipeline, config = self.pipeline, self.config
        if config.model.init == "random":
            for offset, name in enumerate(self.trained_names):
                pipeline.register_modules(**{name: reinitialise(getattr(pipeline, name), config.seed + offset)})
        self.base_dir = self.output_dir / "base_model"
        fresh = self.resume_from is None or not (self.base_dir / "model_index.json").is_file()
        if self.accelerator.is_main_process and fresh:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output_dir / "training_config.yaml")
            shutil.rmtree(self.base_dir, ignore_errors=True)
            # The trained model is meant to be prompted as it was trained (not with BLIP-2 captions).
            pipeline.register_to_config(default_prompt=config.model.prompt)
            pipeline.save_pretrained(self.base_dir, safe_serialization=True)
        self.accelerator.wait_for_everyone()
        weight_dtype = torch.float32 if config.mixed_precision == "no" else parse_dtype(config.mixed_precision)
        device = self.accelerator.device
        for name in FROZEN_COMPONENTS:
            module = getattr(pipeline, name).requires_grad_(False).eval().to(device)
            if weight_dtype != torch.float32:
                cast_module(module, weight_dtype)  # without diffusers' empty "kept in float32" warning
        seg = pipeline.segmentation_head if "segmentation_head" in self.trained_names else None
        if pipeline.segmentation_head is not None and seg is None:
            pipeline.segmentation_head.requires_grad_(False).eval().to(device)
        self.parts = TrainableParts(pipeline.refiner, pipeline.depth_head, seg)
        self.parts.requires_grad_(True).train().to(device)

    def _build_optimisation(self, train_dataset: Any | None) -> None:
        config, accelerator = self.config, self.accelerator
        self.parameters = [p for p in self.parts.parameters() if p.requires_grad]
        opt = config.optimizer
        optimizer = torch.optim.AdamW(
            self.parameters, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay, eps=opt.eps
        )
        sched = config.scheduler

        def factor(step: int) -> float:
            return learning_rate_factor(step, sched.warmup_steps, config.max_steps, sched.decay, sched.final_lr_ratio)

        # Not prepared by Accelerate (which would step it once per process): stepped per update.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        micro_batches = config.max_steps * config.gradient_accumulation_steps * accelerator.num_processes
        if train_dataset is None:
            self._cache_gpu_pseudo_labels()
            train_dataset = build_train_mixer(config.data, micro_batches * config.batch_size, config.seed)
        loader = DataLoader(
            train_dataset,
            batch_size=config.batch_size,
            shuffle=False,
            num_workers=config.data.num_workers,
            collate_fn=collate_items,
            drop_last=True,
            persistent_workers=config.data.num_workers > 0,
        )
        self.parts, self.optimizer, self.loader = accelerator.prepare(self.parts, optimizer, loader)
        self.ema = ParameterEMA(self.parameters, config.ema.decay) if config.ema.enabled else None
        accelerator.register_for_checkpointing(self.scheduler)
        if self.ema is not None:
            accelerator.register_for_checkpointing(self.ema)

    def _cache_gpu_pseudo_labels(self) -> None:
        """A GPU teacher cannot run in forked loader workers: label everything up front."""
        if self.config.data.num_workers == 0:
            return
        for spec in self.config.data.train:
            if spec.kind == "pseudo_label" and spec.teacher_device != "cpu":
                if not spec.cache:
                    raise ConfigError("a GPU pseudo-label teacher with num_workers > 0 needs `cache: true`")
                if self.accelerator.is_main_process:
                    cache_pseudo_labels(build_dataset(spec))
        self.accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- one step

    def preimage(self, pixel_values: torch.Tensor, stream: int, index: int) -> Preimage:
        """The frozen half for one batch, its noise a pure function of (seed, stream, index)."""
        noise = seeded_noise(self.pipeline.vae, pixel_values, self.config.seed, stream, index)
        return compute_preimage(self.pipeline, pixel_values, self.context, noise,
                                self.pipeline.config.vae_encoder_norm_eps)

    def micro_step(self, batch: dict[str, torch.Tensor], micro_index: int) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch (gradients accumulate until the update)."""
        accelerator = self.accelerator
        preimage = self.preimage(batch["pixel_values"], accelerator.process_index, micro_index)
        with accelerator.autocast():
            depth, labels = self.parts(preimage)
        losses = self.loss_fn(depth.float(), batch, labels.float() if labels is not None else None)
        accelerator.backward(losses["loss"])
        return {name: value.detach() for name, value in losses.items()}

    def update(self) -> None:
        """Clip, step optimiser and schedule, zero gradients, update the EMA."""
        max_norm = self.config.optimizer.max_grad_norm
        if max_norm > 0:
            self.accelerator.clip_grad_norm_(self.parameters, max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            if self.step + 1 <= self.config.ema.start_step:
                self.ema.reset(self.parameters)
            else:
                self.ema.update(self.parameters)

    # ---------------------------------------------------------------- the loop

    def train(self, until: int | None = None) -> TrainResult:
        """Run (or resume) until ``max_steps``; returns the final model folder and the losses.

        ``until`` stops early at that step without the final save, as an interruption would
        (checkpoints that fall due on the way are written).
        """
        config, accelerator = self.config, self.accelerator
        last = config.max_steps if until is None else min(until, config.max_steps)
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        result = TrainResult(step=self.step, model_dir=self.output_dir / "model")
        skipped = self.step * config.gradient_accumulation_steps
        loader = accelerator.skip_first_batches(self.loader, skipped) if skipped else self.loader
        running: dict[str, list[torch.Tensor]] = {}
        micro_index = skipped
        for batch in loader:
            if self.step >= last:
                break
            with accelerator.accumulate(self.parts):
                losses = self.micro_step(batch, micro_index)
                if accelerator.sync_gradients:
                    self.update()
            micro_index += 1
            for name, value in losses.items():
                running.setdefault(name, []).append(value)
            if accelerator.sync_gradients:
                self.step += 1
                means = {name: torch.stack(values).mean() for name, values in running.items()}
                running = {}
                result.losses.append(float(means["loss"]))
                self._after_update(means, result)
        result.step = self.step
        if self.step >= config.max_steps:
            self.finish(result)
        return result

    def _after_update(self, means: dict[str, torch.Tensor], result: TrainResult) -> None:
        logging_config, step = self.config.logging, self.step
        if logging_config.log_every and step % logging_config.log_every == 0:
            reduced = {f"train/{k}": float(self.accelerator.reduce(v, "mean")) for k, v in means.items()}
            reduced["train/lr"] = self.scheduler.get_last_lr()[0]
            self.log(reduced)
        if logging_config.validate_every and step % logging_config.validate_every == 0:
            result.validation.append(self.validate())
        if logging_config.checkpoint_every and step % logging_config.checkpoint_every == 0:
            self.save_checkpoint()

    def finish(self, result: TrainResult) -> None:
        """Final checkpoint (if due) and the final model folder."""
        every = self.config.logging.checkpoint_every
        if every and self.step % every != 0 and self.step > 0:
            self.save_checkpoint()
        if self.accelerator.is_main_process:
            self.write_model(result.model_dir)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()

    def log(self, values: dict[str, float]) -> None:
        """To the trackers (TensorBoard) and, on the main process, metrics.jsonl and the logger."""
        self.accelerator.log(values, step=self.step)
        if self.accelerator.is_main_process:
            with open(self.output_dir / METRICS_FILE, "a") as stream:
                stream.write(json.dumps({"step": self.step, **values}) + "\n")
            logger.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    # ---------------------------------------------------------------- checkpoints

    def trained_modules(self) -> dict[str, nn.Module]:
        parts = self.accelerator.unwrap_model(self.parts)
        return {name: getattr(parts, name) for name in self.trained_names}

    @contextmanager
    def inference_weights(self) -> Iterator[None]:
        """The weights to evaluate and publish: the EMA when enabled, else the raw ones."""
        if self.ema is None:
            yield
        else:
            with self.ema.applied(self.parameters):
                yield

    def write_model(self, target: Path) -> Path:
        """A complete model folder with the current (EMA) weights."""
        with self.inference_weights():
            return write_model_folder(target, self.base_dir, self.trained_modules())

    def save_checkpoint(self) -> Path:
        """checkpoints/step-N/: the model folder, the Accelerate state, then train_state.json."""
        accelerator = self.accelerator
        folder = self.output_dir / "checkpoints" / f"step-{self.step:06d}"
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            self.write_model(folder / "model")
        accelerator.wait_for_everyone()
        accelerator.save_state(str(folder / "state"))
        if accelerator.is_main_process:
            (folder / TRAIN_STATE_FILE).write_text(json.dumps({"step": self.step}))
            self._prune_checkpoints()
        accelerator.wait_for_everyone()
        return folder

    def _prune_checkpoints(self) -> None:
        keep = self.config.logging.keep_checkpoints
        checkpoints = list_checkpoints(self.output_dir)
        for _, path in checkpoints[: max(0, len(checkpoints) - keep)] if keep else []:
            shutil.rmtree(path, ignore_errors=True)

    def load_checkpoint(self, folder: Path) -> None:
        """Weights, optimiser, scheduler, EMA and RNG states, and the step."""
        self.accelerator.load_state(str(folder / "state"))
        self.step = int(json.loads((folder / TRAIN_STATE_FILE).read_text())["step"])
        logger.info("resumed from %s at step %d", folder, self.step)

    # ---------------------------------------------------------------- validation

    def validation_sets(self) -> list[tuple[str, Any]]:
        data = self.config.data
        size = data.val_size or data.crop_size
        return [(f"{spec.kind}{i}", ResizedDataset(build_dataset(spec), size)) for i, spec in enumerate(data.val)]

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """SSI loss and disparity-aligned depth metrics on the validation sets (main process)."""
        values: dict[str, float] = {}
        if self.accelerator.is_main_process and self.config.data.val:
            parts = self.accelerator.unwrap_model(self.parts)
            parts.eval()
            with self.inference_weights():
                for name, dataset in self.validation_sets():
                    for metric, value in self._validate_one(parts, dataset).items():
                        values[f"val/{name}/{metric}"] = value
            parts.train()
            self.log(values)
        self.accelerator.wait_for_everyone()
        return values

    def _validate_one(self, parts: TrainableParts, dataset: Any) -> dict[str, float]:
        count = min(len(dataset), self.config.data.val_max_samples)
        subset = torch.utils.data.Subset(dataset, range(count))
        loader = DataLoader(subset, batch_size=self.config.batch_size, collate_fn=collate_items)
        losses, rows = [], []
        depth_range = getattr(dataset.dataset, "min_depth", None), getattr(dataset.dataset, "max_depth", None)
        for index, batch in enumerate(loader):
            preimage = self.preimage(batch["pixel_values"], VALIDATION_STREAM, index)
            with self.accelerator.autocast():
                depth, _ = parts(preimage, segmentation=False)
            prediction = depth.float().mean(dim=1, keepdim=True).cpu()
            losses.append(float(ssi_loss(prediction, batch["disparity"], batch["valid_mask"])))
            if depth_range[0] is not None:
                rows += _depth_metrics(prediction, batch, depth_range)
        values = {"ssi": float(np.mean(losses))}
        if rows:
            averaged = average_metrics(rows)
            values.update({name: averaged[name] for name in VALIDATION_METRICS})
        return values


def _depth_metrics(prediction: torch.Tensor, batch: dict[str, torch.Tensor], depth_range: tuple[float, float]) -> list[dict[str, float]]:
    """Per-image metrics after least-squares alignment in disparity space (the eval protocol)."""
    rows = []
    for pred, disparity, valid in zip(prediction[:, 0], batch["disparity"][:, 0], batch["valid_mask"][:, 0]):
        mask = valid.numpy()
        if mask.sum() < 2:
            continue
        gt = np.where(mask, 1.0 / np.where(mask, disparity.numpy(), 1.0), 0.0)
        aligned = align(pred.numpy().astype(np.float64), gt, mask, "disparity", depth_range[0], depth_range[1])
        rows.append(compute_metrics(aligned, gt, mask))
    return rows


def train(config: TrainConfig) -> TrainResult:
    """Run a training configuration end to end."""
    return Trainer(config).train()
