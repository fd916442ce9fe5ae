"""The PrimeDepth model: attention-map capture, the preimage walk, the refiner, the heads, and
`forward`, the one forward pass everything else calls."""

from .forward import (
    LatentNoise,
    Preimage,
    RawPrediction,
    compute_preimage,
    draw_noise,
    forward,
    latent_shape,
    predict_labels,
    seeded_noise,
    walk_preimage,
)
from .heads import LabelHead
from .refiner import PrimeDepthRefiner

__all__ = [
    "LabelHead",
    "LatentNoise",
    "Preimage",
    "PrimeDepthRefiner",
    "RawPrediction",
    "compute_preimage",
    "draw_noise",
    "forward",
    "latent_shape",
    "predict_labels",
    "seeded_noise",
    "walk_preimage",
]
