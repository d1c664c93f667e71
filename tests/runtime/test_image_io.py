"""Unit tests of edgeport.runtime.image_io: every input kind becomes RGB uint8 (H, W, 3), every bad
input raises its own edgeport.errors.ImageError subclass."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeport.errors import (
    CorruptImageError,
    EdgeportError,
    EmptyImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)
from edgeport.runtime.image_io import decode_bytes, load_image, sniff_format

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# --- helpers ----------------------------------------------------------------------------------


def _encode(pixels_bgr: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, pixels_bgr)
    assert ok
    return buf.tobytes()


def _noise_bgr(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _stored_rgb() -> np.ndarray:
    """A 40x60 (H x W) landscape RGB picture, black with a red 10x10 patch at the top-left corner."""
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :10] = RED
    return rgb


def _jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _red_patch_bbox(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) inclusive bounds of the strongly red pixels."""
    mask = (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
    ys, xs = np.nonzero(mask)
    assert ys.size, "no red patch found"
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def _assert_rgb_uint8(pixels: np.ndarray, hw: tuple[int, int]) -> None:
    assert isinstance(pixels, np.ndarray)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (*hw, 3)


# --- error hierarchy --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ImageNotFoundError, EmptyImageError, NotAnImageError, CorruptImageError,
                                 ImageTooLargeError, UnsupportedImageError])
def test_every_image_error_is_an_image_error_and_an_edgeport_error(cls):
    assert issubclass(cls, ImageError)
    assert issubclass(cls, EdgeportError)
    assert not issubclass(cls, (TypeError, ValueError, OSError))  # callers catch our errors, not builtins


def test_image_errors_are_distinct_classes():
    classes = {ImageNotFoundError, EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError,
               UnsupportedImageError}
    for a in classes:
        for b in classes - {a}:
            assert not issubclass(a, b)


# --- bad bytes --------------------------------------------------------------------------------


def test_jpeg_magic_followed_by_garbage_raises_corrupt_image_error():
    garbage = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptImageError):
        load_image(b"\xff\xd8\xff" + garbage)


def test_jpeg_magic_with_garbage_header_and_end_marker_raises_corrupt_image_error():
    # ends with a proper EOI marker, so only the header parse can catch it
    garbage = np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptImageError, match="header"):
        load_image(b"\xff\xd8\xff" + garbage + b"\xff\xd9")


def test_png_signature_with_garbage_body_raises_corrupt_image_error():
    good = _encode(_noise_bgr(), ".png")
    garbage = np.random.default_rng(3).integers(0, 256, 400, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptImageError):
        load_image(good[:8] + garbage + good[-12:])  # PNG signature ... IEND chunk


def test_truncated_jpeg_raises_corrupt_image_error():
    data = _encode(_noise_bgr(), ".jpg")
    assert load_image(data).shape == (48, 64, 3)  # the whole file is fine
    with pytest.raises(CorruptImageError, match="truncated JPEG"):
        load_image(data[: len(data) // 2])


def test_truncated_png_raises_corrupt_image_error():
    data = _encode(_noise_bgr(), ".png")
    with pytest.raises(CorruptImageError, match="truncated PNG"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"hello world", b"GIF88a not really", b"\x00" * 32, b"<svg></svg>"])
def test_non_image_bytes_raise_not_an_image_error(data):
    with pytest.raises(NotAnImageError):
        load_image(data)


def test_zip_archive_raises_not_an_image_error():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("image.jpg", _encode(_noise_bgr(), ".jpg"))
    with pytest.raises(NotAnImageError):
        load_image(buf.getvalue())


@pytest.mark.parametrize("data", [b"", bytearray(), memoryview(b"")])
def test_empty_bytes_raise_empty_image_error(data):
    with pytest.raises(EmptyImageError):
        load_image(data)


def test_empty_file_raises_empty_image_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty.jpg"):
        load_image(path)


def test_missing_path_raises_image_not_found_error(tmp_path):
    with pytest.raises(ImageNotFoundError):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageNotFoundError):
        load_image(str(tmp_path / "nope.jpg"))


