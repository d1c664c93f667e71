"""The ncnn target: the bundled YOLOv8n converts through pnnx into <stem>_ncnn_model/ with fp16 weights, agrees
with its float model, runs in the runtime and the report; a damaged .bin is one line; YOLO26's NMS-free head
decodes with top-k. Backend details on hand-written models: tests/runtime/test_ncnn_backend.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport.convert import ConvertOptions, convert
from edgeport.convert.verify import FloatReference, judge, measure
from edgeport.convert.targets import parse_targets, plan
from edgeport.errors import ConversionError
from edgeport.runtime import Detector


@pytest.fixture(scope="module")
def ncnn_v8n(ncnn_artifact):
    """The bundled YOLOv8n converted to NCNN (default precision fp16), checked by `convert` (shared with the
    report's tests: conftest's ncnn_artifact)."""
    return ncnn_artifact


def test_yolov8n_converts_to_an_fp16_ncnn_folder_that_agrees_with_float(ncnn_v8n, sample_model):
    from edgeport.convert.source import load_source

    folder = ncnn_v8n.path
    assert folder.name == "shapes_yolov8n_ncnn_model" and folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == ["model.ncnn.bin", "model.ncnn.param"]
    sidecar = json.loads((folder.parent / "shapes_yolov8n_ncnn_model.edgeport.json").read_text())
    assert sidecar["target"] == "ncnn" and sidecar["precision"] == "fp16" and sidecar["layout"] == "NCHW"
    assert sidecar["decode"]["kind"] == "dfl" and sidecar["decode"]["nms"] is True
    assert "pnnx" in sidecar["provenance"]["tools"]
    params = sum(p.numel() for p in load_source(sample_model).net.parameters())
    assert (folder / "model.ncnn.bin").stat().st_size < 2.5 * params  # float16 storage (float32 is >= 4 bytes each)
    check = ncnn_v8n.check
    assert check["checked"] and check["judged"] and check["matched"] >= 0.9 and abs(check["score_shift"]) < 0.02
    assert not list(folder.parent.glob("*.pnnx*")) and not list(folder.parent.glob("*.py"))  # pnnx's side files


def test_folder_and_param_file_detect_alike_and_report_finds_the_folder(ncnn_v8n, val_images):
    from edgeport.report.rows import MEASURED
    from edgeport.report.scan import scan

    folder = ncnn_v8n.path
    by_folder, by_param = Detector(folder, threads=1), Detector(folder / "model.ncnn.param", threads=1)
    assert by_folder.backend_name == "ncnn" and by_param.record == by_folder.record
    first, second = by_folder.detect(val_images[0]), by_param.detect(val_images[0])
    assert len(first.score) > 0
    np.testing.assert_allclose(first.xyxy, second.xyxy)
    rows = {found.path.name: found for found in scan(folder.parent, threads=1)}
    assert rows[folder.name].status == MEASURED and rows[folder.name].size_bytes > 1e6


def test_truncated_bin_is_a_one_line_error(ncnn_v8n, tmp_path, val_images, capfd):
    from edgeport.cli import main

    folder = tmp_path / ncnn_v8n.path.name
    shutil.copytree(ncnn_v8n.path, folder)
    shutil.copy(ncnn_v8n.path.parent / f"{folder.name}.edgeport.json", tmp_path)
    weights = folder / "model.ncnn.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    capfd.readouterr()
    assert main(["detect", "--model", str(folder), str(val_images[0])]) != 0
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # NCNN's own messages are quoted in it, not printed apart
    assert "model.ncnn.bin" in err and "truncated" in err and "convert again" in err


def test_yolo26_stand_in_decodes_its_nms_free_head_with_top_k(request, tmp_path, val_images):
    from ultralytics import __version__

    from edgeport.convert.ultralytics_env import load_ultralytics
    from edgeport.sample.families import build_family_model

    load_ultralytics()
    cache = request.config.cache.mkpath("edgeport-families") if hasattr(request.config.cache, "mkpath") \
        else request.config.cache.mkdir("edgeport-families")
    model = cache / f"yolo26_160_u{__version__}_v2" / "weights" / "yolo26.pt"  # shared with test_families
    if not model.is_file():
        build_family_model("yolo26", model, imgsz=160)
    # no built-in check: on 8 images the untrained stand-in gives ~1500 detections to match (half a minute)
    artifact = convert(model, "ncnn", ConvertOptions(out_dir=tmp_path, imgsz=160, precision="fp16", check=False))
    assert artifact.record.provenance["head"]["head"] == "one2one" and artifact.record.decode.reg_max == 1
    assert artifact.record.decode.nms is False  # top-k, never NMS
    detector = Detector(artifact.path, threads=1)
    result = judge(measure(detector, FloatReference(model, 160), val_images[:2]), "fp16")
    assert result.problems == [] and result.judged and result.zero_area < 0.05, result
    found = detector.detect(val_images[0])
    assert 0 < len(found.score) <= 300 and (found.xyxy[:, 2] > found.xyxy[:, 0]).all()


def test_target_all_includes_ncnn_at_fp16_and_int8_is_refused_before_work(sample_model, tmp_path):
    assert ("ncnn", "fp16") in plan(parse_targets("all"), calibrated=False)
    with pytest.raises(ConversionError, match="choose one of fp16, fp32"):
        convert(sample_model, "ncnn", ConvertOptions(out_dir=tmp_path, precision="int8"))
    assert not list(tmp_path.iterdir())
