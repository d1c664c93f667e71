"""Activation ranges for TFLite int8 by calibration method: minmax (ai-edge-quantizer's own
moving average) or percentile (outliers clipped), computed on the float model; a one-to-one head's
outputs take the whole calibration set's range (`output_tail`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

METHODS = ("minmax", "percentile")
PERCENTILE = 99.99
SAMPLE_VALUES = 65536  # values per tensor and image used to estimate its percentiles
SAME_SCALE = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")  # int8 ops that keep their input's scale
OUTPUT_RANGES = ("min/max over the whole calibration set (one-to-one head: its outputs and the tensors reshaped "
                 "into them)")


def percentile_ranges(float_path: Path, calibration, names: set[str], percentile: float = PERCENTILE,
                      fallbacks=None) -> dict:
    """Mean over the calibration images of each tensor's (100 - p, p) percentiles, for `names`.

    NaN and inf values are left out; a tensor with no finite values, or whose range is narrower
    than a usable int8 range, gets a safe range and is noted in `fallbacks` (a
    edgeport.calibration.ranges.Fallbacks) when given.
    """
    from edgeport.calibration.ranges import MIN_SPAN, Fallbacks, finite_values, safe_range
    from edgeport.runtime.backends.litert import interpreter_class

    fallbacks = fallbacks if fallbacks is not None else Fallbacks()
    interpreter_cls, _, _ = interpreter_class()
    interpreter = interpreter_cls(model_path=str(float_path), experimental_preserve_all_tensors=True, num_threads=2)
    interpreter.allocate_tensors()
    details = [d for d in interpreter.get_tensor_details() if d["name"] in names]
    input_index = interpreter.get_input_details()[0]["index"]
    low = {d["name"]: [] for d in details}
    high = {d["name"]: [] for d in details}
    seen: set[str] = set()
    for batch in calibration.batches("NHWC", "float32"):
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        for d in details:
            try:
                raw = interpreter.get_tensor(d["index"])
            except ValueError:  # constants folded away or not kept
                continue
            seen.add(d["name"])
            values, dropped = finite_values(raw)
            if dropped or values.size == 0:
                fallbacks.observe(d["name"], raw, "NaN or inf values" if dropped else "no values")
            if values.size == 0:
                continue
            if values.size > SAMPLE_VALUES:
                values = values[:: values.size // SAMPLE_VALUES]
            lo, hi = np.percentile(values, (100 - percentile, percentile))
            low[d["name"]].append(lo)
            high[d["name"]].append(hi)
    ranges = {}
    for name in sorted(seen):
        lo = float(np.mean(low[name])) if low[name] else None
        hi = float(np.mean(high[name])) if high[name] else None
        if lo is not None and max(hi, 0.0) - min(lo, 0.0) < MIN_SPAN:
            fallbacks.observe(name, np.array([lo, hi], np.float32), "all values 0 (a dead tensor)")
        if name in fallbacks.reasons:
            lo, hi = safe_range(lo, hi)
        ranges[name] = {"min": np.array(min(lo, 0.0), np.float32), "max": np.array(max(hi, 0.0), np.float32)}
    return ranges


def output_tail(float_path: Path) -> list[str]:
    """Names of the graph's output tensors and of the tensors same-scale ops (reshape, transpose) carry into them:
    the head's last convolutions' outputs."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(float_path))
    graph = model.subgraphs[0]
    producer = {t: op for op in graph.operators for t in op.outputs}
    names, stack = [], [int(t) for t in graph.outputs]
    while stack:
        index = stack.pop()
        name = graph.tensors[index].name
        names.append(name.decode() if isinstance(name, bytes) else str(name))
        op = producer.get(index)
        code = None if op is None else model.operatorCodes[op.opcodeIndex]
        if code is not None and op_names.get(flatbuffer_utils.get_builtin_code_from_operator_code(code)) in SAME_SCALE:
            stack.append(int(op.inputs[0]))
    return names


def whole_ranges(float_path: Path, calibration, names: set[str]) -> dict:
    """Min and max over every calibration image of each tensor in `names` (0 always inside)."""
    from edgeport.runtime.backends.litert import interpreter_class

    interpreter_cls, _, _ = interpreter_class()
    interpreter = interpreter_cls(model_path=str(float_path), experimental_preserve_all_tensors=True, num_threads=2)
    interpreter.allocate_tensors()
    details = [d for d in interpreter.get_tensor_details() if d["name"] in names]
    input_index = interpreter.get_input_details()[0]["index"]
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for batch in calibration.batches("NHWC", "float32"):
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        for d in details:
            values, _ = _finite(interpreter, d["index"])
            if values is not None and values.size:
                low[d["name"]] = min(low.get(d["name"], 0.0), float(values.min()))
                high[d["name"]] = max(high.get(d["name"], 0.0), float(values.max()))
    return {n: {"min": np.array(low[n], np.float32), "max": np.array(high[n], np.float32)} for n in low
            if high[n] - low[n] > 0}


def _finite(interpreter, index: int):
    from edgeport.calibration.ranges import finite_values

    try:
        return finite_values(interpreter.get_tensor(index))
    except ValueError:  # constants folded away or not kept
        return None, 0


def apply_method(stats: dict, float_path: Path, calibration, method: str, fallbacks=None,
                 whole_outputs: bool = False) -> dict:
    """Return the calibration stats for `method` (minmax keeps ai-edge-quantizer's own). A Fallbacks in
    `fallbacks` is told every tensor whose percentile statistics were degenerate.

    `whole_outputs` (one-to-one heads): the raw head's outputs take their whole range over the set. A
    one-to-one head scores each object at one anchor, so most images' class-logit maxima are negative and
    their moving average clipped every score at 0.5 (YOLO26n sample: 2.15 points of mAP50-95 lost, 0.14 with
    the whole range); its box distances are clipped likewise. DFL heads keep the average (YOLOv8n: 0.04
    points with it, 0.17 with the whole range)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}")
    if method == "percentile":
        names = {n for n in stats if not n.startswith("serving_default_args_0")}
        stats = {**stats, **percentile_ranges(float_path, calibration, names, fallbacks=fallbacks)}
    if not whole_outputs:
        return stats
    tail = {n for n in output_tail(float_path) if n in stats}
    return {**stats, **whole_ranges(float_path, calibration, tail)}
