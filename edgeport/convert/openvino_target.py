"""OpenVINO target: IR (.xml + .bin) in fp32, fp16 (compressed weights) or int8 (NNCF post-training).

The IR is converted from the float split-head ONNX (boxes normalized xyxy, scores); int8 keeps the
decode tail in float (NNCF ignored scope) and `--max-drop` runs NNCF's accuracy control on our mAP.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgeport.artifact import ArtifactRecord, Decode, Preprocess, TensorSpec, sha256_file
from edgeport.convert.base import Artifact, ConvertOptions
from edgeport.convert.job import Job, write_record
from edgeport.convert.provenance import provenance
from edgeport.errors import ConversionError, MissingDependencyError

PRECISIONS = ("fp32", "fp16", "int8")
OV_TYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "i32": "int32", "i64": "int64"}


def check_options(options: ConvertOptions) -> None:
    """Refuse, before any work, what the OpenVINO target cannot do (one line the user can act on)."""
    from edgeport.evaluate.dataset import is_data_yaml

    if options.precision not in PRECISIONS:
        raise ConversionError(f"openvino: unknown precision {options.precision!r}; choose one of "
                              f"{', '.join(PRECISIONS)}")
    if options.precision == "int8" and options.data is None:
        raise ConversionError("openvino: --int8 needs representative images: pass --data DATA.yaml, an image "
                              "folder or a video")
    if options.precision == "int8" and options.max_drop is not None and not is_data_yaml(options.data):
        raise ConversionError("openvino: --max-drop measures mAP50-95 and needs a labelled DATA.yaml as --data, "
                              f"not {options.data}")


def tensor_spec(port) -> TensorSpec:
    """TensorSpec of an OpenVINO model input/output port (static shape; -1 for a dynamic dimension)."""
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    kind = port.get_element_type().get_type_name()
    return TensorSpec(port.get_any_name(), shape, OV_TYPES.get(kind, kind))


def decode_tail(model) -> list[str]:
    """Friendly names of the ops after the head's last learned convolutions (the box and score decode),
    as onnx_quant.head_tail_nodes finds them in ONNX: no learned Convolution runs after them (the DFL's
    fixed convolution, fed by a Softmax, counts as decode)."""
    ops = list(model.get_ordered_ops())

    def learned_conv(op) -> bool:
        if op.get_type_name() != "Convolution":
            return False
        return op.input_value(0).get_node().get_type_name() != "Softmax"

    conv_below: dict[str, bool] = {}
    for op in reversed(ops):
        below = [target.get_node() for out in op.outputs() for target in out.get_target_inputs()]
        conv_below[op.get_friendly_name()] = any(learned_conv(c) or conv_below.get(c.get_friendly_name(), False)
                                                 for c in below)
    skip = ("Constant", "Parameter", "Result")
    return [op.get_friendly_name() for op in ops if op.get_type_name() not in skip
            and not conv_below[op.get_friendly_name()] and not learned_conv(op)]


def ir_record(model, names: tuple[str, ...], precision: str, prov: dict) -> ArtifactRecord:
    """The record of a split-head IR, its tensors read from the OpenVINO model itself."""
    inp = tensor_spec(model.inputs[0])
    outputs = {tensor_spec(o).name: tensor_spec(o) for o in model.outputs}
    one_to_many = prov.get("head", {}).get("head", "dfl") == "dfl"
    return ArtifactRecord(
        names=tuple(names), imgsz=(inp.shape[2], inp.shape[3]), layout="NCHW", inputs=(inp,),
        outputs=(outputs["boxes"], outputs["scores"]), preprocess=Preprocess(),
        decode=Decode(kind="split", boxes="boxes", scores="scores", box_format="xyxy", normalized=True,
                      nms=one_to_many),
        target="openvino", precision=precision, provenance=prov)


def no_telemetry() -> None:
    """Decline OpenVINO's and NNCF's usage telemetry in this process: openvino-telemetry sends events from
    `convert_model` and `nncf.quantize` unless a consent file in the user's home says no; a converter must
    not phone home, and edgeport does not write into the user's home."""
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:  # no telemetry package: nothing is sent
        return
    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: opt_in_checker.ConsentCheckResult.DECLINED
    existing = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)  # one per process, maybe made
    if existing is not None:
        existing.consent = False


def _ov():
    try:
        import openvino as ov
    except ImportError as exc:
        raise MissingDependencyError("openvino", "openvino") from exc
    no_telemetry()
    return ov


