"""The accuracy-budget search shared by the onnx, tflite (float blocks) and int16-fallback searches
(edgeport/convert/budget_search.py): prefixes of the ranking in order, the first within budget, else the best."""

from __future__ import annotations

import numpy as np

from edgeport.convert.budget_search import prefix_sizes, widen_until_within

# a signal and the quantization error each block adds to it: keeping a block "in float" removes its noise
ERRORS = {"model.16": 0.9, "one2one_cv2.0": 0.5, "model.19": 0.3, "model.8": 0.2, "model.2": 0.1, "model.0": 0.05}
RANKING = sorted(ERRORS, key=lambda b: -ERRORS[b])


def quantized_signal(kept_in_float: list[str]) -> tuple[float, np.ndarray]:
    """(drop in points, the signal): each block not kept in float adds its own deterministic noise."""
    rng = np.random.default_rng(0)
    signal = np.sin(np.linspace(0, 6, 512))
    noisy = signal.copy()
    for block, error in ERRORS.items():
        noise = rng.standard_normal(signal.shape) * error
        if block not in kept_in_float:
            noisy += noise
    return round(float(np.mean((noisy - signal) ** 2)) * 10, 3), noisy


def test_prefixes_follow_the_ranking_and_stop_at_the_first_within_budget():
    seen, lines = [], []

    def try_prefix(names):
        seen.append(names)
        return quantized_signal(names)

    start = quantized_signal([])
    best = widen_until_within(RANKING, try_prefix, budget=1.0, steps=(1, 2, 3, 4, 6), start=start,
                              say=lines.append, what="blocks in float")
    assert seen[0] == ["model.16"] and all(s == RANKING[:len(s)] for s in seen)  # worst first, prefixes only
    assert best.drop <= 1.0 and [size for size, _ in best.tried] == [len(s) for s in seen]
    assert all(drop > 1.0 for _, drop in best.tried[:-1])  # it went on only while over budget
    assert best.names == seen[-1] and np.array_equal(best.candidate, quantized_signal(seen[-1])[1])
    assert lines[0].startswith("1 blocks in float -> drop ")


def test_an_unreachable_budget_keeps_the_best_prefix_tried_not_the_last():
    def worse_when_wide(names):  # keeping more than 3 blocks "in float" breaks the model here
        drop, signal = quantized_signal(names)
        return (drop + 50.0 if len(names) > 3 else drop), signal

    start = quantized_signal([])
    best = widen_until_within(RANKING, worse_when_wide, budget=-1.0, steps=(1, 2, 3, 4, 6), start=start,
                              say=lambda line: None, what="blocks in float")
    assert [size for size, _ in best.tried] == [1, 2, 3, 4, 6]  # every step (6: the whole ranking)
    assert best.names == RANKING[:3] and best.drop == min(drop for _, drop in best.tried)


def test_nothing_better_than_the_start_keeps_the_start():
    start = (0.0, "untouched")
    best = widen_until_within(RANKING, lambda names: (0.5, "worse"), budget=-1.0, steps=(1, 2), start=start,
                              say=lambda line: None, what="blocks")
    assert best.names == [] and best.candidate == "untouched" and best.drop == 0.0 and not best.improved


def test_prefix_sizes_end_with_the_whole_ranking_only_when_asked():
    assert prefix_sizes((1, 2, 3, 4, 6, 8, 12, 16, 24, 32), 29, through_all=True)[-3:] == [16, 24, 29]
    assert prefix_sizes((2, 4, 8, 16, 32, 64), 400, through_all=False) == [2, 4, 8, 16, 32, 64]
    assert prefix_sizes((2, 4), 3, through_all=False) == [2]
    assert prefix_sizes((1, 2), 0, through_all=True) == []
