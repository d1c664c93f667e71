"""The camera daemon: capture threads -> one inference loop -> sinks that never block it.

`Daemon(config).run()` starts everything, runs until SIGTERM/SIGINT (or `stop()`), then drains and
stops cleanly. The loop pings the service manager (sd_notify); a watchdog reports a stuck inference.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeport.daemon.batcher import Job, ModelTurns, http_batcher
from edgeport.daemon.config import DaemonConfig
from edgeport.daemon.events import Event, SnapshotStore, Tracker
from edgeport.daemon.faults import Faults
from edgeport.daemon.metrics import Metrics
from edgeport.daemon.redact import install_log_filter, redact
from edgeport.daemon.sources import STATES, CaptureThread, Frame, FrameSource, make_source
from edgeport.daemon.spool import Spool
from edgeport.runtime.detections import Detections
from edgeport.runtime.detector import Detector
from edgeport.runtime.draw import draw
from edgeport.runtime.image_io import decode_for_model
from edgeport.runtime.options import RuntimeOptions, shared_core_threads
from edgeport.runtime.preprocess import Letterbox, ReducedLetterbox

log = logging.getLogger("edgeport.daemon")


def sd_notify(message: str) -> bool:
    """Send one sd_notify datagram to $NOTIFY_SOCKET (systemd Type=notify); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


@dataclass(frozen=True)
class Result:
    """One frame's detections, as every sink receives them."""

    frame: Frame
    detections: Detections
    inference_ms: float

    def payload(self) -> dict[str, Any]:
        return {"camera": self.frame.camera, "frame": self.frame.index, "time": round(self.frame.wall, 3),
                "inference_ms": round(self.inference_ms, 2), **self.detections.to_dict()}


class SinkWorker:
    """A sink in its own thread behind a bounded queue: `offer` never blocks; a full queue drops (counted)."""

    _STOP = object()

    def __init__(self, name: str, handle: Callable[[Result], None], maxsize: int) -> None:
        self.name, self._handle = name, handle
        self._queue: queue.Queue = queue.Queue(maxsize)
        self.dropped = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def offer(self, item: Result) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            try:
                self._handle(item)
            except Exception:  # a sink must never take the daemon down; the error is logged and counted
                self.errors += 1
                log.exception("sink %s failed on a frame", self.name)

    def close(self, timeout: float = 10.0) -> None:
        """Process what is queued, then stop."""
        self._queue.put(self._STOP)
        self._thread.join(timeout)


