"""The accuracy comparison table: one row per artifact, with its drop against the float baseline."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeport.artifact import artifact_size
from edgeport.evaluate import EvalResult, evaluate
from edgeport.runtime import Detector


@dataclass
class ReportRow:
    """One artifact's line in the report; `to_dict` gives the report.json keys."""

    artifact: str
    target: str
    precision: str
    io: str
    backend: str
    size_bytes: int
    map50_95: float
    map50: float
    drop_map50_95: float | None
    latency_ms_p50: float
    latency_ms_p99: float
    images_per_second: float
    measured_on: str
    calibration: str = "none"  # method and image count of an integer model's calibration

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_description() -> str:
    """e.g. 'x86_64 Linux, 2 CPUs'."""
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"


def measure_latency(detector: Detector, image_rgb: np.ndarray, runs: int = 30, warmup: int = 3) -> tuple[float, float]:
    """Return (p50, p99) milliseconds of preprocess + invoke + postprocess on one decoded image."""
    timings = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        detector.detect_rgb([image_rgb])
        if i >= warmup:
            timings.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def calibration_text(provenance: dict) -> str:
    """e.g. 'minmax (moving average, ai-edge-quantizer), 80 images' or 'none'."""
    method = provenance.get("calibration_method", "none")
    return "none" if method == "none" else f"{method}, {provenance.get('calibration_images', '?')} images"


def io_types(detector: Detector) -> str:
    """e.g. 'float32 NCHW -> float32'."""
    outputs = sorted({o.dtype for o in detector.backend.outputs})
    return f"{detector.backend.inputs[0].dtype} {detector.record.layout} -> {'/'.join(outputs)}"


def report_row(artifact: str | Path, data: str | Path, baseline: float | None, *, protocol: str = "coco",
               threads: int | None = None, latency_runs: int = 30, progress: bool = True) -> tuple[ReportRow, EvalResult]:
    """Evaluate one artifact and time it; `baseline` is the float mAP50-95 the drop is measured against."""
    detector = Detector(artifact, threads=threads)
    result = evaluate(detector, data, protocol=protocol, progress=progress)
    from edgeport.evaluate.dataset import load_dataset

    first = load_dataset(data).images[0]
    p50, p99 = measure_latency(detector, detector.load(first), runs=latency_runs)
    drop = None if baseline is None else round((baseline - result.map50_95) * 100, 3)
    row = ReportRow(artifact=str(artifact), target=detector.record.target, precision=detector.record.precision,
                    io=io_types(detector), backend=detector.backend_name, size_bytes=artifact_size(artifact),
                    map50_95=round(result.map50_95, 4), map50=round(result.map50, 4), drop_map50_95=drop,
                    latency_ms_p50=round(p50, 2), latency_ms_p99=round(p99, 2),
                    images_per_second=round(result.images_per_second, 1),
                    measured_on=f"{host_description()}, {detector.backend_name}",
                    calibration=calibration_text(detector.record.provenance))
    return row, result


def format_table(rows: Sequence[ReportRow]) -> str:
    """A plain-text table of the rows (drop in points of mAP50-95)."""
    header = ("artifact", "target", "precision", "I/O", "size MB", "mAP50-95", "mAP50", "drop pts", "p50 ms", "img/s")
    lines = [header]
    for r in rows:
        lines.append((Path(r.artifact).name, r.target, r.precision, r.io, f"{r.size_bytes / 1e6:.1f}",
                      f"{r.map50_95:.4f}", f"{r.map50:.4f}", "-" if r.drop_map50_95 is None else f"{r.drop_map50_95:+.2f}",
                      f"{r.latency_ms_p50:.1f}", f"{r.images_per_second:.1f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def write_report(rows: Sequence[ReportRow], out_dir: Path, merge: bool = True) -> Path:
    """Write out_dir/report.json (a list of rows); rows already there for other artifacts are kept
    when `merge`, a row for the same artifact is replaced. Return the path."""
    path = Path(out_dir) / "report.json"
    kept: list[dict[str, Any]] = []
    if merge and path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = []
        fresh = {r.artifact for r in rows}
        kept = [row for row in previous if isinstance(row, dict) and row.get("artifact") not in fresh
                and Path(str(row.get("artifact"))).exists()]
    path.write_text(json.dumps(kept + [r.to_dict() for r in rows], indent=2))
    return path


def over_budget(rows: Sequence[ReportRow], max_drop: float | None) -> list[ReportRow]:
    """Rows whose mAP50-95 drop (points) exceeds max_drop."""
    if max_drop is None:
        return []
    return [r for r in rows if r.drop_map50_95 is not None and r.drop_map50_95 > max_drop]


def compare(artifacts: Sequence[Path], baseline: Path, data: str | Path, *, threads: int | None = None,
            progress: bool = True) -> list[ReportRow]:
    """Evaluate the float baseline, then each artifact; rows carry their drop against the baseline."""
    base_row, base = report_row(baseline, data, None, threads=threads, progress=progress)
    base_row.drop_map50_95 = 0.0
    rows = [base_row]
    for artifact in artifacts:
        if Path(artifact) != Path(baseline):
            rows.append(report_row(artifact, data, base.map50_95, threads=threads, progress=progress)[0])
    return rows
