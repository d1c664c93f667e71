"""The one report builder (`report DIR`, `convert --data`, `quickstart`): evaluate artifacts through the
runtime against the float baseline, as tasks any map can run, and write report.md/.html/.json."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from edgeport.artifact import sha256_file
from edgeport.errors import ConfigError
from edgeport.evaluate.dataset import Dataset, load_dataset
from edgeport.report.model import Report, previous_rows
from edgeport.report.rows import MEASURED, NOT_EXECUTABLE, PROXY, SKIPPED, ReportRow
from edgeport.report.scan import Found, open_artifact, scan
from edgeport.report.tasks import MapFn

PRECISION_ORDER = ("fp32", "fp16", "dynamic", "int16", "int8")


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



def _gather(directory: Path, artifacts: Sequence[str | Path] | None, baseline: str | Path | None, work: Path,
            threads: int | None, say: Callable[[str], None]) -> tuple[list[Found], Found, Path | None, str]:
    """The Found of every row (baseline first), the baseline, and the .pt for FGSM (or why there is none)."""
    found = scan(directory, threads) if artifacts is None else [open_artifact(Path(p), threads) for p in artifacts]
    base_found, source_pt = _choose_baseline(found, baseline, work, threads, say)
    if all(f.path.resolve() != base_found.path.resolve() for f in found):
        found.insert(0, base_found)
    found = [f for i, f in enumerate(found) if all(f.path.resolve() != g.path.resolve() for g in found[:i])]
    found.sort(key=lambda f: _sort_key(f, base_found.path))
    why_no_source = ""
    if source_pt is None:
        source_pt, why_no_source = _source_model(base_found, directory)
    for f in found:
        if source_pt is not None and f.path.resolve() == source_pt.resolve():
            f.reason = "the float baseline's source model (used for the FGSM gradients), not an edge artifact"
    return found, base_found, source_pt, why_no_source


def _arm64_rows(found: list[Found], rows: list[ReportRow], predictions: dict[str, list], data_yaml: Path, work: Path,
                progress: bool, say: Callable[[str], None]) -> list[ReportRow]:
    """The rows measured inside the emulated Raspberry Pi (edgeport.report.arm64) of every measured row."""
    from types import SimpleNamespace

    from edgeport.report.arm64 import arm64_rows

    base_row = next(r for r in rows if r.baseline)
    base = SimpleNamespace(map50_95=base_row.map50_95, map50=base_row.map50, per_class=base_row.per_class)
    measured = [(f, r) for f, r in zip(found, rows) if r.map50_95 is not None]  # measure_clean: one row per Found
    return arm64_rows(measured, {Path(k): v for k, v in predictions.items()}, base, data_yaml, work, progress, say)


def build_report(directory: str | Path, data: str | Path, *, artifacts: Sequence[str | Path] | None = None,
                 baseline: str | Path | None = None, max_drop: float | None = None, images: int | None = None,
                 threads: int | None = None, robustness: bool = True, examples: bool = True,
                 cache_dir: str | Path | None = None, latency_runs: int = 30, progress: bool = True,
                 say: Callable[[str], None] = _stderr, command: str = "", map_fn: MapFn | None = None,
                 shards: int = 1, extra_rows: Sequence[ReportRow] = (), keep_previous: bool = False,
                 write: bool = True, arm64: bool = False) -> Report:
    """Evaluate artifacts on `data` (a DATA.yaml) against the float baseline; write report.md/.html/.json
    into `directory` (unless `write` is False) and return the Report.

    `artifacts`: the files to report (default: every model file of `directory`). `images` limits the
    val split to that many images spread over it; `cache_dir` keeps the perturbed sets for the next run.
    `map_fn(evaluate_task, tasks)` runs the evaluations (default: the builtin map, in this process);
    `shards` splits each evaluation into that many tasks. `extra_rows`: rows measured elsewhere (their
    `measured_on` says where). `keep_previous`: keep the rows of an earlier report.json in `directory`
    for artifacts not measured again (same data and baseline). Raises ConfigError (no folder, no
    baseline) and DatasetError; a file that cannot be used becomes a skipped row. `arm64`: also evaluate
    every TFLite, ONNX and NCNN artifact inside the emulated Raspberry Pi (scripts/pi-rootfs.sh), one more
    row each.
    """
    from edgeport.report.examples import build_examples
    from edgeport.report.measure import measure_clean, measure_robustness
    from edgeport.report.render import write_all

    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"report folder not found: {directory}")
    dataset = load_dataset(data)
    work = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="edgeport-report-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data_yaml, dataset = _subset(dataset, images, work)
        say(f"report: {directory}: {'scanning for' if artifacts is None else len(artifacts)} artifacts; "
            f"{len(dataset.images)} val images from {data}")
        found, base_found, source_pt, why_no_source = _gather(directory, artifacts, baseline, work, threads, say)
        run = {"shards": shards, "threads": threads, "progress": progress, "map_fn": map_fn, "say": say}
        rows, predictions = measure_clean(found, base_found, data_yaml, dataset, latency_runs=latency_runs, **run)
        perturbations = measure_robustness(found, rows, dataset, work, source_pt, why_no_source,
                                           base_found.detector.imgsz, **run) if robustness else []
        if arm64:
            rows += _arm64_rows(found, rows, predictions, data_yaml, work, progress, say)
        report = Report(directory=directory, data=str(data), images=len(dataset.images), rows=rows,
                        baseline=base_found.path.name, perturbations=perturbations, max_drop=max_drop,
                        command=command)
        if keep_previous:
            kept, why = previous_rows(directory / "report.json", report.data, report.baseline, [r.artifact for r in rows])
            if why:
                say(f"report: {why}")
            report.add_rows(kept)
        report.add_rows(extra_rows)
        if examples:
            report.examples = build_examples(dataset.images, dataset.names, rows[0], predictions, report.rows)
        if write:
            for path in write_all(report):
                say(f"report: wrote {path}")
        return report
    finally:
        if not cache_dir:
            shutil.rmtree(work, ignore_errors=True)
