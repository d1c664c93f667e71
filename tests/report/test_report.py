"""`edgeport report DIR`: rows for every artifact, skipped files, proxies, robustness, --max-drop,
numbers equal to `edgeport evaluate`, and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import node_modules, require_program
from edgeport.artifact import ArtifactRecord, sha256_file, sidecar_path
from edgeport.evaluate import evaluate
from edgeport.evaluate.metrics import ImageEval
from edgeport.report.agreement import agreement

IMAGES = 16
MAX_DROP = 0.5


def edgeport(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeport", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, sample_data) -> Path:
    """A DATA.yaml of 16 of the bundled val images (an image list: labels found beside them)."""
    from edgeport.evaluate.dataset import load_dataset

    dataset = load_dataset(sample_data)
    out = tmp_path_factory.mktemp("small_data")
    (out / "val.txt").write_text("".join(f"{p}\n" for p in dataset.images[::5][:IMAGES]))
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "val.txt", "names": list(dataset.names)}))
    return out / "data.yaml"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, onnx_artifact, tflite_artifacts) -> Path:
    """The float ONNX and the int8 TFLite, a truncated ONNX, a text file named .tflite, a TensorRT-like
    engine whose record names an ONNX proxy, and an .mlpackage with no proxy."""
    out = tmp_path_factory.mktemp("report_dir")
    shutil.copy(onnx_artifact, out)
    int8 = tflite_artifacts["int8"]
    shutil.copy(int8, out)
    shutil.copy(sidecar_path(int8), out)
    (out / "broken.onnx").write_bytes(onnx_artifact.read_bytes()[:50_000])
    (out / "notes.tflite").write_text("not a model")
    shutil.copy(onnx_artifact, out / "model_trt_proxy.onnx")
    record = ArtifactRecord.from_dict(json.loads(_embedded_record(onnx_artifact)))
    engine = out / "model_trt_int8.engine"
    engine.write_bytes(b"serialized TensorRT plan, needs a GPU")
    proxy = {"artifact": "model_trt_proxy.onnx", "label": "the fp32 ONNX the engine was built from, in onnxruntime"}
    _write_record(engine, record, target="tensorrt", precision="int8", proxy=proxy)
    edgetpu = out / "model_int8_edgetpu.tflite"  # no libedgetpu / Edge TPU here: the delegate fails to load
    shutil.copy(int8, edgetpu)
    _write_record(edgetpu, ArtifactRecord.from_dict(json.loads(sidecar_path(int8).read_text())), target="edgetpu",
                  precision="int8", proxy=None)
    package = out / "model_coreml.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    _write_record(package, record, target="coreml", precision="fp16", proxy=None)
    return out


def _embedded_record(onnx_path: Path) -> str:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next(p.value for p in model.metadata_props if p.key == "edgeport")


def _write_record(artifact: Path, record: ArtifactRecord, target: str, precision: str, proxy: dict | None) -> None:
    data = record.to_dict()
    data.update(target=target, precision=precision,
                artifact_sha256=sha256_file(artifact) if artifact.is_file() else None)
    data["provenance"] = {**data["provenance"], **({"proxy": proxy} if proxy else {})}
    sidecar_path(artifact).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def report(report_dir, small_data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("report_cache")
    out = edgeport("report", str(report_dir), "--data", str(small_data), "--max-drop", str(MAX_DROP),
                   "--cache-dir", str(cache))
    written = json.loads((report_dir / "report.json").read_text())
    rows = written["rows"]
    return {"out": out, "rows": {Path(r["artifact"]).name: r for r in rows}, "order": rows, "cache": cache,
            "json": written}


def test_every_artifact_gets_a_row_and_bad_files_are_skipped_with_the_reason(report):
    rows, out = report["rows"], report["out"]
    assert out.returncode in (0, 1), out.stderr
    assert set(rows) == {"shapes_yolov8n.onnx", "shapes_yolov8n_full_integer_int8.tflite", "broken.onnx",
                         "notes.tflite", "model_trt_int8.engine", "model_coreml.mlpackage",
                         "model_int8_edgetpu.tflite"}
    assert report["order"][0]["artifact"].endswith("shapes_yolov8n.onnx") and report["order"][0]["baseline"]
    for name in ("broken.onnx", "notes.tflite"):
        assert rows[name]["status"] == "skipped" and rows[name]["map50_95"] is None
        assert f"skipped {name}: " in out.stderr
    assert "onnxruntime cannot load this file" in rows["broken.onnx"]["note"]
    assert rows["notes.tflite"]["note"]
    int8 = rows["shapes_yolov8n_full_integer_int8.tflite"]
    assert int8["precision"] == "int8" and int8["io"] == "uint8 NHWC -> uint8" and int8["images"] == IMAGES
    assert int8["latency_ms_p50"] > 0 and int8["latency_ms_p99"] >= int8["latency_ms_p50"]
    assert "report: [2/3]" in out.stderr and "evaluate shapes_yolov8n.onnx: 16/16" in out.stderr  # progress


def test_rows_hold_the_numbers_of_edgeport_evaluate(report, report_dir, small_data, tmp_path):
    rows = report["rows"]
    for name, evaluated in (("shapes_yolov8n.onnx", "shapes_yolov8n.onnx"),
                            ("shapes_yolov8n_full_integer_int8.tflite", "shapes_yolov8n_full_integer_int8.tflite"),
                            ("model_trt_int8.engine", "model_trt_proxy.onnx")):
        out = edgeport("evaluate", str(report_dir / evaluated), "--data", str(small_data),
                       "--json", str(tmp_path / "eval.json"))
        assert out.returncode == 0, out.stderr
        result = json.loads((tmp_path / "eval.json").read_text())
        row = rows[name]
        assert row["map50_95"] == round(result["map50_95"], 4) and row["map50"] == round(result["map50"], 4)
        assert row["per_class"] == {k: round(v, 4) for k, v in result["per_class"].items()}
    base, int8 = rows["shapes_yolov8n.onnx"], rows["shapes_yolov8n_full_integer_int8.tflite"]
    assert int8["drop_map50_95"] == pytest.approx((base["map50_95"] - int8["map50_95"]) * 100, abs=0.011)
    worst = max(int8["per_class_drop"], key=int8["per_class_drop"].get)
    assert int8["worst_class"] == worst
    assert int8["worst_class_drop"] == pytest.approx((base["per_class"][worst] - int8["per_class"][worst]) * 100,
                                                     abs=0.011)
    for row in (base, int8):  # the plotted PR curve integrates to the reported mAP50
        assert np.mean(row["pr_curve"]) == pytest.approx(row["map50"], abs=1e-3)


def test_agreement_with_the_baseline(report):
    rows = report["rows"]
    assert rows["shapes_yolov8n.onnx"]["agreement"] == 1.0 and rows["shapes_yolov8n.onnx"]["score_shift"] == 0.0
    assert rows["model_trt_int8.engine"]["agreement"] == 1.0  # its proxy is the same float model
    int8 = rows["shapes_yolov8n_full_integer_int8.tflite"]
    assert 0.8 < int8["agreement"] <= 1.0 and abs(int8["score_shift"]) < 0.1


def test_agreement_counts_same_class_overlaps_and_the_score_shift():
    def image(xyxy, score, cls):
        return ImageEval(np.zeros((0, 4)), np.zeros(0, np.int32), np.array(xyxy, np.float32).reshape(-1, 4),
                         np.array(score, np.float32), np.array(cls, np.int32))

    base = [image([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.8, 0.1], [0, 1, 0])]
    other = [image([[1, 0, 11, 10], [20, 20, 30, 30]], [0.7, 0.6], [0, 0])]  # 2nd: same box, other class
    share, shift, total = agreement(base, other)
    assert total == 2 and share == 0.5 and shift == pytest.approx(-0.2)


def test_artifacts_this_host_cannot_run_show_their_proxy_or_no_number(report, report_dir):
    rows = report["rows"]
    engine = rows["model_trt_int8.engine"]
    assert engine["status"] == "proxy" and engine["target"] == "tensorrt" and engine["precision"] == "int8"
    assert engine["proxy"] == "the fp32 ONNX the engine was built from, in onnxruntime"
    assert engine["map50_95"] is not None and engine["latency_ms_p50"] is None  # latency of a proxy is not the engine's
    assert "proxy model_trt_proxy.onnx" in engine["measured_on"]
    assert "model_trt_proxy.onnx" not in rows  # folded into the engine's row
    coreml = rows["model_coreml.mlpackage"]
    assert coreml["status"] == "not executable" and coreml["proxy"] is None and coreml["target"] == "coreml"
    assert all(coreml[k] is None for k in ("map50_95", "map50", "drop_map50_95", "latency_ms_p50", "agreement"))
    assert not coreml["over_budget"] and coreml["robustness"] == {}
    edgetpu = rows["model_int8_edgetpu.tflite"]
    assert edgetpu["status"] == "not executable" and edgetpu["map50_95"] is None
    assert "Edge TPU delegate" in edgetpu["note"]
    markdown = (report_dir / "report.md").read_text()
    line = next(line for line in markdown.splitlines() if line.startswith("| model_coreml.mlpackage"))
    assert "not executable" in line and "not measured" in line
    assert "proxy: the fp32 ONNX the engine was built from" in markdown


def test_robustness_sets_are_cached_seeded_and_scored_like_evaluate(report):
    rows, cache = report["rows"], report["cache"]
    int8 = rows["shapes_yolov8n_full_integer_int8.tflite"]
    assert set(int8["robustness"]) == {"noise", "blur", "jpeg30", "bright+40", "bright-40", "fgsm"}
    assert int8["robustness"]["noise"]["seed"] == 20240 and int8["robustness"]["fgsm"]["seed"] is None
    for name in ("noise", "fgsm"):
        data = cache / "perturbed" / name / "data.yaml"
        assert len(list((cache / "perturbed" / name / "images").glob("*.png"))) == IMAGES
        result = evaluate(Path(int8["artifact"]), data, progress=False)
        assert int8["robustness"][name]["map50_95"] == round(result.map50_95, 4)
        assert int8["robustness"][name]["drop"] == pytest.approx((int8["map50_95"] - result.map50_95) * 100, abs=0.011)
    # the float model's own FGSM perturbation hurts it far more than the seeded noise of similar size
    base = rows["shapes_yolov8n.onnx"]["robustness"]
    assert base["fgsm"]["drop"] > 10 and base["fgsm"]["drop"] > base["bright+40"]["drop"]


def test_perturbed_sets_are_reused_and_deterministic(sample_data, tmp_path):
    from edgeport.evaluate.dataset import Dataset, load_dataset
    from edgeport.report.perturb import PIXEL_PERTURBATIONS, perturbed_set

    full = load_dataset(sample_data)
    dataset = Dataset(full.yaml_path, full.root, full.names, full.images[:2])
    noise = PIXEL_PERTURBATIONS["noise"][0]
    first, cached = perturbed_set(noise, dataset, tmp_path / "a", progress=False)
    assert not cached and perturbed_set(noise, dataset, tmp_path / "a", progress=False) == (first, True)
    again, _ = perturbed_set(noise, dataset, tmp_path / "b", progress=False)
    images = sorted((first.parent / "images").glob("*.png"))
    assert [cv2.imread(str(p)).tobytes() for p in images] == \
        [cv2.imread(str(again.parent / "images" / p.name)).tobytes() for p in images]


def test_max_drop_marks_the_offending_rows_and_sets_the_exit_code(report, report_dir, small_data, tmp_path):
    rows, out = report["rows"], report["out"]
    over = {name for name, r in rows.items() if r["drop_map50_95"] is not None and r["drop_map50_95"] > MAX_DROP}
    assert {name for name, r in rows.items() if r["over_budget"]} == over
    assert out.returncode == (1 if over else 0)
    page = (report_dir / "report.html").read_text()
    for name in over:
        assert f"more than --max-drop {MAX_DROP}" in out.stderr and name in out.stderr
        assert f'<tr class="over"><td>{name}</td><td>OVER BUDGET' in page
    int8_drop = rows["shapes_yolov8n_full_integer_int8.tflite"]["drop_map50_95"]
    copy = shutil.copytree(report_dir, tmp_path / "copy")  # leave the main report as it is
    base = ("report", str(copy), "--data", str(small_data), "--no-robustness")
    strict = edgeport(*base, "--max-drop", f"{int8_drop - 0.01:.3f}")
    assert strict.returncode == 1, strict.stderr
    assert json.loads((copy / "report.json").read_text())["rows"][1]["over_budget"]
    assert "shapes_yolov8n_full_integer_int8.tflite drops" in strict.stderr
    loose = edgeport(*base, "--max-drop", f"{int8_drop + 0.01:.3f}")
    assert loose.returncode == 0, loose.stderr
    assert "model_coreml.mlpackage not checked against --max-drop" in loose.stderr
    assert not any(r["over_budget"] for r in json.loads((copy / "report.json").read_text())["rows"])


def test_report_html_opens_with_the_summary_and_fits_1280_px_in_chromium(report, report_dir, tmp_path):
    require_program("chromium")
    require_program("node")
    modules = node_modules()
    shot = tmp_path / "report.png"
    out = subprocess.run(["node", str(Path(__file__).with_name("render_check.js")), str(modules / "playwright-core"),
                          str(report_dir / "report.html"), str(shot), "1280"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    page = json.loads(out.stdout.strip().splitlines()[-1])
    assert page["errors"] == [] and page["requests"] == [] and page["scripts"] == 0
    assert page["sections"][:4] == ["Summary", "Examples", "Artifacts", "Robustness"]
    summary = {row["cells"][0]: row["cells"] for row in page["tables"]["summary-table"]}
    assert list(summary) == ["Coral Edge TPU", "Raspberry Pi / ARM CPU", "Intel CPU / GPU / NPU (OpenVINO)", "Jetson",
                             "Rockchip NPU", "iPhone / Mac", "browser"]
    assert summary["Jetson"][1].startswith("model_trt_int8.engine (proxy: ")  # proxies labelled
    assert summary["browser"][1] == "none" and "no artifact for it" in summary["browser"][6]
    tables = page["tables"]
    assert [row["cells"][0] for row in tables["artifacts-onnx"]] == ["shapes_yolov8n.onnx"]
    assert [row["cells"][0] for row in tables["artifacts-tflite"]] == ["shapes_yolov8n_full_integer_int8.tflite"]
    assert {name for key in tables if key.startswith("artifacts-") for name in
            (row["cells"][0] for row in tables[key])} == {
        "shapes_yolov8n.onnx", "shapes_yolov8n_full_integer_int8.tflite", "model_trt_int8.engine",
        "model_coreml.mlpackage", "model_int8_edgetpu.tflite"}
    assert [row["cells"][0] for row in tables["skipped"]] == ["broken.onnx", "notes.tflite"]
    assert len(tables["robustness"]) == 3 and all(len(r["cells"]) == 7 for r in tables["robustness"])
    assert all(t["position"] == "sticky" for t in page["sticky"])
    alts = [image["alt"] for image in page["images"]]
    examples = report["json"]["examples"]
    assert alts[0] == "Accuracy against latency" and 4 <= len(examples) <= 6
    assert all(alt.startswith(Path(e["image"]).name) for alt, e in zip(alts[1:], examples))
    assert alts[1 + len(examples):] == ["Precision-recall curves", "mAP and drop per artifact",
                                        "Robustness drop per perturbation"]
    for image in page["images"]:  # decoded, shown, drawn (not a blank frame), and inside the window
        assert image["complete"] and image["naturalWidth"] > 100 and image["naturalHeight"] > 100, image
        assert image["shownWidth"] > 100 and image["inked"] > 2000 and image["right"] <= 1280, image
    assert page["viewport"] == 1280 and page["scrollWidth"] <= 1280 and page["overflowing"] == []
    screenshot = cv2.imread(str(shot))
    assert screenshot is not None and screenshot.shape[1] == 1280 and screenshot.std() > 20


def test_report_json_and_md_carry_the_summary_and_the_examples(report, report_dir):
    written = report["json"]
    assert written["schema"] == "edgeport.report/2" and written["budget"] == MAX_DROP
    summary = {s["device"]: s for s in written["summary"]}
    int8 = report["rows"]["shapes_yolov8n_full_integer_int8.tflite"]
    for device in ("Raspberry Pi / ARM CPU", "Coral Edge TPU"):  # the only artifact made for them that was measured
        if int8["drop_map50_95"] <= MAX_DROP:
            assert summary[device]["name"] == "shapes_yolov8n_full_integer_int8.tflite", summary[device]
        else:
            assert summary[device]["name"] is None and "budget" in summary[device]["why"], summary[device]
    assert summary["Jetson"]["proxy"] == "the fp32 ONNX the engine was built from, in onnxruntime"
    assert summary["iPhone / Mac"]["name"] is None and "not measured" in summary["iPhone / Mac"]["why"]
    for example in written["examples"]:
        assert Path(example["image"]).is_file() and example["artifacts"][0].endswith("shapes_yolov8n.onnx")
        assert example["artifacts"][1].endswith("shapes_yolov8n_full_integer_int8.tflite")
    disagreements = [e["disagreement"] for e in written["examples"]]
    assert disagreements == sorted(disagreements, reverse=True)
    markdown = (report_dir / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Examples") < markdown.index("## Artifacts")
    assert "| Raspberry Pi / ARM CPU |" in markdown and "### tflite" in markdown


def test_the_report_modules_import_no_heavy_framework():
    code = ("import sys, edgeport.report.build, edgeport.report.render, edgeport.report.page, edgeport.report.perturb, "
            "edgeport.report.measure, edgeport.report.examples, edgeport.report.summary, edgeport.cli; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'ultralytics', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_a_pt_baseline_is_converted_and_a_folder_without_float_model_is_refused(tflite_artifacts, sample_model,
                                                                               small_data, tmp_path):
    folder = tmp_path / "int8_only"
    folder.mkdir()
    int8 = tflite_artifacts["int8"]
    shutil.copy(int8, folder)
    shutil.copy(sidecar_path(int8), folder)
    refused = edgeport("report", str(folder), "--data", str(small_data), "--no-robustness")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("edgeport: error: no float baseline")
    out = edgeport("report", str(folder), "--data", str(small_data), "--no-robustness", "--images", "8",
                   "--baseline", str(sample_model))
    assert out.returncode == 0, out.stderr
    rows = json.loads((folder / "report.json").read_text())["rows"]
    assert [(r["target"], r["precision"], r["baseline"], r["images"]) for r in rows] == [
        ("onnx", "fp32", True, 8), ("tflite", "int8", False, 8)]
    assert "converting the baseline shapes_yolov8n.pt to float ONNX" in out.stderr


def test_without_matplotlib_the_page_says_how_to_get_the_plots(monkeypatch):
    import builtins

    from edgeport.report.model import Report
    from edgeport.report.page import html_page
    from edgeport.report.rows import ReportRow

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("matplotlib hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    row = ReportRow("a.onnx", "onnx", "fp32", "float32 NCHW -> float32", "onnxruntime", 1, 0.5, 0.6, 0.0, 1.0, 2.0,
                    3.0, "here", baseline=True, pr_curve=[0.5] * 101)
    page = html_page(Report(Path("."), "data.yaml", 1, [row], "a.onnx"))
    assert "plots not drawn: matplotlib is not installed; install it with: pip install &#x27;edgeport[report]&#x27;" in page
    assert "<img" not in page and "<td>a.onnx</td>" in page and "<h2>Summary</h2>" in page


def test_tasks_run_through_any_map_in_shards_and_rows_from_another_machine_join(report, report_dir, small_data):
    """The builder hands every (artifact, image set, shard) to the map it is given; shards score exactly as one
    pass; rows measured on an arm64 machine join the report and are preferred for the Raspberry Pi."""
    from edgeport.report import build_report
    from edgeport.report.model import rows_from_file
    from edgeport.report.tasks import EvalTask

    seen: list[EvalTask] = []

    def recording_map(fn, tasks):  # what a cluster's map does: run each task elsewhere, keep the order
        tasks = list(tasks)
        seen.extend(tasks)
        return [pickle.loads(pickle.dumps(fn(pickle.loads(pickle.dumps(t))))) for t in tasks]

    int8 = report["rows"]["shapes_yolov8n_full_integer_int8.tflite"]
    pi_row = {**int8, "artifact": "shapes_yolov8n_full_integer_int8.tflite", "baseline": False,
              "latency_ms_p50": 500.0, "drop_map50_95": 0.0}
    rows_file = report_dir.parent / "pi_rows.json"
    rows_file.write_text(json.dumps({"rows": [pi_row]}))
    extra = rows_from_file(rows_file, measured_on="arm64 Debian 12 (qemu-user), ai-edge-litert")
    built = build_report(report_dir, small_data, artifacts=[report_dir / "shapes_yolov8n.onnx",
                                                            report_dir / "shapes_yolov8n_full_integer_int8.tflite"],
                         robustness=False, examples=False, latency_runs=2, progress=False, map_fn=recording_map,
                         shards=2, extra_rows=extra, write=False, say=lambda line: None)
    assert {(Path(t.model).name, t.shard, t.shards) for t in seen} == {
        (name, shard, 2) for name in ("shapes_yolov8n.onnx", "shapes_yolov8n_full_integer_int8.tflite")
        for shard in (0, 1)} and all(isinstance(t, EvalTask) for t in seen)
    for row in built.rows[:2]:  # two shards give the numbers of one pass
        assert row.map50_95 == report["rows"][Path(row.artifact).name]["map50_95"]
        assert row.per_class == report["rows"][Path(row.artifact).name]["per_class"]
    pi = next(r for r in built.rows if r.measured_on.startswith("arm64"))
    assert pi.drop_map50_95 == 0.0 and not pi.baseline
    summary = {s["device"]: s for s in built.to_dict()["summary"]}
    assert summary["Raspberry Pi / ARM CPU"]["measured_on"].startswith("arm64")  # slower, yet measured on the device
    assert "measured on arm64" in summary["Raspberry Pi / ARM CPU"]["why"]
