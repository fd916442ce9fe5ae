"""`OnnxPrimeDepthPipeline`: the pipeline's call interface with the depth path on ONNX Runtime.

Everything around the depth path is the torch pipeline's own code: image preprocessing and the
processing-size rule, prompts (the text encoder copied into the export, in torch; or prompt
embeddings; BLIP-2 captions for "auto"), the noise draws, and postprocessing. Only
`predict_raw` differs: it runs the exported graph, one image at a time. The VAE, UNet, refiner
and head exist only as configurations (built on the meta device, no weights), so the job engine,
which reads the pipeline's configs, devices and dtype, needs no change.

A fixed-size export runs every image at its size: the image is prepared as usual (official
processing size), then resized to the graph's size, and the depth restored to the input's size.
A dynamic export runs each image at its official processing size rounded to the nearest
multiples of the graph's unit (64 pixels): equal to the torch path when that size is already
such a multiple, otherwise resized by less than half a unit per side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ..constants import DEFAULT_MAX_SIZE, VAE_DOWNSAMPLE
from ..errors import InputError
from ..model.forward import RawPrediction
from ..model.heads import LabelHead
from ..model.refiner import PrimeDepthRefiner
from ..pipeline import PrimeDepthPipeline
from ..processing import PreparedImage, PrimeDepthImageProcessor
from .onnx import ExportManifest, require_onnx

__all__ = ["OnnxPrimeDepthPipeline", "load_onnx_pipeline", "default_providers"]

# ONNX Runtime execution providers in order of preference; those this install has are used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def default_providers() -> list[str]:
    """The preferred providers this onnxruntime has (TensorRT, CUDA, then the CPU)."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    return [name for name in PREFERRED_PROVIDERS if name in available]


def round_to_multiple(size: tuple[int, int], unit: int) -> tuple[int, int]:
    """(height, width) rounded to the nearest multiples of `unit`, one unit at least."""
    return tuple(max(unit, round(side / unit) * unit) for side in size)  # type: ignore[return-value]


class GraphSizeImageProcessor(PrimeDepthImageProcessor):
    """The official preprocessing, then a resize to the size the graph runs that image at
    (`graph_size` of the official processing size); the depth is restored from it to the input
    size by the usual postprocessing."""

    def __init__(self, graph_size: Callable[[tuple[int, int]], tuple[int, int]]) -> None:
        super().__init__()
        self.graph_size = graph_size

    def preprocess(self, image: Any, max_size: int = DEFAULT_MAX_SIZE, min_size: int = VAE_DOWNSAMPLE) -> PreparedImage:
        prepared = super().preprocess(image, max_size, min_size)
        size = self.graph_size(prepared.processed_size)
        if prepared.processed_size == size:
            return prepared
        unit = (prepared.pixel_values + 1) / 2
        resized = F.interpolate(unit, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return PreparedImage(pixel_values=resized * 2 - 1, input_size=prepared.input_size)


def _weightless(cls: Any, folder: Path) -> Any:
    """A component built from its config on the meta device: its config, shapes and dtype, no memory."""
    with torch.device("meta"):
        return cls.from_config(cls.load_config(folder))


def _text_components(folder: Path) -> dict[str, Any]:
    """The text encoder and tokenizer copied into the export, when it has them."""
    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        return {}
    from transformers import CLIPTextModel, CLIPTokenizer

    return {"text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder"), "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer")}


