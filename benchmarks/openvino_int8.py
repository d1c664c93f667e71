"""OpenVINO on this CPU: the IR's accuracy drop per precision on both bundled samples, NNCF accuracy control
against TFLite's int16 fallback at the same budget, and int8 IR invoke against the float ONNX in onnxruntime.

    python benchmarks/openvino_int8.py [--runs 100] [--threads 1,2] [--max-drop 0.5] [--calibration-images 80]
                                  [--json benchmarks/results/openvino.json]

Every artifact is converted in this run and evaluated on the bundled val split (coco protocol) through
the runtime; drops are in points of mAP50-95 against the float ONNX. Latency: the float ONNX
(onnxruntime), the fp32 and int8 IRs (OpenVINO CPU) take turns on one 640x480 frame, p50 / p99 / min of
each stage over --runs, at each --threads count.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from edgeport import sample  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.evaluate import evaluate  # noqa: E402
from edgeport.report import host_description  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.runtime.image_io import load_image  # noqa: E402
from onnx_precision import time_stages  # noqa: E402

VARIANTS = (("openvino fp32", "openvino", "fp32", False), ("openvino fp16", "openvino", "fp16", False),
            ("openvino int8", "openvino", "int8", False),
            ("openvino int8, accuracy control", "openvino", "int8", True),
            ("tflite int8, int16 fallback", "tflite", "int8", True))


def one(model: Path, label: str, target: str, precision: str, controlled: bool, args, out: Path) -> dict:
    """Convert one variant into its own folder, evaluate it; one JSON row."""
    folder = out / label.replace(" ", "_").replace(",", "")
    options = ConvertOptions(out_dir=folder, precision=precision, data=sample.data_yaml(),
                             calibration_images=args.calibration_images, calibration_dir=out / "calib",
                             max_drop=args.max_drop if controlled else None, fallback=controlled and target == "tflite",
                             progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    start = time.perf_counter()
    artifact = convert(model, target, options)
    seconds = time.perf_counter() - start
    value = float("nan") if args.latency_only else evaluate(artifact.path, sample.data_yaml(), progress=False).map50_95
    prov = artifact.record.provenance
    kept = (prov.get("accuracy_control", {}).get("float_ops") if target == "openvino"
            else prov.get("fallback", {}).get("int16_layers"))
    return {"model": model.stem, "variant": label, "artifact": artifact.path.name, "map50_95": round(value, 4),
            "size_mb": round(artifact.size_bytes / 1e6, 2), "convert_s": round(seconds, 1),
            "kept_layers": kept if controlled else None, "path": str(artifact.path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", default="1,2", help="thread counts to time at (comma list)")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--calibration-images", type=int, default=80)
    parser.add_argument("--models", default=",".join(str(m) for m in sample.models()))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "openvino.json")
    parser.add_argument("--latency-only", action="store_true",
                        help="convert the float ONNX and the fp32/int8 IRs only and time them (no evaluation)")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if not args.latency_only or (v[1] == "openvino" and not v[3] and v[2] != "fp16")]
    out = Path(tempfile.mkdtemp(prefix="edgeport-openvino-"))
    rows, latency = [], {}
    frame = load_image(sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))[0])
    for model in [Path(m) for m in args.models.split(",")]:
        base_path = convert(model, "onnx", ConvertOptions(out_dir=out / model.stem, check=False)).path
        base = float("nan") if args.latency_only else evaluate(base_path, sample.data_yaml(), progress=False).map50_95
        rows.append({"model": model.stem, "variant": "onnx fp32 (baseline)", "map50_95": round(base, 4)})
        for label, target, precision, controlled in variants:
            row = one(model, label, target, precision, controlled, args, out / model.stem)
            row["drop_points"] = round((base - row["map50_95"]) * 100, 2)
            rows.append(row)
            print({k: v for k, v in row.items() if k != "path"}, flush=True)
        irs = {r["variant"]: r["path"] for r in rows if r["model"] == model.stem and r.get("path")}
        for threads in [int(t) for t in str(args.threads).split(",")]:
            key = f"{model.stem}, {threads} thread(s)"
            detectors = {"onnx fp32 (onnxruntime)": Detector(base_path, threads=threads),
                         "openvino fp32": Detector(irs["openvino fp32"], threads=threads),
                         "openvino int8": Detector(irs["openvino int8"], threads=threads)}
            latency[key] = time_stages(detectors, frame, args.runs)
            for stat, index in (("p50", 0), ("min", 2)):
                ratio = latency[key]["onnx fp32 (onnxruntime)"]["invoke"][index] / \
                    latency[key]["openvino int8"]["invoke"][index]
                latency[key][f"int8_ir_invoke_speedup_{stat}"] = round(ratio, 2)
            print(key, json.dumps(latency[key]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row.pop("path", None)
    args.json.write_text(json.dumps({"host": host_description(), "threads": args.threads, "runs": args.runs,
                                     "max_drop": args.max_drop, "calibration_images": args.calibration_images,
                                     "rows": rows, "latency_ms_p50_p99_min": latency}, indent=2))
    print(table(rows, latency))
    print(f"wrote {args.json}")


def table(rows: list[dict], latency: dict) -> str:
    """Markdown: accuracy rows, then the invoke latency per model."""
    lines = ["| model | variant | mAP50-95 | drop (points) | size MB | layers kept (float / int16) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        kept = r.get("kept_layers")
        lines.append(f"| {r['model']} | {r['variant']} | {r['map50_95']:.4f} | {r.get('drop_points', 0):+.2f} | "
                     f"{r.get('size_mb', '-')} | {'-' if kept is None else len(kept)} |")
    lines += ["", "| model, threads | engine | invoke p50 ms | invoke p99 ms | invoke min ms | end to end p50 ms |",
              "|---|---|---|---|---|---|"]
    for model, engines in latency.items():
        for engine, stages in engines.items():
            if isinstance(stages, dict):
                lines.append(f"| {model} | {engine} | {stages['invoke'][0]} | {stages['invoke'][1]} | "
                             f"{stages['invoke'][2]} | {stages['end_to_end'][0]} |")
        lines.append(f"| {model} | int8 IR / float ONNX invoke | {engines['int8_ir_invoke_speedup_p50']}x | | "
                     f"{engines['int8_ir_invoke_speedup_min']}x | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