def convert_openvino(job: Job) -> Artifact:
    """Write DIR/<stem>_openvino_<precision>.xml (+ .bin, the record in <stem>_openvino_<precision>.edgeport.json,
    the Frigate model and config beside it); return the Artifact."""
    import onnx

    from edgeport.convert.onnx_target import float_model

    source, options, say = job.source, job.options, job.say
    check_options(options)
    ov = _ov()
    model, names, head = float_model(job)
    stem = f"{options.name or source.stem}_openvino_{options.precision}"
    out = options.out_dir / f"{stem}.xml"
    with tempfile.TemporaryDirectory(prefix="edgeport-openvino-") as tmp:
        onnx_path = Path(tmp) / "float.onnx"
        onnx.save(model, str(onnx_path))
        try:
            ov_model = ov.convert_model(str(onnx_path))
        except Exception as exc:
            raise ConversionError(f"openvino: model conversion failed: {str(exc).splitlines()[0]}") from exc
        float_path = Path(tmp) / "float.xml"
        if options.precision == "int8":
            ov.save_model(ov_model, str(float_path), compress_to_fp16=False)
            write_record(float_path, ir_record(ov_model, names, "fp32", {"head": head}))
            ov_model, prov = quantize(ov_model, float_path, job)
        else:
            prov = {**provenance(source, options.command), "io": "float32",
                    "weights": "float16 (decompressed to the device's precision at load)"
                    if options.precision == "fp16" else "float32"}
        prov["head"] = head
        ov.save_model(ov_model, str(out), compress_to_fp16=options.precision == "fp16")
    bin_path = out.with_suffix(".bin")
    prov["weights_file"] = {"file": bin_path.name, "sha256": sha256_file(bin_path)}
    prov["openvino_version"] = ov.get_version()
    record = ir_record(ov_model, names, options.precision, prov)
    write_record(out, record)
    size = (out.stat().st_size + bin_path.stat().st_size) / 1e6
    say(f"openvino: wrote {out} and {bin_path.name} ({size:.1f} MB)")
    return Artifact(path=out, record=record, extra_files=(bin_path,))  # Job.run adds the Frigate folder


def calibration_dataset(job: Job, imgsz: int):
    """(nncf.Dataset of NCHW float32 batches, CalibrationSet): the job's calibration set (built once per job)."""
    import nncf

    calibration = job.calibration(imgsz)
    return nncf.Dataset(list(calibration.batches("NCHW", "float32"))), calibration


def _settings() -> dict:
    """nncf.quantize settings: NNCF's PERFORMANCE preset (symmetric int8 activations and weights: the fastest
    CPU kernels) with the full bias correction. Measured on the YOLOv8n sample (80 images, drop in points of
    mAP50-95): fast bias correction 0.92, full 0.44; the MIXED preset (asymmetric activations) 0.66 / 0.24,
    but its int8 IR ran no faster than the float ONNX in onnxruntime here."""
    return {"fast_bias_correction": False}


@contextmanager
def nncf_to_stderr() -> Iterator[None]:
    """NNCF logs and draws its progress bars on stdout, which belongs to the CLI's result (the artifact
    paths); send them to stderr while it runs."""
    from nncf.common.logging.logger import nncf_logger

    handlers = [(h, h.stream) for h in nncf_logger.handlers if type(h) is logging.StreamHandler
                and h.stream not in (sys.stderr, sys.__stderr__)]  # its console handler (not a log file)
    for handler, _ in handlers:
        handler.setStream(sys.stderr)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in handlers:
            handler.setStream(stream)


