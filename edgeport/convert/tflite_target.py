"""TFLite target: fp32, fp16 (weights), dynamic-range int8 and full-integer int8, NHWC input.

Route: torch -> litert-torch (float flatbuffer) -> ai-edge-quantizer (no TensorFlow). The graph
ends before the box decode: per level it outputs the raw box logits (DFL bins, or YOLO26's distances)
and class logits, so an integer model never holds pixel coordinates and scores in one int8 scale;
the runtime decodes in float (decode kind "dfl"; top-k instead of NMS for one-to-one heads).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path


from edgeport.artifact import ArtifactRecord, Decode, Preprocess, TensorSpec, sidecar_path
from edgeport.convert.base import Artifact, ConvertOptions, batch_suffix
from edgeport.convert.job import Job, write_record
from edgeport.convert.options import TfliteOptions
from edgeport.convert.provenance import provenance
from edgeport.convert.tflite_int8 import calibration_stats, quantize_float_ops, quantize_int8
from edgeport.errors import ConversionError, MissingDependencyError, UnsupportedModelError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
PERCENTILE_TEXT = "99.99th, mean over calibration images"
IO_TYPES = ("uint8", "int8", "float")


def _signature_io(path: Path) -> tuple[TensorSpec, list[TensorSpec]]:
    """The input spec, and the output specs in the order the torch module returned them
    (signature output_0, output_1, ...)."""
    from edgeport.runtime.backends.litert import interpreter_class, tensor_spec

    interpreter_cls, _, _ = interpreter_class()
    interpreter = interpreter_cls(model_path=str(path))
    interpreter.allocate_tensors()
    signature = interpreter._get_full_signature_list()["serving_default"]["outputs"]
    by_index = {d["index"]: d for d in interpreter.get_output_details()}
    ordered = sorted(signature.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[-1]))
    return (tensor_spec(interpreter.get_input_details()[0]),
            [tensor_spec(by_index[index]) for _, index in ordered])


def build_record(path: Path, source, precision: str, prov: dict) -> ArtifactRecord:
    """The record of a raw-head .tflite of SourceModel `source`, read from the file itself (tensor names,
    dtypes, quantization); one-to-one heads decode with top-k, no NMS."""
    inp, outputs = _signature_io(path)
    size = source.imgsz
    levels = tuple({"box": outputs[2 * i].name, "cls": outputs[2 * i + 1].name, "stride": stride,
                    "grid": [size // stride, size // stride]} for i, stride in enumerate(source.strides))
    return ArtifactRecord(
        names=source.names, imgsz=(size, size), layout="NHWC", inputs=(inp,),
        outputs=tuple(outputs), preprocess=Preprocess(),
        decode=Decode(kind="dfl", boxes="", scores="", box_format="ltrb", normalized=False, levels=levels,
                      reg_max=source.reg_max, nms=not source.one_to_one),
        target="tflite", precision=precision, provenance={**prov, "head": source.describe()})


def check_options(source: Path, options: ConvertOptions, own: TfliteOptions) -> ConvertOptions:
    """Refuse, before any work, what this target cannot do; return the options with defaults filled in."""
    if options.calibration_method is None:
        options = replace(options, calibration_method="minmax")
    precision, io = options.precision, own.io
    if precision not in PRECISIONS:
        raise ConversionError(f"tflite: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if io not in IO_TYPES:
        raise ConversionError(f"tflite: unknown --io {io!r}; choose one of {', '.join(IO_TYPES)}")
    if source.suffix.lower() != ".pt":
        raise UnsupportedModelError(f"{source}: the tflite target converts from the Ultralytics .pt (PyTorch) model")
    from edgeport.convert.tflite_ranges import METHODS

    if options.calibration_method not in METHODS:
        raise ConversionError(f"tflite: calibration method {options.calibration_method!r} is not available; "
                              f"this target calibrates with: {', '.join(METHODS)}")
    from edgeport.evaluate.dataset import is_data_yaml

    if own.fallback and options.max_drop is not None and not is_data_yaml(options.data):
        raise ConversionError("tflite: --fallback measures accuracy and needs a labelled DATA.yaml as --data")
    if precision == "int8" and options.data is None:
        raise ConversionError("tflite: --int8 needs representative images: pass --data DATA.yaml, an image folder "
                              "or a video")
    return options


def export_float(loaded, float_path: Path, batch: int = 1) -> None:
    """The float flatbuffer of the SourceModel's raw head (NHWC input, `batch` images), written by litert-torch."""
    try:
        import litert_torch
        import torch
    except ImportError as exc:
        raise MissingDependencyError("litert-torch", "convert") from exc
    size = loaded.imgsz
    try:
        with torch.no_grad():
            litert_torch.convert(loaded.raw_head("NHWC"), (torch.zeros(batch, size, size, 3),)).export(str(float_path))
    except Exception as exc:
        raise ConversionError(f"tflite: litert-torch conversion failed: {str(exc).splitlines()[0]}") from exc


