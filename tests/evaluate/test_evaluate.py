"""Evaluation through the runtime: protocols agree with pycocotools and `yolo val`; EXIF matters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport.errors import DatasetError
from edgeport.evaluate import PROTOCOLS, collect, evaluate
from edgeport.evaluate.dataset import load_dataset
from edgeport.evaluate.metrics import ImageEval, coco_ap
from edgeport.runtime import Detector


def _pycocotools_stats(images: list[ImageEval], num_classes: int) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1} for c in range(num_classes)]}
    dets = []
    for image_id, image in enumerate(images, start=1):
        gt["images"].append({"id": image_id, "width": 1000, "height": 1000})
        for box, cls in zip(image.gt_xyxy.tolist(), image.gt_class.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": cls + 1,
                                      "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, score, cls in zip(image.pred_xyxy.tolist(), image.pred_score.tolist(), image.pred_class.tolist()):
            dets.append({"image_id": image_id, "category_id": cls + 1, "score": score,
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


def test_coco_protocol_agrees_with_pycocotools_on_real_predictions(onnx_artifact, sample_data):
    dataset = load_dataset(sample_data)
    images, _ = collect(Detector(onnx_artifact), dataset, PROTOCOLS["coco"], progress=False)
    ap = coco_ap(images, 3)
    ref_map, ref_map50 = _pycocotools_stats(images, 3)
    assert ref_map > 0.1  # a real model, not an empty comparison
    assert abs(np.nanmean(ap) - ref_map) < 0.001
    assert abs(np.nanmean(ap[:, 0]) - ref_map50) < 0.001


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_coco_protocol_agrees_with_pycocotools_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(12):
        m = int(rng.integers(0, 6))
        gt = rng.uniform(0, 400, (m, 2))
        gt = np.concatenate([gt, gt + rng.uniform(5, 120, (m, 2))], axis=1)
        gt_cls = rng.integers(0, 3, m)
        jitter = gt + rng.normal(0, 6, gt.shape)  # near-misses at every IoU threshold
        jitter = np.concatenate([np.minimum(jitter[:, :2], jitter[:, 2:]), np.maximum(jitter[:, :2], jitter[:, 2:])], 1)
        noise = rng.uniform(0, 400, (int(rng.integers(0, 5)), 2))
        noise = np.concatenate([noise, noise + rng.uniform(5, 80, noise.shape)], axis=1)
        pred = np.concatenate([jitter, noise])
        pred_cls = np.concatenate([gt_cls, rng.integers(0, 3, len(noise))])
        images.append(ImageEval(gt, gt_cls, pred, rng.uniform(0.01, 1, len(pred)), pred_cls))
    ap = coco_ap(images, 3)
    ref_map, ref_map50 = _pycocotools_stats(images, 3)
    assert abs(np.nanmean(ap) - ref_map) < 0.001
    assert abs(np.nanmean(ap[:, 0]) - ref_map50) < 0.001


def test_ultralytics_protocol_agrees_with_yolo_val(ultralytics_onnx, sample_data, tmp_path):
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    data = tmp_path / "data.yaml"  # Ultralytics wants a train key; point it at the val split
    data.write_text(f"path: {sample_data.parent}\ntrain: images/val\nval: images/val\n"
                    "names:\n  0: circle\n  1: square\n  2: triangle\n")
    theirs = YOLO(str(ultralytics_onnx), task="detect").val(data=str(data), imgsz=320, batch=1, device="cpu",
                                                              plots=False, verbose=False)
    ours = evaluate(ultralytics_onnx, sample_data, protocol="ultralytics", progress=False)
    assert abs(ours.map50_95 - theirs.box.map) < 0.005
    assert abs(ours.map50 - theirs.box.map50) < 0.005


def test_exif_orientation_is_used_and_matters(onnx_artifact, sample_data):
    right = evaluate(onnx_artifact, sample_data, progress=False)
    ignored = evaluate(onnx_artifact, sample_data, exif=False, progress=False)
    assert right.map50_95 - ignored.map50_95 > 0.05  # about a quarter of the val images are EXIF-rotated
    dataset = load_dataset(sample_data)
    rotated = [p for p in dataset.images if b"Exif" in p.read_bytes()[:64]]
    assert len(rotated) >= 10


def test_result_keys_and_values(onnx_artifact, sample_data):
    result = evaluate(onnx_artifact, sample_data, conf=0.25, progress=False).to_dict()
    for key in ("map50_95", "map50", "per_class", "precision", "recall", "images", "artifact", "backend"):
        assert key in result
    assert set(result["per_class"]) == {"circle", "square", "triangle"}
    assert result["images"] == 80 and result["backend"] == "onnxruntime"
    assert 0 < result["map50_95"] < result["map50"] <= 1
    assert 0 < result["precision"] <= 1 and 0 < result["recall"] <= 1
    stricter = evaluate(onnx_artifact, sample_data, conf=0.6, progress=False)
    assert stricter.recall < result["recall"]  # the threshold is applied
    json.dumps(result)


def test_relative_path_is_resolved_against_the_yaml_folder(sample_data, tmp_path, monkeypatch):
    shutil.copytree(sample_data.parent / "images", tmp_path / "set" / "images")
    shutil.copytree(sample_data.parent / "labels", tmp_path / "set" / "labels")
    (tmp_path / "cfg").mkdir()
    yaml_path = tmp_path / "cfg" / "data.yaml"
    yaml_path.write_text("path: ../set\nval: images/val\nnames: [circle, square, triangle]\n")
    monkeypatch.chdir(tmp_path / "set" / "images")  # a cwd where the relative path means something else
    dataset = load_dataset(yaml_path)
    assert len(dataset.images) == 80 and dataset.root == (tmp_path / "set").resolve()


def test_dataset_errors_name_the_problem(sample_data, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [a]\n")
    with pytest.raises(DatasetError, match="missing key 'val'"):
        load_dataset(bad)
    bad.write_text("val: nowhere\nnames: [a]\n")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(bad)
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    shutil.copy(next((sample_data.parent / "images" / "val").glob("*.jpg")), tmp_path / "images" / "val" / "a.jpg")
    (tmp_path / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1\n")
    bad.write_text("val: images/val\nnames: [a]\n")
    dataset = load_dataset(bad)
    with pytest.raises(DatasetError, match=r"a\.txt:2"):
        dataset.labels(dataset.images[0])


def test_class_count_mismatch_is_refused(onnx_artifact, tmp_path, sample_data):
    other = tmp_path / "data.yaml"
    other.write_text(f"path: {sample_data.parent}\nval: images/val\nnames: [a, b]\n")
    with pytest.raises(DatasetError, match="2 classes"):
        evaluate(onnx_artifact, other, progress=False)
