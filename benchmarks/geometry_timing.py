"""How long metric alignment and 3D writing take for a 12 MP image, and how robust the fit is.

Builds a 4000 x 3000 synthetic scene (a sphere before a wall: the geometry tests' scene from
`primedepth.testing`, at full size), an affine-distorted noisy prediction of it and known
depths, then times each step of `primedepth.geometry` and prints two markdown tables:

1. timings (median of --repeats runs): alignment with 1,000 points and with a LiDAR-like
   256 x 192 map (49k points), both methods; unprojection; PLY (binary, all 12 M points);
   GLB and OBJ meshes at the default grid size (1024 on the longer side) and GLB at 2048;
   normals; the metric .npy and 16-bit PNG;
2. robustness: scale/shift error and median relative depth error of RANSAC and Huber at
   0/20/40% outliers, symmetric and one-sided (the measurement behind the default method).

    python benchmarks/geometry_timing.py              # 12 MP, about a minute on 2 cores
    python benchmarks/geometry_timing.py --megapixels 1 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from primedepth.geometry import (
    Intrinsics, SparseDepth, align_to_sparse, normals_from_depth, save_mesh, save_metric_npy,
    save_metric_png16, save_point_cloud, sparse_from_map, unproject,
)
from primedepth.testing import SCENES, affine_prediction, colours, known_depths, render

SCALE, SHIFT = 0.4, 0.12


def timed(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time in seconds of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def scene(megapixels: float) -> tuple[Intrinsics, np.ndarray, np.ndarray, np.ndarray]:
    """Camera, true depth, prediction and colours of a 4:3 image of about `megapixels`."""
    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    height = width * 3 // 4
    camera = Intrinsics.from_fov(width, height, 60.0)
    depth, _ = render(SCENES["sphere_before_wall"], camera)
    return camera, depth, affine_prediction(depth, SCALE, SHIFT, noise=0.002), colours(depth.shape)


def lidar_map(depth: np.ndarray) -> SparseDepth:
    """A 256 x 192 depth map of the scene, as a phone's LiDAR gives, mapped onto the image."""
    rows = np.linspace(0, depth.shape[0] - 1, 192).astype(int)
    cols = np.linspace(0, depth.shape[1] - 1, 256).astype(int)
    return sparse_from_map(depth[np.ix_(rows, cols)], depth.shape, "lidar")


def timing_rows(megapixels: float, repeats: int, folder: Path) -> list[tuple[str, float, str]]:
    """(step, seconds, note) for every timed step."""
    camera, depth, prediction, rgb = scene(megapixels)
    rows = []
    few, dense = known_depths(depth, 1000, 0.2, True), lidar_map(depth)
    for method in ("ransac", "huber"):
        for label, sparse in (("1,000 points", few), (f"{dense.count:,} points (LiDAR-like)", dense)):
            seconds, result = timed(lambda: align_to_sparse(prediction, sparse, method=method), repeats)
            rows.append((f"align_to_sparse {method}, {label}", seconds, f"scale error {result.scale / SCALE - 1:+.3%}"))
    seconds, points = timed(lambda: unproject(depth, camera), repeats)
    rows.append(("unproject", seconds, f"{depth.size / 1e6:.1f} M points"))
    seconds, count = timed(lambda: save_point_cloud(folder / "p.ply", points, rgb), repeats)
    rows.append(("save_point_cloud PLY binary", seconds, f"{(folder / 'p.ply').stat().st_size / 1e6:.0f} MB"))
    for name, size in (("m.glb", 1024), ("m2048.glb", 2048), ("m.obj", 1024)):
        seconds, mesh = timed(lambda: save_mesh(folder / name, depth, rgb, camera, max_size=size, max_faces=None), repeats)
        rows.append((f"save_mesh {name[-3:].upper()}, grid {size}", seconds,
                     f"{mesh.faces.shape[0] / 1e6:.2f} M faces, {(folder / name).stat().st_size / 1e6:.0f} MB"))
    seconds, _ = timed(lambda: normals_from_depth(depth, camera), repeats)
    rows.append(("normals_from_depth", seconds, ""))
    seconds, _ = timed(lambda: save_metric_npy(folder / "d.npy", depth), repeats)
    rows.append(("save_metric_npy", seconds, ""))
    seconds, _ = timed(lambda: save_metric_png16(folder / "d.png", depth), repeats)
    rows.append(("save_metric_png16", seconds, ""))
    return rows


def robustness_rows() -> list[tuple[str, ...]]:
    """Fit errors of both methods on a 0.3 MP scene with known truth."""
    _, depth, prediction, _ = scene(0.3)
    rows = []
    for outliers in (0.0, 0.2, 0.4):
        for one_sided in (False, True):
            sparse = known_depths(depth, 500, outliers, one_sided, seed=2)
            for method in ("ransac", "huber"):
                result = align_to_sparse(prediction, sparse, method=method)
                error = np.median(np.abs(result.depth_m - depth) / depth)
                rows.append((f"{outliers:.0%}", "one-sided" if one_sided else "symmetric", method,
                             f"{result.scale / SCALE - 1:+.3%}", f"{result.shift / SHIFT - 1:+.3%}", f"{error:.3%}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = timing_rows(args.megapixels, args.repeats, Path(folder))
    print(f"\n### primedepth.geometry timings, {args.megapixels:g} MP (median of {args.repeats})\n")
    print("| step | seconds | note |\n|---|---:|---|")
    for step, seconds, note in rows:
        print(f"| {step} | {seconds:.3f} | {note} |")
    print("\n### Alignment robustness (500 known depths, 0.3 MP, noise 0.2% of the range)\n")
    print("| outliers | kind | method | scale error | shift error | median depth error |\n|---|---|---|---:|---:|---:|")
    for row in robustness_rows():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
