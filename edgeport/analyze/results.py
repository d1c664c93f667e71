"""Where `edgeport analyze` writes: one JSON-lines file per source (temp file renamed when complete),
summary.json, and the annotated video drawn from those lines."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgeport.analyze.sources import Frame, Source
from edgeport.runtime.detections import Detections

PARTIAL = ".part"


def frame_line(frame: Frame, detections: Detections | None) -> str:
    """The JSON line of one frame: index, timestamp, image (folders, lists), then its detections or error."""
    head: dict[str, Any] = {"frame": frame.index, "t": frame.t}
    if frame.image is not None:
        head["image"] = frame.image
    if detections is None:
        head["error"] = frame.error or "not decoded"
    else:
        head.update(detections.to_dict())
    return json.dumps(head, separators=(",", ":"))


def lines_path(out: Path, source: Source) -> Path:
    return out / f"{source.name}.jsonl"


def video_path(out: Path, source: Source) -> Path:
    return out / f"{source.name}.annotated.mp4"


def is_done(out: Path, source: Source, save_video: bool) -> bool:
    """True when the source's lines (and, when asked, its annotated video) were completed by an earlier run."""
    done = lines_path(out, source).is_file()
    return done and (not save_video or source.kind != "video" or video_path(out, source).is_file())


class LinesWriter:
    """Writes one source's lines to DIR/<name>.jsonl.part; `finish` renames it, so a crash leaves no .jsonl."""

    def __init__(self, out: Path, source: Source) -> None:
        self.final = lines_path(out, source)
        self.partial = self.final.with_name(self.final.name + PARTIAL)
        self._file = self.partial.open("w")  # a partial file of an earlier run is overwritten
        self.next_index = 0

    def write(self, index: int, line: str) -> None:
        if index != self.next_index:
            raise RuntimeError(f"{self.final.name}: frame {index} arrived, {self.next_index} expected")
        self._file.write(line + "\n")
        self.next_index += 1

    def finish(self) -> Path:
        self._file.close()
        os.replace(self.partial, self.final)
        return self.final

    def abandon(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


@dataclass
class SourceSummary:
    """One source's row of summary.json."""

    source: str
    kind: str
    output: str | None = None
    status: str = "done"  # done, already done, failed
    frames: int = 0
    frame_errors: int = 0
    video_fps: float | None = None
    frames_per_second: float | None = None  # analysis speed of this run
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def count_lines(path: Path) -> tuple[int, int, dict[str, int]]:
    """(frames, frames with an error, detections per class name) of a finished JSON-lines file."""
    frames, errors, counts = 0, 0, Counter()
    with path.open() as lines:
        for line in lines:
            record = json.loads(line)
            frames += 1
            errors += "error" in record
            counts.update(d["class_name"] for d in record.get("detections", ()))
    return frames, errors, dict(sorted(counts.items()))


def summarize(source: Source, out: Path, status: str, seconds: float | None) -> SourceSummary:
    """The summary row of a source whose lines are written."""
    path = lines_path(out, source)
    frames, errors, counts = count_lines(path)
    rate = round(frames / seconds, 2) if seconds else None
    return SourceSummary(source.path, source.kind, path.name, status, frames, errors, source.fps, rate, counts)


def write_summary(out: Path, rows: Iterable[SourceSummary], extra: dict[str, Any]) -> Path:
    """DIR/summary.json: the run's settings and one entry per source, totals per class."""
    from dataclasses import asdict

    rows = list(rows)
    totals = Counter()
    for row in rows:
        totals.update(row.counts)
    data = {**extra, "sources": [asdict(r) for r in rows], "counts": dict(sorted(totals.items())),
            "frames": sum(r.frames for r in rows), "failed": sum(r.status == "failed" for r in rows)}
    path = out / "summary.json"
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def detections_of(record: dict[str, Any], names: tuple[str, ...]) -> Detections:
    """The Detections of one JSON line (boxes as written, rounded to 0.01 px)."""
    found = record.get("detections") or []
    return Detections(np.array([d["xyxy"] for d in found], np.float32).reshape(-1, 4),
                      np.array([d["score"] for d in found], np.float32),
                      np.array([d["class_id"] for d in found], np.int32), names)


def write_annotated_video(source: Source, out: Path, names: tuple[str, ...]) -> Path:
    """Draw the source's JSON lines on its frames into DIR/<name>.annotated.mp4 (temp file renamed)."""
    import cv2

    from edgeport.runtime.draw import draw

    final = video_path(out, source)
    partial = final.with_name(final.stem + PARTIAL + final.suffix)
    writer = None
    try:
        with lines_path(out, source).open() as lines:
            for frame, line in zip(source.read(), lines):
                bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
                if writer is None:
                    size = (bgr.shape[1], bgr.shape[0])
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), source.fps or 25.0, size)
                writer.write(draw(bgr, detections_of(json.loads(line), names)))
    finally:
        if writer is not None:
            writer.release()
    os.replace(partial, final)
    return final
