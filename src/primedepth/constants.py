"""Numbers fixed by the official PrimeDepth architecture, each defined once.

Values that the official code derives from its configuration (channel counts, head counts,
GroupNorm groups) are not here: they are computed from the model configs.
"""

# The single denoising step: PrimeDepth runs the frozen UNet once at timestep index 1.
SINGLE_STEP_TIMESTEP = 1

# Stable Diffusion 2.x latent scale (config `scale_factor`) and noise schedule.
LATENT_SCALE_FACTOR = 0.18215
SCHEDULE_BETA_START = 0.00085
SCHEDULE_BETA_END = 0.012
SCHEDULE_NUM_TIMESTEPS = 1000

# GroupNorm epsilons of the official code (diffusers defaults differ for the first two).
VAE_ENCODER_NORM_EPS = 1e-5  # official `Normalize` lost SD's 1e-6
LABEL_HEAD_NORM_EPS = 1e-5
REFINER_RESNET_NORM_EPS = 1e-5
TRANSFORMER_NORM_EPS = 1e-6  # diffusers' Transformer2DModel already uses this

# GroupNorm groups in the trained part: the largest divisor of the channel count up to this.
MAX_NORM_GROUPS = 32

# Preimage: self-attention maps are pooled to a SELF_MAP_GRID x SELF_MAP_GRID grid of key cells,
# cross-attention keeps one map per text token.
SELF_MAP_GRID = 8
SELF_MAP_CHANNELS = SELF_MAP_GRID * SELF_MAP_GRID
CROSS_MAP_CHANNELS = 77  # text tokens, OpenCLIP context length

# Image pre-processing of the official inference: [0, 1] -> [-1, 1]; downscale above this side.
DEFAULT_MAX_SIZE = 1024
VAE_DOWNSAMPLE = 8

# Official weights on the Hugging Face hub.
OFFICIAL_REPO_ID = "CVL-Heidelberg/PrimeDepth"

# Depth Anything V2 Large: the paper's ensemble partner (weights CC-BY-NC-4.0).
DEPTH_ANYTHING_V2_LARGE_ID = "depth-anything/Depth-Anything-V2-Large-hf"
# Names accepted by `--ensemble`, with the weights each stands for.
ENSEMBLE_MEMBERS: dict[str, str] = {"depth-anything-v2-large": DEPTH_ANYTHING_V2_LARGE_ID}
DEFAULT_ENSEMBLE = "depth-anything-v2-large"
