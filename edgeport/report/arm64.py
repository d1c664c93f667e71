"""The report's arm64 rows: each TFLite, ONNX and NCNN artifact evaluated inside the emulated Raspberry Pi
(scripts/pi-rootfs.sh: Debian 12 arm64 under qemu-user), compared with its x86 row; never a latency.

`python -m edgeport.report.arm64 OUT.json ARTIFACT... --data DATA.yaml` is the worker run inside the rootfs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeport.errors import ConfigError
from edgeport.evaluate.metrics import ImageEval

# what a Raspberry Pi runs on its CPU: the record's target, opened by one of these backends
PI_TARGETS = ("onnx", "tflite", "edgetpu", "ncnn")  # edgetpu: the full-integer TFLite a Pi without a Coral runs
PI_BACKENDS: dict[str, tuple[str, ...]] = {"litert": ("ai-edge-litert", "tflite-runtime"),
                                           "onnxruntime": ("onnxruntime",), "ncnn": ("ncnn",)}
SCRIPT_ENV = "EDGEPORT_PI_SCRIPT"
NOTE = ("measured inside the emulated Raspberry Pi (Debian 12 arm64 rootfs under qemu-user, the Pi's own CPU "
        "kernels); agreement and score shift are against the x86 row of the same file; no latency: emulated "
        "timings are not the device's")


def rootfs_script() -> Path:
    """scripts/pi-rootfs.sh of the edgeport source tree (or $EDGEPORT_PI_SCRIPT); raises ConfigError when
    edgeport runs from an installed package without its source tree."""
    override = os.environ.get(SCRIPT_ENV)
    script = Path(override) if override else Path(__file__).resolve().parents[2] / "scripts" / "pi-rootfs.sh"
    if not script.is_file():
        raise ConfigError(f"--arm64 needs scripts/pi-rootfs.sh of the edgeport source tree (not found at {script}): "
                          f"run edgeport from a git checkout, or set {SCRIPT_ENV}")
    return script


def pi_command(command: Sequence[str], mounts: Sequence[str | Path] = (), writable: Sequence[str | Path] = (),
               workdir: str | Path | None = None) -> list[str]:
    """The host command that runs `command` inside the emulated Pi, with host folders mounted at the same
    paths (read-only, or writable for `writable`); it builds the rootfs and installs edgeport first."""
    args = ["bash", str(rootfs_script()), "run"]
    for path in _outermost(mounts):
        args += ["-v", f"{path}:ro"]
    for path in _outermost(writable):
        args += ["-v", f"{path}:rw"]
    if workdir is not None:
        args += ["-w", str(workdir)]
    return [*args, "--", *map(str, command)]


def _outermost(paths: Sequence[str | Path]) -> list[Path]:
    """Resolved folders, without those inside another one of the list."""
    folders = sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for folder in folders:
        if not any(folder.is_relative_to(k) for k in kept):
            kept.append(folder)
    return kept


def runs_on_pi(found: Any) -> bool:
    """Whether a scanned artifact (report.scan.Found) is one a Raspberry Pi runs on its CPU."""
    detector = getattr(found, "detector", None)
    return (getattr(found, "status", None) == "measured" and detector is not None
            and detector.backend_name in PI_BACKENDS and detector.record.target in PI_TARGETS)


def dataset_folders(data_yaml: str | Path) -> list[Path]:
    """The folders an evaluation of `data_yaml` reads: its own, every image's and every label's."""
    from edgeport.evaluate.dataset import label_path, load_dataset

    dataset = load_dataset(data_yaml)
    folders = {Path(data_yaml).resolve().parent}
    for image in dataset.images:
        folders.add(Path(image).resolve().parent)
        label = label_path(Path(image))
        if label.parent.is_dir():
            folders.add(label.parent.resolve())
    return sorted(folders)


def evaluate_on_pi(artifacts: Sequence[Path], data_yaml: str | Path, work: Path, progress: bool = True,
                   timeout: float | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate each artifact inside the emulated Pi; return artifact path -> the worker's result
    (EvalResult keys, interpreter, python, debian, images) or {"error": text}. Raises ConfigError when
    the rootfs cannot be built or the worker fails as a whole."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out = work.resolve() / "arm64.json"
    out.unlink(missing_ok=True)
    command = ["python", "-m", "edgeport.report.arm64", out, *[Path(a).resolve() for a in artifacts],
               "--data", Path(data_yaml).resolve()] + ([] if progress else ["--no-progress"])
    mounts = [Path(a).resolve().parent for a in artifacts] + dataset_folders(data_yaml)
    code, last = _run_passing_stderr(pi_command(command, mounts, [work], workdir="/"), timeout)
    if code != 0 or not out.is_file():
        raise ConfigError(f"the emulated Raspberry Pi (scripts/pi-rootfs.sh) failed with exit code {code}: "
                          f"{last or 'no message'}")
    return json.loads(out.read_text())


def _run_passing_stderr(command: list[str], timeout: float | None) -> tuple[int, str]:
    """Run `command`, its stderr (progress, errors) passed on line by line; return (exit code, the last
    error line or else the last line)."""
    import threading

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, process.kill) if timeout else None
    if timer:
        timer.start()
    last, error = "", ""
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            if line.strip():
                last = line.strip()
                error = last if "error" in last.lower() else error
        code = process.wait()
    finally:
        if timer:
            timer.cancel()
    return code, error or last


def _predictions(images: list[dict[str, list]]) -> list[ImageEval]:
    import numpy as np

    return [ImageEval(np.asarray(i["gt_xyxy"], np.float64).reshape(-1, 4), np.asarray(i["gt_class"], np.int32),
                      np.asarray(i["pred_xyxy"], np.float64).reshape(-1, 4), np.asarray(i["pred_score"], np.float64),
                      np.asarray(i["pred_class"], np.int32)) for i in images]


def measured_on(result: dict[str, Any]) -> str:
    """e.g. 'arm64 (emulated Raspberry Pi OS, Debian 12, Python 3.11, ai-edge-litert 1.4.0)'."""
    return (f"arm64 (emulated Raspberry Pi OS, Debian {result['debian']}, Python {result['python']}, "
            f"{result['interpreter']})")


def arm64_row(x86: Any, x86_predictions: list[ImageEval], result: dict[str, Any], base: Any) -> Any:
    """The arm64 row of an artifact: a copy of its x86 row (report.rows.ReportRow) with the emulated Pi's
    mAP, per-class AP, drop against the float baseline `base` (an EvalResult), precision-recall curve,
    and agreement with the x86 predictions; no latency, no robustness."""
    from edgeport.report.agreement import agreement, pr_curve

    if "error" in result:
        return replace(x86, map50_95=None, map50=None, drop_map50_95=None, drop_map50=None, latency_ms_p50=None,
                       latency_ms_p99=None, images_per_second=None, measured_on="not measured", status="skipped",
                       note=f"arm64 (emulated Raspberry Pi): {result['error']}", baseline=False, per_class={},
                       per_class_drop={}, worst_class=None, worst_class_drop=None, agreement=None,
                       score_shift=None, robustness={}, pr_curve=[], over_budget=False)
    predictions = _predictions(result["predictions"])
    share, shift, _ = agreement(x86_predictions, predictions)
    per_class = {k: round(v, 4) for k, v in result["per_class"].items()}
    per_class_drop = {k: round((v - result["per_class"].get(k, 0.0)) * 100, 3) for k, v in base.per_class.items()}
    worst = max(per_class_drop, key=per_class_drop.get) if per_class_drop else None
    return replace(
        x86, backend=result["backend"], map50_95=round(result["map50_95"], 4), map50=round(result["map50"], 4),
        drop_map50_95=round((base.map50_95 - result["map50_95"]) * 100, 3),
        drop_map50=round((base.map50 - result["map50"]) * 100, 3), latency_ms_p50=None, latency_ms_p99=None,
        images_per_second=None, measured_on=measured_on(result), note=NOTE, baseline=False,
        images=result["images"], per_class=per_class, per_class_drop=per_class_drop, worst_class=worst,
        worst_class_drop=per_class_drop.get(worst) if worst else None,
        agreement=None if share is None else round(share, 4),
        score_shift=None if shift is None else round(shift, 4) + 0.0, robustness={},
        pr_curve=[round(float(v), 4) for v in pr_curve(predictions, result["classes"])],
        over_budget=False)


def plan(measured: Sequence[tuple[Any, Any]], predictions: dict[Path, Any]) -> list[tuple[Any, Any]]:
    """The (Found, ReportRow) pairs of `measured` that --arm64 evaluates inside the emulated Pi: those a
    Raspberry Pi runs on its CPU (runs_on_pi) whose x86 predictions are at hand, in report order."""
    return [(found, row) for found, row in measured if runs_on_pi(found) and found.path in predictions]


def arm64_rows(measured: Sequence[tuple[Any, Any]], predictions: dict[Path, list[ImageEval]], base: Any,
               data_yaml: str | Path, work: Path, progress: bool = True,
               say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> list[Any]:
    """One arm64 row per (Found, ReportRow) of `measured` that a Raspberry Pi runs (TFLite, ONNX, NCNN),
    evaluated on `data_yaml` inside the emulated Pi; `predictions` are the x86 ones by artifact path, `base`
    the float baseline's EvalResult. When the emulated Pi cannot be used, each row says why (nothing is lost)."""
    pairs = plan(measured, predictions)
    if not pairs:
        say("report: --arm64: no TFLite, ONNX or NCNN artifact to run on the emulated Raspberry Pi")
        return []
    say(f"report: --arm64: evaluating {len(pairs)} artifacts inside the emulated Raspberry Pi (arm64 under qemu: "
        "slow; its timings are not the Pi's)")
    try:
        results = evaluate_on_pi([found.path for found, _ in pairs], data_yaml, Path(work) / "arm64", progress)
    except (ConfigError, OSError, subprocess.SubprocessError) as exc:
        say(f"report: --arm64: {exc}")
        results = {str(found.path.resolve()): {"error": f"not measured: {exc}"} for found, _ in pairs}
    rows = []
    for found, row in pairs:
        result = results.get(str(found.path.resolve()), {"error": "the worker returned no result"})
        rows.append(arm64_row(row, predictions[found.path], result, base))
        measured = rows[-1].map50_95 is not None
        say(f"report: arm64 {found.path.name}: " + (f"mAP50-95 {rows[-1].map50_95:.4f}, agreement with x86 "
                                                    f"{rows[-1].agreement}" if measured else rows[-1].note))
    return rows


