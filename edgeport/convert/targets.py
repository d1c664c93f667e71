"""The target registry: every converter's name, entry point, precisions and own options, as data.

The CLI reads it for `--target` choices, `--target all`, the precision flags and each target's own
flags; `Target.convert(job)` imports the chosen module only then (`edgeport --help` stays fast).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeport.errors import ConversionError

if TYPE_CHECKING:  # types only: the Job imports this module
    from edgeport.convert.base import Artifact
    from edgeport.convert.job import Job


@dataclass(frozen=True)
class Precision:
    """One precision a target writes: its name in records, the CLI flag that asks for it (None: asked
    for by no flag, the target's default), whether it needs calibration images."""

    name: str
    help: str
    needs_data: bool = False
    flag: str | None = None


@dataclass(frozen=True)
class Option:
    """One of a target's own command-line options: the flag, the ConvertOptions field it sets and the
    rest of argparse's keywords (type, default, choices, action, metavar)."""

    flag: str
    field: str
    help: str
    argparse: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Target:
    """A converter. `entry` is "module:function" with function(job: Job) -> Artifact (or, the older
    shape, function(source: Path, options: ConvertOptions) -> Artifact, called through an adapter)."""

    name: str
    entry: str
    precisions: tuple[Precision, ...]
    default: str  # what `--target all` writes without calibration images
    calibrated: str | None = None  # the integer variant `--target all` adds when --data is given
    calibration_methods: tuple[str, ...] = ()
    extra: str = "convert"  # the pip extra that brings its dependencies
    batches: tuple[str, ...] = ()  # "fixed" (--batch N), "dynamic" (--batch dynamic); () batch 1 only
    options: tuple[Option, ...] = ()  # the target's own flags (ConvertOptions fields only it reads)
    single: str | None = None  # what `--target NAME` alone writes, when not fp32 (see single_default)
    frigate: bool = False  # Job.run writes a Frigate config beside the artifact (edgeport.convert.frigate)

    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)

    def single_default(self) -> str:
        """The precision of `--target NAME` without a precision flag: `single` where set (fp16 on coreml and
        ncnn), else fp32 where the target writes it, else its default (int8 on edgetpu and rknn)."""
        return self.single or ("fp32" if "fp32" in self.precision_names() else self.default)

    def convert(self, job: Job) -> Artifact:
        """Import the entry and run it on `job` (job.options.precision set); return its Artifact."""
        module_name, function_name = self.entry.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        if len(inspect.signature(function).parameters) == 2:  # convert_x(source, options): the older shape
            from dataclasses import replace

            return function(job.source, replace(job.options, progress=job.say))
        return function(job)


FP32 = Precision("fp32", "float32")
FP16 = Precision("fp16", "float16 weights and compute, float32 I/O", flag="--fp16")
INT8 = Precision("int8", "static int8 QDQ (decode in float), calibrated on --data", needs_data=True, flag="--int8")
ORT_METHODS = ("percentile", "minmax", "entropy")
IO = Option("--io", "io", "int8 input/output type (default uint8: camera frames go in without a float pass)",
            (("choices", ("uint8", "int8", "float")), ("default", "uint8")))
TFLITE_OPTIONS = (IO, Option("--fallback", "fallback", "int8: when --max-drop is missed, keep the most sensitive "
                             "layers in int16 until it holds", (("action", "store_true"),)))
WEB_OPTIONS = (
    Option("--ort-web-dir", "ort_web_dir", "onnx-web: onnxruntime-web's package folder (default: "
           "$EDGEPORT_ORT_WEB_DIR, else node_modules)", (("type", Path), ("default", None))),
    Option("--ort-format", "ort_format", "onnx-web: also write the model in onnxruntime's .ort format (the page: "
           "?format=ort)", (("action", "store_true"),)))
COREML_OPTIONS = (
    Option("--nms", "nms", "coreml: also write <name>_nms.mlpackage, a pipeline with NonMaximumSuppression for "
           "Vision", (("action", "store_true"),)),
    Option("--nms-iou", "nms_iou", "coreml --nms: default IoU threshold (0.45)", (("type", float), ("default", 0.45))),
    Option("--nms-conf", "nms_conf", "coreml --nms: default confidence threshold (0.25)",
           (("type", float), ("default", 0.25))))
RKNN_OPTIONS = (
    Option("--platform", "platform", "rknn: the Rockchip SoC to build for (default rk3588; rk3576, rk3568, rk3566, "
           "rk3562, rv1103, rv1106, ...)", (("default", "rk3588"),)),)

