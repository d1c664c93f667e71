"""CoreML target: the written packages read back (spec, metadata, weight storage, NMS pipeline),
the conversion's process isolation, and the ONNX proxy that stands in for them off macOS."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import pytest

from edgeport import sample
from edgeport.artifact import ArtifactRecord, read_sidecar, sha256_file, sidecar_path
from edgeport.convert import ConvertOptions, convert
from edgeport.convert.coreml_target import PROXY_LABELS, run_worker
from edgeport.errors import ArtifactMismatchError, ConversionError, UnsupportedModelError
from edgeport.evaluate import evaluate
from edgeport.runtime import Detector

NAMES = ["circle", "square", "triangle"]


def test_package_takes_an_rgb_image_scaled_by_1_255_and_returns_vision_outputs(coreml_artifacts, coreml_inspect):
    info = coreml_inspect(coreml_artifacts["fp16"].path)
    assert info["type"] == "mlProgram"
    (image,) = info["inputs"]
    assert (image["name"], image["kind"], image["color"], image["width"], image["height"]) == \
        ("image", "imageType", "RGB", 320, 320)
    assert info["image_scale"] == pytest.approx(1 / 255, rel=1e-6)  # the app passes a CVPixelBuffer as is
    outputs = {o["name"]: (o["shape"], o["dtype"]) for o in info["outputs"]}
    assert outputs == {"coordinates": ([2100, 4], "FLOAT32"), "confidence": ([2100, 3], "FLOAT32")}


def test_labels_and_record_are_in_the_package_and_beside_it(coreml_artifacts, coreml_inspect):
    artifact = coreml_artifacts["fp16"]
    info = coreml_inspect(artifact.path)
    assert json.loads(info["user_defined"]["names"]) == NAMES
    embedded = ArtifactRecord.from_dict(json.loads(info["user_defined"]["edgeport"]))
    sidecar = read_sidecar(artifact.path)
    assert sidecar_path(artifact.path).name == "shapes_yolov8n_coreml_fp16.edgeport.json"
    assert sidecar.artifact_sha256 == sha256_file(artifact.path) and embedded.artifact_sha256 is None
    for record in (embedded, sidecar, artifact.record):
        assert list(record.names) == NAMES and record.target == "coreml" and record.precision == "fp16"
        assert (record.layout, record.inputs[0].dtype, record.inputs[0].shape) == ("NHWC", "uint8", (1, 320, 320, 3))
        assert (record.decode.kind, record.decode.box_format, record.decode.normalized) == ("split", "xywh", True)
        assert record.decode.nms  # a one-to-many head: the runtime runs NMS
        assert record.provenance["proxy"] == {"artifact": "shapes_yolov8n_coreml_fp16_proxy.onnx",
                                              "label": PROXY_LABELS["fp16"]}
        assert record.provenance["minimum_deployment_target"] == "iOS16"
    assert embedded.provenance["source_sha256"] == sidecar.provenance["source_sha256"]


def test_sidecar_is_bound_to_every_file_of_the_package(coreml_artifacts, tmp_path):
    package = tmp_path / coreml_artifacts["fp16"].path.name
    shutil.copytree(coreml_artifacts["fp16"].path, package)
    shutil.copy(sidecar_path(coreml_artifacts["fp16"].path), sidecar_path(package))
    assert read_sidecar(package).precision == "fp16"  # the copy hashes the same
    weights = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatchError, match="SHA-256 does not match"):
        read_sidecar(package)


def test_int8_weights_are_stored_as_int8(coreml_artifacts, coreml_inspect):
    fp16, int8 = coreml_inspect(coreml_artifacts["fp16"].path), coreml_inspect(coreml_artifacts["int8w"].path)
    assert fp16["weights"] == {"const:float16": 63}
    quantized = int8["weights"].get("constexpr_affine_dequantize:int8", 0)
    assert quantized >= 55 and quantized + int8["weights"].get("const:float16", 0) == 63  # tiny convs stay fp16
    ratio = coreml_artifacts["int8w"].size_bytes / coreml_artifacts["fp16"].size_bytes
    assert 0.45 < ratio < 0.6, ratio
    assert "quantize" not in int8["ops"]  # weights only: activations stay fp16


def test_w8a8_quantizes_weights_and_activations(coreml_artifacts, coreml_inspect):
    artifact = coreml_artifacts["w8a8"]
    info = coreml_inspect(artifact.path)
    # the detection head (18 convs) and its stride-8 input block (C2f, 4 convs) stay in float
    assert info["weights"] == {"constexpr_affine_dequantize:int8": 41, "const:float16": 22}
    assert info["ops"]["quantize"] >= 40 and info["ops"]["dequantize"] >= 40  # int8 activations
    assert artifact.record.provenance["float_modules"]["modules"] == ["net.model.15", "net.model.22"]
    assert artifact.record.provenance["minimum_deployment_target"] == "iOS17"
    assert artifact.record.provenance["calibration_images"] == 16 and artifact.record.provenance["calibration_sha256"]
    import onnx

    proxy = onnx.load(str(artifact.path.parent / artifact.record.provenance["proxy"]["artifact"]))
    ops = [node.op_type for node in proxy.graph.node]
    assert ops.count("QuantizeLinear") >= 70 and ops.count("Conv") == 63


@pytest.mark.parametrize("sample_name, p3, head", [("shapes_yolov8n.pt", "net.model.15", "net.model.22"),
                                                   ("shapes_yolo26n.pt", "net.model.16", "net.model.23")])
def test_w8a8_leaves_the_detection_head_in_float(sample_name, p3, head):
    from edgeport.convert.coreml_torch import float_modules, load_detector

    _, body, _ = load_detector(sample.model_path().parent / sample_name, 320)
    assert float_modules(body) == [p3, head]  # the head and the block feeding its stride-8 level
    kept = body.get_submodule(head)
    convs = {id(m) for m in kept.modules() if isinstance(m, torch.nn.Conv2d)}
    branch = [m for level in (*body.box_convs, *body.class_convs) for m in level.modules()
              if isinstance(m, torch.nn.Conv2d)]
    assert branch and all(id(m) in convs for m in branch)  # every conv the package's decode reads stays float


def test_nms_pipeline_is_model_then_non_maximum_suppression(coreml_artifacts, coreml_inspect):
    package = next(p for p in coreml_artifacts["fp16"].extra_files if p.name.endswith("_nms.mlpackage"))
    info = coreml_inspect(package)
    assert info["type"] == "pipeline" and info["models"] == ["mlProgram", "nonMaximumSuppression"]
    inputs = {i["name"]: (i["kind"], i["optional"]) for i in info["inputs"]}
    assert inputs == {"image": ("imageType", False), "iouThreshold": ("doubleType", True),
                      "confidenceThreshold": ("doubleType", True)}
    outputs = {o["name"]: o["shape_range"] for o in info["outputs"]}
    assert outputs == {"confidence": [[0, -1], [3, 3]], "coordinates": [[0, -1], [4, 4]]}
    nms = info["nms"]
    assert nms["labels"] == NAMES and nms["per_class"]
    assert (nms["iou_threshold"], nms["confidence_threshold"]) == (0.45, 0.25)
    assert [o["name"] for o in nms["model_outputs"]] == [i["name"] for i in nms["inputs"][:2]]
    record = read_sidecar(package)
    assert record.outputs[0].shape == (1, -1, 4) and record.provenance["nms"]["iou_threshold"] == 0.45
    assert record.provenance["proxy"]["artifact"] == "shapes_yolov8n_coreml_fp16_proxy.onnx"
    assert record.provenance["proxy"]["label"].endswith("not the pipeline's NonMaximumSuppression")
    assert json.loads(info["user_defined"]["names"]) == NAMES and "edgeport" in info["user_defined"]


def test_conversion_never_imports_coremltools_here(coreml_artifacts, tmp_path):
    assert coreml_artifacts and "coremltools" not in sys.modules  # it ran in the worker process
    lines = []
    crash = [sys.executable, "-c", ("import os, signal; print('coreml: step one', flush=True); "
                                    "os.kill(os.getpid(), signal.SIGSEGV)")]
    with pytest.raises(ConversionError, match="died with SIGSEGV"):
        run_worker(crash, lines.append, tmp_path / "stderr.txt")
    assert lines == ["coreml: step one"]  # its progress still came through


def test_proxy_holds_the_package_weights(coreml_artifacts, onnx_artifact, val_images):
    """The proxy differs from the float model by exactly the package's weight rounding."""
    float_model = Detector(onnx_artifact, conf=0.1)
    proxies = {p: Detector(a.path.parent / a.record.provenance["proxy"]["artifact"], conf=0.1)
               for p, a in coreml_artifacts.items()}
    for precision, proxy in proxies.items():
        assert proxy.record.provenance["proxy_for"] == coreml_artifacts[precision].path.name
        assert proxy.record.provenance["proxy_label"] == PROXY_LABELS[precision]
    tensor, _ = float_model.preprocess([float_model.load(val_images[0])])
    scores = {p: d.infer(tensor)["confidence"] for p, d in proxies.items()}
    reference = float_model.infer(tensor)["scores"]
    diff = {p: float(np.abs(s - reference).max()) for p, s in scores.items()}
    assert 0 < diff["fp16"] < 2e-3 and diff["fp16"] < diff["int8w"] < 0.05 and diff["int8w"] < diff["w8a8"], diff


