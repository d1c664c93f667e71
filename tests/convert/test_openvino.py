"""`--target openvino`: IR fp32 / fp16 / int8 (NNCF) from the YOLOv8n sample, its record, its refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgeport.artifact import read_sidecar
from edgeport.convert import ConvertOptions, convert
from edgeport.convert.targets import BY_NAME, parse_targets, plan
from edgeport.errors import ConversionError
from edgeport.runtime import Detector

ov = pytest.importorskip("openvino")


def test_fp32_ir_is_written_with_weights_and_record(openvino_irs):
    artifact = openvino_irs["fp32"]
    assert artifact.path.suffix == ".xml" and artifact.path.with_suffix(".bin").is_file()
    record = read_sidecar(artifact.path)
    assert (record.target, record.precision, record.decode.kind) == ("openvino", "fp32", "split")
    assert record.provenance["weights_file"]["file"] == artifact.path.with_suffix(".bin").name
    assert artifact.size_bytes > artifact.path.stat().st_size  # the .bin counts


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_ir_agrees_with_float_model(openvino_irs, precision):
    check = openvino_irs[precision].check
    assert check["checked"] and check["judged"]
    assert check["matched"] >= (0.9 if precision == "fp32" else 0.5)


def test_int8_ir_has_integer_weights_and_names_what_stayed_float(openvino_irs):
    artifact = openvino_irs["int8"]
    types = {op.get_output_element_type(0).get_type_name() for op in ov.Core().read_model(str(artifact.path)).get_ops()
             if op.get_type_name() == "Constant"}
    assert "i8" in types
    assert artifact.size_bytes < openvino_irs["fp32"].size_bytes / 2
    prov = artifact.record.provenance
    assert "NNCF" in prov["quantizer"] and prov["calibration_images"] == 8
    floats = prov["ops_left_in_float"]
    assert "/Sigmoid" in floats and "boxes" in floats and "scores" in floats  # the decode tail
    assert not any(name.endswith("cv2.0.0/conv/Conv") for name in floats)  # the backbone is quantized


def test_fp16_ir_has_half_weights(tmp_path, sample_model):
    artifact = convert(sample_model, "openvino", ConvertOptions(out_dir=tmp_path, precision="fp16", check=False))
    consts = [op for op in ov.Core().read_model(str(artifact.path)).get_ops() if op.get_type_name() == "Constant"]
    assert any(op.get_output_element_type(0).get_type_name() == "f16" for op in consts)
    assert artifact.record.inputs[0].dtype == "float32"  # float32 I/O, weights decompressed at load
    rgb = np.full((320, 320, 3), 114, np.uint8)
    assert Detector(artifact.path).detect(rgb, color="RGB") is not None


@pytest.mark.parametrize("change, words", [
    ({"precision": "int8", "data": None}, "--int8 needs representative images"),
    ({"precision": "int8", "fallback": True}, "--fallback"),
    ({"precision": "w8a8"}, "unknown precision 'w8a8'"),
])
def test_refusals_are_one_line(tmp_path, sample_model, sample_data, change, words):
    options = replace(ConvertOptions(out_dir=tmp_path, data=sample_data), **change)
    with pytest.raises(ConversionError) as info:
        convert(sample_model, "openvino", options)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.glob("*.xml"))  # refused before any work


def test_max_drop_needs_labels(tmp_path, sample_model, val_images):
    options = ConvertOptions(out_dir=tmp_path, precision="int8", data=val_images[0].parent, max_drop=0.5)
    with pytest.raises(ConversionError, match="needs a labelled DATA.yaml"):
        convert(sample_model, "openvino", options)


def test_target_all_includes_openvino_with_its_int8():
    assert "openvino" in parse_targets("all")
    assert plan(["openvino"], calibrated=True) == [("openvino", "fp32"), ("openvino", "int8")]
    assert BY_NAME["openvino"].extra == "openvino"


def test_record_shapes_match_the_ir(openvino_irs):
    artifact = openvino_irs["int8"]
    model = ov.Core().read_model(str(artifact.path))
    shapes = {port.get_any_name(): list(port.get_shape()) for port in model.outputs}
    record = json.loads(artifact.path.with_name(artifact.path.stem + ".edgeport.json").read_text())
    assert {o["name"]: o["shape"] for o in record["outputs"]} == shapes


def test_converter_declines_openvino_and_nncf_telemetry():
    from openvino_telemetry import Telemetry
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    from edgeport.convert.openvino_target import no_telemetry

    no_telemetry()
    assert OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED
    assert Telemetry(app_name="edgeport-test", app_version="0", tid="x", enable_opt_in_dialog=False).consent is False


def test_float_ops_lists_only_weight_layers_left_float(openvino_irs):
    from edgeport.convert.openvino_target import float_ops

    fp32 = ov.Core().read_model(str(openvino_irs["fp32"].path))
    int8 = ov.Core().read_model(str(openvino_irs["int8"].path))
    every = float_ops(fp32)
    assert len(every) > 60 and "/dfl/conv/Conv" in every  # every convolution of the float IR
    assert set(float_ops(int8)) <= set(openvino_irs["int8"].record.provenance["ops_left_in_float"])


def test_accuracy_control_metric_is_the_runtimes_map(openvino_irs, val16_data):
    from edgeport.convert.openvino_target import compiled_map
    from edgeport.evaluate import evaluate, load_dataset

    path = openvino_irs["int8"].path
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    data = load_dataset(val16_data)
    metric = compiled_map(compiled, Detector(openvino_irs["fp32"].path), data, data.images)
    assert metric == pytest.approx(evaluate(path, val16_data, progress=False).map50_95, abs=1e-6)


def test_nncf_chatter_goes_to_stderr(capsys):
    from nncf.common.logging.logger import nncf_logger

    from edgeport.convert.openvino_target import nncf_to_stderr

    with nncf_to_stderr():
        nncf_logger.info("calibrating")
        print("progress")
    nncf_logger.info("after")
    out, err = capsys.readouterr()
    assert "calibrating" in err and "progress" in err and "calibrating" not in out