class JsonlWriter:
    """Appends one JSON line per frame (and per event) to a file, rotated to <path>.1 beyond max_bytes."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            if self._file.tell() + len(line) > self.max_bytes:
                self._file.close()
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class Daemon:
    """The whole daemon over one validated DaemonConfig (see edgeport.daemon.config)."""

    def __init__(self, config: DaemonConfig, *, detector: Detector | None = None,
                 source_factory: Callable[..., FrameSource] = make_source) -> None:
        self.config = config
        self.detector = detector or RuntimeOptions(
            backend=config.backend, threads=config.threads or shared_core_threads(), providers=tuple(config.providers),
            device=config.device, spin=config.spin).open(config.model, conf=config.conf, iou=config.iou)
        self.metrics = Metrics()
        self.faults = Faults()
        install_log_filter()
        self.turns = ModelTurns(on_wait=lambda user, ms: self.metrics.model_wait_ms.observe(ms, user))
        self.camera_ids = [camera.id for camera in config.cameras]
        self.captures = {c.id: CaptureThread(c, source_factory, on_state=self._on_state) for c in config.cameras}
        self._frame_ready = threading.Event()
        for capture in self.captures.values():
            capture.on_frame = self._frame_ready.set
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.stalled = False
        self.processed = 0
        self._fps_times = {cid: deque(maxlen=512) for cid in self.camera_ids}
        self._latest: dict[str, tuple[Result, dict[str, Any]]] = {}
        self._jpeg_cache: dict[str, tuple[int, bytes]] = {}
        self._watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self._last_ping = 0.0
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.snapshots = (SnapshotStore(config.state_dir / "snapshots", config.events.max_snapshots)
                          if config.events.snapshots else None)
        self.trackers = {cid: Tracker(cid, config.events) for cid in self.camera_ids}
        self.jsonl = JsonlWriter(config.jsonl.path, config.jsonl.max_bytes) if config.jsonl else None
        self.spool: Spool | None = None
        self.mqtt = None
        if config.mqtt:
            from edgeport.daemon.mqtt import MqttLink

            self.spool = Spool(config.state_dir / "mqtt-spool.sqlite", config.mqtt.queue_max_events)
            if self.spool.recovered:
                self.faults.notice(self.spool.recovered)
            self.mqtt = MqttLink(config.mqtt, self.spool, self.metrics, self.camera_ids, self.detector.names,
                                 self.faults)
        self.http = self.batcher = None
        if config.http:
            from edgeport.daemon.http_server import HttpServer

            self.batcher = http_batcher(config.http.batching, self._run_http_batch, self.metrics)
            self.http = HttpServer(self, config.http, self.metrics)
        self.sinks: list[SinkWorker] = [SinkWorker("events", self._handle_events, config.sink_queue)]
        if self.jsonl:
            self.sinks.append(SinkWorker("jsonl", lambda r: self.jsonl.write(r.payload()), config.sink_queue))
        if self.mqtt:
            self._last_published = {cid: 0.0 for cid in self.camera_ids}
            self.sinks.append(SinkWorker("mqtt", self._handle_mqtt, config.sink_queue))
        self._bind_gauges()

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start outputs first (so no early event is lost), then the cameras and the watchdog."""
        if self.mqtt:
            self.mqtt.start()
        if self.http:
            port = self.http.start()
            log.info("http: listening on %s:%s", self.config.http.host, port)
        for capture in self.captures.values():
            capture.start()
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        sd_notify("READY=1\nSTATUS=running " + ", ".join(self.camera_ids))

    def run(self, install_signals: bool = True, max_frames: int | None = None) -> None:
        """Start, loop until stopped (signal, `stop()`, every source ended, or max_frames), then shut down."""
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, _: self._request_stop(signal.Signals(signum).name))
        try:
            self.start()
            self._loop(max_frames)
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._request_stop("stop()")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _request_stop(self, why: str) -> None:
        if not self._stop.is_set():
            log.info("stopping (%s): draining outputs", why)
            sd_notify("STOPPING=1")
        self._stop.set()
        self._frame_ready.set()

    def shutdown(self) -> None:
        """Stop the cameras, let every sink finish its queue, deliver spooled events, close outputs."""
        self._stop.set()
        for capture in self.captures.values():
            capture.stop()
        for sink in self.sinks:
            sink.close()
        if self.mqtt:
            self.mqtt.stop()
        if self.http:
            self.http.stop()
            self.batcher.stop()
        if self.spool:  # after HTTP: /health reads the spool until the server is down
            self.spool.close()
        if self.jsonl:
            self.jsonl.close()
        log.info("stopped after %d frames", self.processed)

    # -- the inference loop -------------------------------------------------------------------------
    def _gather(self) -> list[Frame]:
        """Up to one waiting frame per camera (round-robin), at most the model's batch size."""
        batch = self.detector.batch_size or len(self.captures)
        frames = []
        for capture in self.captures.values():
            frame = capture.take()
            if frame is not None:
                frames.append(frame)
                if len(frames) >= batch:
                    break
        return frames

    def _all_sources_done(self) -> bool:
        return all(c.state in ("ended", "failed") and not c.alive for c in self.captures.values())

    def _loop(self, max_frames: int | None) -> None:
        while not self._stop.is_set():
            self._ping()
            frames = self._gather()
            if not frames:
                if self._all_sources_done() and not any(c.pending for c in self.captures.values()):
                    log.info("every source has ended")
                    return
                self._frame_ready.wait(0.05)
                self._frame_ready.clear()
                continue
            self._infer(frames)
            if max_frames is not None and self.processed >= max_frames:
                return

    def _infer(self, frames: list[Frame]) -> None:
        started = time.perf_counter()
        tensor, placements = self.detector.preprocess([cv2.cvtColor(f.bgr, cv2.COLOR_BGR2RGB) for f in frames])
        with self.turns.turn("camera") as waited_ms:  # busy (for the watchdog) only while the model runs
            outputs = self.detector.infer(tensor)
        self._model_returned()
        results = self.detector.postprocess(outputs, placements)
        elapsed_ms = (time.perf_counter() - started) * 1000 - waited_ms
        now = time.monotonic()
        for frame, detections in zip(frames, results):
            result = Result(frame, detections, elapsed_ms / len(frames))
            self.processed += 1
            self.metrics.frames.inc(frame.camera)
            self.metrics.inference_ms.observe(result.inference_ms, frame.camera)
            for name in detections.class_name:
                self.metrics.detections.inc(frame.camera, name)
            self._fps_times[frame.camera].append(now)
            self._latest[frame.camera] = (result, {"camera": frame.camera, "frame": frame.index,
                                                   "time": frame.wall, "inference_ms": round(result.inference_ms, 2),
                                                   "latency_ms": round((now - frame.captured) * 1000, 2)})
            for sink in self.sinks:
                if not sink.offer(result):
                    self.metrics.dropped.inc(frame.camera, f"sink_{sink.name}_full")

    def _model_returned(self) -> None:
        if self.stalled:
            log.warning("inference completed again after a stall")
            self.stalled = False

    def _ping(self) -> None:
        """WATCHDOG=1 from the loop itself, at half the interval systemd expects."""
        if not self._watchdog_usec or self.stalled:
            return
        now = time.monotonic()
        if now - self._last_ping >= self._watchdog_usec / 2e6:
            self._last_ping = now
            sd_notify("WATCHDOG=1")

    def _watchdog(self) -> None:
        """A stuck inference: health turns 503 and systemd is told at once (it restarts the service)."""
        limit = self.config.watchdog.stall_s
        while not self._stop.wait(min(1.0, limit / 4)):
            busy = self.turns.busy_since
            if busy is not None and time.monotonic() - busy > limit and not self.stalled:
                self.stalled = True
                log.error("inference stuck for more than %.1f s: asking the service manager to restart", limit)
                sd_notify(f"STATUS=inference stuck for more than {limit:g} s\nWATCHDOG=trigger")

    # -- sinks --------------------------------------------------------------------------------------
    def _handle_events(self, result: Result) -> None:
        events = self.trackers[result.frame.camera].update(result.detections, result.frame.index, result.frame.wall)
        for event in events:
            self.metrics.events.inc(event.camera, event.kind)
            if self.snapshots is not None:
                event = self._snapshot(event, result)
            record = event.to_dict()
            if self.mqtt:  # the event first: a failing JSONL (full disk) must not cost the event
                self.mqtt.enqueue_event(event.camera, record)
            if self.jsonl:
                self.jsonl.write(record)

    def _snapshot(self, event: Event, result: Result) -> Event:
        """The event with its snapshot path, or with the reason its snapshot could not be written."""
        try:
            path = self.snapshots.save(draw(result.frame.bgr, result.detections), event)
        except (OSError, cv2.error) as exc:
            self.faults.report("snapshots", f"cannot write snapshots: {exc}")
            return replace(event, snapshot_error=str(exc))
        self.faults.clear("snapshots")
        return replace(event, snapshot=str(path))

    def _handle_mqtt(self, result: Result) -> None:
        camera = result.frame.camera
        now = time.monotonic()
        if now - self._last_published[camera] < 1.0 / self.config.mqtt.detections_max_hz:
            return
        if self.mqtt.publish_detections(camera, result.payload()):
            self._last_published[camera] = now
            self.metrics.publish_latency_ms.observe((time.monotonic() - result.frame.captured) * 1000, camera)

    def _on_state(self, camera: str, state: str) -> None:
        if state == "reconnecting":
            self.metrics.reconnects.inc(camera)
        if self.mqtt:
            self.mqtt.publish_state(camera, state)
        self._frame_ready.set()

    # -- what the HTTP API reads (edgeport.daemon.http.DaemonView) ----------------------------------
    def _bind_gauges(self) -> None:
        def fps() -> dict[tuple[str, ...], float]:
            now = time.monotonic()
            return {(cid,): sum(1 for t in times if now - t <= 5.0) / 5.0 for cid, times in self._fps_times.items()}

        def states() -> dict[tuple[str, ...], float]:
            return {(cid, s): float(c.state == s) for cid, c in self.captures.items() for s in STATES}

        def depths() -> dict[tuple[str, ...], float]:
            out = {(f"sink_{s.name}",): float(s.depth) for s in self.sinks}
            if self.spool is not None:
                out[("mqtt_spool",)] = float(len(self.spool))
            if self.batcher is not None:
                out[("http_batcher",)] = float(self.batcher.depth)
            return out

        self.metrics.fps.bind(fps)
        self.metrics.source_state.bind(states)
        self.metrics.queue_depth.bind(depths)
        self.metrics.faults.bind(self.faults.gauge)

    def metrics_text(self) -> str:
        for cid, capture in self.captures.items():  # frames a newer one replaced before the loop took them
            current = self.metrics.dropped.value(cid, "replaced_by_newer")
            if capture.dropped > current:
                self.metrics.dropped.inc(cid, "replaced_by_newer", amount=capture.dropped - current)
        if self.spool is not None:
            current = self.metrics.queue_overflow.value()
            if self.spool.overflow > current:
                self.metrics.queue_overflow.inc(amount=self.spool.overflow - current)
        return self.metrics.render()

    def health(self) -> tuple[dict[str, Any], bool]:
        now = time.monotonic()
        cameras = {}
        for cid, c in self.captures.items():
            cameras[cid] = {"state": c.state, "error": redact(c.error) if c.error else None,
                            "frames_read": c.frames_read,
                            "dropped": c.dropped, "reconnects": c.reconnects,
                            "last_frame_age_s": round(now - c.last_frame_at, 3) if c.last_frame_at else None}
        working = any(c.state in ("connected", "connecting", "reconnecting") for c in self.captures.values())
        status = "stalled" if self.stalled else ("ok" if working and not self.faults and all(
            c["state"] == "connected" for c in cameras.values()) else ("degraded" if working else "no_source"))
        body: dict[str, Any] = {"status": status, "uptime_s": round(now - self._started, 1),
                                "frames": self.processed, "model": self.detector.describe()["artifact"],
                                "cameras": cameras,
                                "sinks": {s.name: {"queued": s.depth, "dropped": s.dropped, "errors": s.errors}
                                          for s in self.sinks},
                                "faults": self.faults.active(), "notices": list(self.faults.notices)}
        if self.mqtt:
            body["mqtt"] = {"connected": self.mqtt.connected, "queued_events": len(self.spool),
                            "waiting_in_memory": self.mqtt.waiting_in_memory, "overflow": self.spool.overflow,
                            "sender_restarts": self.mqtt.sender_restarts, "error": self.mqtt.last_error}
        return body, not self.stalled

    def latest(self, camera: str) -> tuple[Detections, dict[str, Any]] | None:
        found = self._latest.get(camera)
        return (found[0].detections, found[1]) if found else None

    def snapshot_jpeg(self, camera: str) -> bytes | None:
        found = self._latest.get(camera)
        if found is None:
            return None
        result = found[0]
        cached = self._jpeg_cache.get(camera)
        if cached and cached[0] == result.frame.index:
            return cached[1]
        ok, encoded = cv2.imencode(".jpg", draw(result.frame.bgr, result.detections), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        jpeg = encoded.tobytes()
        self._jpeg_cache[camera] = (result.frame.index, jpeg)
        return jpeg

    # -- POST /detect: decode in the HTTP decode pool, then the batcher -------------------------------
    def _run_http_batch(self, canvases: np.ndarray, placements) -> list[Detections]:
        tensor = self.detector.to_tensor(canvases)
        with self.turns.turn("http"):
            outputs = self.detector.infer(tensor)
        self._model_returned()
        return self.detector.postprocess(outputs, placements)

    def place_upload(self, data: bytes, max_pixels: int) -> tuple[np.ndarray, Letterbox | ReducedLetterbox]:
        """Decode an upload (EXIF applied) and letterbox it: (model-size canvas, placement). A JPEG at least
        twice the model size is decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling), as the runtime does;
        the placement maps boxes back to the full image. Raises ImageError."""
        pixels, reduction = decode_for_model(data, self.detector.imgsz, exif=True, max_pixels=max_pixels)
        canvas, placement = self.detector.place(pixels)
        self.metrics.http_decodes.inc(str(reduction.factor))
        return canvas, (ReducedLetterbox(placement, reduction) if reduction.factor > 1 else placement)

    def submit_upload(self, job: Job):
        """Queue a placed upload for the model; a Future of its Detections. Raises QueueFull."""
        return self.batcher.submit(job)

