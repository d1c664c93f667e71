"""Evaluations as shard tasks (what `report --ray` fans out) score exactly as one in-process evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from edgeport.errors import DatasetError
from edgeport.evaluate import evaluate_with_predictions
from edgeport.evaluate.shards import Evaluations
from edgeport.runtime import Detector


def test_shards_through_a_map_score_like_one_evaluation(onnx_artifact, val16_data):
    detector = Detector(onnx_artifact)
    whole, whole_images = evaluate_with_predictions(detector, val16_data, progress=False)
    calls = []

    def recording_map(fn, items):
        items = list(items)
        calls.append(len(items))
        return map(fn, items)

    ahead = Evaluations(recording_map, shard_images=5)
    ahead.compute([(detector, val16_data)])
    sharded, sharded_images = ahead.get(detector, val16_data)
    assert calls == [4]  # 16 images in shards of 5, all handed to the map at once
    assert (sharded.map50_95, sharded.map50, sharded.per_class) == (whole.map50_95, whole.map50, whole.per_class)
    assert (sharded.precision, sharded.recall, sharded.images) == (whole.precision, whole.recall, 16)
    for a, b in zip(whole_images, sharded_images):
        assert np.array_equal(a.pred_xyxy, b.pred_xyxy) and np.array_equal(a.pred_score, b.pred_score)


def test_a_shard_error_is_raised_with_its_class_by_get(onnx_artifact, val16_data, tmp_path):
    data = yaml.safe_load(val16_data.read_text())
    data["names"] = ["only", "two"]
    other = tmp_path / "two_classes.yaml"
    other.write_text(yaml.safe_dump(data))
    detector = Detector(onnx_artifact)
    ahead = Evaluations(map, shard_images=8)
    ahead.compute([(detector, other)])
    with pytest.raises(DatasetError, match="2 classes, the model 3"):
        ahead.get(detector, other)
