"""`convert --batch`: fixed-N ONNX and TFLite, dynamic-batch ONNX, and the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.convert import ConvertOptions, convert
from edgeport.errors import ConversionError
from edgeport.runtime import Detector


@pytest.fixture(scope="module")
def batched(tmp_path_factory, sample_model, onnx_artifact, tflite_artifacts) -> dict[tuple[str, int], object]:
    """The batched artifacts of the sample (each through the agreement check), and the session's batch-1
    artifacts as references."""
    out = tmp_path_factory.mktemp("batch")
    artifacts = {("onnx", 1): onnx_artifact, ("tflite", 1): tflite_artifacts["fp32"]}
    for target, batch in (("onnx", 4), ("onnx", 0), ("tflite", 4)):
        artifacts[target, batch] = convert(sample_model, target, ConvertOptions(out_dir=out, batch=batch))
    return artifacts


def _same(found, expected, score_atol: float = 1e-4, box_atol: float = 0.05) -> None:
    assert len(found) == len(expected) > 0
    np.testing.assert_array_equal(found.class_id, expected.class_id)
    np.testing.assert_allclose(found.xyxy, expected.xyxy, atol=box_atol)
    np.testing.assert_allclose(found.score, expected.score, atol=score_atol)


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_fixed_batch4_runs_three_images_like_batch1(batched, val_images, target):
    artifact = batched[target, 4]
    assert artifact.check["checked"] is True  # the agreement check ran on the batched artifact and passed
    assert artifact.record.inputs[0].shape[0] == 4
    assert all(spec.shape[0] == 4 for spec in artifact.record.outputs)
    detector = Detector(artifact.path)
    assert detector.batch_size == 4
    one = Detector(batched[target, 1])
    assert one.batch_size == 1
    images = val_images[:3]
    for found, image in zip(detector.detect_batch(images), images, strict=True):  # padded to 4 inside
        _same(found, one.detect(image))


def test_dynamic_onnx_runs_batches_of_1_and_5(batched, val_images):
    artifact = batched["onnx", 0]
    assert artifact.path.name.endswith("_batch_dynamic.onnx")
    assert artifact.record.inputs[0].shape == (-1, 3, 320, 320)  # the record says the batch is dynamic
    detector = Detector(artifact.path)
    assert detector.batch_size == 0
    tensor, _ = detector.preprocess([detector.load(p) for p in val_images[:5]])
    raw = detector.backend.invoke(tensor)  # one invoke of all five
    assert [r.shape[0] for r in raw] == [5, 5]
    one = Detector(batched["onnx", 1])
    for found, image in zip(detector.detect_batch(val_images[:5]), val_images[:5], strict=True):
        _same(found, one.detect(image))
    _same(detector.detect(val_images[5]), one.detect(val_images[5]))


@pytest.fixture(scope="module")
def batched_int8(tmp_path_factory, sample_model, sample_data, onnx_precisions, tflite_artifacts) -> dict:
    """int8 at batch 4 (onnx, tflite) and dynamic (onnx), calibrated on the same images as the session's
    batch-1 int8 artifacts (their counts divide by 4: no batch is filled up), and those as references."""
    out = tmp_path_factory.mktemp("batch_int8")
    artifacts = {("onnx", 1): onnx_precisions["onnx", "int8"], ("tflite", 1): tflite_artifacts["int8"]}
    for target, batch, images in (("onnx", 4, 32), ("onnx", 0, 32), ("tflite", 4, 80)):
        options = ConvertOptions(out_dir=out, batch=batch, precision="int8", data=sample_data,
                                 calibration_images=images, calibration_dir=out / f"calib{target}{batch}")
        artifacts[target, batch] = convert(sample_model, target, options)
    return artifacts


@pytest.mark.parametrize(("target", "batch"), [("onnx", 4), ("onnx", 0), ("tflite", 4)])
def test_int8_batched_gives_batch1_int8_detections_per_image(batched_int8, val_images, target, batch):
    artifact = batched_int8[target, batch]
    assert artifact.record.precision == "int8" and artifact.check["checked"] is True
    assert artifact.record.inputs[0].shape[0] == (batch or -1)
    detector, one = Detector(artifact.path), Detector(batched_int8[target, 1])
    images = val_images[:5]  # batch 4: one full group and one padded
    for found, image in zip(detector.detect_batch(images), images, strict=True):
        _same(found, one.detect(image), score_atol=0.02, box_atol=1.0)


@pytest.mark.parametrize(("target", "batch", "precision", "words"), [
    ("tflite", 0, "fp32", "LiteRT models have static shapes"),
    ("edgetpu", 4, "int8", "writes batch 1 only"),
    ("coreml", 0, "fp16", "writes batch 1 only"),
])
def test_unsupported_batch_refused_in_one_line(sample_model, tmp_path, target, batch, precision, words):
    with pytest.raises(ConversionError) as info:
        convert(sample_model, target, ConvertOptions(out_dir=tmp_path, batch=batch, precision=precision))
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("text", ["0", "-2", "many"])
def test_cli_bad_batch_is_one_line(sample_model, tmp_path, capsys, text):
    from edgeport.cli import main

    assert main(["convert", str(sample_model), "--target", "onnx", "--batch", text, "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeport: error: --batch") and "\n" not in err


def test_exported_onnx_source_refused_for_a_batch(onnx_artifact, tmp_path):
    from edgeport.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="convert the .pt instead") as info:
        convert(onnx_artifact, "onnx", ConvertOptions(out_dir=tmp_path, batch=4))
    assert "\n" not in str(info.value) and not any(tmp_path.iterdir())


def test_target_all_skips_targets_without_the_batch(sample_model, tmp_path):
    from edgeport.convert import Job

    lines = []
    job = Job.of(sample_model, ConvertOptions(out_dir=tmp_path, batch=0, progress=lines.append))
    result = job.run_many(["edgetpu", "coreml"])
    assert result.artifacts == [] and result.failed == []
    assert {name for name, _, _ in result.skipped} == {"edgetpu", "coreml"}
    assert any("writes batch 1 only" in line for line in lines)
