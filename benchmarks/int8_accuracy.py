"""Full-integer int8 accuracy and speed on the bundled sample, against Ultralytics' own int8 export.

    python benchmarks/int8_accuracy.py [--calibration-images 80] [--json benchmarks/results/int8_accuracy.json]
    python benchmarks/int8_accuracy.py --targets [--search-drop 0.05] [--model 26n] [--json FILE]

`--targets`: the mAP50-95 drop of every int8 target (onnx, tensorrt QDQ proxy, tflite full-integer, tflite
with the int16 fallback, Edge TPU) of each bundled trained sample (YOLOv8n, YOLO26n), with the drop before
accuracy control, what stayed in float or int16, and the p50 invoke of each TFLite (2 threads, the models of
one sample timed round-robin) next to the float TFLite's; `--search-drop N` adds tflite and edgetpu with --max-drop N (the float-block search);
`--model 26n` converts only the bundled models whose name contains it.

Every artifact is evaluated through the same runtime on the same val split, in this one run.
Goals: our full-integer drop <= 1.0 point mAP50-95 against the float ONNX and <= Ultralytics'
drop + 0.5 point; int8 invoke >= 1.5x faster than fp32 TFLite (XNNPACK, 2 threads).
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from edgeport.report import host_description, io_types  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.runtime.image_io import load_image  # noqa: E402

GOALS = {"int8_drop_points_max": 1.0, "margin_vs_ultralytics_points": 0.5, "int8_invoke_speedup_min": 1.5}


def ultralytics_int8(work: Path, data: Path) -> Path:
    """Ultralytics' own `export(format="tflite", int8=True)` calibrated on the same val images."""
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    local = work / "ultralytics" / sample.model_path().name
    local.parent.mkdir(parents=True)
    shutil.copy(sample.model_path(), local)
    data_yaml = work / "ultralytics" / "data.yaml"
    root = data.parent
    data_yaml.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n"
                         + "".join(f"  {i}: {n}\n" for i, n in enumerate(("circle", "square", "triangle"))))
    return Path(YOLO(str(local)).export(format="tflite", int8=True, data=str(data_yaml), imgsz=320,
                                        fraction=1.0, verbose=False))


def timings(path: Path, image_rgb: np.ndarray, runs: int) -> dict[str, float]:
    """p50 milliseconds of invoke alone and of preprocess + invoke + postprocess (2 threads)."""
    detector = Detector(path, threads=2)
    tensor, placements = detector.preprocess([image_rgb])
    invoke, total = [], []
    for i in range(runs + 5):
        start = time.perf_counter()
        detector.backend.invoke(tensor)
        middle = time.perf_counter()
        detector.detect_rgb([image_rgb])
        end = time.perf_counter()
        if i >= 5:
            invoke.append((middle - start) * 1000)
            total.append((end - middle) * 1000)
    return {"invoke_ms_p50": round(float(np.median(invoke)), 2), "end_to_end_ms_p50": round(float(np.median(total)), 2)}


INT8_TARGETS = (("onnx", {}), ("tensorrt", {}), ("tflite", {}), ("tflite", {"fallback": True, "max_drop": 0.5}),
                ("edgetpu", {}))


def kept_text(prov: dict) -> tuple[float | None, str]:
    """(drop before accuracy control or fallback, what stayed in float / int16) from a record's provenance."""
    control, fallback = prov.get("accuracy_control"), prov.get("fallback")
    if control:
        blocks = control["float_blocks"]
        if "float_nodes" in control:
            size = f"{len(control['float_nodes'])} nodes"
        else:  # tflite: ops computing in float, and for the Edge TPU the ops it still runs
            size = f"{len(control['float_ops'])} ops"
            if "edgetpu_ops_after" in control:
                size += f"; {control['edgetpu_ops_after']}/{control['edgetpu_ops_before']} TPU ops kept"
        return control["drop_before"], (f"{len(blocks)} blocks in float ({size}): " + ", ".join(blocks)
                                        if blocks else "none")
    if fallback:
        layers = fallback["int16_layers"]
        return fallback["drop_before"], (f"{len(layers)} layers in int16" if layers else "none needed"
                                         if fallback["reached"] else "none helped (budget not reached)")
    return None, "-"