def test_directory_path_raises_image_not_found_error(tmp_path):
    with pytest.raises(ImageNotFoundError):
        load_image(tmp_path)


def test_errors_from_a_file_name_the_path(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"hello world")
    with pytest.raises(NotAnImageError, match="notes.jpg"):
        load_image(path)
    data = _encode(_noise_bgr(), ".jpg")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="notes.jpg"):
        load_image(path)


# Regression: edgeport/runtime/image_io.py, _check_complete (fixed).
def test_valid_jpeg_followed_by_zero_padding_is_decoded():
    data = _encode(_noise_bgr(), ".jpg") + b"\x00" * 100
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert load_image(data).shape == (48, 64, 3)


# Regression: same place (fixed).
def test_valid_jpeg_followed_by_trailer_data_is_decoded():
    data = _encode(_noise_bgr(), ".jpg") + b"MotionPhoto_Data" + bytes(range(256))
    assert load_image(data).shape == (48, 64, 3)


# --- decompression-bomb guard -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A 4000x3000 1-bit PNG: a couple of kB on disk, 12 MP (36 MB of RGB) once decoded."""
    buf = io.BytesIO()
    Image.new("1", (4000, 3000)).save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 20_000
    return data


def test_small_png_with_huge_dimensions_raises_image_too_large_error(bomb_png):
    with pytest.raises(ImageTooLargeError, match="4000x3000"):
        load_image(bomb_png, max_pixels=10_000_000)


def test_huge_png_decodes_when_the_pixel_limit_is_raised(bomb_png):
    pixels = load_image(bomb_png, max_pixels=12_000_000)  # the limit is inclusive
    _assert_rgb_uint8(pixels, (3000, 4000))
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[-1, -1].tolist() == [0, 0, 0]


def test_pixel_limit_applies_to_files_arrays_and_pil_images(tmp_path, bomb_png):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png)
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        load_image(path, max_pixels=10_000_000)
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((100, 101), np.uint8), max_pixels=10_000)
    with pytest.raises(ImageTooLargeError):
        load_image(Image.new("RGB", (101, 100)), max_pixels=10_000)
    assert load_image(np.zeros((100, 100), np.uint8), max_pixels=10_000).shape == (100, 100, 3)


# --- encoded formats --------------------------------------------------------------------------


def test_color_png_bytes_decode_to_rgb():
    bgr = _noise_bgr()
    pixels = load_image(_encode(bgr, ".png"))
    _assert_rgb_uint8(pixels, (48, 64))
    np.testing.assert_array_equal(pixels, bgr[..., ::-1])  # PNG is lossless: exact RGB


def test_jpeg_bytes_decode_to_rgb_close_to_source():
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[:] = (200, 100, 30)  # B, G, R
    pixels = load_image(_encode(bgr, ".jpg"))
    _assert_rgb_uint8(pixels, (32, 32))
    assert np.abs(pixels.astype(int) - [30, 100, 200]).max() <= 4


def test_grayscale_png_becomes_three_equal_channels():
    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 256
    pixels = load_image(_encode(gray.astype(np.uint8), ".png"))
    _assert_rgb_uint8(pixels, (48, 64))
    for c in range(3):
        np.testing.assert_array_equal(pixels[..., c], gray)


def test_rgba_png_drops_alpha_and_keeps_colour_order():
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[:] = (10, 20, 30, 40)  # B, G, R, A (OpenCV order)
    pixels = load_image(_encode(bgra, ".png"))
    _assert_rgb_uint8(pixels, (8, 8))
    assert pixels[3, 3].tolist() == [30, 20, 10]


def test_rgba_png_written_by_pil_is_read_as_rgb():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:] = (250, 5, 60, 0)  # fully transparent, colour must still come through
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    assert load_image(buf.getvalue())[0, 0].tolist() == [250, 5, 60]


