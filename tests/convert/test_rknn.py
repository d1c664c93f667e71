"""The RKNN target: a real rknn-toolkit2 build of the bundled YOLOv8n for rk3588 in the isolated venv, its
simulator accuracy, the report's labelling, and the one-line refusals (missing venv, unknown platform)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edgeport.artifact import read_sidecar
from edgeport.convert import ConvertOptions, convert
from edgeport.errors import ConversionError, MissingDependencyError
from rknn_support import rknn_int8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return rknn_int8(tmp_path_factory)


def test_int8_rknn_written_with_uint8_nhwc_record(artifact):
    record = read_sidecar(artifact.path)
    assert artifact.path.name == "shapes_yolov8n_rknn_rk3588.rknn" and artifact.path.stat().st_size > 1_000_000
    assert artifact.path.read_bytes()[:4] == b"RKNN"
    assert record.target == "rknn" and record.precision == "int8" and record.provenance["platform"] == "rk3588"
    assert record.layout == "NHWC" and record.inputs[0].shape == (1, 320, 320, 3) and record.inputs[0].dtype == "uint8"
    assert record.decode.kind == "dfl" and record.decode.nms and record.decode.reg_max == 16
    assert [o.name for o in record.outputs] == ["box_8", "cls_8", "box_16", "cls_16", "box_32", "cls_32"]
    assert [o.shape for o in record.outputs[:2]] == [(1, 1600, 64), (1, 1600, 3)]
    assert record.provenance["calibration_images"] == 24
    assert record.provenance["proxy"]["label"].startswith("simulator (x86)")


def test_simulator_bundle_holds_calibrated_build_and_record(artifact):
    bundle = artifact.path.with_suffix(".rknnsim")
    assert bundle in artifact.extra_files
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        settings = json.loads(archive.read("settings.json"))
        record = json.loads(archive.read("edgeport.json"))
        ranges = archive.read("model.quantization.cfg").decode()
    assert {"model.model", "model.data", "model.quantization.cfg"} <= names
    assert settings == {"platform": "rk3588", "precision": "int8", "quantized_dtype": "w8a8",
                        "quantized_algorithm": "normal"}
    assert "zero_point" in ranges and record["provenance"]["proxy_for"] == artifact.path.name


def test_simulator_agrees_with_float_model(artifact):
    check = artifact.check
    assert check["checked"] and check["judged"] and check["matched"] >= 0.9 and not check["problems"], check


def test_simulator_accuracy_close_to_float(artifact, tmp_path, sample_model, sample_data):
    from edgeport.evaluate import evaluate

    source = Path(sample_data).parent
    subset = tmp_path / "subset"
    for kind in ("images", "labels"):
        (subset / kind / "val").mkdir(parents=True)
    for image in sorted((source / "images" / "val").glob("*.jpg"))[:16]:
        shutil.copy(image, subset / "images" / "val" / image.name)
        shutil.copy(source / "labels" / "val" / f"{image.stem}.txt", subset / "labels" / "val" / f"{image.stem}.txt")
    data = subset / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(subset), "val": "images/val",
                                    "names": {0: "circle", 1: "square", 2: "triangle"}}))
    float_onnx = convert(sample_model, "onnx", ConvertOptions(out_dir=tmp_path, check=False))
    simulated = evaluate(artifact.path.with_suffix(".rknnsim"), data, progress=False)
    reference = evaluate(float_onnx.path, data, progress=False)
    assert simulated.backend == "rknn-sim"
    assert simulated.map50_95 > 0.6 and abs(reference.map50_95 - simulated.map50_95) < 0.03, \
        (reference.map50_95, simulated.map50_95)


def test_report_measures_rknn_through_simulator_labelled(artifact):
    from edgeport.report.rows import PROXY
    from edgeport.report.scan import open_artifact

    found = open_artifact(artifact.path)
    assert found.status == PROXY and found.detector.backend_name == "rknn-sim"
    assert found.proxy_label.startswith("simulator (x86)") and found.proxy_path.suffix == ".rknnsim"
    assert "rknn-toolkit-lite2" in found.reason


def test_missing_venv_is_one_line_naming_the_script(monkeypatch, tmp_path, sample_model, sample_data):
    monkeypatch.setenv("EDGEPORT_RKNN_VENV", str(tmp_path / "absent"))
    with pytest.raises(MissingDependencyError) as error:
        convert(sample_model, "rknn", ConvertOptions(out_dir=tmp_path, precision="int8", data=sample_data))
    assert "scripts/rknn-venv.sh" in str(error.value) and "\n" not in str(error.value)
    assert not list(tmp_path.glob("*.rknn"))


def test_target_all_skips_rknn_without_venv(monkeypatch, tmp_path, sample_model, sample_data):
    from edgeport.convert import Job

    monkeypatch.setenv("EDGEPORT_RKNN_VENV", str(tmp_path / "absent"))
    result = Job.of(sample_model, ConvertOptions(out_dir=tmp_path, data=sample_data)).run_many(["rknn"])
    assert [(name, precision) for name, precision, _ in result.skipped] == [("rknn", "int8")]
    assert "scripts/rknn-venv.sh" in result.skipped[0][2] and not result.failed


def test_unknown_platform_refused_in_one_line(tmp_path, sample_model, sample_data):
    process = subprocess.run([sys.executable, "-m", "edgeport", "convert", str(sample_model), "--target", "rknn",
                              "--platform", "rk9999", "--data", str(sample_data), "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode != 0
    lines = process.stderr.strip().splitlines()
    assert lines == ["edgeport: error: rknn: unknown --platform 'rk9999'; rknn-toolkit2 2.5 builds for: rk3588, "
                     "rk3576, rk3568, rk3566, rk3562, rv1103, rv1103b, rv1106, rv1106b, rv1126b, rk2118"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("precision, method, message", [
    ("int8", None, "pass --data"), ("fp32", None, "--int8 (default"),
    ("int8", "percentile", "'percentile' is not available; choose minmax or entropy")])
def test_option_refusals_before_work(tmp_path, sample_model, sample_data, precision, method, message):
    data = sample_data if method else None
    with pytest.raises(ConversionError, match=message.replace("(", r"\(")):
        convert(sample_model, "rknn", ConvertOptions(out_dir=tmp_path, precision=precision, data=data,
                                                     calibration_method=method))
    assert not list(tmp_path.iterdir())
