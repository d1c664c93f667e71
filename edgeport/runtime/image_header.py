"""Image size and EXIF orientation read from the encoded header alone, before any pixel is decoded.

The decompression-bomb guard of image_io relies on it: nothing here allocates in proportion to the pixels,
and nothing touches process-wide state (PIL's Image.MAX_IMAGE_PIXELS, warning filters).
"""

from __future__ import annotations

import io
import struct

from edgeport.errors import CorruptImageError, ImageTooLargeError

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of a TIFF-structured EXIF block; 1 when absent or damaged."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        ifd = struct.unpack(order + "I", tiff[4:8])[0]
        count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
            if tag == 0x0112:
                value = struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0] if kind == 3 else 1
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error, IndexError):
        pass  # a damaged EXIF block must not lose the image
    return 1


def _jpeg(data: bytes) -> tuple[int, int, int]:
    size, orientation, i = None, 1, 2
    while i + 4 <= len(data) and size is None:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        segment = data[i + 4:i + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\0\0") and orientation == 1:
            orientation = exif_orientation(segment[6:])
        elif marker in _JPEG_SOF and len(segment) >= 5:
            height, width = struct.unpack(">HH", segment[1:5])
            size = (width, height)
        elif marker == 0xDA:
            break
        i += 2 + length
    if size is None:
        raise CorruptImageError("damaged JPEG header: no start-of-frame segment")
    return size[0], size[1], orientation


def _png(data: bytes) -> tuple[int, int, int]:
    if data[12:16] != b"IHDR" or len(data) < 24:
        raise CorruptImageError("damaged PNG header: the first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    orientation, i = 1, 8
    while i + 8 <= len(data):  # walk the chunk lengths (some writers put eXIf after the image data)
        length = struct.unpack(">I", data[i:i + 4])[0]
        kind = data[i + 4:i + 8]
        if kind == b"eXIf":
            orientation = exif_orientation(data[i + 8:i + 8 + length])
            break
        if kind == b"IEND":
            break
        i += 12 + length
    return width, height, orientation


def _webp(data: bytes) -> tuple[int, int, int]:
    width = height = None
    orientation, i = 1, 12
    while i + 8 <= len(data):
        kind, length = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        body = data[i + 8:i + 8 + length]
        if kind == b"VP8X" and len(body) >= 10:
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
        elif kind == b"VP8 " and width is None and len(body) >= 10:
            width, height = (v & 0x3FFF for v in struct.unpack("<HH", body[6:10]))
        elif kind == b"VP8L" and width is None and len(body) >= 5:
            bits = int.from_bytes(body[1:5], "little")
            width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif kind == b"EXIF":
            orientation = exif_orientation(body[6:] if body.startswith(b"Exif\0\0") else body)
        i += 8 + length + (length & 1)
    if width is None or height is None:
        raise CorruptImageError("damaged WEBP header: no VP8, VP8L or VP8X chunk")
    return width, height, orientation


def _tiff(data: bytes) -> tuple[int, int, int]:
    from PIL import Image

    try:  # PIL reads TIFF tags lazily; its own bomb check may refuse a huge image first
        with Image.open(io.BytesIO(data)) as image:
            return image.size[0], image.size[1], 1  # the TIFF path lets PIL apply the orientation
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except Exception as exc:  # PIL raises many types for damaged headers
        raise CorruptImageError(f"damaged TIFF header: {exc}") from exc


def read_header(data: bytes, fmt: str) -> tuple[int, int, int]:
    """Return (width, height, EXIF orientation 1..8) of an encoded image from its header alone.

    `fmt` is image_io.sniff_format's name. Raises CorruptImageError when the header is damaged.
    """
    try:
        if fmt == "jpeg":
            return _jpeg(data)
        if fmt == "png":
            return _png(data)
        if fmt == "webp":
            return _webp(data)
        if fmt == "bmp":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height), 1
        if fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return width, height, 1
    except struct.error as exc:
        raise CorruptImageError(f"damaged {fmt.upper()} header: {exc}") from exc
    return _tiff(data)
