"""Unit tests of edgeport.runtime.postprocess: dequantize, decode, NMS and the confidence filter."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.artifact import Decode, TensorSpec
from edgeport.runtime.postprocess import decode_outputs, dequantize, nms, select_and_nms, xywh_to_xyxy


# --- a brute-force reference ------------------------------------------------------------------


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_nms(boxes, scores, iou_threshold, max_det) -> list[int]:
    """Visit boxes best first; keep one when it overlaps no kept box by more than the threshold."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept: list[int] = []
    for i in order:
        if len(kept) == max_det:
            break
        if all(_iou(boxes[i].tolist(), boxes[k].tolist()) <= iou_threshold for k in kept):
            kept.append(i)
    return kept


def _reference_class_aware(boxes, scores_nc, conf, iou_threshold, max_det):
    """Per class NMS of the argmax-class candidates above conf, merged best first."""
    class_id = scores_nc.argmax(1)
    score = scores_nc.max(1)
    results = []
    for c in np.unique(class_id):
        idx = [i for i in range(len(score)) if class_id[i] == c and score[i] > conf]
        kept = _reference_nms(boxes[idx], score[idx], iou_threshold, len(idx))
        results += [(float(score[idx[k]]), idx[k], int(c)) for k in kept]
    results.sort(key=lambda r: -r[0])
    return results[:max_det]


def _random_boxes(rng: np.random.Generator, n: int, extent: float = 100.0) -> np.ndarray:
    """n boxes: half placed at random, half jittered copies of those (so that high IoUs occur)."""
    half = n - n // 2
    centre = rng.uniform(0, extent, (half, 2))
    size = rng.uniform(5, 40, (half, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    copies = boxes[rng.integers(0, half, n // 2)] + rng.normal(0, 2.0, (n // 2, 4))
    copies[:, 2:] = np.maximum(copies[:, 2:], copies[:, :2] + 1)
    return rng.permutation(np.concatenate([boxes, copies]))


# --- nms --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force_reference_on_random_boxes(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 80)
    scores = rng.uniform(0, 1, 80)
    kept = nms(boxes, scores, iou_threshold, max_det=1000)
    assert kept.dtype == np.intp
    assert kept.tolist() == _reference_nms(boxes, scores, iou_threshold, 1000)
    assert 0 < len(kept) < 80  # the case really suppresses something


@pytest.mark.parametrize("seed", range(3))
def test_nms_with_float32_boxes_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    boxes = _random_boxes(rng, 50, extent=640).astype(np.float32)
    scores = rng.uniform(0, 1, 50).astype(np.float32)
    assert nms(boxes, scores, 0.45, 300).tolist() == _reference_nms(boxes, scores, 0.45, 300)


def test_nms_returns_best_first_and_stops_at_max_det():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)  # disjoint
    scores = np.array([0.1, 0.9, 0.3, 0.8, 0.5, 0.2, 0.7, 0.4, 0.6, 0.05], np.float32)
    assert nms(boxes, scores, 0.5, max_det=3).tolist() == [1, 3, 6]
    assert len(nms(boxes, scores, 0.5, max_det=100)) == 10


def test_nms_suppresses_only_above_the_iou_threshold():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 6]], np.float64)  # IoU 0.6
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.55, 10).tolist() == [0]
    assert nms(boxes, scores, 0.65, 10).tolist() == [0, 1]


def test_nms_of_no_boxes_is_empty():
    kept = nms(np.zeros((0, 4)), np.zeros(0), 0.5, 10)
    assert kept.shape == (0,) and kept.dtype == np.intp


# --- select_and_nms ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_select_and_nms_matches_per_class_reference(seed):
    rng = np.random.default_rng(200 + seed)
    boxes = _random_boxes(rng, 120, extent=200).astype(np.float32)
    scores = rng.uniform(0, 1, (120, 3)).astype(np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=40)
    expected = _reference_class_aware(boxes, scores, 0.5, 0.5, 40)
    assert xyxy.dtype == np.float32 and score.dtype == np.float32 and class_id.dtype == np.int32
    assert class_id.tolist() == [c for _, _, c in expected]
    np.testing.assert_array_equal(xyxy, boxes[[i for _, i, _ in expected]])
    np.testing.assert_allclose(score, [s for s, _, _ in expected])


def test_overlapping_boxes_of_different_classes_are_both_kept():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52]], np.float32)  # IoU ~0.82
    scores = np.array([[0.9, 0.0], [0.0, 0.8]], np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=10)
    assert class_id.tolist() == [0, 1]
    np.testing.assert_array_equal(xyxy, boxes)  # boxes come back without the class offset
    np.testing.assert_allclose(score, [0.9, 0.8])


