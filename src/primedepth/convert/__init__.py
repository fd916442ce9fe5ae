"""Official PrimeDepth checkpoint -> diffusers components; every official key name lives here.

`checkpoint`: the LDM UNet and VAE (via diffusers' conversion), the labeller (refiner and heads),
the architecture from the official yaml. `open_clip`: the OpenCLIP text tower.
"""

from .checkpoint import (
    MODEL_LICENCE_FILE,
    MODEL_LICENCE_NOTICE,
    RELEASED_INFERENCE_CONFIG,
    component_configs,
    convert_checkpoint_file,
    convert_state_dict,
    load_official_config,
    load_official_state_dict,
)
from .open_clip import convert_open_clip_text_state_dict, has_open_clip_text_weights, text_encoder_from_open_clip

__all__ = [
    "MODEL_LICENCE_FILE",
    "MODEL_LICENCE_NOTICE",
    "RELEASED_INFERENCE_CONFIG",
    "component_configs",
    "convert_checkpoint_file",
    "convert_open_clip_text_state_dict",
    "convert_state_dict",
    "has_open_clip_text_weights",
    "load_official_config",
    "load_official_state_dict",
    "text_encoder_from_open_clip",
]
