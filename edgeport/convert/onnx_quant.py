"""fp16 and static int8 (QDQ) versions of the float split-head ONNX, for onnxruntime and TensorRT.

The decode tail (everything after the head's last per-level convolutions) stays in float, so box
pixels and class scores never share one int8 scale; `QuantProfile` holds every quantizer choice.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeport.errors import ConversionError, UnsupportedModelError


@dataclass(frozen=True)
class QuantProfile:
    """The onnxruntime quantize_static settings of one deployment target."""

    name: str
    activation: str  # "uint8" (asymmetric) or "int8"
    symmetric_activations: bool
    op_types: tuple[str, ...] | None  # None: every op onnxruntime can quantize
    quantize_conv_output: bool  # False: Q/DQ only on conv inputs (the placement TensorRT fuses)
    quantize_bias: bool  # False: biases stay float (TensorRT takes no int32 DequantizeLinear)
    description: str

    def extra_options(self) -> dict:
        options = {"ActivationSymmetric": self.symmetric_activations, "WeightSymmetric": True,
                   "QuantizeBias": self.quantize_bias}
        if not self.quantize_conv_output:
            options["OpTypesToExcludeOutputQuantization"] = ["Conv"]
        return options


# onnxruntime on CPU: uint8 activations with a zero point, int8 per-channel weights (its fastest
# x86 kernels), every op it can quantize up to the head's last convolutions.
CPU = QuantProfile("onnxruntime", "uint8", False, None, True, True,
                   "onnxruntime quantize_static QDQ: uint8 asymmetric activations, int8 symmetric per-channel "
                   "weights, decode tail in float")
# TensorRT (explicit quantization): int8 symmetric everywhere (zero point 0), per-channel weights, Q/DQ
# on the inputs of each convolution only, float biases.
TENSORRT = QuantProfile("tensorrt", "int8", True, ("Conv",), False, False,
                        "onnxruntime quantize_static QDQ for TensorRT: int8 symmetric activations and per-channel "
                        "weights (zero points 0), Q/DQ on convolution inputs only, float biases, decode tail in "
                        "float")


METHOD_TEXT = {"minmax": "minmax", "percentile": "percentile (0.001-99.999th, histogram over the calibration set)",
               "entropy": "entropy (KL divergence)"}


def head_tail_nodes(model) -> list[str]:
    """Names of the nodes after the detection head's last convolutions (the box and score decode).

    A node is in the tail when no learned convolution runs after it; the DFL's fixed convolution
    (fed by a Softmax) counts as decode, not as a learned layer. Nodes without a name get one.
    Raises UnsupportedModelError when the graph has no such tail (not a YOLO-style head).
    """
    graph = model.graph
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"edgeport_node_{index}_{node.op_type}"
    producer = {out: node for node in graph.node for out in node.output}

    def learned_conv(node) -> bool:
        source = producer.get(node.input[0]) if node.input else None
        return node.op_type == "Conv" and not (source is not None and source.op_type == "Softmax")

    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    conv_below: dict[str, bool] = {}
    for node in reversed(graph.node):  # ONNX graphs are topologically sorted
        below = [c for out in node.output for c in consumers.get(out, [])]
        conv_below[node.name] = any(learned_conv(c) or conv_below[c.name] for c in below)
    tail = [node.name for node in graph.node if not conv_below[node.name] and not learned_conv(node)
            and any(name in producer for name in node.input)]
    if not any(n.op_type == "Softmax" or n.op_type == "Sigmoid" for n in graph.node if n.name in set(tail)):
        raise UnsupportedModelError("cannot find the detection head's decode (DFL softmax, sigmoid) after its last "
                                    "convolutions; only YOLOv8/YOLO11-style Detect heads are supported")
    return tail


def to_fp16(model):
    """Return the model with float16 weights and compute, float32 input and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        return convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ConversionError(f"onnx: float16 conversion failed: {str(exc).splitlines()[0]}") from exc


@contextmanager
def _quiet():
    """onnxruntime's quantizer prints calibration chatter on stdout and a root-logger warning; stdout
    belongs to the CLI's result, so send the chatter to stderr."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)


class _Reader:
    """onnxruntime CalibrationDataReader over a CalibrationSet (the runtime's own letterbox)."""

    def __init__(self, calibration, input_name: str) -> None:
        self._batches: Iterator = iter(calibration.batches("NCHW", "float32"))
        self._input = input_name

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}


