"""Accuracy control of the TFLite int8 model: keep the blocks that cost the most accuracy in float.

Blocks come from the float flatbuffer's op scopes: Ultralytics modules (`model.N`) and one head branch per
level and kind (`cv2.L` boxes, `cv3.L` classes, `one2one_` first for one-to-one heads), named as the onnx
target names them. Each is ranked by the output error it adds when it alone is quantized; the worst are kept
in float until the mAP50-95 drop is within budget (edgeport.convert.budget_search). For the Edge TPU the
blocks after the predicted TPU/CPU boundary come first: they run on the CPU anyway.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.artifact import ArtifactRecord, Decode, write_sidecar
from edgeport.convert.budget_search import rank_alone, relative_error, widen_until_within
from edgeport.convert.onnx_accuracy import STEPS
from edgeport.convert.tflite_int8 import quantize_int8

HEAD_BRANCH = "torch.nn.modules.container.Sequential_"  # the head's per-level Sequential (cv2[i], cv3[i])
RANK_IMAGES = 8


def _top_module(scope: str) -> str | None:
    """The first module under the raw-head wrapper in an op's scope ('ultralytics.nn.modules.block.C3k2_22'),
    None for an op with no module (the output reshapes)."""
    _, found, rest = scope.split(";;")[0].partition("RawHead/")
    return re.split(r"[/;]", rest, maxsplit=1)[0] if found and rest else None


def op_scopes(path: str | Path) -> list[str]:
    """The scope of every op of a .tflite, in graph order (ai-edge-quantizer's recipe matches on it)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    graph = tfu.read_model(str(path)).subgraphs[0]
    return [tfu.get_op_scope(op, graph.tensors) for op in graph.operators]


def _branch_of_ops(model, scopes: list[str], one_to_one: bool) -> dict[int, str]:
    """{op index: head branch} found by walking back from each signature output to the neck."""
    graph = model.subgraphs[0]
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    outputs = sorted(model.signatureDefs[0].outputs, key=lambda o: int(_text(o.name).rsplit("_", 1)[-1]))
    owner: dict[int, str] = {}
    for k, output in enumerate(outputs):  # output_2L: level L's boxes, output_2L+1: its classes
        branch = f"{'one2one_' if one_to_one else ''}cv{2 + k % 2}.{k // 2}"
        stack = [output.tensorIndex]
        while stack:
            index = producer.get(stack.pop())
            top = None if index is None else _top_module(scopes[index])
            if index is None or index in owner or (top is not None and not top.startswith(HEAD_BRANCH)):
                continue
            owner[index] = branch
            stack.extend(t for t in graph.operators[index].inputs if t >= 0)
    return owner


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def find_blocks(float_path: Path, one_to_one: bool) -> dict[str, list[str]]:
    """{block: op scopes} of the float flatbuffer's learned blocks, in graph order."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    model = tfu.read_model(str(float_path))
    scopes = op_scopes(float_path)
    owner = _branch_of_ops(model, scopes, one_to_one)
    blocks: dict[str, list[str]] = {}
    for index, scope in enumerate(scopes):
        top = _top_module(scope)
        name = owner.get(index)
        if name is None and top is not None and not top.startswith(HEAD_BRANCH):
            name = f"model.{top.rsplit('_', 1)[-1]}"
        if name and scope:
            blocks.setdefault(name, []).append(scope)
    return blocks


def decoded_outputs(path: Path, batches: list[np.ndarray], source) -> np.ndarray:
    """(images, values): each image's boxes (xyxy / input size) then class scores, decoded as the runtime does,
    from a float-I/O .tflite of the raw head."""
    from edgeport.runtime.backends.litert import interpreter_class
    from edgeport.runtime.postprocess import decode_dfl

    interpreter_cls, _, _ = interpreter_class()
    runner = interpreter_cls(model_path=str(path), num_threads=2).get_signature_runner("serving_default")
    size = source.imgsz
    decode = Decode(kind="dfl", box_format="ltrb", normalized=False, reg_max=source.reg_max, levels=tuple(
        {"box": f"output_{2 * i}", "cls": f"output_{2 * i + 1}", "stride": s, "grid": [size // s, size // s]}
        for i, s in enumerate(source.strides)))
    rows = []
    for batch in batches:
        boxes, scores = decode_dfl(runner(args_0=batch), decode)
        rows.append(np.concatenate([boxes.reshape(len(batch), -1) / size, scores.reshape(len(batch), -1)], axis=1))
    return np.concatenate(rows)


def rank_blocks(float_path: Path, blocks: dict[str, list[str]], quantize: Callable[[list[str], Path], None],
                batches: list[np.ndarray], source, work: Path, say) -> list[tuple[str, float]]:
    """(block, output error when only that block is quantized), worst first.

    `quantize(float_scopes, path)` writes a float-I/O int8 model with those scopes kept in float."""
    reference = decoded_outputs(float_path, batches, source)

    def error_with_float(scopes: list[str]) -> float:
        path = work / "alone.tflite"
        quantize(scopes, path)
        return relative_error(reference, decoded_outputs(path, batches, source))

    return rank_alone(blocks, error_with_float, say, every=op_scopes(float_path))


def tpu_part(int8_path: Path) -> tuple[set[str], int, int]:
    """(scopes of the ops the Edge TPU is predicted to run, their count, all ops) of an integer .tflite."""
    from edgeport.convert.edgetpu_compat import analyze

    report = analyze(int8_path)
    boundary = report.total_ops if report.first_cpu_op is None else report.first_cpu_op.index
    return set(op_scopes(int8_path)[:boundary]), report.edgetpu_ops, report.total_ops


def order_for_edgetpu(ranking: list[str], blocks: dict[str, list[str]], on_tpu: set[str]) -> tuple[list[str], int]:
    """(the ranking with the blocks wholly after the TPU part first, each part worst first; how many those are)."""
    after = [b for b in ranking if not set(blocks[b]) & on_tpu]
    return after + [b for b in ranking if b not in after], len(after)


def accuracy_control(float_path: Path, out: Path, io: str, stats: dict, source, calibration, data: Path,
                     budget: float, record_for: Callable[[Path, str], ArtifactRecord], say: Callable[[str], None],
                     edgetpu: bool = False) -> dict:
    """Re-quantize `out` with its most sensitive blocks in float until its mAP50-95 drop on `data` is <= `budget`
    points (else keep the best tried); return what was done, for the record's provenance.

    `record_for(path, precision)` gives the record the runtime needs to evaluate a model; `edgetpu`: try the
    blocks after the predicted Edge TPU part first, and count the ops still mapped to the TPU."""
    import tempfile

    from edgeport.evaluate import evaluate

    def map50_95(path: Path, precision: str) -> float:
        write_sidecar(path, record_for(path, precision))
        return evaluate(path, data, progress=False).map50_95

    baseline = map50_95(float_path, "fp32")
    drop = round((baseline - map50_95(out, "int8")) * 100, 3)
    info = {"budget_points": budget, "drop_before": drop, "drop_after": drop, "float_blocks": [], "float_ops": [],
            "reached": drop <= budget}
    on_tpu, mapped, total = tpu_part(out) if edgetpu else (set(), 0, 0)
    if edgetpu:
        info.update(edgetpu_ops_before=mapped, edgetpu_ops_after=mapped, total_ops_before=total)
    if drop <= budget:
        say(f"accuracy control: int8 drop {drop:.2f} points is within {budget}; every block stays int8")
        return info
    say(f"accuracy control: int8 drops {drop:.2f} points (> {budget}); ranking blocks by the error they add")
    blocks = find_blocks(float_path, source.one_to_one)
    with tempfile.TemporaryDirectory(prefix="edgeport-tflite-accuracy-") as tmp:
        work = Path(tmp)
        batches = [b for b, _ in zip(calibration.batches("NHWC", "float32"), range(RANK_IMAGES))]
        ranking = rank_blocks(float_path, blocks, lambda scopes, path: quantize_int8(
            float_path, path, "float", stats, float_scopes=tuple(scopes)), batches, source, work, say)
        info["ranking"] = [[name, float(f"{error:.3g}")] for name, error in ranking[:12]]
        order, steps = [name for name, _ in ranking], STEPS
        if edgetpu:
            order, after = order_for_edgetpu(order, blocks, on_tpu)
            steps = tuple(sorted(set(STEPS) | {after} - {0}))
            info["blocks_after_tpu_part"] = after
            say(f"accuracy control: {after} of {len(blocks)} blocks lie wholly after the Edge TPU part ({mapped}/"
                f"{total} ops on the TPU); they are tried first, as keeping them in float costs the TPU nothing")
        best = _search(float_path, order, blocks, io, stats, budget, steps, drop, out, work, baseline, map50_95,
                       say, mapped if edgetpu else None)
        if best.names:
            shutil.copy(best.candidate, out)
    return _finish(info, best, out, budget, edgetpu, say)


def _search(float_path: Path, order: list[str], blocks: dict[str, list[str]], io: str, stats: dict, budget: float,
            steps: tuple[int, ...], drop: float, out: Path, work: Path, baseline: float, map50_95, say,
            mapped: int | None):
    """widen_until_within over `order`: each prefix of blocks requantized in float and evaluated; `mapped`
    (Edge TPU only): the ops the full-integer model maps to the TPU, said beside each try."""
    def try_prefix(names: list[str]):
        candidate = work / f"float_{len(names)}.tflite"
        quantize_int8(float_path, candidate, io, stats, float_scopes=tuple(s for b in names for s in blocks[b]))
        return round((baseline - map50_95(candidate, "int8")) * 100, 3), candidate

    def tpu_ops(candidate: Path) -> str:
        now = tpu_part(candidate)[1]
        return f"; {now}/{mapped} ops still on the Edge TPU" + ("" if now >= mapped else " (FEWER)")

    return widen_until_within(order, try_prefix, budget, steps, (drop, out),
                              lambda line: say(f"accuracy control: {line}"), "most sensitive blocks in float",
                              describe=tpu_ops if mapped is not None else None)


def _finish(info: dict, best, out: Path, budget: float, edgetpu: bool, say) -> dict:
    """Fill `info` with the search's result (read back from the written `out`) and say it."""
    from edgeport.convert.tflite_ops import float_ops

    chosen = best.names
    info.update(drop_after=best.drop, float_blocks=chosen, reached=best.drop <= budget, tried=best.tried,
                float_ops=[f"{op.index}:{op.name}" for op in float_ops(out)] if chosen else [])
    state = "keep" if info["reached"] else "best reached:"
    say(f"accuracy control: {state} {len(chosen)} blocks in float ({', '.join(chosen) or 'none'}), "
        f"{len(info['float_ops'])} ops computing in float, drop {best.drop:.2f} points (budget {budget})")
    if edgetpu:
        _, now, total = tpu_part(out)
        before = info["edgetpu_ops_before"]
        info.update(edgetpu_ops_after=now, total_ops_after=total)
        if now < before:
            info["edgetpu_note"] = (f"{before - now} ops moved from the Edge TPU to the CPU ({now}/{total} on the "
                                    f"TPU, {before} before): the budget needed blocks inside the TPU part in float")
            say(f"accuracy control: WARNING: {info['edgetpu_note']}")
        else:
            say(f"accuracy control: the Edge TPU part is unchanged ({now} ops on the TPU, {before} before); the "
                f"float blocks run on the CPU after it")
    return info