def test_agnostic_nms_suppresses_overlapping_boxes_of_different_classes():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8]], np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=10, agnostic=True)
    assert class_id.tolist() == [0]
    np.testing.assert_array_equal(xyxy, boxes[:1])


def test_overlapping_boxes_of_the_same_class_are_suppressed():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52]], np.float32)
    scores = np.array([[0.0, 0.7], [0.0, 0.8]], np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=10)
    assert class_id.tolist() == [1] and score.tolist() == pytest.approx([0.8])
    np.testing.assert_array_equal(xyxy, boxes[1:])


def test_class_aware_nms_handles_negative_and_large_coordinates():
    boxes = np.array([[-100, -100, -60, -60], [-98, -98, -58, -58], [600, 600, 640, 640]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.0, 0.7]], np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.1, iou=0.5, max_det=10)
    assert class_id.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(xyxy, boxes)


def test_multi_label_keeps_every_class_above_conf_for_one_box():
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, 0.6, 0.2, 0.7]], np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=10, multi_label=True)
    assert class_id.tolist() == [0, 3, 1]  # best first
    np.testing.assert_allclose(score, [0.9, 0.7, 0.6])
    np.testing.assert_array_equal(xyxy, np.repeat(boxes, 3, axis=0))
    _, _, single = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=10)
    assert single.tolist() == [0]


def test_conf_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    scores = np.array([[0.5, 0.0], [0.0, 0.75], [0.25, 0.0]], np.float32)  # exactly representable
    _, score, class_id = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=10)
    assert class_id.tolist() == [1] and score.tolist() == [0.75]
    _, score, _ = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=10, multi_label=True)
    assert score.tolist() == [0.75]
    _, score, _ = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=10)
    assert score.tolist() == [0.75, 0.5]


def test_max_det_is_honoured_best_first():
    rng = np.random.default_rng(7)
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(50)], np.float32)  # disjoint
    scores = rng.uniform(0.3, 1, (50, 4)).astype(np.float32)
    xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=7)
    assert len(xyxy) == len(score) == len(class_id) == 7
    np.testing.assert_allclose(score, np.sort(scores.max(1))[::-1][:7])
    _, score, _ = select_and_nms(boxes, scores, conf=0.25, iou=0.5, max_det=7, multi_label=True)
    assert len(score) == 7 and np.all(np.diff(score) <= 0)


def test_max_candidates_keeps_the_best_scores():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(20)], np.float32)
    scores = np.linspace(0.3, 0.9, 20, dtype=np.float32)[:, None]
    _, score, _ = select_and_nms(boxes, scores, conf=0.1, iou=0.5, max_det=100, max_candidates=5)
    np.testing.assert_allclose(score, scores[-5:, 0][::-1])


def test_nothing_above_conf_gives_empty_typed_arrays():
    boxes = np.zeros((3, 4), np.float32)
    scores = np.full((3, 2), 0.1, np.float32)
    for multi_label in (False, True):
        xyxy, score, class_id = select_and_nms(boxes, scores, conf=0.5, iou=0.5, max_det=10, multi_label=multi_label)
        assert xyxy.shape == (0, 4) and score.shape == (0,) and class_id.shape == (0,)
        assert xyxy.dtype == np.float32 and score.dtype == np.float32 and class_id.dtype == np.int32


# --- dequantize -------------------------------------------------------------------------------


def test_dequantize_uint8_applies_scale_and_zero_point():
    spec = TensorSpec("out", (1, 4), "uint8", scale=0.5, zero_point=10)
    values = dequantize(np.array([[0, 10, 11, 255]], np.uint8), spec)
    assert values.dtype == np.float32
    assert values.tolist() == [[-5.0, 0.0, 0.5, 122.5]]


def test_dequantize_int8_applies_scale_and_zero_point():
    spec = TensorSpec("out", (1, 4), "int8", scale=0.25, zero_point=-3)
    values = dequantize(np.array([[-128, -3, 0, 127]], np.int8), spec)
    assert values.dtype == np.float32
    assert values.tolist() == [[-31.25, 0.0, 0.75, 32.5]]


def test_dequantize_of_float_tensors_only_casts_to_float32():
    spec = TensorSpec("out", (3,), "float16")
    values = dequantize(np.array([0.5, -1.0, 2.0], np.float16), spec)
    assert values.dtype == np.float32 and values.tolist() == [0.5, -1.0, 2.0]
    already = np.array([1.5], np.float32)
    assert dequantize(already, TensorSpec("out", (1,), "float32")) is already  # no copy


def test_integer_tensor_without_quantization_is_only_cast():
    spec = TensorSpec("out", (2,), "uint8", scale=None, zero_point=None)
    assert not spec.quantized
    assert dequantize(np.array([3, 200], np.uint8), spec).tolist() == [3.0, 200.0]


# --- decode -----------------------------------------------------------------------------------


