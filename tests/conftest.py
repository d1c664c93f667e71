"""Shared fixtures: the bundled sample and artifacts converted from it once per session."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from edgeport import sample

pytest_plugins = ["daemon_support", "pi_support"]  # camera_video, broker; pi (the emulated Raspberry Pi)


@pytest.fixture(scope="session")
def sample_model() -> Path:
    return sample.model_path()


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return sample.data_yaml()


@pytest.fixture(scope="session")
def val_images(sample_data) -> list[Path]:
    return sorted((sample_data.parent / "images" / "val").glob("*.jpg"))


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, sample_model) -> Path:
    """The bundled model converted by `edgeport convert --target onnx`."""
    from edgeport.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("onnx")
    return convert(sample_model, "onnx", ConvertOptions(out_dir=out)).path


@pytest.fixture(scope="session")
def ultralytics_onnx(tmp_path_factory, sample_model) -> Path:
    """Ultralytics' own plain ONNX export (one (1, 4 + nc, N) output, pixel boxes, its metadata)."""
    from edgeport.convert.onnx_target import export_ultralytics_onnx

    return export_ultralytics_onnx(sample_model, tmp_path_factory.mktemp("ultralytics_onnx"), None, 17)


@pytest.fixture(scope="session")
def ultralytics_tflite(tmp_path_factory, sample_model) -> Path:
    """Ultralytics' own TFLite export (LiteRT route: NCHW float input, normalized boxes, zip metadata)."""
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("ultralytics_tflite")
    local = work / sample_model.name
    shutil.copy(sample_model, local)
    return Path(YOLO(str(local)).export(format="tflite", imgsz=320, device="cpu", verbose=False))


@pytest.fixture(scope="session")
def nhwc_tflite(tmp_path_factory, sample_model) -> Path:
    """A TFLite with NHWC input and Ultralytics' layout and metadata, as older Ultralytics
    (TensorFlow route) exports are: built with litert-torch from the same weights."""
    import litert_torch
    import torch

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    yolo = YOLO(str(sample_model))
    net = yolo.model.float().eval()
    names = dict(yolo.names)

    class NHWC(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            y = self.model(x.permute(0, 3, 1, 2))
            y = y[0] if isinstance(y, (list, tuple)) else y
            return torch.cat([y[:, :4] / 320.0, y[:, 4:]], dim=1)  # boxes normalized, as Ultralytics does

    path = tmp_path_factory.mktemp("nhwc_tflite") / "shapes_nhwc_float32.tflite"
    litert_torch.convert(NHWC(net), (torch.zeros(1, 320, 320, 3),)).export(str(path))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"names": names, "imgsz": [320, 320], "task": "detect",
                                                      "stride": 32, "batch": 1}))
    return path


@pytest.fixture(scope="session")
def tflite_artifacts(tmp_path_factory, sample_model, sample_data) -> dict[str, Path]:
    """The bundled model converted to every TFLite precision (int8: full integer, uint8 I/O)."""
    from edgeport.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("tflite")
    artifacts = {}
    for precision in ("fp32", "fp16", "dynamic", "int8"):
        options = ConvertOptions(out_dir=out, precision=precision, data=sample_data, calibration_images=80,
                                 calibration_dir=out / "calib")
        artifacts[precision] = convert(sample_model, "tflite", options).path
    return artifacts


def require_program(*candidates: str) -> str:
    """Path of the first program found (PATH, then /usr/sbin); skips when none is, except under CI.

    CI (`CI=true`, `.ci/run` after `scripts/setup.sh`) must have every real part, so there a
    missing program fails the test instead of hiding it behind a skip.
    """
    import os

    for name in candidates:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    message = f"{' / '.join(candidates)} not installed (scripts/setup.sh installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def node_modules() -> Path:
    """The repository's node_modules (npm ci from package-lock.json); same skip/fail rule as above."""
    import os

    path = Path(__file__).resolve().parent.parent / "node_modules"
    if not (path / "playwright-core").is_dir():
        message = "node_modules missing: run `npm ci` (scripts/setup.sh does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def val16_data(tmp_path_factory, val_images) -> Path:
    """A DATA.yaml over the first 16 val images (labels found beside them): cheap accuracy checks."""
    import yaml

    from edgeport.sample import data_yaml

    work = tmp_path_factory.mktemp("val16")
    (work / "val16.txt").write_text("\n".join(str(p) for p in val_images[:16]) + "\n")
    names = yaml.safe_load(data_yaml().read_text())["names"]
    (work / "data.yaml").write_text(yaml.safe_dump({"path": str(work), "val": "val16.txt", "names": names}))
    return work / "data.yaml"


