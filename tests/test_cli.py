"""The `edgeport` command: help, JSON output, one-line errors, exit codes, the quickstart job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


def edgeport(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "edgeport", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", ["quickstart", "convert", "report", "evaluate", "detect", "calibrate"])
def test_every_subcommand_has_help(command):
    out = edgeport(command, "--help")
    assert out.returncode == 0 and "usage: edgeport" in out.stdout


def test_detect_prints_json_lines_and_saves_annotated_images(onnx_artifact, val_images, tmp_path):
    out = edgeport("detect", str(val_images[0]), str(val_images[1]), "--model", str(onnx_artifact),
                   "--save-dir", str(tmp_path / "annotated"), "--conf", "0.1")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(val_images[0]), str(val_images[1])]
    assert all(line["detections"] for line in lines)
    assert {d["class_name"] for line in lines for d in line["detections"]} <= {"circle", "square", "triangle"}
    saved = cv2.imread(str(tmp_path / "annotated" / (val_images[0].stem + ".jpg")))
    assert saved is not None and saved.shape[:2] == tuple(lines[0]["image_hw"])


def test_detect_reports_a_bad_image_in_one_line_and_keeps_the_others(onnx_artifact, val_images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(val_images[0].read_bytes()[:2000])
    out = edgeport("detect", str(broken), str(val_images[1]), "--model", str(onnx_artifact))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"edgeport: error: {broken}: truncated JPEG: the end-of-image "
                                               "marker is missing"]
    assert len(out.stdout.splitlines()) == 1 and str(val_images[1]) in out.stdout


@pytest.mark.parametrize("args, message", [
    (("detect", "x.jpg", "--model", "absent.onnx"), "model not found: absent.onnx"),
    (("evaluate", "absent.tflite", "--data", "data.yaml"), "model not found"),
    (("convert", "absent.pt", "--target", "onnx"), "model not found"),
])
def test_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    out = edgeport(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr and "Traceback" not in out.stderr


def test_evaluate_writes_json_and_shows_progress(onnx_artifact, sample_data, tmp_path):
    report = tmp_path / "eval.json"
    out = edgeport("evaluate", str(onnx_artifact), "--data", str(sample_data), "--json", str(report))
    assert out.returncode == 0, out.stderr
    assert "80/80" in out.stderr  # progress
    result = json.loads(report.read_text())
    assert result["images"] == 80 and result["backend"] == "onnxruntime" and "mAP50-95" in out.stdout


def test_quickstart_converts_to_every_target_and_ends_with_the_report(tmp_path):
    # rknn is left out here (its venv pointed elsewhere): its simulator runs would double this test's time;
    # tests/convert/test_rknn.py covers it, and the skip below must name the command that makes the venv
    out = edgeport("quickstart", "--model", "yolov8n", "--out", str(tmp_path / "qs"), "--images", "24",
                   "--calibration-images", "32", env={"EDGEPORT_RKNN_VENV": str(tmp_path / "no-rknn-venv")})
    assert out.returncode == 0, out.stderr
    written = json.loads((tmp_path / "qs" / "report.json").read_text())
    rows = written["rows"]
    assert rows[0]["target"] == "onnx" and rows[0]["precision"] == "fp32" and rows[0]["drop_map50_95"] == 0.0
    # `convert --target all`: each target's default artifact plus its integer variant (calibration given);
    # the Edge TPU target's int8 model is the tflite int8 row, with its Edge TPU mapping
    assert {(row["target"], row["precision"]) for row in rows} == {
        ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"), ("onnx-web", "fp32"),
        ("onnx-web", "int8"), ("tensorrt", "fp16"), ("tensorrt", "int8"), ("coreml", "fp16"), ("coreml", "int8w"),
        ("openvino", "fp32"), ("openvino", "int8"), ("ncnn", "fp16")}
    tpu = next(row for row in rows if row["target"] == "tflite" and row["precision"] == "int8")
    assert tpu["edgetpu"].startswith(("260/260", "251/251")) and tpu["family"] == "yolov8, dfl head"
    assert "## Edge TPU mapping" in (tmp_path / "qs" / "report.md").read_text()  # the Coral user's section
    assert "check: agrees with the float model" in out.stderr
    skips = [line for line in out.stderr.splitlines() if "skipped" in line]  # rknn only, naming the venv's command
    assert any("skipped rknn int8: rknn-toolkit2's isolated venv" in line and "scripts/rknn-venv.sh" in line
               for line in skips), skips
    assert all("rknn" in line or ", 1 skipped" in line for line in skips), skips
    for row in rows:
        for key in ("artifact", "target", "precision", "size_bytes", "map50_95", "map50", "drop_map50_95",
                    "latency_ms_p50", "measured_on"):
            assert key in row
        assert Path(row["artifact"]).exists() and row["map50_95"] > 0.5 and row["drop_map50_95"] is not None
        assert Path(row["artifact"]).name in out.stdout
        assert set(row["robustness"]) == {"noise", "blur", "jpeg30", "bright+40", "bright-40", "fgsm"}
        assert row["robustness"]["fgsm"]["map50_95"] is not None  # gradients from the bundled .pt
        # engines this host cannot build or run are measured through their labelled proxies, without latency
        proxied = row["target"] in ("tensorrt", "coreml")
        assert (row["status"] == "proxy") == proxied and (row["latency_ms_p50"] is None) == proxied
        assert bool(row["proxy"]) == proxied
    web = next(row for row in rows if row["target"] == "onnx-web")
    assert Path(web["artifact"]).parent.name == "shapes_yolov8n_web" and "browser" in web["note"]
    assert len(list((tmp_path / "qs").glob("*_edgetpu_compat.json"))) == 1  # the Edge TPU analysis
    assert (tmp_path / "qs" / "report.md").is_file() and "<img" in (tmp_path / "qs" / "report.html").read_text()
    summary = {s["device"]: s for s in written["summary"]}  # every device class gets an artifact from quickstart
    made_for = {"Coral Edge TPU": ("tflite",), "Raspberry Pi / ARM CPU": ("tflite", "onnx", "ncnn"),
                "Intel CPU / GPU / NPU (OpenVINO)": ("openvino",), "Jetson": ("tensorrt",),
                "Rockchip NPU": ("rknn",), "iPhone / Mac": ("coreml",), "browser": ("onnx-web",)}
    assert list(summary) == list(made_for)
    assert summary["Rockchip NPU"]["target"] is None and "--target rknn" in summary["Rockchip NPU"]["why"]  # skipped
    for device, pick in summary.items():  # an artifact made for it, or none within the drop budget
        if device == "Rockchip NPU":
            continue
        assert pick["target"] in made_for[device] or (pick["target"] is None and "budget" in pick["why"]), pick
        assert pick["target"] not in ("tensorrt", "coreml") or pick["proxy"]  # proxies labelled
    assert 4 <= len(written["examples"]) <= 6


def test_model_and_image_errors_are_one_line_each(onnx_artifact, val_images, tmp_path):
    import onnx

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_artifact.read_bytes()[:100_000])
    model = onnx.load(str(onnx_artifact))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases = [
        (["--model", str(truncated), str(val_images[0])], 2, "onnxruntime cannot load this file"),
        (["--model", str(bare), str(val_images[0])], 2, "no edgeport metadata record"),
        (["--model", str(onnx_artifact), str(empty)], 1, "empty image"),
        (["--model", str(onnx_artifact), str(text)], 1, "not an image"),
        (["--model", str(onnx_artifact), "--max-pixels", "1000", str(val_images[0])], 1, "exceeds the limit of 1,000"),
    ]
    for args, code, message in cases:
        out = edgeport("detect", *args)
        assert out.returncode == code, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeport: error: ") and message in lines[0], lines


def test_calibrate_prints_coverage_and_reuses_its_cache(sample_data, tmp_path):
    args = ("calibrate", "--data", str(sample_data), "--n", "12", "--out", str(tmp_path / "calib"))
    first = edgeport(*args)
    assert first.returncode == 0, first.stderr
    assert "images per class: circle" in first.stdout and "(cached)" not in first.stdout
    assert "calibration set: 12/12" in first.stderr  # progress
    second = edgeport(*args)
    assert "(cached)" in second.stdout and (tmp_path / "calib" / "calibration.npz").is_file()


def test_convert_int8_prints_the_drop_report_and_enforces_max_drop(sample_model, sample_data, tmp_path):
    args = ("convert", str(sample_model), "--target", "tflite", "--int8", "--data", str(sample_data),
            "--n", "40", "--out", str(tmp_path / "out"))  # --n: the same option name as `edgeport calibrate`
    out = edgeport(*args, "--max-drop", "5")
    assert out.returncode == 0, out.stderr
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = written["rows"]
    assert [row["target"] for row in rows] == ["onnx", "tflite"]
    assert written["summary"] and (tmp_path / "out" / "report.html").is_file()  # the same report as `edgeport report`
    int8 = rows[1]
    assert int8["precision"] == "int8" and int8["io"].startswith("uint8 NHWC")
    assert int8["calibration"] == "minmax (moving average, ai-edge-quantizer), 40 images"
    assert rows[0]["calibration"] == "none"
    assert abs(int8["drop_map50_95"] - (rows[0]["map50_95"] - int8["map50_95"]) * 100) < 0.011
    assert "full-integer: every op int8" in out.stderr and "images per class" in out.stderr
    strict = edgeport(*args, "--max-drop", "-1")  # any artifact below the float baseline + 1 point fails
    assert strict.returncode == 1
    assert "more than --max-drop -1" in strict.stderr


def test_convert_rejects_a_calibration_method_the_target_lacks(sample_model, sample_data, tmp_path):
    out = edgeport("convert", str(sample_model), "--target", "tflite", "--int8", "--data", str(sample_data),
                   "--calibration-method", "entropy", "--out", str(tmp_path))
    assert out.returncode == 2 and "calibration method 'entropy' is not available" in out.stderr
