"""Progress of long work (conversion, calibration, evaluation) on stderr: a tqdm bar on a terminal,
a few plain lines otherwise (logs, pipes, CI) or when tqdm is not installed (the light runtime install)."""

from __future__ import annotations

import sys
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")

PLAIN_STEPS = 4  # a plain-line progress prints at 0 %, then about every quarter, and at the end


def _tqdm():
    """tqdm's class, or None when it is not installed (it comes with the convert extra, not the runtime)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Counts the steps of a task: `update(steps)`; `close()` (or the last step) ends it.

    On a terminal it is a tqdm bar; elsewhere it writes `description: done/total (NN%)` lines.
    """

    def __init__(self, total: int, description: str, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.total = max(int(total), 0)
        self.description = description
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self._next_line = 0.0
        self._bar = None
        tqdm = _tqdm() if enabled and bool(getattr(self.stream, "isatty", lambda: False)()) else None
        if tqdm is not None:
            self._bar = tqdm(total=self.total, desc=self.description, file=self.stream, unit="img", leave=True,
                             dynamic_ncols=True)

    @property
    def is_bar(self) -> bool:
        """True when a tqdm bar draws this progress (a terminal with tqdm installed)."""
        return self._bar is not None

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(steps)
            if self.done >= self.total:
                self.close()
            return
        fraction = self.done / self.total if self.total else 1.0
        if fraction >= self._next_line or self.done >= self.total:
            self.stream.write(f"{self.description}: {self.done}/{self.total} ({fraction:.0%})\n")
            self.stream.flush()
            self._next_line = fraction + 1 / PLAIN_STEPS

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def track(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield items while showing progress."""
    bar = Progress(total, description, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
