"""Accuracy control of the onnx/tensorrt int8 QDQ models (edgeport/convert/onnx_accuracy.py) on the YOLO26
stand-in: blocks are ranked by what they cost, the ones kept in float really are float, and the artifact's
record names what stayed in float. The trained-sample drops are benchmarks/int8_accuracy.py.
"""

from __future__ import annotations

import shutil

import pytest

from edgeport.convert import ConvertOptions, convert


@pytest.fixture(scope="module")
def yolo26(request):
    """The YOLO26 stand-in (160 px), in the pytest cache folder tests/convert/test_families.py also uses."""
    from ultralytics import __version__

    from edgeport.convert.ultralytics_env import load_ultralytics
    from edgeport.sample.families import build_family_model

    load_ultralytics()
    folder = request.config.cache.mkpath("edgeport-families") if hasattr(request.config.cache, "mkpath") \
        else request.config.cache.mkdir("edgeport-families")
    path = folder / f"yolo26_160_u{__version__}_v2" / "weights" / "yolo26.pt"
    return path if path.is_file() else build_family_model("yolo26", path, imgsz=160)


def _dequantized(model) -> set[str]:
    return {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}


def test_blocks_are_ranked_by_cost_and_the_chosen_ones_keep_float_weights(yolo26, sample_data, tmp_path):
    """The ranking orders blocks by the output error each adds; requantizing with the top ones excluded
    leaves their convolutions on float weights and every other one on int8. (Whether that wins accuracy is
    measured in mAP by the search itself, on trained weights: benchmarks/int8_accuracy.py; on this
    untrained stand-in the relative output errors differ by 0.1 %, too little to assert.)"""
    from edgeport.calibration import build_calibration_set
    from edgeport.convert import onnx_quant
    from edgeport.convert.onnx_accuracy import blocks_of, output_error, rank_blocks
    from edgeport.convert import Job
    from edgeport.convert.onnx_target import float_model

    model, _, head = float_model(Job.of(yolo26, ConvertOptions(out_dir=tmp_path, imgsz=160)))
    assert head["head"] == "one2one" and head["attention"]
    reference = type(model)()
    reference.CopyFrom(model)
    calibration = build_calibration_set(sample_data, imgsz=160, n=6, progress=False)
    batches = [b for b, _ in zip(calibration.batches("NCHW", "float32"), range(4))]
    seen = {}

    def tune(quantized, requantize):
        blocks = blocks_of(reference, set(onnx_quant.head_tail_nodes(reference)))
        assert {"model.10", "one2one_cv2.0", "one2one_cv3.2"} <= set(blocks)  # attention block, both branches
        # rank the neck's attention and the head (the YOLO26 blocks measured as sensitive), to stay fast
        subset = {k: blocks[k] for k in ("model.10", "model.22", "one2one_cv2.0", "one2one_cv3.0")}
        ranking = rank_blocks(reference, subset, requantize, batches, lambda line: None)
        kept = [n for name, _ in ranking[:2] for n in subset[name]]
        seen.update(full=output_error(reference, quantized, batches), kept=kept,
                    partial=requantize(kept), ranking=ranking)
        return quantized

    onnx_quant.quantize_int8(model, calibration, onnx_quant.CPU, "minmax", tune=tune)
    partial = seen["partial"]
    assert output_error(reference, partial, batches) > 0 and seen["full"] > 0
    errors = [error for _, error in seen["ranking"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1]
    # a convolution kept in float has float weights (not the output of a DequantizeLinear); the others not
    dequantized = _dequantized(partial)
    convs = [n for n in partial.graph.node if n.op_type == "Conv"]
    kept = [n for n in convs if n.name in set(seen["kept"])]
    assert kept and all(n.input[1] not in dequantized for n in kept)
    assert all(n.input[1] in dequantized for n in convs if n.name not in set(seen["kept"]) and "model.1/" in n.name)


def test_one_to_one_int8_gets_accuracy_control_by_default_and_records_it(yolo26, sample_data, tmp_path):
    """A one-to-one head's int8 with a labelled DATA.yaml measures its drop against the 0.5-point default
    budget and records it (the stand-in's drop is 0: nothing needs to stay in float)."""
    data = tmp_path / "data"
    for sub in ("images/val", "labels/val"):
        (data / sub).mkdir(parents=True)
    root = sample_data.parent
    for image in sorted((root / "images" / "val").glob("*.jpg"))[:4]:
        shutil.copy(image, data / "images" / "val" / image.name)
        shutil.copy(root / "labels" / "val" / f"{image.stem}.txt", data / "labels" / "val" / f"{image.stem}.txt")
    shutil.copy(sample_data, data / "data.yaml")
    options = ConvertOptions(out_dir=tmp_path / "out", precision="int8", data=data / "data.yaml", imgsz=160,
                             calibration_images=4, calibration_method="minmax", check=False)
    control = convert(yolo26, "onnx", options).record.provenance["accuracy_control"]
    assert control["budget_points"] == 0.5 and control["budget_from"] == "default for one2one heads"
    assert control["reached"]
    assert control["drop_after"] == control["drop_before"] <= 0.5 and control["float_blocks"] == []


def test_budget_comes_from_max_drop_else_only_one_to_one_heads_get_one():
    from edgeport.convert.onnx_accuracy import budget_for

    assert budget_for(0.8, {"head": "dfl"}) == (0.8, "--max-drop")
    assert budget_for(None, {"head": "one2one-dfl"})[0] == 0.5
    assert budget_for(None, {"head": "dfl"}) == (None, "")


def test_report_calibration_cell_names_the_blocks_kept_in_float():
    from edgeport.report.rows import calibration_text

    prov = {"calibration_method": "percentile", "calibration_images": 80,
            "accuracy_control": {"float_blocks": ["model.16", "one2one_cv2.0", "one2one_cv3.0", "model.19", "x"]}}
    assert calibration_text(prov) == ("percentile, 80 images; 5 blocks kept in float (model.16, one2one_cv2.0, "
                                      "one2one_cv3.0, model.19, ...)")
    assert calibration_text({**prov, "accuracy_control": {"float_blocks": []}}) == "percentile, 80 images"
