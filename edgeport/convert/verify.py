"""The agreement check every written artifact passes before `convert` reports success.

The artifact runs through the runtime on sample images and is matched against its float source
(the Ultralytics model in torch, or the source ONNX): boxes with area, detections matched, score shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeport.errors import ConversionError

# share of the float model's detections the artifact must find (IoU >= 0.5, same class), per precision
MIN_MATCHED = {"fp32": 0.9, "fp16": 0.85, "dynamic": 0.7}
MIN_MATCHED_INT8 = 0.5  # every integer / palettized precision
MAX_SCORE_SHIFT = {"fp32": 0.02, "fp16": 0.05}
MAX_SCORE_SHIFT_INT8 = 0.15
MIN_DETECTIONS = 5  # below this many float detections the check lowers its threshold, then says it could not judge
CONFS = (0.25, 0.05)


@dataclass
class Agreement:
    """How an artifact's detections compare with its float source's on the same images."""

    images: int
    conf: float
    float_detections: int
    artifact_detections: int
    matched: float | None  # share of float detections matched
    score_shift: float | None  # mean artifact - float score over matched pairs
    zero_area: float  # share of the artifact's boxes with no area
    problems: list[str] = field(default_factory=list)

    @property
    def judged(self) -> bool:
        return self.float_detections >= MIN_DETECTIONS

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "conf": self.conf, "float_detections": self.float_detections,
                "artifact_detections": self.artifact_detections, "matched": self.matched,
                "score_shift": self.score_shift, "zero_area": self.zero_area, "problems": self.problems,
                "judged": self.judged}


def check_images(data: Path | None, n: int = 8) -> list[Path]:
    """Up to n images to check on: the val split of a DATA.yaml, an image folder, else the bundled sample's."""
    from edgeport import sample
    from edgeport.evaluate.dataset import IMAGE_SUFFIXES, is_data_yaml, load_dataset

    images: Sequence[Path] = ()
    if data is not None and is_data_yaml(data):
        images = load_dataset(data).images
    elif data is not None and Path(data).is_dir():
        images = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        images = load_dataset(sample.data_yaml()).images
    step = max(1, len(images) // n)
    return list(images[::step][:n])


class FloatReference:
    """Detections of the float source on RGB images, selected as the artifact's record says (NMS or top-k)."""

    def __init__(self, source: Path, imgsz: int | None) -> None:
        self.source = source
        if source.suffix.lower() == ".pt":
            from edgeport.convert.source import load_source

            self.model, self.detector = load_source(source, imgsz), None
        else:
            from edgeport.runtime import Detector

            self.model, self.detector = None, Detector(source)

    def detect(self, images_rgb: list[np.ndarray], record, conf: float) -> list:
        from edgeport.runtime.detections import Detections
        from edgeport.runtime.postprocess import select_and_nms, select_topk
        from edgeport.runtime.preprocess import letterbox

        if self.detector is not None:
            from edgeport.runtime.detector import NmsOptions

            return self.detector.detect_rgb(images_rgb, NmsOptions(conf=conf))
        size = record.imgsz
        results = []
        for image in images_rgb:
            canvas, info = letterbox(image, size, record.preprocess.pad_value, record.preprocess.interpolation)
            tensor = (canvas.astype(np.float32) * np.float32(record.preprocess.scale)).transpose(2, 0, 1)[None]
            boxes, scores = self.model.reference(tensor)
            boxes = boxes[0] * np.array([size[1], size[0], size[1], size[0]], np.float32)
            if self.model.one_to_one:
                xyxy, score, class_id = select_topk(boxes, scores[0], conf=conf, max_det=300)
            else:
                xyxy, score, class_id = select_and_nms(boxes, scores[0], conf=conf, iou=0.45, max_det=300)
            results.append(Detections(info.to_original(xyxy), score, class_id, record.names, info.source_hw))
        return results


def _with_area(detections):
    """The float model's detections whose box has an area: one with none (an untrained head's inverted
    box, or one wholly in the letterbox padding) can match nothing by IoU, so it says nothing of the artifact."""
    from dataclasses import replace

    xyxy = detections.xyxy
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    if keep.all():
        return detections
    return replace(detections, xyxy=xyxy[keep], score=detections.score[keep], class_id=detections.class_id[keep])


def measure(detector, reference: FloatReference, images: list[Path]) -> Agreement:
    """Agreement of an opened artifact with the float reference on `images`."""
    from edgeport.evaluate.metrics import ImageEval
    from edgeport.report.agreement import agreement
    from edgeport.runtime.detector import NmsOptions

    rgb = [detector.load(path) for path in images]
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    for conf in CONFS:
        base = [_with_area(d) for d in reference.detect(rgb, detector.record, conf)]
        if sum(len(d.score) for d in base) >= MIN_DETECTIONS:
            break
    ours = detector.detect_rgb(rgb, NmsOptions(conf=conf))

    def evals(detections) -> list[ImageEval]:
        return [ImageEval(*empty, d.xyxy, d.score, d.class_id) for d in detections]

    share, shift, total = agreement(evals(base), evals(ours), conf=conf)
    boxes = np.concatenate([d.xyxy for d in ours]) if ours else np.zeros((0, 4))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
    return Agreement(images=len(images), conf=conf, float_detections=total,
                     artifact_detections=int(len(boxes)), matched=share, score_shift=shift,
                     zero_area=float((area <= 1e-3).mean()) if len(area) else 0.0)


def judge(result: Agreement, precision: str) -> Agreement:
    """Fill result.problems for the artifact's precision; return it."""
    if result.zero_area > 0.5:
        result.problems.append(f"{result.zero_area:.0%} of its boxes have no area (the box decode does not fit "
                               "the head)")
    if not result.judged:
        return result
    minimum = MIN_MATCHED.get(precision, MIN_MATCHED_INT8)
    if result.matched is not None and result.matched < minimum:
        result.problems.append(f"it finds {result.matched:.0%} of the float model's {result.float_detections} "
                               f"detections (IoU >= 0.5, same class; at least {minimum:.0%} expected)")
    limit = MAX_SCORE_SHIFT.get(precision, MAX_SCORE_SHIFT_INT8)
    if result.score_shift is not None and abs(result.score_shift) > limit:
        result.problems.append(f"its scores shift by {result.score_shift:+.3f} on average (at most {limit} "
                               "expected)")
    return result


def open_runnable(artifact):
    """A Detector on the file this host can run for `artifact`: itself, its proxy, or an integer sibling it
    was built from (an Edge TPU model without the device); None when there is none."""
    from edgeport.errors import BackendError, MissingDependencyError, ModelNotFoundError
    from edgeport.runtime import Detector

    proxy = artifact.record.provenance.get("proxy")
    candidates = [artifact.path]
    if isinstance(proxy, dict) and proxy.get("artifact"):
        candidates.append(artifact.path.parent / str(proxy["artifact"]))
    candidates += [p for p in artifact.extra_files if p.suffix in (".tflite", ".onnx")]
    for path in candidates:
        try:
            return Detector(path)
        except (BackendError, MissingDependencyError, ModelNotFoundError):  # not runnable here: try the next
            continue
    return None


def runnable_file(artifact) -> Path | None:
    """The path `open_runnable` opens, or None."""
    detector = open_runnable(artifact)
    return None if detector is None else detector.path


def verify_artifact(artifact, source: Path, imgsz: int | None, data: Path | None,
                    reference: FloatReference | None = None) -> dict[str, Any]:
    """Check `artifact` against its float source; return what was measured (for the record and the log).

    Raises ConversionError naming the artifact when its detections do not agree with the float model's.
    """
    detector = open_runnable(artifact)
    if detector is None:
        return {"checked": False, "reason": f"no backend on this host runs {artifact.path.name} or a proxy of it"}
    path = detector.path
    reference = reference or FloatReference(source, imgsz)
    result = judge(measure(detector, reference, check_images(data)), artifact.record.precision)
    if result.problems:
        raise ConversionError(f"{artifact.path.name} does not agree with its float source {source.name} on "
                              f"{result.images} images: " + "; ".join(result.problems))
    return {"checked": True, "through": path.name, **result.to_dict()}


def describe(check: dict[str, Any]) -> str:
    """One line for the log."""
    if not check.get("checked"):
        return f"check: not checked ({check.get('reason')})"
    if not check.get("judged"):
        return (f"check: {check['float_detections']} float detections on {check['images']} images at conf "
                f"{check['conf']}: too few to judge agreement (boxes have area)")
    return (f"check: agrees with the float model on {check['images']} images: {check['matched']:.0%} of "
            f"{check['float_detections']} detections matched, score shift {check['score_shift']:+.3f}")
