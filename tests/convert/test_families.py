"""Today's Ultralytics families on every non-CoreML target: the NMS-free heads (YOLO26, YOLOv10) and an
attention family (YOLO11), built from Ultralytics' YAMLs; each artifact opens in the runtime and agrees
with its float model. The full matrix (every family and precision) is benchmarks/families.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.convert import ConvertOptions, convert
from edgeport.errors import ConversionError
from edgeport.runtime import Detector

FAMILIES = ("yolo26", "yolov10", "yolo11")
HEAD = {"yolo26": ("one2one", 1), "yolov10": ("one2one-dfl", 16), "yolo11": ("dfl", 16)}
# what the default suite converts (within its time budget): YOLO26 on every non-CoreML target; tensorrt and
# onnx-web package the `onnx` graph, so the other families take onnx and the integer TFLite (Edge TPU) only
PLAN = {
    "yolo26": (("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("edgetpu", "int8"), ("tensorrt", "int8"),
               ("onnx-web", "fp32")),
    "yolov10": (("onnx", "fp32"), ("onnx", "int8")),
    "yolo11": (("onnx", "fp32"), ("edgetpu", "int8")),
}


@pytest.fixture(scope="session")
def family_models(request) -> dict:
    """The stand-in detector of each family (160 px), cached across runs in pytest's cache folder."""
    from ultralytics import __version__

    from edgeport.convert.ultralytics_env import load_ultralytics
    from edgeport.sample.families import build_family_model

    load_ultralytics()
    folder = request.config.cache.mkpath("edgeport-families") if hasattr(request.config.cache, "mkpath") \
        else request.config.cache.mkdir("edgeport-families")
    models = {}
    for family in FAMILIES:
        path = folder / f"{family}_160_u{__version__}_v2" / "weights" / f"{family}.pt"
        models[family] = path if path.is_file() else build_family_model(family, path, imgsz=160)
    return models


@pytest.fixture(scope="session")
def family_artifacts(tmp_path_factory, family_models, sample_data) -> dict:
    """(family, target, precision) -> Artifact, each checked against its float model by `convert`."""
    out = tmp_path_factory.mktemp("families")
    artifacts = {}
    for family, model in family_models.items():
        for target, precision in PLAN[family]:
            # int8 calibrates on the image folder: with a DATA.yaml a one-to-one head's int8 would also run
            # the accuracy control (two evaluations of the val split), which tests/convert/test_int8_accuracy.py covers
            data = sample_data.parent / "images" / "val" if precision == "int8" else sample_data
            options = ConvertOptions(out_dir=out / family, precision=precision, data=data,
                                     calibration_images=16, calibration_method="minmax",
                                     check=precision != "int8" or target != "edgetpu")
            artifacts[family, target, precision] = convert(model, target, options)
    return artifacts


@pytest.mark.parametrize("family", FAMILIES)
def test_every_artifact_of_the_family_opens_and_decodes_its_head(family_artifacts, family, val_images):
    for (fam, target, precision), artifact in family_artifacts.items():
        if fam != family:
            continue
        detector = Detector(artifact.check.get("through") and artifact.path.parent / artifact.check["through"]
                            or artifact.path, conf=0.1)
        head, reg_max = HEAD[family]
        assert detector.record.decode.nms == (head == "dfl"), (target, precision)
        assert artifact.record.provenance["head"]["head"] == head
        if detector.record.decode.kind == "dfl":
            assert detector.record.decode.reg_max == reg_max
        found = [detector.detect(path) for path in val_images[:8]]
        boxes = np.concatenate([d.xyxy for d in found])
        if detector.record.target == "tflite":
            continue  # the stand-ins' int8 TFLite scores shift below 0.25 (see the output-correlation test)
        assert len(boxes) > 0, (target, precision)
        assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 1).all(), (target, precision)


@pytest.mark.parametrize("family", FAMILIES)
def test_float_and_fp16_artifacts_agree_with_the_float_model(family_artifacts, family):
    for (fam, target, precision), artifact in family_artifacts.items():
        if fam != family or precision == "int8":
            continue
        check = artifact.check
        assert check["checked"] and check["judged"], (target, precision, check)
        assert check["matched"] >= 0.95 and abs(check["score_shift"]) < 0.01, (target, precision, check)
        assert check["zero_area"] < 0.05  # the float model's own boxes (the stand-ins' distances are random)


