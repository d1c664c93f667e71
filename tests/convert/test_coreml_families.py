"""CoreML on the families Ultralytics 8.4 builds: attention blocks (YOLO11, YOLO12, YOLO26) convert
under numpy >= 2.4, and NMS-free one-to-one heads (YOLOv10, YOLO26) are what the package decodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.artifact import ArtifactRecord, read_sidecar

FOLD_INT_OF_SHAPE = """
import torch
from edgeport.convert.coreml_worker import _import_coremltools

class Flatten(torch.nn.Module):
    def forward(self, x):
        n = int(x.shape[2] * x.shape[3])  # traced as aten::Int of a 1-element constant, as in attention blocks
        return x.reshape(x.shape[0], x.shape[1], n)

ct = _import_coremltools()
traced = torch.jit.trace(Flatten(), torch.zeros(1, 3, 20, 20))
model = ct.convert(traced, inputs=[ct.TensorType(shape=(1, 3, 20, 20))], convert_to="mlprogram",
                   skip_model_load=True)
print(model.get_spec().description.output[0].type.multiArrayType.shape)
"""


def _env() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH (for `python -m edgeport...`)."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def test_int_of_a_shape_product_converts_under_numpy_2_4():
    """coremltools 9.0's own `int` translation raises on this graph with numpy >= 2.4; the worker's does not."""
    assert tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4)  # the numpy that breaks coremltools 9.0
    done = subprocess.run([sys.executable, "-c", FOLD_INT_OF_SHAPE], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1,", "3,", "400]"]


@pytest.fixture(scope="module")
def yolo26n_coreml(tmp_path_factory):
    """A YOLO26n (attention, NMS-free one-to-one head, no DFL; BatchNorm statistics from the sample)
    converted to CoreML fp16 with --nms; with the packages read back in the worker's own process."""
    from edgeport.convert import ConvertOptions, convert

    from edgeport.sample.families import build_family_model

    out = tmp_path_factory.mktemp("coreml_yolo26n")
    source = build_family_model("yolo26n", out / "yolo26n.pt", imgsz=320, head_biases=False)
    artifact = convert(source, "coreml", ConvertOptions(out_dir=out, precision="fp16", imgsz=320, nms=True))
    packages = [artifact.path, *(p for p in artifact.extra_files if p.suffix == ".mlpackage")]
    done = subprocess.run([sys.executable, "-m", "edgeport.convert.coreml_worker", "inspect", *map(str, packages)],
                          capture_output=True, text=True, check=True, env=_env())
    return {"source": source, "artifact": artifact, "inspect": json.loads(done.stdout), "pipeline": packages[1]}


def test_yolo26n_package_is_read_back_like_yolov8n(yolo26n_coreml):
    artifact = yolo26n_coreml["artifact"]
    info = yolo26n_coreml["inspect"][str(artifact.path)]
    (image,) = info["inputs"]
    assert (info["type"], image["kind"], image["color"], image["width"]) == ("mlProgram", "imageType", "RGB", 320)
    assert info["image_scale"] == pytest.approx(1 / 255, rel=1e-6)
    outputs = {o["name"]: (o["shape"], o["dtype"]) for o in info["outputs"]}
    assert outputs == {"coordinates": ([2100, 4], "FLOAT32"), "confidence": ([2100, 3], "FLOAT32")}
    assert json.loads(info["user_defined"]["names"]) == ["circle", "square", "triangle"]
    embedded = ArtifactRecord.from_dict(json.loads(info["user_defined"]["edgeport"]))
    for record in (embedded, read_sidecar(artifact.path)):
        assert record.provenance["head"]["branch"] == "one-to-one" and record.provenance["head"]["reg_max"] == 1
        assert record.provenance["head"]["nms_free"] and "no DFL" in record.provenance["head"]["decoded"]
        assert "same one-to-one (NMS-free) head" in record.provenance["proxy"]["label"]  # the proxy says so
    assert info["weights"] == {"const:float16": info["ops"]["conv"]}


def test_nms_pipeline_on_an_nms_free_head_says_why(yolo26n_coreml):
    pipeline = yolo26n_coreml["pipeline"]
    info = yolo26n_coreml["inspect"][str(pipeline)]
    assert info["type"] == "pipeline" and info["models"] == ["mlProgram", "nonMaximumSuppression"]
    note = read_sidecar(pipeline).provenance["nms_note"]
    assert "NMS-free" in note and "VNRecognizedObjectObservation" in note


def _ultralytics_one_to_one(source: Path, image: np.ndarray):
    """(head, Ultralytics' own decode of the one-to-one branch (B, 4 + nc, N)) of the .pt at `source`."""
    import torch

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    net = YOLO(str(source)).model.float().eval()
    head = net.model[-1]
    head.end2end = True
    with torch.no_grad():
        _, raw = net(torch.from_numpy(image))
        return head, head._inference(raw["one2one"])