REGISTRY: tuple[Target, ...] = (
    Target("onnx", "edgeport.convert.onnx_target:convert_onnx", (FP32, FP16, INT8), "fp32", "int8", ORT_METHODS,
           batches=("fixed", "dynamic"), frigate=True),
    Target("tflite", "edgeport.convert.tflite_target:convert_tflite",
           (FP32, Precision("fp16", "float16 weights", flag="--fp16"),
            Precision("dynamic", "dynamic-range int8 (int8 weights)", flag="--dynamic"),
            Precision("int8", "full-integer int8", needs_data=True, flag="--int8")), "fp32", "int8",
           ("minmax", "percentile"), batches=("fixed",), options=TFLITE_OPTIONS),
    Target("edgetpu", "edgeport.convert.edgetpu_target:convert_edgetpu",
           (Precision("int8", "full-integer int8 (always)", needs_data=True, flag="--int8"),), "int8", None,
           ("minmax", "percentile"), options=(IO,), frigate=True),
    Target("onnx-web", "edgeport.convert.onnx_web_target:convert_onnx_web", (FP32, FP16, INT8), "fp32", "int8",
           ORT_METHODS, extra="web", options=WEB_OPTIONS),
    Target("tensorrt", "edgeport.convert.tensorrt_target:convert_tensorrt", (FP32, FP16, INT8), "fp16", "int8",
           ORT_METHODS, frigate=True),
    Target("coreml", "edgeport.convert.coreml_target:convert_coreml",
           (Precision("fp16", "fp16 compute (its default)", flag="--fp16"), FP32,
            Precision("int8w", "int8 per-channel weights (linear_quantize_weights), fp16 compute",
                      flag="--int8-weights"),
            Precision("w8a8", "int8 weights and activations, activations calibrated on --data (in torch)",
                      needs_data=True, flag="--w8a8"),
            Precision("palette6", "6-bit palettized weights, fp16 compute", flag="--palettize")), "fp16", "int8w",
           extra="coreml", options=COREML_OPTIONS, single="fp16"),
    # OpenVINO IR; int8 through NNCF (its own calibration: no --calibration-method), --max-drop: accuracy control
    Target("openvino", "edgeport.convert.openvino_target:convert_openvino",
           (FP32, Precision("fp16", "float16 weights (compressed), compute at the device's precision", flag="--fp16"),
            Precision("int8", "NNCF post-training int8 on --data; --max-drop: NNCF accuracy control",
                      needs_data=True, flag="--int8")), "fp32", "int8", extra="openvino", frigate=True),
    Target("ncnn", "edgeport.convert.ncnn_target:convert_ncnn",
           (Precision("fp16", "float16 weight storage (NCNN's default; fp16 compute where the CPU has it)",
                      flag="--fp16"), Precision("fp32", "float32 weight storage", flag="--fp32")), "fp16",
           single="fp16"),
    # rknn-toolkit2 runs in its own venv (scripts/rknn-venv.sh); without it `--target all` skips rknn, saying so
    Target("rknn", "edgeport.convert.rknn_target:convert_rknn",
           (Precision("int8", "int8 quantized by rknn-toolkit2, calibrated on --data", needs_data=True, flag="--int8"),
            Precision("fp16", "float16 on the NPU (no quantization)", flag="--fp16")), "int8", None,
           ("minmax", "entropy"), extra="rknn", options=RKNN_OPTIONS, frigate=True),
)
BY_NAME: dict[str, Target] = {t.name: t for t in REGISTRY}


def precision_flags() -> dict[str, tuple[str, str]]:
    """flag -> (precision name, help naming the targets that take it), in registry order."""
    flags: dict[str, tuple[str, dict[str, list[str]]]] = {}
    for target in REGISTRY:
        for precision in target.precisions:
            if precision.flag:
                name, helps = flags.setdefault(precision.flag, (precision.name, {}))
                helps.setdefault(precision.help, []).append(target.name)
    return {flag: (name, "; ".join(f"{', '.join(names)}: {text}" for text, names in helps.items()))
            for flag, (name, helps) in flags.items()}


def target_options() -> dict[str, tuple[Option, list[str]]]:
    """flag -> (Option, the targets that read it), in registry order (a shared flag such as --io once)."""
    options: dict[str, tuple[Option, list[str]]] = {}
    for target in REGISTRY:
        for option in target.options:
            options.setdefault(option.flag, (option, []))[1].append(target.name)
    return options


def parse_batch(text: str) -> int:
    """`--batch`: a positive integer, or "dynamic" (returned as 0); raises ConversionError."""
    if text.strip().lower() == "dynamic":
        return 0
    try:
        batch = int(text)
    except ValueError:
        batch = -1
    if batch < 1:
        raise ConversionError(f"--batch {text!r}: give a positive number of images (4) or 'dynamic'")
    return batch


def check_batch(name: str, options) -> None:
    """Refuse, before any work, a batch the target cannot bake in (one line the user can act on)."""
    batch = options.batch
    if batch == 1 or name not in BY_NAME:
        return
    kinds = BY_NAME[name].batches
    if batch == 0 and "dynamic" not in kinds:
        if "fixed" in kinds:
            raise ConversionError(f"{name}: --batch dynamic is not possible: LiteRT models have static shapes; "
                                  "pass a fixed --batch N (the runtime pads the last group)")
        raise ConversionError(f"{name}: --batch dynamic is not supported; this target writes batch 1 only")
    if batch > 1 and "fixed" not in kinds:
        raise ConversionError(f"{name}: --batch {batch} is not supported; this target writes batch 1 only "
                              f"(batched targets: {', '.join(t.name for t in REGISTRY if t.batches)})")


def parse_targets(text: str) -> list[str]:
    """'all' or a comma list ('tflite,coreml') -> target names in registry order; raises ConversionError."""
    if text.strip() == "all":
        return [t.name for t in REGISTRY]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise ConversionError(f"unknown target {', '.join(unknown) or text!r}; choose 'all' or a comma list of: "
                              f"{', '.join(BY_NAME)}")
    return [t.name for t in REGISTRY if t.name in names]


def plan(names: list[str], calibrated: bool) -> list[tuple[str, str]]:
    """(target, precision) pairs `--target all` writes: each default, plus the integer variant when
    calibration images are given; a target whose default needs them is left out without them."""
    jobs = []
    for name in names:
        target = BY_NAME[name]
        default = next(p for p in target.precisions if p.name == target.default)
        if default.needs_data and not calibrated:
            continue
        jobs.append((name, target.default))
        if calibrated and target.calibrated and target.calibrated != target.default:
            jobs.append((name, target.calibrated))
    return jobs
