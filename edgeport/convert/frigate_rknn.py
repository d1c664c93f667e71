"""Frigate's rknn detector: the toolkit build of the Frigate-layout ONNX (one (1, 4 + nc, N) output), its int8
body calibrated as the rknn target's, the decode tail kept in float16, and its check in the simulator.

The check compares the simulator's output with the float model's anchor by anchor where Frigate's yolo-generic
keeps them (score > 0.4), and after Frigate's decode; a broken copy is removed and the convert fails.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


# Frigate's yolo-generic post-processing (frigate/util/model.py): score threshold, NMS threshold, boxes kept
FRIGATE_SCORE, FRIGATE_NMS, FRIGATE_MAX = 0.4, 0.4, 20
# the SoCs Frigate's rknn detector accepts (frigate/const.py; an rk3588s runs rk3588 models)
FRIGATE_SOCS = ("rk3562", "rk3566", "rk3568", "rk3576", "rk3588")
CHECK_IMAGES = 16
# the .rknn's anchor may score up to this much under Frigate's threshold and still count: int8 shifts scores
# (edgeport's own check allows 0.15 on average), and a 0.41 that became 0.39 is a flip, not a broken model
SCORE_MARGIN = 0.15


@dataclass(frozen=True)
class FrigateAgreement:
    """The .rknn's one output (simulator) against the float Frigate-layout ONNX's, on the same frames.

    Judged anchor by anchor on the tensor Frigate reads: every anchor whose best class score passes Frigate's
    0.4 in the float model must, in the .rknn, have the same best class, a score above 0.4 - SCORE_MARGIN and
    its box at IoU >= 0.5. Frigate's own decode (threshold, its NMS, 20 boxes) is reported beside it: its NMS
    is handed corner boxes read as x y w h, so which of two overlapping boxes survives can flip on a tiny score
    change, and a share after it says less about the model than the anchors do."""

    images: int
    anchors: int  # float anchors above Frigate's 0.4
    anchors_matched: float
    float_detections: int  # after Frigate's decode
    frigate_matched: float  # share of those the .rknn's Frigate decode has too (same class, IoU >= 0.5)
    max_score: tuple[float, float]  # (float, rknn) highest class score over all anchors

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "anchors": self.anchors, "anchors_matched": round(self.anchors_matched, 4),
                "float_detections": self.float_detections, "frigate_matched": round(self.frigate_matched, 4),
                "max_score": [round(v, 4) for v in self.max_score]}

    def problem(self, precision: str) -> str:
        """Why the copy is broken ("" when it is not), with edgeport's own agreement floors per precision."""
        from edgeport.convert.verify import MIN_MATCHED, MIN_MATCHED_INT8

        minimum = MIN_MATCHED.get(precision, MIN_MATCHED_INT8)
        floats, ours = self.max_score
        if floats > 0.05 and ours < 0.5 * floats:
            return f"its highest class score is {ours:.3f} where the float model's is {floats:.3f}"
        if self.anchors and self.anchors_matched < minimum:
            return (f"only {self.anchors_matched:.0%} of the {self.anchors} anchors Frigate keeps from the float "
                    f"model keep their class, a score above {FRIGATE_SCORE - SCORE_MARGIN:.2f} and their box "
                    f"(IoU >= 0.5) (needs {minimum:.0%})")
        return ""

    def describe(self) -> str:
        return (f"{self.anchors_matched:.0%} of the {self.anchors} anchors above Frigate's {FRIGATE_SCORE} alike; "
                f"after Frigate's decode {self.frigate_matched:.0%} of {self.float_detections} detections, on "
                f"{self.images} images")


def frigate_detections(output: np.ndarray, width: int, height: int, score: float = FRIGATE_SCORE) -> np.ndarray:
    """Frigate's yolo-generic reading of one output, as its source does it: rows of (class, score, x1, y1, x2, y2)
    in input pixels. Like Frigate, the x1 y1 x2 y2 boxes go to OpenCV's NMSBoxes, which reads them as x y w h."""
    import cv2

    rows = np.squeeze(output)
    rows = rows.T if rows.shape[0] < rows.shape[1] else rows
    scores = rows[:, 4:].max(axis=1)
    rows, scores = rows[scores > score], scores[scores > score]
    classes = rows[:, 4:].argmax(axis=1)
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), score, FRIGATE_NMS),
                      dtype=int).reshape(-1)[:FRIGATE_MAX]
    return np.concatenate([classes[keep, None], scores[keep, None], boxes[keep]], axis=1).reshape(-1, 6)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)


def match(reference: np.ndarray, candidate: np.ndarray) -> int:
    """How many reference detections find a candidate of the same class at IoU >= 0.5 (greedy, best score first)."""
    free, found = np.ones(len(candidate), bool), 0
    for row in reference[np.argsort(-reference[:, 1])]:
        same = free & (candidate[:, 0] == row[0])
        if same.any():
            ious = np.where(same, _iou(row[2:], candidate[:, 2:]), 0.0)
            if ious.max() >= 0.5:
                free[int(ious.argmax())], found = False, found + 1
    return found


def _rows(output: np.ndarray) -> np.ndarray:
    rows = np.squeeze(output)
    return rows.T if rows.shape[0] < rows.shape[1] else rows


def _corners(rows: np.ndarray) -> np.ndarray:
    return np.stack([rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2,
                     rows[:, 0] + rows[:, 2] / 2, rows[:, 1] + rows[:, 3] / 2], axis=1)


