"""The report's examples: the val images where the int8 artifacts disagree most with the float model,
each drawn side by side (float, then the int8 artifacts) with edgeport's own drawing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeport.evaluate.metrics import ImageEval
from edgeport.report.agreement import DEPLOY_CONF, agreement
from edgeport.report.model import Example
from edgeport.report.rows import ReportRow, artifact_name

INT8_PRECISIONS = ("int8", "dynamic", "int8w", "w8a8")
MOST, LEAST = 6, 4  # examples shown: up to MOST images that disagree, at least LEAST when the split has them
PANELS = 3  # int8 artifacts drawn beside the float model (the least agreeing ones)


def disagreement(base: ImageEval, other: ImageEval, conf: float = DEPLOY_CONF) -> int:
    """Detections at score >= conf that one model has and the other lacks (same class, IoU >= 0.5)."""
    share, _, total = agreement([base], [other], conf)
    back, _, total_other = agreement([other], [base], conf)
    missed = total - round((share or 0.0) * total)
    extra = total_other - round((back or 0.0) * total_other)
    return int(missed + extra)


def int8_rows(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """The integer artifacts that were evaluated (agreement known), least agreeing first."""
    found = [r for r in rows if r.precision in INT8_PRECISIONS and r.agreement is not None and not r.baseline]
    return sorted(found, key=lambda r: r.agreement)


def pick(base: Sequence[ImageEval], others: Sequence[Sequence[ImageEval]]) -> list[tuple[int, int]]:
    """(image index, summed disagreement) of the images to show, most disagreeing first."""
    scores = [(i, sum(disagreement(base[i], other[i]) for other in others)) for i in range(len(base))]
    scores.sort(key=lambda s: (-s[1], s[0]))
    disagreeing = sum(1 for _, s in scores if s > 0)
    return scores[:max(min(disagreeing, MOST), min(LEAST, len(scores)))]


def _detections(image: ImageEval, names: Sequence[str], conf: float = DEPLOY_CONF):
    from edgeport.runtime.detections import Detections

    keep = image.pred_score >= conf
    return Detections(image.pred_xyxy[keep].astype(np.float32), image.pred_score[keep].astype(np.float32),
                      image.pred_class[keep].astype(np.int32), tuple(names))


def build_examples(image_paths: Sequence[Path], names: Sequence[str], base_row: ReportRow,
                   predictions: dict[str, list[ImageEval]], rows: Sequence[ReportRow]) -> list[Example]:
    """The examples of a report from the clean predictions of each row (keyed by row.artifact); none when no
    int8 artifact was evaluated."""
    from edgeport.runtime.draw import side_by_side
    from edgeport.runtime.image_io import load_image

    chosen = [r for r in int8_rows(rows) if r.artifact in predictions][:PANELS]
    base = predictions.get(base_row.artifact)
    if not chosen or base is None:
        return []
    examples = []
    for index, score in pick(base, [predictions[r.artifact] for r in chosen]):
        panels = [(f"float: {artifact_name(base_row.artifact)}", _detections(base[index], names))]
        panels += [(f"{r.precision}: {artifact_name(r.artifact)}", _detections(predictions[r.artifact][index], names))
                   for r in chosen]
        picture = side_by_side(cv2.cvtColor(load_image(image_paths[index]), cv2.COLOR_RGB2BGR), panels)
        ok, png = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        examples.append(Example(image=str(image_paths[index]), disagreement=score,
                                artifacts=[base_row.artifact] + [r.artifact for r in chosen],
                                counts={title.split(": ", 1)[1]: len(d) for title, d in panels},
                                png=png.tobytes() if ok else b""))
    return examples
