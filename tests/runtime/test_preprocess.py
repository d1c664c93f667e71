"""Unit tests of edgeport.runtime.preprocess: letterbox geometry, the inverse box mapping and the
input tensor for each input dtype and layout."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.artifact import TensorSpec
from edgeport.runtime.preprocess import Letterbox, letterbox, to_input_tensor

PAD = 114


def _content_bbox(canvas: np.ndarray, pad_value: int = PAD) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive bottom/right, of the pixels that are not padding."""
    mask = np.any(canvas != pad_value, axis=2)
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _solid(h: int, w: int, value: int = 200) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# --- letterbox geometry -----------------------------------------------------------------------


@pytest.mark.parametrize("hw,size,content_hw,pad_yx", [
    ((480, 640), (320, 320), (240, 320), (40, 0)),  # landscape: bars top and bottom
    ((640, 480), (320, 320), (320, 240), (0, 40)),  # portrait: bars left and right
    ((500, 500), (320, 320), (320, 320), (0, 0)),  # square: no bars
    ((100, 200), (320, 320), (160, 320), (80, 0)),  # enlarged landscape
    ((480, 640), (320, 480), (320, 427), (0, 26)),  # non-square target, width-bound side has bars
    ((480, 640), (480, 320), (240, 320), (120, 0)),  # tall target
    ((720, 1280), (384, 640), (360, 640), (12, 0)),  # 16:9 into 5:3
])
def test_letterbox_keeps_aspect_ratio_and_centres_the_image(hw, size, content_hw, pad_yx):
    canvas, info = letterbox(_solid(*hw), size)
    assert canvas.shape == (*size, 3) and canvas.dtype == np.uint8
    assert canvas.flags["C_CONTIGUOUS"]
    top, bottom, left, right = _content_bbox(canvas)
    assert (bottom - top, right - left) == content_hw
    assert (top, left) == pad_yx == (info.pad_y, info.pad_x)
    # centred: the two bars of each axis differ by at most one pixel
    assert abs(top - (size[0] - bottom)) <= 1 and abs(left - (size[1] - right)) <= 1
    # never stretched: both axes use the same ratio, up to rounding to whole pixels
    ratio = min(size[0] / hw[0], size[1] / hw[1])
    assert abs((bottom - top) - hw[0] * ratio) <= 0.5 + 1e-9 and abs((right - left) - hw[1] * ratio) <= 0.5 + 1e-9
    assert abs(info.scale_x - info.scale_y) <= 1 / min(content_hw)
    assert info.scale_x == pytest.approx(content_hw[1] / hw[1]) and info.scale_y == pytest.approx(content_hw[0] / hw[0])
    assert info.source_hw == hw


@pytest.mark.parametrize("pad_value", [0, 114, 255])
def test_letterbox_fills_bars_with_the_pad_value(pad_value):
    canvas, info = letterbox(_solid(100, 300, value=7), (320, 320), pad_value=pad_value)
    assert (info.pad_y, info.pad_x) == (106, 0)  # content is 320 x 107, bars of 106 and 107 rows
    assert np.all(canvas[:106] == pad_value) and np.all(canvas[106 + 107:] == pad_value)
    assert np.all(canvas[106: 106 + 107] == 7)  # content rows are all image, none padding


def test_letterbox_of_an_image_already_at_size_returns_it_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    canvas, info = letterbox(rgb, (320, 320))
    np.testing.assert_array_equal(canvas, rgb)
    assert info == Letterbox(1.0, 1.0, 0, 0, (320, 320))


def test_letterbox_does_not_modify_its_input():
    rgb = _solid(100, 300)
    before = rgb.copy()
    letterbox(rgb, (320, 320), pad_value=0)
    np.testing.assert_array_equal(rgb, before)


def test_letterbox_of_an_extreme_aspect_ratio_keeps_at_least_one_row():
    canvas, info = letterbox(_solid(1, 2000), (320, 320))
    assert canvas.shape == (320, 320, 3)
    top, bottom, left, right = _content_bbox(canvas)
    assert (bottom - top, right - left) == (1, 320)


def test_letterbox_keeps_left_and_top_of_the_picture_where_they_belong():
    rgb = np.zeros((200, 400, 3), np.uint8)
    rgb[:, :200] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 200:] = (0, 0, 255)
    canvas, info = letterbox(rgb, (320, 320))
    row = canvas[160]
    assert row[5].tolist() == [255, 0, 0] and row[-5].tolist() == [0, 0, 255]


