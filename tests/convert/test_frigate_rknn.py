"""Frigate's rknn block: the second .rknn built from the Frigate-layout ONNX (session's int8 rk3588 conversion of
the bundled YOLOv8n), read in the toolkit's simulator and decoded the way Frigate's yolo-generic code does."""

from __future__ import annotations

import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
import yaml

from edgeport.artifact import read_sidecar
from frigate_schema import problems
from rknn_support import rknn_int8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return rknn_int8(tmp_path_factory)


@pytest.fixture(scope="module")
def folder(artifact):
    return artifact.path.parent / f"{artifact.path.stem}_frigate"


@pytest.fixture(scope="module")
def simulated(folder, val_images):
    """(letterboxed uint8 frames of 12 val images, the Frigate .rknn's output on each in the simulator)."""
    from edgeport.runtime import Detector
    from edgeport.runtime.preprocess import letterbox

    detector = Detector(folder / f"{folder.name}.rknnsim")
    frames = np.stack([letterbox(detector.load(path), (320, 320))[0] for path in val_images[:12]])
    return frames, detector.infer(frames)


def frigate_yolo_generic(output: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frigate's yolo-generic post-processing, step by step as its source reads one output: squeeze, put anchors
    on rows, keep rows whose best class score is above 0.4, centre/size to corners, OpenCV NMS at 0.4 (handed the
    corner boxes, as Frigate does), at most 20 rows of (class, score, y1/h, x1/w, y2/h, x2/w)."""
    rows = np.squeeze(output)
    if rows.shape[0] < rows.shape[1]:
        rows = rows.T
    best = np.max(rows[:, 4:], axis=1)
    rows, best = rows[best > 0.4], best[best > 0.4]
    classes = np.argmax(rows[:, 4:], axis=1)
    corners = np.ones_like(rows[:, :4])
    corners[:, 0] = rows[:, 0] - rows[:, 2] / 2
    corners[:, 1] = rows[:, 1] - rows[:, 3] / 2
    corners[:, 2] = rows[:, 0] + rows[:, 2] / 2
    corners[:, 3] = rows[:, 1] + rows[:, 3] / 2
    kept = cv2.dnn.NMSBoxes(corners, best, score_threshold=0.4, nms_threshold=0.4)
    out = np.zeros((20, 6), np.float32)
    for i, (box, score, class_id) in enumerate(zip(corners[kept], best[kept], classes[kept])):
        if i == 20:
            break
        out[i] = [class_id, score, box[1] / height, box[0] / width, box[3] / height, box[2] / width]
    return out


def _matched(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
    """(reference rows found in candidate at IoU >= 0.5 with the same class, reference rows); zero rows are empty."""
    reference, candidate = reference[reference[:, 1] > 0], candidate[candidate[:, 1] > 0]
    used, found = set(), 0
    for row in reference:
        for j, other in enumerate(candidate):
            y1, x1 = max(row[2], other[2]), max(row[3], other[3])
            y2, x2 = min(row[4], other[4]), min(row[5], other[5])
            inter = max(0.0, y2 - y1) * max(0.0, x2 - x1)
            union = (row[4] - row[2]) * (row[5] - row[3]) + (other[4] - other[2]) * (other[5] - other[3]) - inter
            if j not in used and other[0] == row[0] and inter / union >= 0.5:
                used.add(j)
                found += 1
                break
    return found, len(reference)


def test_rknn_frigate_folder_has_valid_block_and_labels(artifact, folder):
    config = yaml.safe_load((folder / "frigate.yml").read_text())
    assert problems(config) == []
    assert config["detectors"] == {"rknn": {"type": "rknn", "num_cores": 0}}
    model = config["model"]
    assert model["path"] == f"/config/model_cache/{folder.name}/{folder.name}.rknn"
    assert (model["model_type"], model["input_tensor"], model["input_dtype"]) == ("yolo-generic", "nhwc", "int")
    assert (folder / "labels.txt").read_text().splitlines() == list(artifact.record.names)
    rknn = folder / f"{folder.name}.rknn"
    assert rknn.read_bytes()[:4] == b"RKNN" and rknn in artifact.extra_files
    record = read_sidecar(rknn)
    assert record.decode.kind == "ultralytics" and record.decode.box_format == "xywh" and not record.decode.normalized
    check = record.provenance["frigate_check"]
    assert record.inputs[0].dtype == "uint8" and check["anchors_matched"] >= 0.9 and check["enforced"], check


def test_rknn_frigate_model_has_one_output_in_simulator(simulated):
    _, outputs = simulated
    assert list(outputs) == ["output0"] and outputs["output0"].shape == (12, 4 + 3, 2100)


def test_frigate_decoding_agrees_with_float_model(simulated, onnx_artifact):
    import onnxruntime as ort

    frames, outputs = simulated
    float_onnx = onnx_artifact.parent / f"{onnx_artifact.stem}_frigate" / f"{onnx_artifact.stem}_frigate.onnx"
    session = ort.InferenceSession(str(float_onnx), providers=["CPUExecutionProvider"])
    found = total = 0
    for frame, ours in zip(frames, outputs["output0"]):
        reference = session.run(None, {"images": frame.transpose(2, 0, 1)[None].astype(np.float32) / 255})[0]
        hits, count = _matched(frigate_yolo_generic(reference, 320, 320), frigate_yolo_generic(ours[None], 320, 320))
        found, total = found + hits, total + count
    assert total >= 12 and found / total >= 0.9, (found, total)
    # the scores survive: a full-int8 join (box pixels and scores under one scale) would zero them
    assert outputs["output0"][:, 4:].max() > 0.8


def test_rknn_frigate_accuracy_close_to_float(folder, onnx_artifact, val16_data):
    from edgeport.evaluate import evaluate

    simulated = evaluate(folder / f"{folder.name}.rknnsim", val16_data, progress=False)
    reference = evaluate(onnx_artifact, val16_data, progress=False)
    assert abs(reference.map50_95 - simulated.map50_95) < 0.03, (reference.map50_95, simulated.map50_95)


def test_decode_tail_found_after_the_head_only(onnx_artifact):
    import onnx

    from edgeport.convert.frigate_rknn import tail_nodes

    stem = onnx_artifact.stem
    model = onnx.load(str(onnx_artifact.parent / f"{stem}_frigate" / f"{stem}_frigate.onnx"))
    tail = set(tail_nodes(model))
    assert {"/dfl/Softmax", "/Sigmoid", "frigate_concat", "frigate_transpose"} <= tail
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert [name for name in convs if name in tail] == ["/dfl/conv/Conv"]


def test_full_int8_copy_caught_removed_and_named(tmp_path, artifact, monkeypatch, sample_model, sample_data):
    """A real build with no float16 tail (the join quantized with one int8 scale): its scores are all zero, and
    the check must refuse it and remove it."""
    from edgeport.convert import ConvertOptions, Job, frigate_rknn
    from edgeport.convert.frigate import write_rknn_frigate

    monkeypatch.setattr(frigate_rknn, "tail_nodes", lambda model: [])
    job = Job.of(sample_model, ConvertOptions(out_dir=tmp_path, data=sample_data, calibration_images=8,
                                              platform="rk3588"))
    copy = replace(artifact, path=tmp_path / artifact.path.name)
    refused = r"_frigate\.rknn \(Frigate layout of .*highest class score is 0\.000"
    said = []
    assert write_rknn_frigate(job, copy, said.append) == copy  # the .rknn stands, with no Frigate files
    assert any(re.search(refused, line) and line.startswith("frigate: REFUSED") for line in said), said
    folder = tmp_path / f"{copy.path.stem}_frigate"
    assert folder.is_dir() and not list(folder.glob("*.rknn*")) and not (folder / "frigate.yml").exists()


def test_agreement_floors_are_edgeports_own_per_precision():
    from edgeport.convert.frigate_rknn import FrigateAgreement

    fine = FrigateAgreement(images=8, anchors=400, anchors_matched=0.95, float_detections=40, frigate_matched=0.9,
                            max_score=(0.97, 0.96))
    assert fine.problem("int8") == "" and fine.problem("fp16") == ""
    assert replace(fine, anchors_matched=0.6).problem("int8") == ""
    assert "only 60% of the 400 anchors" in replace(fine, anchors_matched=0.6).problem("fp16")
    assert "only 40%" in replace(fine, anchors_matched=0.4).problem("int8")
    assert replace(fine, anchors=0, anchors_matched=1.0).problem("int8") == ""
