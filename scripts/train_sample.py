"""Train a bundled sample model from an Ultralytics YAML (no pretrained weights).

Run once; the results are committed as edgeport/sample/model/shapes_<model>.pt:
    python scripts/train_sample.py --data /tmp/shapes/data.yaml --epochs 60                        # YOLOv8n
    python scripts/train_sample.py --data /tmp/shapes/data.yaml --model yolo26n.yaml --epochs 30   # YOLO26n
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
    parser.add_argument("--model", default="yolov8n.yaml", help="Ultralytics model YAML (yolov8n.yaml, yolo26n.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="default: edgeport/sample/model/shapes_<model>.pt")
    args = parser.parse_args()
    if args.out is None:
        args.out = Path("edgeport/sample/model") / f"shapes_{Path(args.model).stem}.pt"
    load_ultralytics()
    from ultralytics import YOLO

    model = YOLO(args.model)
    model.train(data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu",
                workers=2, pretrained=False, amp=False, plots=False, cache="ram", seed=0, deterministic=True,
                project=str(args.project), name=f"shapes_{Path(args.model).stem}", exist_ok=True, patience=1000, fliplr=0.5,
                degrees=0.0, mosaic=1.0, close_mosaic=10, verbose=True)
    best = args.project / f"shapes_{Path(args.model).stem}" / "weights" / "best.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, args.out)
    metrics = YOLO(str(args.out)).val(data=str(args.data), imgsz=args.imgsz, batch=16, device="cpu", plots=False)
    print(f"final val mAP50-95 {metrics.box.map:.4f} mAP50 {metrics.box.map50:.4f}")


if __name__ == "__main__":
    main()