class OnnxPrimeDepthPipeline(PrimeDepthPipeline):
    """A PrimeDepth pipeline whose depth path is an ONNX Runtime session (see the module doc)."""

    session: Any
    manifest: ExportManifest

    def attach_session(self, session: Any, manifest: ExportManifest) -> None:
        self.session, self.manifest = session, manifest
        self._placement_device = torch.device("cpu")  # inputs and outputs live in CPU memory
        inputs = {item.name: item.type for item in session.get_inputs()}
        self._input_dtypes = {name: NUMPY_DTYPES.get(kind, np.float32) for name, kind in inputs.items()}
        self.image_processor = GraphSizeImageProcessor(self.graph_size)

    def graph_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size the graph runs an image of official processing size `size` at."""
        if self.manifest.dynamic:
            return round_to_multiple(tuple(size), self.manifest.size_multiple)
        return tuple(self.manifest.size)

    def enable_channels_last(self) -> None:
        """Nothing to do: the layout is the graph's."""

    def to(self, *args: Any, **kwargs: Any) -> OnnxPrimeDepthPipeline:
        """Nothing to move: the weights are in the ONNX Runtime session (its providers place them)."""
        return self

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.manifest.dtype == "fp16" else torch.float32

    def processing_size(self, height: int, width: int, max_size: int = DEFAULT_MAX_SIZE) -> tuple[int, int]:
        """The size the graph runs this image at: the export's size, or (dynamic) the official
        processing size rounded to the graph's unit."""
        return self.graph_size(super().processing_size(height, width, max_size))

    def _feed(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().to("cpu", torch.float32).numpy().astype(self._input_dtypes[name], copy=False)

    @torch.no_grad()
    def predict_raw(
        self,
        pixel_values: torch.Tensor,
        prompt_embeds: torch.Tensor,
        posterior_noise: torch.Tensor | None = None,
        step_noise: torch.Tensor | None = None,
        generator: Any = None,
        output_segmentation: bool = True,
    ) -> RawPrediction:
        """The depth head's output for pixels (B, 3, H, W) in [-1, 1], from the ONNX graph."""
        self._check_pixel_values(pixel_values)
        if output_segmentation:
            raise InputError("the ONNX export holds the depth path only: segmentation needs the torch runtime")
        self._check_graph_size(tuple(pixel_values.shape[-2:]))
        noise = self._batch_noise(pixel_values, posterior_noise, step_noise, generator)
        context = self._check_prompt_embeds(prompt_embeds, pixel_values.shape[0])
        depths = []
        for index in range(pixel_values.shape[0]):
            feeds = {"pixel_values": pixel_values[index : index + 1], "context": context[index : index + 1],
                     "posterior_noise": noise.posterior[index : index + 1], "step_noise": noise.step[index : index + 1]}
            (depth,) = self.session.run(None, {name: self._feed(name, tensor) for name, tensor in feeds.items()})
            depths.append(torch.from_numpy(np.asarray(depth, dtype=np.float32)))
        return RawPrediction(depth=torch.cat(depths), segmentation=None)

    def _check_graph_size(self, size: tuple[int, int]) -> None:
        """Refuse pixels the graph cannot run: another size than a fixed export's, or sides that
        are not multiples of a dynamic export's unit."""
        manifest = self.manifest
        if manifest.dynamic:
            unit = manifest.size_multiple
            if size[0] % unit or size[1] % unit:
                raise InputError(f"this dynamic ONNX export runs images whose sides are multiples of {unit}; got {size}")
        elif list(size) != list(manifest.size):
            raise InputError(f"this ONNX export runs {manifest.size[0]}x{manifest.size[1]} images; got {size} "
                             "(export another size with --size HxW, or --dynamic)")


def load_onnx_pipeline(folder: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None) -> OnnxPrimeDepthPipeline:
    """The pipeline of an export folder (`primedepth export onnx`), on ONNX Runtime.

    `providers`: ONNX Runtime execution providers (default: TensorRT, CUDA, CPU, those present).
    `threads`: intra-op threads (default: ONNX Runtime's choice).
    """
    require_onnx("onnxruntime")
    import onnxruntime

    folder = Path(folder)
    manifest = ExportManifest.load(folder)
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(folder / manifest.graph), options, providers=providers or default_providers())
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types; the user needs the reason
        raise InputError(f"cannot load the ONNX graph in {folder}: {str(error).splitlines()[0]}") from None
    config = PrimeDepthPipeline.load_config(folder)
    pipeline = OnnxPrimeDepthPipeline(
        vae=_weightless(AutoencoderKL, folder / "vae"),
        unet=_weightless(UNet2DConditionModel, folder / "unet"),
        refiner=_weightless(PrimeDepthRefiner, folder / "refiner"),
        depth_head=_weightless(LabelHead, folder / "depth_head"),
        scheduler=DDPMScheduler.from_pretrained(folder / "scheduler"),
        default_prompt=config.get("default_prompt", "auto"),
        vae_encoder_norm_eps=config["vae_encoder_norm_eps"],
        **_text_components(folder),
    )
    pipeline.attach_session(session, manifest)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
