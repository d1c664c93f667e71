"""Image decoding for the runtime: any supported input becomes RGB uint8 pixels (H, W, 3).

EXIF orientation is applied; bad input raises a specific `edgeport.errors.ImageError`.
"""

from __future__ import annotations

import io
import os
import warnings
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


def _header(data: bytes, fmt: str) -> tuple[int, int, int]:
    """Return (width, height, EXIF orientation 1..8) read from the header without decoding pixels."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies
            try:
                with Image.open(io.BytesIO(data)) as im:
                    width, height = im.size
                    try:
                        orientation = int(im.getexif().get(0x0112, 1))
                    except Exception:  # a damaged EXIF block must not lose the image
                        orientation = 1
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception as exc:  # PIL raises many types for damaged headers
        raise CorruptImageError(f"damaged {fmt.upper()} header: {exc}") from exc
    return width, height, orientation if 1 <= orientation <= 8 else 1


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

    Raises EmptyImageError, NotAnImageError, CorruptImageError or ImageTooLargeError.
    """
    data = bytes(data)
    if not data:
        raise EmptyImageError("empty image: zero bytes")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise NotAnImageError(f"not an image: unknown format (first bytes {data[:8]!r})")
    _check_complete(data, fmt)
    width, height, orientation = _header(data, fmt)
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(raise max_pixels if this is intended)")
    if fmt == "tiff":  # OpenCV's TIFF reader turns by the tag on its own; PIL lets us choose
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return _from_pil(image, exif, max_pixels)
        except OSError as exc:
            raise CorruptImageError(f"corrupt TIFF: {exc}") from exc
    # orientation is applied below, the same way for every other format
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION
    buffer = np.frombuffer(data, dtype=np.uint8)
    pixels = cv2.imdecode(buffer, flags)
    if pixels is None or pixels.size == 0:
        raise CorruptImageError(f"corrupt {fmt.upper()}: the decoder could not read the pixels")
    pixels = _channels_to_rgb(_to_uint8(pixels), "BGR")
    if exif and fmt in ("jpeg", "png", "webp"):
        pixels = apply_orientation(pixels, orientation)
    return pixels


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
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageNotFoundError(f"image not found: {path}")
        try:
            return decode_bytes(path.read_bytes(), exif=exif, max_pixels=max_pixels)
        except (EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), exif=exif, max_pixels=max_pixels)
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
