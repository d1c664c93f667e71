"""Frigate NVR config for an edgeport artifact: the `detectors:` + `model:` block, the labels file and,
where Frigate's post-processing needs another output layout, the model rewritten to that layout.

Frigate's `yolo-generic` model type (openvino, onnx, rknn detectors) reads ONE output, (1, 4 + nc, N) or
(1, N, 4 + nc): centre x, centre y, width, height in input pixels, then the class scores; it runs its own
NMS. edgeport's split head (normalized xyxy `boxes`, `scores`) is joined back into that tensor in a copy
`<stem>_frigate/<stem>_frigate.xml|.onnx`, written with `frigate.yml` and `labels.txt` in one folder; for rknn
the copy is a second .rknn built from that ONNX (edgeport.convert.frigate_rknn builds and checks it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeport.artifact import ArtifactRecord, Decode, TensorSpec, write_sidecar
from edgeport.errors import ConversionError

MODEL_CACHE = "/config/model_cache"  # where Frigate's docs keep custom models inside its container
OUTPUT = "output0"
# detector key in `detectors:`, Frigate detector type, device line (None: no device key)
DETECTORS = {"openvino": ("ov", "openvino", "CPU"), "onnx": ("onnx", "onnx", None),
             "tensorrt": ("onnx", "onnx", None), "rknn": ("rknn", "rknn", None)}
DEVICE_COMMENT = {"openvino": "CPU, GPU or NPU (OpenVINO device names)",
                  "rknn": "num_cores: 0 lets the NPU driver choose; 1-3 on an RK3588 (Frigate's core mask 2**n - 1)",
                  "tensorrt": "Frigate's -tensorrt image runs .onnx through TensorRT itself"}
WHY_NOT = {
    "edgetpu": "Frigate's edgetpu detector (model_type yolo-generic) reads two tensors over all levels, "
               "(1, N, 64) DFL box logits and (1, N, nc) class logits; edgeport's Edge TPU model keeps one pair "
               "per level (six int8 tensors, each with its own scale), and YOLO26 has no DFL (4 box channels), "
               "so Frigate's decode cannot read it. Run the edgeport daemon on the Coral, or give Frigate the "
               "openvino/onnx artifact.",
}


def xyxy_norm_to_xywh_pixels(width: int, height: int) -> np.ndarray:
    """(4, 4) matrix: normalized x1 y1 x2 y2 (row vector) @ M = centre x, centre y, w, h in input pixels."""
    return np.array([[width / 2, 0, -width, 0], [0, height / 2, 0, -height],
                     [width / 2, 0, width, 0], [0, height / 2, 0, height]], dtype=np.float32)


def frigate_record(record: ArtifactRecord, model_spec) -> ArtifactRecord:
    """The record of the Frigate-layout copy: one (1, 4 + nc, N) output, xywh in pixels."""
    return replace(record, outputs=(model_spec,), artifact_sha256=None,
                   decode=Decode(kind="ultralytics", boxes=OUTPUT, scores=OUTPUT, box_format="xywh", normalized=False,
                                 nms=record.decode.nms),
                   provenance={**record.provenance, "frigate_layout": "boxes and scores joined into one (1, 4 + nc, "
                               "N) tensor (xywh in input pixels) for Frigate's yolo-generic post-processing"})


def openvino_layout(xml: Path, record: ArtifactRecord, out: Path) -> ArtifactRecord:
    """Write the IR at `xml` with its split head joined into Frigate's one output; return its record."""
    import openvino as ov
    from openvino import opset13 as ops

    from edgeport.convert.openvino_target import tensor_spec

    model = ov.Core().read_model(str(xml))
    height, width = record.imgsz
    boxes, scores = (model.output(name).get_node().input_value(0) for name in ("boxes", "scores"))  # behind the Results
    xywh = ops.matmul(boxes, ops.constant(xyxy_norm_to_xywh_pixels(width, height)), False, False)
    joined = ops.transpose(ops.concat([xywh, scores], axis=2), ops.constant(np.array([0, 2, 1])))
    joined.output(0).get_tensor().set_names({OUTPUT})
    old = list(model.get_results())
    model.add_results([ops.result(joined)])
    for result in old:
        model.remove_result(result)
    ov.save_model(model, str(out), compress_to_fp16=record.precision == "fp16")
    new = frigate_record(record, tensor_spec(model.outputs[0]))
    write_sidecar(out, new)
    return new


