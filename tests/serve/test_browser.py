"""The Gradio demo in headless Chromium (Debian's `chromium`, driven by Playwright for Python).

Mounted at /demo next to the API (`primedepth serve --demo`): upload a photo, predict, see the
input and colour depth side by side, download the 16-bit PNG and the .npy (the files the CLI
writes), and keep a screenshot under the test's tmp_path. Without a browser the test is
skipped locally and fails under CI=true.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import primedepth

from .helpers import png_bytes, random_image, require, start_server

require("gradio", "the browser demo")
sync_api = require("playwright.sync_api", "the browser test")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As a root user in a sandbox, offline: no setuid sandbox, no GPU, no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = "no Chromium at /usr/bin/chromium: apt-get install -y chromium (Debian's package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_demo_predicts_shows_and_downloads_depth(browser, tiny_model, reference, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(random_image(60, (48, 64))))
    primedepth.predict(str(photo), model=reference, output_dir=tmp_path / "cli", outputs=("png16", "npy"))
    server = start_server(tiny_model, api=True, demo_path="/demo")
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        page.goto(f"{server.url}/demo/", wait_until="domcontentloaded")
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        page.locator("#photo img").first.wait_for(timeout=TIMEOUT_MS)
        page.locator("#predict").click()
        links = page.locator("#downloads a[download]")
        links.nth(1).wait_for(timeout=TIMEOUT_MS)
        shown = page.locator("#depth img")
        assert shown.count() == 2  # the photo and its colour depth, side by side
        assert all(shown.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(2))
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        files = {links.nth(i).get_attribute("download"): links.nth(i) for i in range(links.count())}
        assert {"photo_depth.png", "photo_depth.npy", "photo_points.ply"} <= set(files)
        with page.expect_download(timeout=TIMEOUT_MS) as download:
            files["photo_depth.npy"].click()
        depth = np.load(io.BytesIO(Path(download.value.path()).read_bytes()))
        png16 = page.request.get(files["photo_depth.png"].get_attribute("href")).body()
    finally:
        page.close()
        server.__exit__(None, None, None)
    assert (tmp_path / "demo.png").stat().st_size > 10_000  # the artefact of this test
    np.testing.assert_array_equal(depth, np.load(tmp_path / "cli" / "photo_depth.npy"))
    assert png16 == (tmp_path / "cli" / "photo_depth.png").read_bytes()
