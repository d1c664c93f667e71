"""The rows measured on this host: each artifact (or the proxy standing for it) evaluated on the clean
val images and on each perturbed set, through tasks handed to a map (see edgeport.report.tasks)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeport.artifact import ArtifactRecord
from edgeport.errors import ConfigError, DatasetError, EdgeportError
from edgeport.evaluate import EvalResult, score
from edgeport.evaluate.dataset import Dataset
from edgeport.evaluate.metrics import ImageEval
from edgeport.report.agreement import agreement, pr_curve
from edgeport.report.perturb import FGSM, PIXEL_PERTURBATIONS, perturbed_set
from edgeport.report.rows import (
    MEASURED,
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
from edgeport.report.scan import Found
from edgeport.report.tasks import CLEAN, MapFn, TaskResult, adopt, merge, run_tasks, shards_for


def _io_of_record(record: ArtifactRecord) -> str:
    outputs = sorted({o.dtype for o in record.outputs})
    return f"{record.inputs[0].dtype} {record.layout} -> {'/'.join(outputs)}" if record.inputs else "?"


def evaluated_file(found: Found) -> Path:
    """The file this host runs for a row: the artifact, or the proxy standing for it."""
    return found.proxy_path if found.status == PROXY and found.proxy_path is not None else found.path


def _evaluate_all(found: Sequence[Found], datas: dict[str, str], shards: int, threads: int | None, progress: bool,
                  map_fn: MapFn | None, before: Callable | None = None) -> dict[tuple[str, str], TaskResult]:
    """{(row, perturbation): merged result} of every runnable row on every image set of `datas`
    (perturbation name -> DATA.yaml), all tasks handed to one map."""
    for f in found:
        if f.detector is not None:  # tasks run in this process reuse it
            adopt(evaluated_file(f), threads, f.detector)
    tasks = [task for perturbation, data in datas.items() for f in found if f.detector is not None
             for task in shards_for(str(f.path), str(evaluated_file(f)), data, perturbation, shards, threads,
                                    progress)]
    grouped: dict[tuple[str, str], list[TaskResult]] = defaultdict(list)
    for result in run_tasks(tasks, map_fn, before):
        grouped[(result.task.row, result.task.perturbation)].append(result)
    return {key: merge(results) for key, results in grouped.items()}


def _scored(result: TaskResult) -> EvalResult:
    return score(result.images, result.names, artifact=result.task.model, backend=result.backend,
                 images_per_second=len(result.images) / result.seconds if result.seconds else 0.0)
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
        status=found.status, note=found.reason, family=family_text(record.provenance) if record else "",
        edgetpu=edgetpu_text(record.provenance) if record else "")
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



def measure_clean(found: list[Found], base_found: Found, data_yaml: Path, dataset: Dataset, *, shards: int = 1,
                  threads: int | None = None, progress: bool = True, map_fn: MapFn | None = None,
                  latency_runs: int = 30, say: Callable[[str], None] = print
                  ) -> tuple[list[ReportRow], dict[str, list[ImageEval]]]:
    """One row per Found (baseline first) and the clean predictions of each evaluated row (by row.artifact).
    A row whose evaluation fails (another class count...) is skipped; the baseline's failure raises."""
    runnable = [f for f in found if f.detector is not None]
    names = {str(f.path): f for f in runnable}

    def announce(task):
        if task.shard == 0:
            f = names[task.row]
            via = f" through its proxy {f.proxy_path.name}" if f.status == PROXY else ""
            say(f"report: [{runnable.index(f) + 1}/{len(runnable)}] {f.path.name}{via}")

    results = _evaluate_all(runnable, {CLEAN: str(data_yaml)}, shards, threads, progress, map_fn, announce)
    first = dataset.images[0]
    rows, predictions, base = [], {}, None
    for f in found:
        result = results.get((str(f.path), CLEAN))
        if result is not None and result.error:
            if f is base_found:
                raise DatasetError(result.error)
            f.status, f.reason, f.detector = SKIPPED, f"cannot be evaluated on {dataset.yaml_path}: {result.error}", None
            say(f"report: {f.path.name}: skipped: {f.reason}")
        if f.detector is None or result is None:
            if f.status != SKIPPED or result is None:
                say(f"report: {f.path.name}: {f.status}: {f.reason}")
            rows.append(_row(f, None, None, None, len(dataset.images)))
            continue
        evaluated = _scored(result)
        latency = measure_latency(f.detector, f.detector.load(first), runs=latency_runs) if f.status == MEASURED \
            else None
        base = base or evaluated  # the baseline sorts first
        row = _row(f, evaluated, base, latency, len(dataset.images))
        row.baseline = f is base_found
        predictions[row.artifact] = result.images
        row.pr_curve = [round(float(v), 4) for v in pr_curve(result.images, len(dataset.names))]
        share, shift, _ = agreement(predictions[str(base_found.path)], result.images)
        row.agreement = None if share is None else round(share, 4)
        row.score_shift = None if shift is None else round(shift, 4) + 0.0  # no -0.0
        rows.append(row)
    return rows, predictions


def _perturbed_sets(dataset: Dataset, work: Path, source_pt: Path | None, why_no_source: str,
                    imgsz: tuple[int, int], progress: bool, say: Callable[[str], None]
                    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """({perturbation: DATA.yaml} of the sets made, the description of every perturbation with its status)."""
    made, described = {}, []
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
            made[perturbation.name] = str(yaml_path)
        except Exception as exc:  # torch missing, a .pt that is not a detector...: this column only
            detail = str(exc) if isinstance(exc, EdgeportError) else f"{type(exc).__name__}: {exc}"
            entry["status"] = detail if detail.startswith("not computed") else f"not computed: {detail}"
            say(f"report: {perturbation.name}: {entry['status']}")
        described.append(entry)
    return made, described


def measure_robustness(found: list[Found], rows: list[ReportRow], dataset: Dataset, work: Path,
                       source_pt: Path | None, why_no_source: str, imgsz: tuple[int, int], *, shards: int = 1,
                       threads: int | None = None, progress: bool = True, map_fn: MapFn | None = None,
                       say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate every evaluated row on each perturbed set; fill row.robustness; return the sets' descriptions."""
    made, described = _perturbed_sets(dataset, work, source_pt, why_no_source, imgsz, progress, say)
    measured = [(f, r) for f, r in zip(found, rows) if f.detector is not None and r.map50_95 is not None]
    results = _evaluate_all([f for f, _ in measured], made, shards, threads, False, map_fn)
    for entry in described:
        name = entry["name"]
        for f, row in measured:
            result = results.get((str(f.path), name))
            if name not in made or result is None or result.error:
                reason = entry["status"] if name not in made else f"not computed: {result.error if result else '?'}"
                row.robustness[name] = {"map50_95": None, "map50": None, "drop": None, "note": reason}
                continue
            evaluated = _scored(result)
            drop = round((row.map50_95 - round(evaluated.map50_95, 4)) * 100, 3)
            row.robustness[name] = {"map50_95": round(evaluated.map50_95, 4), "map50": round(evaluated.map50, 4),
                                    "drop": drop}
            say(f"report: {name:<9} {f.path.name}: mAP50-95 {evaluated.map50_95:.4f} ({-drop:+.2f} points)")
    return described
