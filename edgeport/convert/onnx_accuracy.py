"""Accuracy control of the onnx and tensorrt int8 QDQ models: keep the most sensitive blocks in float.

Blocks are Ultralytics modules (`model.N`, one head branch per level); each is ranked by the output error it
adds when it alone is quantized, then kept in float, worst first, until the mAP50-95 drop is within budget.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.convert.budget_search import rank_alone, relative_error, widen_until_within

BLOCK = re.compile(r"/((?:one2one_)?cv[234]\.\d+|model\.\d+)/")
STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
# NMS-free one-to-one heads (YOLO26, YOLOv10) lose far more to int8 activations than the NMS-based ones
# (trained YOLO26n sample: onnx int8 5.76 points, TensorRT QDQ 10.72; YOLOv8n 0.28 and -0.16), so with a
# labelled DATA.yaml they get accuracy control with this budget (points of mAP50-95) unless --max-drop says
DEFAULT_BUDGET = {"one2one": 0.5, "one2one-dfl": 0.5}


def budget_for(max_drop: float | None, head: dict | None) -> tuple[float | None, str]:
    """(points of mAP50-95 the int8 model may lose, where that budget comes from); None: no control."""
    if max_drop is not None:
        return float(max_drop), "--max-drop"
    kind = (head or {}).get("head", "dfl")
    if kind in DEFAULT_BUDGET:
        return DEFAULT_BUDGET[kind], f"default for {kind} heads"
    return None, ""


def blocks_of(model, skip: set[str]) -> dict[str, list[str]]:
    """{block: node names} of the graph's learned blocks, in graph order (nodes in `skip` left out)."""
    blocks: dict[str, list[str]] = {}
    for node in model.graph.node:
        match = BLOCK.search(node.name)
        if match and node.name not in skip:
            blocks.setdefault(match.group(1), []).append(node.name)
    return blocks


def output_error(float_model, candidate, batches: list[np.ndarray]) -> float:
    """Relative squared error of the candidate's outputs (normalized boxes and scores) against float's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    runs = []
    for model in (float_model, candidate):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        runs.append([np.concatenate([o.reshape(o.shape[0], -1) for o in session.run(None, {name: b})], axis=1)
                     for b in batches])
    return relative_error(np.concatenate(runs[0]), np.concatenate(runs[1]))


def rank_blocks(float_model, blocks: dict[str, list[str]], requantize, batches, say) -> list[tuple[str, float]]:
    """(block, output error when only that block is quantized), worst first."""
    return rank_alone(blocks, lambda kept: output_error(float_model, requantize(kept), batches), say)


def accuracy_control(float_model, quantized, requantize: Callable, calibration, data: Path, budget: float,
                     record_for: Callable, say: Callable[[str], None], skip: set[str]):
    """(model, info): `quantized`, or a requantized model with the most sensitive blocks kept in float, the
    first whose mAP50-95 drop on `data` is <= `budget` points (else the best one tried).

    `record_for(model, precision)` gives the ArtifactRecord the runtime needs to evaluate a model.
    """
    from edgeport.convert.job import write_record
    from edgeport.evaluate import evaluate

    with tempfile.TemporaryDirectory(prefix="edgeport-accuracy-") as tmp:
        def map50_95(model, precision: str) -> float:
            path = Path(tmp) / f"{precision}.onnx"
            write_record(path, record_for(model, precision), onnx_model=model)
            return evaluate(path, data, progress=False).map50_95

        baseline = map50_95(float_model, "fp32")
        drop = round((baseline - map50_95(quantized, "int8")) * 100, 3)
        info = {"budget_points": budget, "drop_before": drop, "drop_after": drop, "float_blocks": [],
                "float_nodes": [], "reached": drop <= budget}
        if drop <= budget:
            say(f"accuracy control: int8 drop {drop:.2f} points is within {budget}; every block stays int8")
            return quantized, info
        say(f"accuracy control: int8 drops {drop:.2f} points (> {budget}); ranking blocks by the error they add")
        blocks = blocks_of(float_model, skip)
        batches = [b for b, _ in zip(calibration.batches("NCHW", "float32"), range(8))]
        ranking = rank_blocks(float_model, blocks, requantize, batches, say)
        info["ranking"] = [[name, float(f"{error:.3g}")] for name, error in ranking[:12]]

        def try_prefix(chosen: list[str]):
            candidate = requantize([n for b in chosen for n in blocks[b]])
            return round((baseline - map50_95(candidate, "int8")) * 100, 3), candidate

        best = widen_until_within([name for name, _ in ranking], try_prefix, budget, STEPS, (drop, quantized),
                                  lambda line: say(f"accuracy control: {line}"), "most sensitive blocks in float")
    drop_after, chosen, model = best.drop, best.names, best.candidate
    info.update(drop_after=drop_after, float_blocks=chosen, float_nodes=[n for b in chosen for n in blocks[b]],
                reached=drop_after <= budget)
    state = "keep" if info["reached"] else "best reached:"
    say(f"accuracy control: {state} {len(chosen)} blocks in float ({', '.join(chosen)}), drop {drop_after:.2f} "
        f"points (budget {budget})")
    return model, info
