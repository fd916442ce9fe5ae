"""`primedepth predict INPUT... [-o OUT_DIR]`: depth maps for images, folders, lists and videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..constants import (
    BLIP2_MODEL_ID,
    DEFAULT_ENSEMBLE,
    DEFAULT_MAX_SIZE,
    DEFAULT_SEED,
    ENSEMBLE_MEMBERS,
    OFFICIAL_REPO_ID,
    model_licence,
)
from ..devices import DEVICE_CHOICES, DTYPE_CHOICES
from ..errors import InputError
from ..geometry.align import DEFAULT_MAX_DEPTH, DEFAULT_MIN_DEPTH
from ..geometry.intrinsics import DEFAULT_FOV_DEG, parse_intrinsics
from ..geometry.frames import DEFAULT_FRAME, FRAMES
from ..geometry.mesh import DEFAULT_MAX_ANGLE_DEG, DEFAULT_MESH_MAX_FACES, DEFAULT_MESH_MAX_SIZE
from ..geometry.outputs import DEFAULT_PSEUDO_FAR, DEFAULT_PSEUDO_NEAR, GeometryOptions
from ..io.outputs import ALL_OUTPUT_SUFFIXES, DEFAULT_COLORMAP, DEFAULT_OUTPUTS

DEFAULT_OUTPUT_DIR = "primedepth_output"

DESCRIPTION = """\
Predict depth for images and videos. The result is affine-invariant inverse depth:
larger values are closer, and scale and shift are unknown (align to ground truth for metres).

Outputs mirror the input tree inside OUT_DIR, e.g. photos/a/b.jpg given as the folder
'photos' gives OUT_DIR/a/b_depth.png. Existing outputs are never overwritten (unless
--overwrite): re-running the same command skips finished files and resumes.
"""

EPILOG = f"""\
output kinds (--outputs):
  png16   NAME_depth.png        16-bit PNG, min/max normalised; the PNG text chunks depth_min
                                and depth_max give raw = depth_min + value/65535 * (depth_max -
                                depth_min) (primedepth.io.read_depth_png16 does this)
  npy     NAME_depth.npy        float32 raw prediction
  color   NAME_depth_color.png  colourised with --colormap (default Spectral_r: near is red, as
                                Marigold and Depth Anything show it; Spectral: the official look)
  seg     NAME_seg.png          segmentation labels (palette PNG), same as --segmentation
  video   NAME_depth.mp4        colourised depth video, for video inputs; their frames get
                                the other outputs in NAME_frames/
  ply     NAME_points.ply       coloured point cloud, binary (images; metres with --align-to, else
                                a relative shape that assumes --far/--near, said in the file)
  glb/obj NAME_mesh.glb/.obj    textured mesh cut at depth discontinuities, at most
                                --mesh-max-faces triangles (glb: 3d extra; obj: with NAME_mesh.mtl
                                and NAME_mesh_texture.png). Frames: y up, camera looking down -z
                                (glTF; PLY/OBJ too unless --frame opencv), so viewers open them upright
  normals NAME_normals.png      surface normals, (n + 1) / 2 colour coding
  metric  NAME_depth_m.npy      float32 metres (needs --align-to); metric_png16: NAME_depth_mm.png

examples:
  primedepth predict photo.jpg
  primedepth predict photos/ --recursive -o depth/ --outputs png16,npy
  primedepth predict "shots/*.png" list.txt clip.mp4 --batch-size 4 --dtype bf16
  primedepth predict photos/ --model ./primedepth-model --colormap magma --seed 0
  primedepth predict photos/ --ensemble depth-anything-large -o depth_ensemble/

ensemble (--ensemble): the paper's best model, the pixel-wise average of PrimeDepth and
Depth Anything (V1 Large by default, as in the paper; V2 Small/Base/Large on request). Without ground truth, Depth Anything's disparity is first aligned to
PrimeDepth's by least squares; every output then holds the ensemble, and the depth PNGs
say so in their 'depth_ensemble' text chunk. Use a fresh OUT_DIR (or --overwrite) when a
folder already holds PrimeDepth-only outputs: existing outputs are never recomputed.

