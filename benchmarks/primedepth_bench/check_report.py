"""What the GPU check's parts share: the global time budget and the report they fill.

The budget bounds the whole run: `Budget.check` before a configuration, and an alarm
(`alarm_at_end_of`) that interrupts whatever runs when the time is spent. `guarded` turns a
configuration's failure into a row of the report, so the next configuration still runs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .rounds import describe_failure
from .timing import release_memory


class BudgetSpent(Exception):
    """The global time budget ran out."""


@dataclass
class Budget:
    """The whole run's seconds, counted from the start."""

    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.seconds - (time.perf_counter() - self.started)

    def check(self, needed: float = 0.0) -> None:
        """Raise `BudgetSpent` unless more than `needed` seconds are left."""
        if self.left() <= needed:
            kept = f", {needed:.0f} s kept for the next part" if needed else ""
            raise BudgetSpent(f"time budget spent ({self.seconds:.0f} s{kept})")


@contextmanager
def alarm_at_end_of(budget: Budget) -> Iterator[None]:
    """Raise `BudgetSpent` in the main thread when the budget is spent, even inside a long call
    (a compilation), so the script's time stays bounded. The previous handler comes back after."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise BudgetSpent(f"time budget spent ({budget.seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, budget.left()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class CheckReport:
    """The table's rows and the raw data of every part."""

    rows: list[dict[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, configuration: str, measurement: str, value: str, detail: str = "", status: str = "ok") -> None:
        """One row of the table."""
        self.rows.append({"part": part, "configuration": configuration, "measurement": measurement, "value": value,
                          "detail": detail, "status": status})

    def failed(self, part: str, configuration: str, error: BaseException) -> None:
        """A row for a failure (out of memory, an error, the budget) of one configuration."""
        status = str(error) if isinstance(error, BudgetSpent) else describe_failure(error)
        self.add(part, configuration, "—", "—", status=status)


def guarded(report: CheckReport, part: str, configuration: str, measure: Callable[[], None]) -> None:
    """Run one measurement; a failure becomes a row and the caller goes on (the budget stops all)."""
    try:
        measure()
    except BudgetSpent:
        raise
    except Exception as error:  # noqa: BLE001 - reported in the table; the next measurement runs
        report.failed(part, configuration, error)
        release_memory()
