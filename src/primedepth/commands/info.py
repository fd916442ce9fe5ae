"""`primedepth info [MODEL]`: what a model folder holds, or the licences of the models we run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..constants import MODEL_LICENCES
from ..errors import InputError

LICENCE_FILE = "LICENSE-MODEL.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show the components, parameters, dtype, size and licence of a model folder",
        description="Print each component of a PrimeDepth model folder with its class, parameter "
        "count, dtype and size on disk, and the licence the weights are under. Without MODEL, "
        "list the licences of every model the package can download or run.",
    )
    parser.add_argument("model", nargs="?", help="model folder (as written by `primedepth convert`)")
    parser.add_argument("--classes", action="store_true",
                        help="print the 150 segmentation classes (ADE20K names and the colours of NAME_seg.png) as JSON")
    parser.set_defaults(handler=run, loads_models=False)  # no library progress to quiet: no torch import


def _component_rows(folder: Path) -> list[tuple[str, str, int, str, int]]:
    """(name, class, parameters, dtypes, bytes on disk) per component, read from safetensors headers."""
    index = json.loads((folder / "model_index.json").read_text())
    rows = []
    for name, spec in sorted(index.items()):
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        component = folder / name
        files = sorted(component.glob("*.safetensors")) if component.is_dir() else []
        parameters, dtypes = 0, set()
        for file in files:
            for tensor in _safetensors_header(file).values():
                parameters += _numel(tensor["shape"])
                dtypes.add(_DTYPE_NAMES.get(tensor["dtype"], tensor["dtype"].lower()))
        size = sum(f.stat().st_size for f in component.rglob("*") if f.is_file()) if component.is_dir() else 0
        rows.append((name, spec[1], parameters, ",".join(sorted(dtypes)) or "-", size))
    return rows


# safetensors dtype codes -> the names torch users know.
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _safetensors_header(file: Path) -> dict[str, dict]:
    """The tensor entries of a safetensors header (8-byte little-endian length, then JSON):
    read directly, so that `info` imports no torch and stays under a second."""
    try:
        with file.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as error:
        raise InputError(f"{file} is not a readable safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise InputError(f"{file} is not a readable safetensors file (bad header)")
    return {key: value for key, value in header.items() if key != "__metadata__"}


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _print_licences() -> None:
    width = max(len(model) for model in MODEL_LICENCES)
    print(f"{'model':<{width}}  licence")
    for model, licence in MODEL_LICENCES.items():
        print(f"{model:<{width}}  {licence}")


def run(args: argparse.Namespace) -> int:
    if args.classes:
        from ..io.ade20k import ade20k_legend  # lazy: numpy (still no torch)

        print(json.dumps(ade20k_legend(), indent=1))
        return 0
    if args.model is None:
        _print_licences()
        return 0
    folder = Path(args.model)
    if not (folder / "model_index.json").is_file():
        raise InputError(f"{folder} is not a model folder (no model_index.json)")
    rows = _component_rows(folder)
    print(f"{'component':<18} {'class':<24} {'parameters':>14} {'dtype':<10} {'size':>10}")
    for name, cls, parameters, dtypes, size in rows:
        print(f"{name:<18} {cls:<24} {parameters:>14,} {dtypes:<10} {size / 2**20:>8.1f} MB")
    total = sum(r[2] for r in rows), sum(r[4] for r in rows)
    print(f"{'total':<18} {'':<24} {total[0]:>14,} {'':<10} {total[1] / 2**20:>8.1f} MB")
    licence = folder / LICENCE_FILE
    print(f"licence: {licence.read_text().splitlines()[0].lstrip('# ') if licence.is_file() else 'not stated in the folder'}")
    return 0