def _guarded_collector(calibrator, fallbacks):
    """A HistogramCollector for `calibrator` that gives a tensor numpy cannot histogram (no finite
    values, or a range too narrow for its bins) to `fallbacks` instead of failing, and never feeds
    NaN or inf to a histogram."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from edgeport.calibration.ranges import finite_values

    class GuardedCollector(HistogramCollector):
        def collect(self, name_to_arr):
            for name, arrays in name_to_arr.items():
                values = np.concatenate([np.asarray(a).ravel() for a in arrays]) if isinstance(arrays, list) \
                    else np.asarray(arrays).ravel()
                finite, dropped = finite_values(values)
                if dropped or finite.size == 0 or name in fallbacks.reasons:
                    fallbacks.observe(name, values, "NaN or inf values" if dropped else "no values")
                    continue
                try:
                    super().collect({name: finite})
                except ValueError:  # numpy: "Too many bins for data range" (a (near-)constant tensor)
                    fallbacks.observe(name, values, f"range too narrow for {self.num_bins} histogram bins")

    return GuardedCollector(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
                            num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
                            scenario=calibrator.scenario)


def calibrate(float_path: Path, reader, method, op_types: list[str], work: Path):
    """Calibrate every activation of the model at `float_path` with onnxruntime's `method`; a tensor
    whose statistics are degenerate gets a safe range instead of failing the whole calibration.
    Returns (TensorsData, Fallbacks)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, create_calibrator

    from edgeport.calibration.ranges import Fallbacks

    calibrator = create_calibrator(float_path, op_types, augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=method)
    # percentile's histogram is of absolute values: its ranges (and so the fallbacks) are symmetric
    fallbacks = Fallbacks(symmetric=method == CalibrationMethod.Percentile and calibrator.symmetric)
    if method != CalibrationMethod.MinMax:
        calibrator.collector = _guarded_collector(calibrator, fallbacks)
    calibrator.collect_data(reader)
    tensors = calibrator.compute_data()
    for name, data in list(tensors.items()):  # minmax (and any method) may still end with NaN or inf
        low, high = data.range_value
        if name not in fallbacks.reasons and not np.all(np.isfinite([low, high])):
            fallbacks.observe(name, np.array([low, high], np.float32), "NaN or inf range")
    for name, (low, high) in fallbacks.ranges().items():
        tensors.data[name] = TensorData(lowest=np.array(low, np.float32), highest=np.array(high, np.float32))
    return tensors, fallbacks


def _op_types(profile: QuantProfile) -> list[str]:
    """The op types quantize_static quantizes (and so calibrates) for `profile`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return list(profile.op_types) if profile.op_types else sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def quantize_int8(model, calibration, profile: QuantProfile, method: str = "minmax",
                  extra_exclude: list[str] | tuple[str, ...] = (), tune=None):
    """Return (the static int8 QDQ model calibrated on `calibration`, decode tail kept in float;
    the tail's node names; {tensor: what was wrong and the range it got} for every activation whose
    calibration statistics were degenerate).

    `method`: minmax, percentile or entropy (onnxruntime's calibrators). `extra_exclude`: more nodes
    kept in float. `tune(quantized, requantize)`, when given, may return a better model: `requantize(names)`
    quantizes again from the same calibrated ranges with `names` also kept in float. Raises ConversionError.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ConversionError(f"onnx: calibration method {method!r} unknown; choose one of {', '.join(methods)}")
    tail = head_tail_nodes(model)
    activation = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "int16": QuantType.QInt16}[profile.activation]
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-int8-") as tmp:
        float_path, ranges = Path(tmp) / "float.onnx", Path(tmp) / "ranges.json"
        onnx.save(model, str(float_path))

        def requantize(keep_float) -> object:
            out = Path(tmp) / "int8.onnx"
            keep = tail + [n for n in dict.fromkeys([*extra_exclude, *keep_float]) if n not in tail]
            try:
                with _quiet():
                    quantize_static(str(float_path), str(out), None, quant_format=QuantFormat.QDQ,
                                    op_types_to_quantize=list(profile.op_types or []) or None,
                                    per_channel=True, activation_type=activation, weight_type=QuantType.QInt8,
                                    nodes_to_exclude=keep, calibrate_method=methods[method],
                                    extra_options=profile.extra_options(), calibration_cache_path=ranges)
            except Exception as exc:
                raise ConversionError(f"onnx: int8 quantization failed: {str(exc).splitlines()[0]}") from exc
            return onnx.load(str(out))

        try:
            with _quiet():
                tensors, fallbacks = calibrate(float_path, _Reader(calibration, model.graph.input[0].name),
                                               methods[method], _op_types(profile), Path(tmp))
                save_tensors_data(tensors, ranges)
        except Exception as exc:
            raise ConversionError(f"onnx: int8 calibration failed: {str(exc).splitlines()[0]}") from exc
        quantized = requantize([])
        if tune is not None:
            quantized = tune(quantized, requantize)
    return quantized, tail, fallbacks.provenance()


def qdq_summary(model) -> dict:
    """Counts and zero points of the Q/DQ nodes: what a reader of the record needs to trust the graph."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    zero_points = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in inits:
            zero_points.update(int(v) for v in numpy_helper.to_array(inits[node.input[2]]).ravel())
    ops = [n.op_type for n in model.graph.node]
    return {"quantize_linear": ops.count("QuantizeLinear"), "dequantize_linear": ops.count("DequantizeLinear"),
            "zero_points": sorted(zero_points)[:8]}
