"""Prometheus metrics of the daemon through the official client (prometheus_client), one registry per daemon.

`Metrics` holds the daemon's families behind a small label-positional API; `render()` gives /metrics.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from edgeport.errors import MissingDependencyError

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
except ImportError as exc:  # pragma: no cover - the daemon extra installs it
    raise MissingDependencyError("prometheus-client (daemon metrics)", "daemon") from exc

prometheus_client.disable_created_metrics()  # keep /metrics to the series the daemon documents

INFERENCE_BUCKETS_MS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _Family:
    """One metric family with label values given positionally (`inc("front")`)."""

    def __init__(self, metric, label_names: tuple[str, ...]) -> None:
        self._metric, self.label_names = metric, label_names

    def _child(self, labels: tuple[str, ...]):
        return self._metric.labels(*labels) if self.label_names else self._metric


class Counter(_Family):
    def __init__(self, registry, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        labels = tuple(labels)
        # prometheus_client appends `_total` to a counter's name itself
        super().__init__(prometheus_client.Counter(name.removesuffix("_total"), help_text, labels, registry=registry),
                         labels)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._child(labels).inc(amount)

    def value(self, *labels: str) -> float:
        for sample in self._metric.collect()[0].samples:
            if sample.name.endswith("_total") and tuple(sample.labels.get(n) for n in self.label_names) == labels:
                return sample.value
        return 0.0


class Histogram(_Family):
    def __init__(self, registry, name: str, help_text: str, labels: Iterable[str] = (),
                 buckets: Iterable[float] = INFERENCE_BUCKETS_MS) -> None:
        labels = tuple(labels)
        super().__init__(prometheus_client.Histogram(name, help_text, labels, buckets=tuple(buckets),
                                                     registry=registry), labels)

    def observe(self, value: float, *labels: str) -> None:
        self._child(labels).observe(value)

    def count(self, *labels: str) -> int:
        for sample in self._metric.collect()[0].samples:
            if sample.name.endswith("_count") and tuple(sample.labels.get(n) for n in self.label_names) == labels:
                return int(sample.value)
        return 0


class Gauge:
    """A gauge set directly (`set`) or computed at scrape time from a bound `read()`."""

    def __init__(self, registry, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._read: Callable[[], dict[tuple[str, ...], float]] | None = None
        self._lock = threading.Lock()
        registry.register(self)

    def bind(self, read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """Compute the values at scrape time from `read()` instead of `set`."""
        self._read = read

    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = float(value)

    def value(self, *labels: str) -> float:
        return self._current().get(labels, 0.0)

    def _current(self) -> dict[tuple[str, ...], float]:
        if self._read is not None:
            return self._read()
        with self._lock:
            return dict(self._values)

    def describe(self):
        return [GaugeMetricFamily(self.name, self.help, labels=self.label_names)]

    def collect(self):
        family = GaugeMetricFamily(self.name, self.help, labels=self.label_names)
        for labels, value in sorted(self._current().items()):
            family.add_metric(list(labels), value)
        return [family]


class Metrics:
    """The daemon's metric families in their own registry; scrape-time gauges are bound later."""

    def __init__(self) -> None:
        r = self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.frames = Counter(r, "edgeport_frames_total", "frames run through the model", ["camera"])
        self.dropped = Counter(r, "edgeport_dropped_frames_total",
                               "frames not run: replaced by a newer one before inference, or refused by a full sink",
                               ["camera", "reason"])
        self.inference_ms = Histogram(r, "edgeport_inference_milliseconds",
                                      "preprocess + invoke + postprocess per batch", ["camera"])
        self.publish_latency_ms = Histogram(r, "edgeport_capture_to_publish_milliseconds",
                                            "from the frame's capture to its detections handed to MQTT", ["camera"])
        self.detections = Counter(r, "edgeport_detections_total", "detections after NMS", ["camera", "class"])
        self.events = Counter(r, "edgeport_events_total", "object appeared/left events", ["camera", "kind"])
        self.published = Counter(r, "edgeport_mqtt_published_total", "MQTT messages acknowledged", ["kind"])
        self.queue_overflow = Counter(r, "edgeport_event_queue_overflow_total",
                                      "events dropped because the store-and-forward queue was full", [])
        self.reconnects = Counter(r, "edgeport_source_reconnects_total", "attempts to reopen a source", ["camera"])
        self.http_requests = Counter(r, "edgeport_http_requests_total", "HTTP requests by route and status",
                                     ["route", "status"])
        self.http_refused = Counter(r, "edgeport_http_refused_total",
                                    "POST /detect requests refused by admission control or cut off, by reason",
                                    ["reason"])
        self.http_request_ms = Histogram(r, "edgeport_http_detect_milliseconds",
                                         "POST /detect from admission to the response, answered requests",
                                         [], buckets=INFERENCE_BUCKETS_MS + (5000, 10000))
        self.batch_size = Histogram(r, "edgeport_http_batch_size", "images per model invoke of the HTTP batcher",
                                    [], buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue_wait_ms = Histogram(r, "edgeport_http_queue_wait_milliseconds",
                                       "time a decoded upload waited in the batcher's queue", [])
        self.http_decodes = Counter(r, "edgeport_http_decodes_total",
                                    "POST /detect images decoded, by scale factor (2, 4, 8: a large JPEG decoded "
                                    "at 1/2, 1/4, 1/8 by libjpeg; 1: full scale)", ["factor"])
        self.model_wait_ms = Histogram(r, "edgeport_model_wait_milliseconds",
                                       "time a caller waited for its turn on the model", ["user"])
        self.fps = Gauge(r, "edgeport_fps", "frames per second over the last 5 s", ["camera"])
        self.source_state = Gauge(r, "edgeport_source_state", "1 for the camera's current state", ["camera", "state"])
        self.queue_depth = Gauge(r, "edgeport_queue_depth", "items waiting per queue", ["queue"])
        self.mqtt_connected = Gauge(r, "edgeport_mqtt_connected", "1 when the broker connection is up", [])
        self.http_inflight = Gauge(r, "edgeport_http_inflight", "POST /detect uploads held, and their bytes",
                                   ["what"])
        self.faults = Gauge(r, "edgeport_fault", "1 while a component is failing (details in /health)", ["component"])

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        return prometheus_client.generate_latest(self.registry).decode()