@pytest.fixture(scope="session")
def onnx_precisions(tmp_path_factory, sample_model, sample_data) -> dict[tuple[str, str], Path]:
    """(target, precision) -> ONNX: onnx fp16 and int8, tensorrt fp16 and int8 (32 calibration images)."""
    from edgeport.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("onnx_precisions")
    artifacts = {}
    for target, precision in (("onnx", "fp16"), ("onnx", "int8"), ("tensorrt", "fp16"), ("tensorrt", "int8")):
        options = ConvertOptions(out_dir=out, precision=precision, data=sample_data, calibration_images=32,
                                 calibration_dir=out / "calib")
        artifacts[(target, precision)] = convert(sample_model, target, options).path
    return artifacts


@pytest.fixture(scope="session")
def coreml_artifacts(coreml_int8w_cli, sample_model, sample_data) -> dict:
    """The bundled model converted to CoreML: fp16 (with the NMS pipeline), int8 weights (by the CLI)
    and W8A8 (16 calibration images); each value is an Artifact (package, record, proxy, pipeline)."""
    from edgeport.artifact import read_sidecar
    from edgeport.convert import Artifact, ConvertOptions, convert

    out = coreml_int8w_cli["out"]
    artifacts = {}
    for precision, extra in (("fp16", {"nms": True}), ("w8a8", {"data": sample_data, "calibration_images": 16})):
        options = ConvertOptions(out_dir=out, precision=precision, calibration_dir=out / "calib", **extra)
        artifacts[precision] = convert(sample_model, "coreml", options)
    int8w = out / "shapes_yolov8n_coreml_int8w.mlpackage"
    artifacts["int8w"] = Artifact(int8w, read_sidecar(int8w), (out / "shapes_yolov8n_coreml_int8w_proxy.onnx",))
    return artifacts


@pytest.fixture(scope="session")
def coreml_int8w_cli(tmp_path_factory, sample_model, sample_data) -> dict:
    """`edgeport convert --target coreml --int8-weights --data DATA.yaml --max-drop 1`: its exit code,
    stdout and output folder (with report.json: the float ONNX row and the proxy's row)."""
    import contextlib
    import io

    from edgeport.cli import main

    out = tmp_path_factory.mktemp("coreml")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["convert", str(sample_model), "--target", "coreml", "--int8-weights", "--data", str(sample_data),
                     "--out", str(out), "--max-drop", "1.0"])
    return {"code": code, "stdout": stdout.getvalue(), "out": out}


@pytest.fixture(scope="session")
def coreml_inspect(coreml_artifacts):
    """inspect(path) -> what a written .mlpackage of coreml_artifacts holds, read back by coremltools in
    its own process (`python -m edgeport.convert.coreml_worker inspect`, once for all of them), so this
    process never imports coremltools."""
    import subprocess
    import sys

    packages = [a.path for a in coreml_artifacts.values()]
    packages += [p for a in coreml_artifacts.values() for p in a.extra_files if p.suffix == ".mlpackage"]
    done = subprocess.run([sys.executable, "-m", "edgeport.convert.coreml_worker", "inspect", *map(str, packages)],
                          capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    return lambda path: found[str(path)]


@pytest.fixture(scope="session")
def openvino_irs(tmp_path_factory, sample_model, sample_data) -> dict:
    """precision -> Artifact of `--target openvino`: fp32 and int8 (8 calibration images), agreement-checked."""
    pytest.importorskip("openvino")
    from edgeport.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("openvino")
    return {precision: convert(sample_model, "openvino", ConvertOptions(
        out_dir=out, precision=precision, data=sample_data, calibration_images=8, calibration_dir=out / "calib"))
        for precision in ("fp32", "int8")}


@pytest.fixture(scope="session")
def ncnn_artifact(tmp_path_factory, sample_model, sample_data):
    """The Artifact of `--target ncnn` (default fp16): `<stem>_ncnn_model/` and its sidecar, agreement-checked."""
    from edgeport.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("ncnn")
    return convert(sample_model, "ncnn", ConvertOptions(out_dir=out, precision="fp16", data=sample_data))
