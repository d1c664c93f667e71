"""YOLO-format datasets: DATA.yaml, image lists and label files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edgeport.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Dataset:
    """One split of a YOLO-format dataset."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    images: tuple[Path, ...]

    def labels(self, image: Path) -> np.ndarray:
        """Return the labels of one image as (M, 5) float32 rows: class, cx, cy, w, h normalized.

        Raises DatasetError naming the file and line of a malformed row.
        """
        path = label_path(image)
        if not path.is_file():
            return np.zeros((0, 5), np.float32)
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                values = [float(v) for v in parts[:5]]
            except ValueError:
                values = []
            if len(parts) != 5 or len(values) != 5 or not 0 <= values[0] < len(self.names):
                raise DatasetError(f"{path}:{number}: expected 'class cx cy w h' with class < {len(self.names)}, "
                                   f"got {line.strip()!r}")
            rows.append(values)
        return np.array(rows, dtype=np.float32).reshape(-1, 5)


def is_data_yaml(path: str | Path | None) -> bool:
    """True when `path` names a DATA.yaml (labelled data set) rather than an image folder or a video."""
    return path is not None and Path(path).suffix.lower() in (".yaml", ".yml")


def label_path(image: Path) -> Path:
    """images/.../x.jpg -> labels/.../x.txt (the last 'images' folder of the path is swapped)."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _names(raw: object, where: Path) -> tuple[str, ...]:
    if isinstance(raw, dict):
        try:
            return tuple(str(raw[k]) for k in sorted(raw, key=int))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: 'names' keys must be class ids 0..n-1") from exc
    if isinstance(raw, (list, tuple)):
        return tuple(str(n) for n in raw)
    raise DatasetError(f"{where}: 'names' must be a list or a mapping of class id to name")


def _list_images(entry: object, root: Path, where: Path) -> list[Path]:
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    for item in entries:
        path = Path(str(item))
        path = path if path.is_absolute() else root / path
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file() and path.suffix == ".txt":
            for line in path.read_text().splitlines():
                if line.strip():
                    image = Path(line.strip())
                    images.append(image if image.is_absolute() else (path.parent / image).resolve())
        else:
            raise DatasetError(f"{where}: image folder or list {path} does not exist")
    return images


def load_dataset(data_yaml: str | Path, split: str = "val") -> Dataset:
    """Read DATA.yaml; return the split. A relative `path:` is resolved against the yaml's folder.

    Raises DatasetError for a missing file, a missing key or an empty split.
    """
    yaml_path = Path(data_yaml)
    if not yaml_path.is_file():
        raise DatasetError(f"dataset description not found: {yaml_path}")
    try:
        data = yaml.safe_load(yaml_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"{yaml_path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with 'names' and '{split}'")
    for key in ("names", split):
        if key not in data:
            raise DatasetError(f"{yaml_path}: missing key '{key}'")
    root = Path(str(data.get("path") or "."))
    root = root if root.is_absolute() else (yaml_path.parent / root).resolve()
    images = _list_images(data[split], root, yaml_path)
    if not images:
        raise DatasetError(f"{yaml_path}: split '{split}' holds no images")
    return Dataset(yaml_path=yaml_path, root=root, names=_names(data["names"], yaml_path), images=tuple(images))