exit status: 0 if every input succeeded, 1 if any failed, 2 for bad arguments or inputs,
3 when the weights are neither local nor downloadable, 130 on Ctrl-C, 143 on SIGTERM
(the file being written is removed; a re-run resumes).
default model: {OFFICIAL_REPO_ID} (downloaded once, then cached).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="depth maps for images, folders, glob patterns, list files and videos",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image or video file, folder, glob pattern (quote it) or .txt file of paths",
    )
    parser.add_argument(
        "-o", "--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="OUT_DIR",
        help=f"where outputs go (default: ./{DEFAULT_OUTPUT_DIR})",
    )
    _add_input_options(parser.add_argument_group("inputs"))
    _add_model_options(parser.add_argument_group("model"))
    _add_output_options(parser.add_argument_group("outputs"))
    _add_geometry_options(parser.add_argument_group("3D and metric depth (outputs ply, glb, obj, normals, metric, metric_png16)"))
    _add_engine_options(parser.add_argument_group("engine"))
    _add_video_options(parser.add_argument_group("videos (temporal consistency)"))
    parser.set_defaults(handler=run)


ENGINES = ("local", "ray")


def _add_geometry_options(group: argparse._ArgumentGroup) -> None:
    camera = group.add_mutually_exclusive_group()
    camera.add_argument("--fov", type=float, metavar="DEGREES",
                        help="horizontal field of view of the camera (default: EXIF focal length, else "
                        f"{DEFAULT_FOV_DEG:g} degrees with a warning)")
    camera.add_argument("--intrinsics", metavar="FX,FY,CX,CY", help="pinhole intrinsics in pixels of the input image")
    group.add_argument("--align-to", metavar="PATH",
                       help="known metric depths to fit scale and shift to: 16-bit PNG in mm, .npy/.exr in m "
                       "(0/NaN unknown), CSV/JSON of x,y,depth_m, a COLMAP model, or a folder with one per image; "
                       "needed for metric outputs, else 3D outputs are a relative shape (see --near/--far)")
    group.add_argument("--min-depth", type=float, default=DEFAULT_MIN_DEPTH, metavar="M",
                       help=f"aligned depths are clamped at this many metres (default {DEFAULT_MIN_DEPTH:g})")
    group.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH, metavar="M",
                       help=f"pixels beyond this (or beyond infinity) are invalid (default {DEFAULT_MAX_DEPTH:g})")
    group.add_argument("--mesh-max-angle", type=float, default=DEFAULT_MAX_ANGLE_DEG, metavar="DEGREES",
                       help="drop mesh triangles seen more obliquely than this: cuts at depth jumps "
                       f"(default {DEFAULT_MAX_ANGLE_DEG:g})")
    group.add_argument("--mesh-size", type=int, default=DEFAULT_MESH_MAX_SIZE, metavar="N",
                       help=f"mesh grid samples along the longer side, 0 = every pixel (default {DEFAULT_MESH_MAX_SIZE})")
    group.add_argument("--ply-ascii", action="store_true", help="write ASCII PLY instead of binary")
    group.add_argument("--mesh-max-faces", type=int, default=DEFAULT_MESH_MAX_FACES, metavar="N",
                       help="thin the mesh grid evenly to at most N triangles, 0 = no limit "
                       f"(default {DEFAULT_MESH_MAX_FACES}: opens quickly in Blender, MeshLab and browsers)")
    group.add_argument("--frame", choices=FRAMES, default=DEFAULT_FRAME,
                       help="coordinate frame of PLY and OBJ files: opengl = x right, y up, camera looking "
                       "down -z (opens upright in MeshLab, Open3D, Blender's OBJ import); opencv = x right, "
                       "y down, z forward (the camera frame of OpenCV/COLMAP). GLB is always glTF's y up "
                       f"(default {DEFAULT_FRAME})")
    group.add_argument("--near", type=float, default=DEFAULT_PSEUDO_NEAR, metavar="D",
                       help="without --align-to the shift of the prediction is unknown, so 3D outputs assume "
                       "the nearest pixel at depth D and the farthest at --far: the far:near ratio shapes the "
                       f"scene, the unit is arbitrary (default {DEFAULT_PSEUDO_NEAR:g})")
    group.add_argument("--far", type=float, default=DEFAULT_PSEUDO_FAR, metavar="D",
                       help=f"the farthest pixel's assumed depth without --align-to (default {DEFAULT_PSEUDO_FAR:g}: "
                       "a 10:1 room-sized scene; use more for landscapes)")


