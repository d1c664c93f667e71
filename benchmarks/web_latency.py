"""In-browser latency of an onnx-web folder: onnxruntime-web (WASM) in headless Chromium vs Python onnxruntime.

    python benchmarks/web_latency.py [--web-dir DIR] [--runs 50] [--threads 2]

Without --web-dir the bundled model is converted (`--target onnx-web`, fp32) into a temporary folder.
Every model in the folder's manifest that runs on the WASM backend (fp32, int8) is timed on the same
640x480 val image: in Chromium single-threaded (plain server) and with wasm threads (COOP/COEP server),
and in Python onnxruntime with 1 and N threads. Prints a table, writes
benchmarks/results/web_latency.json and DIR/browser_latency.json (read by the report;
`edgeport.web.read_browser_latency`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.runtime import Detector  # noqa: E402
from edgeport.web import BROWSER_LATENCY, MANIFEST  # noqa: E402
from edgeport.web.serve import serve_in_background  # noqa: E402
from stages import timed_detect  # noqa: E402

IMAGE = "val_0014.jpg"  # 640x480, no EXIF tag


def browser_run(web_dir: Path, model: str, threads: int, isolated: bool, runs: int, warmup: int) -> dict:
    """Open the page in headless Chromium and run its own benchmark (window.edgeport.benchmark)."""
    image = sample.data_yaml().parent / "images" / "val" / IMAGE
    (web_dir / IMAGE).write_bytes(image.read_bytes())
    server, base = serve_in_background(web_dir, isolated=isolated)
    try:
        config = {"page": f"{base}index.html?backend=wasm&model={model}&threads={threads}", "images": [base + IMAGE],
                  "benchmark": {"runs": runs, "warmup": warmup}}
        env = {**os.environ, "PLAYWRIGHT_CORE": str(ROOT / "node_modules" / "playwright-core")}
        done = subprocess.run(["node", str(ROOT / "tests" / "web" / "run_page.mjs"), json.dumps(config)],
                              capture_output=True, text=True, timeout=900, env=env)
    finally:
        server.shutdown()
        server.server_close()
        (web_dir / IMAGE).unlink(missing_ok=True)
    if done.returncode != 0:
        raise SystemExit(f"web_latency: the page failed: {done.stderr[-2000:]}")
    page = json.loads(done.stdout)
    return {**page["benchmark"], "browser": page["userAgent"]}


def python_run(model: Path, threads: int, runs: int, warmup: int) -> dict:
    """The same model in Python onnxruntime: inference (invoke) and end to end on the decoded image."""
    detector = Detector(model, threads=threads)
    rgb = detector.load(sample.data_yaml().parent / "images" / "val" / IMAGE)
    inference, total = [], []
    for i in range(warmup + runs):
        pre, invoke, post = timed_detect(detector, rgb)
        if i >= warmup:
            inference.append(invoke)
            total.append(pre + invoke + post)
    return {"threads": threads, "inference_ms_p50": float(np.percentile(inference, 50)),
            "inference_ms_p99": float(np.percentile(inference, 99)),
            "end_to_end_ms_p50": float(np.percentile(total, 50)), "end_to_end_ms_p99": float(np.percentile(total, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--web-dir", type=Path, default=None, help="an onnx-web folder (default: convert the sample)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the threaded runs")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "web_latency.json")
    args = parser.parse_args()

    work = None
    web_dir = args.web_dir
    if web_dir is None:
        from edgeport.convert import ConvertOptions, convert

        work = tempfile.TemporaryDirectory(prefix="edgeport-web-latency-")
        web_dir = convert(sample.model_path(), "onnx-web", ConvertOptions(out_dir=Path(work.name))).path.parent
    manifest = json.loads((web_dir / MANIFEST).read_text())
    rows, python_rows = [], []
    load_before = os.getloadavg()[0]
    for entry in manifest["models"]:
        if entry["backend"] != "wasm":
            continue  # fp16 is for WebGPU, which headless Chromium without a GPU does not have
        for threads, isolated in ((1, False), (args.threads, True)):
            row = browser_run(web_dir, entry["file"], threads, isolated, args.runs, args.warmup)
            rows.append({"model": entry["file"], "precision": entry["precision"], "backend": "wasm",
                         "threads": row["threads"], "cross_origin_isolated": row["crossOriginIsolated"],
                         **{k: round(row[k], 3) for k in ("inference_ms_p50", "inference_ms_p99", "end_to_end_ms_p50",
                                                          "end_to_end_ms_p99")},
                         "browser": row["browser"], "onnxruntime_web": row["onnxruntimeWeb"]})
            python = python_run(web_dir / entry["file"], threads, args.runs, args.warmup)
            python_rows.append({"model": entry["file"], "precision": entry["precision"],
                                "backend": "onnxruntime (Python)",
                                **{k: round(v, 3) if isinstance(v, float) else v for k, v in python.items()}})
    import onnxruntime

    host = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"
    browser_latency = {"schema": "edgeport.browser_latency/1", "measured_on": host,
                       "browser": rows[0]["browser"] if rows else None,
                       "onnxruntime_web": manifest.get("onnxruntime_web"), "image": f"{IMAGE} (640x480)",
                       "runs": args.runs, "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                       "rows": rows}
    (web_dir / BROWSER_LATENCY).write_text(json.dumps(browser_latency, indent=2))
    result = {**browser_latency, "python_onnxruntime": onnxruntime.__version__, "python_rows": python_rows}

    print(f"host: {host}; {IMAGE} 640x480, model input 320x320; {args.runs} runs after {args.warmup} warm-up")
    print(f"browser: {browser_latency['browser']}; 1-min load average before/after: "
          f"{browser_latency['load_average_1min'][0]} / {browser_latency['load_average_1min'][1]}\n")
    header = f"{'model':<26}{'where':<34}{'threads':>8}{'inference p50/p99':>22}{'end-to-end p50/p99':>22}"
    print(header + "\n" + "-" * len(header))
    for row, python in zip(rows, python_rows):
        for label, r in (("Chromium, onnxruntime-web wasm", row), ("Python onnxruntime", python)):
            print(f"{row['model']:<26}{label:<34}{r['threads']:>8}"
                  f"{r['inference_ms_p50']:>12.2f}/{r['inference_ms_p99']:<9.2f}"
                  f"{r['end_to_end_ms_p50']:>12.2f}/{r['end_to_end_ms_p99']:<9.2f}")
    print("\n(ms; end to end = letterbox + inference + decode and NMS on the decoded image; the browser's wasm "
          "threads need a cross-origin isolated page)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json} and {web_dir / BROWSER_LATENCY}")
    if work is not None:
        work.cleanup()


if __name__ == "__main__":
    main()
