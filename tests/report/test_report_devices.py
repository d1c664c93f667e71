"""The summary's device classes on a real report folder (the float ONNX, the full-integer TFLite, the NCNN folder,
the OpenVINO IR and the RKNN model measured through rknn-toolkit2's x86 simulator): which artifact each class
ships and why; the artifacts `--arm64` plans; rows measured under emulation marked in every table."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from edgeport.report import build_report, format_table
from edgeport.report.render import markdown
from edgeport.report.summary import summarize
from rknn_support import require_rknn_venv, rknn_int8

IMAGES = 4
MAX_DROP = 6.0
EMULATED = "arm64 (emulated Raspberry Pi OS, Debian 12, Python 3.11, ncnn 1.0.20250503)"


def place(path: Path, out: Path) -> Path:
    """Copy an artifact (file or folder) into `out` with what lies beside it under its name (the sidecar record,
    OpenVINO's .bin, RKNN's .rknnsim)."""
    stem = path.stem if path.is_file() else path.name
    for sibling in path.parent.iterdir():
        if sibling == path or sibling.name.startswith(stem + "."):
            (shutil.copytree if sibling.is_dir() else shutil.copy)(sibling, out / sibling.name)
    return out / path.name


@pytest.fixture(scope="module")
def device_dir(tmp_path_factory, onnx_artifact, tflite_artifacts, ncnn_artifact, openvino_irs) -> Path:
    """One artifact per device class this module checks; the RKNN model when rknn-toolkit2's venv is here."""
    out = tmp_path_factory.mktemp("device_report")
    for artifact in (onnx_artifact, tflite_artifacts["int8"], ncnn_artifact.path, openvino_irs["fp32"].path):
        place(artifact, out)
    try:
        place(rknn_int8(tmp_path_factory).path, out)
    except pytest.skip.Exception:  # the Rockchip test says why; the other classes are still checked
        pass
    return out


@pytest.fixture(scope="module")
def device_report(device_dir, val16_data):
    """The report of that folder on 4 images; with so few images the drops are noisy (an int8 model's reaches
    2-4 points), so the budget is wide enough for every artifact to compete on latency."""
    return build_report(device_dir, val16_data, images=IMAGES, max_drop=MAX_DROP, robustness=False, examples=False,
                        latency_runs=3, progress=False, say=lambda line: None)


def summary_of(report) -> dict:
    return {s["device"]: s for s in report.to_dict()["summary"]}


def test_rockchip_npu_ships_the_rknn_model_with_the_simulator_caveat(device_report):
    require_rknn_venv()
    rockchip = summary_of(device_report)["Rockchip NPU"]
    assert rockchip["target"] == "rknn" and rockchip["name"].endswith("_rknn_rk3588.rknn"), rockchip
    assert rockchip["proxy"].startswith("simulator (x86)") and rockchip["latency_ms_p50"] is None
    assert "no latency (simulator)" in rockchip["why"] and f"drop {rockchip['drop_map50_95']:+.2f}" in rockchip["why"]
    assert "simulator on x86" in rockchip["caveat"] and "not the NPU's" in rockchip["caveat"]


def test_intel_class_ships_the_openvino_ir_timed_on_this_host(device_report):
    intel = summary_of(device_report)["Intel CPU / GPU / NPU (OpenVINO)"]
    assert intel["target"] == "openvino" and intel["name"] == "shapes_yolov8n_openvino_fp32.xml", intel
    assert intel["latency_ms_p50"] > 0 and intel["latency_measured_on"].startswith("x86_64")
    assert f"p50 {intel['latency_ms_p50']:.1f} ms" in intel["why"]
    assert "CPU plugin on this host" in intel["caveat"] and "not on the device" not in intel["caveat"]


def test_arm_cpu_class_weighs_ncnn_and_says_its_latency_is_x86(device_report):
    arm = summary_of(device_report)["Raspberry Pi / ARM CPU"]
    rows = {Path(r.artifact).name: r for r in device_report.rows}
    assert arm["candidates"] == 2  # the full-integer TFLite and the NCNN folder (the baseline is not shipped)
    pick = rows[arm["name"]]
    others = [r for r in device_report.rows if r.target in ("tflite", "ncnn") and r is not pick]
    assert all(r.latency_ms_p50 >= pick.latency_ms_p50 or r.drop_map50_95 > device_report.budget for r in others)
    assert "latency measured on x86_64 Linux (this host), not on the device" in arm["caveat"]
    assert rows["shapes_yolov8n_ncnn_model"].backend == "ncnn" and rows["shapes_yolov8n_ncnn_model"].latency_ms_p50


def test_an_emulated_arm64_ncnn_row_wins_the_arm_class_ranked_by_its_x86_latency(device_report):
    ncnn = next(r for r in device_report.rows if r.target == "ncnn")
    emulated = replace(ncnn, measured_on=EMULATED, latency_ms_p50=None, latency_ms_p99=None, images_per_second=None)
    report = replace(device_report, rows=list(device_report.rows))
    report.add_rows([emulated])
    arm = next(r for r in summarize(report) if r.device == "Raspberry Pi / ARM CPU")
    assert arm.row is emulated and arm.latency_ms_p50 == ncnn.latency_ms_p50
    assert f"p50 {ncnn.latency_ms_p50:.1f} ms on this host (x86_64" in arm.why and "not under qemu" in arm.why
    assert "emulated Raspberry Pi (arm64 under qemu)" in arm.caveat and "not a Pi's latency" in arm.caveat


def test_emulated_rows_are_marked_in_the_text_table_and_the_markdown(device_report):
    ncnn = next(r for r in device_report.rows if r.target == "ncnn")
    emulated = replace(ncnn, measured_on=EMULATED, latency_ms_p50=None, latency_ms_p99=None, images_per_second=None)
    lines = format_table([*device_report.rows, emulated]).splitlines()
    marked = [line for line in lines if "[arm64, emulated]" in line]
    assert len(marked) == 2 and marked[0].startswith("shapes_yolov8n_ncnn_model [arm64, emulated]")
    assert marked[0].count("n/a (qemu)") == 2  # p50 and img/s: a latency under qemu is not a Pi's
    assert marked[1].startswith("[arm64, emulated]: measured inside the emulated Raspberry Pi")
    assert "not a Pi's latency" in marked[1]
    x86 = next(line for line in lines if line.startswith("shapes_yolov8n_ncnn_model "))
    assert "qemu" not in x86 and f"{ncnn.latency_ms_p50:.1f}" in x86
    assert "[arm64, emulated]" not in format_table(device_report.rows)  # no note without such a row
    report = replace(device_report, rows=[*device_report.rows, emulated])
    row = next(line for line in markdown(report).splitlines() if line.startswith("| shapes_yolov8n_ncnn_model [arm64"))
    assert "n/a (qemu)" in row and EMULATED in row


def test_arm64_plans_the_tflite_onnx_and_ncnn_artifacts_only(device_dir):
    from edgeport.report.arm64 import plan
    from edgeport.report.scan import scan

    found = scan(device_dir, threads=1)
    planned = plan([(f, None) for f in found], {f.path: [] for f in found})
    assert {f.path.name for f, _ in planned} == {"shapes_yolov8n.onnx", "shapes_yolov8n_full_integer_int8.tflite",
                                                 "shapes_yolov8n_ncnn_model"}
    assert {f.path.name for f in found} - {f.path.name for f, _ in planned} >= {"shapes_yolov8n_openvino_fp32.xml"}