def test_16bit_grayscale_png_is_scaled_down_by_8_bits():
    values = np.array([[0, 255, 256, 511], [4660, 32768, 65280, 65535]], np.uint16)
    pixels = load_image(_encode(values, ".png"))
    _assert_rgb_uint8(pixels, (2, 4))
    expected = np.array([[0, 0, 1, 1], [18, 128, 255, 255]], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(pixels[..., c], expected)


def test_16bit_colour_png_is_scaled_down_and_converted_to_rgb():
    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[:] = (0x1000, 0x8000, 0xFF00)  # B, G, R
    pixels = load_image(_encode(bgr16, ".png"))
    assert pixels[1, 1].tolist() == [0xFF, 0x80, 0x10]


@pytest.mark.parametrize("ext", [".bmp", ".tiff", ".webp"])
def test_other_lossless_formats_decode_to_rgb(ext):
    bgr = _noise_bgr(16, 24, seed=5)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    ok, buf = cv2.imencode(ext, bgr, params)
    assert ok
    np.testing.assert_array_equal(load_image(buf.tobytes()), bgr[..., ::-1])


@pytest.mark.parametrize("ext,name", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".tiff", "tiff"),
                                      (".webp", "webp")])
def test_sniff_format_recognises_magic_bytes(ext, name):
    assert sniff_format(_encode(_noise_bgr(8, 8), ext)[:16]) == name
    assert sniff_format(b"hello world") is None


def test_file_path_and_bytes_give_the_same_pixels(tmp_path):
    data = _encode(_noise_bgr(), ".png")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    from_bytes = load_image(data)
    np.testing.assert_array_equal(load_image(path), from_bytes)
    np.testing.assert_array_equal(load_image(str(path)), from_bytes)
    np.testing.assert_array_equal(load_image(bytearray(data)), from_bytes)
    np.testing.assert_array_equal(load_image(memoryview(data)), from_bytes)


# --- EXIF orientation -------------------------------------------------------------------------

# Stored picture: 40x60 landscape, red patch top-left.  For each EXIF tag: display shape and the
# inclusive (y0, y1, x0, x1) box of the red patch after turning to display orientation.
_ORIENTATION_CASES = {
    1: ((40, 60, 3), (0, 9, 0, 9)),
    3: ((40, 60, 3), (30, 39, 50, 59)),  # rotate 180: patch at bottom-right
    6: ((60, 40, 3), (0, 9, 30, 39)),  # rotate 90 clockwise: top-left goes to top-right
    8: ((60, 40, 3), (50, 59, 0, 9)),  # rotate 90 counter-clockwise: top-left goes to bottom-left
}


@pytest.mark.parametrize("orientation", sorted(_ORIENTATION_CASES))
def test_exif_orientation_is_applied_to_jpeg_bytes(orientation):
    shape, (y0, y1, x0, x1) = _ORIENTATION_CASES[orientation]
    pixels = load_image(_jpeg_with_orientation(_stored_rgb(), orientation))
    assert pixels.shape == shape
    by0, by1, bx0, bx1 = _red_patch_bbox(pixels)
    assert abs(by0 - y0) <= 1 and abs(by1 - y1) <= 1 and abs(bx0 - x0) <= 1 and abs(bx1 - x1) <= 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_false_returns_stored_orientation(orientation):
    pixels = load_image(_jpeg_with_orientation(_stored_rgb(), orientation), exif=False)
    assert pixels.shape == (40, 60, 3)
    by0, by1, bx0, bx1 = _red_patch_bbox(pixels)
    assert by0 <= 1 and abs(by1 - 9) <= 1 and bx0 <= 1 and abs(bx1 - 9) <= 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_matches_pil_exif_transpose(orientation):
    from PIL import ImageOps

    data = _jpeg_with_orientation(_stored_rgb(), orientation)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(load_image(data), reference)
    np.testing.assert_array_equal(decode_bytes(data), reference)


