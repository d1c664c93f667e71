"""What every target shares: `ConvertOptions` (the common options) in, `Artifact` out, the source check
and file-name tail.

Light (no heavy imports): the CLI, the Job and every target module import it.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeport.artifact import ArtifactRecord, artifact_size
from edgeport.errors import ModelNotFoundError, UnsupportedModelError


@dataclass(frozen=True)
class ConvertOptions:
    """What every converter accepts (the options common to all targets), and in `own` the targets' own
    options (edgeport.convert.options: TfliteOptions, RknnOptions...); a target absent from `own` runs with
    its type's defaults. A target reads the first as job.options, its own as job.target_options."""

    out_dir: Path = Path("artifacts")
    imgsz: int | None = None  # None: the size the model was trained at
    opset: int = 17
    name: str | None = None  # file stem of the artifact; default: the model's stem
    command: str = ""  # the command line that asked for the conversion (provenance)
    precision: str = "fp32"  # the target's precision names (Target.precisions): fp32, fp16, int8, dynamic, int8w...
    data: Path | None = None  # calibration source: DATA.yaml, image folder or video
    calibration_images: int = 300
    calibration_method: str | None = None  # None: the target's default (tflite minmax, onnx/tensorrt percentile)
    calibration_dir: Path | None = None  # cache folder of the calibration set
    max_drop: float | None = None  # points of mAP50-95 the artifact may lose against the float model
    progress: Callable[[str], None] | None = None  # called with one line per step
    check: bool = True  # run the written artifact against its float source before reporting success
    batch: int = 1  # images per invoke baked into the artifact; 0: a dynamic batch dimension (onnx only)
    own: tuple[Any, ...] = ()  # targets' own options, one per type: (TfliteOptions(io="int8"), RknnOptions(...))
    # the flat keywords of the one-dataclass ConvertOptions, still accepted: each is set in the own options of
    # every target with that field (io: tflite and edgetpu). Keywords only: the targets read job.target_options.
    io: InitVar[str | None] = None
    fallback: InitVar[bool | None] = None
    ort_web_dir: InitVar[Path | None] = None
    ort_format: InitVar[bool | None] = None
    nms: InitVar[bool | None] = None
    nms_iou: InitVar[float | None] = None
    nms_conf: InitVar[float | None] = None
    platform: InitVar[str | None] = None

    def __post_init__(self, io, fallback, ort_web_dir, ort_format, nms, nms_iou, nms_conf, platform) -> None:
        flat = {"io": io, "fallback": fallback, "ort_web_dir": ort_web_dir, "ort_format": ort_format, "nms": nms,
                "nms_iou": nms_iou, "nms_conf": nms_conf, "platform": platform}
        given = {name: value for name, value in flat.items() if value is not None}
        if given:
            from edgeport.convert.targets import with_fields

            object.__setattr__(self, "own", with_fields(self.own, given))


@dataclass(frozen=True)
class Artifact:
    """One written artifact and its record."""

    path: Path
    record: ArtifactRecord
    extra_files: tuple[Path, ...] = field(default_factory=tuple)
    check: dict[str, Any] = field(default_factory=dict)  # the agreement check (edgeport.convert.verify)

    @property
    def size_bytes(self) -> int:
        return artifact_size(self.path)

    def describe(self) -> dict[str, Any]:
        return {"artifact": str(self.path), "target": self.record.target, "precision": self.record.precision,
                "size_bytes": self.size_bytes}


def batch_suffix(batch: int) -> str:
    """The file-name tail of a batched artifact ("" at batch 1, "_batch4", "_batch_dynamic")."""
    return "" if batch == 1 else "_batch_dynamic" if batch == 0 else f"_batch{batch}"


def check_source(model: str | Path) -> Path:
    """Return the model path; raise ModelNotFoundError or UnsupportedModelError for bad sources."""
    path = Path(model)
    if not path.is_file():
        raise ModelNotFoundError(f"model not found: {path}")
    if path.suffix.lower() not in (".pt", ".onnx"):
        raise UnsupportedModelError(f"{path}: convert takes an Ultralytics .pt or an Ultralytics-exported .onnx")
    return path