@pytest.mark.parametrize("family", ("yolo26", "yolov10"))
def test_int8_onnx_agrees_with_the_float_model(family_artifacts, family):
    check = family_artifacts[family, "onnx", "int8"].check
    assert check["checked"] and check["judged"] and check["matched"] >= 0.5, check


@pytest.mark.parametrize("family", ("yolo26", "yolo11"))
def test_full_integer_tflite_outputs_follow_the_float_head(family_artifacts, family_models, val_images, family):
    """The int8 graph ends before the decode: box and class tensors each have their own scale, and each
    follows the float model's raw head (the stand-ins' random features bound how closely; a tensor wired to
    the wrong output correlates near 0)."""
    import torch

    from edgeport.convert.source import load_source

    artifact = family_artifacts[family, "edgetpu", "int8"]
    int8 = Detector(artifact.path.with_name(artifact.path.name.replace("_edgetpu", "")) if
                    artifact.path.name.endswith("_edgetpu.tflite") else artifact.path)
    outputs = int8.record.outputs
    assert len(outputs) == 6 and len({o.scale for o in outputs}) == 6  # never one scale for boxes and scores
    tensor, _ = int8.preprocess([int8.load(val_images[0])])
    quantized = int8.infer(tensor)
    source = load_source(family_models[family], 160)
    with torch.no_grad():
        reference = source.raw_head("NHWC")(torch.from_numpy(tensor.astype(np.float32) / 255))
    for kind, first in (("box", 0), ("class", 1)):  # every level of one kind together: the 5x5 level is noisy alone
        got = np.concatenate([quantized[spec.name].ravel() for spec in outputs[first::2]])
        expected = np.concatenate([t.numpy().ravel() for t in reference[first::2]])
        assert np.corrcoef(got, expected)[0, 1] > 0.7, kind
    analysis = artifact.record.provenance["edgetpu"]
    # attention (PSA, C2PSA) stops the Edge TPU mapping part-way; the model still runs
    assert analysis["edgetpu_ops"] > 0 and analysis["cpu_ops"] > 0 and analysis["first_cpu_op"]


def test_ultralytics_end_to_end_onnx_opens_and_agrees(family_models, tmp_path, val_images):
    """Ultralytics' own NMS-free export ([1, 300, 6], `nms=False`) runs in the runtime, top-k without NMS."""
    import shutil

    from ultralytics import YOLO

    from edgeport.convert.verify import FloatReference, measure

    local = tmp_path / "yolo26.pt"
    shutil.copy(family_models["yolo26"], local)
    exported = YOLO(str(local)).export(format="onnx", imgsz=160, nms=False, device="cpu", verbose=False)
    detector = Detector(exported)
    assert detector.record.decode.kind == "end2end" and not detector.record.decode.nms
    assert detector.backend.outputs[0].shape == (1, 300, 6)
    result = measure(detector, FloatReference(family_models["yolo26"], 160), val_images[:8])
    assert result.judged and result.matched >= 0.9 and result.zero_area == 0.0


def test_end_to_end_onnx_as_a_source_is_refused_in_one_line(family_models, tmp_path):
    import shutil

    from ultralytics import YOLO

    local = tmp_path / "yolo26.pt"
    shutil.copy(family_models["yolo26"], local)
    exported = YOLO(str(local)).export(format="onnx", imgsz=160, nms=False, device="cpu", verbose=False)
    with pytest.raises(Exception, match=r"\[1, 300, 6\].*NMS-free.*convert the \.pt") as info:
        convert(exported, "onnx", ConvertOptions(out_dir=tmp_path / "out"))
    assert "\n" not in str(info.value)


def test_a_wrong_decode_is_refused_naming_the_artifact(family_models, tmp_path):
    """A silent failure turned into an error: boxes decoded with the wrong scale never reach the user."""
    from dataclasses import replace

    import onnx

    from edgeport.convert import Artifact
    from edgeport.convert.job import write_record
    from edgeport.convert.verify import verify_artifact

    artifact = convert(family_models["yolo26"], "onnx", ConvertOptions(out_dir=tmp_path, check=False))
    broken = replace(artifact.record, decode=replace(artifact.record.decode, normalized=False))  # 0..1 as pixels
    wrong = tmp_path / "wrong.onnx"
    write_record(wrong, broken, onnx_model=onnx.load(str(artifact.path)))
    with pytest.raises(ConversionError, match="wrong.onnx does not agree with its float source") as info:
        verify_artifact(Artifact(wrong, broken), family_models["yolo26"], 160, None)
    assert "no area" in str(info.value) or "finds 0%" in str(info.value)
