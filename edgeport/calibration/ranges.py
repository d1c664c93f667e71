"""Safe activation ranges for tensors whose calibration statistics are degenerate (no values,
NaN or inf, or a span too narrow for a histogram), shared by every converter's calibration.

One tensor's range never sinks a conversion: it gets a fallback range, and `Fallbacks` says which
tensor, why and what range it got, for the record's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SPAN = 1e-12  # narrowest range a fallback gets: never a zero scale, int8 steps stay normal float32 numbers


def finite_values(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(the finite values of `values`, flattened; how many NaN/inf values were left out)."""
    flat = np.asarray(values).ravel()
    finite = flat[np.isfinite(flat)]
    return finite, int(flat.size - finite.size)


def safe_range(low: float | None, high: float | None, symmetric: bool = False) -> tuple[float, float]:
    """A usable (low, high) from the observed finite extremes (None when there were none): zero
    included, at least MIN_SPAN wide (centred on the values), symmetric around 0 when asked."""
    if low is None or high is None:
        low = high = 0.0
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high - low < MIN_SPAN:
        centre = (high + low) / 2
        low, high = centre - MIN_SPAN / 2, centre + MIN_SPAN / 2
    if symmetric:
        bound = max(abs(low), abs(high))
        low, high = -bound, bound
    return low, high


@dataclass
class Fallbacks:
    """Tensors that got a fallback range: name -> (reason, observed low, observed high, non-finite count);
    `symmetric`: their ranges are symmetric around 0 (as the calibration method's own are)."""

    symmetric: bool = False
    reasons: dict[str, str] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)

    def observe(self, name: str, values: np.ndarray, reason: str | None = None) -> None:
        """Note `values` of tensor `name` (and, the first time one is given, why it falls back)."""
        finite, dropped = finite_values(values)
        if dropped:
            self.non_finite[name] = self.non_finite.get(name, 0) + dropped
        if reason is not None:
            self.reasons.setdefault(name, reason)
        if finite.size:
            self.low[name] = min(self.low.get(name, np.inf), float(finite.min()))
            self.high[name] = max(self.high.get(name, -np.inf), float(finite.max()))

    def ranges(self) -> dict[str, tuple[float, float]]:
        """name -> the safe range of every tensor that falls back."""
        return {name: safe_range(self.low.get(name), self.high.get(name), self.symmetric) for name in self.reasons}

    def provenance(self) -> dict[str, str]:
        """name -> one line for the record: what was wrong and which range was used instead."""
        lines = {}
        for name, (low, high) in self.ranges().items():
            seen = (f"values {self.low[name]:.6g}..{self.high[name]:.6g}" if name in self.low else "no finite values")
            dropped = f", {self.non_finite[name]} NaN/inf ignored" if self.non_finite.get(name) else ""
            lines[name] = f"{self.reasons[name]} ({seen}{dropped}): fallback range {low:.6g}..{high:.6g}"
        return lines

