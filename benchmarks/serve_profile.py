"""Where the time of one POST /detect goes, stage by stage, with the daemon's own functions in one process:
JPEG decode (reduced scale) + letterbox, input tensor, invoke (batch 1, and per image in a batch of N),
box decode + NMS, JSON; each model at 1 and 2 interpreter threads, arms interleaved.

    python benchmarks/serve_profile.py [--runs 40] [--batch 8] [--model M.onnx ...] [--json ...]

Without --model: the dynamic-batch ONNX that benchmarks/serve.py serves. A model with a fixed batch N is
profiled at batch N. The HTTP and uvicorn share is what serve.py's single-request latency leaves over.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from runtime_latency import frame_640x480  # noqa: E402

from edgeport.runtime import Detector  # noqa: E402
from edgeport.runtime.image_io import decode_for_model  # noqa: E402


def _ms(work, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        samples.append((time.perf_counter() - t0) * 1000)
    return float(np.median(samples))


def profile(model: Path, jpeg: bytes, threads: int, batch: int, runs: int) -> dict:
    """Median milliseconds per image of each stage of one upload, and of the invoke at batch `batch`."""
    detector = Detector(model, threads=threads)
    batch = detector.batch_size or batch
    pixels, _ = decode_for_model(jpeg, detector.imgsz)
    canvas, placement = detector.place(pixels)
    canvases = np.stack([canvas] * batch)
    one = detector.to_tensor(canvases[:1])
    many = detector.to_tensor(canvases)
    outputs = detector.infer(many)
    result = detector.postprocess(outputs, [placement] * batch)[0]
    stages = {
        "decode_ms": _ms(lambda: decode_for_model(jpeg, detector.imgsz), runs),
        "letterbox_ms": _ms(lambda: detector.place(pixels), runs),
        "tensor_ms": _ms(lambda: detector.to_tensor(canvases[:1]), runs),
        "invoke_b1_ms": _ms(lambda: detector.infer(one), runs) if not detector.batch_size or batch == 1 else None,
        f"invoke_b{batch}_per_image_ms": _ms(lambda: detector.infer(many), max(3, runs // batch)) / batch,
        "postprocess_ms": _ms(lambda: detector.postprocess(outputs, [placement]), runs),
        "json_ms": _ms(lambda: json.dumps(result.to_dict()), runs),
    }
    return {"model": model.name, "threads": threads, "batch": batch, **{k: v for k, v in stages.items() if v}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="batch of a dynamic-batch model")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every arm")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "serve_profile.json")
    args = parser.parse_args()
    if not args.model:
        from serve import dynamic_batch_onnx

        args.model = [dynamic_batch_onnx(Path(tempfile.mkdtemp(prefix="edgeport-profile-")))]
    jpeg = frame_640x480()
    rows: dict[tuple[str, int], list[dict]] = {}
    for round_ in range(args.rounds):  # arms interleaved: a shared host's load falls on all alike
        for model in args.model:
            for threads in (1, 2):
                print(f"round {round_ + 1}/{args.rounds}: {model.name}, {threads} thread(s) ...", file=sys.stderr)
                rows.setdefault((model.name, threads), []).append(profile(model, jpeg, threads, args.batch,
                                                                          args.runs))
    table = []
    for runs in rows.values():
        merged = {k: (float(np.median([r[k] for r in runs])) if isinstance(v, float) else v)
                  for k, v in runs[0].items()}
        table.append(merged)
    print(f"\nPOST /detect stage by stage (ms per image, median) on {platform.machine()}, 640x480 JPEG")
    for row in table:
        cells = "  ".join(f"{k[:-3]} {v:.2f}" for k, v in row.items() if k.endswith("_ms"))
        print(f"  {row['model']:<28} threads {row['threads']}  {cells}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": platform.machine(), "rows": table}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
