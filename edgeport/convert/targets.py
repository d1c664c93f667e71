"""The target registry: every converter's name, entry point and precisions as data.

The CLI reads it for `--target` choices and for `--target all`; `convert_many` runs a list of targets
into one folder, skipping a target whose optional dependency is missing (with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from edgeport.errors import ConversionError, EdgeportError, MissingDependencyError


@dataclass(frozen=True)
class Precision:
    """One precision a target writes: its name in records, whether it needs calibration images."""

    name: str
    help: str
    needs_data: bool = False


@dataclass(frozen=True)
class Target:
    """A converter: `entry` is "module:function" with function(source: Path, options) -> Artifact."""

    name: str
    entry: str
    precisions: tuple[Precision, ...]
    default: str  # what `--target all` writes without calibration images
    calibrated: str | None = None  # the integer variant `--target all` adds when --data is given
    calibration_methods: tuple[str, ...] = ()
    extra: str = "convert"  # the pip extra that brings its dependencies
    batches: tuple[str, ...] = ()  # "fixed" (--batch N), "dynamic" (--batch dynamic); () batch 1 only

    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)


FP32 = Precision("fp32", "float32")
FP16 = Precision("fp16", "float16 weights (and compute where the engine has it)")
INT8 = Precision("int8", "static int8, calibrated on --data", needs_data=True)
ORT_METHODS = ("percentile", "minmax", "entropy")

REGISTRY: tuple[Target, ...] = (
    Target("onnx", "edgeport.convert.onnx_target:convert_onnx", (FP32, FP16, INT8), "fp32", "int8", ORT_METHODS,
           batches=("fixed", "dynamic")),
    Target("tflite", "edgeport.convert.tflite_target:convert_tflite",
           (FP32, FP16, Precision("dynamic", "dynamic-range int8 weights"), INT8), "fp32", "int8",
           ("minmax", "percentile"), batches=("fixed",)),
    Target("edgetpu", "edgeport.convert.edgetpu_target:convert_edgetpu", (INT8,), "int8", None, ("minmax",
                                                                                                 "percentile")),
    Target("onnx-web", "edgeport.convert.onnx_web_target:convert_onnx_web", (FP32, FP16, INT8), "fp32", "int8",
           ORT_METHODS, extra="web"),
    Target("tensorrt", "edgeport.convert.tensorrt_target:convert_tensorrt", (FP32, FP16, INT8), "fp16", "int8",
           ORT_METHODS),
    Target("coreml", "edgeport.convert.coreml_target:convert_coreml",
           (FP16, FP32, Precision("int8w", "int8 weights"), Precision("w8a8", "int8 weights and activations",
                                                                     needs_data=True),
            Precision("palette6", "6-bit palettized weights")), "fp16", "int8w", extra="coreml"),
    # OpenVINO IR; int8 through NNCF (its own calibration: no --calibration-method), --max-drop: accuracy control
    Target("openvino", "edgeport.convert.openvino_target:convert_openvino",
           (FP32, Precision("fp16", "float16 weights (compressed), compute at the device's precision"),
            Precision("int8", "NNCF post-training int8 on --data; --max-drop: NNCF accuracy control",
                      needs_data=True)), "fp32", "int8", extra="openvino"),
)
BY_NAME: dict[str, Target] = {t.name: t for t in REGISTRY}


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
    if options.precision == "int8":
        raise ConversionError(f"{name}: --batch with --int8 is not supported yet (calibration runs at batch 1); "
                              "convert int8 at batch 1, or a float/fp16 artifact with --batch")


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


@dataclass
class ManyResult:
    """What `convert_many` wrote, skipped (missing dependency) and failed (with the error)."""

    artifacts: list = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def convert_many(model: Path, names: list[str], options, say: Callable[[str], None]) -> ManyResult:
    """Convert `model` to each (target, precision) of `plan` into options.out_dir; never stops at one failure."""
    from edgeport.convert import convert

    result = ManyResult()
    calibrated = options.data is not None
    for name in names:
        if BY_NAME[name].default == "int8" and not calibrated:
            result.skipped.append((name, "int8", "needs calibration images: pass --data"))
            say(f"convert: skipped {name}: it is integer-only and needs calibration images (--data)")
    for name, precision in plan(names, calibrated):
        say(f"convert: [{name} {precision}]")
        try:
            check_batch(name, replace(options, precision=precision))
        except ConversionError as exc:
            result.skipped.append((name, precision, str(exc)))
            say(f"convert: skipped {name} {precision}: {exc}")
            continue
        try:
            result.artifacts.append(convert(model, name, replace(options, precision=precision)))
        except MissingDependencyError as exc:
            result.skipped.append((name, precision, str(exc)))
            say(f"convert: skipped {name} {precision}: {exc}")
        except EdgeportError as exc:
            result.failed.append((name, precision, str(exc)))
            say(f"edgeport: error: {name} {precision}: {exc}")
    return result