def test_yolo26n_proxy_decodes_the_one_to_one_head_as_ultralytics_does(yolo26n_coreml):
    """Every anchor's box and scores equal Ultralytics' own decode of the one-to-one branch
    (distances used as given, no softmax over a single bin), up to the package's fp16 weights."""
    from edgeport.runtime import Detector

    from edgeport.sample.families import sample_batch

    artifact = yolo26n_coreml["artifact"]
    proxy = Detector(artifact.path.parent / artifact.record.provenance["proxy"]["artifact"])
    assert proxy.record.provenance["proxy_for"] == artifact.path.name
    image = sample_batch(320, 1)
    out = proxy.infer(image)
    head, decoded = _ultralytics_one_to_one(yolo26n_coreml["source"], image)
    reference = decoded[0].numpy()  # (4 + nc, N): xyxy pixels, sigmoid scores
    centre, size = out["coordinates"][0][:, :2] * 320, out["coordinates"][0][:, 2:] * 320
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], 1)
    error = np.abs(xyxy - reference[:4].T)
    assert np.ptp(reference[:4]) > 100 and np.ptp(size) > 10  # boxes vary: the check can fail
    assert np.percentile(error, 50) < 0.1 and np.percentile(error, 99) < 3.0, error.max()
    score_error = np.abs(out["confidence"][0] - reference[4:].T)
    assert np.median(score_error) < 1e-3 and score_error.max() < 0.02


def test_yolo26n_records_ask_for_top_k_without_nms_as_ultralytics_selects(yolo26n_coreml):
    """Package, pipeline and proxy records say decode.nms False, and the proxy's detections through the
    runtime are Ultralytics' own one-to-one selection (top-k over anchors and classes, no NMS)."""
    import torch

    from edgeport.runtime import Detector
    from edgeport.runtime.detector import NmsOptions
    from edgeport.runtime.postprocess import select_and_nms
    from edgeport.runtime.preprocess import Letterbox

    from edgeport.sample.families import sample_batch

    artifact = yolo26n_coreml["artifact"]
    proxy = Detector(artifact.path.parent / artifact.record.provenance["proxy"]["artifact"])
    embedded = ArtifactRecord.from_dict(json.loads(yolo26n_coreml["inspect"][str(artifact.path)]["user_defined"]
                                                   ["edgeport"]))
    for record in (artifact.record, embedded, read_sidecar(yolo26n_coreml["pipeline"]), proxy.record):
        assert record.decode.nms is False
    image = sample_batch(320, 1)
    head, decoded = _ultralytics_one_to_one(yolo26n_coreml["source"], image)
    with torch.no_grad():
        chosen = head.postprocess(decoded.transpose(1, 2))[0].numpy()  # (300, 6): Ultralytics' top-k
    outputs = proxy.infer(image)
    # conf 0: every one of the max_det best (anchor, class) pairs, no threshold for fp16 rounding to cross
    (found,) = proxy.postprocess(outputs, [Letterbox(1.0, 1.0, 0, 0, (320, 320))], NmsOptions(conf=0.0))
    # a box wholly off the image clips to zero width or height and is no detection: edgeport drops it
    clipped = np.clip(chosen[:, :4], 0, 320)
    on_image = chosen[(clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])]
    assert len(chosen) == 300 and abs(len(found.score) - len(on_image)) <= 3
    distances = []
    for row in on_image[:50]:  # the best 50 are there: same class, box and score up to the fp16 weights
        same_class = found.class_id == int(row[5])
        distance = np.where(same_class, np.abs(found.xyxy - np.clip(row[:4], 0, 320)).max(1), np.inf)
        nearest = int(np.argmin(distance))
        assert distance[nearest] < 12.0 and abs(found.score[nearest] - row[4]) < 0.02, (row, distance[nearest])
        distances.append(distance[nearest])
    # the untrained stand-in's fp16 weights move a few boxes by several pixels (its 2 worst of 50: 7 and 9 px)
    assert np.median(distances) < 2.0 and np.mean(np.array(distances) < 6.0) >= 0.9, distances
    boxes = outputs["coordinates"][0]  # NMS on the same outputs would drop some of them
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1) * 320
    kept = select_and_nms(xyxy, outputs["confidence"][0], conf=0.0, iou=0.45, max_det=300)[1]
    assert not np.array_equal(kept[:50], found.score[:50])  # NMS drops some of the best 50: the check can fail


def test_yolo11n_int8_weights_converts_and_reports_its_proxy_drop(tmp_path, val16_data):
    """An attention model (YOLO11n, untrained) through the CLI: int8 weights, spec and proxy row."""
    import contextlib
    import io

    from edgeport.cli import main

    from edgeport.sample.families import build_family_model

    source = build_family_model("yolo11n", tmp_path / "yolo11n.pt", imgsz=320, stand_in=False)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["convert", str(source), "--target", "coreml", "--int8-weights", "--imgsz", "320",
                     "--data", str(val16_data), "--out", str(tmp_path), "--no-check"])  # untrained: no agreement to check
    assert code == 0
    package = tmp_path / "yolo11n_coreml_int8w.mlpackage"
    rows = {Path(r["artifact"]).name: r for r in json.loads((tmp_path / "report.json").read_text())["rows"]}
    row = rows["yolo11n_coreml_int8w.mlpackage"]
    assert row["precision"] == "int8w" and row["drop_map50_95"] is not None and "yolo11n.onnx" in rows
    assert row["status"] == "proxy" and "yolo11n_coreml_int8w_proxy.onnx" in row["measured_on"]
    done = subprocess.run([sys.executable, "-m", "edgeport.convert.coreml_worker", "inspect", str(package)],
                          capture_output=True, text=True, check=True, env=_env())
    info = json.loads(done.stdout)[str(package)]
    assert info["weights"].get("constexpr_affine_dequantize:int8", 0) >= 70
    assert {o["name"]: o["shape"] for o in info["outputs"]} == {"coordinates": [2100, 4], "confidence": [2100, 3]}
    assert read_sidecar(package).provenance["head"]["branch"] == "one-to-many"
