"""The report's rows: one per artifact, with its drop against the float baseline; the text table."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeport.runtime import Detector


# ReportRow.status values
MEASURED, PROXY, NOT_EXECUTABLE, SKIPPED = "measured", "proxy", "not executable", "skipped"


@dataclass
class ReportRow:
    """One artifact's line in the report; `to_dict` gives the report.json keys.

    Numbers are None where nothing was measured (an artifact this host cannot execute and that
    has no proxy, a skipped file): never a blank that reads as a pass. Drops are in points of mAP.
    """

    artifact: str
    target: str
    precision: str
    io: str
    backend: str
    size_bytes: int
    map50_95: float | None
    map50: float | None
    drop_map50_95: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    images_per_second: float | None
    measured_on: str
    calibration: str = "none"  # method and image count of an integer model's calibration
    proxy: str | None = None  # label of the proxy evaluated in place of an artifact this host cannot run
    status: str = MEASURED  # measured, proxy, not executable, skipped
    note: str = ""  # why not executable / skipped, which proxy file, ...
    baseline: bool = False
    images: int | None = None
    drop_map50: float | None = None
    per_class: dict[str, float] = field(default_factory=dict)  # class -> AP50-95
    per_class_drop: dict[str, float] = field(default_factory=dict)  # class -> points lost vs the baseline
    worst_class: str | None = None
    worst_class_drop: float | None = None
    agreement: float | None = None  # share of the baseline's detections (conf >= 0.25) matched
    score_shift: float | None = None  # mean score change of the matched detections
    robustness: dict[str, dict[str, Any]] = field(default_factory=dict)  # perturbation -> mAP, drop
    over_budget: bool = False
    pr_curve: list[float] = field(default_factory=list)  # precision at recall 0, 0.01 .. 1 (IoU 0.5)
    family: str = ""  # Ultralytics family and head of the source model ("yolo26, one2one head")
    edgetpu: str = ""  # Edge TPU mapping of an Edge TPU artifact ("146/411 ops on the Edge TPU; CPU from ...")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifact_name(path: str | Path) -> str:
    """How a row names its artifact: the file name, with its folder for a model of an onnx-web folder."""
    from edgeport.web import MANIFEST

    path = Path(path)
    return f"{path.parent.name}/{path.name}" if (path.parent / MANIFEST).is_file() else path.name


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


def family_text(provenance: dict) -> str:
    """'yolo26, one2one head' from a record's provenance; '' for records without it."""
    head = provenance.get("head") or {}
    return f"{head['family']}, {head['head']} head" if head.get("family") else ""


def edgetpu_text(provenance: dict) -> str:
    """The Edge TPU mapping the converter measured, in one line; '' for other artifacts."""
    analysis = provenance.get("edgetpu") or {}
    if "edgetpu_ops" not in analysis:
        return ""
    total = analysis["edgetpu_ops"] + analysis["cpu_ops"]
    text = f"{analysis['edgetpu_ops']}/{total} ops on the Edge TPU"
    if analysis.get("first_cpu_op"):
        text += f"; CPU from op {analysis['first_cpu_op']} on (the model still runs, partly on the CPU)"
    if analysis.get("float_blocks_on_cpu"):
        text += f"; int8 on the TPU part, {analysis['float_blocks_on_cpu']} blocks kept in float on the CPU"
    return text + ("" if analysis.get("compiled") else "; predicted (edgetpu_compiler not run)")


def calibration_text(provenance: dict) -> str:
    """e.g. 'minmax (moving average, ai-edge-quantizer), 80 images' or 'none'."""
    method = provenance.get("calibration_method", "none")
    if method == "none":
        return "none"
    text = f"{method}, {provenance.get('calibration_images', '?')} images"
    kept = (provenance.get("accuracy_control") or {}).get("float_blocks")
    int16 = (provenance.get("fallback") or {}).get("int16_layers")
    if kept:
        text += f"; {len(kept)} blocks kept in float ({', '.join(kept[:4])}{', ...' if len(kept) > 4 else ''})"
    if int16:
        text += f"; {len(int16)} layers in int16"
    return text


def io_types(detector: Detector) -> str:
    """e.g. 'float32 NCHW -> float32'."""
    outputs = sorted({o.dtype for o in detector.backend.outputs})
    return f"{detector.backend.inputs[0].dtype} {detector.record.layout} -> {'/'.join(outputs)}"


EMULATED_MARK = "[arm64, emulated]"
EMULATED_NOTE = (f"{EMULATED_MARK}: measured inside the emulated Raspberry Pi (arm64 under qemu-user): the accuracy "
                 "of the Pi's interpreters; a latency under qemu is not a Pi's latency, so none is shown")


def is_emulated(row: ReportRow) -> bool:
    """Whether a row was measured on an emulated arm64 machine (`report --arm64`, or rows from another machine
    whose measured_on says emulated or qemu): its accuracy is the arm64 build's, its timings are qemu's."""
    where = row.measured_on.lower()
    return where.startswith("arm64") and ("emulated" in where or "qemu" in where)


def format_table(rows: Sequence[ReportRow]) -> str:
    """A plain-text table of the rows (drop in points of mAP50-95); rows measured under emulation are marked and
    show no latency, with a note under the table saying why."""
    header = ("artifact", "target", "precision", "I/O", "size MB", "mAP50-95", "mAP50", "drop pts", "p50 ms", "img/s")
    lines = [header]
    for r in rows:
        name = artifact_name(r.artifact) + ("" if r.status == MEASURED else f" ({r.status})")
        name += f" {EMULATED_MARK}" if is_emulated(r) else ""
        speed = ("n/a (qemu)",) * 2 if is_emulated(r) else (number(r.latency_ms_p50, ".1f", r),
                                                            number(r.images_per_second, ".1f", r))
        lines.append((name + (" OVER BUDGET" if r.over_budget else ""), r.target, r.precision, r.io, f"{r.size_bytes / 1e6:.1f}",
                      number(r.map50_95, ".4f", r), number(r.map50, ".4f", r), number(r.drop_map50_95, "+.2f", r),
                      *speed))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    if any(is_emulated(r) for r in rows):
        text.append(EMULATED_NOTE)
    return "\n".join(text)


NOT_MEASURED = "not measured"


def number(value: float | None, spec: str, row: ReportRow) -> str:
    """A number, or what stands in its place in every table (text, Markdown, HTML): "-" where a measured row
    has nothing to show, "not measured" for a row nothing was measured for; never a blank that reads as a pass."""
    if value is not None:
        return format(value, spec)
    return "-" if row.status in (MEASURED, PROXY) else NOT_MEASURED
