"""Runtime latency benchmark: per-stage p50/p99, the runtime against Ultralytics' predictor, footprint.

    python benchmarks/runtime_latency.py [--runs 100] [--json benchmarks/results/runtime_latency.json]

Prints a table and writes JSON. Every figure is measured in this one run on this host; goals are
ratios (stage shares, speed-up) so that they hold on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.runtime.image_io import decode_bytes  # noqa: E402
from stages import timed_detect  # noqa: E402

GOALS = {"pre_post_share_max": 0.15, "speedup_vs_ultralytics_min": 2.0, "venv_mb_max": 150, "cold_start_s_max": 1.0}


def frame_640x480() -> bytes:
    """A 640x480 JPEG frame from the bundled val split (letterboxed onto a 640x480 canvas)."""
    image = cv2.imread(str(next((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    h, w = image.shape[:2]
    scale = min(480 / h, 640 / w)
    small = cv2.resize(image, (int(w * scale), int(h * scale)))
    canvas[: small.shape[0], : small.shape[1]] = small
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99))}


def stage_timings(detector: Detector, jpeg: bytes, runs: int) -> dict[str, dict[str, float]]:
    """Milliseconds per stage: decode, preprocess, invoke, postprocess, and end to end."""
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "invoke", "postprocess", "end_to_end")}
    for i in range(runs + 5):
        t0 = time.perf_counter()
        rgb = decode_bytes(jpeg)
        decode = (time.perf_counter() - t0) * 1000
        pre, invoke, post = timed_detect(detector, rgb)
        if i >= 5:
            for key, value in zip(stages, (decode, pre, invoke, post, decode + pre + invoke + post)):
                stages[key].append(value)
    return {key: percentiles(values) for key, values in stages.items()}


def against_ultralytics(detector: Detector, artifact: Path, bgr: np.ndarray, runs: int) -> dict[str, object]:
    """Interleave `detector.detect` and `YOLO(artifact).predict` on the same decoded frame.

    Returns p50/p99 of both, and each one's overhead around the shared invoke (its p50 from the
    same loop), so that load on the host hits both sides alike.
    """
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(artifact), task="detect")
    ours, theirs, invoke = [], [], []
    for i in range(runs + 5):
        start = time.perf_counter()
        rgb = detector.load(bgr)
        tensor, placements = detector.preprocess([rgb])
        t_invoke = time.perf_counter()
        outputs = detector.infer(tensor)
        t_post = time.perf_counter()
        detector.postprocess(outputs, placements)
        middle = time.perf_counter()
        model.predict(bgr, imgsz=320, conf=0.25, iou=0.45, verbose=False, device="cpu")
        end = time.perf_counter()
        if i >= 5:
            ours.append((middle - start) * 1000)
            theirs.append((end - middle) * 1000)
            invoke.append((t_post - t_invoke) * 1000)
    invoke_p50 = float(np.percentile(invoke, 50))
    ours_p, theirs_p = percentiles(ours), percentiles(theirs)
    return {"ours_ms": ours_p, "ultralytics_predict_ms": theirs_p, "invoke_p50_ms": invoke_p50,
            "speedup_vs_ultralytics": round(theirs_p["p50"] / ours_p["p50"], 2),
            "overhead_ms": {"ours": round(ours_p["p50"] - invoke_p50, 3),
                            "ultralytics": round(theirs_p["p50"] - invoke_p50, 3)},
            "overhead_ratio_vs_ultralytics": round((theirs_p["p50"] - invoke_p50) / max(ours_p["p50"] - invoke_p50,
                                                                                       1e-3), 2)}


def cold_start_s(artifact: Path, jpeg_path: Path, ultralytics: bool = False) -> float:
    """Seconds for a fresh process to import the runtime, open the artifact and detect once
    (with ultralytics=True: the same through `YOLO(artifact).predict`)."""
    if ultralytics:
        body = (f"from edgeport.convert.ultralytics_env import load_ultralytics; load_ultralytics()\n"
                f"from ultralytics import YOLO\n"
                f"YOLO({str(artifact)!r}, task='detect').predict({str(jpeg_path)!r}, imgsz=320, verbose=False)")
    else:
        body = f"from edgeport.runtime import Detector\nDetector({str(artifact)!r}).detect({str(jpeg_path)!r})"
    code = "import time; t = time.perf_counter()\n" + body + "\nprint(time.perf_counter() - t)"
    best = float("inf")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


def venv_site_packages_mb(extra: str = "onnx") -> dict[str, float]:
    """Install edgeport[extra] into a fresh venv; return MB of site-packages in total and per package."""
    with tempfile.TemporaryDirectory(prefix="edgeport-venv-") as tmp:
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        pip = Path(tmp) / "bin" / "pip"
        subprocess.run([str(pip), "install", "-q", f"{ROOT}[{extra}]"], check=True, capture_output=True)
        site = next(Path(tmp).glob("lib/python*/site-packages"))
        sizes = {}
        for entry in site.iterdir():
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            sizes[entry.name] = sum(p.stat().st_size for p in files) / 1e6
        top = dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8])
        return {"total": round(sum(sizes.values()), 1), **{k: round(v, 1) for k, v in top.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "runtime_latency.json")
    parser.add_argument("--skip-venv", action="store_true", help="skip the fresh-venv footprint measurement")
    args = parser.parse_args()

    from edgeport.convert import ConvertOptions, convert
    from edgeport.convert.onnx_target import export_ultralytics_onnx

    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-"))
    ours_onnx = convert(sample.model_path(), "onnx", ConvertOptions(out_dir=work / "ours")).path
    plain_onnx = export_ultralytics_onnx(sample.model_path(), work, None, 17)
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    plain_tflite = Path(YOLO(str(work / sample.model_path().name)).export(format="tflite", imgsz=320, verbose=False))
    jpeg = frame_640x480()
    jpeg_path = work / "frame.jpg"
    jpeg_path.write_bytes(jpeg)
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

    rows = []
    for label, artifact in (("edgeport ONNX (split head)", ours_onnx), ("Ultralytics ONNX", plain_onnx),
                            ("Ultralytics TFLite", plain_tflite)):
        detector = Detector(artifact)
        stages = stage_timings(detector, jpeg, args.runs)
        e2e = stages["end_to_end"]["p50"]
        share = (stages["preprocess"]["p50"] + stages["postprocess"]["p50"]) / e2e
        row = {"artifact": label, "file": artifact.name, "backend": detector.backend_name, "stages_ms": stages,
               "pre_post_share": round(share, 3)}
        if label.startswith("Ultralytics"):
            row.update(against_ultralytics(detector, artifact, bgr, args.runs))
        rows.append(row)

    result = {"host": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, Python "
                      f"{platform.python_version()}", "frame": "640x480 JPEG", "imgsz": 320, "runs": args.runs,
              "goals": GOALS, "rows": rows, "cold_start_s": round(cold_start_s(ours_onnx, jpeg_path), 3),
              "cold_start_ultralytics_s": round(cold_start_s(plain_onnx, jpeg_path, ultralytics=True), 3)}
    if not args.skip_venv:
        result["venv_onnx_site_packages_mb"] = venv_site_packages_mb("onnx")
    shutil.rmtree(work, ignore_errors=True)

    print(f"host: {result['host']}; frame {result['frame']}; model input 320x320; {args.runs} runs\n")
    header = f"{'artifact':<28}{'decode':>14}{'preprocess':>14}{'invoke':>14}{'postprocess':>14}{'end-to-end':>14}" \
             f"{'pre+post':>10}{'vs Ultralytics':>16}{'overhead vs U.':>16}"
    print(header + "\n" + "-" * len(header))
    for row in rows:
        cells = "".join(f"{row['stages_ms'][k]['p50']:>7.2f}/{row['stages_ms'][k]['p99']:<6.2f}"
                        for k in ("decode", "preprocess", "invoke", "postprocess", "end_to_end"))
        speed = f"{row['speedup_vs_ultralytics']:.2f}x" if "speedup_vs_ultralytics" in row else "-"
        overhead = f"{row['overhead_ratio_vs_ultralytics']:.1f}x" if "overhead_ratio_vs_ultralytics" in row else "-"
        print(f"{row['artifact']:<28}{cells}{row['pre_post_share']:>10.1%}{speed:>16}{overhead:>16}")
    print("\n(ms, p50/p99; 'vs Ultralytics' = YOLO(artifact).predict p50 / edgeport detect p50 on the same array;")
    print(" 'overhead vs U.' = the same ratio for the time spent around the shared invoke)")
    print(f"import + open + first detection (fresh process): {result['cold_start_s']:.3f} s "
          f"(goal <= {GOALS['cold_start_s_max']} s); through Ultralytics: {result['cold_start_ultralytics_s']:.3f} s")
    if "venv_onnx_site_packages_mb" in result:
        sizes = result["venv_onnx_site_packages_mb"]
        print(f"fresh venv with edgeport[onnx]: {sizes['total']:.0f} MB site-packages (goal <= {GOALS['venv_mb_max']} MB); "
              "largest: " + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items() if k != "total"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
