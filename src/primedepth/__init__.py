"""PrimeDepth on diffusers: zero-shot monocular depth from a single frozen Stable Diffusion step."""

__version__ = "0.1.0"
