"""Each target's own options: one small frozen dataclass per target that has flags of its own (the
registry, edgeport.convert.targets, names the type and the flags that set its fields). Light: no imports.

What every target reads (precision, data, out_dir...) is `ConvertOptions` (edgeport.convert.base); a target
reads its own options as `job.target_options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TfliteOptions:
    """tflite: the int8 input/output type and the accuracy-aware int16 fallback."""

    io: str = "uint8"  # int8: input/output type, uint8, int8 or float
    fallback: bool = False  # int8: keep the most sensitive layers in int16 until --max-drop holds
    # internal (no flag): set by the edgetpu target; accuracy control tries the blocks after the TPU part first
    edgetpu: bool = field(default=False, metadata={"internal": True})


@dataclass(frozen=True)
class EdgeTpuOptions:
    """edgetpu: the input/output type of the int8 TFLite it compiles (integer only)."""

    io: str = "uint8"


@dataclass(frozen=True)
class OnnxWebOptions:
    """onnx-web: where onnxruntime-web is, and whether to also write the .ort model."""

    ort_web_dir: Path | None = None  # onnxruntime-web's package or dist folder (else env, node_modules)
    ort_format: bool = False  # also write the model in onnxruntime's .ort format


@dataclass(frozen=True)
class CoremlOptions:
    """coreml: the optional NonMaximumSuppression pipeline and its default thresholds."""

    nms: bool = False  # also write a pipeline with NonMaximumSuppression (for Vision)
    nms_iou: float = 0.45  # the pipeline's default IoU threshold
    nms_conf: float = 0.25  # the pipeline's default confidence threshold


@dataclass(frozen=True)
class RknnOptions:
    """rknn: the Rockchip SoC the .rknn is built for."""

    platform: str = "rk3588"
