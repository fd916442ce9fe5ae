"""Synthetic clips with known depth, for measuring temporal stabilisation (tests and benchmarks).

A pinhole camera looks at a textured scene of a floor, a back wall and boxes; each frame is
ray-cast exactly, so the true depth of every pixel is known. Two kinds of clip, as the
consistency protocol of `benchmarks/video_stability.py` uses them:

- `moving_camera_clip`: the camera walks sideways and forwards and turns a little;
- `static_camera_clip`: the camera stands still and one box moves across and towards it.

`simulate_predictions` turns the true inverse depth into what a per-frame affine-invariant
model gives: a random scale and shift per frame, plus smooth and pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAR = 1e6  # "no hit" distance; every ray hits the back wall long before


@dataclass
class Box:
    """An axis-aligned box from `low` to `high` (x right, y down, z forward), with a texture phase."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    phase: float = 0.0


@dataclass
class SyntheticClip:
    """Frames (T, H, W, 3) uint8, true depth (T, H, W) float32 in scene units, and the pixels
    that show the moving object in each frame (all False for a static scene)."""

    frames: np.ndarray
    depth: np.ndarray
    moving: np.ndarray

    @property
    def disparity(self) -> np.ndarray:
        """True inverse depth: what an affine-invariant disparity model predicts up to scale and shift."""
        return (1.0 / self.depth).astype(np.float32)


def _rays(height: int, width: int, yaw: float) -> np.ndarray:
    """(3, H, W) ray directions with camera-z component 1, turned by `yaw` about the y axis."""
    focal = 0.9 * width
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cam = np.stack([(xs + 0.5 - width / 2) / focal, (ys + 0.5 - height / 2) / focal, np.ones_like(xs)])
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.stack([cos * cam[0] + sin * cam[2], cam[1], -sin * cam[0] + cos * cam[2]])


def _plane_hit(origin: np.ndarray, rays: np.ndarray, axis: int, value: float) -> np.ndarray:
    """Ray parameter of the plane coordinate[axis] == value (FAR when behind or parallel)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (value - origin[axis]) / rays[axis]
    return np.where(np.isfinite(t) & (t > 1e-6), t, FAR)


def _box_hit(origin: np.ndarray, rays: np.ndarray, box: Box) -> np.ndarray:
    """Ray parameter of the entry into `box` (slab method; FAR on a miss)."""
    near, far = np.full(rays.shape[1:], -np.inf), np.full(rays.shape[1:], np.inf)
    for axis in range(3):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (box.low[axis] - origin[axis]) / rays[axis]
            t2 = (box.high[axis] - origin[axis]) / rays[axis]
        near = np.maximum(near, np.nan_to_num(np.minimum(t1, t2), nan=-np.inf))
        far = np.minimum(far, np.nan_to_num(np.maximum(t1, t2), nan=np.inf))
    return np.where((near <= far) & (near > 1e-6), near, FAR)


def _texture(points: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """A grey pattern of several frequencies painted on the surfaces: what optical flow tracks."""
    x, y, z = points
    value = 0.5 + 0.2 * np.sin(7.0 * x + phase) * np.sin(6.0 * y + 2 * phase)
    value += 0.15 * np.sin(11.0 * (z + x) + 3 * phase) + 0.1 * np.sin(23.0 * (y - z) + phase)
    return np.clip(value, 0.0, 1.0)


def render(origin: tuple[float, float, float], yaw: float, boxes: list[Box], size: tuple[int, int],
           wall_z: float = 12.0, floor_y: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8, camera-z depth, index of the surface hit: 0 wall, 1 floor, 2.. boxes) of one frame."""
    rays = _rays(*size, yaw)
    start = np.asarray(origin, dtype=np.float64)
    hits = [_plane_hit(start, rays, 2, wall_z), _plane_hit(start, rays, 1, floor_y)]
    hits += [_box_hit(start, rays, box) for box in boxes]
    stacked = np.stack(hits)
    surface = np.argmin(stacked, axis=0)
    t = np.take_along_axis(stacked, surface[None], axis=0)[0]
    points = start[:, None, None] + t * rays
    phases = np.array([0.0, 1.3] + [box.phase for box in boxes])[surface]
    shade = _texture(points, phases)
    tint = np.stack([0.6 + 0.4 * np.cos(phases + k) for k in (0.0, 2.1, 4.2)])
    rgb = np.clip(shade * (0.55 + 0.45 * tint), 0, 1).transpose(1, 2, 0)
    # The rays have camera-z 1, so the ray parameter of the hit is its depth along the camera axis.
    return (rgb * 255).round().astype(np.uint8), t.astype(np.float32), surface


