"""`primedepth export onnx`: the depth path as one ONNX graph, for ONNX Runtime deployments.

The graph is `primedepth.model.forward` itself (segmentation off), traced by PyTorch's ONNX
exporter (torch.export, then onnxscript):

    inputs  pixel_values (1, 3, H, W) in [-1, 1]; context (1, 77, D), the text conditioning;
            posterior_noise, step_noise (1, 4, H/8, W/8), the two N(0, 1) draws
    output  depth (1, 3, H, W), the depth head's output at the processed size

H and W are fixed (`--size HxW`), or free multiples of `DYNAMIC_UNIT` (`--dynamic`: one graph
for every aspect ratio; the runtime rounds each image's processing size to that unit).

The text encoder is not in the graph: the runtime encodes prompts with the model's own text
encoder (copied next to the graph, in torch) or takes prompt embeddings, so the conditioning is an
input tensor. Weights are stored as external data (`GRAPH_FILE` + `.data`), as ONNX needs above
2 GB. The output folder also holds the configs the runtime builds its (weightless) pipeline
from, and `EXPORT_MANIFEST`, which says what was exported.

Self-attention capture is exported with one of two kernels (`EXPORT_KERNELS`, `--capture-kernel`):
- "chunked" (the default at a fixed size): the chunked capture kernel with blocks of up to
  `EXPORT_BLOCK_BUDGET` bytes of scores, unrolled into plain MatMul / Softmax nodes per block of
  queries. The graph itself never holds an N x N score matrix, on any runtime or provider. Its
  blocks depend on the token count, so it needs a fixed size.
- "padded-sdpa" (the default, and the only kernel, of a dynamic export): one
  scaled-dot-product attention per layer, which the exporter writes as the
  ONNX `Attention` operator (opset 23). Whether that operator forms the N x N scores is the
  provider's choice (a fused kernel, TensorRT or CUDA, need not; not measured, no GPU). On
  ONNX Runtime's CPU provider at 768x768 both graphs peak alike (10.5-11.1 GiB against 7.7 GiB
  for torch, benchmarks/results-cpu-onnx-memory-768.md): its working memory is dominated by
  other tensors.
The VAE-style attention of the encoder, refiner and head (one head, no capture) stays an
`Attention` node either way.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..constants import VAE_DOWNSAMPLE
from ..devices import parse_dtype
from ..errors import InputError, PrimeDepthError
from ..io.atomic import atomic_directory
from ..model.attention_maps import SelfCaptureKernel, chunked_capture, preferring_self_capture
from ..model.forward import LatentNoise, forward

__all__ = ["EXPORT_MANIFEST", "GRAPH_FILE", "OPSET", "EXPORT_KERNELS", "DEFAULT_EXPORT_KERNEL", "DYNAMIC_UNIT", "ExportManifest", "DepthPathModule", "export_onnx", "parse_size", "require_onnx", "write_graph"]

GRAPH_FILE = "primedepth_depth.onnx"
EXPORT_MANIFEST = "onnx_export.json"
OPSET = 23  # the first opset with the Attention operator
INPUT_NAMES = ("pixel_values", "context", "posterior_noise", "step_noise")
OUTPUT_NAMES = ("depth",)
# Copied next to the graph: configs of the weightless runtime pipeline, and the text encoder
# (weights included) so that prompts still work.
CONFIG_FOLDERS = ("vae", "unet", "refiner", "depth_head", "scheduler")
TEXT_FOLDERS = ("text_encoder", "tokenizer")
# Bytes of scores and probabilities per block of the exported chunked kernel: larger than the
# eager kernel's budget (each block is a handful of ONNX nodes, unrolled per layer), small
# beside the weights. At 768x768 (9216 tokens, fp32) that is 3640 queries of one head per block.
EXPORT_BLOCK_BUDGET = 256 * 2**20
EXPORT_KERNELS: dict[str, SelfCaptureKernel | str] = {
    "chunked": partial(chunked_capture, budget_bytes=EXPORT_BLOCK_BUDGET, query_block=2**31),
    "padded-sdpa": "padded-sdpa",
}
DEFAULT_EXPORT_KERNEL = "chunked"
DYNAMIC_EXPORT_KERNEL = "padded-sdpa"
# A dynamic graph's height and width are free multiples of this: the VAE's 8 times the UNet's
# three 2x downsamplings. With multiples of 8 only, torch.export (torch 2.13) specialises the
# sizes on the guards of the UNet's odd-size padding and of the key-grid pooling.
DYNAMIC_UNIT = 64
DYNAMIC_MAX_SIDE = 4096
# The example size a dynamic graph is traced at (any multiples of DYNAMIC_UNIT above one unit:
# a side of exactly one unit would be specialised as 1 by the tracer).
DYNAMIC_TRACE_SIZE = (128, 192)
DEFAULT_EXPORT_SIZE = (512, 512)


@dataclass
class ExportManifest:
    """What an export folder holds (`EXPORT_MANIFEST`)."""

    graph: str
    dtype: str
    size: list[int] | None  # (height, width) of the graph's input; None: dynamic (multiples of size_multiple)
    opset: int
    inputs: list[str]
    outputs: list[str]
    capture_kernel: str
    text_encoder: bool
    source: str
    torch_version: str
    format_version: int = 1
    size_multiple: int = VAE_DOWNSAMPLE

    @property
    def dynamic(self) -> bool:
        return self.size is None

    def save(self, folder: Path) -> None:
        (folder / EXPORT_MANIFEST).write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ExportManifest:
        path = folder / EXPORT_MANIFEST
        if not path.is_file():
            raise InputError(f"{folder} is not an ONNX export of PrimeDepth: it has no {EXPORT_MANIFEST} "
                             "(write one with `primedepth export onnx MODEL_DIR OUT_DIR`)")
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise InputError(f"{path} is not a valid export manifest: {error}") from None


def require_onnx(*modules: str) -> None:
    """Import-check the ONNX extra's modules, with one message naming the extra when missing."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise PrimeDepthError(f"the ONNX path needs {', '.join(missing)}: pip install 'primedepth[onnx]'")


