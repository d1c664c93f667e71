"""Prometheus metrics of the daemon, rendered in the text exposition format (no extra dependency).

`Metrics` holds counters, gauges and histograms keyed by label values; `render()` gives /metrics.
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable, Iterable

INFERENCE_BUCKETS_MS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    body = ",".join(f'{n}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for n, v in zip(names, values))
    return "{" + body + "}"


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            return [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in sorted(self._values.items())]


class Gauge(_Family):
    kind = "gauge"

    def __init__(self, *args, read: Callable[[], dict[tuple[str, ...], float]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}
        self._read = read  # computed at scrape time when given

    def bind(self, read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """Compute the values at scrape time from `read()` instead of `set`."""
        self._read = read

    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = float(value)

    def value(self, *labels: str) -> float:
        values = self._read() if self._read else self._values
        return values.get(labels, 0.0)

    def lines(self) -> list[str]:
        values = self._read() if self._read else dict(self._values)
        return [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in sorted(values.items())]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, *args, buckets: Iterable[float] = INFERENCE_BUCKETS_MS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sums[labels] = self._sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(labels, []))

    def lines(self) -> list[str]:
        out = []
        with self._lock:
            for key, counts in sorted(self._counts.items()):
                running = 0
                for bound, n in zip(self.buckets, counts):
                    running += n
                    le = _labels(self.label_names + ("le",), key + (f"{bound:g}",))
                    out.append(f"{self.name}_bucket{le} {running}")
                running += counts[-1]
                out.append(f"{self.name}_bucket{_labels(self.label_names + ('le',), key + ('+Inf',))} {running}")
                out.append(f"{self.name}_sum{_labels(self.label_names, key)} {self._sums[key]:g}")
                out.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return out


class Metrics:
    """The daemon's metric families; sources of gauges that are read at scrape time are set later."""

    def __init__(self) -> None:
        self.frames = Counter("edgeport_frames_total", "frames run through the model", ["camera"])
        self.dropped = Counter("edgeport_dropped_frames_total",
                               "frames not run: replaced by a newer one before inference, or refused by a full sink",
                               ["camera", "reason"])
        self.inference_ms = Histogram("edgeport_inference_milliseconds",
                                      "preprocess + invoke + postprocess per batch", ["camera"])
        self.publish_latency_ms = Histogram("edgeport_capture_to_publish_milliseconds",
                                            "from the frame's capture to its detections handed to MQTT", ["camera"])
        self.detections = Counter("edgeport_detections_total", "detections after NMS", ["camera", "class"])
        self.events = Counter("edgeport_events_total", "object appeared/left events", ["camera", "kind"])
        self.published = Counter("edgeport_mqtt_published_total", "MQTT messages acknowledged", ["kind"])
        self.queue_overflow = Counter("edgeport_event_queue_overflow_total",
                                      "events dropped because the store-and-forward queue was full", [])
        self.reconnects = Counter("edgeport_source_reconnects_total", "attempts to reopen a source", ["camera"])
        self.http_requests = Counter("edgeport_http_requests_total", "HTTP requests by route and status",
                                     ["route", "status"])
        self.fps = Gauge("edgeport_fps", "frames per second over the last 5 s", ["camera"])
        self.source_state = Gauge("edgeport_source_state", "1 for the camera's current state", ["camera", "state"])
        self.queue_depth = Gauge("edgeport_queue_depth", "items waiting per queue", ["queue"])
        self.mqtt_connected = Gauge("edgeport_mqtt_connected", "1 when the broker connection is up", [])
        self.faults = Gauge("edgeport_fault", "1 while a component is failing (details in /health)", ["component"])
        self.families: list[_Family] = [
            self.frames, self.dropped, self.inference_ms, self.publish_latency_ms, self.detections, self.events, self.published,
            self.queue_overflow, self.reconnects, self.http_requests, self.fps, self.source_state,
            self.queue_depth, self.mqtt_connected, self.faults,
        ]

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families:
            lines += family.header() + family.lines()
        return "\n".join(lines) + "\n"
