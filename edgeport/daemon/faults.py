"""What is wrong with the daemon right now: one entry per failing component, for /health, /metrics and the log.

A fault is logged once when it appears (and again only when its message changes) and once when it clears.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edgeport.daemon")


@dataclass
class Fault:
    message: str
    since: float  # time.monotonic()
    count: int = 1


class Faults:
    """Thread-safe board of active faults by component ('event_sender', 'spool', 'snapshots', ...), and
    notices: things that went wrong once and were handled (a corrupt spool set aside), kept for /health."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Fault] = {}
        self.totals: dict[str, int] = {}
        self.notices: list[str] = []

    def report(self, component: str, message: str) -> None:
        """`component` is failing with `message` (logged when new or changed)."""
        with self._lock:
            self.totals[component] = self.totals.get(component, 0) + 1
            fault = self._active.get(component)
            if fault is not None and fault.message == message:
                fault.count += 1
                return
            self._active[component] = Fault(message, time.monotonic(), (fault.count + 1) if fault else 1)
        log.error("%s: %s", component, message)

    def clear(self, component: str) -> None:
        """`component` works again (logged once)."""
        with self._lock:
            fault = self._active.pop(component, None)
        if fault is not None:
            log.warning("%s: recovered after %.1f s (%d failures)", component, time.monotonic() - fault.since,
                        fault.count)

    def notice(self, message: str) -> None:
        with self._lock:
            if message not in self.notices:
                self.notices.append(message)

    def active(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return {name: {"error": f.message, "for_s": round(now - f.since, 1), "failures": f.count}
                    for name, f in self._active.items()}

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._active)

    def gauge(self) -> dict[tuple[str, ...], float]:
        """For a Prometheus gauge labelled by component: 1 while failing (every component ever seen)."""
        with self._lock:
            return {(name,): float(name in self._active) for name in self.totals}
