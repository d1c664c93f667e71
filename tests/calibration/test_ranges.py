"""Fallback ranges for tensors whose calibration statistics are degenerate."""

from __future__ import annotations

import numpy as np

from edgeport.calibration.ranges import MIN_SPAN, Fallbacks, finite_values, safe_range


def test_constant_tensor_gets_a_range_that_holds_zero_and_the_constant():
    assert safe_range(0.5, 0.5) == (0.0, 0.5)
    low, high = safe_range(0.0, 0.0)
    assert high - low >= MIN_SPAN * 0.999 and low < 0 < high  # int8 steps stay normal float32 numbers
    assert safe_range(0.2, 0.7, symmetric=True) == (-0.7, 0.7)


def test_nan_and_inf_are_left_out_and_counted():
    values = np.array([1.0, np.nan, -2.0, np.inf, -np.inf], np.float32)
    finite, dropped = finite_values(values)
    assert finite.tolist() == [1.0, -2.0] and dropped == 3


def test_each_fallback_is_named_with_its_reason_and_range():
    fallbacks = Fallbacks()
    fallbacks.observe("empty", np.zeros((1, 0), np.float32), "no values")
    fallbacks.observe("nan", np.array([np.nan, 3.0], np.float32), "NaN or inf values")
    fallbacks.observe("nan", np.array([np.nan, 1.0], np.float32))  # a later batch widens what was seen
    fallbacks.observe("fine", np.array([0.0, 1.0], np.float32))  # observed without a reason: not a fallback
    assert set(fallbacks.ranges()) == {"empty", "nan"}
    assert fallbacks.ranges()["nan"] == (0.0, 3.0)
    lines = fallbacks.provenance()
    assert lines["nan"] == "NaN or inf values (values 1..3, 2 NaN/inf ignored): fallback range 0..3"
    assert lines["empty"].startswith("no values (no finite values): fallback range -5e-13..5e-13")
