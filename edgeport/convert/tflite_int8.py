"""ai-edge-quantizer settings of the TFLite target: calibration ranges, full-integer int8 (with int16
layers for the accuracy fallback, float blocks for accuracy control), fp16 and dynamic-range weights.
"""

from __future__ import annotations

import contextlib
from io import StringIO
import re
from pathlib import Path

import numpy as np


def _int_config(bits: int, unsigned: bool = False):
    from ai_edge_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=bits, symmetric=not unsigned and bits == 16,
            dtype=qtyping.TensorDataType.UINT if unsigned else qtyping.TensorDataType.INT),
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)


def calibration_stats(float_path: Path, calibration) -> dict:
    """Float activation ranges over the calibration set (the input pinned to exactly 0..1)."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [{"args_0": batch} for batch in calibration.batches("NHWC", "float32")]
    stats = qt.calibrate({"serving_default": samples})
    for name in [n for n in stats if n.startswith("serving_default_args_0")]:
        # pixels are exactly 0..1: a scale of 1/255 lets uint8 camera frames in untouched
        stats[name] = {"min": np.array(0.0, np.float32), "max": np.array(1.0, np.float32)}
    return stats


def quantize_int8(float_path: Path, out: Path, io: str, stats: dict, int16_scopes: tuple[str, ...] = (),
                  float_scopes: tuple[str, ...] = ()):
    """Full-integer int8 from calibrated ranges; ops whose scope is in int16_scopes get int16
    activations, ops whose scope is in float_scopes stay float (QUANTIZE / DEQUANTIZE around them).
    Returns the ai-edge-quantizer Quantizer (for validation)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    boundary = (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT)
    for op in boundary:
        if io == "float":
            qt.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        elif io == "uint8":
            qt.update_quantization_recipe(regex=".*", operation_name=op, op_config=_int_config(8, unsigned=True))
    for scope in int16_scopes:
        qt.update_quantization_recipe(regex=f"^{re.escape(scope)}$",
                                      operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      op_config=_int_config(16))
    if float_scopes:  # one regex for them all: the recipe is searched once per op
        qt.update_quantization_recipe(regex="^(?:" + "|".join(re.escape(s) for s in sorted(set(float_scopes))) + ")$",
                                      operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    with contextlib.redirect_stdout(StringIO()):  # its size report, printed once per (re)quantization
        result = qt.quantize(calibration_result=stats)
    Path(out).unlink(missing_ok=True)  # else a warning per candidate of the accuracy searches
    result.export_model(str(out))
    return qt


def quantize_float_ops(float_path: Path, out: Path, precision: str) -> None:
    """fp16 weights (float casting) or dynamic-range int8 weights."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    if precision == "fp16":
        fp16 = qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
        qt.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      op_config=fp16, algorithm_key="float_casting")
    else:
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    qt.quantize().export_model(str(out), overwrite=True)
