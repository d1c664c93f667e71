"""Accuracy measured through the runtime: mAP of any artifact on a YOLO-format dataset."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.evaluate.dataset import Dataset, load_dataset
from edgeport.evaluate.metrics import ImageEval, coco_ap, precision_recall_at, ultralytics_ap
from edgeport.progress import track
from edgeport.runtime import Detector, NmsOptions

# How predictions are gathered and scored under each protocol.
PROTOCOLS: dict[str, NmsOptions] = {
    "coco": NmsOptions(conf=0.001, iou=0.7, max_det=100, multi_label=False),
    "ultralytics": NmsOptions(conf=0.001, iou=0.7, max_det=300, multi_label=True),
}
# The resize each protocol uses: None keeps the artifact's own; `yolo val` resizes bilinearly.
INTERPOLATION: dict[str, str | None] = {"coco": None, "ultralytics": "linear"}


@dataclass
class EvalResult:
    """What `edgeport evaluate` reports; `to_dict` gives the JSON keys."""

    artifact: str
    backend: str
    protocol: str
    map50_95: float
    map50: float
    per_class: dict[str, float]
    per_class_map50: dict[str, float]
    precision: float
    recall: float
    conf: float
    images: int
    images_per_second: float
    exif: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def collect(detector: Detector, dataset: Dataset, nms: NmsOptions, progress: bool = True,
            description: str = "evaluate", exif: bool | None = None,
            interpolation: str | None = None) -> tuple[list[ImageEval], float]:
    """Run the detector on every image of the split; return per-image evals and images per second."""
    images: list[ImageEval] = []
    seconds = 0.0
    for path in track(dataset.images, len(dataset.images), description, enabled=progress):
        labels = dataset.labels(path)
        start = time.perf_counter()
        rgb = detector.load(path, exif=exif)
        detections = detector.detect_rgb([rgb], nms, interpolation)[0]
        seconds += time.perf_counter() - start
        height, width = rgb.shape[:2]
        cx, cy, w, h = (labels[:, 1] * width, labels[:, 2] * height, labels[:, 3] * width, labels[:, 4] * height)
        gt = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        images.append(ImageEval(gt, labels[:, 0].astype(np.int32), detections.xyxy, detections.score,
                                detections.class_id))
    return images, len(images) / seconds if seconds else 0.0


def evaluate(model: str | Path | Detector, data: str | Path, *, protocol: str = "coco", conf: float = 0.25,
             split: str = "val", backend: str | None = None, threads: int | None = None, exif: bool = True,
             progress: bool = True) -> EvalResult:
    """Evaluate an artifact through the runtime on a dataset split.

    protocol "coco" (101-point AP as pycocotools) or "ultralytics" (as `yolo val`). `conf` is the
    threshold for the reported precision and recall. Raises DatasetError and the runtime's errors.
    """
    return evaluate_with_predictions(model, data, protocol=protocol, conf=conf, split=split, backend=backend,
                                     threads=threads, exif=exif, progress=progress)[0]


def evaluate_with_predictions(model: str | Path | Detector, data: str | Path, *, protocol: str = "coco",
                              conf: float = 0.25, split: str = "val", backend: str | None = None,
                              threads: int | None = None, exif: bool = True,
                              progress: bool = True) -> tuple[EvalResult, list[ImageEval]]:
    """`evaluate`, also returning each image's ground truth and predictions (in dataset order)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    detector = model if isinstance(model, Detector) else Detector(model, backend=backend, threads=threads)
    dataset = load_dataset(data, split)
    if len(dataset.names) != len(detector.names):
        from edgeport.errors import DatasetError

        raise DatasetError(f"{dataset.yaml_path} has {len(dataset.names)} classes, the model "
                           f"{len(detector.names)} ({', '.join(detector.names)})")
    images, rate = collect(detector, dataset, PROTOCOLS[protocol], progress, f"evaluate {detector.path.name}", exif,
                           INTERPOLATION[protocol])
    return score(detector, dataset.names, images, protocol=protocol, conf=conf, rate=rate, exif=exif), images


def score(detector: Detector, names: tuple[str, ...], images: list[ImageEval], *, protocol: str = "coco",
          conf: float = 0.25, rate: float = 0.0, exif: bool = True) -> EvalResult:
    """The EvalResult of per-image evals gathered by `collect` (in dataset order, from one run or from shards)."""
    ap = coco_ap(images, len(names)) if protocol == "coco" else ultralytics_ap(images, len(names))
    valid = ~np.isnan(ap[:, 0])
    precision, recall = precision_recall_at(images, conf)
    return EvalResult(
        artifact=str(detector.path), backend=detector.backend_name, protocol=protocol,
        map50_95=float(np.nanmean(ap)) if valid.any() else 0.0,
        map50=float(np.nanmean(ap[:, 0])) if valid.any() else 0.0,
        per_class={n: float(ap[i].mean()) for i, n in enumerate(names) if valid[i]},
        per_class_map50={n: float(ap[i, 0]) for i, n in enumerate(names) if valid[i]},
        precision=precision, recall=recall, conf=conf, images=len(images), images_per_second=rate,
        exif=exif)