def test_xywh_to_xyxy_converts_centre_size_to_corners():
    out = xywh_to_xyxy(np.array([[50, 40, 20, 10], [0, 0, 4, 6]], np.float32))
    assert out.tolist() == [[40, 35, 60, 45], [-2, -3, 2, 3]]


def test_decode_split_scales_normalized_xyxy_to_input_pixels():
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    scores = np.array([[[0.9, 0.1], [0.2, 0.3]]], np.float32)
    original = boxes.copy()
    xyxy, out_scores = decode_outputs({"boxes": boxes, "scores": scores}, Decode(), nc=2, size_hw=(320, 480))
    assert xyxy.shape == (1, 2, 4)
    np.testing.assert_allclose(xyxy[0], [[48, 64, 240, 192], [0, 0, 480, 320]], rtol=1e-6)
    np.testing.assert_array_equal(out_scores, scores)
    np.testing.assert_array_equal(boxes, original)  # the model's output buffer is not modified


def test_decode_split_with_custom_names_and_normalized_xywh():
    decode = Decode(kind="split", boxes="b", scores="s", box_format="xywh", normalized=True)
    boxes = np.array([[[0.5, 0.5, 0.5, 0.25]]], np.float32)
    xyxy, _ = decode_outputs({"b": boxes, "s": np.ones((1, 1, 1), np.float32)}, decode, nc=1, size_hw=(200, 400))
    np.testing.assert_allclose(xyxy[0, 0], [100, 75, 300, 125])


def test_decode_split_in_pixels_is_left_unscaled():
    decode = Decode(kind="split", normalized=False)
    boxes = np.array([[[10, 20, 30, 40]]], np.float32)
    xyxy, _ = decode_outputs({"boxes": boxes, "scores": np.ones((1, 1, 1), np.float32)}, decode, nc=1,
                             size_hw=(320, 320))
    assert xyxy.tolist() == [[[10, 20, 30, 40]]]


ULTRALYTICS = Decode(kind="ultralytics", boxes="output0", box_format="xywh", normalized=False)


