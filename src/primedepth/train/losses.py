"""Losses for affine-invariant disparity and segmentation.

PrimeDepth predicts disparity up to an unknown scale and shift, so the depth loss first aligns
each prediction to its target by least squares on the valid pixels (closed form, differentiable)
and only then measures the error. Targets are normalised per image (median and mean absolute
deviation) so that every image weighs the same whatever its depth range; an exact affine
transform of the target therefore costs zero.

Images with fewer than ``min_valid_pixels`` valid pixels carry no depth signal: they are left
out of the mean instead of producing NaNs; a batch without any usable image gives a zero loss
that still depends on the prediction (so every process takes part in the backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import LossConfig

# Below this many valid pixels an image is skipped: a scale and shift need at least two, and
# a handful gives a meaningless fit.
DEFAULT_MIN_VALID_PIXELS = 16
# A prediction whose masked variance is below this fraction of its second moment is constant.
SINGULAR_TOLERANCE = 1e-12
# Floor of the target's mean absolute deviation, for flat targets.
SCALE_FLOOR = 1e-6
DEFAULT_IGNORE_INDEX = 255


def _as_bchw(tensor: torch.Tensor) -> torch.Tensor:
    """Accept (B, H, W) or (B, 1, H, W); return (B, 1, H, W)."""
    if tensor.dim() == 3:
        return tensor[:, None]
    if tensor.dim() != 4 or tensor.shape[1] != 1:
        raise ValueError(f"expected (B, H, W) or (B, 1, H, W), got {tuple(tensor.shape)}")
    return tensor


def least_squares_scale_shift(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (scale, shift) minimising sum over mask of (scale * prediction + shift - target)^2.

    Shapes (B, 1, H, W); returns two (B,) tensors. Solved in float32 on the prediction centred
    at its masked mean (raw normal equations cancel catastrophically for predictions with a
    large offset); a constant prediction gets scale 0 and the target mean.
    """
    p, g, m = prediction.float(), target.float(), mask.float()
    n = torch.clamp(m.sum(dim=(1, 2, 3)), min=1.0)
    mean_p = (m * p).sum(dim=(1, 2, 3)) / n
    mean_g = (m * g).sum(dim=(1, 2, 3)) / n
    centred = (p - mean_p.view(-1, 1, 1, 1)) * m
    variance = centred.square().sum(dim=(1, 2, 3))
    covariance = (centred * g).sum(dim=(1, 2, 3))
    second_moment = variance + n * mean_p.square()
    regular = variance > SINGULAR_TOLERANCE * torch.clamp(second_moment, min=1e-30)
    scale = torch.where(regular, covariance / torch.where(regular, variance, torch.ones_like(variance)), 0.0)
    shift = mean_g - scale * mean_p
    return scale, shift


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median over the mask of (B, 1, H, W); 0 for an empty mask."""
    medians = []
    for value, valid in zip(values, mask, strict=True):
        selected = value[valid]
        medians.append(selected.median() if selected.numel() else value.new_zeros(()))
    return torch.stack(medians)


def normalize_target(target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: (target - median) / mean|target - median| on the valid pixels."""
    target = target.float()
    median = _masked_median(target, mask).view(-1, 1, 1, 1)
    centred = target - median
    count = torch.clamp(mask.float().sum(dim=(1, 2, 3)), min=1.0)
    spread = (centred.abs() * mask).sum(dim=(1, 2, 3)) / count
    return centred / torch.clamp(spread, min=SCALE_FLOOR).view(-1, 1, 1, 1)


@dataclass
class AlignedDisparity:
    """A prediction aligned to its normalised target, with the per-image usable flags."""

    aligned: torch.Tensor  # (B, 1, H, W)
    target: torch.Tensor  # (B, 1, H, W), normalised
    mask: torch.Tensor  # (B, 1, H, W) bool
    usable: torch.Tensor  # (B,) bool


def align_to_target(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    min_valid_pixels: int = DEFAULT_MIN_VALID_PIXELS,
) -> AlignedDisparity:
    """Normalise the target and fit the prediction to it by least squares, per image."""
    prediction, target = _as_bchw(prediction), _as_bchw(target)
    mask = _as_bchw(mask).bool() & torch.isfinite(target)
    clean_target = torch.where(mask, target.float(), torch.zeros_like(target, dtype=torch.float32))
    normalised = normalize_target(clean_target, mask)
    scale, shift = least_squares_scale_shift(prediction, normalised, mask)
    aligned = scale.view(-1, 1, 1, 1) * prediction.float() + shift.view(-1, 1, 1, 1)
    usable = mask.sum(dim=(1, 2, 3)) >= max(2, min_valid_pixels)
    return AlignedDisparity(aligned, normalised, mask, usable)


