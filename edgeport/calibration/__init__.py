"""Representative calibration sets: sampling, the runtime's own preprocessing, caching, coverage.

`build_calibration_set` samples a data set, an image folder or a video; `CalibrationSet` hands
the letterboxed frames to any converter in the layout and dtype it needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeport.errors import DatasetError, ImageError
from edgeport.evaluate.dataset import IMAGE_SUFFIXES, is_data_yaml, load_dataset
from edgeport.progress import Progress
from edgeport.runtime.image_io import load_image
from edgeport.runtime.preprocess import letterbox

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CACHE_VERSION = 1


@dataclass
class CalibrationSet:
    """Letterboxed RGB uint8 frames (N, H, W, 3) and what they cover.

    `sha256` hashes the frames themselves; converters record it as provenance.
    """

    frames: np.ndarray
    sources: list[str]
    coverage: dict = field(default_factory=dict)
    sha256: str = ""
    cached: bool = False
    batch: int = 1  # images per calibration batch: a model converted with a fixed --batch N takes N at once

    def at_batch(self, batch: int) -> "CalibrationSet":
        """The same set handed out `batch` images at a time (a fixed-batch model); batch 0 (dynamic) or 1: one."""
        return replace(self, batch=max(1, batch))

    def __len__(self) -> int:
        return len(self.frames)

    def batches(self, layout: str = "NCHW", dtype: str = "float32", scale: float = 1 / 255,
                batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Yield model-ready input batches, preprocessed as the runtime does, `batch_size` (default: the
        set's `batch`) images each; with more than one, the last batch is filled up with the first frames
        again, so that a fixed-batch model always gets whole batches (every frame is seen at least once)."""
        from edgeport.artifact import TensorSpec
        from edgeport.runtime.preprocess import to_input_tensor

        size = batch_size or self.batch
        spec = TensorSpec("input", (size, 0, 0, 0), dtype)
        for start in range(0, len(self.frames), size):
            group = self.frames[start:start + size]
            if size > 1 and len(group) < size:
                group = np.concatenate([group, np.resize(self.frames, (size - len(group), *self.frames.shape[1:]))])
            yield to_input_tensor(group, spec, layout, scale)


def _even(count: int, n: int) -> list[int]:
    """n indices spread evenly over range(count)."""
    if count <= n:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, n)})


def balanced_selection(class_sets: list[set[int]], n: int, num_classes: int, seed: int = 0) -> list[int]:
    """Pick up to n image indices so that every class is as represented as the data allows.

    Repeatedly takes an unused image holding the least-covered class still available; images
    without labels fill the rest, spread over the set.
    """
    rng = np.random.default_rng(seed)
    pools = {c: [i for i in rng.permutation(len(class_sets)).tolist() if c in class_sets[i]]
             for c in range(num_classes)}
    used: set[int] = set()
    counts = np.zeros(num_classes, np.int64)
    chosen: list[int] = []
    while len(chosen) < n:
        open_classes = [c for c in range(num_classes) if any(i not in used for i in pools[c])]
        if not open_classes:
            break
        least = min(open_classes, key=lambda c: (counts[c], c))
        pick = next(i for i in pools[least] if i not in used)
        used.add(pick)
        chosen.append(pick)
        for c in class_sets[pick]:
            counts[c] += 1
    if len(chosen) < n:
        rest = [i for i in range(len(class_sets)) if i not in used]
        chosen += [rest[i] for i in _even(len(rest), n - len(chosen))]
    return sorted(chosen)


def _sources(source: Path, n: int, split: str, seed: int) -> tuple[list[Path], dict]:
    """Return the chosen image files and the class coverage for a DATA.yaml or an image folder."""
    if is_data_yaml(source):
        import yaml

        data = yaml.safe_load(source.read_text()) or {}
        use = split if split in data else "val"
        dataset = load_dataset(source, use)
        class_sets = [set(dataset.labels(p)[:, 0].astype(int).tolist()) for p in dataset.images]
        picked = balanced_selection(class_sets, n, len(dataset.names), seed)
        per_class = {name: sum(1 for i in picked if c in class_sets[i]) for c, name in enumerate(dataset.names)}
        return [dataset.images[i] for i in picked], {"split": use, "images_per_class": per_class}
    if source.is_dir():
        images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DatasetError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [images[i] for i in _even(len(images), n)], {"images_per_class": None}
    raise DatasetError(f"{source}: not a DATA.yaml, an image folder or a video ({', '.join(VIDEO_SUFFIXES)})")


