"""Float ONNX target: static shape, opset >= 17, simplified, with a quantization-friendly head.

The Ultralytics head's one (1, 4 + nc, N) tensor becomes `boxes` (1, N, 4) xyxy normalized to
0..1 and `scores` (1, N, nc), and the metadata record is embedded in metadata_props.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.artifact import ArtifactRecord, Decode, Preprocess, TensorSpec
from edgeport.convert.base import Artifact, ConvertOptions, batch_suffix
from edgeport.convert.job import Job, write_record
from edgeport.convert.provenance import provenance
from edgeport.errors import ConversionError, MissingDependencyError, UnsupportedModelError


def export_ultralytics_onnx(weights: Path, work_dir: Path, imgsz: int | None, opset: int) -> Path:
    """Export an Ultralytics .pt to a plain static ONNX in work_dir with Ultralytics itself: its raw
    one-to-many head (1, 4 + nc, N) (Ultralytics' `nms=None`; `nms=False` would give the NMS-free
    (1, 300, 6) head of YOLOv10/YOLO26)."""
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    local = work_dir / weights.name
    shutil.copy(weights, local)  # Ultralytics writes beside the weights; keep the source untouched
    model = YOLO(str(local))
    if getattr(model, "task", "detect") != "detect":
        raise UnsupportedModelError(f"{weights}: task {model.task!r} is not supported; only detection models")
    size = imgsz or int(model.model.args.get("imgsz", 640))
    try:
        out = model.export(format="onnx", imgsz=size, opset=opset, simplify=True, dynamic=False, batch=1,
                           nms=None, half=False, device="cpu", verbose=False)
    except Exception as exc:
        raise ConversionError(f"onnx: Ultralytics export of {weights.name} failed: {exc}") from exc
    return Path(out)


def _ultralytics_meta(model) -> dict[str, object]:
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" not in meta:
        raise UnsupportedModelError("the ONNX file has no Ultralytics metadata (names, imgsz); export it with "
                                    "Ultralytics or pass the .pt")
    names = ast.literal_eval(meta["names"])
    return {"names": [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names),
            "task": meta.get("task", "detect")}


def split_head(model, nc: int):
    """Rewrite the graph output (1, 4 + nc, N) into boxes (1, N, 4) normalized xyxy and scores (1, N, nc)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if len(graph.output) != 1:
        raise UnsupportedModelError(f"expected one output (1, 4 + nc, N), found {len(graph.output)} outputs")
    out = graph.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(dims) == 3 and dims[2] == 6 and dims[1] != 4 + nc:
        raise UnsupportedModelError(f"output {out.name} has shape {dims}: an NMS-free end-to-end export, its top-k "
                                    "is inside the graph; convert the .pt instead (edgeport cuts the head itself)")
    if len(dims) != 3 or dims[1] != 4 + nc:
        raise UnsupportedModelError(f"output {out.name} has shape {dims}, expected [1, {4 + nc}, N] "
                                    "(embedded-NMS exports are not supported; convert the .pt instead)")
    anchors = dims[2]
    in_dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    height, width = in_dims[2], in_dims[3]
    # xyxy = xywh @ M, divided by the input size: one MatMul the quantizers handle well
    matrix = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], dtype=np.float32)
    matrix /= np.array([width, height, width, height], dtype=np.float32)
    graph.initializer.extend([
        numpy_helper.from_array(matrix, "edgeport_xywh_to_xyxy_norm"),
        numpy_helper.from_array(np.array([4, nc], dtype=np.int64), "edgeport_split_sizes"),
    ])
    graph.node.extend([
        helper.make_node("Transpose", [out.name], ["edgeport_anchors_last"], perm=[0, 2, 1]),
        helper.make_node("Split", ["edgeport_anchors_last", "edgeport_split_sizes"],
                         ["edgeport_xywh", "scores"], axis=2),
        helper.make_node("MatMul", ["edgeport_xywh", "edgeport_xyxy_norm"], ["boxes"]),
    ])
    graph.node[-1].input[1] = "edgeport_xywh_to_xyxy_norm"
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, anchors, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, anchors, nc]),
    ])
    onnx.checker.check_model(model)
    return model


PRECISIONS = ("fp32", "fp16", "int8")
SUFFIX = {"fp32": "", "fp16": "_fp16", "int8": "_int8"}


