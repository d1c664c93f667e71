"""Deterministic generator of the bundled YOLO-format sample dataset.

Owns the synthetic "shapes" data set: three classes on textured backgrounds, images
of several sizes and aspect ratios, objects from about 12 px to large, and val JPEGs
stored rotated with an EXIF orientation tag (labels are in display orientation).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CLASS_NAMES = ("circle", "square", "triangle")

# (width, height): landscape, portrait and square frames, none of them the model size.
FRAME_SIZES = ((640, 480), (480, 640), (512, 512), (640, 360), (400, 300), (360, 640))

# EXIF orientation -> PIL transpose that turns display pixels into stored pixels.
# A viewer applying the tag undoes it; a runtime ignoring the tag sees a rotated image.
_STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # stored = display rotated 90° counter-clockwise
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class SampleSpec:
    """How many images each split holds and how they are drawn."""

    train_images: int = 800
    val_images: int = 80
    exif_every: int = 4  # every n-th val image is stored rotated with an EXIF tag
    jpeg_quality: int = 90
    seed: int = 20261125


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Return a textured BGR background: smooth colour field, noise, stripes or blobs."""
    small = rng.uniform(0, 255, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    base = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    kind = rng.integers(0, 3)
    if kind == 0:  # stripes
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        base += (wave * rng.uniform(10, 35))[..., None]
    elif kind == 1:  # soft blobs
        for _ in range(int(rng.integers(5, 15))):
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            radius = int(rng.integers(10, max(11, min(width, height) // 3)))
            colour = rng.uniform(0, 255, size=3).tolist()
            overlay = base.copy()
            cv2.circle(overlay, center, radius, colour, -1)
            base = cv2.addWeighted(overlay, 0.35, base, 0.65, 0)
    noise = rng.normal(0, rng.uniform(4, 18), size=(height, width, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """Return a colour far enough from the mean of the background patch to be visible."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _shape_polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, size: float) -> np.ndarray | None:
    """Return the polygon of a square or triangle (None for a circle), randomly rotated."""
    if cls == 0:
        return None
    angle = rng.uniform(0, 2 * math.pi)
    corners = 4 if cls == 1 else 3
    radius = size / 2
    pts = [(cx + radius * math.cos(angle + k * 2 * math.pi / corners),
            cy + radius * math.sin(angle + k * 2 * math.pi / corners)) for k in range(corners)]
    return np.array(pts, dtype=np.float32)


def draw_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one BGR image and its labels.

    Returns (image (H, W, 3) uint8, labels (N, 5) float32 rows of class, cx, cy, w, h
    normalized to the image).
    """
    width, height = FRAME_SIZES[int(rng.integers(0, len(FRAME_SIZES)))]
    image = _texture(rng, width, height)
    boxes: list[tuple[int, float, float, float, float]] = []
    placed: list[tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(1, 9))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        # log-uniform size: many small objects, some large ones.
        size = float(math.exp(rng.uniform(math.log(12), math.log(min(width, height) * 0.6))))
        cx = float(rng.uniform(size / 2, width - size / 2))
        cy = float(rng.uniform(size / 2, height - size / 2))
        x1, y1, x2, y2 = cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2
        if any(not (x2 < a or x1 > c or y2 < b or y1 > d) for a, b, c, d in placed):
            continue  # keep objects apart: overlap is not what this sample is about
        patch = image[int(max(y1, 0)):int(y2) + 1, int(max(x1, 0)):int(x2) + 1]
        colour = _contrasting_colour(rng, patch)
        polygon = _shape_polygon(rng, cls, cx, cy, size)
        if polygon is None:
            cv2.circle(image, (round(cx * 16), round(cy * 16)), round(size / 2 * 16), colour, -1,
                       lineType=cv2.LINE_AA, shift=4)
            bx1, by1, bx2, by2 = x1, y1, x2, y2
        else:
            cv2.fillPoly(image, [np.round(polygon * 16).astype(np.int32)], colour,
                         lineType=cv2.LINE_AA, shift=4)
            bx1, by1 = polygon.min(axis=0)
            bx2, by2 = polygon.max(axis=0)
        placed.append((x1, y1, x2, y2))
        boxes.append((cls, (bx1 + bx2) / 2 / width, (by1 + by2) / 2 / height,
                      (bx2 - bx1) / width, (by2 - by1) / height))
    labels = np.array(boxes, dtype=np.float32).reshape(-1, 5)
    return image, labels


def _save_jpeg(image_bgr: np.ndarray, path: Path, quality: int, orientation: int | None) -> None:
    """Save display pixels as a JPEG; with an orientation, store them rotated and tag them."""
    pil = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    if orientation is None:
        pil.save(path, quality=quality)
        return
    stored = pil.transpose(_STORE_TRANSPOSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=quality, exif=exif.tobytes())


def generate(root: Path, spec: SampleSpec = SampleSpec(), splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Write the sample data set under root and return the path of its data.yaml."""
    root = Path(root)
    for split in splits:
        count = spec.train_images if split == "train" else spec.val_images
        rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        orientations = (6, 8, 3)
        for index in range(count):
            image, labels = draw_image(rng)
            orientation = None
            if split == "val" and index % spec.exif_every == 1:
                orientation = orientations[(index // spec.exif_every) % len(orientations)]
            stem = f"{split}_{index:04d}"
            _save_jpeg(image, root / "images" / split / f"{stem}.jpg", spec.jpeg_quality, orientation)
            lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))
    yaml_lines = ["train: images/train" if "train" in splits else None, "val: images/val", f"names:\n{names}"]
    data_yaml = root / "data.yaml"
    data_yaml.write_text("\n".join(line for line in yaml_lines if line) + "\n")
    return data_yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=SampleSpec.train_images)
    parser.add_argument("--val", type=int, default=SampleSpec.val_images)
    parser.add_argument("--splits", default="train,val")
    args = parser.parse_args(argv)
    spec = SampleSpec(train_images=args.train, val_images=args.val)
    print(generate(args.out, spec, tuple(args.splits.split(","))))


if __name__ == "__main__":
    main()