def _video_frames(video: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    """Read n frames spread over the whole video, as RGB."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DatasetError(f"{video}: OpenCV cannot open this video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(_even(total, n)) if total > 0 else None
    frames, names, index = [], [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if wanted is None or index in wanted:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            names.append(f"{video.name}#frame{index}")
        index += 1
    capture.release()
    if not frames:
        raise DatasetError(f"{video}: no frame could be read")
    if wanted is None and len(frames) > n:
        keep = _even(len(frames), n)
        frames, names = [frames[i] for i in keep], [names[i] for i in keep]
    return frames, names


def _key(source: Path, paths: list[Path], n: int, imgsz: tuple[int, int], pad: int, seed: int) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, n, list(imgsz), pad, seed]).encode())
    for path in paths:
        digest.update(str(path.name).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_calibration_set(source: str | Path, *, imgsz: tuple[int, int] | int = 320, n: int = 300,
                          out_dir: str | Path | None = None, split: str = "train", seed: int = 0,
                          pad_value: int = 114, progress: bool = True) -> CalibrationSet:
    """Sample a representative set from a DATA.yaml, an image folder or a video.

    With labels the sample is class-balanced; without, spread over the set (over time for a
    video). Frames are letterboxed by the runtime's own code. With `out_dir` the set is cached
    as calibration.npz + manifest.json and reused while the sources and options are unchanged.
    Raises DatasetError for an unusable source; unreadable images are skipped and counted.
    """
    source = Path(source)
    size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    if not source.exists():
        raise DatasetError(f"calibration source not found: {source}")
    is_video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    paths = [source] if is_video else None
    coverage: dict = {}
    if not is_video:
        paths, coverage = _sources(source, n, split, seed)
    key = _key(source, paths, n, size, pad_value, seed)
    out = Path(out_dir) if out_dir else None
    if out and (out / "manifest.json").is_file() and (out / "calibration.npz").is_file():
        manifest = json.loads((out / "manifest.json").read_text())
        if manifest.get("key") == key:
            frames = np.load(out / "calibration.npz")["frames"]
            return CalibrationSet(frames, manifest["sources"], manifest["coverage"], manifest["sha256"], cached=True)
    if is_video:
        rgb_frames, names = _video_frames(source, n)
        items = list(zip(names, rgb_frames))
    else:
        items = [(str(p), p) for p in paths]
    frames, sources, skipped, sizes = [], [], [], {}
    bar = Progress(len(items), "calibration set", enabled=progress)
    for name, item in items:
        try:
            rgb = item if isinstance(item, np.ndarray) else load_image(item)
        except ImageError as exc:
            skipped.append(f"{name}: {exc}")
            bar.update()
            continue
        sizes[f"{rgb.shape[1]}x{rgb.shape[0]}"] = sizes.get(f"{rgb.shape[1]}x{rgb.shape[0]}", 0) + 1
        frames.append(letterbox(rgb, size, pad_value)[0])
        sources.append(name)
        bar.update()
    if not frames:
        raise DatasetError(f"{source}: none of the {len(items)} calibration images could be read")
    stacked = np.stack(frames)
    coverage = {**coverage, "images": len(frames), "sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
                "skipped": skipped, "source": str(source), "imgsz": list(size)}
    result = CalibrationSet(stacked, sources, coverage, hashlib.sha256(stacked.tobytes()).hexdigest())
    if out:
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "calibration.npz", frames=stacked)
        (out / "manifest.json").write_text(json.dumps({"key": key, "sources": sources, "coverage": coverage,
                                                       "sha256": result.sha256}, indent=2))
    return result


def describe_coverage(calibration: CalibrationSet) -> str:
    """A few lines saying what the set covers: images per class, frame sizes, skipped files."""
    cov = calibration.coverage
    lines = [f"calibration set: {len(calibration)} images from {cov.get('source')}"
             f"{' (cached)' if calibration.cached else ''}, sha256 {calibration.sha256[:12]}"]
    if cov.get("images_per_class"):
        lines.append("  images per class: " + ", ".join(f"{k} {v}" for k, v in cov["images_per_class"].items()))
    lines.append("  sizes seen: " + ", ".join(f"{k} ({v})" for k, v in list(cov.get("sizes", {}).items())[:8]))
    if cov.get("skipped"):
        lines.append(f"  skipped {len(cov['skipped'])} unreadable: " + "; ".join(cov["skipped"][:3]))
    return "\n".join(lines)
