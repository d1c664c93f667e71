"""The one preprocessing of edgeport: letterbox to the model size and build the input tensor.

The calibration sets and the evaluation use these functions; nothing else resizes images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeport.artifact import TensorSpec

if TYPE_CHECKING:
    from edgeport.runtime.image_io import Reduction


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


@dataclass(frozen=True)
class ReducedLetterbox:
    """A Letterbox of an image decoded at reduced scale (a JPEG decoded at 1/f by libjpeg): boxes go back
    through the letterbox to the decoded pixels, then through `reduction` (an image_io.Reduction) to the
    full image, whose size is `source_hw`."""

    letterbox: Letterbox
    reduction: Reduction

    @property
    def source_hw(self) -> tuple[int, int]:
        return self.reduction.original_hw

    @property
    def factor(self) -> int:
        return self.reduction.factor

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        return self.reduction.to_original(self.letterbox.to_original(xyxy))


def _geometry(height: int, width: int, size_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(new_w, new_h, top, left) of an image placed on the model canvas, centred, never stretched."""
    target_h, target_w = size_hw
    ratio = min(target_h / height, target_w / width)
    new_w, new_h = max(1, min(target_w, round(width * ratio))), max(1, min(target_h, round(height * ratio)))
    pad_w, pad_h = (target_w - new_w) / 2, (target_h - new_h) / 2
    return new_w, new_h, round(pad_h - 0.1), round(pad_w - 0.1)


def letterbox(rgb: np.ndarray, size_hw: tuple[int, int], pad_value: int = 114,
              interpolation: str = "area", out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to `size_hw`, centred; never stretch.

    Returns (canvas (H, W, 3) uint8, Letterbox). The image is resized straight into its place on the
    canvas (`out` when given, e.g. one slot of a batch) and only the bars are filled: no other copy.
    interpolation "area": area averaging when shrinking (no aliasing), bilinear when enlarging;
    "linear": bilinear always, as Ultralytics' loaders and predictor do.
    """
    height, width = rgb.shape[:2]
    target_h, target_w = size_hw
    new_w, new_h, top, left = _geometry(height, width, size_hw)
    canvas = np.empty((target_h, target_w, 3), np.uint8) if out is None else out
    canvas[:top] = pad_value
    canvas[top + new_h:] = pad_value
    canvas[top:top + new_h, :left] = pad_value
    canvas[top:top + new_h, left + new_w:] = pad_value
    place = canvas[top:top + new_h, left:left + new_w]
    if (new_w, new_h) == (width, height):
        place[...] = rgb
    else:
        flag = cv2.INTER_AREA if new_w < width and interpolation == "area" else cv2.INTER_LINEAR
        cv2.resize(rgb, (new_w, new_h), dst=place, interpolation=flag)
    info = Letterbox(scale_x=new_w / width, scale_y=new_h / height, pad_x=left, pad_y=top, source_hw=(height, width))
    return canvas, info


def letterbox_batch(images_rgb, size_hw: tuple[int, int], pad_value: int = 114,
                    interpolation: str = "area") -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox every image straight into one (B, H, W, 3) uint8 batch; return it and the placements."""
    batch = np.empty((len(images_rgb), *size_hw, 3), np.uint8)
    return batch, [letterbox(rgb, size_hw, pad_value, interpolation, out=batch[i])[1]
                   for i, rgb in enumerate(images_rgb)]


@lru_cache(maxsize=16)
def _quantize_table(dtype: str, scale: float, tensor_scale: float, zero_point: int) -> np.ndarray:
    """The quantized value of every uint8 pixel: round(pixel * scale / tensor_scale) + zero_point, clipped."""
    info = np.iinfo(dtype)
    real = np.arange(256, dtype=np.float64) * scale
    return np.clip(np.round(real / tensor_scale) + zero_point, info.min, info.max).astype(dtype)


def to_input_tensor(canvases: np.ndarray, spec: TensorSpec, layout: str, scale: float = 1 / 255) -> np.ndarray:
    """Turn letterboxed uint8 canvases (B, H, W, 3) into the model's input tensor, in one pass.

    Float inputs get x * scale in the model's float type; integer inputs get the tensor's own
    quantization through a 256-entry table (uint8 with scale 1/255 and zero point 0 passes the
    pixels through untouched, without a copy when the layout is NHWC).
    """
    batch = canvases
    if layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    if spec.quantized:
        if spec.dtype == "uint8" and spec.zero_point == 0 and abs(spec.scale * 255 - 255 * scale) < 1e-6:
            return np.ascontiguousarray(batch)
        table = _quantize_table(spec.dtype, float(scale), float(spec.scale), int(spec.zero_point))
        return table[batch]  # fancy indexing writes a new C-contiguous array in the batch's (layout's) order
    if spec.dtype in ("uint8",):
        return np.ascontiguousarray(batch)
    out = np.empty(batch.shape, dtype=spec.dtype)
    np.multiply(batch, np.asarray(scale, dtype=spec.dtype), out=out, casting="unsafe")
    return out
