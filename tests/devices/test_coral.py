"""Edge TPU: compatibility analysis, compiler log parsing, the delegate path on the CPU int8 model.

The Edge TPU itself and edgetpu_compiler cannot be on this machine: the delegate is replaced by
none (the same backend code runs the CPU int8 model) and the compiler by a script that prints a
real compiler's log format; everything around them is real.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest

from edgeport.convert import ConvertOptions, convert
from edgeport.convert.edgetpu_compat import analyze
from edgeport.devices.coral.compiler import parse_log
from edgeport.errors import BackendError
from edgeport.runtime import Detector
from edgeport.runtime.backends.edgetpu import EdgeTpuBackend, EdgeTpuUnavailableError

COMPILER_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1180 ms.

Input model: model_full_integer_int8.tflite
Input size: 3.13MiB
Output model: model_full_integer_int8_edgetpu.tflite
Output size: 3.41MiB
On-chip memory used for caching model parameters: 3.22MiB
On-chip memory remaining for caching model parameters: 4.41MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 260
Operation log: model_full_integer_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 255
Number of operations that will run on CPU: 5

Operator                       Count      Status

CONV_2D                        63         Mapped to Edge TPU
LOGISTIC                       57         Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        2          Operation is otherwise supported, but not mapped due to some unspecified limitation
"""


def test_full_integer_model_maps_entirely_to_the_edge_tpu(tflite_artifacts):
    report = analyze(tflite_artifacts["int8"])
    assert report.total_ops > 100 and report.edgetpu_ops == report.total_ops and report.first_cpu_op is None
    assert "the whole graph" in report.summary()


def test_float_ops_are_where_the_cpu_fallback_starts(tflite_artifacts):
    report = analyze(tflite_artifacts["dynamic"])  # int8 weights, float activations
    assert report.first_cpu_op is not None and report.edgetpu_ops < report.total_ops
    assert "non-integer tensor" in report.first_cpu_op.reason or "not supported" in report.first_cpu_op.reason
    assert report.cpu_ops == report.total_ops - report.edgetpu_ops > 0
    assert "CPU from op" in report.summary()


def test_compiler_log_is_parsed():
    log = parse_log(COMPILER_LOG)
    assert (log["edgetpu_ops"], log["cpu_ops"], log["edgetpu_subgraphs"], log["compiled"]) == (255, 5, 1, True)
    assert log["operators"][0] == {"operator": "CONV_2D", "count": 63, "status": "Mapped to Edge TPU"}
    assert log["operators"][2]["operator"] == "RESIZE_NEAREST_NEIGHBOR"


def test_edgetpu_target_without_compiler_writes_the_analysis(sample_model, sample_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    lines = []
    artifact = convert(sample_model, "edgetpu", ConvertOptions(out_dir=tmp_path, data=sample_data,
                                                               calibration_images=40, progress=lines.append))
    assert artifact.path.name.endswith("_full_integer_int8.tflite")
    assert any("edgetpu_compiler is not on PATH" in line for line in lines)
    report = json.loads((tmp_path / (artifact.path.stem + "_edgetpu_compat.json")).read_text())
    assert report["compiled"] is False and report["edgetpu_ops"] == report["total_ops"]
    assert artifact.record.provenance["edgetpu"]["compiled"] is False


def test_edgetpu_target_runs_the_compiler_and_reads_its_log(sample_model, sample_data, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log_file = tmp_path / "log.txt"
    log_file.write_text(COMPILER_LOG)
    fake = bin_dir / "edgetpu_compiler"  # stands in for Coral's binary: same arguments, same log format
    fake.write_text("#!/bin/sh\n# edgetpu_compiler -s -o OUT MODEL\nout=$3; model=$4\n"
                    f"cat {log_file}\nbase=$(basename \"$model\" .tflite)\ncp \"$model\" \"$out/${{base}}_edgetpu.tflite\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    artifact = convert(sample_model, "edgetpu", ConvertOptions(out_dir=tmp_path, data=sample_data,
                                                               calibration_images=40))
    assert artifact.path.name.endswith("_edgetpu.tflite") and artifact.record.target == "edgetpu"
    report = json.loads((tmp_path / (artifact.path.stem.removesuffix("_edgetpu") + "_edgetpu_compat.json")).read_text())
    assert report["compiled"] is True and report["compiler_log"]["cpu_ops"] == 5
    with pytest.raises(EdgeTpuUnavailableError, match="libedgetpu"):
        Detector(artifact.path)  # chosen by name; no Edge TPU runtime on this machine


def test_delegate_path_runs_the_cpu_int8_model(tflite_artifacts, val_images, tmp_path):
    compiled_name = tmp_path / "model_edgetpu.tflite"
    shutil.copy(tflite_artifacts["int8"], compiled_name)
    shutil.copy(tflite_artifacts["int8"].with_name(tflite_artifacts["int8"].stem + ".edgeport.json"),
                tmp_path / "model_edgetpu.edgeport.json")
    asked = []
    detector = Detector(compiled_name, backend_options={
        "device": "usb:1", "delegate_loader": lambda device: asked.append(device)})  # no delegate: CPU
    assert isinstance(detector.backend, EdgeTpuBackend) and asked == ["usb:1"]
    reference = Detector(tflite_artifacts["int8"]).detect(val_images[0])
    result = detector.detect(val_images[0])
    np.testing.assert_allclose(result.xyxy, reference.xyxy)


def test_missing_runtime_and_bad_device_are_clear_errors(tflite_artifacts, monkeypatch):
    with pytest.raises(EdgeTpuUnavailableError, match="apt install libedgetpu1-std"):
        Detector(tflite_artifacts["int8"], backend="edgetpu")
    with pytest.raises(EdgeTpuUnavailableError, match="not one of usb"):
        Detector(tflite_artifacts["int8"], backend="edgetpu", backend_options={"device": "gpu:0"})
    monkeypatch.setenv("EDGEPORT_EDGETPU_DEVICE", "pci:0")
    with pytest.raises(EdgeTpuUnavailableError, match="device pci:0"):
        Detector(tflite_artifacts["int8"], backend="edgetpu")
    assert issubclass(EdgeTpuUnavailableError, BackendError)


def test_smoke_test_reports_a_missing_runtime_in_one_line(tflite_artifacts, capsys):
    from edgeport.devices.coral.smoke import main

    assert main([str(tflite_artifacts["int8"]), "--runs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeport: error: cannot load the Edge TPU delegate")
