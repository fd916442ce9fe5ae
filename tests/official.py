"""Helpers to read the shared official fixtures and rebuild their by-key weights."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from primedepth.convert import load_official_config, load_official_state_dict

from .fixtures import OFFICIAL_FIXTURES, require_fixture

TINY = OFFICIAL_FIXTURES / "tiny"
FULL = OFFICIAL_FIXTURES / "full"

# Per-stage tolerances relative to the reference's largest |value|. The fixtures README (§6)
# measured 1-vs-2-thread float noise of <= 9e-7 (latent), 2.6e-6 (features), 6.6e-6 (attention),
# 3.5e-6 (refiner), 8.7e-6 (depth); an eps mistake shows as 1e-5..8e-4 at its stage.
TOLERANCE = {
    "latent": 3e-6,
    "x_t": 3e-6,
    "time_emb": 1e-6,
    "features": 5e-6,
    "attention": 1.5e-5,
    "maps": 1.5e-5,
    "merged": 5e-6,
    "refiner_out": 5e-6,
    "refiner_final": 5e-6,
    "depth_raw": 1.5e-5,
    "depth": 1.5e-5,
    "segmentation_raw": 1.5e-5,
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| (the size of rounding noise, unlike the max-based error)."""
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    difference = actual.double() - expected.double()
    return (difference.norm() / expected.double().norm()).item()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, stage: str, label: str = "") -> None:
    error = relative_error(actual, expected)
    assert error <= TOLERANCE[stage], f"{label or stage}: relative error {error:.3g} > {TOLERANCE[stage]:.3g}"


def load_cases(path: Path, case: str) -> dict[str, torch.Tensor]:
    prefix = f"{case}."
    return {k.removeprefix(prefix): v for k, v in load_file(str(require_fixture(path))).items() if k.startswith(prefix)}


def by_key(key: str, shape: tuple[int, ...], salt: str = "") -> torch.Tensor:
    """The fixtures' weight rule (fixtures README §3.1)."""
    generator = torch.Generator().manual_seed(zlib.crc32((salt + key).encode("utf-8")))
    r = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    if key.endswith(".weight") and len(shape) >= 2:
        return r / math.sqrt(math.prod(shape[1:]))
    if key.endswith(".weight"):
        return 1.0 + 0.1 * r
    if key.endswith(".bias"):
        return 0.1 * r
    return 0.02 * r


def parse_shape(text: str) -> tuple[int, ...]:
    """'(49408, 1024)' / '()' -> tuple of ints."""
    return tuple(int(p) for p in text.strip("()").split(",") if p.strip())


def full_size_keys(prefixes: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the full-size official state dict (weights-check.tsv) under prefixes."""
    keys = {}
    for line in require_fixture(FULL / "weights-check.tsv").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].startswith(prefixes):
            keys[fields[0]] = parse_shape(fields[1])
    return keys


def full_size_state_dict(prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {key: by_key(key, shape) for key, shape in full_size_keys(prefixes).items()}


def tiny_state_dict() -> dict[str, torch.Tensor]:
    return load_official_state_dict(require_fixture(TINY / "official-tiny.ckpt"))


def tiny_config() -> dict:
    return load_official_config(require_fixture(TINY / "config.yaml"))
