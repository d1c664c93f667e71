"""The one preprocessing of edgeport: letterbox to the model size and build the input tensor.

The calibration sets and the evaluation use these functions; nothing else resizes images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeport.artifact import TensorSpec


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed on the model canvas: scale per axis and the top-left padding."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    source_hw: tuple[int, int]  # (height, width) of the original image

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (N, 4) in model-input pixels back to original pixels, clipped to the image."""
        out = xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        height, width = self.source_hw
        np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
        return out


def letterbox(rgb: np.ndarray, size_hw: tuple[int, int], pad_value: int = 114,
              interpolation: str = "area") -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to `size_hw`, centred; never stretch.

    Returns (canvas (H, W, 3) uint8, Letterbox). interpolation "area": area averaging when
    shrinking (no aliasing), bilinear when enlarging; "linear": bilinear always, as Ultralytics'
    loaders and predictor do.
    """
    height, width = rgb.shape[:2]
    target_h, target_w = size_hw
    ratio = min(target_h / height, target_w / width)
    new_w, new_h = max(1, min(target_w, round(width * ratio))), max(1, min(target_h, round(height * ratio)))
    if (new_w, new_h) != (width, height):
        flag = cv2.INTER_AREA if ratio < 1 and interpolation == "area" else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=flag)
    pad_w, pad_h = (target_w - new_w) / 2, (target_h - new_h) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = target_h - new_h - top, target_w - new_w - left
    if top or bottom or left or right:
        rgb = cv2.copyMakeBorder(rgb, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    info = Letterbox(scale_x=new_w / width, scale_y=new_h / height, pad_x=left, pad_y=top, source_hw=(height, width))
    return np.ascontiguousarray(rgb), info


def to_input_tensor(canvases: np.ndarray, spec: TensorSpec, layout: str, scale: float = 1 / 255) -> np.ndarray:
    """Turn letterboxed uint8 canvases (B, H, W, 3) into the model's input tensor.

    Float inputs get x * scale in the model's float type; integer inputs get the tensor's own
    quantization (uint8 with scale 1/255 and zero point 0 passes the pixels through untouched).
    """
    batch = canvases
    if layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    if spec.quantized:
        if spec.dtype == "uint8" and spec.zero_point == 0 and abs(spec.scale * 255 - 255 * scale) < 1e-6:
            return np.ascontiguousarray(batch)
        info = np.iinfo(spec.dtype)
        real = batch.astype(np.float32) * scale
        quant = np.round(real / spec.scale) + spec.zero_point
        return np.ascontiguousarray(np.clip(quant, info.min, info.max).astype(spec.dtype))
    if spec.dtype in ("uint8",):
        return np.ascontiguousarray(batch)
    out = np.empty(batch.shape, dtype=spec.dtype)
    np.multiply(batch, np.asarray(scale, dtype=spec.dtype), out=out, casting="unsafe")
    return out
