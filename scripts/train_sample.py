"""Train the bundled sample model: a YOLOv8n from yolov8n.yaml (no pretrained weights).

Run once; the result is committed as edgeport/sample/model/shapes_yolov8n.pt.
    python scripts/train_sample.py --data /tmp/shapes/data.yaml --epochs 60
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from edgeport.convert.ultralytics_env import load_ultralytics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--project", type=Path, default=Path("/tmp/edgeport-train"))
    parser.add_argument("--out", type=Path, default=Path("edgeport/sample/model/shapes_yolov8n.pt"))
    args = parser.parse_args()
    load_ultralytics()
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu",
                workers=2, pretrained=False, amp=False, plots=False, cache="ram", seed=0, deterministic=True,
                project=str(args.project), name="shapes", exist_ok=True, patience=1000, fliplr=0.5,
                degrees=0.0, mosaic=1.0, close_mosaic=10, verbose=True)
    best = args.project / "shapes" / "weights" / "best.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, args.out)
    metrics = YOLO(str(args.out)).val(data=str(args.data), imgsz=args.imgsz, batch=16, device="cpu", plots=False)
    print(f"final val mAP50-95 {metrics.box.map:.4f} mAP50 {metrics.box.map50:.4f}")


if __name__ == "__main__":
    main()
