"""The server writes no temporary file per request: uploads are decoded and answers encoded in
memory (`serve.uploads`, `serve.encoding`), through the package's own readers and writers.

Every file or folder created under TMPDIR while 20 requests are answered is counted with an
audit hook (it sees files that are made and removed again, which a listing would miss).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from .helpers import http, png_bytes, random_image, start_server

REQUESTS = 20
KINDS = ("png16", "npy", "color", "png16,color", "npy,color,seg")


class _CreatedUnder:
    """Counts files opened for writing and folders made below `root` while `active`."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.active = False
        self.created: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event not in ("open", "os.mkdir"):
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(path)
        writing = event == "os.mkdir" or (isinstance(args[1], str) and any(c in args[1] for c in "wax+")) or (
            isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and os.path.abspath(path).startswith(self.root):
            self.created.append(path)


_HOOK: _CreatedUnder | None = None


def _hook(root: Path) -> _CreatedUnder:
    """One audit hook per process (they cannot be removed), pointed at this test's folder."""
    global _HOOK
    if _HOOK is None:
        _HOOK = _CreatedUnder(root)
        sys.addaudithook(_HOOK)
    _HOOK.root, _HOOK.created = str(root), []
    return _HOOK


def test_twenty_requests_create_no_file_under_tmpdir(tiny_model, tmp_path, monkeypatch):
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    server = start_server(tiny_model, batch_size=2)
    hook = _hook(scratch)
    try:
        hook.active = True
        for index in range(REQUESTS):
            kinds = KINDS[index % len(KINDS)]
            files = [("image", (f"photo {index}.png", png_bytes(random_image(index)), "image/png"))]
            answer = http.post(f"{server.url}/v1/depth", files=files, data={"outputs": kinds}, timeout=60)
            assert answer.status_code == 200, answer.text
    finally:
        hook.active = False
        server.__exit__(None, None, None)
    assert hook.created == []
    assert sorted(os.listdir(scratch)) == []


def test_the_hook_sees_a_temporary_file(tmp_path, monkeypatch):
    """The counter is not blind: a TemporaryDirectory with a file in it is seen."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    hook = _hook(scratch)
    hook.active = True
    try:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "x").write_bytes(b"1")
    finally:
        hook.active = False
    assert len(hook.created) == 2


@pytest.fixture(autouse=True)
def _deactivate_hook():
    yield
    if _HOOK is not None:
        _HOOK.active = False
