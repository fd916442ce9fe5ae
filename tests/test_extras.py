"""The test helpers for optional extras and shared fixtures: skip locally, fail under CI=true."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from . import conftest
from .extras import MARK, require_extra, skip_or_fail
from .fixtures import require_fixture

MISSING = "primedepth_no_such_module_for_tests"
TESTS = Path(__file__).resolve().parent


def test_an_installed_extra_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_extra("json", "serve").dumps([1]) == "[1]"


def test_a_missing_extra_skips_with_the_install_command(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install 'primedepth\[3d\]'") as skipped:
        require_extra(MISSING, "3d", purpose="the GLB writer")
    assert "the GLB writer needs " + MISSING in str(skipped.value)


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_a_missing_extra_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: required"):
        require_extra(MISSING, "ray")


def test_a_missing_fixture_skips_locally_and_fails_under_ci(monkeypatch, tmp_path):
    missing = tmp_path / "official" / "tiny" / "cases.safetensors"
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="PRIMEDEPTH_FIXTURES"):
        require_fixture(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared fixture"):
        require_fixture(missing)
    assert require_fixture(tmp_path) == tmp_path


def test_skip_or_fail_is_the_one_switch(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("reason")


def test_the_mark_is_checked_before_a_test_runs(monkeypatch):
    """`@pytest.mark.requires_extra(module, extra)` (e.g. on a `pytest.param`) goes through the
    same check, from the conftest's setup hook."""
    mark = pytest.mark.requires_extra(MISSING, "video").mark
    item = SimpleNamespace(iter_markers=lambda name: [mark] if name == MARK else [])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"primedepth\[video\]"):
        conftest.pytest_runtest_setup(item)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        conftest.pytest_runtest_setup(item)


def test_no_test_skips_an_extra_silently():
    """`pytest.importorskip` skips even under CI=true; tests use tests/extras.py instead."""
    offenders = [
        path.relative_to(TESTS).as_posix()
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "test_extras.py" and "importorskip(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
