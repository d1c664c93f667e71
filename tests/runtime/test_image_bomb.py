"""Decompression bombs are refused from the header, before any pixel is decoded, with no process-wide state."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from edgeport.errors import ImageTooLargeError
from edgeport.runtime.image_io import decode_bytes, load_image


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of under 200 bytes whose IHDR says width x height (8-bit grey), with a valid zlib stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 50_000, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# The decode runs in a child process whose address space is capped at 3 GB (a full decode of the bomb
# needs 10 GB). Its peak RSS is the kernel's high-water mark of its own memory (VmHWM): getrusage's
# ru_maxrss of a child starts from the parent's RSS at fork time on Linux, pytest's hundreds of MB.
_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from edgeport.runtime.image_io import decode_bytes
from edgeport.errors import ImageTooLargeError
data = sys.stdin.buffer.read()
for _ in range(3):
    try:
        decode_bytes(data)
    except ImageTooLargeError as exc:
        message = str(exc)
print(message)
print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def _child_peak_rss_mb(data: bytes) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD], input=data, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    message, peak_kb = done.stdout.decode().splitlines()[:2]
    return message, int(peak_kb) / 1024


def test_bomb_png_is_under_200_bytes_and_says_100000_squared():
    data = bomb_png()
    assert len(data) < 200
    assert struct.unpack(">II", data[16:24]) == (100_000, 100_000)


def test_bomb_refused_from_header_with_low_peak_rss():
    message, peak_mb = _child_peak_rss_mb(bomb_png())
    assert "100000x100000" in message and "exceeds the limit" in message
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB: the bomb was decoded"


def test_bomb_refused_even_when_pil_limit_is_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLargeError, match="100000x100000"):
        decode_bytes(bomb_png(), max_pixels=64_000_000)


def test_decoding_leaves_pil_pixel_limit_alone_across_threads():
    before = Image.MAX_IMAGE_PIXELS
    buf = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buf, "PNG")
    png = buf.getvalue()
    seen: list[object] = []

    def work() -> None:
        for _ in range(200):
            decode_bytes(png)
            seen.append(Image.MAX_IMAGE_PIXELS)
            with pytest.raises(ImageTooLargeError):
                decode_bytes(bomb_png(), max_pixels=1000)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Image.MAX_IMAGE_PIXELS == before and set(seen) == {before}


def test_png_exif_orientation_read_without_decoding():
    """A PNG with an eXIf chunk is still turned; one without is not decoded to find that out."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(buf, "PNG", exif=exif.tobytes())
    assert load_image(buf.getvalue()).shape == (60, 40, 3)


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "WEBP", "TIFF"])
def test_every_format_is_refused_from_its_header(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, fmt)
    with pytest.raises(ImageTooLargeError, match="300x200"):
        load_image(buf.getvalue(), max_pixels=300 * 200 - 1)
    assert load_image(buf.getvalue(), max_pixels=300 * 200).shape == (200, 300, 3)


def test_png_exif_after_the_image_data_is_found_from_the_chunks():
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    end = data.rindex(b"IEND") - 4
    tiff = exif.tobytes().removeprefix(b"Exif\0\0")  # a PNG eXIf chunk holds the TIFF block alone
    late = data[:end] + _chunk(b"eXIf", tiff) + data[end:]
    assert load_image(late).shape == (60, 40, 3)