def quantize(float_path: Path, out: Path, loaded, calibration, options: ConvertOptions, own: TfliteOptions,
             prov: dict, say, calibrated: Path | None = None) -> None:
    """Write `out` at options.precision from the float flatbuffer (int8 at own.io: calibrated, optional int16
    fallback). `calibrated`: the batch-1 float flatbuffer whose ranges a batch-N `float_path` takes (default:
    itself)."""
    calibrated = calibrated or float_path
    precision, io = options.precision, own.io
    try:
        if precision == "fp32":
            out.write_bytes(float_path.read_bytes())
        elif precision in ("fp16", "dynamic"):
            say(f"tflite: quantizing ({precision}) with ai-edge-quantizer")
            quantize_float_ops(float_path, out, precision)
        else:
            say(f"tflite: quantizing (int8, I/O {io}) with ai-edge-quantizer")
            from edgeport.calibration.ranges import Fallbacks
            from edgeport.convert.tflite_ranges import OUTPUT_RANGES, apply_method

            fallbacks = Fallbacks()
            stats = apply_method(calibration_stats(calibrated, calibration), calibrated, calibration,
                                 options.calibration_method, fallbacks, whole_outputs=loaded.one_to_one)
            prov["calibration_fallbacks"] = fallbacks.provenance()
            if loaded.one_to_one:
                prov["output_ranges"] = OUTPUT_RANGES
            if fallbacks.reasons:
                say(f"tflite: {len(fallbacks.reasons)} tensors had degenerate calibration statistics and got a "
                    f"fallback range (named in the record): {', '.join(list(fallbacks.reasons)[:6])}")
            qt = quantize_int8(float_path, out, io, stats)
            if own.fallback and options.max_drop is not None:
                from edgeport.convert.fallback import accuracy_fallback

                def record_for(path: Path, label: str) -> ArtifactRecord:
                    return build_record(path, loaded, label, prov)

                prov["fallback"] = accuracy_fallback(float_path, out, io, stats, qt,
                                                     calibration.at_batch(options.batch), options, record_for, say)
            else:
                control = float_block_control(float_path, out, loaded, calibration, options, own, stats, prov, say)
                if control:
                    prov["accuracy_control"] = control
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"tflite: quantization failed: {str(exc).splitlines()[0]}") from exc


def float_block_control(float_path: Path, out: Path, loaded, calibration, options: ConvertOptions,
                        own: TfliteOptions, stats: dict, prov: dict, say) -> dict:
    """Accuracy control of the int8 `out` (edgeport.convert.tflite_accuracy) when a budget applies: --max-drop,
    or the default of one-to-one heads, with a labelled DATA.yaml; {} when none does."""
    from edgeport.convert.onnx_accuracy import budget_for
    from edgeport.evaluate.dataset import is_data_yaml

    budget, why = budget_for(options.max_drop, loaded.describe())
    if budget is None:
        return {}
    if not is_data_yaml(options.data):
        say(f"tflite: no accuracy control ({why}: {budget} points): it measures mAP and needs a labelled DATA.yaml "
            "as --data")
        return {}
    from edgeport.convert.tflite_accuracy import accuracy_control

    def record_for(path: Path, label: str) -> ArtifactRecord:
        return build_record(path, loaded, label, prov)

    info = accuracy_control(float_path, out, own.io, stats, loaded, calibration.at_batch(options.batch),
                            options.data, budget, record_for, say, edgetpu=own.edgetpu)
    return {**info, "budget_from": why}


