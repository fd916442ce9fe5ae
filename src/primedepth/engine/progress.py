"""Progress of a job on stderr: a bar on a terminal, a plain line every few seconds elsewhere
(logs, CI, pipes), and each distinct warning once per job."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

__all__ = ["Progress", "PLAIN_EVERY_S"]

PLAIN_EVERY_S = 10.0  # seconds between plain progress lines when stderr is not a terminal


class Progress:
    """What the runner reports through: `update`, `write`, `warn` (once per message), `close`."""

    def __init__(self, total: int | None, enabled: bool, every_s: float | None = None, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        terminal = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        # Shown only on a terminal, with a label saying whose bar it is.
        self.bar = tqdm(total=total, desc="primedepth predict", unit="img", dynamic_ncols=True,
                        file=self.stream, disable=not terminal)
        self.plain = enabled and not terminal
        self.total, self.count = total, 0
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.started = self.last = time.monotonic()
        self.warned: set[str] = set()

    def update(self, count: int = 1) -> None:
        self.bar.update(count)
        self.count += count
        now = time.monotonic()
        if self.plain and count and now - self.last >= self.every_s:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            rate = self.count / max(now - self.started, 1e-9)
            print(f"primedepth predict: {self.count}{of} images and frames ({rate:.2f}/s)", file=self.stream,
                  flush=True)

    def write(self, message: str, file: Any = None) -> None:
        """A message that does not break the bar."""
        if self.enabled:
            self.bar.write(message, file=self.stream)

    def warn(self, label: str, message: str) -> bool:
        """A warning, shown once per job for the same message (the first input that had it is
        named); True when it was new."""
        if message in self.warned:
            return False
        self.warned.add(message)
        self.write(f"warning: {label}: {message}")
        return True

    def close(self) -> None:
        self.bar.close()