def _encode_with_orientation(rgb: np.ndarray, fmt: str, orientation: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "TIFF":
        Image.fromarray(rgb).save(buf, "TIFF", tiffinfo={0x0112: orientation})
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(rgb).save(buf, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_png_and_webp(fmt, orientation):
    shape, (y0, _, x0, _) = _ORIENTATION_CASES[orientation]
    data = _encode_with_orientation(_stored_rgb(), fmt, orientation)
    pixels = load_image(data)
    assert pixels.shape == shape
    assert _red_patch_bbox(pixels)[0] == y0 and _red_patch_bbox(pixels)[2] == x0
    assert load_image(data, exif=False).shape == (40, 60, 3)


# TIFF is decoded through PIL so that its orientation tag is applied exactly once, as PIL's own
# exif_transpose does (OpenCV's TIFF reader turns the pixels by the tag by itself).
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_tiff_orientation_tag_is_applied_exactly_once(orientation):
    from PIL import ImageOps

    data = _encode_with_orientation(_stored_rgb(), "TIFF", orientation)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert reference.shape == _ORIENTATION_CASES[orientation][0]  # the reference itself is right
    np.testing.assert_array_equal(load_image(data), reference)


def test_exif_orientation_is_applied_to_a_file(tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg_with_orientation(_stored_rgb(), 6))
    assert load_image(path).shape == (60, 40, 3)
    assert load_image(path, exif=False).shape == (40, 60, 3)


# --- numpy input ------------------------------------------------------------------------------


def test_numpy_bgr_input_is_swapped_to_rgb():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 1, 2, 3
    pixels = load_image(bgr)  # BGR is the default declared order
    _assert_rgb_uint8(pixels, (4, 5))
    assert pixels[0, 0].tolist() == [3, 2, 1]
    assert bgr[0, 0].tolist() == [1, 2, 3]  # the caller's array is untouched


def test_numpy_rgb_input_is_kept_as_is():
    rgb = _noise_bgr(6, 7, seed=9)
    np.testing.assert_array_equal(load_image(rgb, color="RGB"), rgb)
    np.testing.assert_array_equal(load_image(rgb, color="BGR"), rgb[..., ::-1])


def test_numpy_non_contiguous_input_is_accepted():
    bgr = _noise_bgr(10, 12, seed=4)
    view = bgr[::2, ::-1]  # strided, negative stride
    np.testing.assert_array_equal(load_image(view), view[..., ::-1])


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1)])
def test_numpy_grayscale_input_becomes_three_equal_channels(shape):
    gray = np.arange(30, dtype=np.uint8).reshape(shape)
    pixels = load_image(gray)
    _assert_rgb_uint8(pixels, (5, 6))
    for c in range(3):
        np.testing.assert_array_equal(pixels[..., c], gray.reshape(5, 6))


@pytest.mark.parametrize("color,expected", [("BGR", [30, 20, 10]), ("RGB", [10, 20, 30])])
def test_numpy_four_channel_input_drops_alpha_in_the_declared_order(color, expected):
    four = np.zeros((3, 3, 4), np.uint8)
    four[:] = (10, 20, 30, 200)
    assert load_image(four, color=color)[1, 1].tolist() == expected


def test_numpy_float_input_in_unit_range_is_scaled_to_255():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = (0.0, 0.5, 1.0)
    pixels = load_image(rgb, color="RGB")
    assert pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [0, 128, 255]


def test_numpy_float_input_in_pixel_range_is_rounded_and_clipped():
    rgb = np.zeros((2, 2, 3), np.float64)
    rgb[0, 0] = (-5.0, 100.4, 300.0)
    rgb[1, 1] = (np.nan, 254.6, 2.0)
    pixels = load_image(rgb, color="RGB")
    assert pixels[0, 0].tolist() == [0, 100, 255]
    assert pixels[1, 1].tolist() == [0, 255, 2]


