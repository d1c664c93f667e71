"""Accuracy control of the TFLite / Edge TPU int8 model (edgeport/convert/tflite_accuracy.py) and the one-to-one
head's output ranges, on the bundled YOLO26n at 160 px: blocks named as the onnx target names them, the blocks
kept in float really compute in float in the written flatbuffer and are named in the record, and for the Edge TPU
the blocks after the TPU part come first and leave the TPU part whole. The full-size figures are
benchmarks/int8_accuracy.py --targets.
"""

from __future__ import annotations


import numpy as np
import pytest

from edgeport import sample
from edgeport.convert import ConvertOptions, convert
from edgeport.convert.tflite_ops import list_ops

YOLO26N = sample.SAMPLE_DIR / "model" / "shapes_yolo26n.pt"
SIZE = 160


@pytest.fixture(scope="module")
def float26(tmp_path_factory, sample_data):
    """(float .tflite of the sample YOLO26n at 160 px, its source, calibration set, ai-edge-quantizer stats)."""
    from edgeport.calibration import build_calibration_set
    from edgeport.convert.source import load_source
    from edgeport.convert.tflite_int8 import calibration_stats
    from edgeport.convert.tflite_target import export_float

    source = load_source(YOLO26N, SIZE)
    path = tmp_path_factory.mktemp("tflite26") / "float.tflite"
    export_float(source, path)
    calibration = build_calibration_set(sample_data, imgsz=SIZE, n=6, progress=False)
    return path, source, calibration, calibration_stats(path, calibration)


def _scoped_ops(path):
    from edgeport.convert.tflite_accuracy import op_scopes

    return list(zip(list_ops(path), op_scopes(path)))


def test_blocks_are_modules_and_one_head_branch_per_level_and_kind(float26):
    from edgeport.convert.tflite_accuracy import find_blocks

    path, source, _, _ = float26
    blocks = find_blocks(path, source.one_to_one)
    heads = {f"one2one_cv{k}.{level}" for k in (2, 3) for level in range(3)}
    assert set(blocks) == {f"model.{i}" for i in range(23)} | heads
    for level in range(3):  # YOLO26's class branch alone has depthwise convolutions; the box branch has none
        assert any("DWConv" in s for s in blocks[f"one2one_cv3.{level}"])
        assert not any("DWConv" in s for s in blocks[f"one2one_cv2.{level}"])
    assert any("PSABlock" in s for s in blocks["model.10"])  # the attention block


def test_blocks_kept_in_float_compute_in_float_in_the_written_tflite(float26, tmp_path):
    from edgeport.convert.tflite_accuracy import find_blocks
    from edgeport.convert.tflite_int8 import quantize_int8

    path, source, _, stats = float26
    blocks = find_blocks(path, source.one_to_one)
    kept = set(blocks["model.16"] + blocks["one2one_cv3.0"])
    out = tmp_path / "mixed.tflite"
    quantize_int8(path, out, "uint8", stats, float_scopes=tuple(kept))
    ops = _scoped_ops(out)
    in_float = {scope for op, scope in ops if op.computes_in_float}
    assert in_float == kept  # exactly the kept blocks' ops, every one of them
    assert {op.name for op, _ in ops} >= {"QUANTIZE", "DEQUANTIZE"}
    assert ops[0][0].inputs[0][1] == "UINT8"  # integer input all the same


def test_edge_tpu_tries_the_blocks_after_its_part_first(float26, tmp_path):
    """Blocks wholly after the first op the Edge TPU cannot run (YOLO26: the attention's BATCH_MATMUL in
    model.10) come first; keeping them in float leaves every TPU op on the TPU, one inside does not (and the
    record and the progress say so)."""
    from edgeport.convert.budget_search import Best
    from edgeport.convert.tflite_accuracy import _finish, find_blocks, order_for_edgetpu, tpu_part
    from edgeport.convert.tflite_int8 import quantize_int8

    path, source, _, stats = float26
    blocks = find_blocks(path, source.one_to_one)
    full = tmp_path / "full.tflite"
    quantize_int8(path, full, "uint8", stats)
    on_tpu, mapped, total = tpu_part(full)
    assert 0 < mapped < total
    ranking = ["model.2", "one2one_cv3.1", "model.10", "model.16", "model.0", "one2one_cv2.2"]
    order, after = order_for_edgetpu(ranking, {b: blocks[b] for b in ranking}, on_tpu)
    assert order == ["one2one_cv3.1", "model.16", "one2one_cv2.2", "model.2", "model.10", "model.0"] and after == 3
    cpu_side, tpu_side = tmp_path / "cpu.tflite", tmp_path / "tpu.tflite"
    quantize_int8(path, cpu_side, "uint8", stats, float_scopes=tuple(s for b in order[:after] for s in blocks[b]))
    quantize_int8(path, tpu_side, "uint8", stats, float_scopes=tuple(blocks["model.2"]))
    assert tpu_part(cpu_side)[1] == mapped
    assert tpu_part(tpu_side)[1] < mapped
    lines = []  # a search that needed a block inside the TPU part says so, in the record and aloud
    info = _finish({"edgetpu_ops_before": mapped}, Best(0.1, ["model.2"], tpu_side), tpu_side, 0.5, True,
                   lines.append)
    assert info["edgetpu_ops_after"] < mapped and "moved from the Edge TPU to the CPU" in info["edgetpu_note"]
    assert any(line.startswith("accuracy control: WARNING:") for line in lines)


