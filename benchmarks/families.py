"""Every Ultralytics detect family on every non-CoreML target and precision: agreement with the float model,
Edge TPU mapping, and the bundled trained samples' mAP drop.

    python benchmarks/families.py [--families yolov5u,yolov8,...] [--targets onnx:fp32,tflite:int8,...]
                                  [--imgsz 160] [--calibration-images 16]
                                  [--json benchmarks/results/families.json]

Stand-ins are built from Ultralytics' YAMLs (edgeport.sample.families: batch-norm statistics and head
biases from the sample images); their detections are meaningless, so the table shows agreement with the
float model (share of its detections matched at IoU >= 0.5 with the same class, mean score shift) rather
than mAP. Each bundled trained sample adds its mAP50-95 drop per artifact on the bundled val split.
Prints a Markdown table (the one docs/families.md shows) and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.convert.verify import FloatReference, check_images, measure, runnable_file  # noqa: E402
from edgeport.errors import EdgeportError  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.sample.families import FAMILIES, build_family_model  # noqa: E402

TARGETS = ("onnx:fp32", "onnx:fp16", "onnx:int8", "tflite:fp32", "tflite:fp16", "tflite:dynamic", "tflite:int8",
           "edgetpu:int8", "onnx-web:fp32", "onnx-web:fp16", "onnx-web:int8", "tensorrt:fp16", "tensorrt:int8",
           "openvino:fp32", "openvino:fp16", "openvino:int8", "ncnn:fp16",
           "rknn:int8")  # rknn: in rknn-toolkit2's x86 simulator (scripts/rknn-venv.sh makes its venv)


def one_artifact(model: Path, target: str, precision: str, out: Path, args, reference) -> dict:
    """Convert (no built-in check: the agreement is measured here), measure agreement; one JSON row."""
    row: dict = {"target": target, "precision": precision}
    start = time.perf_counter()
    try:
        artifact = convert(model, target, ConvertOptions(
            out_dir=out, precision=precision, imgsz=args.imgsz, data=sample.data_yaml(),
            calibration_images=args.calibration_images, calibration_method=args.method, check=False))
    except EdgeportError as exc:
        return {**row, "status": "failed", "error": str(exc)}
    row["convert_s"] = round(time.perf_counter() - start, 1)
    path = runnable_file(artifact)
    result = measure(Detector(path), reference, check_images(None, args.check_images))
    row.update(status="ok", artifact=path.name, matched=result.matched, score_shift=result.score_shift,
               zero_area=result.zero_area, float_detections=result.float_detections)
    if "edgetpu" in artifact.record.provenance:
        row["edgetpu"] = artifact.record.provenance["edgetpu"]
    return row


def trained_drops(args, work: Path) -> list[dict]:
    """mAP50-95 of each bundled trained sample's artifacts against its float ONNX, on the bundled val split."""
    from edgeport.evaluate import evaluate

    rows = []
    for model in sample.models():
        out = work / model.stem
        base = evaluate(convert(model, "onnx", ConvertOptions(out_dir=out, check=False)).path, sample.data_yaml(),
                        progress=False).map50_95
        for spec in args.targets:
            target, precision = spec.split(":")
            try:
                artifact = convert(model, target, ConvertOptions(out_dir=out, precision=precision,
                                                                 data=sample.data_yaml(), calibration_images=80))
            except EdgeportError as exc:
                rows.append({"model": model.stem, "target": target, "precision": precision, "error": str(exc)})
                continue
            value = evaluate(runnable_file(artifact), sample.data_yaml(), progress=False).map50_95
            rows.append({"model": model.stem, "target": target, "precision": precision, "map50_95": round(value, 4),
                         "drop_points": round((base - value) * 100, 2)})
            print(rows[-1], flush=True)
    return rows


def table(results: dict) -> str:
    """Markdown: one row per family, one column per target:precision (matched share / score shift)."""
    specs = sorted({f"{r['target']}:{r['precision']}" for rows in results.values() for r in rows},
                   key=TARGETS.index)
    lines = ["| family | head | Edge TPU ops | " + " | ".join(specs) + " |", "|---" * (len(specs) + 3) + "|"]
    for family, rows in results.items():
        by = {f"{r['target']}:{r['precision']}": r for r in rows if "target" in r}
        head = next((r.get("head") for r in rows if r.get("head")), "?")
        tpu = next((r["edgetpu"] for r in rows if "edgetpu" in r), None)
        cells = [family, head, f"{tpu['edgetpu_ops']}/{tpu['edgetpu_ops'] + tpu['cpu_ops']}" if tpu else "-"]
        for spec in specs:
            r = by.get(spec)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append("fails")
            elif r["matched"] is None:
                cells.append("no detections")
            else:
                cells.append(f"{r['matched']:.0%} / {r['score_shift']:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--method", default="minmax", help="calibration method of every int8 artifact")
    parser.add_argument("--check-images", type=int, default=8)
    parser.add_argument("--no-trained", dest="trained", action="store_false", help="skip the bundled samples")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "families.json")
    args = parser.parse_args()
    args.targets = [t for t in args.targets.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="edgeport-families-"))
    results: dict[str, list] = {}
    for family in [f for f in args.families.split(",") if f]:
        model = build_family_model(family, work / family / "weights" / f"{family}.pt", imgsz=args.imgsz)
        reference = FloatReference(model, args.imgsz)
        head = reference.model.head_kind
        results[family] = []
        for spec in args.targets:
            target, precision = spec.split(":")
            row = {**one_artifact(model, target, precision, work / family, args, reference), "head": head}
            results[family].append(row)
            print(family, row, flush=True)
    trained = trained_drops(args, work) if args.trained else []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"imgsz": args.imgsz, "calibration_images": args.calibration_images,
                                     "method": args.method, "families": results, "trained": trained}, indent=2))
    print(table(results))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
