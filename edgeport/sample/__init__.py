"""The bundled sample: a YOLOv8n trained on synthetic shapes and its val split (package data).

Regenerate the data set with `python -m edgeport.sample.generate DIR`; the model was trained
with scripts/train_sample.py (see the README for the command and the figures).
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent


def model_path() -> Path:
    """The bundled Ultralytics .pt (YOLOv8n, 3 classes, trained at 320 px)."""
    return SAMPLE_DIR / "model" / "shapes_yolov8n.pt"


def data_yaml() -> Path:
    """DATA.yaml of the bundled val split (80 images, a quarter of them EXIF-rotated JPEGs)."""
    return SAMPLE_DIR / "data" / "data.yaml"
