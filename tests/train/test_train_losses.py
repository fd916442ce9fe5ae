"""Losses: affine invariance, hand-checked gradient matching, robustness to invalid pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from primedepth.train.config import LossConfig
from primedepth.train.losses import (
    AlignedDisparity,
    PrimeDepthLoss,
    align_to_target,
    gradient_matching_from_aligned,
    gradient_matching_loss,
    least_squares_scale_shift,
    segmentation_loss,
    ssi_loss,
)


def _target(batch: int = 2, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 1, size, size, generator=generator) * 2 + 0.1
    mask = torch.rand(batch, 1, size, size, generator=generator) > 0.2
    return target, mask


def test_least_squares_recovers_scale_and_shift_ignoring_masked_outliers() -> None:
    target, mask = _target()
    prediction = (target - 0.3) / 2.5  # target = 2.5 * prediction + 0.3
    prediction = torch.where(mask, prediction, torch.full_like(prediction, 1e3))  # junk outside
    scale, shift = least_squares_scale_shift(prediction, target, mask)
    assert torch.allclose(scale, torch.full((2,), 2.5), atol=1e-4)
    assert torch.allclose(shift, torch.full((2,), 0.3), atol=1e-4)


def test_constant_prediction_falls_back_to_the_mean() -> None:
    target, mask = _target(batch=1)
    scale, shift = least_squares_scale_shift(torch.ones_like(target), target, mask)
    assert scale.item() == 0.0 and shift.item() == pytest.approx(target[mask].mean().item(), rel=1e-5)


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (3.7, -2.0), (0.01, 0.5), (-2.0, 1.0)])
def test_ssi_and_gradient_losses_vanish_for_affine_predictions(scale: float, shift: float) -> None:
    target, mask = _target()
    prediction = scale * target + shift
    assert ssi_loss(prediction, target, mask).item() < 1e-4
    assert gradient_matching_loss(prediction, target, mask).item() < 1e-4


def test_ssi_loss_is_positive_otherwise_and_has_gradients() -> None:
    target, mask = _target()
    prediction = torch.rand_like(target, requires_grad=True)
    loss = ssi_loss(prediction, target, mask)
    assert loss.item() > 0.1
    loss.backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()
    assert prediction.grad[~mask].abs().max() == 0  # invalid pixels get no signal
    assert gradient_matching_loss(prediction.detach(), target, mask).item() > 0.1


def test_ssi_loss_ignores_target_values_outside_the_mask() -> None:
    target, mask = _target()
    prediction = torch.rand_like(target)
    polluted = torch.where(mask, target, torch.full_like(target, float("nan")))
    assert ssi_loss(prediction, polluted, mask).item() == pytest.approx(ssi_loss(prediction, target, mask).item())


def test_images_with_too_few_valid_pixels_are_skipped_without_nans() -> None:
    target, mask = _target()
    mask[1] = False
    mask[1, 0, 0, :3] = True  # three valid pixels: below the minimum
    prediction = torch.rand_like(target, requires_grad=True)
    both = ssi_loss(prediction, target, mask)
    first_only = ssi_loss(prediction[:1], target[:1], mask[:1])
    assert both.item() == pytest.approx(first_only.item())

    empty = torch.zeros_like(mask)
    loss = ssi_loss(prediction, target, empty) + gradient_matching_loss(prediction, target, empty)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(prediction.grad == 0)


def _residual_case(residual: list[list[float]], mask: list[list[bool]]) -> AlignedDisparity:
    r = torch.tensor(residual)[None, None]
    m = torch.tensor(mask)[None, None]
    return AlignedDisparity(aligned=r, target=torch.zeros_like(r), mask=m, usable=torch.tensor([True]))


def test_gradient_matching_by_hand() -> None:
    residual = [[0.0, 1.0, 3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]
    full = _residual_case(residual, [[True] * 3] * 3)
    # x-differences: |1-0| + |3-1| = 3 (other rows are flat); y-differences: column 0: 0 + 2,
    # column 1: 1 + 2, column 2: 3 + 2 -> 10. Sum 13 over 9 valid pixels.
    assert gradient_matching_from_aligned(full, scales=1).item() == pytest.approx(13 / 9)

    holed = _residual_case(residual, [[True, True, False], [True] * 3, [True] * 3])
    # Pairs touching the masked corner drop out: x 1, y 2 + 3 + 2 = 7; 8 valid pixels -> 1.
    assert gradient_matching_from_aligned(holed, scales=1).item() == pytest.approx(1.0)
    # Scale 2 samples [[0, 3], [2, 2]] with the corner masked: only the y pair 0 -> 2 counts,
    # over 3 valid pixels.
    assert gradient_matching_from_aligned(holed, scales=2).item() == pytest.approx(1.0 + 2 / 3)


def test_alignment_normalises_the_target_scale() -> None:
    target, mask = _target()
    prediction = torch.rand_like(target)
    base = ssi_loss(prediction, target, mask).item()
    assert ssi_loss(prediction, 1000.0 * target, mask).item() == pytest.approx(base, rel=1e-4)
    aligned = align_to_target(prediction, target, mask)
    assert aligned.usable.all()


def test_segmentation_loss_matches_cross_entropy_and_handles_no_labels() -> None:
    logits = torch.randn(2, 150, 8, 8, requires_grad=True)
    labels = torch.randint(0, 150, (2, 8, 8))
    labels[0, :4] = 255
    expected = F.cross_entropy(logits, labels, ignore_index=255)
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    nothing = segmentation_loss(logits, torch.full_like(labels, 255))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.all(logits.grad == 0)
    # Logits at a lower resolution are resized to the labels.
    assert torch.isfinite(segmentation_loss(torch.randn(2, 150, 4, 4), labels))


def test_combined_loss_uses_config_terms_and_weights() -> None:
    target, mask = _target()
    depth = torch.rand_like(target).repeat(1, 3, 1, 1)  # a 3-channel head, averaged
    labels = torch.randint(0, 150, (2, 16, 16))
    logits = torch.randn(2, 150, 16, 16)
    batch = {"disparity": target, "valid_mask": mask, "segmentation": labels}
    config = LossConfig(ssi_weight=2.0, gradient_weight=0.5, gradient_scales=3, segmentation_weight=0.25)
    terms = PrimeDepthLoss(config)(depth, batch, logits)
    expected = 2.0 * terms["ssi"] + 0.5 * terms["gradient"] + 0.25 * terms["segmentation"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["ssi"].item() == pytest.approx(ssi_loss(depth[:, :1], target, mask).item(), rel=1e-6)

    depth_only = PrimeDepthLoss(LossConfig(gradient_weight=0.0, segmentation_weight=0.0))(depth, batch, logits)
    assert set(depth_only) == {"loss", "ssi"}
    unlabelled = {"disparity": target, "valid_mask": mask}
    terms = PrimeDepthLoss(config)(depth, unlabelled, logits)
    assert terms["segmentation"].item() == 0.0