def _interpreter(backend: str) -> str:
    """The interpreter distribution and version of a backend, e.g. 'ai-edge-litert 1.4.0'."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in PI_BACKENDS.get(backend, ()):
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return backend


def _debian() -> str:
    try:
        return Path("/etc/debian_version").read_text().split(".")[0].strip() or "?"
    except OSError:
        return "?"


def _evaluate_one(artifact: Path, data: Path, progress: bool) -> dict[str, Any]:
    from edgeport.evaluate import evaluate_with_predictions
    from edgeport.evaluate.dataset import load_dataset

    result, images = evaluate_with_predictions(artifact, data, progress=progress)
    return {**result.to_dict(), "classes": len(load_dataset(data).names), "interpreter": _interpreter(result.backend),
            "machine": platform.machine(), "python": ".".join(platform.python_version_tuple()[:2]), "debian": _debian(),
            "predictions": [{"gt_xyxy": i.gt_xyxy.tolist(), "gt_class": i.gt_class.tolist(),
                             "pred_xyxy": i.pred_xyxy.tolist(), "pred_score": i.pred_score.tolist(),
                             "pred_class": i.pred_class.tolist()} for i in images]}


def main(argv: Sequence[str] | None = None) -> int:
    """The worker: evaluate each artifact on DATA.yaml, write {artifact: result or {"error"}} to OUT.json."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgeport.report.arm64")
    parser.add_argument("out", type=Path)
    parser.add_argument("artifacts", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for artifact in args.artifacts:
        try:
            results[str(artifact)] = _evaluate_one(artifact, args.data, args.progress)
        except Exception as exc:  # one artifact failing on arm64 must not lose the others
            results[str(artifact)] = {"error": f"{type(exc).__name__}: {exc}"}
    args.out.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
