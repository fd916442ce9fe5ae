"""The Gradio demo in headless Chromium (Debian's `chromium`, driven by Playwright for Python).

Mounted at /demo next to the API (`primedepth serve --demo`): upload a photo, predict, see the
input and colour depth side by side, download the 16-bit PNG and the .npy (the files the CLI
writes), and keep a screenshot under the test's tmp_path. With an API key, the browser is sent
to the login page: without the key no prediction is possible, after entering it the demo works.
Without a browser the tests are skipped locally and fail under CI=true.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

import primedepth

from ..extras import skip_or_fail
from .helpers import png_bytes, random_image, require, start_server

require("gradio", "the browser demo")
sync_api = require("playwright.sync_api", "the browser test", extra="test")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As a root user in a sandbox, offline: no setuid sandbox, no GPU, no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        skip_or_fail("no Chromium at /usr/bin/chromium: apt-get install -y chromium (Debian's package)")
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


def test_a_keyed_demo_needs_the_key_typed_into_the_login_page(browser, tiny_model, tmp_path):
    key = "browser-key-0123456789abcdef"
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(random_image(61, (48, 64))))
    server = start_server(tiny_model, api=True, demo_path="/demo", api_key=key)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{server.url}/demo/", wait_until="domcontentloaded")
        assert page.url.startswith(f"{server.url}/login")  # no demo without the key
        assert page.request.get(f"{server.url}/demo/config").status == 401
        upload = page.request.post(f"{server.url}/demo/gradio_api/upload",
                                   multipart={"files": {"name": "p.png", "mimeType": "image/png", "buffer": photo.read_bytes()}})
        join = page.request.post(f"{server.url}/demo/gradio_api/queue/join", data={"data": [], "fn_index": 0})
        assert upload.status == 401 and join.status == 401  # nor any prediction through Gradio's API
        page.fill("#key", "not-the-key")
        page.click("#sign-in")
        assert "wrong key" in page.content() and page.request.get(f"{server.url}/demo/config").status == 401
        page.fill("#key", key)
        page.click("#sign-in")
        page.wait_for_url(f"{server.url}/demo/", timeout=TIMEOUT_MS)
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        page.locator("#photo img").first.wait_for(timeout=TIMEOUT_MS)
        page.locator("#predict").click()
        links = page.locator("#downloads a[download]")
        links.nth(1).wait_for(timeout=TIMEOUT_MS)
        names = {links.nth(i).get_attribute("download") for i in range(links.count())}
        npy = page.request.get(next(links.nth(i).get_attribute("href") for i in range(links.count())
                                    if links.nth(i).get_attribute("download") == "photo_depth.npy"))
        assert npy.status == 200 and np.load(io.BytesIO(npy.body())).shape == (48, 64)
        cookies = page.context.cookies()
    finally:
        page.close()
        server.__exit__(None, None, None)
    assert {"photo_depth.png", "photo_depth.npy"} <= names
    [session] = [cookie for cookie in cookies if cookie["name"] == "primedepth_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and key not in session["value"]
