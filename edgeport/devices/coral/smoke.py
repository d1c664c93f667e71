"""Smoke test on a device with a Coral Edge TPU:

    python -m edgeport.devices.coral.smoke MODEL_edgetpu.tflite [--device usb:0] [--runs 50]

Loads the delegate, runs the bundled val images, prints detections and the invoke latency.
Exit 0 when the Edge TPU ran the model, 2 with one line saying what is missing otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edgeport import sample
from edgeport.errors import EdgeportError
from edgeport.runtime import Detector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--device", default=None)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        detector = Detector(args.model, backend="edgetpu", backend_options={"device": args.device})
        images = sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))[:5]
        for image in images:
            print(detector.detect(image).to_json())
        tensor, _ = detector.preprocess([detector.load(images[0])])
        timings = []
        for _ in range(args.runs):
            start = time.perf_counter()
            detector.backend.invoke(tensor)
            timings.append((time.perf_counter() - start) * 1000)
    except EdgeportError as exc:
        print(f"edgeport: error: {exc}", file=sys.stderr)
        return 2
    print(f"Edge TPU ({detector.backend.device or 'first device'}): invoke p50 {np.median(timings):.2f} ms, "
          f"p99 {np.percentile(timings, 99):.2f} ms over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
