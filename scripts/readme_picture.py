"""Draw the README's picture: one bundled val image through the float ONNX and an int8 artifact, side by side,
with edgeport's own drawing (edgeport.runtime.draw.side_by_side); written as a small palette PNG.

usage: python scripts/readme_picture.py FLOAT.onnx INT8_ARTIFACT [--image val_0005.jpg] [--out docs/images/detection.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from PIL import Image

from edgeport import sample
from edgeport.runtime import Detector
from edgeport.runtime.draw import side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("float_model", type=Path)
    parser.add_argument("int8_model", type=Path)
    parser.add_argument("--image", default="val_0005.jpg")
    parser.add_argument("--out", type=Path, default=Path("docs/images/detection.png"))
    args = parser.parse_args()
    image = sample.data_yaml().parent / "images" / "val" / args.image
    panels = []
    for model in (args.float_model, args.int8_model):
        detector = Detector(model)
        rgb = detector.load(image)
        panels.append((f"{detector.record.target} {detector.record.precision}: {model.name}", detector.detect_rgb([rgb])[0]))
    picture = side_by_side(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), panels, width=360, height=270)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)).quantize(64).save(args.out, optimize=True)
    print(args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
