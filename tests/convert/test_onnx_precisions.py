"""ONNX fp16 and static int8 QDQ (onnx and tensorrt targets): types, QDQ placement, accuracy, the head trap."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from edgeport.artifact import METADATA_KEY
from edgeport.convert import ConvertOptions, convert
from edgeport.errors import ConversionError
from edgeport.evaluate import evaluate
from edgeport.runtime import Detector


def _record(path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY])


def _io_types(model) -> set[int]:
    return {t.type.tensor_type.elem_type for t in list(model.graph.input) + list(model.graph.output)}


@pytest.fixture(scope="session")
def fp32_map(onnx_artifact, val16_data) -> float:
    return evaluate(Detector(onnx_artifact), val16_data, progress=False).map50_95


@pytest.mark.parametrize("target", ["onnx", "tensorrt"])
def test_fp16_has_float16_weights_and_float32_io(onnx_precisions, target):
    path = onnx_precisions[(target, "fp16")]
    model = onnx.load(str(path))
    # learned convolutions in float16; the DFL's fixed convolution is decode, kept float32
    learned = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and "dfl" not in n.name}
    weight_types = {i.data_type for i in model.graph.initializer if i.name in learned}
    assert weight_types == {TensorProto.FLOAT16}
    decode = {n.input[1] for n in model.graph.node if n.op_type == "Conv"} - learned
    assert len(decode) == 1 and {i.data_type for i in model.graph.initializer if i.name in decode} == {
        TensorProto.FLOAT}
    assert _io_types(model) == {TensorProto.FLOAT}  # the record says float32 I/O: it must be true
    record = _record(path)
    assert record["precision"] == "fp16" and record["target"] == target
    assert {t["dtype"] for t in record["inputs"] + record["outputs"]} == {"float32"}
    assert path.stat().st_size < 0.6 * 12.1e6


def test_fp16_runs_in_onnxruntime_backend_with_fp32_accuracy(onnx_precisions, val16_data, fp32_map):
    detector = Detector(onnx_precisions[("onnx", "fp16")])
    assert detector.backend_name == "onnxruntime"
    assert abs(evaluate(detector, val16_data, progress=False).map50_95 - fp32_map) < 0.01


def test_int8_keeps_the_decode_tail_in_float(onnx_precisions):
    path = onnx_precisions[("onnx", "int8")]
    model = onnx.load(str(path))
    record = _record(path)
    tail = set(record["provenance"]["ops_left_in_float"])
    by_name = {n.name: n for n in model.graph.node}
    assert {by_name[name].op_type for name in tail} >= {"Softmax", "Sigmoid", "Concat", "MatMul"}
    producer = {out: n for n in model.graph.node for out in n.output}
    for name in tail:  # nothing in the decode reads an int8 tensor except the raw conv outputs
        node = by_name[name]
        assert node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        for consumed in node.input:
            source = producer.get(consumed)
            if source is not None and source.op_type == "DequantizeLinear" and node.op_type != "Reshape":
                pytest.fail(f"tail node {name} ({node.op_type}) reads a dequantized tensor")
    quantized_convs = [n for n in model.graph.node if n.op_type == "Conv" and producer.get(n.input[1]) is not None
                       and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized_convs) >= 60  # every learned conv of the YOLOv8n runs int8
    assert record["precision"] == "int8" and record["provenance"]["calibration_images"] == 32
    assert record["provenance"]["calibration_method"].startswith("percentile")
    assert {t["dtype"] for t in record["inputs"] + record["outputs"]} == {"float32"}
    assert _io_types(model) == {TensorProto.FLOAT}
    assert path.stat().st_size < 0.35 * 12.1e6


@pytest.mark.parametrize("target", ["onnx", "tensorrt"])
def test_int8_drop_within_budget(onnx_precisions, val16_data, fp32_map, target):
    result = evaluate(Detector(onnx_precisions[(target, "int8")]), val16_data, progress=False)
    assert fp32_map - result.map50_95 < 0.015  # 1.5 points on 16 images (80 images: see docs/targets.md)


def test_tensorrt_int8_is_symmetric_per_channel_on_conv_inputs(onnx_precisions):
    path = onnx_precisions[("tensorrt", "int8")]
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero_point = numpy_helper.to_array(inits[node.input[2]])
        assert zero_point.dtype == np.int8 and not zero_point.any()  # TensorRT takes only zero points of 0
    for node in (n for n in qdq if n.op_type == "DequantizeLinear"):
        assert "Conv" in {c.op_type for c in consumers[node.output[0]]}  # Q/DQ only where a conv reads
        if node.input[0] in inits:  # a weight: per output channel, never a bias
            weight = numpy_helper.to_array(inits[node.input[0]])
            assert weight.dtype == np.int8 and weight.ndim == 4
            assert numpy_helper.to_array(inits[node.input[1]]).shape == (weight.shape[0],)
    biases = [n.input[2] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert biases and all(b in inits and inits[b].data_type == TensorProto.FLOAT for b in biases)
    assert all(d.dim_value > 0 for d in model.graph.input[0].type.tensor_type.shape.dim)  # static shape
    record = _record(path)
    assert record["target"] == "tensorrt"
    assert record["provenance"]["proxy"] == {
        "artifact": path.name, "label": "the int8 QDQ ONNX TensorRT builds the engine from, run in onnxruntime (CPU)"}
    assert record["provenance"]["qdq"]["zero_points"] == [0]


def test_naive_quantization_of_the_concatenated_head_zeroes_scores(ultralytics_onnx, onnx_precisions, sample_data,
                                                                    val16_data, val_images, tmp_path):
    """The trap docs/design.md describes: quantize_static over Ultralytics' one (1, 4 + nc, N) output."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from edgeport.calibration import build_calibration_set

    calibration = build_calibration_set(sample_data, imgsz=320, n=32, progress=False)
    name = onnx.load(str(ultralytics_onnx)).graph.input[0].name
    batches = iter(calibration.batches("NCHW"))

    class Reader:
        def get_next(self):
            batch = next(batches, None)
            return None if batch is None else {name: batch}

    naive_path = tmp_path / "naive_int8.onnx"
    quantize_static(str(ultralytics_onnx), str(naive_path), Reader(), quant_format=QuantFormat.QDQ)

    def max_score(path) -> float:
        detector = Detector(path)
        tensor, _ = detector.preprocess([detector.load(p) for p in val_images[:8]])
        outputs = detector.infer(tensor)
        scores = outputs["scores"] if "scores" in outputs else next(iter(outputs.values()))[:, 4:]
        return float(scores.max())

    assert max_score(ultralytics_onnx) > 0.9
    assert max_score(naive_path) < 0.05  # box pixels and scores in one int8 scale: every score rounds to 0
    assert max_score(onnx_precisions[("onnx", "int8")]) > 0.9
    naive = evaluate(Detector(naive_path), val16_data, progress=False).map50_95
    ours = evaluate(Detector(onnx_precisions[("onnx", "int8")]), val16_data, progress=False).map50_95
    assert naive < 0.05 and ours > 0.7