def test_one_to_one_outputs_take_the_whole_calibration_range(float26):
    """A moving average of per-image maxima clips YOLO26's confident class logits (most images' maxima are
    negative): its head outputs get the calibration set's whole range instead."""
    from edgeport.convert.tflite_ranges import apply_method, output_tail
    from edgeport.runtime.backends.litert import interpreter_class

    path, _, calibration, stats = float26
    ranged = apply_method(stats, path, calibration, "minmax", whole_outputs=True)
    runner = interpreter_class()[0](model_path=str(path)).get_signature_runner("serving_default")
    highest = np.max([runner(args_0=b)["output_1"].max() for b in calibration.batches("NHWC", "float32")])
    names = output_tail(path)
    classes = [n for n in names if n.startswith("serving_default_output_1")]
    assert len(names) == 12 and classes  # six outputs, each with the convolution output reshaped into it
    assert np.max(stats[classes[0]]["max"]) < highest <= np.max(ranged[classes[0]]["max"]) + 1e-6
    assert apply_method(stats, path, calibration, "minmax") is stats  # DFL heads keep the moving average


def test_edgetpu_search_keeps_float_blocks_after_the_tpu_part_and_names_them(float26, val16_data, tmp_path):
    """--max-drop below the full-integer drop: the search keeps ranked blocks in float, the written model's
    float ops are exactly theirs, the record and the Edge TPU analysis say so, and the TPU part is whole."""
    from edgeport.convert.edgetpu_compat import analyze
    from edgeport.convert.tflite_accuracy import find_blocks, op_scopes
    from edgeport.report.rows import calibration_text, edgetpu_text

    lines = []
    options = ConvertOptions(out_dir=tmp_path / "out", data=val16_data, imgsz=SIZE, calibration_images=4,
                             max_drop=1.0, check=False, progress=lines.append)
    artifact = convert(YOLO26N, "edgetpu", options)
    prov = artifact.record.provenance
    control = prov["accuracy_control"]
    assert control["drop_before"] > 1.0 and control["budget_from"] == "--max-drop"  # the search had to run
    kept = control["float_blocks"]
    assert kept and control["drop_after"] < control["drop_before"]
    assert artifact.path.name.endswith("_int8_cpu_float_blocks.tflite")
    blocks = find_blocks(float26[0], True)  # the same scopes as the converted graph's
    ops = list(zip(list_ops(artifact.path), op_scopes(artifact.path)))
    assert {scope for op, scope in ops if op.computes_in_float} == {s for b in kept for s in blocks[b]}
    assert len(kept) <= control["blocks_after_tpu_part"]
    report = analyze(artifact.path)
    float_at = [op.index for op, _ in ops if op.computes_in_float]
    assert float_at and min(float_at) > report.first_cpu_op.index  # all on the CPU side
    assert control["edgetpu_ops_after"] == control["edgetpu_ops_before"] == report.edgetpu_ops
    assert "edgetpu_note" not in control
    assert prov["edgetpu"]["float_blocks_on_cpu"] == len(kept)
    assert f"{len(kept)} blocks kept in float on the CPU" in edgetpu_text(prov)
    assert f"{len(kept)} blocks kept in float" in calibration_text(prov)
    assert any("ops still on the Edge TPU" in line for line in lines)
    assert any(line.startswith("edgetpu: int8 on the Edge TPU part;") for line in lines)