def _scene_boxes(rng: np.random.Generator) -> list[Box]:
    """Static boxes standing on the floor at a range of distances."""
    boxes = []
    for index in range(5):
        x, z = rng.uniform(-3.0, 3.0), rng.uniform(3.5, 10.0)
        half, height = rng.uniform(0.3, 0.8), rng.uniform(0.6, 2.0)
        boxes.append(Box((x - half, 1.5 - height, z - half), (x + half, 1.5, z + half), phase=0.7 * index + 2.0))
    return boxes


def moving_camera_clip(frames: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0,
                       speed: float = 0.06) -> SyntheticClip:
    """A camera walking sideways and forwards through boxes, turning slowly."""
    rng = np.random.default_rng(seed)
    boxes = _scene_boxes(rng)
    rendered = [render((-0.6 + speed * t, 0.0, 0.5 * speed * t), 0.004 * t - 0.04, boxes, size) for t in range(frames)]
    return _clip(rendered, moving_surfaces=())


def static_camera_clip(frames: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0,
                       speed: float = 0.08) -> SyntheticClip:
    """A still camera; the last box moves across the view and comes closer."""
    rng = np.random.default_rng(seed)
    still = _scene_boxes(rng)[:3]
    rendered = []
    for t in range(frames):
        x, z = -2.0 + speed * t, 7.0 - 0.5 * speed * t
        mover = Box((x - 0.5, 0.2, z - 0.5), (x + 0.5, 1.5, z + 0.5), phase=5.0)
        rendered.append(render((0.0, 0.0, 0.0), 0.0, [*still, mover], size))
    return _clip(rendered, moving_surfaces=(2 + len(still),))


def _clip(rendered: list[tuple[np.ndarray, np.ndarray, np.ndarray]], moving_surfaces: tuple[int, ...]) -> SyntheticClip:
    frames = np.stack([rgb for rgb, _, _ in rendered])
    depth = np.stack([d for _, d, _ in rendered])
    moving = np.stack([np.isin(surface, moving_surfaces) for _, _, surface in rendered])
    return SyntheticClip(frames=frames, depth=depth, moving=moving)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """Unit-variance low-frequency noise: a coarse random grid, bilinearly upsampled."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    ys = np.linspace(0, cells, shape[0])
    xs = np.linspace(0, cells, shape[1])
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    field = top * (1 - fy) + bottom * fy
    return field / max(float(field.std()), 1e-12)


def simulate_predictions(disparity: np.ndarray, seed: int = 0, scale_jitter: float = 0.25,
                         shift_jitter: float = 0.15, smooth_noise: float = 0.01,
                         pixel_noise: float = 0.005) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame predictions of a clip's true disparity (T, H, W): `scale * d + shift + noise`.

    Scale is log-normal (sigma `scale_jitter`), shift normal (sigma `shift_jitter` of the clip's
    disparity range); noise sigmas are fractions of that range. Returns (predictions, scales, shifts).
    """
    rng = np.random.default_rng(seed)
    span = float(np.ptp(disparity))
    scales = np.exp(rng.normal(0.0, scale_jitter, len(disparity)))
    shifts = rng.normal(0.0, shift_jitter * span, len(disparity))
    predictions = np.empty(disparity.shape, dtype=np.float32)
    for index, frame in enumerate(disparity):
        noise = smooth_noise * _smooth_noise(rng, frame.shape) + pixel_noise * rng.standard_normal(frame.shape)
        predictions[index] = scales[index] * frame + shifts[index] + span * noise
    return predictions, scales, shifts


# ------------------------------------------------------------------ hard clips, other error model


def occluder_clip(frames: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0) -> SyntheticClip:
    """A camera panning slowly while a near box (about a metre away) crosses the whole view in
    front of everything, covering up to half of it."""
    rng = np.random.default_rng(seed)
    still = _scene_boxes(rng)
    rendered = []
    for t in range(frames):
        x = -2.2 + 4.4 * t / max(frames - 1, 1)
        near = Box((x - 0.45, -0.6, 1.3), (x + 0.45, 1.5, 1.9), phase=4.0)
        rendered.append(render((0.01 * t, 0.0, 0.0), 0.002 * t, [*still, near], size))
    return _clip(rendered, moving_surfaces=(2 + len(still),))


def walk_clip(frames: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0, speed: float = 0.05) -> SyntheticClip:
    """A camera walking forwards and sideways while turning (rotation and translation)."""
    rng = np.random.default_rng(seed)
    boxes = _scene_boxes(rng)
    rendered = [render((-0.4 + 0.6 * speed * t, 0.02 * np.sin(0.5 * t), speed * t), 0.01 * t - 0.1, boxes, size)
                for t in range(frames)]
    return _clip(rendered, moving_surfaces=())


