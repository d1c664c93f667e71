"""Camera sources and the one capture thread per camera that keeps them alive.

A source opens, reads BGR frames and closes; `CaptureThread` owns one, reconnects it with capped
exponential backoff and jitter, and hands frames over by the camera's policy (`latest` or `every`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from edgeport.daemon.config import Camera
from edgeport.daemon.redact import redact
from edgeport.devices.jetson.camera import csi_pipeline
from edgeport.errors import ConfigError, EdgeportError
from edgeport.evaluate.dataset import IMAGE_SUFFIXES
from edgeport.runtime.image_io import load_image

log = logging.getLogger("edgeport.daemon")

STATES = ("connecting", "connected", "reconnecting", "failed", "ended", "stopped")


class SourceError(EdgeportError):
    """A source could not be opened or stopped delivering frames."""


class SourceEnded(Exception):
    """A finite source (file, folder) reached its end."""


@dataclass(frozen=True)
class Frame:
    """One captured frame: BGR uint8 pixels and when they were read."""

    camera: str
    index: int
    bgr: np.ndarray
    captured: float  # time.monotonic()
    wall: float  # time.time()


class FrameSource(Protocol):
    def open(self) -> None: ...
    def read(self) -> np.ndarray: ...  # BGR; raises SourceError or SourceEnded
    def close(self) -> None: ...


def source_kind(camera: Camera) -> str:
    """The source type of a camera ('auto' resolved from the source string)."""
    if camera.type != "auto":
        return camera.type
    source = camera.source
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "v4l2"
    if source.startswith("/dev/"):
        return "v4l2"
    if source.split("://", 1)[0] in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp"):
        return "url"
    if source == "picamera2" or source.startswith("picamera2:"):
        return "picamera2"
    if source == "csi" or source.startswith("csi:"):
        return "csi"
    return "folder" if Path(source).is_dir() else "file"


class OpenCVSource:
    """V4L2 device, RTSP/HTTP stream, video file or GStreamer pipeline through cv2.VideoCapture."""

    def __init__(self, target: int | str, api: int = cv2.CAP_ANY, finite: bool = False,
                 width: int | None = None, height: int | None = None, timeout_ms: int = 5000) -> None:
        self.target, self.api, self.finite = target, api, finite
        self.width, self.height, self.timeout_ms = width, height, timeout_ms
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self.finite and not Path(str(self.target)).is_file():
            raise SourceError(f"video file not found: {self.target}")
        params: list[int] = []
        if self.api in (cv2.CAP_ANY, cv2.CAP_FFMPEG) and not self.finite:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        capture = cv2.VideoCapture(self.target, self.api, params) if params else cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {redact(self.target)}")
        if self.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._capture = capture

    def read(self) -> np.ndarray:
        if self._capture is None:
            raise SourceError("source is not open")
        ok, frame = self._capture.read()
        if ok and frame is not None and frame.size:
            return frame
        if self.finite:
            raise SourceEnded()
        raise SourceError(f"no frame from {redact(self.target)}")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FolderSource:
    """The images of a folder in name order; unreadable files are skipped with a warning."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._files: deque[Path] = deque()
        self.skipped = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images in {self.folder}")
        self._files = deque(files)

    def read(self) -> np.ndarray:
        while self._files:
            path = self._files.popleft()
            try:
                return cv2.cvtColor(load_image(path), cv2.COLOR_RGB2BGR)  # EXIF applied; frames are BGR
            except EdgeportError as exc:
                self.skipped += 1
                log.warning("skipping %s: %s", path, exc)
        raise SourceEnded()

    def close(self) -> None:
        self._files.clear()


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (imported only when used)."""

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None) -> None:
        self.index, self.width, self.height = index, width or 1280, height or 720
        self._camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS run `sudo apt install "
                              "python3-picamera2` and create the venv with --system-site-packages") from exc
        try:
            camera = Picamera2(self.index)
            camera.configure(camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"}))  # RGB888 is BGR in memory
            camera.start()
        except Exception as exc:  # libcamera raises RuntimeError, IndexError, ... for a missing camera
            raise SourceError(f"cannot open Raspberry Pi camera {self.index}: {exc}") from exc
        self._camera = camera

    def read(self) -> np.ndarray:
        if self._camera is None:
            raise SourceError("source is not open")
        try:
            frame = self._camera.capture_array("main")
        except Exception as exc:
            raise SourceError(f"Raspberry Pi camera {self.index}: {exc}") from exc
        return np.ascontiguousarray(frame[..., :3])

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None


def _suffix_index(source: str) -> int:
    _, _, tail = source.partition(":")
    if tail and not tail.isdigit():
        raise ConfigError(f"camera source {source!r}: the index after ':' must be a number")
    return int(tail or 0)


def make_source(camera: Camera) -> FrameSource:
    """The FrameSource for a configured camera."""
    kind = source_kind(camera)
    source = camera.source
    if kind == "v4l2":
        target = int(source) if isinstance(source, int) or str(source).isdigit() else str(source)
        return OpenCVSource(target, cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY,
                            width=camera.width, height=camera.height)
    if kind == "url":
        return OpenCVSource(str(source), cv2.CAP_FFMPEG, timeout_ms=int(camera.timeout_s * 1000))
    if kind == "file":
        return OpenCVSource(str(source), cv2.CAP_ANY, finite=True)
    if kind == "folder":
        return FolderSource(str(source))
    if kind == "picamera2":
        return Picamera2Source(_suffix_index(str(source)), camera.width, camera.height)
    if kind == "csi":
        pipeline = csi_pipeline(_suffix_index(str(source)), camera.width or 1920, camera.height or 1080,
                                int(camera.fps or 30))
        return OpenCVSource(pipeline, cv2.CAP_GSTREAMER, width=None, height=None)
    raise ConfigError(f"camera {camera.id}: unknown source type {kind!r}")


def backoff_delays(initial: float, factor: float, cap: float, jitter: float,
                   rng: random.Random | None = None) -> Callable[[int], float]:
    """delay(attempt) for attempt 1, 2, ...: initial * factor**(attempt-1), capped, +- jitter share."""
    rng = rng or random.Random()

    def delay(attempt: int) -> float:
        base = min(cap, initial * factor ** max(0, attempt - 1))
        return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))

    return delay


class CaptureThread:
    """Reads one camera in its own thread and keeps the newest frame (or every frame) for the loop.

    `state` is one of STATES; `take()` returns the next Frame or None; `dropped` counts frames
    overwritten before the loop took them (policy `latest`).
    """

    def __init__(self, camera: Camera, source_factory: Callable[[Camera], FrameSource] = make_source,
                 on_state: Callable[[str, str], None] | None = None) -> None:
        self.camera = camera
        self.id = camera.id
        self.policy = camera.policy or ("every" if source_kind(camera) in ("file", "folder") else "latest")
        self._factory = source_factory
        self._on_state = on_state
        self.on_frame: Callable[[], None] | None = None  # called after each delivered frame
        self._lock = threading.Condition()
        self._frames: deque[Frame] = deque(maxlen=1 if self.policy == "latest" else 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{camera.id}", daemon=True)
        self.state = "connecting"
        self.error: str | None = None
        self.frames_read = 0
        self.dropped = 0
        self.reconnects = 0
        self.last_frame_at: float | None = None
        r = camera.reconnect
        self._delay = backoff_delays(r.initial_s, r.factor, r.max_s, r.jitter)

    def start(self) -> "CaptureThread":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _set_state(self, state: str, error: str | None = None) -> None:
        error = redact(error) if error else error
        if state != self.state or error != self.error:
            self.state, self.error = state, error
            if error:
                log.warning("camera %s: %s (%s)", self.id, state, error)
            else:
                log.info("camera %s: %s", self.id, state)
            if self._on_state:
                self._on_state(self.id, state)

    @property
    def pending(self) -> int:
        """Frames waiting for the loop."""
        with self._lock:
            return len(self._frames)

    def take(self, timeout: float = 0.0) -> Frame | None:
        """The oldest waiting frame (with `latest`, the newest read), or None after `timeout` seconds."""
        with self._lock:
            if not self._frames and timeout > 0:
                self._lock.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._lock.notify_all()
            return frame

    def _deliver(self, frame: Frame) -> None:
        with self._lock:
            if self.policy == "latest":
                if self._frames:
                    self.dropped += 1
            else:
                while len(self._frames) >= (self._frames.maxlen or 1) and not self._stop.is_set():
                    self._lock.wait(0.1)
            self._frames.append(frame)
            self._lock.notify_all()
        if self.on_frame is not None:
            self.on_frame()

    def _run(self) -> None:
        attempt = 0
        index = 0
        min_interval = 1.0 / self.camera.fps if self.camera.fps else 0.0
        while not self._stop.is_set():
            source = self._factory(self.camera)
            try:
                source.open()
            except (SourceError, OSError) as exc:
                attempt += 1
                if not self._wait_to_retry(attempt, str(exc)):
                    return
                continue
            self._set_state("connected")
            opened_at = time.monotonic()
            next_at = 0.0
            try:
                while not self._stop.is_set():
                    if min_interval:
                        now = time.monotonic()
                        if now < next_at:
                            self._stop.wait(next_at - now)
                            continue
                        next_at = max(next_at + min_interval, now)
                    bgr = source.read()
                    index += 1
                    self.frames_read += 1
                    now = time.monotonic()
                    self.last_frame_at = now
                    if attempt and now - opened_at > 1.0:
                        attempt = 0  # healthy again: the next failure starts the backoff from the start
                    self._deliver(Frame(self.id, index, bgr, now, time.time()))
            except SourceEnded:
                if self.camera.loop:
                    continue
                self._set_state("ended")
                return
            except (SourceError, cv2.error, OSError) as exc:
                attempt += 1
                if not self._wait_to_retry(attempt, str(exc)):
                    return
            finally:
                source.close()
        self._set_state("stopped")

    def _wait_to_retry(self, attempt: int, error: str) -> bool:
        """Back off before the next attempt; False when the thread must end (stopped or out of attempts)."""
        limit = self.camera.reconnect.max_attempts
        if limit is not None and attempt >= limit:
            self._set_state("failed", f"{error}; gave up after {attempt} attempts")
            return False
        self.reconnects += 1
        self._set_state("reconnecting", error)
        return not self._stop.wait(self._delay(attempt))