def test_onnx_int8_needs_data_and_known_precision(sample_model, tmp_path):
    with pytest.raises(ConversionError, match="--int8 needs representative images"):
        convert(sample_model, "onnx", ConvertOptions(out_dir=tmp_path, precision="int8"))
    with pytest.raises(ConversionError, match="unknown precision 'dynamic'"):
        convert(sample_model, "onnx", ConvertOptions(out_dir=tmp_path, precision="dynamic"))
    with pytest.raises(ConversionError, match="unknown precision"):
        convert(sample_model, "tensorrt", ConvertOptions(out_dir=tmp_path, precision="dynamic"))
    with pytest.raises(ConversionError, match="--fallback .* tflite target only"):
        convert(sample_model, "onnx", ConvertOptions(out_dir=tmp_path, precision="int8", data=tmp_path,
                                                     fallback=True, max_drop=1.0))


def test_cli_int8_ends_with_both_accuracy_rows(sample_model, val16_data, tmp_path, capsys):
    from edgeport.cli import main

    code = main(["convert", str(sample_model), "--target", "onnx", "--int8", "--data", str(val16_data), "--n", "16",
                 "--out", str(tmp_path), "--max-drop", "3"])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.splitlines()
    assert lines[0] == str(tmp_path / "shapes_yolov8n_int8.onnx")  # quantizer chatter stays off stdout
    rows = {row["precision"]: row for row in json.loads((tmp_path / "report.json").read_text())["rows"]}
    assert set(rows) == {"fp32", "int8"} and rows["int8"]["calibration"].startswith("percentile")
    assert rows["int8"]["drop_map50_95"] < 3 and rows["int8"]["size_bytes"] < rows["fp32"]["size_bytes"] / 3


