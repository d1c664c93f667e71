"""The float ONNX target: static, opset >= 17, split normalized head, embedded record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeport.artifact import METADATA_KEY, sha256_file
from edgeport.convert import ConvertOptions, convert
from edgeport.errors import ConversionError, ModelNotFoundError, UnsupportedModelError
from edgeport.runtime import Detector, load_image
from edgeport.runtime.preprocess import letterbox


def _run(path, image):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    canvas, _ = letterbox(load_image(image), (320, 320))
    x = (canvas.transpose(2, 0, 1)[None] / 255).astype(np.float32)
    return session, session.run(None, {session.get_inputs()[0].name: x})


def test_onnx_head_is_split_and_normalized(onnx_artifact, val_images):
    model = onnx.load(str(onnx_artifact))
    assert model.opset_import[0].version >= 17
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert dims == {"boxes": [1, 2100, 4], "scores": [1, 2100, 3]}
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 320, 320]
    session, (boxes, scores) = _run(onnx_artifact, val_images[0])
    confident = scores[0].max(axis=1) > 0.25
    assert confident.any()
    kept = boxes[0][confident]
    assert kept.min() > -0.05 and kept.max() < 1.05  # normalized to 0..1, not pixels
    assert (kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all()  # xyxy
    assert 0.0 <= scores.min() and scores.max() <= 1.0


def test_onnx_record_embedded_with_provenance(onnx_artifact, sample_model):
    meta = {p.key: p.value for p in onnx.load(str(onnx_artifact)).metadata_props}
    record = json.loads(meta[METADATA_KEY])
    assert record["names"] == ["circle", "square", "triangle"]
    assert record["imgsz"] == [320, 320] and record["layout"] == "NCHW"
    assert record["preprocess"] == {"color": "RGB", "scale": 1 / 255, "pad_value": 114, "letterbox": "center",
                                    "interpolation": "area"}
    assert record["decode"]["kind"] == "split" and record["decode"]["normalized"] is True
    assert record["provenance"]["source_sha256"] == sha256_file(sample_model)
    assert "ultralytics" in record["provenance"]["tools"] and record["provenance"]["command"]


def test_split_head_matches_ultralytics_plain_export(onnx_artifact, ultralytics_onnx, val_images):
    _, (boxes, scores) = _run(onnx_artifact, val_images[3])
    _, (raw,) = _run(ultralytics_onnx, val_images[3])
    raw = raw[0].T
    xywh = raw[:, :4]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1) / 320
    np.testing.assert_allclose(boxes[0], xyxy, atol=1e-4)
    np.testing.assert_allclose(scores[0], raw[:, 4:], atol=1e-5)


def test_convert_accepts_ultralytics_onnx(ultralytics_onnx, onnx_artifact, tmp_path, val_images):
    artifact = convert(ultralytics_onnx, "onnx", ConvertOptions(out_dir=tmp_path, name="from_onnx"))
    ours = Detector(artifact.path).detect(val_images[5])
    reference = Detector(onnx_artifact).detect(val_images[5])
    assert len(ours) == len(reference) > 0
    np.testing.assert_allclose(ours.xyxy, reference.xyxy, atol=0.05)


def test_convert_rejects_unknown_target_missing_model_and_foreign_onnx(sample_model, onnx_artifact, tmp_path):
    with pytest.raises(ConversionError, match="unknown target"):
        convert(sample_model, "caffe", ConvertOptions(out_dir=tmp_path))
    with pytest.raises(ModelNotFoundError):
        convert(tmp_path / "nope.pt", "onnx", ConvertOptions(out_dir=tmp_path))
    stripped = onnx.load(str(onnx_artifact))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "foreign.onnx"))
    with pytest.raises(UnsupportedModelError, match="no Ultralytics metadata"):
        convert(tmp_path / "foreign.onnx", "onnx", ConvertOptions(out_dir=tmp_path / "out"))
    text = tmp_path / "model.pt"
    text.write_text("not a model")
    shutil.copy(text, tmp_path / "model.onnx")
    with pytest.raises(ConversionError):
        convert(tmp_path / "model.onnx", "onnx", ConvertOptions(out_dir=tmp_path / "out"))
