"""detect_stream: images decoded ahead of the invoke, or spread over several 1-thread interpreters, give the
same detections in the same order as one detector file by file; a bad image yields its error, the rest go on."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.errors import NotAnImageError
from edgeport.runtime import Detector
from edgeport.runtime.pipeline import detect_stream


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_gives_file_by_file_detections_in_order(onnx_artifact, val_images, workers):
    images = [*val_images[:5], b"not an image", *val_images[5:9]]
    reference = Detector(onnx_artifact)
    detectors = [Detector(onnx_artifact, threads=1) for _ in range(workers)]
    out = list(detect_stream(detectors, iter(images)))
    assert [image for image, _ in out] == images
    for image, found in out:
        if image == b"not an image":
            assert isinstance(found, NotAnImageError)
            continue
        expected = reference.detect(image)
        assert found.image_hw == expected.image_hw and len(found) == len(expected) > 0
        np.testing.assert_allclose(found.xyxy, expected.xyxy, atol=1e-3)
        np.testing.assert_array_equal(found.class_id, expected.class_id)