def check_precision(target: str, options: ConvertOptions) -> None:
    """Raise ConversionError, before any work, for a precision `target` lacks or int8 without data."""
    if options.precision not in PRECISIONS:
        raise ConversionError(f"{target}: unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if options.precision == "int8" and options.data is None:
        raise ConversionError(f"{target}: --int8 needs representative images: pass --data DATA.yaml, an image "
                              "folder or a video")


def export_source_onnx(source, work_dir: Path, opset: int, batch: int = 1) -> Path:
    """torch.onnx export of the SourceModel's decoded graph (boxes, scores) to work_dir/decoded.onnx, with
    a fixed batch, or a dynamic batch dimension named "batch" when `batch` is 0."""
    import torch

    out = work_dir / "decoded.onnx"
    size = source.imgsz
    axes = {name: {0: "batch"} for name in ("images", "boxes", "scores")} if batch == 0 else None
    try:
        with torch.no_grad():
            torch.onnx.export(source.decoded(), (torch.zeros(max(batch, 1), 3, size, size),), str(out),
                              opset_version=opset, input_names=["images"], output_names=["boxes", "scores"],
                              do_constant_folding=True, dynamic_axes=axes, dynamo=False)
    except Exception as exc:
        raise ConversionError(f"onnx: torch.onnx export of {source.path.name} failed: "
                              f"{str(exc).splitlines()[0]}") from exc
    return out


def float_model(job: Job):
    """The float split-head ModelProto of the job's .pt (through its `SourceModel`) or Ultralytics ONNX;
    returns (model, names, head) with head the SourceModel's description."""
    try:
        import onnx
        import onnxslim
    except ImportError as exc:
        raise MissingDependencyError("onnx / onnxslim", "convert") from exc
    source, options, say = job.source, job.options, job.say
    head = {"family": "unknown", "head": "dfl"}
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-") as tmp:
        if source.suffix.lower() == ".pt":
            loaded = job.model()
            head = loaded.describe()
            say(f"onnx: exporting {source.name} ({loaded.family}, {loaded.head_kind} head, opset {options.opset})")
            model = onnx.load(str(export_source_onnx(loaded, Path(tmp), options.opset, options.batch)))
            names = loaded.names
        else:
            if options.batch != 1:
                raise UnsupportedModelError(f"{source}: --batch needs the Ultralytics .pt (an exported ONNX has "
                                            "its batch fixed in the graph); convert the .pt instead")
            try:
                model = onnx.load(str(source))
            except Exception as exc:
                raise ConversionError(f"onnx: cannot read {source.name}: {exc}") from exc
            meta = _ultralytics_meta(model)
            if meta["task"] != "detect":
                raise UnsupportedModelError(f"{source}: task {meta['task']!r} is not supported; only 'detect'")
            names = tuple(str(n) for n in meta["names"])
            say("onnx: splitting the head into boxes (normalized xyxy) and scores")
            model = split_head(model, len(names))
        if model.opset_import[0].version < 17:
            raise UnsupportedModelError(f"{source}: opset {model.opset_import[0].version} < 17; export with opset>=17")
        model = onnxslim.slim(model)
    in_dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if any(d <= 0 for d in in_dims[1:]) or (in_dims[0] <= 0 and options.batch != 0):
        raise UnsupportedModelError(f"{source}: dynamic input shape {in_dims}; export with a static shape")
    return model, names, head


def _graph_spec(value_info) -> TensorSpec:
    """TensorSpec of a graph input/output as the file declares it (name, shape with -1 for a dynamic
    dimension, as the runtime's backends read it, dtype)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    tensor = value_info.type.tensor_type
    return TensorSpec(value_info.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim),
                      np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)).name)


def split_record(model, names: tuple[str, ...], target: str, precision: str, prov: dict) -> ArtifactRecord:
    """The record of a split-head ONNX, its tensors' dtypes read from the graph itself (fp16 and QDQ
    models keep float32 input and outputs); prov["head"]["head"] other than "dfl" means top-k, no NMS."""
    inp = _graph_spec(model.graph.input[0])
    outputs = {o.name: _graph_spec(o) for o in model.graph.output}
    return ArtifactRecord(
        names=tuple(names), imgsz=(inp.shape[2], inp.shape[3]), layout="NCHW", inputs=(inp,),
        outputs=(outputs["boxes"], outputs["scores"]),
        preprocess=Preprocess(), decode=Decode(kind="split", boxes="boxes", scores="scores",
                                               box_format="xyxy", normalized=True,
                                               nms=prov.get("head", {}).get("head", "dfl") == "dfl"),
        target=target, precision=precision, provenance=prov)


def fp16_body(model, keep_float: list[str]):
    """The model with float16 weights and compute except the nodes in keep_float (the box decode and the
    score sigmoid: box pixels lose up to 0.25 px per step in float16 at 640); float32 input and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        return convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_float)
    except Exception as exc:
        raise ConversionError(f"onnx: float16 conversion failed: {str(exc).splitlines()[0]}") from exc