def cut_clip(frames: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0) -> SyntheticClip:
    """Two shots with a hard cut in the middle: a walk through one scene, then a still camera in
    another room (nearer back wall) where a near box crosses the view."""
    first = walk_clip(frames // 2, size, seed)
    rng = np.random.default_rng(seed + 101)
    still = _scene_boxes(rng)[:3]
    rendered = []
    rest = frames - frames // 2
    for t in range(rest):
        x = 2.0 - 4.0 * t / max(rest - 1, 1)
        near = Box((x - 0.4, -0.3, 1.6), (x + 0.4, 1.5, 2.2), phase=3.1)
        rendered.append(render((0.0, -0.3, 0.0), 0.0, [*still, near], size, wall_z=7.0, floor_y=1.2))
    second = _clip(rendered, moving_surfaces=(2 + len(still),))
    return SyntheticClip(np.concatenate([first.frames, second.frames]), np.concatenate([first.depth, second.depth]),
                         np.concatenate([first.moving, second.moving]))


HARD_CLIPS = {"moving object": static_camera_clip, "camera walk": walk_clip, "occluder": occluder_clip, "hard cut": cut_clip}


def _blob(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A round bump of height 1 at a random place, 5..15% of the width in radius."""
    height, width = shape
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.05, 0.15) * width
    ys, xs = np.mgrid[0:height, 0:width]
    return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))


def model_like_predictions(disparity: np.ndarray, seed: int = 0, field: float = 0.02, field_memory: float = 0.9,
                           fixed_field: float = 0.05, blob_rate: float = 0.25, blob_height: float = 0.1,
                           pixel_noise: float = 0.003, scale_jitter: float = 0.2, shift_jitter: float = 0.1,
                           content_driven: bool = True) -> np.ndarray:
    """Per-frame predictions whose errors are NOT one scale and shift plus noise (the form the
    stabilisers assume), so that benchmarks and tests do not grade a method on its own model:

    - a fixed low-frequency multiplicative error field (the model's consistent mistake), and one
      that changes over time (AR(1): `field` standard deviation, `field_memory` correlation from
      one frame to the next);
    - local blobs: at `blob_rate` per frame a bump of +-`blob_height` (relative) appears and stays
      for 2..8 frames;
    - with `content_driven`, the changing field moves on and blobs appear in proportion to how much
      of the view changed since the previous frame (the share of pixels whose true disparity changed
      by over 1%): a model run with one noise draw per clip is deterministic, so frames that barely
      differ get errors that barely differ; without it they change at the full rate on every frame
      (the pessimistic case);
    - the model's own normalisation per frame: its 2nd..98th percentiles become 0..1, so a near
      object entering the view squeezes everything else, then a random scale (log-normal) and
      shift per frame, and pixel noise. All sigmas are fractions of the frame's range.
    Returns (T, H, W) float32.
    """
    rng = np.random.default_rng(seed)
    shape = disparity.shape[1:]
    fixed = fixed_field * _smooth_noise(rng, shape, cells=3)
    varying = field * _smooth_noise(rng, shape, cells=4)
    blobs: list[tuple[np.ndarray, float, int]] = []  # (bump, height, last frame)
    predictions = np.empty(disparity.shape, dtype=np.float32)
    for index, truth in enumerate(disparity):
        change = 1.0
        if index and content_driven:
            with np.errstate(divide="ignore", invalid="ignore"):
                change = float(np.mean(np.abs(truth - disparity[index - 1]) > 0.01 * np.abs(truth)))
        if index:
            memory = field_memory ** change  # the field moves on by the share of the view that changed
            varying = memory * varying + np.sqrt(1 - memory**2) * field * _smooth_noise(rng, shape, cells=4)
        if rng.random() < blob_rate * change:
            blobs.append((_blob(shape, rng), rng.choice([-1.0, 1.0]) * blob_height * rng.uniform(0.5, 1.0),
                          index + int(rng.integers(2, 9))))
        blobs = [blob for blob in blobs if blob[2] > index]
        bumps = sum((height * bump for bump, height, _ in blobs), np.zeros(shape))
        distorted = truth * np.exp(fixed + varying) * (1.0 + bumps)
        low, high = np.percentile(distorted, [2.0, 98.0])
        normalised = (distorted - low) / max(high - low, 1e-12)
        scale, shift = np.exp(rng.normal(0.0, scale_jitter)), rng.normal(0.0, shift_jitter)
        predictions[index] = scale * normalised + shift + pixel_noise * rng.standard_normal(shape)
    return predictions