def parse_size(text: str) -> tuple[int, int]:
    """ "HxW" (or one number for a square) -> (height, width), multiples of 8."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        height, width = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise InputError(f"--size must be HxW, e.g. 512x512 or 768x1024; got {text!r}") from None
    if len(parts) > 2 or height < VAE_DOWNSAMPLE or width < VAE_DOWNSAMPLE or height % VAE_DOWNSAMPLE or width % VAE_DOWNSAMPLE:
        raise InputError(f"--size must be HxW with both sides multiples of {VAE_DOWNSAMPLE}; got {text!r}")
    return height, width


class DepthPathModule(torch.nn.Module):
    """The depth path as one module for tracing: `primedepth.model.forward`, segmentation off."""

    def __init__(self, pipeline: Any) -> None:
        super().__init__()
        self.vae, self.unet, self.refiner, self.depth_head = pipeline.vae, pipeline.unet, pipeline.refiner, pipeline.depth_head
        self.scheduler = pipeline.scheduler
        self.segmentation_head = None
        self.encoder_norm_eps = pipeline.config.vae_encoder_norm_eps

    def forward(self, pixel_values: torch.Tensor, context: torch.Tensor, posterior_noise: torch.Tensor,
                step_noise: torch.Tensor) -> torch.Tensor:
        noise = LatentNoise(posterior_noise, step_noise)
        return forward(self, pixel_values, context, noise, encoder_norm_eps=self.encoder_norm_eps).depth


def example_inputs(pipeline: Any, height: int, width: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's shapes (the trace only needs their shapes and dtypes)."""
    generator = torch.Generator().manual_seed(0)
    latent = (1, pipeline.vae.config.latent_channels, height // VAE_DOWNSAMPLE, width // VAE_DOWNSAMPLE)
    context = (1, pipeline.tokenizer.model_max_length if pipeline.tokenizer is not None else 77, pipeline.unet.config.cross_attention_dim)
    pixels = torch.rand(1, 3, height, width, generator=generator) * 2 - 1
    return (pixels.to(dtype), torch.randn(context, generator=generator).to(dtype),
            torch.randn(latent, generator=generator), torch.randn(latent, generator=generator))


def _copy_folders(source: Path, target: Path, names: tuple[str, ...], configs_only: bool) -> list[str]:
    """Copy the named component folders that exist (only their json files with `configs_only`)."""
    copied = []
    for name in names:
        folder = source / name
        if not folder.is_dir():
            continue
        if configs_only:
            (target / name).mkdir()
            for path in folder.glob("*.json"):
                shutil.copy2(path, target / name / path.name)
        else:
            shutil.copytree(folder, target / name)
        copied.append(name)
    return copied


def _dynamic_shapes() -> dict[str, Any]:
    """torch.export's dynamic shapes: height and width free multiples of DYNAMIC_UNIT (the latents
    follow at 1/8), batch and text conditioning fixed."""
    rows = torch.export.Dim("rows", min=1, max=DYNAMIC_MAX_SIDE // DYNAMIC_UNIT)
    cols = torch.export.Dim("cols", min=1, max=DYNAMIC_MAX_SIDE // DYNAMIC_UNIT)
    latent_unit = DYNAMIC_UNIT // VAE_DOWNSAMPLE
    latent = {2: latent_unit * rows, 3: latent_unit * cols}
    return {"pixel_values": {2: DYNAMIC_UNIT * rows, 3: DYNAMIC_UNIT * cols}, "context": None,
            "posterior_noise": latent, "step_noise": latent}


def _trace(module: DepthPathModule, inputs: tuple[torch.Tensor, ...], path: Path, capture_kernel: str, dynamic: bool) -> None:
    """torch.export (dynamic: with free sizes), then torch.onnx.export of the program, the
    exporter's chatter silenced; failures as one error."""
    with warnings.catch_warnings(), preferring_self_capture(EXPORT_KERNELS[capture_kernel]), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            exported = torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes() if dynamic else None)
            program = torch.onnx.export(
                exported, inputs, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), opset_version=OPSET,
                dynamo=True, external_data=True, verbose=False,
            )
        except Exception as error:  # noqa: BLE001 - the exporter raises many types; the user needs the reason
            raise PrimeDepthError(f"the ONNX export failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    program.save(str(path), external_data=True)


def choose_capture_kernel(name: str | None, dynamic: bool) -> str:
    """The export's capture kernel: `name`, or the default for a fixed or dynamic size."""
    if name is None:
        return DYNAMIC_EXPORT_KERNEL if dynamic else DEFAULT_EXPORT_KERNEL
    if name not in EXPORT_KERNELS:
        raise InputError(f"--capture-kernel must be one of {', '.join(EXPORT_KERNELS)}; got {name!r}")
    if dynamic and name != DYNAMIC_EXPORT_KERNEL:
        raise InputError(f"--capture-kernel {name} needs a fixed size: its blocks of queries depend on the token count; "
                         f"a dynamic export uses {DYNAMIC_EXPORT_KERNEL} (or export one graph per size with --size HxW)")
    return name


def write_graph(pipeline: Any, path: Path, size: tuple[int, int] | None, dtype: torch.dtype = torch.float32,
                capture_kernel: str | None = None) -> Path:
    """Trace the depth path of a loaded `pipeline` at `size` (height, width; None: dynamic, free
    multiples of DYNAMIC_UNIT) into the graph `path` (+ its external weights); no configs or
    manifest: `export_onnx` writes the deployable folder, this is what measurements and checks of
    the graph alone need."""
    kernel = choose_capture_kernel(capture_kernel, dynamic=size is None)
    height, width = size if size is not None else DYNAMIC_TRACE_SIZE
    module = DepthPathModule(pipeline).eval()
    _trace(module, example_inputs(pipeline, height, width, dtype), Path(path), kernel, dynamic=size is None)
    return Path(path)


def _check_distinct(model_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is the model folder or holds it: replacing it (--overwrite)
    would delete the model being exported."""
    model, output = model_dir.expanduser().resolve(), output_dir.expanduser().resolve()
    if output == model or output in model.parents:
        raise InputError(f"the output folder {output_dir} is (or contains) the model folder {model_dir}; "
                         "export into a new folder")


def export_onnx(
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    dtype: Any = "fp32",
    size: tuple[int, int] | None = DEFAULT_EXPORT_SIZE,
    overwrite: bool = False,
    pipeline: Any = None,
    capture_kernel: str | None = None,
) -> Path:
    """Export the depth path of the model folder `model` into `output_dir` (written atomically).

    `size`: the (height, width) the graph runs at; None: dynamic, any height and width that are
    multiples of DYNAMIC_UNIT (the runtime rounds each image's processing size to them).
    `dtype`: "fp32" or "fp16" (the weights and the graph's float inputs). `capture_kernel`: a name
    in `EXPORT_KERNELS`, default chunked at a fixed size, padded-sdpa (the only one) when
    dynamic (see the module doc). `pipeline`: an already loaded pipeline of `model` (tests),
    otherwise it is loaded on the CPU.
    """
    require_onnx("onnx", "onnxscript")
    capture_kernel = choose_capture_kernel(capture_kernel, dynamic=size is None)
    torch_dtype = parse_dtype(dtype)
    if torch_dtype not in (torch.float32, torch.float16):
        raise InputError(f"--dtype for an ONNX export is fp32 or fp16; got {dtype}")
    model_dir = Path(model)
    _check_distinct(model_dir, Path(output_dir))
    if pipeline is None:
        if not (model_dir / "model_index.json").is_file():
            raise InputError(f"{model_dir} is not a model folder (no model_index.json); convert a checkpoint first "
                             "(primedepth convert) or download the model (primedepth download)")
        from ..pipeline import PrimeDepthPipeline  # lazy: the pipeline's stack is only needed here

        try:
            pipeline = PrimeDepthPipeline.from_pretrained(model_dir, torch_dtype=torch_dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise PrimeDepthError(f"cannot load the model '{model_dir}': {error}") from None
    with atomic_directory(Path(output_dir), overwrite=overwrite) as staging:
        write_graph(pipeline, staging / GRAPH_FILE, size, torch_dtype, capture_kernel)
        shutil.copy2(model_dir / "model_index.json", staging / "model_index.json")
        _copy_folders(model_dir, staging, CONFIG_FOLDERS, configs_only=True)
        text = _copy_folders(model_dir, staging, TEXT_FOLDERS, configs_only=False)
        ExportManifest(
            graph=GRAPH_FILE, dtype="fp16" if torch_dtype == torch.float16 else "fp32", size=None if size is None else list(size),
            opset=OPSET, inputs=list(INPUT_NAMES), outputs=list(OUTPUT_NAMES), capture_kernel=capture_kernel,
            text_encoder=set(text) == set(TEXT_FOLDERS), source=str(model_dir), torch_version=torch.__version__,
            size_multiple=DYNAMIC_UNIT if size is None else VAE_DOWNSAMPLE,
        ).save(staging)
    return Path(output_dir)
