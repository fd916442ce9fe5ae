"""Training PrimeDepth: the refiner and heads learn on top of a frozen Stable Diffusion.

- `config`: the typed training configuration, read from YAML.
- `data`: Hypersim, Virtual KITTI 2 and Depth-Anything-pseudo-labelled folders, the ratio mixer
  and the paired augmentations.
- `losses`: scale-and-shift-invariant disparity loss, gradient matching, segmentation.
- `loop`: the Accelerate training engine (imports diffusers/accelerate; import it explicitly).
"""

from .config import TrainConfig, load_config
from .losses import PrimeDepthLoss

__all__ = ["PrimeDepthLoss", "TrainConfig", "load_config"]
