"""How an artifact's detections differ from the baseline's beyond mAP, and its precision-recall curve."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgeport.evaluate.metrics import RECALL_POINTS, ImageEval, _greedy_match, box_iou

DEPLOY_CONF = 0.25  # the score threshold a deployment uses (the runtime's default)


def agreement(baseline: Sequence[ImageEval], other: Sequence[ImageEval], conf: float = DEPLOY_CONF,
              iou: float = 0.5) -> tuple[float | None, float | None, int]:
    """Match the baseline's detections (score >= conf) to the other model's on the same images.

    A baseline detection is matched by the other's best unused detection of the same class with
    IoU >= iou, in decreasing baseline score. Returns (share matched, mean score shift other - baseline
    over the matched pairs, number of baseline detections); None where there is nothing to share.
    """
    if len(baseline) != len(other):
        raise ValueError(f"agreement needs the same images: {len(baseline)} against {len(other)}")
    matched, total, shifts = 0, 0, []
    for base, oth in zip(baseline, other):
        keep_b, keep_o = base.pred_score >= conf, oth.pred_score >= conf
        total += int(keep_b.sum())
        for c in np.unique(base.pred_class[keep_b]):
            sel_b, sel_o = keep_b & (base.pred_class == c), keep_o & (oth.pred_class == c)
            order = np.argsort(-base.pred_score[sel_b], kind="mergesort")
            b_box, b_score = base.pred_xyxy[sel_b][order], base.pred_score[sel_b][order]
            o_box, o_score = oth.pred_xyxy[sel_o], oth.pred_score[sel_o]
            ious = box_iou(b_box, o_box)
            used = np.zeros(len(o_box), bool)
            for i in range(len(b_box)):
                candidates = np.where(used, -1.0, ious[i]) if len(o_box) else np.zeros(0)
                if len(candidates) and candidates.max() >= iou:
                    j = int(candidates.argmax())
                    used[j] = True
                    matched += 1
                    shifts.append(float(o_score[j]) - float(b_score[i]))
    share = matched / total if total else None
    return share, (float(np.mean(shifts)) if shifts else None), total


def pr_curve(images: Sequence[ImageEval], num_classes: int, iou: float = 0.5, max_dets: int = 100) -> np.ndarray:
    """COCO's interpolated precision at recall 0, 0.01 .. 1 at one IoU, averaged over the classes with
    ground truth (101,); its mean is the COCO AP at that IoU (mAP50 for iou=0.5)."""
    curves = []
    threshold = np.array([iou])
    for c in range(num_classes):
        scores, matches, n_gt = [], [], 0
        for image in images:
            gt = image.gt_xyxy[image.gt_class == c]
            keep = image.pred_class == c
            order = np.argsort(-image.pred_score[keep], kind="mergesort")[:max_dets]
            det, score = image.pred_xyxy[keep][order], image.pred_score[keep][order]
            n_gt += len(gt)
            if len(det):
                scores.append(score)
                matches.append(_greedy_match(box_iou(det, gt), threshold)[0])
        if n_gt == 0:
            continue
        if not scores:
            curves.append(np.zeros(len(RECALL_POINTS)))
            continue
        order = np.argsort(-np.concatenate(scores), kind="mergesort")
        hits = np.concatenate(matches)[order]
        tp, fp = np.cumsum(hits, dtype=np.float64), np.cumsum(~hits, dtype=np.float64)
        recall, precision = tp / n_gt, tp / (tp + fp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        index = np.searchsorted(recall, RECALL_POINTS, side="left")
        curves.append(np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0))
    return np.mean(curves, axis=0) if curves else np.zeros(len(RECALL_POINTS))
