"""Accuracy-aware fallback: sensitive layers go to int16 until the budget holds, and are named."""

from __future__ import annotations

import json

import pytest

from edgeport.artifact import sidecar_path
from edgeport.convert import ConvertOptions, convert
from edgeport.convert.tflite_ops import list_ops
from edgeport.convert.edgetpu_compat import analyze
from edgeport.errors import ConversionError


def test_budget_met_without_fallback_keeps_full_integer(sample_model, sample_data, tmp_path):
    lines = []
    options = ConvertOptions(out_dir=tmp_path, precision="int8", data=sample_data, calibration_images=40,
                             max_drop=5.0, fallback=True, progress=lines.append)
    artifact = convert(sample_model, "tflite", options)
    info = artifact.record.provenance["fallback"]
    assert info["int16_layers"] == [] and info["reached"] is True and info["drop_before"] <= 5.0
    assert any("nothing to keep in int16" in line for line in lines)
    assert analyze(artifact.path).first_cpu_op is None


def test_missed_budget_promotes_the_most_sensitive_layers_to_int16(sample_model, sample_data, tmp_path):
    lines = []
    options = ConvertOptions(out_dir=tmp_path, precision="int8", data=sample_data, calibration_images=40,
                             max_drop=-100.0, fallback=True, progress=lines.append)  # unreachable: every step runs
    artifact = convert(sample_model, "tflite", options)
    info = json.loads(sidecar_path(artifact.path).read_text())["provenance"]["fallback"]
    assert info["reached"] is False and info["int16_layers"] and info["drop_after"] <= info["drop_before"]
    assert any("measuring per-layer error" in line for line in lines)
    assert any("not fully Edge TPU mapped" in line for line in lines)
    int16 = [op for op in list_ops(artifact.path) if any(dtype == "INT16" for _, dtype in op.inputs + op.outputs)]
    assert int16  # the promoted layers really compute in int16
    report = analyze(artifact.path)
    assert report.first_cpu_op is not None and "int16" in report.first_cpu_op.reason


def test_fallback_needs_labels(sample_model, val_images, tmp_path):
    options = ConvertOptions(out_dir=tmp_path, precision="int8", data=val_images[0].parent, calibration_images=10,
                             max_drop=0.0, fallback=True)
    with pytest.raises(ConversionError, match="needs a labelled DATA.yaml"):
        convert(sample_model, "tflite", options)