def describe_integer(record: ArtifactRecord, prov: dict, io: str) -> str:
    """One line on how integer the int8 model is (full-integer, ops left in float, int16 layers)."""
    inp = record.inputs[0]
    if io == "float":
        return ("tflite: int8 inside with float32 input and output (QUANTIZE/DEQUANTIZE at the boundary); not "
                "full-integer, not Edge TPU ready")
    kept = prov.get("accuracy_control", {}).get("float_blocks")
    if kept:
        return (f"tflite: int8 with {len(kept)} blocks kept in float for accuracy ({', '.join(kept[:8])}"
                f"{', ...' if len(kept) > 8 else ''}; {len(prov['ops_left_in_float'])} ops compute in float, "
                f"QUANTIZE/DEQUANTIZE around them): integer I/O, not full-integer")
    if prov["ops_left_in_float"]:
        return f"tflite: {len(prov['ops_left_in_float'])} ops left in float: {', '.join(prov['ops_left_in_float'][:12])}"
    if prov.get("fallback", {}).get("int16_layers"):
        return (f"tflite: integer, but {len(prov['fallback']['int16_layers'])} layers keep int16 activations: "
                "not fully Edge TPU mapped")
    return f"tflite: full-integer: every op int8, input {inp.dtype} (scale {inp.scale:.6f}, zero point {inp.zero_point})"


def convert_tflite(job: Job) -> Artifact:
    """Write DIR/<stem>_<precision>.tflite and its sidecar record; return the Artifact."""
    source, say, own = job.source, job.say, job.target_options
    options = check_options(source, job.options, own)
    precision, io = options.precision, own.io
    loaded = job.model()  # conv+bn fused, as Ultralytics' export does
    calibration = job.calibration(loaded.imgsz) if precision == "int8" else None
    suffix = {"fp32": "float32", "fp16": "float16", "dynamic": "dynamic_int8",
              "int8": "full_integer_int8" if io != "float" else "int8_float_io"}[precision]
    out = options.out_dir / f"{options.name or source.stem}_{suffix}{batch_suffix(options.batch)}.tflite"
    prov = {**provenance(source, options.command, calibration.sha256 if calibration else None),
            "calibration_method": (f"percentile ({PERCENTILE_TEXT})" if options.calibration_method == "percentile"
                                   else "minmax (moving average, ai-edge-quantizer)") if calibration else "none",
            "calibration_images": len(calibration) if calibration else 0,
            "io": io if precision == "int8" else "float"}
    os.environ.setdefault("TQDM_DISABLE", "1")  # ai-edge-quantizer's per-tensor bars would flood logs
    with tempfile.TemporaryDirectory(prefix="edgeport-tflite-") as tmp:
        float_path = Path(tmp) / "float.tflite"
        say(f"tflite: converting {source.name} with litert-torch (NHWC {options.batch}x{loaded.imgsz}x"
            f"{loaded.imgsz}, "
            f"{loaded.family}, raw {loaded.head_kind} head cut before the decode)")
        export_float(loaded, float_path, options.batch)
        calibrated = float_path
        if precision == "int8" and options.batch > 1:  # ranges from the batch-1 graph: the same as at batch 1
            calibrated = Path(tmp) / "float_batch1.tflite"
            say("tflite: calibrating on the batch-1 graph (same tensor names), then quantizing the batch-N graph")
            export_float(loaded, calibrated, 1)
        quantize(float_path, out, loaded, calibration, options, own, prov, say, calibrated)
    if prov.get("accuracy_control", {}).get("float_blocks"):  # not full-integer any more: the name says so
        tail = "int8_cpu_float_blocks" if own.edgetpu else "int8_float_blocks"  # --target all writes both
        mixed = out.with_name(out.name.replace("full_integer_int8", tail))
        sidecar_path(out).unlink(missing_ok=True)
        out = out.replace(mixed)
    from edgeport.convert.tflite_ops import float_ops

    prov["ops_left_in_float"] = [f"{op.index}:{op.name}" for op in float_ops(out)] if precision == "int8" else []
    record = build_record(out, loaded, precision, prov)
    write_record(out, record)
    if precision == "int8":
        say(describe_integer(record, prov, io))
    say(f"tflite: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return Artifact(path=out, record=record)