def _ultralytics_channels_first(nc: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, 4 + nc, N) output with N = 5 candidates, and the expected xyxy and scores."""
    rng = np.random.default_rng(11)
    n = 5
    cxcywh = np.column_stack([rng.uniform(50, 250, n), rng.uniform(50, 250, n),
                              rng.uniform(10, 60, n), rng.uniform(10, 60, n)]).astype(np.float32)
    scores = rng.uniform(0, 1, (n, nc)).astype(np.float32)
    raw = np.concatenate([cxcywh, scores], axis=1).T[None]  # (1, 4 + nc, N)
    expected = np.column_stack([cxcywh[:, 0] - cxcywh[:, 2] / 2, cxcywh[:, 1] - cxcywh[:, 3] / 2,
                                cxcywh[:, 0] + cxcywh[:, 2] / 2, cxcywh[:, 1] + cxcywh[:, 3] / 2])
    return np.ascontiguousarray(raw), expected, scores


def test_decode_ultralytics_channels_first_layout():
    raw, expected, scores = _ultralytics_channels_first()
    assert raw.shape == (1, 7, 5)
    xyxy, out_scores = decode_outputs({"output0": raw}, ULTRALYTICS, nc=3, size_hw=(320, 320))
    assert xyxy.shape == (1, 5, 4) and out_scores.shape == (1, 5, 3)
    np.testing.assert_allclose(xyxy[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(out_scores[0], scores)


def test_decode_ultralytics_channels_last_layout_gives_the_same_result():
    raw, expected, scores = _ultralytics_channels_first()
    channels_last = np.ascontiguousarray(raw.transpose(0, 2, 1))  # (1, N, 4 + nc)
    assert channels_last.shape == (1, 5, 7)
    xyxy, out_scores = decode_outputs({"output0": channels_last}, ULTRALYTICS, nc=3, size_hw=(320, 320))
    np.testing.assert_allclose(xyxy[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(out_scores[0], scores)


def test_decode_ultralytics_feeds_select_and_nms():
    raw = np.zeros((1, 4 + 2, 3), np.float32)
    raw[0, :, 0] = [100, 100, 40, 40, 0.9, 0.1]
    raw[0, :, 1] = [102, 101, 40, 40, 0.8, 0.1]  # same object, same class: suppressed
    raw[0, :, 2] = [200, 50, 20, 10, 0.1, 0.6]
    boxes, scores = decode_outputs({"output0": raw}, ULTRALYTICS, nc=2, size_hw=(320, 320))
    xyxy, score, class_id = select_and_nms(boxes[0], scores[0], conf=0.25, iou=0.5, max_det=10)
    assert class_id.tolist() == [0, 1]
    np.testing.assert_allclose(xyxy, [[80, 80, 120, 120], [190, 45, 210, 55]])


def test_decode_unknown_kind_raises_value_error():
    with pytest.raises(ValueError, match="decode kind"):
        decode_outputs({"boxes": np.zeros((1, 1, 4))}, Decode(kind="yolov5"), nc=1, size_hw=(320, 320))


def test_dfl_decode_skips_only_boxes_below_the_score_floor():
    from edgeport.runtime.postprocess import decode_dfl

    rng = np.random.default_rng(3)
    decode = Decode(kind="dfl", levels=({"box": "b8", "cls": "c8", "stride": 8, "grid": [4, 4]},
                                        {"box": "b16", "cls": "c16", "stride": 16, "grid": [2, 2]}), reg_max=16)
    outputs = {"b8": rng.normal(size=(2, 16, 64)).astype(np.float32), "c8": rng.normal(size=(2, 16, 3)) * 3,
               "b16": rng.normal(size=(2, 4, 64)).astype(np.float32), "c16": rng.normal(size=(2, 4, 3)) * 3}
    full_boxes, full_scores = decode_dfl(outputs, decode)
    boxes, scores = decode_dfl(outputs, decode, min_score=0.6)
    np.testing.assert_allclose(scores, full_scores)
    keep = full_scores.max(axis=-1) > 0.6
    assert keep.any() and (~keep).any()
    np.testing.assert_allclose(boxes[keep], full_boxes[keep], rtol=1e-5, atol=1e-4)
    assert (boxes[~keep] == 0).all()
    # anchor (row 1, col 2) of the stride-8 grid has its centre at (20, 12); a flat distribution puts
    # every side at the mean bin 7.5, i.e. 60 px
    flat = {k: np.zeros_like(v, dtype=np.float32) for k, v in outputs.items()}
    centre_boxes, _ = decode_dfl(flat, decode)
    np.testing.assert_allclose(centre_boxes[0, 6], [20 - 60, 12 - 60, 20 + 60, 12 + 60], atol=1e-4)


# --- one-to-one (NMS-free) heads -------------------------------------------------------------------


def test_no_dfl_decode_takes_the_distances_themselves():
    """YOLO26 (reg_max 1): the box tensor holds ltrb distances in grid cells; a softmax over one bin
    would give zero-area boxes."""
    level = {"box": "b", "cls": "c", "stride": 8, "grid": [1, 2]}
    decode = Decode(kind="dfl", levels=(level,), reg_max=1, nms=False)
    box = np.array([[[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]], np.float32)
    cls = np.full((1, 2, 3), 5.0, np.float32)
    boxes, scores = decode_outputs({"b": box, "c": cls}, decode, 3, (8, 16))
    np.testing.assert_allclose(boxes[0, 0], [4 - 8, 4 - 16, 4 + 24, 4 + 32])  # centre (4, 4), stride 8
    np.testing.assert_allclose(boxes[0, 1], [12 - 4, 4 - 4, 12 + 4, 4 + 4])
    assert scores.shape == (1, 2, 3)


def test_topk_keeps_overlapping_boxes_without_nms():
    from edgeport.runtime.postprocess import select_topk

    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.1, 0.2]], np.float32)
    xyxy, score, class_id = select_topk(boxes, scores, conf=0.25, max_det=300)
    np.testing.assert_allclose(score, [0.9, 0.8])  # both kept: a one-to-one head gives one box per object
    assert class_id.tolist() == [0, 0] and xyxy.shape == (2, 4)


def test_topk_keeps_every_class_above_conf_best_first_up_to_max_det():
    from edgeport.runtime.postprocess import select_topk

    boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
    scores = np.array([[0.3, 0.95], [0.5, 0.0], [0.7, 0.6], [0.1, 0.2]], np.float32)
    _, score, class_id = select_topk(boxes, scores, conf=0.25, max_det=3)
    np.testing.assert_allclose(score, [0.95, 0.7, 0.6])
    assert class_id.tolist() == [1, 0, 1]
    _, empty, _ = select_topk(boxes, scores, conf=0.99, max_det=3)
    assert empty.dtype == np.float32 and len(empty) == 0


def test_end2end_rows_become_one_hot_scores_in_pixels():
    rows = np.array([[[0.1, 0.2, 0.3, 0.4, 0.9, 2], [0, 0, 0, 0, 0.0, 0]]], np.float32)
    decode = Decode(kind="end2end", boxes="out", scores="out", normalized=True, nms=False)
    boxes, scores = decode_outputs({"out": rows}, decode, 3, (100, 200))
    np.testing.assert_allclose(boxes[0, 0], [20, 20, 60, 40])
    np.testing.assert_allclose(scores[0, 0], [0, 0, 0.9])
    assert scores[0, 1].max() == 0
