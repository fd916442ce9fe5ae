"""The ground-truth-free PrimeDepth + Depth Anything ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.ensemble import EnsembleAdapter, align_to_reference, ensemble_disparity
from primedepth.errors import InputError
from primedepth.eval import fit_scale_shift
from primedepth.adapters import CallableAdapter


def _maps(seed=0):
    rng = np.random.default_rng(seed)
    primedepth = rng.uniform(0.1, 1.0, (12, 16))
    noise = rng.normal(0, 0.05, primedepth.shape)
    return primedepth, noise


def test_an_affine_copy_of_the_reference_averages_to_the_reference():
    primedepth, _ = _maps()
    out = ensemble_disparity(primedepth, 7.0 * primedepth + 3.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, primedepth, rtol=1e-6)


def test_average_of_reference_and_least_squares_aligned_other():
    primedepth, noise = _maps(1)
    other = 0.5 * (primedepth + noise) - 2.0
    x = np.stack([other.ravel(), np.ones(other.size)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(x, primedepth.ravel(), rcond=None)
    expected = (primedepth + scale * other + shift) / 2
    np.testing.assert_allclose(ensemble_disparity(primedepth, other), expected, rtol=1e-6)
    # the fit only uses masked, finite pixels
    mask = np.ones_like(primedepth, bool)
    mask[0] = False
    corrupted = other.copy()
    corrupted[0] = 1e6
    corrupted[1, 1] = np.nan
    aligned = align_to_reference(corrupted, primedepth, mask)
    clean = align_to_reference(np.where(mask, other, 0), primedepth, mask & np.isfinite(corrupted))
    np.testing.assert_allclose(aligned[2:], clean[2:], rtol=1e-9)


def test_the_ensemble_fits_with_the_protocol_fit():
    primedepth, noise = _maps(3)
    other = 2.0 * primedepth + noise
    mask = primedepth > 0.3
    scale, shift = fit_scale_shift(other, primedepth, mask)
    np.testing.assert_array_equal(align_to_reference(other, primedepth, mask), other * scale + shift)


def test_adapter_combines_two_disparity_adapters():
    primedepth, _ = _maps(2)
    first = CallableAdapter(lambda image: primedepth, name="primedepth", output_space="disparity")
    second = CallableAdapter(lambda image: 3 * primedepth + 1, name="da", output_space="disparity")
    adapter = EnsembleAdapter(first, second)
    assert adapter.name == "primedepth+da" and adapter.output_space == "disparity"
    np.testing.assert_allclose(adapter(np.zeros((12, 16, 3), np.uint8)), primedepth, rtol=1e-6)


def test_errors():
    depth = CallableAdapter(lambda image: image[..., 0], name="marigold", output_space="depth")
    disparity = CallableAdapter(lambda image: image[..., 0], name="da", output_space="disparity")
    with pytest.raises(InputError, match="averages disparity maps"):
        EnsembleAdapter(disparity, depth)
    with pytest.raises(InputError, match="cannot align maps of shapes"):
        ensemble_disparity(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(InputError, match="varying values"):
        ensemble_disparity(np.ones((2, 3)), np.ones((2, 3)))