def quantize(ov_model, float_path: Path, job: Job) -> tuple[Any, dict]:
    """int8 version of the float IR (NNCF post-training quantization, decode tail in float); with
    options.max_drop, NNCF's accuracy control on edgeport's mAP50-95. Returns (model, provenance)."""
    source, options, say = job.source, job.options, job.say
    try:
        import nncf
    except ImportError as exc:
        raise MissingDependencyError("nncf", "convert") from exc
    imgsz = tensor_spec(ov_model.inputs[0]).shape[2]
    dataset, calibration = calibration_dataset(job, imgsz)
    tail = decode_tail(ov_model)
    settings = _settings()
    scope = nncf.IgnoredScope(names=tail, validate=False)
    prov: dict[str, Any] = {**provenance(source, options.command, calibration.sha256), "io": "float32",
                            "quantizer": f"NNCF {nncf.__version__} post-training quantization (OpenVINO backend), "
                                         "preset PERFORMANCE (int8 symmetric per-channel weights and "
                                         "activations), full bias correction, decode tail in float",
                            "calibration_images": len(calibration), "ops_left_in_float": tail}
    try:
        with nncf_to_stderr():
            if options.max_drop is None or options.data is None:
                say(f"openvino: NNCF int8 quantization on {len(calibration)} images; {len(tail)} decode-tail ops "
                    "stay float")
                quantized, control = nncf.quantize(ov_model, dataset, subset_size=len(calibration),
                                                   ignored_scope=scope, **settings), None
            else:
                quantized, control = accuracy_control(ov_model, float_path, dataset, len(calibration), scope,
                                                      options, say)
    except nncf.errors.ValidationError as exc:
        raise ConversionError(f"openvino: NNCF quantization refused the model: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(f"openvino: NNCF quantization failed: {str(exc).splitlines()[0]}") from exc
    if control is not None:
        prov["accuracy_control"] = control
        prov["ops_left_in_float"] = tail + [n for n in control["float_ops"] if n not in tail]
    return quantized, prov


WEIGHT_PATH = ("Convert", "Multiply", "Subtract", "Reshape", "FakeQuantize", "FakeConvert", "Transpose")


def _weights(op) -> tuple[bool, bool]:
    """(whether input 1 of a Convolution / MatMul is a constant weight, whether it is quantized): walks back
    through the ops OpenVINO and NNCF put between a weight constant and its layer."""
    node, quantized = op.input_value(1).get_node(), False
    while node.get_type_name() in WEIGHT_PATH and node.get_input_size():
        quantized |= node.get_type_name() in ("FakeQuantize", "FakeConvert")
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return False, False  # an activation x activation MatMul (attention): not a weight layer
    return True, quantized or node.get_output_element_type(0).get_type_name() in ("i8", "u8", "i4", "u4")


def float_ops(quantized) -> list[str]:
    """Names of the weight layers (Convolution, GroupConvolution, MatMul with a constant weight) whose weights
    are not int8 in `quantized`: the ignored decode tail plus what accuracy control reverted to float."""
    names = []
    for op in quantized.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            constant, integer = _weights(op)
            if constant and not integer:
                names.append(op.get_friendly_name())
    return names


def accuracy_control(ov_model, float_path: Path, dataset, subset: int, scope, options: ConvertOptions,
                     say: Callable[[str], None]) -> tuple[Any, dict]:
    """nncf.quantize_with_accuracy_control with mAP50-95 (edgeport.evaluate, the runtime's own pipeline)
    on the DATA.yaml's val split as the metric; returns (model, what it did)."""
    import nncf

    from edgeport.evaluate import load_dataset
    from edgeport.runtime import Detector

    detector = Detector(float_path, backend="openvino")
    data = load_dataset(options.data)
    budget = float(options.max_drop)

    def transform(path):
        tensor, _ = detector.preprocess([detector.load(path)])
        return tensor

    def validate(compiled, items) -> float:
        return compiled_map(compiled, detector, data, items)

    validation = nncf.Dataset(list(data.images), transform)
    say(f"openvino: NNCF accuracy control, at most {budget} points of mAP50-95 on {len(data.images)} val images")
    quantized = nncf.quantize_with_accuracy_control(
        ov_model, dataset, validation, validation_fn=validate, max_drop=budget / 100,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=subset, ignored_scope=scope, **_settings())
    reverted = [name for name in float_ops(quantized) if name not in set(scope.names)]
    say(f"openvino: accuracy control kept {len(reverted)} layers in float beyond the decode tail"
        + (f": {', '.join(reverted[:8])}" if reverted else ""))
    return quantized, {"budget_points": budget, "float_ops": reverted, "metric": "mAP50-95 (COCO protocol, "
                       f"edgeport runtime) on {options.data} val ({len(data.images)} images)"}


def compiled_map(compiled, detector, data, images) -> float:
    """mAP50-95 (COCO protocol) of an OpenVINO compiled model on `images` of `data`, through `detector`'s
    pipeline (its record: letterbox, decode, NMS): the metric NNCF's accuracy control optimizes."""
    from dataclasses import replace

    from edgeport.evaluate import PROTOCOLS, collect, score

    detector.backend = _CompiledBackend(compiled, detector.backend)
    found, _ = collect(detector, replace(data, images=tuple(images)), PROTOCOLS["coco"], progress=False)
    return score(found, data.names, artifact="nncf", backend="openvino").map50_95


class _CompiledBackend:
    """Stands in for the backend of a Detector while NNCF validates a compiled model it holds."""

    def __init__(self, compiled, like) -> None:
        self._compiled = compiled
        self.outputs = like.outputs
        self.inputs = like.inputs
        self.name = "openvino"
        self._ports = {o.get_any_name(): o for o in compiled.outputs}

    def invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._compiled(batch)
        return [result[self._ports[spec.name]] for spec in self.outputs]
