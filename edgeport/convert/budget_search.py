"""The accuracy-budget search every int8 target shares: widen a prefix of a sensitivity ranking (blocks kept in
float, layers put in int16) step by step until the accuracy drop is within budget, keeping the best tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class Best:
    """The best prefix tried: its drop (points of mAP50-95), its names, and what try_prefix built for it."""

    drop: float
    names: list[str]
    candidate: Any
    tried: list[tuple[int, float]] = field(default_factory=list)  # (prefix length, drop) in the order tried

    @property
    def improved(self) -> bool:
        return bool(self.names)


def prefix_sizes(steps: Sequence[int], count: int, through_all: bool) -> list[int]:
    """The prefix lengths to try: each step shorter than the ranking, then (through_all) the whole ranking."""
    sizes = [s for s in steps if s < count]
    if through_all and count and (not sizes or sizes[-1] != count):
        sizes.append(count)
    return sizes


def widen_until_within(ranking: Sequence[str], try_prefix: Callable[[list[str]], tuple[float, Any]],
                       budget: float, steps: Sequence[int], start: tuple[float, Any],
                       say: Callable[[str], None], what: str, through_all: bool = True,
                       describe: Callable[[Any], str] | None = None) -> Best:
    """Try the first n names of `ranking` (worst first) for each n of `steps` until a drop <= `budget`.

    `try_prefix(names)` returns (drop in points, candidate); `start` is (drop, candidate) of the untouched
    model. Each try is said as "<n> <what> -> drop D points" (then `describe(candidate)`). Returns the first
    prefix within budget, else the one with the smallest drop (the untouched model when none was smaller).
    """
    best = Best(start[0], [], start[1])
    for size in prefix_sizes(steps, len(ranking), through_all):
        names = list(ranking[:size])
        drop, candidate = try_prefix(names)
        best.tried.append((size, drop))
        say(f"{size} {what} -> drop {drop:.2f} points" + (describe(candidate) if describe else ""))
        if drop < best.drop:
            best.drop, best.names, best.candidate = drop, names, candidate
        if drop <= budget:
            break
    return best


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean squared error against the reference, relative to the reference's variance."""
    return float(np.mean((reference - candidate) ** 2) / max(float(np.var(reference)), 1e-12))


def rank_alone(blocks: dict[str, list[str]], error_with_float: Callable[[list[str]], float],
               say: Callable[[str], None], every: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """(block, output error when only that block is quantized), worst first: `error_with_float(names)` is the
    error of the model quantized with `names` kept in float: every name (default: every block's members) but
    the block's own."""
    every = [n for names in blocks.values() for n in names] if every is None else every
    ranking = []
    for index, (block, names) in enumerate(blocks.items()):
        own = set(names)
        ranking.append((block, error_with_float([n for n in every if n not in own])))
        if (index + 1) % 8 == 0 or index + 1 == len(blocks):
            say(f"accuracy control: measured {index + 1}/{len(blocks)} blocks quantized alone")
    return sorted(ranking, key=lambda item: -item[1])
