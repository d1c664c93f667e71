"""Large JPEGs are decoded at reduced scale for the model, with EXIF orientation and boxes exact."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeport.runtime.image_io import apply_orientation, decode_bytes, decode_for_model


def _jpeg(bgr: np.ndarray, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).save(buf, "JPEG", quality=100, exif=exif.tobytes())
    return buf.getvalue()


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


# 1281 x 1033 is no multiple of 8: a 1/8 decode has a partial last block (7 and 7 pixels of slack),
# which comes first along an axis the orientation reverses.
@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_boxes_map_to_full_pixels_exactly(orientation):
    stored = np.zeros((1033, 1281, 3), np.uint8)
    stored[400:720, 256:640] = 255  # block-aligned, so its edges stay sharp at 1/8
    data = _jpeg(stored, orientation)
    pixels, reduction = decode_for_model(data, (160, 160))
    assert reduction.factor == 8
    expected = _bbox(apply_orientation(stored, orientation)[..., 0] > 128)
    found = reduction.to_original(_bbox(pixels[..., 0] > 128)[None])[0]
    assert reduction.original_hw == apply_orientation(stored, orientation).shape[:2]
    np.testing.assert_allclose(found, expected, atol=1.0)


@pytest.mark.parametrize(("size_hw", "factor"), [((1000, 1000), 1), ((640, 640), 2), ((500, 500), 2), ((320, 320), 4),
                                                 ((160, 160), 8), ((100, 100), 8)])
def test_reduction_never_goes_below_the_model_size(size_hw, factor):
    data = _jpeg(np.full((1080, 1920, 3), 90, np.uint8))
    pixels, reduction = decode_for_model(data, size_hw)
    assert reduction.factor == factor and reduction.original_hw == (1080, 1920)
    ratio = min(size_hw[0] / 1080, size_hw[1] / 1920)
    assert pixels.shape[1] >= round(1920 * ratio) and pixels.shape[0] >= round(1080 * ratio)


def test_rotated_jpeg_uses_display_axes_for_the_factor():
    data = _jpeg(np.full((400, 2000, 3), 90, np.uint8), orientation=6)  # displayed 400 wide, 2000 tall
    pixels, reduction = decode_for_model(data, (500, 500))
    assert reduction.factor == 4 and pixels.shape[:2] == (500, 100) and reduction.original_hw == (2000, 400)


def test_png_and_small_jpeg_are_decoded_in_full():
    ok, png = cv2.imencode(".png", np.zeros((1000, 1000, 3), np.uint8))
    assert decode_for_model(png.tobytes(), (100, 100))[1].factor == 1
    assert decode_for_model(_jpeg(np.zeros((300, 300, 3), np.uint8)), (160, 160))[1].factor == 1
    assert decode_bytes(_jpeg(np.zeros((1600, 1600, 3), np.uint8))).shape == (1600, 1600, 3)


def test_detector_boxes_on_a_large_jpeg_match_the_full_decode(onnx_artifact, val_images):
    from edgeport.runtime import Detector

    detector = Detector(onnx_artifact)
    image = cv2.imread(str(val_images[0]))
    large = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    data = _jpeg(large)
    reduced = detector.detect(data)
    full = detector.detect_rgb([decode_bytes(data)])[0]
    assert reduced.image_hw == full.image_hw == large.shape[:2]
    assert len(full) > 0 and len(reduced) == len(full)
    assert reduced.class_id.tolist() == full.class_id.tolist()
    np.testing.assert_allclose(reduced.xyxy, full.xyxy, atol=0.01 * max(large.shape))
