"""One detection timed stage by stage, shared by the benchmarks that report per-stage figures."""

from __future__ import annotations

import time

import numpy as np

from edgeport.runtime import Detector


def timed_detect(detector: Detector, image_rgb: np.ndarray) -> tuple[float, float, float]:
    """(preprocess, invoke, postprocess) milliseconds of one detection on a decoded RGB image."""
    t0 = time.perf_counter()
    tensor, placements = detector.preprocess([image_rgb])
    t1 = time.perf_counter()
    outputs = detector.infer(tensor)
    t2 = time.perf_counter()
    detector.postprocess(outputs, placements)
    t3 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000
