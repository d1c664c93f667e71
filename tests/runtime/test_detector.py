"""Detector: backend choice, every input kind, batches of mixed sizes, the artifact contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image

from edgeport.artifact import METADATA_KEY, sidecar_path, write_sidecar
from edgeport.errors import (
    ArtifactMismatchError,
    BackendError,
    CorruptModelError,
    MetadataMissingError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from edgeport.runtime import Detections, Detector, load_image
from edgeport.runtime.detector import record_from_ultralytics


def _same(a: Detections, b: Detections, atol: float = 0.5) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol)
    np.testing.assert_allclose(a.score, b.score, atol=2e-3)


def test_backend_is_chosen_from_the_file_type(onnx_artifact, ultralytics_tflite):
    assert Detector(onnx_artifact).backend_name == "onnxruntime"
    assert Detector(ultralytics_tflite, threads=2).backend_name == "litert"
    with pytest.raises(BackendError, match="unknown backend"):
        Detector(onnx_artifact, backend="tensorflow-serving")
    with pytest.raises(CorruptModelError):  # forcing a backend that cannot read the file
        Detector(onnx_artifact, backend="litert")


def test_every_input_kind_gives_the_same_detections(onnx_artifact, val_images):
    detector = Detector(onnx_artifact)
    path = val_images[0]
    reference = detector.detect(path)
    bgr = cv2.imread(str(path))
    _same(detector.detect(str(path)), reference, atol=0)
    _same(detector.detect(path.read_bytes()), reference, atol=0)
    # this 640x360 JPEG is twice the model size: from a path or bytes libjpeg decodes it at 1/2 scale,
    # a decoded array is letterboxed from full size; every decoded form gives the same detections
    reference = detector.detect(bgr)
    _same(detector.detect(bgr[..., ::-1].copy(), color="RGB"), reference, atol=0)
    _same(detector.detect(Image.open(path)), reference, atol=0)
    swapped = detector.detect(bgr[..., ::-1].copy())  # RGB passed as BGR: colours wrong, result differs
    assert len(swapped) != len(reference) or not np.allclose(swapped.score, reference.score)


def test_batch_of_mixed_sizes_is_letterboxed_not_stretched(onnx_artifact, val_images):
    detector = Detector(onnx_artifact, conf=0.05)
    shapes = {load_image(p).shape[:2]: p for p in val_images}
    assert len(shapes) >= 3  # landscape, portrait and square frames
    paths = list(shapes.values())[:4]
    batch = detector.detect_batch(paths)
    for path, result in zip(paths, batch):
        _same(result, detector.detect(path), atol=1e-3)
        assert result.image_hw == load_image(path).shape[:2]
        assert (result.xyxy[:, [0, 2]] <= result.image_hw[1]).all() and (result.xyxy[:, [1, 3]] <= result.image_hw[0]).all()


def test_ultralytics_onnx_and_tflite_exports_match_our_onnx(onnx_artifact, ultralytics_onnx, ultralytics_tflite,
                                                            nhwc_tflite, val_images):
    ours = Detector(onnx_artifact, conf=0.05)
    for other in (ultralytics_onnx, ultralytics_tflite, nhwc_tflite):
        detector = Detector(other, conf=0.05)
        assert detector.record.origin == "ultralytics"
        assert detector.names == ours.names
        for path in val_images[:3]:
            _same(detector.detect(path), ours.detect(path), atol=0.5)
    assert Detector(nhwc_tflite).record.layout == "NHWC"
    assert Detector(ultralytics_tflite).record.decode.normalized is True
    assert Detector(ultralytics_onnx).record.decode.normalized is False


def test_conf_iou_and_max_det_options(onnx_artifact, val_images):
    loose = Detector(onnx_artifact, conf=0.01, iou=0.9, max_det=300).detect(val_images[2])
    strict = Detector(onnx_artifact, conf=0.5).detect(val_images[2])
    capped = Detector(onnx_artifact, conf=0.01, max_det=2).detect(val_images[2])
    assert len(loose) > len(strict)
    assert (strict.score > 0.5).all() and len(capped) == 2
    assert np.all(np.diff(loose.score) <= 0)  # best first


def test_runtime_does_not_import_heavy_frameworks(onnx_artifact, ultralytics_tflite, val_images):
    for artifact in (onnx_artifact, ultralytics_tflite):
        code = textwrap.dedent(f"""
            import sys
            from edgeport.runtime import Detector
            detections = Detector({str(artifact)!r}).detect({str(val_images[0])!r})
            assert len(detections) > 0
            heavy = [m for m in ("torch", "tensorflow", "ultralytics", "coremltools") if m in sys.modules]
            print(",".join(heavy) or "clean")
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == "clean", out.stdout


