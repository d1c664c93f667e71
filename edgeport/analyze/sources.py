"""What `edgeport analyze` reads: videos, image folders and image lists, as numbered frames.

A source is read whole (in-process) or in frame ranges (a Ray block); both yield the same frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeport.errors import EdgeportError, SourceError
from edgeport.evaluate.dataset import IMAGE_SUFFIXES
from edgeport.runtime.image_io import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB pixels, or the reason it could not be decoded (one bad image of a folder)."""

    index: int
    t: float | None  # seconds from the start of a video; None for images
    rgb: np.ndarray | None
    image: str | None = None  # the image's path (folders and lists)
    error: str | None = None


@dataclass(frozen=True)
class Source:
    """A video (`images` empty) or an ordered list of images; `name` is its output stem in DIR."""

    path: str
    kind: str  # "video", "folder" or "list"
    name: str
    frames: int  # exact for images; the container's count for a video (the last range reads to the end)
    fps: float | None = None
    images: tuple[str, ...] = ()

    def ranges(self, size: int) -> list[tuple[int, int | None]]:
        """Frame ranges [start, stop) of at most `size` frames; the last one of a video is open-ended."""
        starts = list(range(0, max(self.frames, 1), size))
        ranges: list[tuple[int, int | None]] = [(s, s + size) for s in starts]
        if self.kind == "video":
            ranges[-1] = (starts[-1], None)
        else:
            ranges[-1] = (starts[-1], self.frames)
        return ranges

    def read(self, start: int = 0, stop: int | None = None, *, exif: bool = True,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Frame]:
        """Frames start..stop-1 in order (to the end when stop is None). Raises SourceError when a
        video cannot be opened; an unreadable image becomes a Frame with `error` set."""
        if self.kind == "video":
            yield from _read_video(self, start, stop)
            return
        from edgeport.runtime.image_io import load_image

        for index in range(start, self.frames if stop is None else min(stop, self.frames)):
            image = self.images[index]
            try:
                rgb = load_image(image, exif=exif, max_pixels=max_pixels)
            except EdgeportError as exc:
                yield Frame(index, None, None, image, str(exc))
                continue
            yield Frame(index, None, rgb, image)


def _open_video(path: str):
    import cv2

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{path}: cannot be opened as a video (not a video file, or a codec OpenCV lacks)")
    return capture


def _read_video(source: Source, start: int, stop: int | None) -> Iterator[Frame]:
    import cv2

    capture = _open_video(source.path)
    try:
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)  # OpenCV seeks to the keyframe and decodes up to `start`
        index = start
        while stop is None or index < stop:
            ok, bgr = capture.read()
            if not ok:
                return
            t = round(index / source.fps, 3) if source.fps else None
            yield Frame(index, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()


def _images_of_folder(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _images_of_list(listing: Path) -> list[str]:
    images = []
    for line in listing.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            images.append(str(path if path.is_absolute() else listing.parent / path))
    return images


def open_source(path: str | Path, name: str) -> Source:
    """Describe one source: a folder of images, a .txt list of image paths, or a video.

    Paths become absolute (a Ray worker reads them from its own working directory). Raises
    SourceError naming the path and what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: not found")
    path = path.resolve()
    if path.is_dir() or path.suffix.lower() == ".txt":
        kind = "folder" if path.is_dir() else "list"
        images = _images_of_folder(path) if kind == "folder" else _images_of_list(path)
        if not images:
            what = f"no images ({', '.join(IMAGE_SUFFIXES)})" if kind == "folder" else "no image paths"
            raise SourceError(f"{path}: {what}")
        return Source(str(path), kind, name, len(images), images=tuple(images))
    import cv2

    capture = _open_video(str(path))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        ok, _ = capture.read()
    finally:
        capture.release()
    if not ok:
        raise SourceError(f"{path}: a video without a decodable frame (empty, truncated or a codec OpenCV lacks)")
    return Source(str(path), "video", name, max(frames, 0), round(fps, 3) if fps else None)


def output_names(paths: list[str | Path]) -> list[str]:
    """One output stem per source, unique within the run (a/cam.mp4 and b/cam.mp4: cam, cam-2)."""
    names: list[str] = []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem or Path(path).name) or "source"
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names