def onnx_layout(path: Path, record: ArtifactRecord, out: Path) -> ArtifactRecord:
    """Write the split-head ONNX at `path` with boxes and scores joined into Frigate's one output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeport.convert.job import write_record
    from edgeport.convert.onnx_target import _graph_spec

    model = onnx.load(str(path))
    graph = model.graph
    height, width = record.imgsz
    graph.initializer.append(numpy_helper.from_array(xyxy_norm_to_xywh_pixels(width, height), "frigate_xywh_matrix"))
    graph.node.extend([
        helper.make_node("MatMul", ["boxes", "frigate_xywh_matrix"], ["frigate_xywh"], name="frigate_xywh"),
        helper.make_node("Concat", ["frigate_xywh", "scores"], ["frigate_joined"], axis=2, name="frigate_concat"),
        helper.make_node("Transpose", ["frigate_joined"], [OUTPUT], perm=[0, 2, 1], name="frigate_transpose"),
    ])
    anchors = record.outputs[0].shape[1]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 4 + len(record.names), anchors]))
    # no onnx.checker here: onnxruntime's float16 converter leaves its input casts out of topological order,
    # which onnxruntime (and so Frigate) accepts; the test opens the copy in onnxruntime
    new = frigate_record(record, _graph_spec(graph.output[0]))
    write_record(out, new, onnx_model=model)
    return new


def block(target: str, record: ArtifactRecord, model_file: str, folder: str) -> dict[str, Any]:
    """The Frigate `detectors:` + `model:` mapping that runs `model_file` (copied to MODEL_CACHE/folder/)."""
    key, kind, device = DETECTORS[target]
    detector: dict[str, Any] = {"type": kind}
    if device:
        detector["device"] = device
    layout = record.layout.lower()
    height, width = record.imgsz
    model = {"path": f"{MODEL_CACHE}/{folder}/{model_file}", "labelmap_path": f"{MODEL_CACHE}/{folder}/labels.txt",
             "model_type": "yolo-generic", "width": int(width), "height": int(height), "input_tensor": layout,
             "input_pixel_format": record.preprocess.color.lower(),
             "input_dtype": "float" if record.inputs[0].dtype.startswith("float") else "int"}
    return {"detectors": {key: detector}, "model": model}


def render(target: str, config: dict[str, Any], folder: str) -> str:
    """frigate.yml text: a header saying where the files go, then the block."""
    import yaml

    lines = [f"# Frigate config written by edgeport for {folder}/ (copy the folder to {MODEL_CACHE}/)",
             "# model_type yolo-generic: one output (1, 4 + nc, N), xywh in input pixels; Frigate runs NMS itself"]
    if target in DEVICE_COMMENT:
        lines.append(f"# {DEVICE_COMMENT[target]}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False)


def write_frigate(artifact, say: Callable[[str], None], target: str | None = None, job=None):
    """Write `<stem>_frigate/` (model in Frigate's layout, frigate.yml, labels.txt) beside the artifact,
    print the block, and return the Artifact with the folder's files in extra_files. A target Frigate
    cannot run from edgeport's artifact gets one line saying why, and nothing is written. rknn needs the
    `job` (a second toolkit build, edgeport.convert.frigate_rknn)."""
    target, record = target or artifact.record.target, artifact.record
    if target == "rknn":
        if job is not None and record.decode.kind == "dfl":  # edgeport's raw-head .rknn: build Frigate's own
            return write_rknn_frigate(job, artifact, say)
        config, why = rknn_block(artifact.path, record)
        if config is None:
            say(f"frigate: no config for {why}")
            return artifact
    if target in WHY_NOT:
        say(f"frigate: no config for {artifact.path.name}: {WHY_NOT[target]}")
        return artifact
    if target not in ("openvino", "onnx", "tensorrt") or record.decode.kind != "split":
        return artifact
    if record.inputs[0].shape[0] != 1:
        say(f"frigate: no config for {artifact.path.name}: Frigate invokes one image at a time (convert at batch 1)")
        return artifact
    stem = artifact.path.stem
    folder = artifact.path.parent / f"{stem}_frigate"
    folder.mkdir(exist_ok=True)
    model_path = folder / f"{stem}_frigate{artifact.path.suffix}"
    try:
        (openvino_layout if target == "openvino" else onnx_layout)(artifact.path, record, model_path)
    except Exception as exc:  # the Frigate copy is an extra: its failure must not lose the artifact
        say(f"frigate: could not write the Frigate copy of {artifact.path.name}: {str(exc).splitlines()[0]}")
        return artifact
    files = [model_path, model_path.with_suffix(".bin")] if target == "openvino" else [model_path]
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in record.names))
    text = render(target, block(target, record, model_path.name, folder.name), folder.name)
    (folder / "frigate.yml").write_text(text)
    say(f"frigate: wrote {folder}/ ({model_path.name}, labels.txt, frigate.yml):\n{text.rstrip()}")
    return replace(artifact, extra_files=(*artifact.extra_files, *files, folder / "frigate.yml",
                                          folder / "labels.txt"))


def rknn_block(rknn_path: Path, record: ArtifactRecord, folder: str | None = None
               ) -> tuple[dict[str, Any] | None, str]:
    """Frigate block for an RKNN model (its record beside it) in MODEL_CACHE/`folder` (default: its stem):
    (block, "") when its one output is Frigate's (1, 4 + nc, N), else (None, why not). Frigate's rknn
    detector is given NHWC uint8 frames (`input_dtype: int`; edgeport's models normalize inside)."""
    shapes = [list(o.shape) for o in record.outputs]
    nc = len(record.names)
    if record.decode.kind != "ultralytics" or len(shapes) != 1 or 4 + nc not in shapes[0][1:]:
        return None, (f"{rknn_path.name}: outputs {shapes} are not Frigate's one (1, {4 + nc}, N) tensor; build the "
                      "RKNN model from the Frigate-layout ONNX, as `edgeport convert --target rknn` does "
                      "(`<stem>_frigate/<stem>_frigate.rknn`)")
    config = block("rknn", replace(record, layout="NHWC"), rknn_path.name, folder or rknn_path.stem)
    config["model"]["input_dtype"] = "int"
    config["detectors"]["rknn"]["num_cores"] = 0
    return config, ""


def frigate_onnx(job, work: Path) -> Path:
    """work/frigate.onnx: the float Frigate-layout ONNX of the job's model (the onnx target's float graph and
    the same join as its Frigate copy)."""
    import onnx

    from edgeport.convert.onnx_target import float_model, split_record
    from edgeport.convert.provenance import provenance

    model, names, _ = float_model(job.derive(precision="fp32", batch=1))
    split = work / "split.onnx"
    onnx.save(model, str(split))
    record = split_record(model, names, "onnx", "fp32", provenance(job.source, job.options.command))
    out = work / "frigate.onnx"
    onnx_layout(split, record, out)
    return out


def write_rknn_frigate(job, artifact, say: Callable[[str], None]):
    """Write `<stem>_frigate/` for an edgeport .rknn: `<stem>_frigate.rknn` (Frigate's one-output layout), its
    simulator bundle, frigate.yml and labels.txt; print the block. A toolkit failure costs one line and keeps the
    artifact; a copy that disagrees with the float model is removed, with one line naming it and why, and
    the artifact stands (it passed its own check); with --no-check the copy is kept, with a warning line and
    the finding in its record."""
    import tempfile

    from edgeport.convert.frigate_rknn import FRIGATE_SOCS, build
    from edgeport.convert.job import write_record
    from edgeport.convert.rknn_target import SIMULATOR_LABEL, FP16_SIMULATOR_LABEL, embed_record

    platform = artifact.record.provenance.get("platform")
    if platform not in FRIGATE_SOCS:
        say(f"frigate: no config for {artifact.path.name}: Frigate's rknn detector runs on {', '.join(FRIGATE_SOCS)} "
            f"only, not {platform}; run the edgeport daemon on this board")
        return artifact
    stem = artifact.path.stem
    folder = artifact.path.parent / f"{stem}_frigate"
    folder.mkdir(exist_ok=True)
    out = folder / f"{stem}_frigate.rknn"
    bundle = out.with_suffix(".rknnsim")
    try:
        with tempfile.TemporaryDirectory(prefix="edgeport-frigate-") as tmp:
            result, agreed = build(job, artifact, frigate_onnx(job, Path(tmp)), out, bundle, say)
    except ConversionError as exc:
        say(f"frigate: could not build the Frigate copy of {artifact.path.name}: {exc}")
        return artifact
    problem = agreed.problem(artifact.record.precision)
    if problem and job.options.check:
        for path in (out, bundle, folder / "frigate.yml"):  # no config may point at a removed model
            path.unlink(missing_ok=True)
        say(f"frigate: REFUSED {out.name} (Frigate layout of {artifact.path.name}): it disagrees with the float "
            f"model in the simulator: {problem}; removed it, no Frigate config written ({artifact.path.name} "
            "itself passed its own check; try more --calibration-images or --fp16)")
        return artifact
    if problem:
        say(f"frigate: WARNING: {out.name} disagrees with the float model in the simulator: {problem} "
            "(kept: --no-check)")
    spec = TensorSpec("output0", tuple(result["outputs"][0]["shape"]), "float32")
    label = SIMULATOR_LABEL if artifact.record.precision == "int8" else FP16_SIMULATOR_LABEL
    prov = {**artifact.record.provenance, "proxy": {"artifact": bundle.name, "label": label},
            "frigate_check": {**agreed.as_dict(), "problem": problem, "enforced": bool(job.options.check)},
            "frigate_tail": "decode tail in float16 (hybrid quantization)" if artifact.record.precision == "int8"
            else "fp16 throughout"}
    record = frigate_record(replace(artifact.record, provenance=prov), spec)
    write_record(out, record)
    embed_record(bundle, record, out.name)
    config, _ = rknn_block(out, record, folder.name)
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in record.names))
    text = render("rknn", config, folder.name)
    (folder / "frigate.yml").write_text(text)
    if not problem:
        say(f"frigate: {out.name} agrees with the float model in the simulator: {agreed.describe()}")
    say(f"frigate: wrote {folder}/ ({out.name}, labels.txt, frigate.yml):\n{text.rstrip()}")
    return replace(artifact, extra_files=(*artifact.extra_files, out, bundle, folder / "frigate.yml",
                                          folder / "labels.txt"))
