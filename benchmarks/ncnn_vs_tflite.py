"""NCNN against float and against TFLite int8 on this machine: accuracy drop and model latency, in one run.

    python benchmarks/ncnn_vs_tflite.py [--runs 40] [--threads 1,2] [--calibration-images 80]
                              [--json benchmarks/results/ncnn.json]

For each bundled trained sample (YOLOv8n, YOLO26n) this run converts the float ONNX (the baseline), NCNN fp16
(the default) and fp32, and the full-integer TFLite int8 (calibrated on the bundled val split); evaluates each
through the runtime on the bundled val split (coco mAP50-95, drop in points against the float ONNX); and times
the model invoke alone on one letterboxed image in a fresh process that imports only the runtime (as on the
device), artifacts interleaved round by round so that a busy machine slows them alike (median and p90 over
--runs). Caveat: this is an x86 CPU. NCNN's ARM NEON kernels (fp16 arithmetic on ARMv8.2) and XNNPACK's ARM
int8 kernels are what a Raspberry Pi runs; x86 says little about them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.evaluate import evaluate  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402

GOAL_DROP_POINTS = 0.1  # NCNN fp16 against float, mAP50-95 points
ARTIFACTS = (("onnx", "fp32"), ("ncnn", "fp16"), ("ncnn", "fp32"), ("tflite", "int8"))
CAVEAT = ("x86 CPU: NCNN's ARM NEON kernels (fp16 arithmetic on ARMv8.2) and XNNPACK's ARM int8 kernels are what a "
          "Raspberry Pi runs; these x86 timings say little about the Pi")


def convert_all(model: Path, out: Path, calibration_images: int) -> dict[str, Path]:
    """'target:precision' -> the written artifact (each checked against the float model, except the baseline)."""
    paths = {}
    for target, precision in ARTIFACTS:
        start = time.perf_counter()
        artifact = convert(model, target, ConvertOptions(
            out_dir=out, precision=precision, data=sample.data_yaml(), calibration_images=calibration_images,
            check=target != "onnx", progress=lambda line: None))
        paths[f"{target}:{precision}"] = artifact.path
        print(f"{model.stem}: {target} {precision} converted in {time.perf_counter() - start:.0f} s", flush=True)
    return paths


def accuracy(paths: dict[str, Path]) -> dict[str, dict]:
    """mAP50-95 / mAP50 of each artifact on the bundled val split (one thread), drop against the float ONNX."""
    rows = {}
    for spec, path in paths.items():
        result = evaluate(Detector(path, threads=1), sample.data_yaml(), progress=False)
        rows[spec] = {"artifact": path.name, "map50_95": round(result.map50_95, 4), "map50": round(result.map50, 4)}
    base = rows["onnx:fp32"]["map50_95"]
    for row in rows.values():
        row["drop_points"] = round((base - row["map50_95"]) * 100, 2)
    return rows


def latency_in_device_process(paths: dict[str, Path], threads: int, runs: int) -> dict[str, dict]:
    """`latency` in a fresh process that imports only the runtime, as on the device: in this one torch is
    loaded, and with its OpenMP runtime started first NCNN's threads collapsed here (2 threads: 36 ms alone,
    320 ms with torch imported)."""
    done = subprocess.run([sys.executable, __file__, "--time", json.dumps({k: str(v) for k, v in paths.items()}),
                           "--threads", str(threads), "--runs", str(runs)], capture_output=True, text=True,
                          check=True, env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def latency(paths: dict[str, Path], threads: int, runs: int) -> dict[str, dict]:
    """Median and p90 ms of the model invoke, artifacts interleaved round by round."""
    image = next((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))
    detectors = {spec: Detector(path, threads=threads) for spec, path in paths.items()}
    tensors = {spec: d.preprocess([d.load(image)])[0] for spec, d in detectors.items()}
    times: dict[str, list[float]] = {spec: [] for spec in detectors}
    for round_ in range(runs + 3):
        for spec, detector in detectors.items():
            start = time.perf_counter()
            detector.backend.invoke(tensors[spec])
            if round_ >= 3:  # warm-up rounds
                times[spec].append((time.perf_counter() - start) * 1000)
    return {spec: {"threads": threads, "invoke_ms_p50": round(float(np.median(t)), 1),
                   "invoke_ms_p90": round(float(np.percentile(t, 90)), 1)} for spec, t in times.items()}


def table(results: dict) -> str:
    lines = ["| model | artifact | mAP50-95 | drop pts | threads | invoke p50 ms | p90 ms | vs TFLite int8 |",
             "|---|---|---|---|---|---|---|---|"]
    for model, result in results.items():
        for timing in result["latency"]:
            int8 = timing["tflite:int8"]["invoke_ms_p50"]
            for spec, row in result["accuracy"].items():
                t = timing[spec]
                lines.append(f"| {model} | {spec} | {row['map50_95']:.4f} | {row['drop_points']:+.2f} | {t['threads']} "
                             f"| {t['invoke_ms_p50']} | {t['invoke_ms_p90']} | {t['invoke_ms_p50'] / int8:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", default="1,2", help="comma list of interpreter thread counts to time")
    parser.add_argument("--calibration-images", type=int, default=80)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ncnn.json")
    parser.add_argument("--time", help=argparse.SUPPRESS)  # the device-process worker: JSON {spec: path}
    args = parser.parse_args()
    if args.time:
        assert "torch" not in sys.modules, "the timing process must not load torch"
        print(json.dumps(latency({k: Path(v) for k, v in json.loads(args.time).items()}, int(args.threads),
                                 args.runs)))
        return
    work = Path(tempfile.mkdtemp(prefix="edgeport-ncnn-bench-"))
    results = {}
    for model in sample.models():
        paths = convert_all(model, work / model.stem, args.calibration_images)
        rows = accuracy(paths)
        print(model.stem, json.dumps(rows), flush=True)
        timings = [latency_in_device_process(paths, int(t), args.runs) for t in args.threads.split(",")]
        results[model.stem] = {"accuracy": rows, "latency": timings,
                               "ncnn_fp16_within_goal": rows["ncnn:fp16"]["drop_points"] <= GOAL_DROP_POINTS}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": {"machine": platform.machine(), "processor": platform.processor(),
                                              "python": platform.python_version()},
                                     "goal_drop_points": GOAL_DROP_POINTS, "runs": args.runs, "caveat": CAVEAT,
                                     "command": " ".join(["python", *sys.argv]), "results": results}, indent=2))
    print(table(results))
    print(f"caveat: {CAVEAT}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
