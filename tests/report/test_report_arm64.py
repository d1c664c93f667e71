"""`edgeport report DIR --arm64`: rows measured inside the emulated Raspberry Pi for the TFLite, ONNX and NCNN
artifacts (labelled arm64, no latency, agreement with the x86 row), and a report that keeps every x86 row and
says why when the emulated Pi cannot be used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.artifact import sidecar_path
from edgeport.report import build_report

IMAGES = 4  # emulated: the float ONNX takes seconds per image
LABEL = "arm64 (emulated Raspberry Pi OS, Debian 12, Python 3.11, "


@pytest.fixture(scope="module")
def pi_dir(tmp_path_factory, onnx_artifact, tflite_artifacts, ncnn_artifact) -> Path:
    """The float ONNX (baseline), the full-integer TFLite and the fp16 NCNN folder with their records."""
    out = tmp_path_factory.mktemp("pi_report")
    shutil.copy(onnx_artifact, out)
    shutil.copy(tflite_artifacts["int8"], out)
    shutil.copy(sidecar_path(tflite_artifacts["int8"]), out)
    shutil.copytree(ncnn_artifact.path, out / ncnn_artifact.path.name)
    shutil.copy(ncnn_artifact.path.with_name(ncnn_artifact.path.name + ".edgeport.json"), out)
    return out


@pytest.mark.arm64
def test_report_arm64_rows_measured_inside_the_pi(pi, pi_dir, val16_data):
    done = subprocess.run([sys.executable, "-m", "edgeport", "report", str(pi_dir), "--data", str(val16_data),
                           "--images", str(IMAGES), "--no-robustness", "--arm64"], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr
    rows = json.loads((pi_dir / "report.json").read_text())["rows"]
    x86 = {Path(r["artifact"]).name: r for r in rows if not r["measured_on"].startswith("arm64")}
    arm64 = {Path(r["artifact"]).name: r for r in rows if r["measured_on"].startswith("arm64")}
    assert set(arm64) == set(x86) == {p.name for p in pi_dir.glob("*.onnx")} | {
        p.name for p in pi_dir.glob("*.tflite")} | {p.name for p in pi_dir.glob("*_ncnn_model")}
    tflite = next(name for name in arm64 if name.endswith(".tflite"))
    assert arm64[tflite]["measured_on"].startswith(LABEL + "ai-edge-litert ")
    onnx = next(name for name in arm64 if name.endswith(".onnx"))
    assert arm64[onnx]["measured_on"].startswith(LABEL + "onnxruntime ")
    ncnn = next(name for name in arm64 if name.endswith("_ncnn_model"))
    assert arm64[ncnn]["measured_on"].startswith(LABEL + "ncnn ") and arm64[ncnn]["backend"] == "ncnn"
    for name, row in arm64.items():
        assert row["status"] == "measured" and row["images"] == IMAGES
        assert row["latency_ms_p50"] is None and row["images_per_second"] is None  # emulated: never a latency
        assert abs(row["map50_95"] - x86[name]["map50_95"]) < 0.05
        assert row["drop_map50_95"] is not None and row["agreement"] >= 0.8
    assert arm64[onnx]["agreement"] >= 0.95  # float kernels: nearly the same detections as on x86
    markdown = (pi_dir / "report.md").read_text()
    assert "arm64 (emulated Raspberry Pi OS" in markdown and f"| {ncnn} [arm64, emulated] |" in markdown
    assert f"{ncnn} [arm64, emulated]" in done.stdout and "n/a (qemu)" in done.stdout  # format_table marks them


def test_report_arm64_without_a_pi_keeps_the_x86_rows_and_says_why(pi_dir, val16_data, tmp_path, monkeypatch):
    broken, called = tmp_path / "pi-rootfs.sh", tmp_path / "called.txt"
    broken.write_text(f"#!/bin/sh\necho \"$*\" > {called}\necho 'pi-rootfs: error: needs root for debootstrap' >&2\n"
                      "exit 1\n")
    monkeypatch.setenv("EDGEPORT_PI_SCRIPT", str(broken))
    folder = tmp_path / "artifacts"
    shutil.copytree(pi_dir, folder, ignore=shutil.ignore_patterns("report.*"))
    lines = []
    report = build_report(folder, val16_data, images=4, robustness=False, progress=False, arm64=True,
                          say=lines.append)
    measured = [r for r in report.rows if r.status == "measured"]
    assert len(measured) == 3 and all(not r.measured_on.startswith("arm64") for r in measured)
    skipped = [r for r in report.rows if r.status == "skipped"]
    assert len(skipped) == 3 and all(r.measured_on == "not measured" and r.map50_95 is None for r in skipped)
    assert {r.target for r in skipped} == {"onnx", "tflite", "ncnn"}
    ncnn = folder / "shapes_yolov8n_ncnn_model"  # the worker gets the folder, its parent is mounted
    assert str(ncnn) in called.read_text().split() and f"{folder}:ro" in called.read_text()
    assert all(r.note.startswith("arm64 (emulated Raspberry Pi): not measured: the emulated Raspberry Pi") and
               "needs root for debootstrap" in r.note for r in skipped)
    assert any("--arm64:" in line for line in lines)
    assert len(json.loads((folder / "report.json").read_text())["rows"]) == 6