def test_convert_ends_with_the_proxy_row(coreml_int8w_cli):
    """The CLI cannot run the package here, so its accuracy row is the proxy's, against the float ONNX."""
    assert coreml_int8w_cli["code"] == 0  # --max-drop 1.0 holds
    out = coreml_int8w_cli["out"]
    printed = coreml_int8w_cli["stdout"].splitlines()
    assert printed[0] == str(out / "shapes_yolov8n_coreml_int8w.mlpackage")
    assert any(line.startswith("shapes_yolov8n_coreml_int8w.mlpackage (proxy)") for line in printed)  # the table row
    rows = {Path(r["artifact"]).name: r for r in json.loads((out / "report.json").read_text())["rows"]}
    base, proxy = rows["shapes_yolov8n.onnx"], rows["shapes_yolov8n_coreml_int8w.mlpackage"]
    assert base["map50_95"] > 0.7 and proxy["precision"] == "int8w" and proxy["status"] == "proxy"
    assert "shapes_yolov8n_coreml_int8w_proxy.onnx" in proxy["measured_on"] and proxy["proxy"]
    assert proxy["map50_95"] != base["map50_95"] and abs(proxy["drop_map50_95"]) < 1.0  # int8 weights: < 1 point


def test_w8a8_proxy_measures_its_int8_activations(coreml_artifacts, coreml_int8w_cli, sample_data):
    rows = {Path(r["artifact"]).name: r for r in json.loads((coreml_int8w_cli["out"] / "report.json").read_text())["rows"]}
    artifact = coreml_artifacts["w8a8"]
    proxy = evaluate(artifact.path.parent / artifact.record.provenance["proxy"]["artifact"], sample_data,
                     progress=False).map50_95
    drop = (rows["shapes_yolov8n.onnx"]["map50_95"] - proxy) * 100
    # the proxy runs its int8 activations (it differs from the float model) and, with the head in float,
    # stays within a point of it either way (16 calibration images)
    assert drop != 0 and abs(drop) < 1.0, drop


def test_bad_requests_fail_clearly(sample_model, tmp_path, ultralytics_onnx):
    with pytest.raises(ConversionError, match="unknown precision 'dynamic'"):
        convert(sample_model, "coreml", ConvertOptions(out_dir=tmp_path, precision="dynamic"))
    with pytest.raises(ConversionError, match="--w8a8 calibrates"):
        convert(sample_model, "coreml", ConvertOptions(out_dir=tmp_path, precision="w8a8"))
    with pytest.raises(ConversionError, match="NMS thresholds"):
        convert(sample_model, "coreml", ConvertOptions(out_dir=tmp_path, precision="fp16", nms=True, nms_iou=1.5))
    with pytest.raises(UnsupportedModelError, match="Ultralytics .pt"):
        convert(ultralytics_onnx, "coreml", ConvertOptions(out_dir=tmp_path, precision="fp16"))
