"""`Detections`: the one value that flows from NMS to every sink (JSON, drawing, evaluation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Detections:
    """Parallel arrays for N detections in original-image pixels.

    xyxy: (N, 4) float32, score: (N,) float32, class_id: (N,) int32; names maps class ids to names.
    """

    xyxy: npt.NDArray[np.float32]
    score: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    names: tuple[str, ...] = ()
    image_hw: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.score)
        if self.score.shape != (n,) or self.xyxy.shape != (n, 4) or self.class_id.shape != (n,):
            raise ValueError(f"inconsistent detections: xyxy {self.xyxy.shape}, score {self.score.shape}, "
                             f"class_id {self.class_id.shape}")

    @classmethod
    def empty(cls, names: tuple[str, ...] = (), image_hw: tuple[int, int] | None = None) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), names, image_hw)

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, index: Any) -> "Detections":
        """Select detections by a boolean mask, an index array or a slice."""
        return Detections(self.xyxy[index].reshape(-1, 4), np.atleast_1d(self.score[index]),
                          np.atleast_1d(self.class_id[index]), self.names, self.image_hw, self.meta)

    @property
    def class_name(self) -> list[str]:
        return [self.names[c] if 0 <= c < len(self.names) else str(c) for c in self.class_id.tolist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_hw": list(self.image_hw) if self.image_hw else None,
            "detections": [
                {"xyxy": [round(v, 2) for v in box], "score": round(score, 4), "class_id": cid, "class_name": name}
                for box, score, cid, name in zip(self.xyxy.tolist(), self.score.tolist(), self.class_id.tolist(),
                                                 self.class_name)
            ],
            **self.meta,
        }

    def to_json(self) -> str:
        """One line of JSON: image size, then each detection's box, score, class id and name."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)
