"""`edgeport report DIR`: evaluate every artifact of a folder through the runtime, side by side.

Writes DIR/report.md, DIR/report.html (self-contained) and DIR/report.json (a list of rows).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from edgeport.artifact import ArtifactRecord, sha256_file
from edgeport.errors import ConfigError, DatasetError, EdgeportError, ModelError
from edgeport.evaluate import EvalResult, evaluate, evaluate_with_predictions
from edgeport.evaluate.dataset import Dataset, load_dataset
from edgeport.report.agreement import agreement, pr_curve
from edgeport.report.perturb import FGSM, PIXEL_PERTURBATIONS, perturbed_set
from edgeport.report.rows import (
    MEASURED,
    NOT_EXECUTABLE,
    PROXY,
    SKIPPED,
    ReportRow,
    calibration_text,
    edgetpu_text,
    family_text,
    host_description,
    io_types,
    measure_latency,
)
from edgeport.report.scan import Found, open_artifact, scan

PRECISION_ORDER = ("fp32", "fp16", "dynamic", "int16", "int8")


@dataclass
class Report:
    """What one `edgeport report` run measured; `rows[0]` is the baseline."""

    directory: Path
    data: str
    images: int
    rows: list[ReportRow]
    baseline: str
    perturbations: list[dict[str, Any]] = field(default_factory=list)  # name, description, seed, status
    max_drop: float | None = None
    host: str = field(default_factory=host_description)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    command: str = ""

    @property
    def failing(self) -> list[ReportRow]:
        return [r for r in self.rows if r.over_budget]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _subset(dataset: Dataset, n: int | None, work: Path) -> tuple[Path, Dataset]:
    """DATA.yaml and Dataset of n images spread evenly over the split (all of it when n is None)."""
    if n is None or n >= len(dataset.images):
        return dataset.yaml_path, dataset
    if n < 1:
        raise ConfigError(f"--images must be at least 1, got {n}")
    keep = np.unique(np.linspace(0, len(dataset.images) - 1, n).round().astype(int))
    images = [dataset.images[i].resolve() for i in keep]
    out = work / "subset"
    out.mkdir(parents=True, exist_ok=True)
    (out / "val.txt").write_text("".join(f"{p}\n" for p in images))
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "val.txt", "names": list(dataset.names)}))
    return out / "data.yaml", load_dataset(out / "data.yaml")


def _io_of_record(record: ArtifactRecord) -> str:
    outputs = sorted({o.dtype for o in record.outputs})
    return f"{record.inputs[0].dtype} {record.layout} -> {'/'.join(outputs)}" if record.inputs else "?"


def _sort_key(found: Found, baseline: Path) -> tuple:
    record = found.record or (found.detector.record if found.detector else None)
    precision = record.precision if record else "?"
    rank = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
    status = (MEASURED, PROXY, NOT_EXECUTABLE, SKIPPED).index(found.status)
    return (found.path != baseline, status, record.target if record else "~", rank, found.path.name)


def _source_model(baseline: Found, directory: Path) -> tuple[Path | None, str]:
    """The Ultralytics .pt the float baseline was converted from (for FGSM gradients), found in DIR
    or as the bundled sample by its name and SHA-256; (None, why) when it is not here."""
    provenance = baseline.detector.record.provenance if baseline.detector else {}
    name, digest = provenance.get("source"), provenance.get("source_sha256")
    if not name or not str(name).endswith(".pt"):
        return None, f"the float baseline {baseline.path.name} names no .pt source: pass --baseline MODEL.pt"
    from edgeport import sample

    for candidate in (directory / str(name), baseline.path.parent / str(name), sample.model_path()):
        if candidate.is_file() and candidate.name == name and (not digest or sha256_file(candidate) == digest):
            return candidate, ""
    return None, f"its source model {name} was not found beside it: pass --baseline {name}"


def _choose_baseline(found: list[Found], baseline: str | Path | None, work: Path, threads: int | None,
                     say: Callable[[str], None]) -> tuple[Found, Path | None]:
    """The float baseline and, when known, the .pt it comes from."""
    if baseline is not None:
        path = Path(baseline)
        if path.suffix.lower() in (".pt", ".pth"):
            from edgeport.convert import ConvertOptions, convert

            if not path.is_file():
                raise ConfigError(f"--baseline {path}: model not found")
            say(f"report: converting the baseline {path.name} to float ONNX")
            onnx = convert(path, "onnx", ConvertOptions(out_dir=work / "baseline", progress=say,
                                                        command="edgeport report --baseline")).path
            converted = open_artifact(onnx, threads)
            if converted.detector is None:
                raise ConfigError(f"--baseline {path}: its float ONNX cannot be run: {converted.reason}")
            return converted, path
        for f in found:
            if f.path.resolve() == path.resolve():
                return f, None
        chosen = open_artifact(path, threads)
        if chosen.status != MEASURED:
            raise ConfigError(f"--baseline {path}: {chosen.reason or 'cannot be run on this host'}")
        return chosen, None
    floats = [f for f in found if f.status == MEASURED and f.detector.record.precision == "fp32"]
    floats.sort(key=lambda f: (f.detector.record.target != "onnx", f.path.name))
    if not floats:
        raise ConfigError("no float baseline: the folder holds no fp32 artifact this host can run; pass "
                          "--baseline MODEL (.pt or float .onnx)")
    return floats[0], None


def _row(found: Found, result: EvalResult | None, base: EvalResult | None, latency: tuple[float, float] | None,
         images: int) -> ReportRow:
    detector = found.detector
    record = found.record or (detector.record if detector else None)
    row = ReportRow(
        artifact=str(found.path), target=record.target if record else found.path.suffix.lstrip(".") or "?",
        precision=record.precision if record else "?",
        io=io_types(detector) if found.status == MEASURED else (_io_of_record(record) if record else "?"),
        backend=detector.backend_name if detector else "none",
        size_bytes=found.size_bytes, map50_95=None, map50=None, drop_map50_95=None, latency_ms_p50=None,
        latency_ms_p99=None, images_per_second=None, measured_on="not measured",
        calibration=calibration_text(record.provenance) if record else "none", proxy=found.proxy_label,
        status=found.status, note=found.reason,
        family=family_text(record.provenance) if record else "", edgetpu=edgetpu_text(record.provenance) if record else "")
    if result is None:
        return row
    row.images = images
    row.map50_95, row.map50 = round(result.map50_95, 4), round(result.map50, 4)
    row.per_class = {k: round(v, 4) for k, v in result.per_class.items()}
    where = f"{host_description()}, {detector.backend_name}"
    row.measured_on = where if found.status == MEASURED else f"{where}, proxy {found.proxy_path.name}"
    if latency is not None:
        row.latency_ms_p50, row.latency_ms_p99 = round(latency[0], 2), round(latency[1], 2)
        row.images_per_second = round(result.images_per_second, 1)
    elif found.status == PROXY:
        row.note += "; latency not reported: the proxy runs on another engine than the artifact"
    if base is not None:
        row.drop_map50_95 = round((base.map50_95 - result.map50_95) * 100, 3)
        row.drop_map50 = round((base.map50 - result.map50) * 100, 3)
        row.per_class_drop = {k: round((v - result.per_class.get(k, 0.0)) * 100, 3) for k, v in base.per_class.items()}
        if row.per_class_drop:
            row.worst_class = max(row.per_class_drop, key=row.per_class_drop.get)
            row.worst_class_drop = row.per_class_drop[row.worst_class]
    return row


def _robustness(measured: list[tuple[Found, ReportRow]], dataset: Dataset, work: Path, source_pt: Path | None,
                why_no_source: str, imgsz: tuple[int, int], progress: bool,
                say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Evaluate every measured row on each perturbed set; fill row.robustness; return the sets' descriptions."""
    described = []
    for perturbation in [p for p, _ in PIXEL_PERTURBATIONS.values()] + [FGSM]:
        entry = perturbation.to_dict()
        try:
            if perturbation is FGSM and source_pt is None:
                raise ConfigError(f"not computed: {why_no_source}")
            yaml_path, cached = perturbed_set(perturbation, dataset, work / "perturbed", model_pt=source_pt,
                                              imgsz=imgsz, progress=progress)
            entry["status"] = "cached" if cached else "computed"
            if perturbation is FGSM:
                entry["model"] = source_pt.name
        except Exception as exc:  # torch missing, a .pt that is not a detector...: this column only
            detail = str(exc) if isinstance(exc, EdgeportError) else f"{type(exc).__name__}: {exc}"
            reason = detail if detail.startswith("not computed") else f"not computed: {detail}"
            say(f"report: {perturbation.name}: {reason}")
            entry["status"] = reason
            for _, row in measured:
                row.robustness[perturbation.name] = {"map50_95": None, "map50": None, "drop": None, "note": reason}
            described.append(entry)
            continue
        for found, row in measured:
            result = evaluate(found.detector, yaml_path, progress=False)
            drop = round((row.map50_95 - round(result.map50_95, 4)) * 100, 3)
            row.robustness[perturbation.name] = {"map50_95": round(result.map50_95, 4),
                                                 "map50": round(result.map50, 4), "drop": drop}
            say(f"report: {perturbation.name:<9} {found.path.name}: mAP50-95 {result.map50_95:.4f} "
                f"({-drop:+.2f} points)")
        described.append(entry)
    return described


