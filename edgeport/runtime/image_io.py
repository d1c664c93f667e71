"""Image decoding for the runtime: any supported input becomes RGB uint8 pixels (H, W, 3).

EXIF orientation is applied; bad input raises a specific `edgeport.errors.ImageError`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import cv2
import numpy as np

from edgeport.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)
from edgeport.runtime.image_header import read_header

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
ColorOrder = Literal["BGR", "RGB"]

DEFAULT_MAX_PIXELS = 64_000_000  # a 64 MP image decodes to 192 MB of RGB

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff_format(data: bytes) -> str | None:
    """Return the image format named by the leading magic bytes, or None when unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def _jpeg_scan_start(data: bytes) -> int:
    """Return the offset of the first start-of-scan marker, walking the segments (skips EXIF thumbnails)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xDA:
            return i
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return -1


def _check_complete(data: bytes, fmt: str) -> None:
    """Raise CorruptImageError when a JPEG or PNG stream is visibly cut short (trailing data is allowed)."""
    if fmt == "jpeg":
        scan = _jpeg_scan_start(data)
        if scan < 0:
            raise CorruptImageError("damaged JPEG header: no start-of-scan segment")
        if data.find(b"\xff\xd9", scan) < 0:
            raise CorruptImageError("truncated JPEG: the end-of-image marker is missing")
    if fmt == "png" and b"IEND\xaeB`\x82" not in data:
        raise CorruptImageError("truncated PNG: the IEND chunk is missing")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        scale = 255.0 if pixels.size and float(np.nanmax(pixels)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(pixels) * scale, 0, 255).round().astype(np.uint8)
    raise UnsupportedImageError(f"unsupported pixel dtype {pixels.dtype}; use uint8, uint16 or float")


def _channels_to_rgb(pixels: np.ndarray, order: ColorOrder) -> np.ndarray:
    """Turn (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) pixels in `order` into RGB (H, W, 3)."""
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2RGB)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise UnsupportedImageError(f"unsupported image shape {pixels.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if pixels.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if order == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(pixels, code)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if order == "BGR" else np.ascontiguousarray(pixels)


def decode_bytes(data: bytes, *, exif: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image to RGB uint8 (H, W, 3), honouring EXIF orientation unless exif=False.

    The size is checked from the header before any pixel is decoded (decompression bombs).
    Raises EmptyImageError, NotAnImageError, CorruptImageError or ImageTooLargeError.
    """
    return _decode(data, exif, max_pixels, None)[0]


def decode_for_model(data: bytes, size_hw: tuple[int, int], *, exif: bool = True,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, Reduction]:
    """Decode for a model of input `size_hw`: a JPEG at least twice that size is decoded at 1/2, 1/4 or
    1/8 scale by libjpeg (DCT scaling), never below the model size. Returns (RGB pixels, Reduction),
    whose `to_original` maps boxes on those pixels back to the full image. Raises like decode_bytes.
    """
    return _decode(data, exif, max_pixels, size_hw)


def _decode(data: bytes, exif: bool, max_pixels: int,
            size_hw: tuple[int, int] | None) -> tuple[np.ndarray, Reduction]:
    data = bytes(data)
    if not data:
        raise EmptyImageError("empty image: zero bytes")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise NotAnImageError(f"not an image: unknown format (first bytes {data[:8]!r})")
    _check_complete(data, fmt)
    width, height, orientation = read_header(data, fmt)
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(raise max_pixels if this is intended)")
    if fmt == "tiff":  # OpenCV's TIFF reader turns by the tag on its own; PIL lets us choose
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                pixels = _from_pil(image, exif, max_pixels)
                return pixels, Reduction.none(pixels.shape[:2])
        except OSError as exc:
            raise CorruptImageError(f"corrupt TIFF: {exc}") from exc
    orientation = orientation if exif and fmt in ("jpeg", "png", "webp") else 1
    factor = _reduction_factor(width, height, orientation, size_hw) if fmt == "jpeg" else 1
    # orientation is applied below, the same way for every other format
    flags = (_REDUCED[factor] if factor > 1 else cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) \
        | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if pixels is None or pixels.size == 0:
        raise CorruptImageError(f"corrupt {fmt.upper()}: the decoder could not read the pixels")
    pixels = apply_orientation(_channels_to_rgb(_to_uint8(pixels), "BGR"), orientation)
    return pixels, Reduction.of(factor, (height, width), orientation, pixels.shape[:2])


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _reduction_factor(width: int, height: int, orientation: int, size_hw: tuple[int, int] | None) -> int:
    """The largest of 8, 4, 2 that keeps the decoded image at least as large as the letterboxed one."""
    if size_hw is None:
        return 1
    if orientation >= 5:  # display axes are the stored ones swapped
        width, height = height, width
    room = max(height / size_hw[0], width / size_hw[1])  # 1 / the letterbox ratio
    return next((f for f in (8, 4, 2) if f <= room), 1)


