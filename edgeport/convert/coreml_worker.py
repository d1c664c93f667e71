"""The CoreML conversion process: `python -m edgeport.convert.coreml_worker convert JOB.json`.

coremltools segfaulted here when imported after tensorflow and then torch (docs/design.md, traps), so only
this process imports it, torch first. `inspect PATH...` prints what written packages hold (JSON, by path).
Progress lines go to stdout, everything else (coremltools' bars and warnings) to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


def say(line: str) -> None:
    print(line, flush=True)


def _import_coremltools():
    import logging

    import torch  # noqa: F401  (torch before coremltools: the order that does not crash)

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    from edgeport.convert.coreml_numpy_fix import install

    install()  # coremltools 9.0's `int` of a 1-element constant fails under numpy >= 2.4 (attention blocks)
    return ct


# --- conversion ---------------------------------------------------------------------------------


def _convert(ct, module, size: int, precision: str):
    import torch

    example = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        module(example)
        traced = torch.jit.trace(module, example, check_trace=False)
    target = ct.target.iOS17 if precision == "w8a8" else ct.target.iOS16
    return ct.convert(
        traced, convert_to="mlprogram", minimum_deployment_target=target,
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        inputs=[ct.ImageType(name="image", shape=(1, 3, size, size), scale=1 / 255, bias=[0, 0, 0],
                             color_layout=ct.colorlayout.RGB)],
        outputs=[ct.TensorType(name="coordinates", dtype=np.float32),
                 ct.TensorType(name="confidence", dtype=np.float32)]), target


def _compress(ct, model, precision: str):
    import coremltools.optimize.coreml as cto

    if precision == "int8w":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        return cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=op))
    if precision == "palette6":
        op = cto.OpPalettizerConfig(mode="uniform", nbits=6, granularity="per_tensor")
        return cto.palettize_weights(model, cto.OptimizationConfig(global_config=op))
    return model


def _set_metadata(model, record_json: str, names: list[str], description: str) -> None:
    model.author = "edgeport"
    model.short_description = description
    model.user_defined_metadata["edgeport"] = record_json
    model.user_defined_metadata["names"] = json.dumps(names)
    model.user_defined_metadata["com.apple.coreml.model.preview.type"] = "objectDetector"
    model.input_description["image"] = "RGB image, letterboxed to the model size (pixels scaled by 1/255 inside)"


def _nms_pipeline(ct, model, names: list[str], iou: float, conf: float):
    """model -> NonMaximumSuppression, as a pipeline Vision turns into VNRecognizedObjectObservation."""
    from coremltools.models import datatypes
    from coremltools.models.pipeline import Pipeline
    from coremltools.proto import Model_pb2

    spec = model.get_spec()
    nms_spec = Model_pb2.Model()
    nms_spec.specificationVersion = spec.specificationVersion
    sizes = {"confidence": len(names), "coordinates": 4}
    for feature in spec.description.output:  # NMS inputs: the model's fixed (N, k) outputs
        nms_spec.description.input.add().CopyFrom(feature)
        out = nms_spec.description.output.add()
        out.CopyFrom(feature)
        array = out.type.multiArrayType
        del array.shape[:]
        rows, cols = array.shapeRange.sizeRanges.add(), array.shapeRange.sizeRanges.add()
        rows.lowerBound, rows.upperBound = 0, -1
        cols.lowerBound = cols.upperBound = sizes[feature.name]
        nms_spec.description.input[-1].name = f"raw_{feature.name}"
    for name in ("iouThreshold", "confidenceThreshold"):
        item = nms_spec.description.input.add()
        item.name = name
        item.type.doubleType.SetInParent()
        item.type.isOptional = True
    nms = nms_spec.nonMaximumSuppression
    nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName = "raw_confidence", "raw_coordinates"
    nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName = "confidence", "coordinates"
    nms.iouThresholdInputFeatureName, nms.confidenceThresholdInputFeatureName = "iouThreshold", "confidenceThreshold"
    nms.iouThreshold, nms.confidenceThreshold = iou, conf
    nms.pickTop.perClass = True
    nms.stringClassLabels.vector.extend(names)
    for feature in spec.description.output:  # rename the detector's outputs to the NMS model's inputs
        ct.utils.rename_feature(spec, feature.name, f"raw_{feature.name}")
    renamed = ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)

    image = spec.description.input[0]
    pipeline = Pipeline(input_features=[("image", datatypes.Array(3, image.type.imageType.height,
                                                                  image.type.imageType.width)),
                                        ("iouThreshold", datatypes.Double()),
                                        ("confidenceThreshold", datatypes.Double())],
                        output_features=["confidence", "coordinates"])
    pipeline.add_model(renamed)
    pipeline.add_model(nms_spec)
    description = pipeline.spec.description
    description.input[0].CopyFrom(image)
    for i, name in ((1, "iouThreshold"), (2, "confidenceThreshold")):
        description.input[i].type.isOptional = True
    for i in range(2):
        description.output[i].CopyFrom(nms_spec.description.output[i])
    pipeline.spec.specificationVersion = spec.specificationVersion
    return ct.models.MLModel(pipeline.spec, weights_dir=model.weights_dir, skip_model_load=True)


# --- the proxy ----------------------------------------------------------------------------------


def _mil_program(ct, path: Path):
    """The MIL program of a written package (of its first model when it is a pipeline), and its spec."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    inner = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    return load_mil(inner, spec.specificationVersion, model.weights_dir), spec