def _mean_over_usable(per_image: torch.Tensor, usable: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of the usable images' losses; a zero tied to ``anchor``'s graph when none is usable."""
    if not bool(usable.any()):
        return anchor.sum() * 0.0
    return per_image[usable].mean()


def ssi_loss_from_aligned(aligned: AlignedDisparity, kind: str = "l1") -> torch.Tensor:
    """Mean per-image L1 (or L2) between aligned prediction and normalised target."""
    residual = (aligned.aligned - aligned.target) * aligned.mask
    error = residual.abs() if kind == "l1" else residual.square()
    if kind not in ("l1", "l2"):
        raise ValueError(f"unknown SSI loss kind {kind!r}; use 'l1' or 'l2'")
    count = torch.clamp(aligned.mask.sum(dim=(1, 2, 3)), min=1).float()
    per_image = error.sum(dim=(1, 2, 3)) / count
    return _mean_over_usable(per_image, aligned.usable, aligned.aligned)


def gradient_matching_from_aligned(aligned: AlignedDisparity, scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching on the residual R = aligned - target (MiDaS style).

    At scale k the residual and mask are subsampled with stride 2^k; the term is the sum of
    |dR/dx| and |dR/dy| over pixel pairs that are both valid, divided by the number of valid
    pixels at that scale. Per image, scales are summed; images are averaged.
    """
    if scales < 1:
        raise ValueError(f"gradient matching needs at least one scale, got {scales}")
    residual = aligned.aligned - aligned.target
    per_image = residual.new_zeros(residual.shape[0])
    for level in range(scales):
        step = 2**level
        r = residual[..., ::step, ::step]
        m = aligned.mask[..., ::step, ::step].float()
        if r.shape[-1] < 2 and r.shape[-2] < 2:
            break
        per_image = per_image + _gradient_error(r, m)
    return _mean_over_usable(per_image, aligned.usable, aligned.aligned)


def _gradient_error(residual: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of masked |x|- and |y|-differences of the residual over valid count, per image."""
    masked = residual * mask
    grad_x = (masked[..., 1:] - masked[..., :-1]).abs() * mask[..., 1:] * mask[..., :-1]
    grad_y = (masked[..., 1:, :] - masked[..., :-1, :]).abs() * mask[..., 1:, :] * mask[..., :-1, :]
    total = grad_x.sum(dim=(1, 2, 3)) + grad_y.sum(dim=(1, 2, 3))
    return total / torch.clamp(mask.sum(dim=(1, 2, 3)), min=1.0)


def ssi_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "l1",
    min_valid_pixels: int = DEFAULT_MIN_VALID_PIXELS,
) -> torch.Tensor:
    """Scale-and-shift-invariant disparity loss (see the module docstring)."""
    return ssi_loss_from_aligned(align_to_target(prediction, target, mask, min_valid_pixels), kind)


def gradient_matching_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    scales: int = 4,
    min_valid_pixels: int = DEFAULT_MIN_VALID_PIXELS,
) -> torch.Tensor:
    """Multi-scale gradient matching after the same per-image alignment as `ssi_loss`."""
    return gradient_matching_from_aligned(align_to_target(prediction, target, mask, min_valid_pixels), scales)


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = DEFAULT_IGNORE_INDEX
) -> torch.Tensor:
    """Cross-entropy over labelled pixels; logits are resized to the labels when they differ.

    Returns a zero tied to the logits when no pixel is labelled (plain cross-entropy gives NaN).
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    labelled = labels != ignore_index
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index)


class PrimeDepthLoss(torch.nn.Module):
    """The weighted sum of the configured terms; returns the total and each term for logging.

    ``config`` is a `primedepth.train.config.LossConfig` (or anything with the same fields).
    """

    def __init__(self, config: object | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else LossConfig()

    def forward(
        self,
        depth: torch.Tensor,
        batch: dict[str, torch.Tensor],
        segmentation_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``depth``: (B, 1, H, W) predicted disparity (channels of a multi-channel head averaged)."""
        cfg = self.config
        if depth.dim() == 4 and depth.shape[1] > 1:
            depth = depth.mean(dim=1, keepdim=True)
        aligned = align_to_target(depth, batch["disparity"], batch["valid_mask"], cfg.min_valid_pixels)
        terms: dict[str, torch.Tensor] = {}
        if cfg.ssi_weight > 0:
            terms["ssi"] = ssi_loss_from_aligned(aligned, cfg.ssi_kind)
        if cfg.gradient_weight > 0:
            terms["gradient"] = gradient_matching_from_aligned(aligned, cfg.gradient_scales)
        if cfg.segmentation_weight > 0 and segmentation_logits is not None:
            # Without labels the term is a zero tied to the head, so DDP sees every parameter used.
            labels = batch.get("segmentation")
            terms["segmentation"] = (
                segmentation_loss(segmentation_logits, labels, cfg.ignore_index)
                if labels is not None
                else segmentation_logits.sum() * 0.0
            )
        weights = {"ssi": cfg.ssi_weight, "gradient": cfg.gradient_weight, "segmentation": cfg.segmentation_weight}
        total = sum((weights[name] * value for name, value in terms.items()), depth.sum() * 0.0)
        return {"loss": total, **terms}
