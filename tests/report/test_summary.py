"""The report's summary rule, its rows from other sources, the examples' choice and drawing, shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.errors import ConfigError
from edgeport.evaluate.metrics import ImageEval
from edgeport.report.model import Report, read_report_json, rows_from_file
from edgeport.report.rows import MEASURED, NOT_EXECUTABLE, PROXY, ReportRow
from edgeport.report.summary import summarize


def row(name: str, target: str, precision: str, drop: float | None, p50: float | None, *, size: int = 1_000_000,
        status: str = MEASURED, measured_on: str = "x86_64 Linux, 2 CPUs, onnxruntime", io: str = "float32 NCHW",
        baseline: bool = False, proxy: str | None = None) -> ReportRow:
    mAP = None if drop is None else round(0.78 - drop / 100, 4)
    return ReportRow(name, target, precision, io, "onnxruntime", size, mAP, mAP, drop, p50, p50, None, measured_on,
                     status=status, baseline=baseline, proxy=proxy)


def report_of(rows: list[ReportRow], max_drop: float | None = None) -> Report:
    report = Report(Path("."), "data.yaml", 80, rows, rows[0].artifact, max_drop=max_drop)
    report.apply_budget()
    return report


def picks(report: Report) -> dict[str, str | None]:
    return {r.device: (r.row.artifact if r.row else None) for r in summarize(report)}


def test_each_device_class_gets_the_fastest_artifact_within_the_budget():
    rows = [row("m.onnx", "onnx", "fp32", 0.0, 11.0, baseline=True),
            row("m_int8.onnx", "onnx", "int8", 0.3, 7.6),
            row("m_full_integer_int8.tflite", "tflite", "int8", 0.04, 3.5, io="uint8 NHWC -> uint8"),
            row("m_dynamic_int8.tflite", "tflite", "dynamic", -0.5, 6.8),
            row("m_fast_but_bad.tflite", "tflite", "int8", 2.5, 1.0, io="int8 NHWC -> int8"),
            row("m_trt_int8.onnx", "tensorrt", "int8", -0.16, None, status=PROXY, proxy="the engine's ONNX"),
            row("m_trt_fp16.onnx", "tensorrt", "fp16", -0.16, None, size=6_000_000, status=PROXY, proxy="fp16 ONNX"),
            row("m_coreml.mlpackage", "coreml", "fp16", None, None, status=NOT_EXECUTABLE)]
    chosen = picks(report_of(rows))
    assert chosen == {"Coral Edge TPU": "m_full_integer_int8.tflite",  # 2.5 points is over the 1-point default
                      "Raspberry Pi / ARM CPU": "m_full_integer_int8.tflite",
                      "Jetson": "m_trt_int8.onnx",  # the smaller proxy
                      "iPhone / Mac": None, "browser": None, "Intel CPU / GPU / NPU (OpenVINO)": None,
                      "Rockchip NPU": None}
    by_device = {r.device: r for r in summarize(report_of(rows))}
    assert by_device["Jetson"].is_proxy and "no latency (proxy)" in by_device["Jetson"].why
    assert "not measured" in by_device["iPhone / Mac"].why and "--target onnx-web" in by_device["browser"].why
    strict = {r.device: r for r in summarize(report_of(rows, max_drop=0.01))}  # --max-drop is the budget
    assert strict["Raspberry Pi / ARM CPU"].row.artifact == "m_dynamic_int8.tflite"
    assert strict["Coral Edge TPU"].row is None and "none within the budget of 0.01 points" in strict["Coral Edge TPU"].why
    assert "closest, m_full_integer_int8.tflite, drops 0.04" in strict["Coral Edge TPU"].why


def test_a_row_measured_on_arm64_wins_the_raspberry_pi_even_when_slower():
    rows = [row("m.onnx", "onnx", "fp32", 0.0, 11.0, baseline=True), row("m_int8.tflite", "tflite", "int8", 0.1, 3.0),
            row("m_int8.tflite", "tflite", "int8", 0.2, 40.0, measured_on="arm64 Debian 12 (emulated), litert")]
    pi = next(r for r in summarize(report_of(rows)) if r.device == "Raspberry Pi / ARM CPU")
    assert pi.row.measured_on.startswith("arm64") and "measured on arm64" in pi.why


def test_the_over_budget_check_is_one_rule_for_every_row():
    rows = [row("m.onnx", "onnx", "fp32", 0.0, 1.0, baseline=True), row("a", "onnx", "int8", 0.6, 1.0),
            row("b", "onnx", "int8", 0.5, 1.0), row("c", "coreml", "fp16", None, None, status=NOT_EXECUTABLE)]
    report = report_of(rows, max_drop=0.5)
    assert [r.artifact for r in report.failing] == ["a"]
    report.add_rows([row("d", "tflite", "int8", None, 2.0, measured_on="arm64 Pi")])  # a mAP, no drop: ours
    added = report.rows[-1]
    assert added.drop_map50_95 is None  # row() gives no mAP without a drop
    added2 = row("e", "tflite", "int8", 1.0, 2.0, measured_on="arm64 Pi")
    added2.drop_map50_95 = None
    report.add_rows([added2])
    assert report.rows[-1].drop_map50_95 == pytest.approx(1.0) and report.rows[-1].over_budget


def test_rows_from_another_machine_must_say_where_and_old_reports_still_read(tmp_path):
    plain = {"artifact": "m.tflite", "target": "tflite", "precision": "int8", "map50_95": 0.77, "size_bytes": 3}
    (tmp_path / "list.json").write_text(json.dumps([plain]))  # the list-only report.json of earlier versions
    assert read_report_json(tmp_path / "list.json")["rows"][0]["artifact"] == "m.tflite"
    with pytest.raises(ConfigError, match="does not say where it was measured"):
        rows_from_file(tmp_path / "list.json")
    (tmp_path / "pi.json").write_text(json.dumps({"rows": [{**plain, "baseline": True}, plain]}))
    rows = rows_from_file(tmp_path / "pi.json", measured_on="arm64 Raspberry Pi 5")
    assert len(rows) == 1 and rows[0].measured_on == "arm64 Raspberry Pi 5" and rows[0].status == MEASURED
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not a readable report.json"):
        read_report_json(tmp_path / "bad.json")


def image(xyxy, score, cls) -> ImageEval:
    return ImageEval(np.zeros((0, 4)), np.zeros(0, np.int32), np.array(xyxy, np.float32).reshape(-1, 4),
                     np.array(score, np.float32), np.array(cls, np.int32))


def test_examples_are_the_images_where_int8_disagrees_most():
    from edgeport.report.examples import disagreement, pick

    same = image([[0, 0, 10, 10]], [0.9], [0])
    base = [same, same, image([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1]), same, same, same, same]
    other = [same, image([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.5], [0, 0]), image([], [], []), same, same,
             image([[0, 0, 10, 10]], [0.1], [0]), same]
    assert disagreement(base[2], other[2]) == 2 and disagreement(base[1], other[1]) == 1
    assert disagreement(base[5], other[5]) == 1  # below the deployment threshold: missed
    chosen = pick(base, [other])
    assert chosen[:3] == [(2, 2), (1, 1), (5, 1)] and len(chosen) == 4  # at least 4 shown, most disagreeing first


def test_side_by_side_draws_each_panel_with_its_boxes():
    from edgeport.runtime.detections import Detections
    from edgeport.runtime.draw import side_by_side

    picture = np.full((480, 640, 3), 128, np.uint8)
    boxes = Detections(np.array([[100, 100, 300, 300]], np.float32), np.array([0.9], np.float32),
                       np.array([0], np.int32), ("circle",))
    out = side_by_side(picture, [("float", boxes), ("int8", Detections.empty(("circle",)))])
    assert out.shape == (225 + 22, 300 * 2 + 6, 3)  # fitted into 300 x 240, a title bar above
    left, right = out[22:, :300], out[22:, 306:]
    assert (left != 128).any(axis=2).sum() > 500 and (right != 128).sum() == 0  # boxes only where detected


def test_shards_cover_every_image_once_in_order():
    from edgeport.report.tasks import shard_of

    items = list(range(17))
    assert [x for s in range(3) for x in shard_of(items, s, 3)] == items
    assert [len(shard_of(items, s, 4)) for s in range(4)] == [4, 4, 4, 5]
