"""A known synthetic room, and two independent ways to look at the 3D files written from it.

The room (OpenCV camera frame: x right, y down, z forward): a green floor 1.2 m below the
camera, a blue back wall 8 m away and a red box standing on the floor to the left. A viewer
that opens the files right must show the floor at the bottom, the wall above it and the box
on the left, in the colours of the photo (no 40% grey material, no shading).

- `project_front_view`: numpy, a y-up viewer's front camera (looking down -z) on the vertices;
- `ThreeViewer`: three.js (from npm) in headless Chromium with its own loaders for GLB, PLY
  and OBJ+MTL, framing the object as viewers do (from +z, y up), rendered to PNG.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from primedepth.geometry import Intrinsics

from ..extras import skip_or_fail
from .scenes import Box, Plane, rays

CAMERA = Intrinsics.from_fov(160, 120, 70.0)
FLOOR, WALL, BOX = 1, 2, 3
COLOURS = {FLOOR: (60, 170, 60), WALL: (60, 90, 200), BOX: (210, 50, 40)}
SURFACES = {FLOOR: Plane((0.0, 1.0, 0.0), 1.2), WALL: Plane((0.0, 0.0, 1.0), 8.0),
            BOX: Box((-2.4, 0.1, 3.5), (-1.4, 1.2, 4.5))}


def render_room() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth (H, W), the label of each pixel, and the photo: flat colours per surface."""
    directions = rays(CAMERA)
    hits = np.stack([SURFACES[label].hit(directions) for label in sorted(SURFACES)])
    hits = np.where(hits > 0, hits, np.inf)
    labels = np.argmin(hits, axis=0) + 1
    depth = hits.min(axis=0)
    photo = np.zeros(depth.shape + (3,), dtype=np.uint8)
    for label, colour in COLOURS.items():
        photo[labels == label] = colour
    return depth, labels, photo