def geometry_options(args: argparse.Namespace) -> GeometryOptions:
    """The 3D options of the command line as the API takes them."""
    return GeometryOptions(
        fov=args.fov,
        intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics else None,
        align_to=Path(args.align_to) if args.align_to else None,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        mesh_max_angle=args.mesh_max_angle,
        mesh_max_size=args.mesh_size or None,
        mesh_max_faces=args.mesh_max_faces or None,
        ply_binary=not args.ply_ascii,
        pseudo_near=args.near,
        pseudo_far=args.far,
        frame=args.frame,
    )


def _add_engine_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: this process (default); ray: Ray Data actors, one model each "
                       "(pip install 'primedepth[ray]')")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="Ray cluster to join ('auto' for the running one; default: start a local instance)")
    group.add_argument("--actors", type=int, metavar="N", help="model actors for --engine ray (default: 1)")
    group.add_argument("--gpus-per-actor", type=float, default=None, metavar="G",
                       help="GPUs each actor holds for --engine ray (default: 1 when GPUs exist, else 0)")


def _add_video_options(group: argparse._ArgumentGroup) -> None:
    """How the frames of a video are made consistent (primedepth.video); each clip is always
    predicted with one prompt ('auto': one caption, of the middle frame) and one noise draw."""
    from ..video.stabilizer import (  # light: numpy only
        DEFAULT_SMOOTHING,
        DEFAULT_WINDOW,
        TEMPORAL_MODES,
    )
    from ..video.temporal_filter import DEFAULT_RADIUS  # light: numpy only

    group.add_argument("--temporal", choices=TEMPORAL_MODES, default=None,
                       help="align each frame's depth to the clip by a scale and shift and normalise the clip "
                       "once: 'global' (default, best measured) solves all frames' scales and shifts jointly from "
                       "flow-checked correspondences (same-pixel without primedepth[video]), shot by shot, after the "
                       "whole clip is predicted; 'flow' and 'align' fit each frame to the previous "
                       "--temporal-window frames (optical flow / same pixel); 'none' treats frames on their own")
    group.add_argument("--temporal-window", type=int, default=DEFAULT_WINDOW, metavar="N",
                       help=f"previous frames each frame is aligned to by 'align' and 'flow' (default: {DEFAULT_WINDOW})")
    group.add_argument("--temporal-filter", type=int, default=DEFAULT_RADIUS, metavar="N",
                       help="'global' only: average the aligned depth over N frames before and N after, along "
                       "verified correspondences where the depth agrees (removes per-frame error no scale and "
                       f"shift can; the 16-bit PNGs then hold filtered values); 0 = off (default: {DEFAULT_RADIUS})")
    group.add_argument("--temporal-smoothing", type=float, default=DEFAULT_SMOOTHING, metavar="S",
                       help="weight of the history in the colour frames and the depth video, 0 to <1: "
                       "averages out per-frame noise where the depth did not change; the 16-bit PNGs keep "
                       "each frame's aligned values ('global' also filters them over time, 4 frames each side, "
                       f"where the depth agrees; the .npy outputs keep the raw prediction) (default: {DEFAULT_SMOOTHING})")


def _add_input_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("-r", "--recursive", action="store_true",
                       help="descend into sub-folders of folder inputs (and let ** match in patterns)")
    group.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PIXELS",
                       help="downscale images whose longer side exceeds this before prediction; "
                       "depth is returned at the input size "
                       f"(default: {DEFAULT_MAX_SIZE}, as the official model)")
    group.add_argument("--input-column", metavar="COLUMN",
                       help="--engine ray: inputs that are not images or videos are Parquet datasets whose COLUMN "
                       "holds encoded images (default: 'bytes', for inputs ending in .parquet)")