def interleaved_invoke(paths: list[Path], image_rgb: np.ndarray, runs: int) -> list[float]:
    """p50 milliseconds of invoke for each model (2 threads), measured round-robin in one loop so that a busy
    host slows every model alike."""
    detectors = [Detector(path, threads=2) for path in paths]
    tensors = [d.preprocess([image_rgb])[0] for d in detectors]
    times: list[list[float]] = [[] for _ in paths]
    for i in range(runs + 5):
        for detector, tensor, seen in zip(detectors, tensors, times):
            start = time.perf_counter()
            detector.backend.invoke(tensor)
            if i >= 5:
                seen.append((time.perf_counter() - start) * 1000)
    return [round(float(np.median(seen)), 2) for seen in times]


def target_label(target: str, extra: dict) -> str:
    """e.g. 'tflite', 'tflite --fallback', 'edgetpu --max-drop 0.05', 'tflite fp32'."""
    if extra.get("fallback"):
        return f"{target} --fallback"
    if extra.get("precision") == "fp32":
        return f"{target} fp32"
    return target + (f" --max-drop {extra['max_drop']:g}" if "max_drop" in extra else "")


def print_targets(rows: list[dict]) -> None:
    """The --targets table (markdown): accuracy, what stayed in float, and p50 invoke of the TFLite rows."""
    print("| model | target | mAP50-95 | drop (points) | drop before control | kept in float / int16 "
          "| invoke p50 ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        before = "-" if r["drop_before_points"] is None else f"{r['drop_before_points']:.2f}"
        invoke = f"{r['invoke_ms_p50']:.1f}" if "invoke_ms_p50" in r else "-"
        print(f"| {r['model']} | {r['target']} | {r['map50_95']:.4f} | {r['drop_points']:.2f} | {before} | "
              f"{r['kept']} | {invoke} |")


def per_target(args) -> None:
    """Every int8 target of each bundled trained sample: drop against its float ONNX on the val split."""
    from edgeport.convert.verify import runnable_file

    data, work, rows = sample.data_yaml(), Path(tempfile.mkdtemp(prefix="edgeport-int8-targets-")), []
    image = load_image(next((data.parent / "images" / "val").glob("*.jpg")))
    plan = [("tflite", {"precision": "fp32"})] + list(INT8_TARGETS)
    if args.search_drop is not None:  # the float-block search at work even where the default budget holds
        plan += [("tflite", {"max_drop": args.search_drop}), ("edgetpu", {"max_drop": args.search_drop})]
    for model in sample.pick_model(args.model):
        out = work / model.stem
        base = evaluate(convert(model, "onnx", ConvertOptions(out_dir=out, check=False)).path, data,
                        progress=False).map50_95
        for target, extra in plan:
            label = target_label(target, extra)
            print(f"{model.stem}: {label} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            artifact = convert(model, target, ConvertOptions(**{
                "out_dir": out / label.replace(" --", "_").replace(" ", "_"), "precision": "int8", "data": data,
                "check": False, "calibration_images": args.calibration_images, **extra}))
            seconds = round(time.perf_counter() - start, 1)
            runnable = runnable_file(artifact)
            value = evaluate(runnable, data, progress=False).map50_95
            before, kept = kept_text(artifact.record.provenance)
            rows.append({"model": model.stem, "target": label, "file": runnable.name, "map50_95": round(value, 4),
                         "drop_points": round((base - value) * 100, 2), "drop_before_points": before,
                         "kept": kept, "convert_s": seconds, "path": runnable})
            print({k: v for k, v in rows[-1].items() if k != "path"}, file=sys.stderr, flush=True)
        tflite = [r for r in rows if r["model"] == model.stem and r["path"].suffix == ".tflite"]
        for row, ms in zip(tflite, interleaved_invoke([r["path"] for r in tflite], image, args.runs)):
            row["invoke_ms_p50"] = ms
    for row in rows:
        del row["path"]
    shutil.rmtree(work, ignore_errors=True)
    print_targets(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": host_description(), "calibration_images": args.calibration_images,
                                     "threads": 2, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=80)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--targets", action="store_true", help="every int8 target of each bundled sample")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", default=None, help="--targets: only the bundled models whose name contains this")
    parser.add_argument("--search-drop", type=float, default=None,
                        help="--targets: also tflite and edgetpu with this --max-drop (the float-block search)")
    args = parser.parse_args()
    if args.targets:
        args.json = args.json or ROOT / "benchmarks" / "results" / "int8_targets.json"
        return per_target(args)
    args.json = args.json or ROOT / "benchmarks" / "results" / "int8_accuracy.json"
    data = sample.data_yaml()
    work = Path(tempfile.mkdtemp(prefix="edgeport-int8-"))
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    artifacts = {
        "float ONNX (baseline)": convert(sample.model_path(), "onnx", ConvertOptions(out_dir=work)).path,
        "edgeport TFLite fp32": convert(sample.model_path(), "tflite", ConvertOptions(out_dir=work)).path,
    }
    for io in ("uint8", "float"):
        options = ConvertOptions(out_dir=work, precision="int8", io=io, data=data, progress=say,
                                 calibration_images=args.calibration_images, calibration_dir=work / "calib")
        label = "edgeport full-integer int8 (uint8 I/O)" if io == "uint8" else "edgeport int8, float I/O"
        artifacts[label] = convert(sample.model_path(), "tflite", options).path
    artifacts["Ultralytics int8 TFLite"] = ultralytics_int8(work, data)

    image = load_image(next((data.parent / "images" / "val").glob("*.jpg")))
    rows, baseline = [], None
    for label, path in artifacts.items():
        result = evaluate(path, data, progress=False)
        baseline = result.map50_95 if baseline is None else baseline
        detector = Detector(path)
        rows.append({"artifact": label, "file": path.name, "io": io_types(detector),
                     "size_mb": round(path.stat().st_size / 1e6, 2), "map50_95": round(result.map50_95, 4),
                     "map50": round(result.map50, 4), "drop_points": round((baseline - result.map50_95) * 100, 2),
                     **timings(path, image, args.runs)})
    by = {r["artifact"]: r for r in rows}
    ours = by["edgeport full-integer int8 (uint8 I/O)"]
    theirs = by["Ultralytics int8 TFLite"]
    fp32 = by["edgeport TFLite fp32"]
    verdict = {
        "our_int8_drop_points": ours["drop_points"], "ultralytics_int8_drop_points": theirs["drop_points"],
        "within_1_point": ours["drop_points"] <= GOALS["int8_drop_points_max"],
        "within_ultralytics_plus_half_point": ours["drop_points"] <= theirs["drop_points"] + 0.5,
        "int8_invoke_speedup_vs_fp32": round(fp32["invoke_ms_p50"] / ours["invoke_ms_p50"], 2),
        "uint8_io_end_to_end_speedup_vs_float_io": round(
            by["edgeport int8, float I/O"]["end_to_end_ms_p50"] / ours["end_to_end_ms_p50"], 2),
    }
    result = {"host": host_description(), "calibration_images": args.calibration_images, "goals": GOALS,
              "rows": rows, "verdict": verdict}
    shutil.rmtree(work, ignore_errors=True)

    header = f"{'artifact':<40}{'I/O':<26}{'MB':>6}{'mAP50-95':>10}{'mAP50':>8}{'drop':>7}{'invoke':>9}{'e2e':>8}"
    print(f"host: {result['host']}; threads 2; p50 ms; drop in points of mAP50-95 against the float ONNX\n")
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['artifact']:<40}{r['io']:<26}{r['size_mb']:>6.1f}{r['map50_95']:>10.4f}{r['map50']:>8.4f}"
              f"{r['drop_points']:>7.2f}{r['invoke_ms_p50']:>9.2f}{r['end_to_end_ms_p50']:>8.2f}")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in verdict.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
