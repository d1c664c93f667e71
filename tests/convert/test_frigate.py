"""Frigate config blocks: valid against Frigate's documented keys, and true to the model they point at."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from edgeport.artifact import ArtifactRecord, Decode, TensorSpec
from edgeport.convert import Artifact
from edgeport.convert.frigate import block, rknn_block, write_frigate
from edgeport.runtime import Detector

from frigate_schema import problems


def _folder(artifact) -> tuple[dict, list[str], object]:
    folder = artifact.path.parent / f"{artifact.path.stem}_frigate"
    config = yaml.safe_load((folder / "frigate.yml").read_text())
    labels = (folder / "labels.txt").read_text().splitlines()
    return config, labels, folder


def frigate_best(output: np.ndarray, width: int, height: int) -> tuple[int, int, np.ndarray]:
    """How Frigate's yolo-generic reads one output (as its documentation describes it): (1, 4 + nc, N) or
    transposed, centre x, centre y, w, h in input pixels then class scores. Returns the best anchor, its
    class and its box x1 y1 x2 y2 as fractions of the input width and height."""
    rows = np.squeeze(output)
    rows = rows.T if rows.shape[0] < rows.shape[1] else rows
    best = int(rows[:, 4:].max(axis=1).argmax())
    cx, cy, w, h = rows[best, :4]
    box = np.array([(cx - w / 2) / width, (cy - h / 2) / height, (cx + w / 2) / width, (cy + h / 2) / height])
    return best, int(rows[best, 4:].argmax()), box


def test_openvino_block_is_valid_and_matches_the_ir(openvino_irs, sample_data):
    import openvino as ov

    config, labels, folder = _folder(openvino_irs["int8"])
    assert problems(config) == []
    model = config["model"]
    assert config["detectors"]["ov"] == {"type": "openvino", "device": "CPU"}
    assert (model["model_type"], model["input_tensor"], model["input_dtype"]) == ("yolo-generic", "nchw", "float")
    assert labels == list(openvino_irs["int8"].record.names)
    ir = ov.Core().read_model(str(folder / model["path"].rsplit("/", 1)[1]))
    assert list(ir.inputs[0].get_shape()) == [1, 3, model["height"], model["width"]]
    assert len(ir.outputs) == 1 and list(ir.outputs[0].get_shape())[:2] == [1, 4 + len(labels)]


def test_frigate_model_finds_what_the_artifact_finds(openvino_irs, val_images):
    artifact = openvino_irs["fp32"]
    _, _, folder = _folder(artifact)
    ours, frigate = Detector(artifact.path), Detector(folder / f"{artifact.path.stem}_frigate.xml")
    image = val_images[0]
    a, b = ours.detect(image), frigate.detect(image)
    assert len(a.score) == len(b.score) > 0 and np.allclose(a.xyxy, b.xyxy, atol=0.05)
    # read as Frigate reads it: its best anchor, class and box are the split artifact's
    tensor, _ = frigate.preprocess([frigate.load(image)])
    anchor, class_id, box = frigate_best(frigate.infer(tensor)["output0"], 320, 320)
    split = ours.infer(tensor)
    assert anchor == int(split["scores"][0].max(axis=1).argmax())
    assert class_id == int(split["scores"][0, anchor].argmax())
    assert np.allclose(box, split["boxes"][0, anchor], atol=1e-4)


def test_onnx_block_is_valid_and_matches_the_onnx(onnx_artifact):
    import onnxruntime as ort

    record = Detector(onnx_artifact).record
    config, labels, folder = _folder(Artifact(onnx_artifact, record))
    assert problems(config) == [] and config["detectors"]["onnx"] == {"type": "onnx"}
    session = ort.InferenceSession(str(folder / config["model"]["path"].rsplit("/", 1)[1]))
    assert session.get_inputs()[0].shape == [1, 3, config["model"]["height"], config["model"]["width"]]
    assert [o.shape for o in session.get_outputs()] == [[1, 4 + len(labels), record.outputs[0].shape[1]]]


def test_schema_catches_what_frigate_rejects():
    bad = {"detectors": {"ov": {"type": "openvino", "device": "CPU", "threads": 2}},
           "model": {"model_type": "yolov8", "input_tensor": "chw", "width": "320"}}
    assert len(problems(bad)) == 5  # model_type twice: unknown, and not an openvino type
    too_many = {"detectors": {"rknn": {"type": "rknn", "num_cores": 4}}, "model": {"model_type": "yolo-generic"}}
    assert problems(too_many) == ["detectors.rknn.num_cores: 4 is not an integer in range(0, 4)"]


def _record(target: str, decode: Decode, outputs: tuple[TensorSpec, ...], batch: int = 1) -> ArtifactRecord:
    return ArtifactRecord(names=("a", "b", "c"), imgsz=(320, 320), layout="NCHW",
                          inputs=(TensorSpec("images", (batch, 3, 320, 320), "float32"),), outputs=outputs,
                          decode=decode, target=target)


def test_edgetpu_says_why_not_and_writes_nothing(tmp_path):
    lines = []
    record = _record("edgetpu", Decode(kind="dfl"), (TensorSpec("box0", (1, 1600, 64), "uint8"),))
    artifact = Artifact(tmp_path / "m_edgetpu.tflite", record)
    assert write_frigate(artifact, lines.append) is artifact
    assert "(1, N, 64) DFL box logits" in lines[0] and not list(tmp_path.iterdir())


def test_batched_artifact_gets_no_block(tmp_path):
    lines = []
    record = _record("onnx", Decode(), (TensorSpec("boxes", (4, 2100, 4), "float32"),), batch=4)
    write_frigate(Artifact(tmp_path / "m_batch4.onnx", record), lines.append)
    assert "one image at a time" in lines[0] and not list(tmp_path.iterdir())


def test_rknn_block_from_name_and_record(tmp_path):
    joined = _record("rknn", Decode(kind="ultralytics", boxes="output0", scores="output0", box_format="xywh",
                                    normalized=False), (TensorSpec("output0", (1, 7, 2100), "float32"),))
    config, why = rknn_block(tmp_path / "m_rknn_rk3588.rknn", replace(joined, layout="NHWC"))
    assert why == "" and problems(config) == []
    assert config["model"]["input_tensor"] == "nhwc" and config["model"]["path"].endswith("m_rknn_rk3588.rknn")
    split = _record("rknn", Decode(), (TensorSpec("boxes", (1, 2100, 4), "float32"),
                                       TensorSpec("scores", (1, 2100, 3), "float32")))
    config, why = rknn_block(tmp_path / "m_rknn_rk3588.rknn", split)
    assert config is None and "--target rknn" in why


def test_rknn_for_a_soc_frigate_does_not_run_says_why(tmp_path):
    lines = []
    record = replace(_record("rknn", Decode(kind="dfl"), (TensorSpec("box_8", (1, 1600, 64), "float32"),)),
                     provenance={"platform": "rv1106"})
    artifact = Artifact(tmp_path / "m_rknn_rv1106.rknn", record)
    assert write_frigate(artifact, lines.append, job=object()) is artifact
    assert "rk3562, rk3566, rk3568, rk3576, rk3588 only, not rv1106" in lines[0] and not list(tmp_path.iterdir())


def test_block_reads_size_and_layout_from_the_record():
    record = _record("openvino", Decode(), (TensorSpec("boxes", (1, 2100, 4), "float32"),))
    model = block("openvino", replace(record, imgsz=(256, 320)), "m.xml", "m_frigate")["model"]
    assert (model["width"], model["height"], model["input_tensor"]) == (320, 256, "nchw")


@pytest.mark.parametrize("target, precision", [("onnx", "fp16"), ("tensorrt", "int8")])
def test_reduced_onnx_gets_a_frigate_copy_onnxruntime_runs(tmp_path, sample_model, sample_data, target, precision):
    import onnxruntime as ort

    from edgeport.convert import ConvertOptions, convert

    artifact = convert(sample_model, target, ConvertOptions(out_dir=tmp_path, precision=precision, check=False,
                                                            data=sample_data, calibration_images=8))
    config, labels, folder = _folder(artifact)
    session = ort.InferenceSession(str(folder / config["model"]["path"].rsplit("/", 1)[1]))
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 320, 320), np.float32)})[0]
    assert out.shape[:2] == (1, 4 + len(labels)) and out.dtype == np.float32
