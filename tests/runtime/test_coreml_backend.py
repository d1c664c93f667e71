"""CoreML backend: chosen for packages, refuses clearly off macOS, and runs a package through the
whole runtime pipeline where Core ML would (a stand-in for macOS answers predict from the proxy)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.cli import main
from edgeport.runtime import Detector
from edgeport.runtime.backends import backend_for, runnable_here
from edgeport.runtime.backends.coreml import CoreMLBackend, CoreMLUnavailableError

off_macos = pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML runs on macOS")


def test_packages_open_with_the_coreml_backend(tmp_path):
    for name in ("model.mlpackage", "model.mlmodel"):
        assert backend_for(tmp_path / name) is CoreMLBackend
    assert runnable_here(tmp_path / "model.onnx")


@off_macos
def test_off_macos_the_backend_points_to_the_proxy(coreml_artifacts, val_images, capsys):
    package = coreml_artifacts["fp16"].path
    assert not runnable_here(package)
    with pytest.raises(CoreMLUnavailableError, match="can only be executed on macOS.*proxy"):
        Detector(package)
    assert main(["detect", str(val_images[0]), "--model", str(package)]) == 2
    assert "CoreML models can only be executed on macOS" in capsys.readouterr().err


def test_package_runs_through_the_runtime_where_core_ml_would(coreml_artifacts, val_images):
    artifact = coreml_artifacts["fp16"]
    nms = next(p for p in artifact.extra_files if p.name.endswith("_nms.mlpackage"))
    proxy = artifact.path.parent / artifact.record.provenance["proxy"]["artifact"]
    script = Path(__file__).with_name("coreml_stand_in.py")
    done = subprocess.run([sys.executable, str(script), str(artifact.path), str(nms), str(proxy),
                           *map(str, val_images[:4])], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    raw, pipeline = result["raw"], result["nms"]
    assert raw["backend"] == "coreml" and raw["precision"] == "fp16"
    assert raw["outputs"] == [[1, 2100, 4], [1, 2100, 3]] and pipeline["outputs"] == [[1, -1, 4], [1, -1, 3]]
    assert raw["images_seen"] == [["RGB", [320, 320]]]  # a letterboxed RGB image, as a CVPixelBuffer would be
    assert all(raw["same"]) and all(pipeline["same"]) and raw["detections"] > 0
