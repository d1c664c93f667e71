"""Calibration sets: class balance, spread, the runtime's preprocessing, caching, bad sources."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from edgeport.calibration import CalibrationSet, balanced_selection, build_calibration_set, describe_coverage
from edgeport.errors import DatasetError
from edgeport.runtime import load_image
from edgeport.runtime.preprocess import letterbox


def test_balanced_selection_covers_rare_classes_first():
    class_sets = [{0}] * 90 + [{1}] * 8 + [{2}] * 2 + [set()] * 20
    picked = balanced_selection(class_sets, 12, 3, seed=1)
    chosen = [class_sets[i] for i in picked]
    assert len(picked) == 12 == len(set(picked))
    assert sum(2 in s for s in chosen) == 2  # every image of the rarest class
    assert sum(1 in s for s in chosen) >= 4 and sum(0 in s for s in chosen) >= 4
    random_share = np.mean([1 in class_sets[i] or 2 in class_sets[i] for i in range(100)])
    assert np.mean([1 in s or 2 in s for s in chosen]) > 2 * random_share


def test_dataset_sample_is_preprocessed_by_the_runtime(sample_data):
    calibration = build_calibration_set(sample_data, n=20, imgsz=320, progress=False)
    assert calibration.frames.shape == (20, 320, 320, 3) and calibration.frames.dtype == np.uint8
    first = calibration.sources[0]
    np.testing.assert_array_equal(calibration.frames[0], letterbox(load_image(first), (320, 320))[0])
    per_class = calibration.coverage["images_per_class"]
    assert set(per_class) == {"circle", "square", "triangle"} and min(per_class.values()) >= 10
    assert len(calibration.coverage["sizes"]) >= 3
    batch = next(calibration.batches("NCHW", "float32", batch_size=4))
    assert batch.shape == (4, 3, 320, 320) and 0.0 <= batch.min() and batch.max() <= 1.0
    assert "images per class" in describe_coverage(calibration)


def test_cache_is_reused_while_unchanged_and_rebuilt_when_changed(sample_data, tmp_path):
    data_dir = tmp_path / "set"
    shutil.copytree(sample_data.parent, data_dir)
    first = build_calibration_set(data_dir / "data.yaml", n=8, out_dir=tmp_path / "calib", progress=False)
    again = build_calibration_set(data_dir / "data.yaml", n=8, out_dir=tmp_path / "calib", progress=False)
    assert not first.cached and again.cached and again.sha256 == first.sha256
    np.testing.assert_array_equal(again.frames, first.frames)
    changed = first.sources[0]
    image = cv2.imread(changed)
    cv2.imwrite(changed, 255 - image)  # same name, new content
    rebuilt = build_calibration_set(data_dir / "data.yaml", n=8, out_dir=tmp_path / "calib", progress=False)
    assert not rebuilt.cached and rebuilt.sha256 != first.sha256


def test_image_folder_is_sampled_evenly_and_bad_files_are_skipped(val_images, tmp_path):
    for path in val_images[:10]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "zz_broken.jpg").write_bytes(val_images[0].read_bytes()[:500])
    calibration = build_calibration_set(tmp_path, n=100, progress=False)
    assert len(calibration) == 10
    assert len(calibration.coverage["skipped"]) == 1 and "zz_broken.jpg" in calibration.coverage["skipped"][0]
    spread = build_calibration_set(tmp_path, n=3, progress=False)
    assert [s.rsplit("/", 1)[-1] for s in spread.sources][0] == val_images[0].name  # first, middle, last


def test_video_frames_are_spread_over_time(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(50):
        frame = np.full((120, 160, 3), i * 5, np.uint8)
        writer.write(frame)
    writer.release()
    calibration = build_calibration_set(path, n=5, imgsz=64, progress=False)
    indices = [int(s.split("#frame")[1]) for s in calibration.sources]
    assert indices == [0, 12, 24, 37, 49]
    brightness = [frame[32, 32].mean() for frame in calibration.frames]  # the image area, not the padding
    assert brightness == sorted(brightness) and brightness[-1] - brightness[0] > 150


def test_unusable_sources_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        build_calibration_set(tmp_path / "absent.yaml", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        build_calibration_set(tmp_path / "empty", progress=False)
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"not a video")
    with pytest.raises(DatasetError):
        build_calibration_set(bad_video, progress=False)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of the 1"):
        build_calibration_set(tmp_path / "only", progress=False)


def test_a_fixed_batch_gets_whole_batches_filled_with_the_first_frames():
    frames = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(3, axis=3)  # frame i is all i
    batches = list(CalibrationSet(frames, [str(i) for i in range(5)]).at_batch(4).batches("NHWC", "float32", 1.0))
    assert [b.shape for b in batches] == [(4, 1, 1, 3), (4, 1, 1, 3)]
    assert [int(v) for v in np.concatenate(batches)[:, 0, 0, 0]] == [0, 1, 2, 3, 4, 0, 1, 2]
    dynamic = list(CalibrationSet(frames, []).at_batch(0).batches("NCHW"))
    assert [b.shape for b in dynamic] == [(1, 3, 1, 1)] * 5  # a dynamic batch is calibrated one image at a time