@dataclass(frozen=True)
class Reduction:
    """How decoded pixels relate to the full image (both in display orientation).

    A libjpeg 1/f decode gives ceil(W / f) pixels, pixel i covering full-image pixels [f*i, f*i + f);
    along an axis the orientation reverses, the partial last block comes first: `offset_xy` removes it.
    """

    factor: int
    original_hw: tuple[int, int]
    offset_xy: tuple[int, int] = (0, 0)

    @classmethod
    def none(cls, hw: tuple[int, int]) -> "Reduction":
        return cls(1, (int(hw[0]), int(hw[1])))

    @classmethod
    def of(cls, factor: int, stored_hw: tuple[int, int], orientation: int, decoded_hw: tuple[int, int]) -> "Reduction":
        height, width = stored_hw
        decoded_h, decoded_w = decoded_hw
        if orientation >= 5:
            height, width = width, height
        slack_x, slack_y = decoded_w * factor - width, decoded_h * factor - height
        flipped_x, flipped_y = orientation in (2, 3, 6, 7), orientation in (3, 4, 7, 8)
        return cls(factor, (height, width), (slack_x if flipped_x else 0, slack_y if flipped_y else 0))

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (N, 4) xyxy on the decoded pixels to full-image pixels, clipped to the image."""
        if self.factor == 1:
            return xyxy
        out = xyxy.astype(np.float32) * np.float32(self.factor)
        out[:, 0::2] -= self.offset_xy[0]
        out[:, 1::2] -= self.offset_xy[1]
        np.clip(out[:, 0::2], 0, self.original_hw[1], out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.original_hw[0], out=out[:, 1::2])
        return out


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Return pixels turned from stored to display orientation for an EXIF tag value (1..8)."""
    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(pixels), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _from_pil(image: Any, exif: bool, max_pixels: int) -> np.ndarray:
    from PIL import ImageOps

    width, height = image.size
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    if exif:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit, scaled like 16-bit bytes and arrays
        return _channels_to_rgb((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8), "RGB")
    if image.mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        pixels = (pixels >> 8 if pixels.max(initial=0) > 255 else pixels).clip(0, 255).astype(np.uint8)
        return _channels_to_rgb(pixels, "RGB")
    if image.mode == "F":
        return _channels_to_rgb(_to_uint8(np.asarray(image)), "RGB")
    return np.asarray(image.convert("RGB"))


def load_image(source: ImageSource, *, color: ColorOrder = "BGR", exif: bool = True,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return RGB uint8 pixels (H, W, 3) from a path, encoded bytes, a numpy array or a PIL image.

    `color` declares the channel order of a numpy array (OpenCV's BGR by default).
    Raises a subclass of edgeport.errors.ImageError for anything that is not a usable image.
    """
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return _decode_source(source, exif, max_pixels, None)[0]
    if isinstance(source, np.ndarray):
        if color not in ("BGR", "RGB"):
            raise UnsupportedImageError(f"color must be 'BGR' or 'RGB', not {color!r}")
        if source.size == 0:
            raise EmptyImageError("empty image array")
        if source.ndim >= 2 and max_pixels and source.shape[0] * source.shape[1] > max_pixels:
            raise ImageTooLargeError(f"image array of {source.shape[1]}x{source.shape[0]} exceeds {max_pixels:,} pixels")
        return _channels_to_rgb(_to_uint8(source), color)
    if type(source).__module__.startswith("PIL.") and hasattr(source, "convert"):
        return _from_pil(source, exif, max_pixels)
    raise UnsupportedImageError(
        f"unsupported image input of type {type(source).__name__}; pass a path, bytes, numpy array or PIL image")


def load_for_model(source: ImageSource, size_hw: tuple[int, int], *, color: ColorOrder = "BGR", exif: bool = True,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, Reduction]:
    """Like load_image, for a model of input `size_hw`: a large JPEG (path or bytes) is decoded at reduced
    scale (see decode_for_model). Returns (RGB pixels, Reduction mapping their boxes to the full image).
    """
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return _decode_source(source, exif, max_pixels, size_hw)
    pixels = load_image(source, color=color, exif=exif, max_pixels=max_pixels)
    return pixels, Reduction.none(pixels.shape[:2])


def _decode_source(source: str | os.PathLike | bytes | bytearray | memoryview, exif: bool, max_pixels: int,
                   size_hw: tuple[int, int] | None) -> tuple[np.ndarray, Reduction]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), exif, max_pixels, size_hw)
    path = Path(source)
    if not path.is_file():
        raise ImageNotFoundError(f"image not found: {path}")
    try:
        return _decode(path.read_bytes(), exif, max_pixels, size_hw)
    except (EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