def test_numpy_uint16_input_is_scaled_down_by_8_bits():
    gray = np.array([[0, 255, 256, 65535]], np.uint16)
    assert load_image(gray)[..., 0].tolist() == [[0, 0, 1, 255]]


@pytest.mark.parametrize("array", [np.zeros((4, 4, 3), np.int32), np.zeros((4, 4), bool),
                                   np.zeros((4, 4, 3), np.int64)])
def test_numpy_unsupported_dtype_raises_unsupported_image_error(array):
    with pytest.raises(UnsupportedImageError, match="dtype"):
        load_image(array)


@pytest.mark.parametrize("shape", [(9,), (4, 4, 2), (4, 4, 5), (2, 4, 4, 3)])
def test_numpy_unsupported_shape_raises_unsupported_image_error(shape):
    with pytest.raises(UnsupportedImageError, match="shape"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (0,)])
def test_empty_numpy_array_raises_empty_image_error(shape):
    with pytest.raises(EmptyImageError):
        load_image(np.zeros(shape, np.uint8))


def test_unknown_colour_order_raises_unsupported_image_error():
    with pytest.raises(UnsupportedImageError, match="color"):
        load_image(np.zeros((2, 2, 3), np.uint8), color="BRG")


# --- PIL input --------------------------------------------------------------------------------


def test_pil_rgb_image_is_returned_as_rgb():
    rgb = _noise_bgr(6, 8, seed=6)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb, "RGB")), rgb)


@pytest.mark.parametrize("mode,colour,expected", [("L", 77, [77, 77, 77]), ("RGBA", (1, 2, 3, 4), [1, 2, 3]),
                                                  ("P", 0, [0, 0, 0]), ("1", 1, [255, 255, 255]),
                                                  ("CMYK", (0, 0, 0, 0), [255, 255, 255])])
def test_pil_images_of_other_modes_become_rgb(mode, colour, expected):
    pixels = load_image(Image.new(mode, (5, 3), colour))
    _assert_rgb_uint8(pixels, (3, 5))
    assert pixels[2, 4].tolist() == expected


def test_pil_16bit_image_is_scaled_down_by_8_bits():
    values = np.array([[0, 256, 4660, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    pixels = load_image(image)
    _assert_rgb_uint8(pixels, (1, 4))
    assert pixels[..., 0].tolist() == [[0, 1, 18, 255]]
    assert pixels[..., 2].tolist() == [[0, 1, 18, 255]]


def test_pil_16bit_png_file_matches_the_bytes_path():
    values = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000).astype(np.uint16)
    data = _encode(values, ".png")
    image = Image.open(io.BytesIO(data))
    assert image.mode.startswith("I")
    np.testing.assert_array_equal(load_image(image), load_image(data))


def test_pil_float_image_is_converted():
    image = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32))
    assert image.mode == "F"
    assert load_image(image)[..., 1].tolist() == [[0, 128], [255, 64]]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_pil_image_with_exif_orientation_is_turned_to_display(orientation):
    shape, (y0, y1, x0, x1) = _ORIENTATION_CASES[orientation]
    image = Image.open(io.BytesIO(_jpeg_with_orientation(_stored_rgb(), orientation)))
    pixels = load_image(image)
    assert pixels.shape == shape
    by0, by1, bx0, bx1 = _red_patch_bbox(pixels)
    assert abs(by0 - y0) <= 1 and abs(by1 - y1) <= 1 and abs(bx0 - x0) <= 1 and abs(bx1 - x1) <= 1
    assert load_image(image, exif=False).shape == (40, 60, 3)


# --- unsupported inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("source", [42, 3.5, None, [[0, 0, 0]], {"path": "a.jpg"}, object()])
def test_unsupported_input_type_raises_unsupported_image_error(source):
    with pytest.raises(UnsupportedImageError, match="unsupported image input"):
        load_image(source)