# --- boxes back to the original image ---------------------------------------------------------


@pytest.mark.parametrize("hw,size", [((480, 640), (320, 320)), ((640, 480), (320, 320)), ((100, 200), (320, 320)),
                                     ((480, 640), (320, 480)), ((333, 517), (256, 416))])
def test_to_original_inverts_the_letterbox_mapping_exactly(hw, size):
    _, info = letterbox(_solid(*hw), size)
    original = np.array([[10.0, 20.0, 100.0, 90.0], [0.0, 0.0, hw[1], hw[0]], [33.5, 44.25, 60.0, 70.0]])
    forward = original.copy()
    forward[:, [0, 2]] = forward[:, [0, 2]] * info.scale_x + info.pad_x
    forward[:, [1, 3]] = forward[:, [1, 3]] * info.scale_y + info.pad_y
    back = info.to_original(forward)
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_allclose(back, original, atol=1e-3)


@pytest.mark.parametrize("hw,size,box", [
    ((480, 640), (320, 320), (100, 50, 400, 300)),
    ((640, 480), (320, 320), (37, 211, 300, 590)),
    ((100, 200), (320, 320), (20, 10, 150, 70)),  # enlarged
    ((480, 640), (320, 480), (250, 100, 630, 470)),
])
def test_box_drawn_in_the_image_round_trips_through_letterbox(hw, size, box):
    x0, y0, x1, y1 = box
    rgb = np.zeros((*hw, 3), np.uint8)
    rgb[y0:y1, x0:x1] = 255
    canvas, info = letterbox(rgb, size, pad_value=0)
    ys, xs = np.nonzero(canvas[..., 0] > 127)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)  # canvas pixels
    back = info.to_original(found)[0]
    # one canvas pixel of edge uncertainty (resampling) is 1/scale original pixels
    tol_x, tol_y = 1 / info.scale_x + 1e-3, 1 / info.scale_y + 1e-3
    assert abs(back[0] - x0) <= tol_x and abs(back[2] - x1) <= tol_x
    assert abs(back[1] - y0) <= tol_y and abs(back[3] - y1) <= tol_y


# Regression: edgeport/runtime/preprocess.py, Letterbox.to_original, the two np.clip lines (fixed).
def test_to_original_clips_boxes_to_the_image():
    _, info = letterbox(_solid(480, 640), (320, 320))  # content rows 40..280 of the canvas
    boxes = np.array([[-10.0, 0.0, 400.0, 319.0],  # reaches into both bars and past the right edge
                      [5.0, 20.0, 30.0, 35.0]])  # entirely inside the top bar
    back = info.to_original(boxes)
    np.testing.assert_allclose(back[0], [0.0, 0.0, 640.0, 480.0])
    np.testing.assert_allclose(back[1], [10.0, 0.0, 60.0, 0.0])
    assert np.all(back[:, [0, 2]] >= 0) and np.all(back[:, [0, 2]] <= 640)
    assert np.all(back[:, [1, 3]] >= 0) and np.all(back[:, [1, 3]] <= 480)


def test_to_original_does_not_modify_its_input_and_accepts_no_boxes():
    _, info = letterbox(_solid(480, 640), (320, 320))
    boxes = np.array([[10.0, 50.0, 20.0, 60.0]])
    before = boxes.copy()
    info.to_original(boxes)
    np.testing.assert_array_equal(boxes, before)
    assert info.to_original(np.zeros((0, 4), np.float32)).shape == (0, 4)


# --- input tensor -----------------------------------------------------------------------------


def _canvases(batch: int = 2, h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)


def test_float32_nchw_tensor_is_transposed_and_divided_by_255():
    canvases = _canvases()
    spec = TensorSpec("images", (2, 3, 4, 5), "float32")
    tensor = to_input_tensor(canvases, spec, "NCHW")
    assert tensor.dtype == np.float32 and tensor.shape == (2, 3, 4, 5)
    assert tensor.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(tensor, canvases.transpose(0, 3, 1, 2).astype(np.float64) / 255, rtol=1e-6)
    assert tensor[1, 2, 3, 4] == pytest.approx(canvases[1, 3, 4, 2] / 255)
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_float32_nhwc_tensor_keeps_the_layout():
    canvases = _canvases()
    tensor = to_input_tensor(canvases, TensorSpec("images", (2, 4, 5, 3), "float32"), "NHWC")
    assert tensor.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(tensor, canvases / 255, rtol=1e-6)