def build_report(directory: str | Path, data: str | Path, *, baseline: str | Path | None = None,
                 max_drop: float | None = None, images: int | None = None, threads: int | None = None,
                 robustness: bool = True, cache_dir: str | Path | None = None, latency_runs: int = 30,
                 progress: bool = True, say: Callable[[str], None] = _stderr, command: str = "") -> Report:
    """Evaluate every artifact in `directory` on `data` (a DATA.yaml), write report.md/.html/.json there.

    `images` limits the val split to that many images spread over it; `cache_dir` keeps the
    perturbed sets for the next run (default: a temporary folder). Raises ConfigError (no folder,
    no baseline) and DatasetError; a file that cannot be used becomes a skipped row.
    """
    from edgeport.report.render import write_all

    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"report folder not found: {directory}")
    dataset = load_dataset(data)
    work = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="edgeport-report-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data_yaml, dataset = _subset(dataset, images, work)
        say(f"report: {directory}: scanning for artifacts; {len(dataset.images)} val images from {data}")
        found = scan(directory, threads)
        base_found, source_pt = _choose_baseline(found, baseline, work, threads, say)
        if all(f.path.resolve() != base_found.path.resolve() for f in found):
            found.insert(0, base_found)
        found.sort(key=lambda f: _sort_key(f, base_found.path))
        why_no_source = ""
        if source_pt is None:
            source_pt, why_no_source = _source_model(base_found, directory)
        for f in found:
            if source_pt is not None and f.path.resolve() == source_pt.resolve():
                f.reason = "the float baseline's source model (used for the FGSM gradients), not an edge artifact"
        runnable = [f for f in found if f.detector is not None]
        first = dataset.images[0]
        rows, predictions, base = [], {}, None
        for i, f in enumerate(found):
            if f.detector is None:
                say(f"report: {f.path.name}: {f.status}: {f.reason}")
                rows.append(_row(f, None, None, None, len(dataset.images)))
                continue
            via = f" through its proxy {f.proxy_path.name}" if f.status == PROXY else ""
            say(f"report: [{runnable.index(f) + 1}/{len(runnable)}] {f.path.name}{via}")
            try:
                result, predictions[f.path] = evaluate_with_predictions(f.detector, data_yaml, progress=progress)
            except (DatasetError, ModelError) as exc:  # e.g. another class count: this row only
                if f is base_found:
                    raise
                f.status, f.reason, f.detector = SKIPPED, f"cannot be evaluated on {data}: {exc}", None
                say(f"report: {f.path.name}: skipped: {f.reason}")
                rows.append(_row(f, None, None, None, len(dataset.images)))
                continue
            latency = measure_latency(f.detector, f.detector.load(first), runs=latency_runs) if f.status == MEASURED \
                else None
            base = base or result  # the baseline sorts first
            row = _row(f, result, base, latency, len(dataset.images))
            row.baseline = f is base_found
            row.pr_curve = [round(float(v), 4) for v in pr_curve(predictions[f.path], len(dataset.names))]
            share, shift, _ = agreement(predictions[base_found.path], predictions[f.path])
            row.agreement = None if share is None else round(share, 4)
            row.score_shift = None if shift is None else round(shift, 4) + 0.0  # no -0.0
            rows.append(row)
        measured = [(f, r) for f, r in zip(found, rows) if f.detector is not None]
        perturbations = []
        if robustness:
            perturbations = _robustness(measured, dataset, work, source_pt, why_no_source,
                                        base_found.detector.imgsz, progress, say)
        for row in rows:
            row.over_budget = max_drop is not None and row.drop_map50_95 is not None and row.drop_map50_95 > max_drop
        report = Report(directory=directory, data=str(data), images=len(dataset.images), rows=rows,
                        baseline=base_found.path.name, perturbations=perturbations, max_drop=max_drop,
                        command=command)
        for path in write_all(report):
            say(f"report: wrote {path}")
        return report
    finally:
        if not cache_dir:
            shutil.rmtree(work, ignore_errors=True)
