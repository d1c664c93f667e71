"""From raw model outputs to boxes: dequantize, decode, vectorized class-aware NMS."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from edgeport.artifact import Decode, TensorSpec


def dequantize(tensor: np.ndarray, spec: TensorSpec) -> npt.NDArray[np.float32]:
    """Return a float32 view of an output: (q - zero_point) * scale for integer tensors."""
    if spec.quantized:
        return (tensor.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
    return tensor.astype(np.float32, copy=False)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Convert (N, 4) centre/size boxes to corner boxes."""
    out = np.empty_like(xywh)
    half_w, half_h = xywh[:, 2] / 2, xywh[:, 3] / 2
    out[:, 0] = xywh[:, 0] - half_w
    out[:, 1] = xywh[:, 1] - half_h
    out[:, 2] = xywh[:, 0] + half_w
    out[:, 3] = xywh[:, 1] + half_h
    return out


@lru_cache(maxsize=16)
def _anchor_centres(grid_h: int, grid_w: int, stride: int) -> np.ndarray:
    """(h*w, 2) anchor centres in input pixels, row-major like the head's flattening."""
    ys, xs = np.divmod(np.arange(grid_h * grid_w, dtype=np.float32), grid_w)
    return np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=1)


def decode_dfl(outputs: dict[str, np.ndarray], decode: Decode,
               min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode raw per-level head outputs: DFL expectation, anchor offsets and sigmoid, in float.

    With `min_score`, only anchors whose best class score exceeds it get a box (the others stay
    zeros and are dropped by the confidence filter anyway): the softmax is the costly part.
    Returns (boxes (B, N, 4) xyxy in input pixels, scores (B, N, nc)).
    """
    bins = np.arange(decode.reg_max, dtype=np.float32)
    boxes, scores = [], []
    for level in decode.levels:
        logits, cls = outputs[level["box"]], outputs[level["cls"]]
        batch, count = logits.shape[:2]
        score = 1.0 / (1.0 + np.exp(-cls))
        centres = _anchor_centres(int(level["grid"][0]), int(level["grid"][1]), int(level["stride"]))
        level_boxes = np.zeros((batch, count, 4), np.float32)
        if min_score is None:
            batch_index, anchor = np.divmod(np.arange(batch * count), count)
        else:
            batch_index, anchor = np.nonzero(score.max(axis=-1) > min_score)
        if len(anchor):
            chosen = logits[batch_index, anchor].reshape(-1, 4, decode.reg_max)
            if decode.reg_max == 1:  # no DFL (YOLO26): the head gives the distances themselves
                distance = chosen[..., 0] * np.float32(level["stride"])
            else:
                weights = np.exp(chosen - chosen.max(axis=-1, keepdims=True))
                distance = (weights @ bins) / weights.sum(axis=-1) * np.float32(level["stride"])  # ltrb
            centre = centres[anchor]
            level_boxes[batch_index, anchor] = np.concatenate([centre - distance[:, :2], centre + distance[:, 2:]], 1)
        boxes.append(level_boxes)
        scores.append(score)
    return np.concatenate(boxes, axis=1), np.concatenate(scores, axis=1).astype(np.float32)


def decode_outputs(outputs: dict[str, np.ndarray], decode: Decode, nc: int, size_hw: tuple[int, int],
                   min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (boxes (B, N, 4) xyxy in model-input pixels, scores (B, N, nc)) from float outputs.

    `min_score` lets a decoder skip boxes no detection above that score can use.
    """
    if decode.kind == "dfl":
        return decode_dfl(outputs, decode, min_score)
    if decode.kind == "end2end":
        return decode_end2end(outputs[decode.boxes], nc, size_hw, decode.normalized)
    if decode.kind == "split":
        boxes, scores = outputs[decode.boxes], outputs[decode.scores]
    elif decode.kind == "ultralytics":
        raw = outputs[decode.boxes]
        if raw.shape[1] != 4 + nc and raw.shape[2] == 4 + nc:
            raw = raw.transpose(0, 2, 1)  # (B, N, 4+nc) -> (B, 4+nc, N)
        raw = raw.transpose(0, 2, 1)
        boxes, scores = raw[..., :4], raw[..., 4:]
    else:
        raise ValueError(f"unknown decode kind {decode.kind!r}")
    batch, count = boxes.shape[:2]
    flat = boxes.reshape(-1, 4)
    if decode.box_format == "xywh":
        flat = xywh_to_xyxy(flat)
    elif decode.normalized:
        flat = flat.copy()
    if decode.normalized:
        height, width = size_hw
        flat *= np.array([width, height, width, height], dtype=np.float32)
    return flat.reshape(batch, count, 4), scores


def decode_end2end(rows: np.ndarray, nc: int, size_hw: tuple[int, int],
                   normalized: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' NMS-free output (B, K, 6: x1, y1, x2, y2, score, class) as (boxes (B, K, 4) in input
    pixels, scores (B, K, nc) holding each row's score at its class, zero elsewhere)."""
    boxes = rows[..., :4].astype(np.float32, copy=True)
    if normalized:
        height, width = size_hw
        boxes *= np.array([width, height, width, height], dtype=np.float32)
    scores = np.zeros(rows.shape[:2] + (nc,), np.float32)
    class_id = np.clip(np.rint(rows[..., 5]).astype(np.int64), 0, nc - 1)
    batch, row = np.indices(rows.shape[:2])
    scores[batch, row, class_id] = rows[..., 4]
    return boxes, scores


def select_topk(boxes: np.ndarray, scores: np.ndarray, *, conf: float,
                max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from a one-to-one (NMS-free) head, as Ultralytics selects them: the
    max_det anchors of best score, then the max_det best (anchor, class) pairs above `conf`; no NMS.

    boxes (N, 4) xyxy, scores (N, nc). Returns (xyxy (K, 4) float32, score (K,) float32, class_id (K,) int32).
    """
    best = scores.max(axis=1)
    anchors = np.nonzero(best > conf)[0]
    if len(anchors) > max_det:
        anchors = anchors[np.argpartition(-best[anchors], max_det)[:max_det]]
    index, class_id = np.nonzero(scores[anchors] > conf)
    index = anchors[index]
    score = scores[index, class_id]
    order = np.argsort(-score, kind="stable")[:max_det]
    index, class_id, score = index[order], class_id[order], score[order]
    return (boxes[index].astype(np.float32, copy=False).reshape(-1, 4), score.astype(np.float32),
            class_id.astype(np.int32))


def nms(xyxy: np.ndarray, score: np.ndarray, iou_threshold: float, max_det: int) -> npt.NDArray[np.intp]:
    """Greedy NMS over (N, 4) boxes; return kept indices, best score first, at most max_det."""
    order = np.argsort(-score, kind="stable")
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def select_and_nms(boxes: np.ndarray, scores: np.ndarray, *, conf: float, iou: float, max_det: int,
                   multi_label: bool = False, agnostic: bool = False,
                   max_candidates: int = 30000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filter one image's candidates by confidence, then class-aware NMS.

    boxes (N, 4) xyxy, scores (N, nc). multi_label keeps every class above `conf` per box.
    Candidates with a non-finite score or box (NaN, Inf) are dropped.
    Returns (xyxy (K, 4) float32, score (K,) float32, class_id (K,) int32), best first.
    """
    if multi_label:
        index, class_id = np.nonzero(scores > conf)
        score = scores[index, class_id]
    else:
        class_id = scores.argmax(axis=1)
        score = scores[np.arange(len(scores)), class_id]
        index = np.nonzero(score > conf)[0]
        class_id, score = class_id[index], score[index]
    finite = np.isfinite(score) & np.isfinite(boxes[index]).all(axis=1)  # a NaN/Inf output is no detection
    if not finite.all():
        index, class_id, score = index[finite], class_id[finite], score[finite]
    if len(score) > max_candidates:
        top = np.argpartition(-score, max_candidates)[:max_candidates]
        index, class_id, score = index[top], class_id[top], score[top]
    xyxy = boxes[index].astype(np.float32, copy=False)
    if len(score) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    # offset boxes per class so that boxes of different classes never overlap (class-aware NMS)
    offset = 0.0 if agnostic else class_id.astype(np.float32)[:, None] * (float(np.abs(xyxy).max()) + 1.0) * 2
    keep = nms(xyxy + offset, score, iou, max_det)
    return xyxy[keep], score[keep].astype(np.float32), class_id[keep].astype(np.int32)
