"""OpenVINO backend: `.xml` IRs open by file type, agree with the float ONNX, pass device and threads through."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeport.errors import BackendError, CorruptModelError
from edgeport.runtime import Detector

pytest.importorskip("openvino")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_ir_opens_by_file_type_and_matches_the_float_onnx(openvino_irs, onnx_artifact, val_images):
    ours, theirs = Detector(openvino_irs["fp32"].path), Detector(onnx_artifact)
    assert ours.backend_name == "openvino"
    for image in val_images[:3]:
        a, b = ours.detect(image), theirs.detect(image)
        assert len(a.score) == len(b.score) > 0
        assert np.allclose(a.score, b.score, atol=2e-3)  # float32 on CPU, not bfloat16
        assert all(_iou(x, y) > 0.99 for x, y in zip(a.xyxy, b.xyxy))


def test_threads_reach_the_cpu_plugin(openvino_irs):
    backend = Detector(openvino_irs["fp32"].path, threads=1).backend
    assert int(backend._compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def test_absent_device_is_refused_naming_the_available_ones(openvino_irs):
    with pytest.raises(BackendError, match="'NPU' is not available on this host; available: CPU"):
        Detector(openvino_irs["fp32"].path, device="NPU")


def test_device_option_refused_by_backends_without_one(onnx_artifact):
    with pytest.raises(BackendError, match="OpenVINO device"):
        Detector(onnx_artifact, device="GPU")


def test_ir_without_its_weights_is_refused(openvino_irs, tmp_path):
    path = openvino_irs["fp32"].path
    shutil.copy(path, tmp_path / path.name)
    with pytest.raises(CorruptModelError, match=r"weights .*\.bin are not beside it"):
        Detector(tmp_path / path.name)


def test_report_scan_opens_the_ir_with_its_weights(openvino_irs):
    from edgeport.report.scan import scan

    found = {f.path.name: f for f in scan(openvino_irs["int8"].path.parent)}
    row = found[openvino_irs["int8"].path.name]
    assert row.status == "measured" and row.detector.backend_name == "openvino"
    assert row.size_bytes == openvino_irs["int8"].size_bytes


def test_detection_imports_no_heavy_framework(openvino_irs, val_images):
    code = (f"from edgeport.runtime import Detector; import sys\n"
            f"d = Detector({str(openvino_irs['int8'].path)!r}); d.detect({str(val_images[0])!r})\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'ultralytics', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"