def test_missing_and_truncated_models(onnx_artifact, ultralytics_tflite, tmp_path):
    with pytest.raises(ModelNotFoundError):
        Detector(tmp_path / "absent.onnx")
    for source in (onnx_artifact, ultralytics_tflite):
        cut = tmp_path / f"truncated{source.suffix}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(CorruptModelError, match="cannot load"):
            Detector(cut)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(CorruptModelError):
        Detector(empty)


def test_artifact_without_record_is_refused(onnx_artifact, ultralytics_tflite, tmp_path):
    model = onnx.load(str(onnx_artifact))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(MetadataMissingError, match="no edgeport metadata record"):
        Detector(bare)
    flat = tmp_path / "bare.tflite"  # the flatbuffer without Ultralytics' appended zip entry
    data = ultralytics_tflite.read_bytes()
    flat.write_bytes(data[: data.find(b"PK\x03\x04", len(data) - 4096 * 64)] if b"PK\x03\x04" in data else data)
    with pytest.raises(MetadataMissingError):
        Detector(flat)


def test_sidecar_record_is_bound_to_its_file(onnx_artifact, ultralytics_tflite, tmp_path):
    tflite = tmp_path / "model.tflite"
    shutil.copy(ultralytics_tflite, tflite)
    record = Detector(tflite).record
    write_sidecar(tflite, record)
    assert Detector(tflite).record.names == record.names
    tflite.write_bytes(tflite.read_bytes() + b"\0")  # the file changes after conversion
    with pytest.raises(ArtifactMismatchError, match="SHA-256"):
        Detector(tflite)
    sidecar_path(tflite).write_text("{not json")
    with pytest.raises(ArtifactMismatchError, match="unreadable"):
        Detector(tflite)


def test_record_inconsistent_with_model_is_refused(onnx_artifact, tmp_path):
    model = onnx.load(str(onnx_artifact))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            record = json.loads(entry.value)
            record["outputs"][1]["shape"] = [1, 2100, 80]
            entry.value = json.dumps(record)
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    with pytest.raises(ArtifactMismatchError, match="'scores' shape"):
        Detector(wrong)


def test_unsupported_ultralytics_outputs_are_named(onnx_artifact):
    detector = Detector(onnx_artifact)  # two outputs: not a plain Ultralytics export
    with pytest.raises(UnsupportedModelError, match="not one"):
        record_from_ultralytics({"names": "{0: 'a', 1: 'b', 2: 'c'}", "imgsz": "[320, 320]"}, detector.backend)
    with pytest.raises(UnsupportedModelError, match="task 'segment'"):
        record_from_ultralytics({"names": "['a']", "imgsz": "[320, 320]", "task": "segment"}, detector.backend)


def test_a_box_wholly_off_the_image_is_not_a_detection(onnx_artifact):
    """A wide image letterboxed into the square input leaves padding; a box predicted in the padding
    clips to zero height on the image and is dropped, while a box on the image is kept."""
    detector = Detector(onnx_artifact, conf=0.25)
    image = np.full((100, 400, 3), 90, np.uint8)  # pads rows above and below the image
    _, placements = detector.preprocess([image])
    boxes = np.array([[[0.1, 0.0, 0.3, 0.05],    # inside the top padding only
                       [0.4, 0.45, 0.6, 0.55]]], np.float32)  # the middle of the image
    scores = np.zeros((1, 2, len(detector.names)), np.float32)
    scores[0, :, 0] = 0.9
    found = detector.postprocess({"boxes": boxes, "scores": scores}, placements)[0]
    assert len(found) == 1
    x1, y1, x2, y2 = found.xyxy[0]
    assert 150 < x1 < x2 < 250 and 0 <= y1 < y2 <= 100
