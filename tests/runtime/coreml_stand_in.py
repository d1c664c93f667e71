"""Stands in for macOS (run as a script): opens CoreML packages through the runtime's CoreML backend
with a model loader whose `predict` runs the package's ONNX proxy, since Core ML itself runs only on
macOS. Everything around predict is the real code: the package's own spec (read by coremltools),
its embedded record, the image handed over as a PIL image, the batch axis, decode and NMS.

usage: coreml_stand_in.py PACKAGE NMS_PACKAGE PROXY IMAGE... ; prints JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import coremltools as ct
import numpy as np
import onnxruntime as ort

from edgeport.runtime import Detector


class StandIn:
    """get_spec() from the real package; predict() from the proxy (with `threshold`: only the boxes
    above it, as a pipeline's NMS would return at most; Vision's NMS itself is not imitated)."""

    def __init__(self, package: Path, proxy: Path, threshold: float | None = None) -> None:
        self.spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        self.session = ort.InferenceSession(str(proxy), providers=["CPUExecutionProvider"])
        self.threshold = threshold
        self.images: list[tuple] = []

    def get_spec(self):
        return self.spec

    def predict(self, inputs: dict) -> dict:
        image = inputs["image"]
        self.images.append((image.mode, image.size))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None] / 255
        coordinates, confidence = (o[0] for o in self.session.run(["coordinates", "confidence"], {"images": pixels}))
        if self.threshold is not None:
            keep = confidence.max(1) > self.threshold
            coordinates, confidence = coordinates[keep], confidence[keep]
        return {"coordinates": coordinates, "confidence": confidence}


def main(package: str, nms_package: str, proxy: str, *images: str) -> None:
    stand_ins: list[StandIn] = []

    def loader(threshold):
        def load(path, compute_units):
            stand_ins.append(StandIn(path, Path(proxy), threshold))
            return stand_ins[-1]
        return load

    result = {}
    reference = Detector(proxy)
    for key, path, threshold in (("raw", package, None), ("nms", nms_package, 0.25)):
        detector = Detector(path, backend_options={"model_loader": loader(threshold)})
        same = []
        for image in images:
            a, b = detector.detect(image), reference.detect(image)
            same.append(bool(len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=1e-3)
                             and np.allclose(a.score, b.score, atol=1e-5) and (a.class_id == b.class_id).all()))
        result[key] = {"backend": detector.backend_name, "precision": detector.record.precision,
                       "outputs": [list(o.shape) for o in detector.backend.outputs], "same": same,
                       "detections": len(detector.detect(images[0])), "images_seen": stand_ins[-1].images[:1]}
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