def reduced_precision(model, job: Job, target: str, profile, names=(), head=None):
    """fp16 or int8 (QDQ, `profile`) version of the float split-head model; returns (model, provenance).
    int8 with a labelled DATA.yaml and --max-drop (or a one-to-one head) keeps the most sensitive blocks in
    float until the drop holds (onnx_accuracy)."""
    from edgeport.convert import onnx_quant

    source, options, say = job.source, job.options, job.say
    if options.precision == "fp16":
        tail = onnx_quant.head_tail_nodes(model)
        say(f"{target}: converting weights and compute to float16; the {len(tail)} decode-tail nodes, input and "
            "outputs stay float32")
        return fp16_body(model, tail), {**provenance(source, options.command), "io": "float32",
                                        "compute": "float16", "ops_left_in_float": tail}
    size = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][2]
    calibration = job.calibration(size).at_batch(options.batch)  # a fixed --batch N graph is fed N images at a time
    method = options.calibration_method or "percentile"
    say(f"{target}: quantizing to int8 QDQ ({profile.name} profile, {method} calibration on {len(calibration)} images)")
    tune, control = _accuracy_tuner(model, job, target, calibration, names, head)
    quantized, tail, fallbacks = onnx_quant.quantize_int8(model, calibration, profile, method, tune=tune)
    prov = {**provenance(source, options.command, calibration.sha256),
            "calibration_method": f"{onnx_quant.METHOD_TEXT[method]} (onnxruntime)",
            "calibration_images": len(calibration), "io": "float32", "quantizer": profile.description,
            "ops_left_in_float": tail, "qdq": onnx_quant.qdq_summary(quantized), "calibration_fallbacks": fallbacks}
    if control:
        prov["accuracy_control"] = control
        prov["ops_left_in_float"] = tail + [n for n in control["float_nodes"] if n not in tail]
    if fallbacks:
        say(f"{target}: {len(fallbacks)} tensors had degenerate calibration statistics and got a fallback range "
            f"(named in the record): {', '.join(list(fallbacks)[:6])}")
    say(f"{target}: {len(tail)} decode-tail nodes kept in float (after the head's last convolutions)")
    return quantized, prov


def _accuracy_tuner(model, job: Job, target: str, calibration, names, head):
    """(tune callback for onnx_quant.quantize_int8 or None, dict the callback fills with what it did)."""
    from edgeport.convert.onnx_accuracy import accuracy_control, budget_for
    from edgeport.evaluate.dataset import is_data_yaml

    options, control = job.options, {}
    budget, why = budget_for(options.max_drop, head)
    if budget is None or not is_data_yaml(options.data):
        return None, control
    from edgeport.convert import onnx_quant

    float_copy = type(model)()
    float_copy.CopyFrom(model)
    skip = set(onnx_quant.head_tail_nodes(float_copy))

    def tune(quantized, requantize):
        chosen, info = accuracy_control(
            float_copy, quantized, requantize, calibration, options.data, budget,
            lambda m, precision: split_record(m, names, target, precision, {"head": head or {}}),
            job.say, skip)
        control.update(info, budget_from=why)
        return chosen

    return tune, control


def model_at_precision(job: Job, target: str, flavour: Any) -> tuple[Any, Any, dict]:
    """(ONNX model, class names, provenance) of the job's source at options.precision for `target`;
    `flavour` is the onnx_quant setting set (CPU or TENSORRT) used below fp32."""
    source, options = job.source, job.options
    check_precision(target, options)
    key = (flavour.name, options.precision, options.batch, options.imgsz, options.opset, options.max_drop,
           options.calibration_method, options.calibration_images)
    if options.precision != "fp32" and key in job.shared.models:  # onnx-web after onnx: no second quantization
        model, names, prov = job.shared.models[key]
        job.say(f"{target}: reusing this job's {options.precision} model ({flavour.name} profile)")
        copy = type(model)()
        copy.CopyFrom(model)
        return copy, names, prov
    model, names, head = float_model(job)
    if options.precision == "fp32":
        return model, names, {**provenance(source, options.command), "head": head}
    model, prov = reduced_precision(model, job, target, flavour, names, head)
    copy = type(model)()
    copy.CopyFrom(model)
    job.shared.models[key] = (copy, names, {**prov, "head": head})
    return model, names, {**prov, "head": head}


def convert_onnx(job: Job) -> Artifact:
    """Write DIR/<stem>.onnx (fp32), <stem>_fp16.onnx or <stem>_int8.onnx (static QDQ) with the
    record embedded; return the Artifact."""
    from edgeport.convert import onnx_quant

    options = job.options
    model, names, prov = model_at_precision(job, "onnx", onnx_quant.CPU)
    record = split_record(model, names, "onnx", options.precision, prov)
    stem = f"{options.name or job.source.stem}{SUFFIX[options.precision]}{batch_suffix(options.batch)}"
    out = options.out_dir / f"{stem}.onnx"
    write_record(out, record, onnx_model=model)
    job.say(f"onnx: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return Artifact(path=out, record=record)