def anchors_alike(reference: np.ndarray, output: np.ndarray) -> tuple[int, int]:
    """(float anchors above Frigate's threshold, how many of them the .rknn keeps alike) on one image."""
    ref, ours = _rows(reference), _rows(output)
    kept = np.where(ref[:, 4:].max(axis=1) > FRIGATE_SCORE)[0]
    if not len(kept):
        return 0, 0
    ref, ours = ref[kept], ours[kept]
    same = (ref[:, 4:].argmax(axis=1) == ours[:, 4:].argmax(axis=1)) & \
        (ours[:, 4:].max(axis=1) > FRIGATE_SCORE - SCORE_MARGIN)
    boxes_a, boxes_b = _corners(ref), _corners(ours)
    ious = np.array([_iou(a, b[None])[0] for a, b in zip(boxes_a, boxes_b)])
    return len(kept), int((same & (ious >= 0.5)).sum())


def agreement(reference: np.ndarray, outputs: np.ndarray, width: int, height: int) -> FrigateAgreement:
    """Compare per-image (N, 4 + nc, A) outputs of the float model and the .rknn: anchor by anchor, and after
    Frigate's decode."""
    pairs = [anchors_alike(a, b) for a, b in zip(reference, outputs)]
    anchors, alike = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    floats = [frigate_detections(o, width, height) for o in reference]
    ours = [frigate_detections(o, width, height) for o in outputs]
    n_float = sum(len(a) for a in floats)
    found = sum(match(a, b) for a, b in zip(floats, ours))
    return FrigateAgreement(images=len(reference), anchors=anchors, anchors_matched=alike / anchors if anchors else 1.0,
                            float_detections=n_float, frigate_matched=found / n_float if n_float else 1.0,
                            max_score=(float(reference[:, 4:].max()), float(outputs[:, 4:].max())))


def tail_nodes(model) -> list[str]:
    """Names of the ONNX nodes of the decode tail: everything after a Reshape/Flatten that turns a Conv's
    (N, C, H, W) map into (N, C, H*W) and has no Conv with a kernel wider than 1 after it (so not an attention
    block's flatten, but the head's per-level flatten, the DFL, the anchor decode, the sigmoid and the join)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*graph.value_info, *graph.output)}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wide = {w.name for w in graph.initializer if len(w.dims) == 4 and (w.dims[2] > 1 or w.dims[3] > 1)}

    def after(node) -> list:
        seen, front, out = set(), [node], []
        while front:
            current = front.pop()
            if current.name not in seen:
                seen.add(current.name)
                out.append(current)
                front.extend(c for o in current.output for c in consumers.get(o, []))
        return out

    tail: dict[str, None] = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if node.op_type in ("Reshape", "Flatten") and source is not None and source.op_type == "Conv" \
                and rank.get(node.output[0]) == 3:
            below = after(node)
            if not any(n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in wide for n in below):
                tail.update((n.name, None) for n in below)
    return list(tail)


def check_frames(data: Path | None, imgsz: int) -> np.ndarray:
    """(N, S, S, 3) uint8 letterboxed RGB frames of up to CHECK_IMAGES val images (the bundled sample's without
    data), the runtime's preprocessing."""
    import cv2

    from edgeport.convert.verify import check_images
    from edgeport.runtime.preprocess import letterbox

    frames = []
    for path in check_images(data, CHECK_IMAGES):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            frames.append(letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (imgsz, imgsz))[0])
    return np.stack(frames)


def float_outputs(onnx_path: Path, frames: np.ndarray) -> np.ndarray:
    """The float Frigate-layout ONNX's output on each frame (onnxruntime, pixels / 255, NCHW)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    tensors = frames.transpose(0, 3, 1, 2).astype(np.float32) / 255
    return np.concatenate([session.run(None, {name: t[None]})[0] for t in tensors])


def build(job, artifact, onnx_path: Path, out: Path, bundle: Path, say: Callable[[str], None]
          ) -> tuple[dict, FrigateAgreement]:
    """Build `out` (+ simulator bundle) from the Frigate-layout ONNX at `onnx_path` with rknn-toolkit2 and
    measure it in the simulator against that ONNX; returns (the worker's result, the agreement)."""
    import onnx

    from edgeport.convert.rknn_target import ALGORITHMS, _calibrate, run_worker

    record, options = artifact.record, job.options
    size = record.imgsz[0]
    model = onnx.load(str(onnx_path))
    with tempfile.TemporaryDirectory(prefix="edgeport-frigate-rknn-") as tmp:
        work = Path(tmp)
        frames = check_frames(options.data, size)
        np.save(work / "check.npy", frames)
        task: dict[str, Any] = {
            "onnx": str(onnx_path), "out": str(out.resolve()), "bundle": str(bundle.resolve()),
            "platform": record.provenance["platform"], "precision": record.precision, "imgsz": size,
            "quantized_dtype": "w8a8", "quantized_algorithm": ALGORITHMS["minmax"], "dataset": None,
            "result": str(work / "result.json"), "check_frames": str(work / "check.npy"),
            "check_outputs": str(work / "check.npz")}
        if record.precision == "int8":
            method = str(record.provenance.get("calibration_method", ""))
            task["quantized_algorithm"] = ALGORITHMS["entropy" if method.startswith("KL") else "minmax"]
            dataset, _ = _calibrate(job, size, work, task["quantized_algorithm"])
            task.update(dataset=str(dataset), float_layers=tail_nodes(model))
        (work / "job.json").write_text(json.dumps(task))
        how = "int8, decode tail in float16" if record.precision == "int8" else "fp16"
        say(f"frigate: building {out.name} from the Frigate-layout ONNX ({how})")
        result = run_worker(work / "job.json", say, work / "stderr.txt")
        simulated = np.load(work / "check.npz")["arr_0"]
        reference = float_outputs(onnx_path, frames)
    height, width = record.imgsz
    return result, agreement(reference, simulated, width, height)