def _stored_value(var) -> np.ndarray:
    """A weight as the package stores it, decompressed (constexpr ops) to float32."""
    op = var.op
    value = var.val if op.op_type == "const" else op.materialized_val_inference()
    return np.asarray(value, dtype=np.float32)


def load_package_weights(ct, path: Path, convs) -> int:
    """Copy the conv weights and biases stored in the package at `path` (decompressed) into the torch
    convs (same order as the program runs them); return how many were copied. Raises
    RuntimeError when the two disagree in count or shape."""
    import torch

    program, _ = _mil_program(ct, path)
    ops = [op for op in program.functions["main"].operations if op.op_type == "conv"]
    if len(ops) != len(convs):
        raise RuntimeError(f"{len(ops)} conv ops in the package, {len(convs)} in the torch model")
    with torch.no_grad():
        for op, conv in zip(ops, convs):
            weight = _stored_value(op.weight)
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise RuntimeError(f"conv {op.name}: weight {weight.shape} in the package, "
                                   f"{tuple(conv.weight.shape)} in torch")
            conv.weight.copy_(torch.from_numpy(weight))
            if op.bias is not None and conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(_stored_value(op.bias)))
    return len(ops)


def _write_onnx_record(path: Path, record) -> None:
    import onnx

    from edgeport.artifact import METADATA_KEY

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in {METADATA_KEY: record.to_json(), "names": json.dumps(list(record.names))}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


# --- the job ------------------------------------------------------------------------------------

NMS_ON_NMS_FREE = ("the head is NMS-free (one-to-one), so the pipeline's NonMaximumSuppression only drops a "
                   "same-class box overlapping a better one above the IoU threshold, which such a head rarely "
                   "emits; it is kept because Vision returns labelled VNRecognizedObjectObservations only "
                   "from a model ending in NonMaximumSuppression")


def head_provenance(one_to_one: bool, reg_max: int) -> dict[str, Any]:
    """What the package's coordinates/confidence are computed from, for the record."""
    branch = "one-to-one" if one_to_one else "one-to-many"
    boxes = ("box distances used as given (no DFL, reg_max 1)" if reg_max == 1
             else f"box distances as the expectation over {reg_max} DFL bins")
    return {"branch": branch, "reg_max": reg_max, "nms_free": one_to_one,
            "decoded": f"the head's {branch} branch{' (NMS-free)' if one_to_one else ''}: {boxes}, "
                       "boxes = anchor -+ distance x stride, sigmoid class scores"}


