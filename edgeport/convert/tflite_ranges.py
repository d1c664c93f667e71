"""Activation ranges for TFLite int8 by calibration method: minmax (ai-edge-quantizer's own
moving average) or percentile (outliers clipped), computed on the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

METHODS = ("minmax", "percentile")
PERCENTILE = 99.99
SAMPLE_VALUES = 65536  # values per tensor and image used to estimate its percentiles


def percentile_ranges(float_path: Path, calibration, names: set[str], percentile: float = PERCENTILE) -> dict:
    """Mean over the calibration images of each tensor's (100 - p, p) percentiles, for `names`."""
    from edgeport.runtime.backends.litert import interpreter_class

    interpreter_cls, _, _ = interpreter_class()
    interpreter = interpreter_cls(model_path=str(float_path), experimental_preserve_all_tensors=True, num_threads=2)
    interpreter.allocate_tensors()
    details = [d for d in interpreter.get_tensor_details() if d["name"] in names]
    input_index = interpreter.get_input_details()[0]["index"]
    low = {d["name"]: [] for d in details}
    high = {d["name"]: [] for d in details}
    for batch in calibration.batches("NHWC", "float32"):
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        for d in details:
            try:
                values = interpreter.get_tensor(d["index"]).ravel()
            except ValueError:  # constants folded away or not kept
                continue
            if values.size > SAMPLE_VALUES:
                values = values[:: values.size // SAMPLE_VALUES]
            lo, hi = np.percentile(values, (100 - percentile, percentile))
            low[d["name"]].append(lo)
            high[d["name"]].append(hi)
    return {name: {"min": np.array(min(np.mean(low[name]), 0.0), np.float32),
                   "max": np.array(max(np.mean(high[name]), 0.0), np.float32)}
            for name in low if low[name]}


def apply_method(stats: dict, float_path: Path, calibration, method: str) -> dict:
    """Return the calibration stats for `method`; minmax leaves ai-edge-quantizer's own."""
    if method == "minmax":
        return stats
    if method == "percentile":
        names = {n for n in stats if not n.startswith("serving_default_args_0")}
        return {**stats, **percentile_ranges(float_path, calibration, names)}
    raise ValueError(f"unknown calibration method {method!r}")
