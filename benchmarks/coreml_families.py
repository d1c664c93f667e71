"""CoreML on the Ultralytics 8.4 families built from their YAMLs: conversion, package size, spec read
back and the proxy against Ultralytics' own decode, per family and precision, in one run.

    python benchmarks/coreml_families.py [--families yolo11n,yolo12n,yolo26n,yolov10n]
        [--precisions fp16,int8w,palette6,w8a8] [--json benchmarks/results/coreml_families.json]

The models are the stand-ins of edgeport.sample.families (the sample's 3 classes, BatchNorm statistics
from the sample's images, so their outputs vary; head biases left as built); their mAP means nothing, so each proxy is compared anchor by anchor
with Ultralytics' decode of the head the package uses (one-to-one for YOLOv10 and YOLO26).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.artifact import artifact_size  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.report import host_description  # noqa: E402
from edgeport.sample.families import build_family_model, sample_batch  # noqa: E402

SIZE = 320


def ultralytics_decode(source: Path, image: np.ndarray, one_to_one: bool) -> np.ndarray:
    """(4 + nc, N): Ultralytics' own decode (xyxy pixels, sigmoid scores) of the head branch used."""
    import torch

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    net = YOLO(str(source)).model.float().eval()
    head = net.model[-1]
    head.end2end = one_to_one
    head.xyxy = True  # the one-to-many decode is centre/size otherwise
    with torch.no_grad():
        _, raw = net(torch.from_numpy(image))
    branch = raw["one2one"] if one_to_one else raw.get("one2many", raw)
    return head._inference(branch)[0].numpy()


def proxy_agreement(artifact, source: Path) -> dict:
    """Median and max box error (px) and max score error of the proxy against Ultralytics' decode."""
    from edgeport.runtime import Detector

    proxy = Detector(artifact.path.parent / artifact.record.provenance["proxy"]["artifact"])
    image = sample_batch(SIZE, 1)
    out = proxy.infer(image)
    reference = ultralytics_decode(source, image, artifact.record.provenance["head"]["nms_free"])
    centre, size = out["coordinates"][0][:, :2] * SIZE, out["coordinates"][0][:, 2:] * SIZE
    error = np.abs(np.concatenate([centre - size / 2, centre + size / 2], 1) - reference[:4].T)
    return {"box_error_px_median": float(np.median(error)), "box_error_px_max": float(error.max()),
            "score_error_max": float(np.abs(out["confidence"][0] - reference[4:].T).max())}


def spec(package: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "edgeport.convert.coreml_worker", "inspect", str(package)],
                          capture_output=True, text=True, check=True)
    info = json.loads(done.stdout)[str(package)]
    return {"outputs": {o["name"]: o["shape"] for o in info["outputs"]}, "input": info["inputs"][0]["kind"],
            "names": json.loads(info["user_defined"]["names"]), "weights": info["weights"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="yolo11n,yolo12n,yolo26n,yolov10n")
    parser.add_argument("--precisions", default="fp16,int8w,palette6,w8a8")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "coreml_families.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeport-coreml-families-") as tmp:
        out = Path(tmp)
        for family in args.families.split(","):
            source = build_family_model(family, out / f"{family}.pt", imgsz=SIZE, head_biases=False)
            for precision in args.precisions.split(","):
                extra = {"data": sample.data_yaml(), "calibration_images": 16} if precision == "w8a8" else {}
                start = time.perf_counter()
                try:
                    artifact = convert(source, "coreml", ConvertOptions(out_dir=out, precision=precision,
                                                                        imgsz=SIZE, **extra))
                except Exception as exc:  # a failing family is a row, not the end of the table
                    rows.append({"family": family, "precision": precision, "converts": False,
                                 "error": str(exc).splitlines()[0]})
                    print(f"{family:9s} {precision:8s} FAILED: {rows[-1]['error']}", flush=True)
                    continue
                row = {"family": family, "precision": precision, "converts": True,
                       "seconds": round(time.perf_counter() - start, 1),
                       "size_bytes": artifact_size(artifact.path), "head": artifact.record.provenance["head"],
                       "spec": spec(artifact.path), **proxy_agreement(artifact, source)}
                rows.append(row)
                print(f"{family:9s} {precision:8s} {row['size_bytes'] / 1e6:6.2f} MB  "
                      f"{row['head']['branch']:11s} outputs {row['spec']['outputs']}  "
                      f"box err median {row['box_error_px_median']:.3f} px max {row['box_error_px_max']:.2f} px  "
                      f"score err max {row['score_error_max']:.4f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": host_description(), "imgsz": SIZE, "rows": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0 if all(r["converts"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