def _add_model_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--model", default=OFFICIAL_REPO_ID, metavar="MODEL",
                       help="hub id, converted model folder or official .ckpt (default: %(default)s)")
    group.add_argument("--device", default="auto", metavar="{" + ",".join(DEVICE_CHOICES) + "}",
                       help="where to run; auto picks cuda, then mps, then cpu (default: auto)")
    group.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES,
                       help="weights precision; bf16/fp16 halve memory on GPUs (default: fp32)")
    group.add_argument("--offload", action="store_true",
                       help="keep the weights in CPU memory and move each model to the GPU only while it "
                       "runs: for GPUs with little memory, slower (CUDA only)")
    group.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                       help="torch (default), or onnx: --model is a folder written by `primedepth export onnx`, run "
                       "on ONNX Runtime (TensorRT, CUDA or CPU provider, whichever is installed; pip install "
                       "'primedepth[onnx]')")
    group.add_argument("-b", "--batch-size", type=_batch_size, default="auto", metavar="N",
                       help="images per forward pass, or 'auto': 1 on the CPU (batching does not speed it up), "
                       "on a GPU as many as fit in its free memory, at most 8; a batch that runs out of GPU "
                       "memory is split (default: auto)")
    prompts = group.add_mutually_exclusive_group()
    prompts.add_argument("--prompt", metavar="TEXT",
                         help="text prompt for every image; 'auto' captions each image with BLIP-2 "
                         "(default: the model's default prompt)")
    prompts.add_argument("--prompt-embeds", metavar="FILE",
                         help="precomputed (1, 77, D) conditioning (.safetensors, .pt or .npy): for model folders "
                         "converted without a text encoder")
    prompts.add_argument("--caption", action="store_const", const="auto", dest="prompt",
                         help="caption each image with BLIP-2 as the official code (same as --prompt auto; "
                         "downloads and runs a large captioning model)")
    group.add_argument("--seed", type=_seed, default=DEFAULT_SEED, metavar="N",
                       help=f"seed of the single-step noise; a re-run or resumed job gives the same depth "
                       f"(default: {DEFAULT_SEED}; 'random' draws fresh noise each run, as the official code)")
    _add_ensemble_options(group)


def _add_ensemble_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--ensemble", choices=tuple(ENSEMBLE_MEMBERS),
                       help="average PrimeDepth with this model, aligned to it by least squares "
                       f"(same device and dtype; the paper's row: {DEFAULT_ENSEMBLE}; "
                       "V2 base/large are CC-BY-NC-4.0, non-commercial)")
    group.add_argument("--ensemble-model", metavar="PATH_OR_ID",
                       help="hub id or local folder of Depth Anything weights (V1 or V2) for the ensemble; "
                       f"implies --ensemble (default: {ENSEMBLE_MEMBERS[DEFAULT_ENSEMBLE]})")


def _add_output_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--outputs", type=_output_list, default=DEFAULT_OUTPUTS, metavar="KINDS",
                       help="comma-separated output kinds: "
                       f"{', '.join(ALL_OUTPUT_SUFFIXES)}, parquet (--engine ray: one Parquet dataset of depth arrays "
                       f"instead of files) (default: {','.join(DEFAULT_OUTPUTS)}; see below)")
    group.add_argument("--segmentation", action="store_true",
                       help="also write the segmentation head's labels (NAME_seg.png)")
    group.add_argument("--colormap", default=DEFAULT_COLORMAP, metavar="NAME",
                       help=f"matplotlib colormap of the color outputs (default: {DEFAULT_COLORMAP})")
    group.add_argument("--overwrite", action="store_true",
                       help="recompute and replace existing outputs instead of skipping them")
    group.add_argument("--fail-fast", action="store_true",
                       help="stop at the first input that fails (default: report it and go on)")


def _batch_size(text: str) -> int | str:
    """argparse type: 'auto' or a whole number (the job checks its range)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a whole number") from None


def _seed(text: str) -> int | None:
    """argparse type: a whole number, or 'random' (None: fresh noise)."""
    if text == "random":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a whole number nor 'random'") from None


def _output_list(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated list (the job checks the kinds)."""
    return tuple(dict.fromkeys(kind.strip() for kind in text.split(",") if kind.strip())) or (text,)


