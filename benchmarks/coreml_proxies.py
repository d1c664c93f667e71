"""CoreML packages of the bundled sample: size and proxy accuracy of every precision, in one run.

    python benchmarks/coreml_proxies.py [--model PT] [--precisions w8a8 ...] [--calibration-images 80]
                                        [--json benchmarks/results/coreml_proxies.json]

Core ML runs only on macOS, so each package is measured through its ONNX proxy (the label in its
record says exactly what that is) against the float ONNX, through the runtime, on the val split.
Goals: int8 weights within 1.0 point mAP50-95 of the float ONNX, W8A8 within 0.5; int8 weights at
most 0.55x the fp16 package's bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.artifact import artifact_size  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.evaluate import evaluate  # noqa: E402
from edgeport.report import host_description  # noqa: E402

PRECISIONS = ("fp16", "int8w", "w8a8", "palette6")
GOALS = {"drop_points_max": {"int8w": 1.0, "w8a8": 0.5}, "int8w_size_vs_fp16_max": 0.55}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a .pt trained on the sample (default: the "
                        "bundled YOLOv8n; edgeport/sample/model/shapes_yolo26n.pt for YOLO26n)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--calibration-images", type=int, default=80)
    parser.add_argument("--keep", type=Path, default=None, help="write the packages here and keep them")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "coreml_proxies.json")
    args = parser.parse_args()
    model, data = args.model or sample.model_path(), sample.data_yaml()
    with tempfile.TemporaryDirectory(prefix="edgeport-coreml-bench-") as tmp:
        out = args.keep or Path(tmp)
        base_path = convert(model, "onnx", ConvertOptions(out_dir=out)).path
        base = evaluate(base_path, data, progress=False)
        rows = [{"artifact": base_path.name, "precision": "fp32", "size_bytes": artifact_size(base_path),
                 "map50_95": round(base.map50_95, 4), "map50": round(base.map50, 4), "drop_points": 0.0,
                 "proxy": None}]
        for precision in args.precisions:
            options = ConvertOptions(out_dir=out, precision=precision, data=data,
                                     calibration_images=args.calibration_images, calibration_dir=out / "calib",
                                     progress=lambda line: print(line, file=sys.stderr, flush=True))
            artifact = convert(model, "coreml", options)
            proxy = artifact.record.provenance["proxy"]
            result = evaluate(out / proxy["artifact"], data, progress=False)
            rows.append({"artifact": artifact.path.name, "precision": precision,
                         "size_bytes": artifact.size_bytes, "map50_95": round(result.map50_95, 4),
                         "map50": round(result.map50, 4),
                         "drop_points": round((base.map50_95 - result.map50_95) * 100, 2), "proxy": proxy["label"]})
    sizes = {r["precision"]: r["size_bytes"] for r in rows}
    drops = {r["precision"]: r["drop_points"] for r in rows}
    checks = {f"{p} drop <= {limit}": drops[p] <= limit for p, limit in GOALS["drop_points_max"].items()
              if p in drops}
    if "int8w" in sizes and "fp16" in sizes:
        ratio = sizes["int8w"] / sizes["fp16"]
        checks[f"int8w size {ratio:.2f}x fp16 <= {GOALS['int8w_size_vs_fp16_max']}"] = \
            ratio <= GOALS["int8w_size_vs_fp16_max"]
    print("mAP of each package measured through its proxy (Core ML runs only on macOS)")
    print(f"{'artifact':<42} {'MB':>6} {'mAP50-95':>9} {'mAP50':>7} {'drop pts':>9}")
    for r in rows:
        print(f"{r['artifact']:<42} {r['size_bytes'] / 1e6:>6.2f} {r['map50_95']:>9.4f} {r['map50']:>7.4f} "
              f"{r['drop_points']:>+9.2f}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": host_description(), "model": Path(model).name,
                                     "calibration_images": args.calibration_images,
                                     "rows": rows, "goals": GOALS, "checks": checks}, indent=2))
    print(f"wrote {args.json}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
