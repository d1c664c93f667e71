"""Drawing `Detections` on an image (annotated output for detect, snapshots, streams)."""

from __future__ import annotations

import cv2
import numpy as np

from edgeport.runtime.detections import Detections

_PALETTE = ((56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0))


def draw(image_bgr: np.ndarray, detections: Detections, thickness: int = 2) -> np.ndarray:
    """Return a copy of a BGR image with each detection's box, class name and score drawn."""
    out = image_bgr.copy()
    for (x1, y1, x2, y2), score, class_id, name in zip(detections.xyxy.round().astype(int), detections.score,
                                                       detections.class_id, detections.class_name):
        colour = _PALETTE[int(class_id) % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        label = f"{name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - th - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + 4), colour, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out
