"""Exports of the PrimeDepth depth path for deployment (`primedepth export onnx`) and the
runtimes that run them through the same job engine (`primedepth predict --runtime onnx`).

- `onnx`: the depth path (VAE encoder, UNet walk with capture, refiner, depth head) as one ONNX
  graph with external weights, written with the folder the runtime needs;
- `runtime`: `OnnxPrimeDepthPipeline`, the pipeline's call interface on ONNX Runtime.

Both import onnx / onnxruntime lazily: `pip install primedepth[onnx]`.
"""

from .onnx import EXPORT_MANIFEST, GRAPH_FILE, export_onnx
from .runtime import OnnxPrimeDepthPipeline, load_onnx_pipeline

__all__ = ["EXPORT_MANIFEST", "GRAPH_FILE", "OnnxPrimeDepthPipeline", "export_onnx", "load_onnx_pipeline"]
