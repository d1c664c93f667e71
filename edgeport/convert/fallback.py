"""Accuracy-aware fallback for full-integer int8: keep the most sensitive layers in int16.

Sensitivity is measured per op, as the error the op adds: the drop in signal-to-noise ratio
(float against quantized activations, ai-edge-quantizer's validator) from its inputs to its
output. Layers are promoted to int16 activations, worst first, until the accuracy budget holds.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable

from edgeport.artifact import ArtifactRecord, write_sidecar
from edgeport.convert.budget_search import widen_until_within
from edgeport.convert.tflite_int8 import quantize_int8

STEPS = (2, 4, 8, 16, 32, 64)


def sensitivity(float_path: Path, quantizer, calibration, samples: int = 4) -> list[tuple[str, float]]:
    """Return (op scope, dB of SNR the op loses) for every op of the float model, worst first."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu
    from ai_edge_quantizer.utils import validation_utils

    batches = [{"args_0": b} for b, _ in zip(calibration.batches("NHWC", "float32"), range(samples))]
    result = quantizer.validate(test_data={"serving_default": batches},
                                error_metrics=[validation_utils.ValidationErrorMetric.SNR], num_threads=2)
    snr = {name: float(value["snr"]) for name, value in result.get_all_tensor_results().items()}
    model = tfu.read_model(str(float_path))
    graph = model.subgraphs[0]

    def decibels(index: int) -> float | None:
        name = tfu.get_tensor_name(graph.tensors[index])
        value = snr.get(name)
        return None if value is None else 10 * math.log10(min(max(value, 1e-12), 1e12))

    ranking = []
    for op in graph.operators:
        outputs = [d for d in (decibels(i) for i in op.outputs if i >= 0) if d is not None]
        inputs = [d for d in (decibels(i) for i in op.inputs if i >= 0) if d is not None]
        if not outputs:
            continue
        loss = (min(inputs) if inputs else 120.0) - min(outputs)
        ranking.append((tfu.get_op_scope(op, graph.tensors), loss))
    ranking.sort(key=lambda item: -item[1])
    return ranking


def accuracy_fallback(float_path: Path, out: Path, io: str, stats: dict, quantizer, calibration, options,
                      record_for: Callable[[Path, str], ArtifactRecord], say: Callable[[str], None]) -> dict:
    """Re-quantize `out` with int16 layers until its mAP50-95 drop <= options.max_drop.

    Returns what was done: the drop before and after, the int16 layers, whether the budget holds.
    `options.data` is a labelled DATA.yaml (convert_tflite checks it before any work).
    """
    from edgeport.evaluate import evaluate

    data = options.data
    budget = float(options.max_drop)

    def map50_95(path: Path, precision: str) -> float:
        write_sidecar(path, record_for(path, precision))
        return evaluate(path, data, progress=False).map50_95

    baseline = map50_95(float_path, "fp32")
    drop = round((baseline - map50_95(out, "int8")) * 100, 3)
    info = {"budget_points": budget, "drop_before": drop, "drop_after": drop, "int16_layers": [], "reached": True}
    if drop <= budget:
        say(f"fallback: full-integer drop {drop:.2f} points is within --max-drop {budget}; nothing to keep in int16")
        return info
    say(f"fallback: full-integer drops {drop:.2f} points (> {budget}); measuring per-layer error")
    ranking = sensitivity(float_path, quantizer, calibration)

    def try_prefix(scopes: list[str]):
        candidate = float_path.with_name(f"fallback_{len(scopes)}.tflite")
        quantize_int8(float_path, candidate, io, stats, tuple(scopes))
        return round((baseline - map50_95(candidate, "int8")) * 100, 3), candidate

    best = widen_until_within([scope for scope, _ in ranking], try_prefix, budget, STEPS, (drop, None),
                              lambda line: say(f"fallback: {line}"), "most sensitive layers in int16",
                              through_all=False)
    drop_after, scopes, chosen = best.drop, best.names, best.candidate
    if chosen is not None:
        shutil.copy(chosen, out)
    info.update(drop_after=drop_after, int16_layers=[short_name(s) for s in scopes], reached=drop_after <= budget)
    if info["reached"]:
        say(f"fallback: {len(scopes)} layers in int16 keep the drop at {drop_after:.2f} points: "
            + ", ".join(info["int16_layers"][:8]))
    else:
        say(f"fallback: the budget of {budget} points was not reached (best {drop_after:.2f} with "
            f"{len(scopes)} int16 layers); kept the best model")
    return info


def short_name(scope: str) -> str:
    """The readable end of a layer's scope: 'Conv_1/SiLU_act;1' rather than the whole module path."""
    tail = scope.split(";;")[0]
    parts = [p.rsplit(".", 1)[-1] for p in tail.split("/")]
    return "/".join(parts[-3:])

