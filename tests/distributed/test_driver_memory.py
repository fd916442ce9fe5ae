"""The Ray driver's heap trim (`HeapTrimmer`): trims at most once per interval, and the first
trim comes only after one interval (a short job pays nothing)."""

from __future__ import annotations

import pytest

from tests.extras import require_extra

require_extra("ray", "ray")

from primedepth.distributed import engine  # noqa: E402 - after the extra check


def test_trims_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    now = [100.0]
    monkeypatch.setattr(engine.time, "monotonic", lambda: now[0])
    trimmer = engine.HeapTrimmer(interval_s=10.0)
    if trimmer._trim is None:
        pytest.skip("no malloc_trim here (not glibc)")
    trimmer._trim = calls.append
    assert not trimmer.maybe_trim()  # not before one interval
    now[0] += 10.5
    assert trimmer.maybe_trim() and calls == [0]
    now[0] += 3.0
    assert not trimmer.maybe_trim() and calls == [0]
    now[0] += 8.0
    assert trimmer.maybe_trim() and calls == [0, 0]


def test_real_trim_runs() -> None:
    trimmer = engine.HeapTrimmer(interval_s=0.0)
    assert trimmer.maybe_trim() == (trimmer._trim is not None)
