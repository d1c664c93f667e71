"""Detection metrics: COCO's 101-point mAP and Ultralytics' protocol, on plain numpy arrays.

`ImageEval` holds one image's ground truth and predictions in the same pixel frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageEval:
    """Ground truth and predictions of one image: xyxy pixels, classes, scores."""

    gt_xyxy: np.ndarray  # (M, 4)
    gt_class: np.ndarray  # (M,)
    pred_xyxy: np.ndarray  # (N, 4)
    pred_score: np.ndarray  # (N,)
    pred_class: np.ndarray  # (N,)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _greedy_match(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """COCO matching of score-sorted detections: (T, D) bool, each gt used once per threshold."""
    n_det, n_gt = ious.shape
    matched = np.zeros((len(thresholds), n_det), bool)
    taken = np.zeros((len(thresholds), n_gt), bool)
    if n_gt == 0:
        return matched
    floor = np.minimum(thresholds, 1 - 1e-10)[:, None]
    for d in range(n_det):
        row = np.where(taken, -1.0, ious[d][None, :])  # (T, G)
        # like pycocotools, among equal IoUs the later ground truth wins
        best = n_gt - 1 - np.argmax(row[:, ::-1], axis=1)
        best_iou = row[np.arange(len(thresholds)), best]
        ok = best_iou >= floor[:, 0]
        matched[ok, d] = True
        taken[np.nonzero(ok)[0], best[ok]] = True
    return matched


def coco_ap(images: list[ImageEval], num_classes: int, max_dets: int = 100) -> np.ndarray:
    """COCO bbox AP (area 'all', maxDets per image and class, 101 recall points), as pycocotools.

    Returns (num_classes, 10) AP per class and IoU threshold; NaN for classes without ground truth.
    """
    ap = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    for c in range(num_classes):
        scores, matches, n_gt = [], [], 0
        for image in images:
            gt = image.gt_xyxy[image.gt_class == c]
            keep = image.pred_class == c
            det, score = image.pred_xyxy[keep], image.pred_score[keep]
            n_gt += len(gt)
            order = np.argsort(-score, kind="mergesort")[:max_dets]
            det, score = det[order], score[order]
            if len(det) == 0:
                continue
            scores.append(score)
            matches.append(_greedy_match(box_iou(det, gt), IOU_THRESHOLDS))
        if n_gt == 0:
            continue
        if not scores:
            ap[c] = 0.0
            continue
        all_scores = np.concatenate(scores)
        all_matches = np.concatenate(matches, axis=1)
        order = np.argsort(-all_scores, kind="mergesort")
        tp = np.cumsum(all_matches[:, order], axis=1, dtype=np.float64)
        fp = np.cumsum(~all_matches[:, order], axis=1, dtype=np.float64)
        for t in range(len(IOU_THRESHOLDS)):
            recall = tp[t] / n_gt
            precision = tp[t] / (tp[t] + fp[t] + np.spacing(1))
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            index = np.searchsorted(recall, RECALL_POINTS, side="left")
            sampled = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
            ap[c, t] = sampled.mean()
    return ap


def ultralytics_correct(image: ImageEval) -> np.ndarray:
    """Ultralytics' match_predictions: (N, 10) bool, by IoU then uniqueness of pred and label."""
    correct = np.zeros((len(image.pred_score), len(IOU_THRESHOLDS)), bool)
    if len(image.gt_class) == 0 or len(image.pred_score) == 0:
        return correct
    iou = box_iou(image.gt_xyxy, image.pred_xyxy)  # (M, N)
    iou = iou * (image.gt_class[:, None] == image.pred_class[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        matches = np.array(np.nonzero(iou >= threshold)).T
        if len(matches) == 0:
            continue
        if len(matches) > 1:
            matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1], t] = True
    return correct


def ultralytics_ap(images: list[ImageEval], num_classes: int) -> np.ndarray:
    """Ultralytics' ap_per_class: envelope sampled at 101 points, integrated with the trapezoid rule.

    Returns (num_classes, 10) AP; NaN for classes without ground truth.
    """
    correct = np.concatenate([ultralytics_correct(i) for i in images]) if images else np.zeros((0, 10), bool)
    conf = np.concatenate([i.pred_score for i in images]) if images else np.zeros(0)
    pred_class = np.concatenate([i.pred_class for i in images]) if images else np.zeros(0)
    target_class = np.concatenate([i.gt_class for i in images]) if images else np.zeros(0)
    order = np.argsort(-conf)
    correct, pred_class = correct[order], pred_class[order]
    ap = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    for c in range(num_classes):
        n_labels = int((target_class == c).sum())
        if n_labels == 0:
            continue
        hits = correct[pred_class == c]
        if len(hits) == 0:
            ap[c] = 0.0
            continue
        tpc = hits.cumsum(0, dtype=np.float64)
        fpc = (1 - hits).cumsum(0, dtype=np.float64)
        recall = tpc / (n_labels + 1e-16)
        precision = tpc / (tpc + fpc)
        for t in range(len(IOU_THRESHOLDS)):
            # as Ultralytics 8.4: the envelope falls to 0 right after the last recall reached
            mrec = np.concatenate(([0.0], recall[:, t], [recall[-1, t]], [1.0]))
            mpre = np.concatenate(([1.0], precision[:, t], [0.0], [0.0]))
            mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
            ap[c, t] = np.trapezoid(np.interp(RECALL_POINTS, mrec, mpre), RECALL_POINTS)
    return ap


def precision_recall_at(images: list[ImageEval], conf: float, iou: float = 0.5) -> tuple[float, float]:
    """Precision and recall of the predictions scoring >= conf, matched greedily at `iou`, same class."""
    tp = fp = n_gt = 0
    for image in images:
        n_gt += len(image.gt_class)
        keep = image.pred_score >= conf
        for c in np.unique(image.pred_class[keep]):
            sel = keep & (image.pred_class == c)
            det, score = image.pred_xyxy[sel], image.pred_score[sel]
            det = det[np.argsort(-score, kind="mergesort")]
            gt = image.gt_xyxy[image.gt_class == c]
            hits = int(_greedy_match(box_iou(det, gt), np.array([iou]))[0].sum()) if len(gt) else 0
            tp += hits
            fp += len(det) - hits
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_gt if n_gt else 0.0
    return precision, recall