def test_float_tensor_uses_the_given_scale():
    canvases = _canvases()
    tensor = to_input_tensor(canvases, TensorSpec("images", (2, 4, 5, 3), "float32"), "NHWC", scale=1.0)
    np.testing.assert_array_equal(tensor, canvases.astype(np.float32))


def test_float16_tensor_is_float16_and_close_to_pixels_over_255():
    canvases = _canvases()
    tensor = to_input_tensor(canvases, TensorSpec("images", (2, 3, 4, 5), "float16"), "NCHW")
    assert tensor.dtype == np.float16 and tensor.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(tensor.astype(np.float32), canvases.transpose(0, 3, 1, 2) / 255, atol=2e-3)


def test_uint8_tensor_quantized_with_scale_1_over_255_passes_pixels_through():
    canvases = _canvases()
    spec = TensorSpec("images", (2, 4, 5, 3), "uint8", scale=1 / 255, zero_point=0)
    assert spec.quantized
    tensor = to_input_tensor(canvases, spec, "NHWC")
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor, canvases)
    nchw = to_input_tensor(canvases, spec, "NCHW")
    np.testing.assert_array_equal(nchw, canvases.transpose(0, 3, 1, 2))
    assert nchw.flags["C_CONTIGUOUS"]


def test_int8_tensor_follows_the_quantization_formula():
    # q = clip(round(pixel * (1/255) / scale) + zero_point, -128, 127)
    canvases = np.array([0, 1, 2, 100, 128, 254, 255], np.uint8).reshape(1, 1, 7, 1).repeat(3, axis=3)
    spec = TensorSpec("images", (1, 1, 7, 3), "int8", scale=1 / 255, zero_point=-128)
    tensor = to_input_tensor(canvases, spec, "NHWC")
    assert tensor.dtype == np.int8
    assert tensor[0, 0, :, 0].tolist() == [-128, -127, -126, -28, 0, 126, 127]


def test_int8_tensor_with_a_coarse_scale_rounds_and_saturates():
    canvases = np.array([0, 10, 64, 200, 255], np.uint8).reshape(1, 1, 5, 1).repeat(3, axis=3)
    spec = TensorSpec("images", (1, 1, 5, 3), "int8", scale=0.004, zero_point=-100)
    tensor = to_input_tensor(canvases, spec, "NHWC")
    # pixel/255/0.004: 0, 9.80, 62.75, 196.08, 250 -> rounded 0, 10, 63, 196, 250; +zp then clip to 127
    assert tensor[0, 0, :, 1].tolist() == [-100, -90, -37, 96, 127]


def test_uint8_tensor_with_other_quantization_is_requantized():
    canvases = np.array([0, 60, 100, 255], np.uint8).reshape(1, 1, 4, 1).repeat(3, axis=3)
    spec = TensorSpec("images", (1, 3, 1, 4), "uint8", scale=3 / 255, zero_point=10)
    tensor = to_input_tensor(canvases, spec, "NCHW")
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 3, 1, 4)
    # pixel / 3 + 10: 0 -> 10, 60 -> 30, 100 -> 33.33 -> 43, 255 -> 95
    assert tensor[0, 0, 0].tolist() == [10, 30, 43, 95]
    assert tensor[0, 2, 0].tolist() == [10, 30, 43, 95]


# --- one pass, no copies ------------------------------------------------------------------------


def test_letterbox_batch_resizes_each_image_straight_into_its_slot():
    from edgeport.runtime.preprocess import letterbox_batch

    images = [_solid(480, 640, 10), _solid(640, 480, 20), _solid(320, 320, 30)]
    batch, placements = letterbox_batch(images, (320, 320))
    assert batch.shape == (3, 320, 320, 3) and batch.flags["C_CONTIGUOUS"]
    for canvas, image, info in zip(batch, images, placements):
        alone, alone_info = letterbox(image, (320, 320))
        np.testing.assert_array_equal(canvas, alone)
        assert info == alone_info
    slot = batch[1]
    canvas, _ = letterbox(images[0], (320, 320), out=slot)
    assert np.shares_memory(canvas, batch) and np.array_equal(batch[1], letterbox(images[0], (320, 320))[0])


def test_a_uint8_nhwc_input_is_the_canvas_itself():
    canvases = _canvases()
    spec = TensorSpec("images", (2, 4, 5, 3), "uint8", scale=1 / 255, zero_point=0)
    assert to_input_tensor(canvases, spec, "NHWC") is canvases  # no copy
