"""What every target shares: `ConvertOptions` in, `Artifact` out, the source check and file-name tail.

Light (no heavy imports): the CLI, the Job and every target module import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeport.artifact import ArtifactRecord, artifact_size
from edgeport.errors import ModelNotFoundError, UnsupportedModelError


@dataclass(frozen=True)
class ConvertOptions:
    """What every converter accepts; targets read the fields that concern them."""

    out_dir: Path = Path("artifacts")
    imgsz: int | None = None  # None: the size the model was trained at
    opset: int = 17
    name: str | None = None  # file stem of the artifact; default: the model's stem
    command: str = ""  # the command line that asked for the conversion (provenance)
    precision: str = "fp32"  # tflite: fp32, fp16, dynamic, int8; onnx: fp32, fp16, int8; tensorrt: fp16, int8
    io: str = "uint8"  # tflite int8: input/output type, uint8, int8 or float
    data: Path | None = None  # calibration source: DATA.yaml, image folder or video
    calibration_images: int = 300
    calibration_method: str | None = None  # None: the target's default (tflite minmax, onnx/tensorrt percentile)
    calibration_dir: Path | None = None  # cache folder of the calibration set
    max_drop: float | None = None  # points of mAP50-95 the artifact may lose against the float model
    fallback: bool = False  # int8: keep the most sensitive layers in int16 until max_drop holds
    edgetpu: bool = False  # tflite int8 built for the Edge TPU: accuracy control tries blocks after the TPU part first
    progress: Callable[[str], None] | None = None  # called with one line per step
    ort_web_dir: Path | None = None  # onnx-web: onnxruntime-web's package or dist folder (else env, node_modules)
    ort_format: bool = False  # onnx-web: also write the model in onnxruntime's .ort format
    nms: bool = False  # coreml: also write a pipeline with NonMaximumSuppression (for Vision)
    nms_iou: float = 0.45  # coreml --nms: the pipeline's default IoU threshold
    nms_conf: float = 0.25  # coreml --nms: the pipeline's default confidence threshold
    check: bool = True  # run the written artifact against its float source before reporting success
    batch: int = 1  # images per invoke baked into the artifact; 0: a dynamic batch dimension (onnx only)
    platform: str = "rk3588"  # rknn: the Rockchip SoC the .rknn is built for


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
