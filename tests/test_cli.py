"""The command line's own behaviour: help without heavy imports, library progress bars only with --verbose."""

from __future__ import annotations

import subprocess
import sys

import pytest

from primedepth import loading
from primedepth.cli import main


@pytest.mark.parametrize("flags, quiet", [([], True), (["--verbose"], False)])
def test_library_progress_bars_are_silenced_unless_verbose(monkeypatch, capsys, flags, quiet):
    calls = []
    monkeypatch.setattr(loading, "quiet_library_progress", lambda: calls.append("quiet"))
    assert main([*flags, "convert", "missing.ckpt", "out"]) == 2  # any command: it fails on the path
    assert calls == (["quiet"] if quiet else [])
    assert "checkpoint not found" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = "import sys; from primedepth.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
