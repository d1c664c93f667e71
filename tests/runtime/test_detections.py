"""Unit tests of edgeport.runtime.detections.Detections: validation, indexing, names and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.runtime.detections import Detections

NAMES = ("person", "bicycle", "car")


def _three() -> Detections:
    return Detections(
        xyxy=np.array([[10.123, 20.456, 30.789, 40.0], [0, 0, 5, 5], [100, 50, 200, 150]], np.float32),
        score=np.array([0.91234567, 0.5, 0.25], np.float32),
        class_id=np.array([2, 0, 7], np.int32),
        names=NAMES,
        image_hw=(480, 640),
    )


def test_to_json_round_trips_through_json_loads():
    det = _three()
    text = det.to_json()
    assert "\n" not in text  # one line
    data = json.loads(text)
    assert data["image_hw"] == [480, 640]
    assert len(data["detections"]) == 3
    first = data["detections"][0]
    assert first == {"xyxy": [10.12, 20.46, 30.79, 40.0], "score": 0.9123, "class_id": 2, "class_name": "car"}
    assert [d["class_id"] for d in data["detections"]] == [2, 0, 7]
    np.testing.assert_allclose([d["xyxy"] for d in data["detections"]], det.xyxy, atol=0.005 + 1e-6)
    np.testing.assert_allclose([d["score"] for d in data["detections"]], det.score, atol=5e-5 + 1e-7)
    assert data == det.to_dict()


def test_to_json_of_empty_detections_without_image_size():
    data = json.loads(Detections.empty().to_json())
    assert data == {"image_hw": None, "detections": []}


def test_meta_is_merged_into_the_json_record():
    det = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                     meta={"image": "a.jpg", "latency_ms": 3.5})
    data = json.loads(det.to_json())
    assert data["image"] == "a.jpg" and data["latency_ms"] == 3.5 and data["detections"] == []


def test_class_name_uses_names_and_falls_back_to_the_id():
    det = _three()
    assert det.class_name == ["car", "person", "7"]  # 7 is outside the names table
    no_names = Detections(det.xyxy, det.score, det.class_id)
    assert no_names.class_name == ["2", "0", "7"]
    negative = Detections(det.xyxy[:1], det.score[:1], np.array([-1], np.int32), names=NAMES)
    assert negative.class_name == ["-1"]  # never wraps around to names[-1]


def test_boolean_mask_selects_matching_detections():
    det = _three()
    picked = det[det.score > 0.3]
    assert isinstance(picked, Detections) and len(picked) == 2
    np.testing.assert_array_equal(picked.xyxy, det.xyxy[:2])
    assert picked.class_id.tolist() == [2, 0]
    assert picked.names == NAMES and picked.image_hw == (480, 640)
    none = det[np.zeros(3, bool)]
    assert len(none) == 0 and none.xyxy.shape == (0, 4)


def test_integer_index_slice_and_index_array_select_detections():
    det = _three()
    one = det[1]
    assert len(one) == 1 and one.xyxy.shape == (1, 4) and one.class_id.tolist() == [0]
    assert det[1:].class_id.tolist() == [0, 7]
    assert det[np.array([2, 0])].score.tolist() == pytest.approx([0.25, 0.91234567])


def test_empty_has_zero_detections_of_the_right_shapes_and_dtypes():
    det = Detections.empty(names=NAMES, image_hw=(10, 20))
    assert len(det) == 0
    assert det.xyxy.shape == (0, 4) and det.score.shape == (0,) and det.class_id.shape == (0,)
    assert det.xyxy.dtype == np.float32 and det.score.dtype == np.float32 and det.class_id.dtype == np.int32
    assert det.names == NAMES and det.image_hw == (10, 20)
    assert det.class_name == []


@pytest.mark.parametrize("xyxy,score,class_id", [
    (np.zeros((2, 4)), np.zeros(3), np.zeros(3, np.int32)),  # too few boxes
    (np.zeros((3, 5)), np.zeros(3), np.zeros(3, np.int32)),  # five coordinates
    (np.zeros((3, 4)), np.zeros(3), np.zeros(2, np.int32)),  # too few class ids
    (np.zeros(4), np.zeros(1), np.zeros(1, np.int32)),  # a box that is not (N, 4)
    (np.zeros((3, 4)), np.zeros(3), np.zeros((3, 1), np.int32)),  # class ids in a column
])
def test_inconsistent_shapes_raise_value_error(xyxy, score, class_id):
    with pytest.raises(ValueError, match="inconsistent detections"):
        Detections(xyxy, score, class_id)


# Regression: edgeport/runtime/detections.py, Detections.__post_init__ (fixed).
def test_score_column_instead_of_vector_raises_value_error():
    with pytest.raises(ValueError, match="inconsistent detections"):
        Detections(np.zeros((3, 4), np.float32), np.zeros((3, 1), np.float32), np.zeros(3, np.int32))


def test_detections_are_immutable():
    det = _three()
    with pytest.raises(AttributeError):
        det.names = ("x",)  # type: ignore[misc]
