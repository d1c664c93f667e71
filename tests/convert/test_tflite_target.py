"""TFLite target: every precision runs in the runtime; int8 is full-integer and within budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.artifact import sidecar_path
from edgeport.convert import ConvertOptions, convert
from edgeport.convert.tflite_ops import float_ops, list_ops
from edgeport.errors import ConversionError, UnsupportedModelError
from edgeport.evaluate import evaluate
from edgeport.runtime import Detector


def test_fp32_tflite_matches_the_float_onnx(tflite_artifacts, onnx_artifact, val_images):
    tflite, onnx = Detector(tflite_artifacts["fp32"], conf=0.1), Detector(onnx_artifact, conf=0.1)
    assert tflite.record.layout == "NHWC" and tflite.record.decode.kind == "dfl"
    assert tflite.backend.inputs[0].shape == (1, 320, 320, 3)
    for path in val_images[:4]:
        a, b = tflite.detect(path), onnx.detect(path)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
        np.testing.assert_allclose(a.score, b.score, atol=2e-3)


@pytest.mark.parametrize("precision", ["fp16", "dynamic", "int8"])
def test_every_precision_detects_like_fp32(tflite_artifacts, val_images, precision):
    reference, other = Detector(tflite_artifacts["fp32"]), Detector(tflite_artifacts[precision])
    assert other.record.precision == precision
    matched = total = 0
    for path in val_images[:10]:
        a, b = reference.detect(path), other.detect(path)
        total += len(a)
        for box, cls in zip(a.xyxy, a.class_id):
            same = b.xyxy[b.class_id == cls]
            if len(same) and np.abs(same - box).max(axis=1).min() < 6:
                matched += 1
    assert total > 10 and matched / total > 0.85


def test_smaller_precisions_are_smaller_files(tflite_artifacts):
    sizes = {k: v.stat().st_size for k, v in tflite_artifacts.items()}
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8"] < 0.35 * sizes["fp32"]


def test_full_integer_int8_has_integer_io_and_no_float_op(tflite_artifacts, sample_model):
    path = tflite_artifacts["int8"]
    detector = Detector(path)
    inp = detector.backend.inputs[0]
    assert (inp.dtype, inp.shape) == ("uint8", (1, 320, 320, 3))
    assert abs(inp.scale - 1 / 255) < 1e-7 and inp.zero_point == 0  # camera pixels go in untouched
    assert all(o.quantized and o.dtype in ("uint8", "int8") for o in detector.backend.outputs)
    assert float_ops(path) == []
    assert {op.name for op in list_ops(path)} >= {"CONV_2D", "CONCATENATION"}
    record = json.loads(sidecar_path(path).read_text())
    assert record["provenance"]["ops_left_in_float"] == []
    assert record["provenance"]["calibration_images"] == 80 and record["provenance"]["calibration_sha256"]
    assert record["provenance"]["calibration_method"].startswith("minmax")
    assert len(record["decode"]["levels"]) == 3 and [lv["stride"] for lv in record["decode"]["levels"]] == [8, 16, 32]


def test_int8_drop_within_budget(tflite_artifacts, onnx_artifact, sample_data):
    float_map = evaluate(onnx_artifact, sample_data, progress=False).map50_95
    int8_map = evaluate(tflite_artifacts["int8"], sample_data, progress=False).map50_95
    assert (float_map - int8_map) * 100 <= 1.0, (float_map, int8_map)


@pytest.mark.parametrize("io, dtype", [("int8", "int8"), ("float", "float32")])
def test_int8_io_options(sample_model, sample_data, tmp_path, val_images, tflite_artifacts, io, dtype):
    options = ConvertOptions(out_dir=tmp_path, precision="int8", io=io, data=sample_data, calibration_images=40)
    path = convert(sample_model, "tflite", options).path
    detector = Detector(path)
    assert detector.backend.inputs[0].dtype == dtype
    if io == "int8":
        assert detector.backend.inputs[0].zero_point == -128
        assert float_ops(path) == []
    reference = Detector(tflite_artifacts["fp32"]).detect(val_images[1])
    result = detector.detect(val_images[1])
    assert abs(len(result) - len(reference)) <= 2 and len(result) > 0


def test_tflite_conversion_errors(sample_model, ultralytics_onnx, tmp_path):
    with pytest.raises(ConversionError, match="needs representative images"):
        convert(sample_model, "tflite", ConvertOptions(out_dir=tmp_path, precision="int8"))
    with pytest.raises(ConversionError, match="unknown precision"):
        convert(sample_model, "tflite", ConvertOptions(out_dir=tmp_path, precision="int4"))
    with pytest.raises(UnsupportedModelError, match="converts from the Ultralytics .pt"):
        convert(ultralytics_onnx, "tflite", ConvertOptions(out_dir=tmp_path))


def test_percentile_calibration_is_used_and_recorded(sample_model, sample_data, tmp_path, tflite_artifacts,
                                                     val_images):
    options = ConvertOptions(out_dir=tmp_path, precision="int8", data=sample_data, calibration_images=40,
                             calibration_method="percentile")
    artifact = convert(sample_model, "tflite", options)
    assert artifact.record.provenance["calibration_method"].startswith("percentile")
    minmax = Detector(tflite_artifacts["int8"]).backend.outputs
    clipped = Detector(artifact.path).backend.outputs
    assert any(a.scale != b.scale for a, b in zip(minmax, clipped))  # other ranges, really applied
    assert len(Detector(artifact.path).detect(val_images[0])) > 0
    with pytest.raises(ConversionError, match="'entropy' is not available"):
        convert(sample_model, "tflite", ConvertOptions(out_dir=tmp_path, precision="int8", data=sample_data,
                                                       calibration_method="entropy"))
