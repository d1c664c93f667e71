"""Drawing `Detections` on an image (annotated output for detect, snapshots, streams)."""

from __future__ import annotations

from typing import Sequence

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


def side_by_side(image_bgr: np.ndarray, panels: Sequence[tuple[str, Detections]], width: int = 300,
                 height: int = 240) -> np.ndarray:
    """One BGR image: the same picture once per panel, each with its detections and its title above, scaled
    to fit `width` x `height` and placed left to right (the report's examples)."""
    scale = min(width / image_bgr.shape[1], height / image_bgr.shape[0])
    width, height = max(int(round(image_bgr.shape[1] * scale)), 1), max(int(round(image_bgr.shape[0] * scale)), 1)
    small = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA)
    tiles = []
    for title, detections in panels:
        scaled = Detections(detections.xyxy * np.float32(scale), detections.score, detections.class_id,
                            detections.names, (height, width))
        tile = draw(small, scaled, thickness=1)
        bar = np.full((22, width, 3), 255, np.uint8)
        cv2.putText(bar, title[:int(width / 8)], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([bar, tile]))
    gap = np.full((height + 22, 6, 3), 255, np.uint8)
    out = [tiles[0]]
    for tile in tiles[1:]:
        out += [gap, tile]
    return np.hstack(out)
