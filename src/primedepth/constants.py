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

# The seed of every job unless told otherwise: a resumed or repeated job then writes predictions
# that match the files already there. None (fresh noise each run) is the official code's behaviour.
DEFAULT_SEED = 0

# Official weights on the Hugging Face hub.
OFFICIAL_REPO_ID = "CVL-Heidelberg/PrimeDepth"

# Depth Anything on the hub (transformers format). The paper's PD + DA row uses V1 Large.
DEPTH_ANYTHING_V1_LARGE_ID = "LiheYoung/depth-anything-large-hf"
DEPTH_ANYTHING_V2_SMALL_ID = "depth-anything/Depth-Anything-V2-Small-hf"
DEPTH_ANYTHING_V2_BASE_ID = "depth-anything/Depth-Anything-V2-Base-hf"
DEPTH_ANYTHING_V2_LARGE_ID = "depth-anything/Depth-Anything-V2-Large-hf"
# Names accepted by `--ensemble`, with the weights each stands for.
ENSEMBLE_MEMBERS: dict[str, str] = {
    "depth-anything-large": DEPTH_ANYTHING_V1_LARGE_ID,
    "depth-anything-v2-small": DEPTH_ANYTHING_V2_SMALL_ID,
    "depth-anything-v2-base": DEPTH_ANYTHING_V2_BASE_ID,
    "depth-anything-v2-large": DEPTH_ANYTHING_V2_LARGE_ID,
}
DEFAULT_ENSEMBLE = "depth-anything-large"  # the paper's row

# BLIP-2, the captioner of prompt="auto" (the official inference captions every image with it).
BLIP2_MODEL_ID = "Salesforce/blip2-opt-2.7b"

# Licences of the weights the package downloads or runs (each model card's licence). Printed once
# per job by the CLI and by `primedepth info`; the README has the same table.
MODEL_LICENCES: dict[str, str] = {
    OFFICIAL_REPO_ID: "CreativeML Open RAIL++-M (Stable Diffusion 2.1 weights; use restrictions apply)",
    DEPTH_ANYTHING_V1_LARGE_ID: "Apache-2.0",
    DEPTH_ANYTHING_V2_SMALL_ID: "Apache-2.0",
    DEPTH_ANYTHING_V2_BASE_ID: "CC-BY-NC-4.0 (non-commercial use only)",
    DEPTH_ANYTHING_V2_LARGE_ID: "CC-BY-NC-4.0 (non-commercial use only)",
    BLIP2_MODEL_ID: "MIT (model card); its OPT-2.7b language model is under Meta's OPT licence",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": "MIT",
    "prs-eth/marigold-depth-v1-0": "Apache-2.0",
    "prs-eth/marigold-depth-v1-1": "Apache-2.0",
}
CONVERTED_MODEL_LICENCE = MODEL_LICENCES[OFFICIAL_REPO_ID]


def model_licence(source: str) -> str:
    """The licence of a model by hub id; local folders and unknown ids: say where to look."""
    return MODEL_LICENCES.get(str(source), "unknown: see the model card or the folder's licence file")

# The smallest processing size (`max_size`) accepted everywhere: the shortest side Stable
# Diffusion's UNet can process (see `processing.smallest_processable_side`); a smaller one would
# only downscale an image to upscale it again. Here, not in `processing`, so that settings
# modules can check it without importing torch.
MIN_MAX_SIZE = 64
