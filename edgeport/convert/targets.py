"""The target registry: every converter's name, entry point, precisions, own options type and flags, as data.

The CLI reads it for `--target` choices, `--target all`, the precision flags and each target's own
flags; `Target.convert(job)` imports the chosen module only then (`edgeport --help` stays fast).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from edgeport.convert.options import CoremlOptions, EdgeTpuOptions, OnnxWebOptions, RknnOptions, TfliteOptions
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
    """One of a target's own command-line flags: the flag, the field of the target's options type it sets
    and the rest of argparse's keywords (type, choices, action, metavar; the default is the type's)."""

    flag: str
    field: str
    help: str
    argparse: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Target:
    """A converter. `entry` is "module:function" with function(job: Job) -> Artifact (or, the older
    shape, function(source: Path, options: ConvertOptions) -> Artifact, called through an adapter).
    `options` is its own options type (a frozen dataclass; the function reads it as job.target_options),
    `flags` the command-line flags that set its fields."""

    name: str
    entry: str
    precisions: tuple[Precision, ...]
    default: str  # what `--target all` writes without calibration images
    calibrated: str | None = None  # the integer variant `--target all` adds when --data is given
    calibration_methods: tuple[str, ...] = ()
    extra: str = "convert"  # the pip extra that brings its dependencies
    batches: tuple[str, ...] = ()  # "fixed" (--batch N), "dynamic" (--batch dynamic); () batch 1 only
    options: type | None = None  # its own options type (edgeport.convert.options); None: it has none
    flags: tuple[Option, ...] = ()  # its own flags, each setting one field of `options`
    single: str | None = None  # what `--target NAME` alone writes, when not fp32 (see single_default)
    frigate: bool = False  # Job.run writes a Frigate config beside the artifact (edgeport.convert.frigate)

    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)

    def single_default(self) -> str:
        """The precision of `--target NAME` without a precision flag: `single` where set (fp16 on coreml and
        ncnn), else fp32 where the target writes it, else its default (int8 on edgetpu and rknn)."""
        return self.single or ("fp32" if "fp32" in self.precision_names() else self.default)

    def own(self, given: Iterable[Any] = ()) -> Any:
        """Its own options: the instance of its options type among `given`, else the type's defaults; None
        for a target without an options type."""
        if self.options is None:
            return None
        return next((o for o in given if type(o) is self.options), None) or self.options()

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
            (("choices", ("uint8", "int8", "float")),))
TFLITE_FLAGS = (IO, Option("--fallback", "fallback", "int8: when --max-drop is missed, keep the most sensitive "
                           "layers in int16 until it holds", (("action", "store_true"),)))
WEB_FLAGS = (
    Option("--ort-web-dir", "ort_web_dir", "onnx-web: onnxruntime-web's package folder (default: "
           "$EDGEPORT_ORT_WEB_DIR, else node_modules)", (("type", Path),)),
    Option("--ort-format", "ort_format", "onnx-web: also write the model in onnxruntime's .ort format (the page: "
           "?format=ort)", (("action", "store_true"),)))
COREML_FLAGS = (
    Option("--nms", "nms", "coreml: also write <name>_nms.mlpackage, a pipeline with NonMaximumSuppression for "
           "Vision", (("action", "store_true"),)),
    Option("--nms-iou", "nms_iou", "coreml --nms: default IoU threshold (0.45)", (("type", float),)),
    Option("--nms-conf", "nms_conf", "coreml --nms: default confidence threshold (0.25)", (("type", float),)))
RKNN_FLAGS = (
    Option("--platform", "platform", "rknn: the Rockchip SoC to build for (default rk3588; rk3576, rk3568, rk3566, "
           "rk3562, rv1103, rv1106, ...)"),)

REGISTRY: tuple[Target, ...] = (
    Target("onnx", "edgeport.convert.onnx_target:convert_onnx", (FP32, FP16, INT8), "fp32", "int8", ORT_METHODS,
           batches=("fixed", "dynamic"), frigate=True),
    Target("tflite", "edgeport.convert.tflite_target:convert_tflite",
           (FP32, Precision("fp16", "float16 weights", flag="--fp16"),
            Precision("dynamic", "dynamic-range int8 (int8 weights)", flag="--dynamic"),
            Precision("int8", "full-integer int8", needs_data=True, flag="--int8")), "fp32", "int8",
           ("minmax", "percentile"), batches=("fixed",), options=TfliteOptions, flags=TFLITE_FLAGS),
    Target("edgetpu", "edgeport.convert.edgetpu_target:convert_edgetpu",
           (Precision("int8", "full-integer int8 (always)", needs_data=True, flag="--int8"),), "int8", None,
           ("minmax", "percentile"), options=EdgeTpuOptions, flags=(IO,), frigate=True),
    Target("onnx-web", "edgeport.convert.onnx_web_target:convert_onnx_web", (FP32, FP16, INT8), "fp32", "int8",
           ORT_METHODS, extra="web", options=OnnxWebOptions, flags=WEB_FLAGS),
    Target("tensorrt", "edgeport.convert.tensorrt_target:convert_tensorrt", (FP32, FP16, INT8), "fp16", "int8",
           ORT_METHODS, frigate=True),
    Target("coreml", "edgeport.convert.coreml_target:convert_coreml",
           (Precision("fp16", "fp16 compute (its default)", flag="--fp16"), FP32,
            Precision("int8w", "int8 per-channel weights (linear_quantize_weights), fp16 compute",
                      flag="--int8-weights"),
            Precision("w8a8", "int8 weights and activations, activations calibrated on --data (in torch)",
                      needs_data=True, flag="--w8a8"),
            Precision("palette6", "6-bit palettized weights, fp16 compute", flag="--palettize")), "fp16", "int8w",
           extra="coreml", options=CoremlOptions, flags=COREML_FLAGS, single="fp16"),
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
           ("minmax", "entropy"), extra="rknn", options=RknnOptions, flags=RKNN_FLAGS, frigate=True),
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


def target_flags() -> dict[str, tuple[Option, list[str]]]:
    """flag -> (Option, the targets that take it), in registry order (a shared flag such as --io once)."""
    flags: dict[str, tuple[Option, list[str]]] = {}
    for target in REGISTRY:
        for option in target.flags:
            flags.setdefault(option.flag, (option, []))[1].append(target.name)
    return flags


# what a user who gave a flag to the wrong target most likely wants instead
FLAG_HINTS = {"--fallback": " (--max-drop N alone keeps the layers that cost accuracy in float on onnx, "
                            "tensorrt, openvino and tflite)"}


def refuse_foreign(names: list[str], flags: Iterable[str]) -> None:
    """Raise ConversionError, in one line, for the first of `flags` that none of the targets `names` takes,
    naming the targets that own it."""
    taken = {option.flag for name in names for option in BY_NAME[name].flags}
    owners = target_flags()
    for flag in flags:
        if flag not in taken:
            owned = owners[flag][1] if flag in owners else []
            whose = (f"an option of the {' and '.join(owned)} target{'s' if len(owned) > 1 else ''} only" if owned
                     else "no target's option")
            hint = FLAG_HINTS.get(flag, "")
            raise ConversionError(f"{flag} is {whose}; --target {','.join(names)} does not take it{hint}")


def own_options(names: list[str], given: Mapping[str, Any]) -> tuple[Any, ...]:
    """Each of the targets `names` its own options from `given` (flag -> value, the flags the user set; the
    rest keep the type's defaults), after refusing a flag none of them takes (ConversionError)."""
    refuse_foreign(names, given)
    return tuple(BY_NAME[name].options(**{o.field: given[o.flag] for o in BY_NAME[name].flags if o.flag in given})
                 for name in names if BY_NAME[name].options is not None)


def set_flags(own: Any) -> list[str]:
    """The flags of the fields that `own` (a target's own options) sets away from its type's defaults."""
    default = type(own)()
    return list(dict.fromkeys(option.flag for target in REGISTRY if type(own) is target.options
                              for option in target.flags
                              if getattr(own, option.field) != getattr(default, option.field)))


def with_fields(own: tuple[Any, ...], values: Mapping[str, Any]) -> tuple[Any, ...]:
    """`own` with `values` (field -> value) set in every target's options type that has such a field (io: tflite
    and edgetpu), a type missing from `own` added: how ConvertOptions' flat keywords (nms=True) still work."""
    result = list(own)
    for options_type in dict.fromkeys(t.options for t in REGISTRY if t.options is not None):
        changes = {k: v for k, v in values.items() if k in {f.name for f in fields(options_type)}}
        if changes:
            current = next((o for o in result if type(o) is options_type), None)
            result = [o for o in result if o is not current] + [replace(current or options_type(), **changes)]
    return tuple(result)


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
