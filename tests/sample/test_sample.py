"""The bundled sample: a deterministic, pitfall-rich data set and a model that meets its bar."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from edgeport.evaluate import evaluate
from edgeport.evaluate.dataset import load_dataset
from edgeport.runtime import load_image
from edgeport.sample.generate import CLASS_NAMES, SampleSpec, generate


def _digest(root):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


def test_generator_is_deterministic(tmp_path):
    spec = SampleSpec(train_images=6, val_images=8)
    generate(tmp_path / "a", spec)
    generate(tmp_path / "b", spec)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_bundled_val_split_exercises_the_pitfalls(sample_data):
    dataset = load_dataset(sample_data)
    assert len(dataset.names) >= 3 and dataset.names == CLASS_NAMES
    sizes, classes, objects, rotated = set(), set(), [], 0
    for path in dataset.images:
        display = load_image(path)
        height, width = display.shape[:2]
        sizes.add((width, height))
        labels = dataset.labels(path)
        classes.update(labels[:, 0].astype(int).tolist())
        objects += (np.maximum(labels[:, 3] * width, labels[:, 4] * height)).tolist()
        orientation = Image.open(path).getexif().get(0x0112, 1)
        if orientation != 1:
            rotated += 1
            stored = load_image(path, exif=False)
            assert stored.shape != display.shape or not np.array_equal(stored, display)  # pixels are turned
    assert classes == {0, 1, 2}
    assert len({round(w / h, 2) for w, h in sizes}) >= 3 and not all(w == h for w, h in sizes)
    assert min(objects) <= 16 and max(objects) >= 200  # from ~12 px to large
    assert rotated >= 10


def test_bundled_model_meets_its_accuracy_bar(sample_model, sample_data, onnx_artifact):
    assert sample_model.is_file() and sample_model.stat().st_size < 10_000_000
    result = evaluate(onnx_artifact, sample_data, progress=False)
    assert result.map50_95 >= 0.60
