"""`primedepth export onnx MODEL_DIR OUT_DIR`: the depth path as ONNX, for ONNX Runtime deployments."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Export the depth path of a model folder (VAE encoder, UNet walk with attention-map capture,
refiner, depth head) as one ONNX graph with external weights, into OUT_DIR together with the
configs and text encoder the ONNX runtime needs. Run it with
`primedepth predict --runtime onnx --model OUT_DIR ...` (ONNX Runtime: TensorRT, CUDA or CPU
provider, whichever is installed). The text conditioning is an input of the graph; prompts are
encoded by the text encoder copied into OUT_DIR.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` sub-command (one format so far: onnx)."""
    parser = subparsers.add_parser("export", help="export the model for deployment (ONNX)", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="the depth path as an ONNX graph", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (primedepth convert / download)")
    onnx.add_argument("output_dir", metavar="OUT_DIR", help="folder to write the export into")
    onnx.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32",
                      help="weights and float inputs of the graph (default fp32; fp16 is for GPU providers)")
    shape = onnx.add_mutually_exclusive_group()
    shape.add_argument("--size", default="512x512", metavar="HxW",
                       help="the graph's fixed input size, multiples of 8 (default 512x512); images are resized to it")
    shape.add_argument("--dynamic", action="store_true",
                       help="one graph for any height and width that are multiples of 64: each image runs at its "
                       "official processing size rounded to multiples of 64 (capture kernel padded-sdpa)")
    onnx.add_argument("--capture-kernel", choices=["chunked", "padded-sdpa"], default=None,
                      help="self-attention capture in the graph: chunked (default with --size; blocks of queries, "
                      "never an N x N score matrix) or padded-sdpa (default and only choice with --dynamic; one "
                      "ONNX Attention node per layer, for providers with a fused attention kernel)")
    onnx.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    onnx.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import export_onnx, parse_size  # lazy: start-up speed (torch)

    size = None if args.dynamic else parse_size(args.size)
    path = export_onnx(args.model_dir, args.output_dir, dtype=args.dtype, size=size, overwrite=args.overwrite,
                       capture_kernel=args.capture_kernel)
    print(f"wrote {path}")
    return 0