def classify(rgb: np.ndarray) -> np.ndarray:
    """The surface label of each colour by its dominant channel (0: background/other)."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    labels = np.zeros(rgb.shape[:-1], dtype=np.int64)
    labels[(g > r + 50) & (g > b + 50)] = FLOOR
    labels[(b > r + 60) & (b > g + 40)] = WALL
    labels[(r > g + 80) & (r > b + 80)] = BOX
    return labels


@dataclass
class Layout:
    """Where each surface shows up in a picture (mean row/column, pixel count)."""

    rows: dict[int, float]
    cols: dict[int, float]
    counts: dict[int, int]
    height: int
    width: int


def layout(labels: np.ndarray) -> Layout:
    """Mean row and column of every labelled surface in an (H, W) label picture."""
    rows, cols, counts = {}, {}, {}
    for label in (FLOOR, WALL, BOX):
        found_rows, found_cols = np.nonzero(labels == label)
        counts[label] = int(found_rows.size)
        if found_rows.size:
            rows[label], cols[label] = float(found_rows.mean()), float(found_cols.mean())
    return Layout(rows, cols, counts, *labels.shape)


def project_front_view(vertices: np.ndarray, colours: np.ndarray, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """Labels seen by a y-up viewer's front camera, framed as `PAGE` frames it: from +z looking
    down -z at the bounding box's centre, 50 degrees vertical field of view, image rows growing
    downwards (so larger y is higher up). The nearest point of a pixel wins."""
    low, high = vertices.min(0), vertices.max(0)
    centre, extent = (low + high) / 2, high - low
    half = max(extent[1], extent[0] * size[0] / size[1]) / 2
    tangent = np.tan(np.radians(25.0))
    eye = np.array([centre[0], centre[1], high[2] + 1.1 * half / tangent])
    relative = vertices - eye
    distance = -relative[:, 2]  # in front of the camera: negative z
    ahead = distance > 1e-6
    focal = size[0] / 2 / tangent
    col = np.rint((size[1] - 1) / 2 + focal * relative[ahead, 0] / distance[ahead]).astype(int)
    row = np.rint((size[0] - 1) / 2 - focal * relative[ahead, 1] / distance[ahead]).astype(int)
    inside = (row >= 0) & (row < size[0]) & (col >= 0) & (col < size[1])
    order = np.argsort(-distance[ahead][inside])  # far first, near overwrite
    picture = np.zeros(size, dtype=np.int64)
    picture[row[inside][order], col[inside][order]] = classify(colours[ahead][inside][order])
    return picture


THREE_VERSION = "0.181.0"  # the three.js release these pages were written for (npm package `three`)
VIEWER_ORIGIN = "http://viewer.invalid"  # answered by Playwright's router: no server, no network
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js",
                                      "three/addons/": "/three/examples/jsm/"}}</script></head>
<body style="margin:0"><canvas id="view" width="320" height="240"></canvas>
<script type="module">
import * as THREE from "three";
import {GLTFLoader} from "three/addons/loaders/GLTFLoader.js";
import {PLYLoader} from "three/addons/loaders/PLYLoader.js";
import {OBJLoader} from "three/addons/loaders/OBJLoader.js";
import {MTLLoader} from "three/addons/loaders/MTLLoader.js";

async function load(url, kind) {
  if (kind === "glb") return (await new GLTFLoader().loadAsync(url)).scene;
  if (kind === "ply") {
    const geometry = await new PLYLoader().loadAsync(url);
    const material = new THREE.PointsMaterial({size: 3, sizeAttenuation: false,
                                               vertexColors: geometry.hasAttribute("color")});
    return new THREE.Points(geometry, material);
  }
  const text = await (await fetch(url)).text();  // an OBJ names its material library itself
  const folder = url.slice(0, url.lastIndexOf("/") + 1);
  const library = text.match(/^mtllib\\s+(.+)$/m);
  const loader = new OBJLoader();
  if (library) {
    const materials = await new MTLLoader().setPath(folder).loadAsync(library[1].trim());
    const textures = new THREE.LoadingManager();  // resolves once the textures it names are loaded
    const loaded = new Promise((resolve, reject) => { textures.onLoad = resolve; textures.onError = reject; });
    materials.setManager(textures);
    materials.preload();
    if (Object.values(materials.materials).some((material) => material.map)) await loaded;
    loader.setMaterials(materials);
  }
  return loader.parse(text);
}

window.renderFile = async (url, kind) => {
  const canvas = document.getElementById("view");
  const renderer = new THREE.WebGLRenderer({canvas, preserveDrawingBuffer: true});
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x000000);
  scene.add(new THREE.AmbientLight(0xffffff, 3.0));
  const object = await load(url, kind);
  scene.add(object);
  const box = new THREE.Box3().setFromObject(object);
  const centre = box.getCenter(new THREE.Vector3()), size = box.getSize(new THREE.Vector3());
  const camera = new THREE.PerspectiveCamera(50, canvas.width / canvas.height, 0.01, 1000);
  const half = Math.max(size.y, size.x / camera.aspect) / 2;
  camera.position.set(centre.x, centre.y, box.max.z + 1.1 * half / Math.tan(THREE.MathUtils.degToRad(25)));
  camera.up.set(0, 1, 0);
  camera.lookAt(centre);
  renderer.render(scene, camera);
  await new Promise(requestAnimationFrame);
  return canvas.toDataURL("image/png");
};
window.viewerReady = true;
</script></body></html>
"""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def install_three(folder: Path) -> Path:
    """The `three` package folder: $PRIMEDEPTH_THREE_DIR if set, else installed with npm into
    `folder` (npm's own cache makes later runs quick); skips (fails under CI) without npm."""
    given = os.environ.get("PRIMEDEPTH_THREE_DIR")
    if given:
        package = Path(given)
        package = package / "node_modules" / "three" if (package / "node_modules").is_dir() else package
        if not (package / "build" / "three.module.js").is_file():
            skip_or_fail(f"PRIMEDEPTH_THREE_DIR={given} holds no three.js build")
        return package
    npm = shutil.which("npm")
    if npm is None:
        skip_or_fail("the 3D viewer test needs npm to install three.js (apt-get install -y npm)")
    command = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error",
               f"three@{THREE_VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        skip_or_fail("npm install three timed out after 300 s")
    package = folder / "node_modules" / "three"
    if done.returncode != 0 or not (package / "build" / "three.module.js").is_file():
        skip_or_fail(f"npm install three@{THREE_VERSION} failed: {done.stderr.strip()[-300:]}")
    return package


class ThreeViewer:
    """One headless Chromium page with three.js; `render` shows one file, returns an RGB array."""

    def __init__(self, browser, three: Path, files: Path) -> None:
        self.page = browser.new_page(viewport={"width": 320, "height": 240})
        self.page.route(f"{VIEWER_ORIGIN}/**", lambda route: self._answer(route, three, files))
        self.page.goto(f"{VIEWER_ORIGIN}/index.html")
        self.page.wait_for_function("window.viewerReady === true", timeout=60_000)

    @staticmethod
    def _answer(route, three: Path, files: Path) -> None:
        """index.html, /three/... from the npm package, /files/... from the test's folder."""
        path = route.request.url[len(VIEWER_ORIGIN):].split("?")[0]
        if path == "/index.html":
            route.fulfill(body=PAGE, content_type="text/html")
            return
        root, prefix = (three, "/three/") if path.startswith("/three/") else (files, "/files/")
        target = (root / path[len(prefix):]).resolve()
        if not path.startswith(prefix) or not target.is_file() or not target.is_relative_to(root.resolve()):
            route.fulfill(status=404, body="not found")
            return
        kind = "text/javascript" if target.suffix == ".js" else "application/octet-stream"
        route.fulfill(body=target.read_bytes(), content_type=kind)

    def render(self, name: str, kind: str) -> np.ndarray:
        """The file `name` of the files folder as the viewer shows it, (240, 320, 3) uint8."""
        url = self.page.evaluate("([url, kind]) => window.renderFile(url, kind)",
                                 [f"{VIEWER_ORIGIN}/files/{name}", kind])
        data = base64.b64decode(url.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as picture:
            return np.asarray(picture.convert("RGB"))

    def close(self) -> None:
        self.page.close()
