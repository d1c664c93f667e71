"""onnxruntime fp32 vs fp16 vs int8 QDQ on this machine: per-stage latency and accuracy.

    python benchmarks/onnx_precision.py [--runs 100] [--threads 2] [--providers cpu|cuda|tensorrt]
                                        [--calibration-images 80] [--json benchmarks/results/onnx_precision.json]

Every artifact is converted in this run, evaluated on the bundled val split (coco protocol)
through the runtime, and timed stage by stage on one 640x480 JPEG frame: preprocess (letterbox
to the input tensor), invoke (onnxruntime run), postprocess (decode + NMS + back to the frame),
p50 / p99 over --runs, artifacts interleaved round by round so that a busy machine slows them
alike. The tensorrt int8 row is the QDQ graph TensorRT builds from, run here in onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.evaluate import evaluate  # noqa: E402
from edgeport.report import host_description, io_types  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.runtime.image_io import load_image  # noqa: E402
from stages import timed_detect  # noqa: E402

VARIANTS = (("onnx fp32", "onnx", "fp32"), ("onnx fp16", "onnx", "fp16"), ("onnx int8 QDQ", "onnx", "int8"),
            ("tensorrt int8 QDQ (in onnxruntime)", "tensorrt", "int8"))
STAGES = ("preprocess", "invoke", "postprocess", "end_to_end")


def time_stages(detectors: dict[str, Detector], image_rgb: np.ndarray, runs: int, warmup: int = 5) -> dict:
    """{label: {stage: (p50, p99, min) ms}}, the detectors taking turns every round (the minimum is
    the steadiest figure on a machine other work is using)."""
    samples = {label: {stage: [] for stage in STAGES} for label in detectors}
    for round_index in range(warmup + runs):
        for label, detector in detectors.items():
            pre, invoke, post = timed_detect(detector, image_rgb)
            if round_index >= warmup:
                for stage, value in zip(STAGES, (pre, invoke, post, pre + invoke + post)):
                    samples[label][stage].append(value)
    return {label: {stage: (round(float(np.percentile(v, 50)), 2), round(float(np.percentile(v, 99)), 2),
                            round(float(np.min(v)), 2))
                    for stage, v in stages.items()} for label, stages in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--providers", default="cpu", help="onnxruntime execution providers, e.g. cuda or cpu")
    parser.add_argument("--calibration-images", type=int, default=80)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_precision.json")
    args = parser.parse_args()
    data = sample.data_yaml()
    work = Path(tempfile.mkdtemp(prefix="edgeport-onnx-precision-"))
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    providers = [p for p in args.providers.split(",") if p]
    artifacts = {}
    for label, target, precision in VARIANTS:
        options = ConvertOptions(out_dir=work, precision=precision, data=data, progress=say,
                                 calibration_images=args.calibration_images, calibration_dir=work / "calib")
        artifacts[label] = convert(sample.model_path(), target, options).path
    detectors = {label: Detector(path, threads=args.threads, backend_options={"providers": providers})
                 for label, path in artifacts.items()}
    rows, baseline = [], None
    for label, path in artifacts.items():
        result = evaluate(detectors[label], data, progress=False)
        baseline = result.map50_95 if baseline is None else baseline
        rows.append({"artifact": label, "file": path.name, "io": io_types(detectors[label]),
                     "size_mb": round(path.stat().st_size / 1e6, 2), "map50_95": round(result.map50_95, 4),
                     "map50": round(result.map50, 4), "drop_points": round((baseline - result.map50_95) * 100, 2)})
    frame = next(p for p in sorted((data.parent / "images" / "val").glob("*.jpg"))
                 if load_image(p).shape[:2] == (480, 640))
    latency = time_stages(detectors, load_image(frame), args.runs)
    for row in rows:
        row["latency_ms_p50_p99_min"] = latency[row["artifact"]]
    fp32 = latency["onnx fp32"]["invoke"][0]
    speedups = {row["artifact"]: round(fp32 / latency[row["artifact"]]["invoke"][0], 2) for row in rows}
    fp32_min = latency["onnx fp32"]["invoke"][2]
    speedups_min = {row["artifact"]: round(fp32_min / latency[row["artifact"]]["invoke"][2], 2) for row in rows}
    result = {"host": host_description(), "providers": detectors["onnx fp32"].backend.providers,
              "threads": args.threads, "runs": args.runs, "calibration_images": args.calibration_images,
              "frame": frame.name, "load_average_1min": round(os.getloadavg()[0], 2), "rows": rows,
              "invoke_speedup_vs_fp32": speedups, "invoke_speedup_vs_fp32_from_min": speedups_min}
    shutil.rmtree(work, ignore_errors=True)

    print(f"host: {result['host']}; providers {', '.join(result['providers'])}; threads {args.threads}; "
          f"{args.runs} runs; ms p50/p99; load average {result['load_average_1min']}; drop in points of "
          "mAP50-95 against onnx fp32\n")
    header = (f"{'artifact':<36}{'MB':>6}{'mAP50-95':>10}{'mAP50':>8}{'drop':>7}  "
              + "".join(f"{stage:>16}" for stage in STAGES) + f"{'invoke min':>12}{'vs fp32 p50/min':>17}")
    print(header + "\n" + "-" * len(header))
    for row in rows:
        cells = "".join(f"{'%.2f/%.2f' % row['latency_ms_p50_p99_min'][stage][:2]:>16}" for stage in STAGES)
        print(f"{row['artifact']:<36}{row['size_mb']:>6.1f}{row['map50_95']:>10.4f}{row['map50']:>8.4f}"
              f"{row['drop_points']:>7.2f}  {cells}{row['latency_ms_p50_p99_min']['invoke'][2]:>12.2f}"
              f"{'%.2fx/%.2fx' % (speedups[row['artifact']], speedups_min[row['artifact']]):>17}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
