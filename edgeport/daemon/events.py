"""Object appeared / left events: a small IoU tracker per camera, and snapshots kept under a limit."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeport.daemon.config import Events
from edgeport.runtime.detections import Detections


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) against every box in b (M, 4), xyxy; returns (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Track:
    id: int
    class_id: int
    class_name: str
    xyxy: np.ndarray
    score: float
    hits: int = 1
    misses: int = 0
    announced: bool = False
    first_seen: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Event:
    """'appeared' or 'left' for one tracked object of one camera."""

    camera: str
    kind: str
    track_id: int
    class_name: str
    score: float
    xyxy: tuple[float, float, float, float]
    time: float
    frame: int
    snapshot: str | None = None
    snapshot_error: str | None = None  # why no snapshot could be written (the event is kept all the same)

    def to_dict(self) -> dict[str, Any]:
        record = {"camera": self.camera, "event": self.kind, "track_id": self.track_id, "class_name": self.class_name,
                  "score": round(self.score, 4), "xyxy": [round(v, 1) for v in self.xyxy], "time": self.time,
                  "frame": self.frame, "snapshot": self.snapshot}
        if self.snapshot_error:
            record["snapshot_error"] = self.snapshot_error
        return record


class Tracker:
    """Greedy same-class IoU matching frame to frame; emits events when tracks are confirmed or lost."""

    _ids = itertools.count(1)

    def __init__(self, camera: str, options: Events) -> None:
        self.camera, self.options = camera, options
        self.tracks: list[Track] = []

    def update(self, detections: Detections, frame: int, now: float | None = None) -> list[Event]:
        now = time.time() if now is None else now
        events: list[Event] = []
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if self.tracks and len(detections):
            ious = iou_matrix(np.stack([t.xyxy for t in self.tracks]), detections.xyxy)
            same = np.array([[t.class_id == c for c in detections.class_id.tolist()] for t in self.tracks])
            ious = np.where(same, ious, 0.0)
            for flat in np.argsort(-ious, axis=None):
                ti, di = divmod(int(flat), ious.shape[1])
                if ious[ti, di] < self.options.iou:
                    break
                if ti in matched_tracks or di in matched_dets:
                    continue
                matched_tracks.add(ti)
                matched_dets.add(di)
                track = self.tracks[ti]
                track.xyxy, track.score = detections.xyxy[di].copy(), float(detections.score[di])
                track.hits += 1
                track.misses = 0
        names = detections.class_name
        existing = len(self.tracks)
        for di in range(len(detections)):
            if di not in matched_dets:
                self.tracks.append(Track(next(self._ids), int(detections.class_id[di]), names[di],
                                         detections.xyxy[di].copy(), float(detections.score[di]), first_seen=now))
        kept = []
        for ti, track in enumerate(self.tracks):
            if ti < existing and ti not in matched_tracks:
                track.misses += 1
            if not track.announced and track.hits >= self.options.min_hits:
                track.announced = True
                events.append(self._event("appeared", track, frame, now))
            if track.misses > self.options.max_misses:
                if track.announced:
                    events.append(self._event("left", track, frame, now))
                continue
            kept.append(track)
        self.tracks = kept
        return events

    def _event(self, kind: str, track: Track, frame: int, now: float) -> Event:
        x1, y1, x2, y2 = (float(v) for v in track.xyxy)
        return Event(self.camera, kind, track.id, track.class_name, track.score, (x1, y1, x2, y2), now, frame)


class SnapshotStore:
    """JPEG snapshots of event frames under `folder`, the oldest deleted beyond `max_files`; a write that
    fails leaves no partial file, and partial files of an earlier run are deleted at start."""

    def __init__(self, folder: Path, max_files: int) -> None:
        self.folder, self.max_files = folder, max_files
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for stale in self.folder.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        self._files = sorted(self.folder.glob("*.jpg"), key=lambda p: p.stat().st_mtime)

    def save(self, image_bgr: np.ndarray, event: Event) -> Path:
        name = f"{event.camera}-{int(event.time * 1000)}-{event.track_id}-{event.kind}.jpg"
        path = self.folder / name
        ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise OSError(f"cannot encode snapshot {name}")
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(encoded.tobytes())
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._files.append(path)
            while len(self._files) > self.max_files:
                self._files.pop(0).unlink(missing_ok=True)
        return path

    def __len__(self) -> int:
        return len(self._files)