def test_int8_calibration_survives_degenerate_tensors(tmp_path, val_images):
    """An untrained YOLO11n: many activations are (near-)constant, which onnxruntime's percentile
    histogram refuses ("Too many bins for data range"). Each such tensor gets a fallback range named
    in the record; the rest is calibrated by percentile; the model converts and runs."""
    from edgeport.calibration import build_calibration_set
    from edgeport.convert import Job, onnx_quant
    from edgeport.convert.onnx_target import float_model
    from edgeport.sample.families import build_family_model

    source = build_family_model("yolo11n", tmp_path / "yolo11n.pt", imgsz=160, stand_in=False)
    folder = tmp_path / "images"
    folder.mkdir()
    for image in val_images[:4]:
        (folder / image.name).write_bytes(image.read_bytes())
    # an untrained model's near-tied scores make int8 agreement meaningless: this test is about calibration
    options = ConvertOptions(out_dir=tmp_path, precision="int8", imgsz=160, data=folder, calibration_images=4,
                             calibration_method="percentile", check=False)
    artifact = convert(source, "onnx", options)
    fallbacks = artifact.record.provenance["calibration_fallbacks"]
    assert fallbacks and all(": fallback range " in line for line in fallbacks.values())
    assert any("range too narrow for 2048 histogram bins" in line for line in fallbacks.values())
    assert set(fallbacks) <= {name for node in onnx.load(str(artifact.path)).graph.node for name in node.output}
    outputs = Detector(artifact.path).infer(np.full((1, 3, 160, 160), 0.5, np.float32))
    assert all(np.isfinite(v).all() for v in outputs.values())
    # TensorRT's profile (int8 symmetric, Q/DQ on conv inputs) on the same float graph
    model, _, _ = float_model(Job.of(source, ConvertOptions(out_dir=tmp_path, imgsz=160)))
    calibration = build_calibration_set(folder, imgsz=160, n=4, progress=False)
    _, _, trt_fallbacks = onnx_quant.quantize_int8(model, calibration, onnx_quant.TENSORRT, "percentile")
    assert trt_fallbacks and all(": fallback range -" in line for line in trt_fallbacks.values())  # symmetric


def test_histogram_collector_sets_aside_each_degenerate_tensor_and_calibrates_the_rest():
    """NaN, empty and near-constant tensors (a few float32 steps apart) go to the fallbacks; the
    rest get onnxruntime's own histogram."""
    from types import SimpleNamespace

    from edgeport.calibration.ranges import Fallbacks
    from edgeport.convert.onnx_quant import _guarded_collector

    calibrator = SimpleNamespace(method="percentile", symmetric=True, num_bins=2048, num_quantized_bins=128,
                                 percentile=99.999, scenario="same")
    fallbacks = Fallbacks(symmetric=True)
    collector = _guarded_collector(calibrator, fallbacks)
    near_constant = np.float32(0.5) + np.float32(3e-8) * np.arange(4, dtype=np.float32)
    collector.collect({"fine": [np.random.default_rng(0).normal(size=(1, 4, 8, 8)).astype(np.float32)],
                       "near": [near_constant[None]], "nan": [np.array([1, np.nan, 2], np.float32)],
                       "empty": [np.zeros((1, 0), np.float32)]})
    assert list(collector.histogram_dict) == ["fine"]
    lines = fallbacks.provenance()
    assert lines["near"] == "range too narrow for 2048 histogram bins (values 0.5..0.5): fallback range -0.5..0.5"
    assert lines["nan"] == "NaN or inf values (values 1..2, 1 NaN/inf ignored): fallback range -2..2"
    assert lines["empty"].startswith("no values")
