"""A dependency-free progress bar on stderr for long work (conversion, calibration, evaluation)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    """Counts steps of a task; redraws one line on a terminal, prints a few lines otherwise."""

    def __init__(self, total: int, description: str, stream=None, enabled: bool = True) -> None:
        self.total = max(int(total), 0)
        self.description = description
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._next_report = 0.0

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if not self.enabled:
            return
        fraction = self.done / self.total if self.total else 1.0
        if self._tty:
            width = 28
            filled = int(width * fraction)
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            self.stream.write(f"\r{self.description} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} {rate:.1f}/s")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif fraction >= self._next_report or self.done >= self.total:
            self.stream.write(f"{self.description}: {self.done}/{self.total} ({fraction:.0%})\n")
            self.stream.flush()
            self._next_report = fraction + 0.25


def track(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield items while showing progress."""
    bar = Progress(total, description, enabled=enabled)
    for item in items:
        yield item
        bar.update()