def _write_nms_pipeline(ct, model, job: dict[str, Any], out: Path, names, size: int, anchors: int,
                        provenance: dict[str, Any]) -> list[str]:
    """Write <package>_nms.mlpackage (model -> NonMaximumSuppression) and its sidecar; return both paths."""
    from edgeport.artifact import write_sidecar
    from edgeport.convert.coreml_target import package_record

    precision = job["precision"]
    nms_out = out.with_name(out.name.replace(".mlpackage", "_nms.mlpackage"))
    pipeline = _nms_pipeline(ct, model, list(names), job["nms"]["iou"], job["nms"]["conf"])
    selection = "top-k (no NMS)" if provenance["head"]["nms_free"] else "NMS"
    proxy = {**provenance["proxy"], "label": provenance["proxy"]["label"] + f"; {selection} by edgeport's runtime, "
             "not the pipeline's NonMaximumSuppression"}
    nms_prov = {**provenance, "proxy": proxy}
    if provenance["head"]["nms_free"]:
        nms_prov["nms_note"] = NMS_ON_NMS_FREE
        say(f"coreml: --nms on an NMS-free head: {NMS_ON_NMS_FREE}")
    nms_record = package_record(names, size, anchors, precision, nms_prov, nms=job["nms"],
                                one_to_one=provenance["head"]["nms_free"])
    _set_metadata(pipeline, nms_record.to_json(), list(names),
                  f"{Path(job['source']).stem} detector with NMS ({precision}), edgeport")
    pipeline.save(str(nms_out))
    say(f"coreml: wrote {nms_out} (pipeline: model -> NonMaximumSuppression, for Vision)")
    return [str(nms_out), str(write_sidecar(nms_out, nms_record))]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Write the package(s) and the proxy a job asks for; return what was written."""
    import copy

    import torch

    from edgeport.artifact import write_sidecar
    from edgeport.convert.coreml_target import PROXY_LABELS, package_record, proxy_record
    from edgeport.convert.coreml_torch import (
        VisionDetector,
        convs_in_order,
        export_onnx,
        float_modules,
        load_detector,
        quantize_activations,
    )

    ct = _import_coremltools()
    precision = job["precision"]
    out, proxy_path = Path(job["out"]), Path(job["proxy"])
    source, body, decode = load_detector(Path(job["source"]), job.get("imgsz"))
    names, size = source.names, source.imgsz
    float_body = None if precision == "w8a8" else copy.deepcopy(body)  # the proxy's, before any conversion
    provenance = {**job["provenance"], "tools": {**job["provenance"].get("tools", {}), "coremltools": ct.__version__},
                  "head": head_provenance(source.one_to_one, source.reg_max)}
    say(f"coreml: the package decodes {provenance['head']['decoded']}")
    fake_quant = None
    if precision == "w8a8":
        frames = np.load(job["calibration"])["frames"]
        say(f"coreml: quantizing weights and activations to int8 in torch (coremltools.optimize.torch), "
            f"calibrating on {len(frames)} images")
        kept = float_modules(body)
        provenance["float_modules"] = {"modules": kept, "why": "the detection head and the block feeding its "
                                       "stride-8 level stay in float (weights and activations): int8 there cost "
                                       "most of the accuracy drop"}
        say(f"coreml: {', '.join(kept)} (the detection head and its stride-8 input block) stay in float")
        fake_quant, body = quantize_activations(body, frames, say)
    say(f"coreml: converting {Path(job['source']).name} to an ML Program ({size}x{size}, image input, "
        f"{'fp32' if precision == 'fp32' else 'fp16'} compute)")
    model, target = _convert(ct, VisionDetector(body, decode).eval(), size, precision)
    if precision in ("int8w", "palette6"):
        say(f"coreml: compressing weights ({'int8 per-channel linear' if precision == 'int8w' else '6-bit palette'})")
        model = _compress(ct, model, precision)
    anchors = int(decode.scales.shape[0])
    label = PROXY_LABELS[precision] + ("; the same one-to-one (NMS-free) head and decode as the package"
                                       if provenance["head"]["nms_free"] else "")
    provenance.update({"minimum_deployment_target": target.name, "proxy": {"artifact": proxy_path.name,
                                                                            "label": label}})
    record = package_record(names, size, anchors, precision, provenance, one_to_one=source.one_to_one)
    _set_metadata(model, record.to_json(), list(names), f"{Path(job['source']).stem} detector ({precision}), edgeport")
    model.save(str(out))
    write_sidecar(out, record)
    say(f"coreml: wrote {out}")
    written = {"artifact": str(out), "record": record.to_dict(), "extra_files": []}

    if job.get("nms"):
        written["extra_files"] += _write_nms_pipeline(ct, model, job, out, names, size, anchors, provenance)

    say(f"coreml: writing the proxy {proxy_path.name} ({PROXY_LABELS[precision]})")
    if fake_quant is not None:
        export_onnx(VisionDetector(fake_quant, decode).eval(), proxy_path, size)
    else:
        proxy_model = VisionDetector(float_body, decode).eval()
        copied = load_package_weights(ct, out, convs_in_order(proxy_model, torch.zeros(1, 3, size, size)))
        say(f"coreml: proxy holds the {copied} conv weights read back from {out.name}")
        export_onnx(proxy_model, proxy_path, size)
    _write_onnx_record(proxy_path, proxy_record(record, out.name))
    written["extra_files"] += [str(proxy_path)]
    return written


# --- inspect ------------------------------------------------------------------------------------


def _feature(feature) -> dict[str, Any]:
    kind = feature.type.WhichOneof("Type")
    info: dict[str, Any] = {"name": feature.name, "kind": kind, "optional": feature.type.isOptional}
    if kind == "imageType":
        image = feature.type.imageType
        info.update(width=image.width, height=image.height,
                    color=type(image).ColorSpace.Name(image.colorSpace))
    elif kind == "multiArrayType":
        array = feature.type.multiArrayType
        info.update(shape=list(array.shape), dtype=type(array).ArrayDataType.Name(array.dataType),
                    shape_range=[[r.lowerBound, r.upperBound] for r in array.shapeRange.sizeRanges])
    return info


def _weights(program) -> dict[str, int]:
    """How the conv weights are stored: 'const:fp16', 'constexpr_affine_dequantize:int8', ..."""
    counts: Counter = Counter()
    for op in program.functions["main"].operations:
        if op.op_type != "conv":
            continue
        producer = op.weight.op
        if producer.op_type == "const":
            counts[f"const:{np.asarray(op.weight.val).dtype}"] += 1
        else:
            stored = next((v for k, v in producer.inputs.items() if k in ("quantized_data", "data", "indices")), None)
            counts[f"{producer.op_type}:{'?' if stored is None else np.asarray(stored.val).dtype}"] += 1
    return dict(counts)


def _image_scale(program) -> float | None:
    """The constant the program first multiplies its image input by (the ImageType scale)."""
    function = program.functions["main"]
    sources = {id(next(iter(function.inputs.values())))}  # the image, and casts of it
    for op in function.operations:
        if op.op_type == "cast" and id(op.x) in sources:
            sources.add(id(op.outputs[0]))
        elif op.op_type == "mul" and (id(op.x) in sources or id(op.y) in sources):
            other = op.y if id(op.x) in sources else op.x
            return float(np.asarray(other.val).ravel()[0])
    return None


def inspect(path: Path) -> dict[str, Any]:
    """What a written .mlpackage holds: type, inputs, outputs, metadata, weight storage, NMS settings."""
    ct = _import_coremltools()
    program, spec = _mil_program(ct, path)
    kind = spec.WhichOneof("Type")
    info: dict[str, Any] = {
        "type": kind, "specification_version": spec.specificationVersion,
        "inputs": [_feature(f) for f in spec.description.input],
        "outputs": [_feature(f) for f in spec.description.output],
        "user_defined": dict(spec.description.metadata.userDefined),
        "author": spec.description.metadata.author,
        "weights": _weights(program), "image_scale": _image_scale(program),
        "ops": dict(Counter(op.op_type for op in program.functions["main"].operations)),
    }
    if kind == "pipeline":
        info["models"] = [m.WhichOneof("Type") for m in spec.pipeline.models]
        nms = spec.pipeline.models[-1].nonMaximumSuppression
        info["nms"] = {"iou_threshold": nms.iouThreshold, "confidence_threshold": nms.confidenceThreshold,
                       "labels": list(nms.stringClassLabels.vector), "per_class": nms.pickTop.perClass,
                       "inputs": [_feature(f) for f in spec.pipeline.models[-1].description.input],
                       "model_outputs": [_feature(f) for f in spec.pipeline.models[0].description.output]}
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TQDM_DISABLE", "1")
    if len(argv) == 2 and argv[0] == "convert":
        from edgeport.errors import EdgeportError

        job = json.loads(Path(argv[1]).read_text())
        try:
            result = run_job(job)
        except EdgeportError as exc:  # the parent raises the same class with the same message
            result = {"error": type(exc).__name__, "message": str(exc)}
        Path(job["result"]).write_text(json.dumps(result))
        return 0
    if len(argv) >= 2 and argv[0] == "inspect":
        print(json.dumps({path: inspect(Path(path)) for path in argv[1:]}))
        return 0
    print("usage: python -m edgeport.convert.coreml_worker convert JOB.json | inspect PATH.mlpackage...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