def _job_options(args: argparse.Namespace, outputs: tuple[str, ...]) -> Any:
    """The command line's job as the API takes it (the API checks every value)."""
    from ..engine import JobOptions  # lazy: start-up speed (torch, diffusers)
    from ..text.encoder import read_prompt_embeds

    return JobOptions(
        output_dir=Path(args.output_dir), outputs=outputs, colormap=args.colormap, batch_size=args.batch_size,
        max_size=args.max_size, prompt=args.prompt, seed=args.seed, segmentation=args.segmentation,
        overwrite=args.overwrite, fail_fast=args.fail_fast, keep_results=False, progress=True,
        ensemble=args.ensemble_model or args.ensemble, model_name=args.model, geometry=geometry_options(args),
        prompt_embeds=read_prompt_embeds(args.prompt_embeds) if args.prompt_embeds else None,
        temporal=args.temporal, temporal_window=args.temporal_window, temporal_smoothing=args.temporal_smoothing,
        temporal_filter=args.temporal_filter,
    )


def _run_on_ray(args: argparse.Namespace, options: Any) -> int:
    """--engine ray: the Ray engine collects the inputs itself (URIs, Parquet), prepares the output
    folder and writes the job record."""
    from ..distributed import run_ray_job  # lazy: ray is an optional extra

    for line in licence_notes(args):
        print(line, file=sys.stderr)
    summary = run_ray_job(None, args, options)
    print(summary.format(args.output_dir), file=sys.stderr)
    return 0 if summary.ok else 1


def run(args: argparse.Namespace) -> int:
    """Run the job; exit status 1 if any input failed."""
    from ..engine import (  # lazy: start-up speed
        collect_items,
        prepare_output_dir,
        run_job,
        write_job_record,
    )
    from ..loading import load_pipeline

    outputs = tuple(kind for kind in args.outputs if kind != "parquet")
    if len(outputs) < len(args.outputs) and args.engine != "ray":
        raise InputError("--outputs parquet writes a Parquet dataset with --engine ray; the local engine writes files")
    options = _job_options(args, outputs)
    if args.engine == "ray":
        return _run_on_ray(args, options)
    output_dir = Path(args.output_dir)
    items = collect_items(args.inputs, recursive=args.recursive, output_dir=output_dir)
    prepare_output_dir(options, items)
    _announce(items, output_dir)
    for line in licence_notes(args):
        print(line, file=sys.stderr)
    summary = run_job(items, lambda: load_pipeline(args.model, args.device, args.dtype, args.offload,
                                                   runtime=getattr(args, "runtime", "torch")), options)
    write_job_record(options, summary)
    print(summary.format(output_dir), file=sys.stderr)
    return 0 if summary.ok else 1


def licence_notes(args: argparse.Namespace) -> list[str]:
    """One line per model the job runs, with the licence of its weights (printed once per job)."""
    folder_licence = Path(args.model) / "LICENSE-MODEL.md"
    if folder_licence.is_file():
        model = f"{args.model}: {folder_licence.read_text(encoding='utf-8').splitlines()[0].lstrip('# ')}"
    else:
        model = f"{args.model}: {model_licence(args.model)}"
    lines = [f"licence of {model}"]
    member = args.ensemble_model or args.ensemble
    if member:
        source = ENSEMBLE_MEMBERS.get(member, member)
        lines.append(f"licence of {source}: {model_licence(source)}")
    default_captions = args.prompt is None and args.prompt_embeds is None and args.model == OFFICIAL_REPO_ID
    if args.prompt == "auto" or default_captions:
        lines.append(f"licence of {BLIP2_MODEL_ID} (captions): {model_licence(BLIP2_MODEL_ID)}")
    return lines


def _announce(items: list, output_dir: Path) -> None:
    """One line on what is about to happen."""
    videos = sum(item.kind == "video" for item in items)
    images = len(items) - videos
    parts = [f"{images} image{'s' * (images != 1)}"]
    if videos:
        parts.append(f"{videos} video{'s' * (videos != 1)}")
    print(f"primedepth predict: {' and '.join(parts)} -> {output_dir}", file=sys.stderr)
