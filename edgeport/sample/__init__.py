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


def models() -> list[Path]:
    """Every bundled Ultralytics .pt (the YOLOv8n first, then any other, e.g. a YOLO26n), sorted by name."""
    found = sorted((SAMPLE_DIR / "model").glob("*.pt"))
    return sorted(found, key=lambda p: p != model_path())


def pick_model(name: str | None) -> list[Path]:
    """The bundled models whose file stem contains `name` (all of them for None).

    Raises ModelNotFoundError naming the bundled models when none matches.
    """
    from edgeport.errors import ModelNotFoundError

    chosen = [p for p in models() if name is None or name.lower() in p.stem.lower()]
    if not chosen:
        raise ModelNotFoundError(f"no bundled sample model matches {name!r}; bundled: "
                                 f"{', '.join(p.stem for p in models())}")
    return chosen


def data_yaml() -> Path:
    """DATA.yaml of the bundled val split (80 images, a quarter of them EXIF-rotated JPEGs)."""
    return SAMPLE_DIR / "data" / "data.yaml"
